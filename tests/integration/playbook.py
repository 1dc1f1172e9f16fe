"""Run a few module tasks through a real ansible-playbook and collect their results.

The module arguments travel in an extra-vars file (mode 0600), never on a command line; while the
playbook runs, a watcher checks that no given secret shows up in any process's arguments or environment.
Every step is registered with ``ignore_errors``, so a failed step's result (``msg``, ``kind``...) is
collected like the others; a last task writes them to a file in the ansible-playbook process itself
(action_plugins/save_results.py), not through a module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.secrets import SecretWatcher

ACTION_PLUGINS = Path(__file__).resolve().parent / "action_plugins"  # save_results, the last step of every play


@dataclass
class Played:
    proc: subprocess.CompletedProcess
    results: list[dict]

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr

    @property
    def result(self) -> dict:
        """The result of the last step."""
        return self.results[-1]


def ansible_playbook() -> str:
    path = shutil.which("ansible-playbook")
    if path is None:
        pytest.fail("ansible-playbook is not on PATH: run the integration tests through `make integration`", pytrace=False)
    return path


Step = t.Union[t.Tuple[str, dict], t.Tuple[str, dict, dict]]


def _keywords(step: Step) -> dict:
    return step[2] if len(step) > 2 else {}  # type: ignore[misc]


def _playbook(steps: t.Sequence[Step]) -> str:
    lines = ["- hosts: localhost", "  gather_facts: false", "  tasks:"]
    for index, step in enumerate(steps):
        module = step[0]
        lines += [
            f"    - name: Step {index} ({module})",
            f"      {module}: \"{{{{ steps[{index}] }}}}\"",
            f"      register: step{index}",
            "      ignore_errors: true",
        ]
        lines += [f"      {key}: {json.dumps(value)}" for key, value in _keywords(step).items()]
    registered = ", ".join(f"step{i}" for i in range(len(steps)))
    lines += [
        "    - name: Save the results",
        "      save_results:",  # action_plugins/save_results.py
        f"        content: \"{{{{ [{registered}] | to_json }}}}\"",
        "        dest: \"{{ result_file }}\"",
        "      check_mode: false",
        "      diff: false",
        "      changed_when: false",
    ]
    return "\n".join(lines) + "\n"


def play(tmp_path: Path, steps: t.Sequence[Step], *args: str, secrets: tuple[str, ...] = (),
         wrapper: tuple[str, ...] = ()) -> Played:
    """Run ``steps`` (module name, arguments[, task keywords]) in one play with ``args`` (``--check``, ``--diff``,
    ``-vvv``...), each step with ignore_errors.

    The output must not hold any of ``secrets``, nor may any process's arguments or environment while the play
    runs. ``wrapper`` runs ansible-playbook through another command (which gets its command line as last arguments).
    """
    work = tmp_path / "play"
    work.mkdir(exist_ok=True)
    playbook = work / "play.yml"
    playbook.write_text(_playbook(steps), encoding="utf-8")
    result_file = work / "results.json"
    if result_file.exists():
        result_file.unlink()
    extra = work / "vars.json"
    extra.write_text(json.dumps({"steps": [step[1] for step in steps], "result_file": str(result_file)}), encoding="utf-8")
    os.chmod(extra, 0o600)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_PYTHON_INTERPRETER=os.environ.get("PYTHON", ""),
               ANSIBLE_ACTION_PLUGINS=str(ACTION_PLUGINS))
    if not env["ANSIBLE_PYTHON_INTERPRETER"]:
        env["ANSIBLE_PYTHON_INTERPRETER"] = str(Path(ansible_playbook()).parent / "python")
    cmd = [*wrapper, ansible_playbook(), "-i", "localhost,", "-c", "local", str(playbook), "-e", f"@{extra}", *args]
    with SecretWatcher(secrets) as watcher:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert not watcher.seen, f"a password appeared in a process's arguments or environment: {watcher.seen}"
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    for secret in secrets:
        assert secret not in output, "a password appeared in the output"
    results = json.loads(result_file.read_text(encoding="utf-8"))
    result_file.unlink()
    return Played(proc, results)
