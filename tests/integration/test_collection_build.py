"""The collection as users get it: built with ``ansible-galaxy collection build``, installed offline from the
tarball, then documented and syntax-checked from the installed copy only.

The build runs on a copy of the collection tree seeded with what a developer's working tree holds besides
the collection (a virtual environment, build output, ansible-test output, caches, a git directory, earlier
tarballs), so that galaxy.yml's ``build_ignore`` is tested against them. The Ansible commands then run with
only the temporary install on the collections path, no PYTHONPATH and no scan of sys.path, so they cannot
fall back to the laid-out copy the other tests use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import typing as t
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]  # the collection root (under make integration: the laid-out copy)

# Files a working tree may hold that must never reach the tarball (paths relative to the collection root).
DECOYS = (
    ".venv/bin/python",
    "build/ansible_collections/mailops/imap/galaxy.yml",
    "build/mailops-imap-0.0.1.tar.gz",
    "mailops-imap-0.0.1.tar.gz",
    "tests/output/.tmp/delegation/pyvenv.cfg",
    "tests/output/junit/python3.11-modules.xml",
    "__pycache__/conftest.cpython-311.pyc",
    "plugins/modules/__pycache__/migrate.cpython-311.pyc",
    "plugins/module_utils/_engine/__pycache__/sync.cpython-311.pyc",
    "plugins/modules/stray.pyc",
    ".git/HEAD",
    ".pytest_cache/v/cache/lastfailed",
    "tests/unit/.pytest_cache/v/cache/lastfailed",
    ".mypy_cache/3.11/sync.data.json",
    ".ansible/collections/ansible_collections/.keep",
    "tests/integration/.ansible/tmp/.keep",
    ".tox/py311/pyvenv.cfg",
    "README.md.swp",
    "README.md~",
    ".ci/run",
    "Makefile",
)

# Path components that mark content no user needs.
FORBIDDEN_PARTS = {".venv", "venv", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ansible", ".tox", ".ci"}
FORBIDDEN_SUFFIXES = (".pyc", ".tar.gz", ".swp", "~")
FORBIDDEN_PREFIXES = ("build/", "tests/output/")
FORBIDDEN_FILES = {"Makefile", ".gitignore", "build", "tests/output"}

# Everything under these directories of the source tree ships (what users run and read).
SHIPPED_DIRS = ("plugins", "roles", "playbooks", "docs", "meta", "changelogs")
SHIPPED_FILES = ("README.md", "LICENSE")
NOT_SHIPPED = {"changelogs/.plugin-cache.yaml"}  # antsibull-changelog's cache


def _galaxy() -> dict[str, t.Any]:
    return yaml.safe_load((ROOT / "galaxy.yml").read_text(encoding="utf-8"))


def _run(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: run the integration tests through `make integration`", pytrace=False)
    return path


def _shipped_sources(root: Path) -> set[str]:
    """The files of the source tree that users need: every file under SHIPPED_DIRS, plus SHIPPED_FILES."""
    found = {name for name in SHIPPED_FILES if (root / name).is_file()}
    for top in SHIPPED_DIRS:
        for path in (root / top).rglob("*"):
            rel = path.relative_to(root)
            if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc" and rel.as_posix() not in NOT_SHIPPED:
                found.add(rel.as_posix())
    return found


def _is_forbidden(name: str) -> bool:
    parts = name.split("/")
    return (
        bool(FORBIDDEN_PARTS.intersection(parts))
        or name.endswith(FORBIDDEN_SUFFIXES)
        or name.startswith(FORBIDDEN_PREFIXES)
        or name in FORBIDDEN_FILES
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the collection tree (without the big local directories), seeded with the DECOYS."""
    src = tmp_path_factory.mktemp("source") / "ansible_collections" / "mailops" / "imap"

    def skip(directory: str, names: list[str]) -> set[str]:
        here = Path(directory)
        skipped = {".venv", ".git", ".ansible", "__pycache__", ".pytest_cache"} if here == ROOT else {"__pycache__"}
        if here == ROOT:
            skipped.add("build")
        if here == ROOT / "tests":
            skipped.add("output")
        return skipped.intersection(names)

    shutil.copytree(ROOT, src, symlinks=True, ignore=skip)
    for decoy in DECOYS:
        path = src / decoy
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text("decoy: must not be in the collection tarball\n", encoding="utf-8")
    return src


@pytest.fixture(scope="module")
def tarball(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([_tool("ansible-galaxy"), "collection", "build", "--output-path", str(out), str(source)])
    galaxy = _galaxy()
    path = out / f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    assert path.is_file(), f"ansible-galaxy collection build wrote {sorted(p.name for p in out.iterdir())}, not {path.name}"
    return path


@pytest.fixture(scope="module")
def members(tarball: Path) -> set[str]:
    with tarfile.open(tarball) as archive:
        return {member.name.rstrip("/") for member in archive.getmembers() if not member.isdir()}


@pytest.fixture(scope="module")
def installed(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collections path holding only the collection installed from the tarball, offline."""
    collections = tmp_path_factory.mktemp("collections")
    _run([_tool("ansible-galaxy"), "collection", "install", "--offline", "-p", str(collections), str(tarball)],
         env=ansible_env(collections, tmp_path_factory.mktemp("home")))
    assert (collections / "ansible_collections" / "mailops" / "imap" / "MANIFEST.json").is_file()
    return collections


def ansible_env(collections: Path, home: Path) -> dict[str, str]:
    """An environment where Ansible sees only ``collections``: not the laid-out copy, not ~/.ansible."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_") and key != "PYTHONPATH"}
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
        ANSIBLE_HOME=str(home),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="true",
    )
    return env


@pytest.fixture(scope="module")
def isolated_env(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return ansible_env(installed, tmp_path_factory.mktemp("home"))


def test_tarball_ships_what_users_need(source: Path, members: set[str]) -> None:
    expected = _shipped_sources(source)
    for needed in ("plugins/modules/migrate.py", "plugins/action/migrate.py", "plugins/module_utils/_engine/sync.py",
                   "meta/runtime.yml", "meta/execution-environment.yml", "README.md", "LICENSE", "docs/sync-engine.md"):
        assert needed in expected, f"{needed} is not in the source tree any more: update this test"
    missing = sorted(expected - members)
    assert not missing, f"the tarball lacks files users need: {missing}"
    assert {"MANIFEST.json", "FILES.json"} <= members


def test_tarball_leaves_out_development_files(members: set[str]) -> None:
    unwanted = sorted(name for name in members if _is_forbidden(name))
    assert not unwanted, f"the tarball holds files no user needs (extend build_ignore in galaxy.yml): {unwanted}"
    for decoy in DECOYS:
        assert decoy not in members, f"{decoy} reached the tarball"


def test_manifest_matches_galaxy_yml(tarball: Path) -> None:
    galaxy = _galaxy()
    with tarfile.open(tarball) as archive:
        handle = archive.extractfile("MANIFEST.json")
        assert handle is not None
        info = json.load(handle)["collection_info"]
    for key in ("namespace", "name", "version", "license", "dependencies", "repository", "documentation", "homepage",
                "issues"):
        assert info[key] == galaxy[key], f"MANIFEST.json {key}: {info[key]!r}, galaxy.yml: {galaxy[key]!r}"
    assert info["license"] == ["GPL-3.0-or-later"]
    with tarfile.open(tarball) as archive:
        handle = archive.extractfile("LICENSE")
        assert handle is not None
        text = handle.read().decode("utf-8")
    assert "GNU GENERAL PUBLIC LICENSE" in text and "Version 3, 29 June 2007" in text, "the licence text ships"


def test_installed_copy_matches_the_tarball(installed: Path, isolated_env: dict[str, str]) -> None:
    proc = _run([_tool("ansible-galaxy"), "collection", "verify", "--offline", "-p", str(installed), "mailops.imap"],
                env=isolated_env, cwd=installed)
    assert "Successfully verified" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_execution_environment_files(installed: Path) -> None:
    """What ansible-builder reads (meta/execution-environment.yml and the two files it names) is installed."""
    collection = installed / "ansible_collections" / "mailops" / "imap"
    meta = yaml.safe_load((collection / "meta" / "execution-environment.yml").read_text(encoding="utf-8"))
    assert set(meta["dependencies"]) == {"python", "system"}
    python = (collection / meta["dependencies"]["python"]).read_text(encoding="utf-8")
    assert any(line.strip().lower().startswith("imapclient") for line in python.splitlines())
    system = (collection / meta["dependencies"]["system"]).read_text(encoding="utf-8")
    assert [line for line in system.splitlines() if line.strip() and not line.startswith("#")]


def test_ansible_doc_renders_every_module(source: Path, installed: Path, isolated_env: dict[str, str]) -> None:
    modules = sorted(f"mailops.imap.{path.stem}" for path in (source / "plugins" / "modules").glob("*.py")
                     if path.stem != "__init__")
    assert "mailops.imap.migrate" in modules
    proc = _run([_tool("ansible-doc"), "--json", *modules], env=isolated_env, cwd=installed)
    docs = json.loads(proc.stdout)
    assert sorted(docs) == modules, proc.stderr
    where = str(installed / "ansible_collections" / "mailops" / "imap") + os.sep
    for name, doc in docs.items():
        assert doc["doc"]["filename"].startswith(where), f"{name} documented from {doc['doc']['filename']}"
    text = _run([_tool("ansible-doc"), "mailops.imap.migrate"], env=isolated_env, cwd=installed)
    first = text.stdout.splitlines()[0] if text.stdout else ""
    assert first.startswith("> MODULE mailops.imap.migrate (" + where), first
    assert "OPTIONS" in text.stdout and "RETURN VALUES" in text.stdout
    assert "ERROR" not in text.stderr and "WARNING" not in text.stderr, text.stderr


def test_ansible_doc_renders_the_role(installed: Path, isolated_env: dict[str, str]) -> None:
    proc = _run([_tool("ansible-doc"), "-t", "role", "--json", "mailops.imap.imapsync"], env=isolated_env, cwd=installed)
    docs = json.loads(proc.stdout)
    assert "mailops.imap.imapsync" in docs, proc.stderr
    role = docs["mailops.imap.imapsync"]
    assert "main" in role["entry_points"], role
    assert role["path"].startswith(str(installed)), role["path"]
    text = _run([_tool("ansible-doc"), "-t", "role", "mailops.imap.imapsync"], env=isolated_env, cwd=installed)
    assert "imapsync_tasks" in text.stdout
    assert "ERROR" not in text.stderr, text.stderr


def test_playbooks_pass_syntax_check_from_the_installed_copy(source: Path, installed: Path, isolated_env: dict[str, str]) -> None:
    playbooks = sorted(path.stem for path in (source / "playbooks").glob("*.yml")) if (source / "playbooks").is_dir() else []
    if not playbooks:
        pytest.skip("playbooks/ has no playbook yet")
    inventory = installed.parent / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local\n", encoding="utf-8")
    for name in playbooks:
        proc = _run([_tool("ansible-playbook"), "--syntax-check", "-i", str(inventory), f"mailops.imap.{name}"],
                    env=isolated_env, cwd=installed)
        assert "ERROR" not in proc.stderr, f"mailops.imap.{name}: {proc.stderr}"


def test_the_lowest_declared_ansible_core_runs_the_collection_with_its_action_group(
        tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """meta/runtime.yml's requires_ansible names the oldest ansible-core the collection supports: that very release,
    from PyPI (its dependencies those of the test environment), installs the tarball and runs the collection's modules
    without a warning, their config_dir and state_dir set once by module_defaults for the action group
    mailops.imap.imap."""
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    lowest = runtime["requires_ansible"].removeprefix(">=")
    assert re.fullmatch(r"\d+\.\d+\.\d+", lowest), f"requires_ansible {runtime['requires_ansible']!r} is not >=X.Y.Z"
    assert set(runtime["action_groups"]["imap"]) == {"mail_target", "sync_task", "sync_task_info", "migrate"}
    work = tmp_path_factory.mktemp("lowest")
    core = work / "ansible-core"
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target",
          str(core), f"ansible-core=={lowest}"])
    collections = work / "collections"
    env = dict(ansible_env(collections, work / "home"), PYTHONPATH=str(core))
    assert f"core {lowest}" in _run([str(core / "bin" / "ansible"), "--version"], env=env).stdout
    _run([str(core / "bin" / "ansible-galaxy"), "collection", "install", "--offline", "-p", str(collections), str(tarball)],
         env=env)
    playbook = work / "play.yml"
    playbook.write_text(f"""\
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/mailops.imap.imap:
      config_dir: {work}/config
      state_dir: {work}/state
  tasks:
    - mailops.imap.mail_target:
        master_password: not-a-real-password
    - mailops.imap.sync_task:
        tasks:
          - {{name: lowest, local_user: alice, remote_user: alice@old.example, remote_password: pw, remote_host: old.example}}
    - mailops.imap.sync_task_info:
      register: info
    - ansible.builtin.assert:
        that: info.tasks | map(attribute='name') | list == ['lowest']
""", encoding="utf-8")
    proc = _run([str(core / "bin" / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook), "-e",
                 f"ansible_python_interpreter={sys.executable}"], env=dict(env, ANSIBLE_LOCALHOST_WARNING="0"), cwd=work)
    output = proc.stdout + proc.stderr
    assert "WARNING" not in output and "failed=0" in output, output
    assert (work / "config" / "tasks" / "lowest.json").is_file(), "module_defaults of the group set config_dir"
