# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rewrite the parts of files that are generated from the schema of the task and target fields.

Today one: the ``options`` of ``imapsync_target`` and ``imapsync_tasks`` in ``roles/imapsync/meta/argument_specs.yml``
(a role's argument spec is YAML that Ansible reads as it is, so it cannot be computed when read, as the modules'
doc fragment is). Each generated block sits between a ``# BEGIN generated`` and an ``# END generated`` line.

    python tests/update_generated.py           rewrite the generated blocks
    python tests/update_generated.py --check   only say which file is stale (exit 1)

tests/unit/plugins/module_utils/_engine/test_schema.py fails while a committed file is stale.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import typing as t
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLE_SPECS = ROOT / "roles" / "imapsync" / "meta" / "argument_specs.yml"
SOURCE = "plugins/module_utils/_engine/schema.py"
_BLOCK = re.compile(r"^(?P<indent> *)# BEGIN generated (?P<what>[a-z_]+) .*?\n.*?^(?P=indent)# END generated\n", re.M | re.S)


def _schema() -> t.Any:
    """The engine's schema module, imported from this tree (the engine is a package of relative imports)."""
    sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
    try:
        return importlib.import_module("_engine.schema")
    finally:
        sys.path.pop(0)


class _Dumper(yaml.SafeDumper):  # pylint: disable=too-many-ancestors
    """Lists indented under their key, as in the rest of the file (and as yamllint's indentation rule wants)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _block(what: str, indent: str) -> str:
    schema = _schema()
    faces = {"imapsync_target": (schema.Target, schema.Face.ROLE_TARGET), "imapsync_tasks": (schema.Task, schema.Face.ROLE_TASK)}
    cls, face = faces[what]
    text = yaml.dump({"options": schema.role_options(cls, face)}, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)
    body = "".join(f"{indent}{line}\n" if line else "\n" for line in text.splitlines())
    return (f"{indent}# BEGIN generated {what} (tests/update_generated.py, from {SOURCE}): do not edit\n"
            f"{body}{indent}# END generated\n")


def render(text: str) -> str:
    """``text`` with every generated block rendered again from the schema."""
    return _BLOCK.sub(lambda m: _block(m.group("what"), m.group("indent")), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale, write nothing")
    args = parser.parse_args()
    text = ROLE_SPECS.read_text(encoding="utf-8")
    fresh = render(text)
    if fresh == text:
        return 0
    if args.check:
        print(f"{ROLE_SPECS.relative_to(ROOT)} is stale: run python tests/update_generated.py", file=sys.stderr)
        return 1
    ROLE_SPECS.write_text(fresh, encoding="utf-8")
    print(f"rewrote {ROLE_SPECS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
