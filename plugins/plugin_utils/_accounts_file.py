# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An accounts CSV file on the controller: found with Ansible's search path, read (and decrypted when it is
vault-encrypted) in memory, then parsed by the one reader, :func:`_accounts_csv.read_accounts_csv`.

Used by the migrate action plugin (``accounts_file``) and by the lookup mailops.imap.accounts_csv
(playbooks/migrate.yml), so both find, decrypt and read a file alike. No decrypted copy of the file is written.
"""

from __future__ import annotations

import os
import typing as t

from ansible.errors import AnsibleError, AnsibleFileNotFound

from ansible_collections.mailops.imap.plugins.module_utils._accounts_csv import read_accounts_csv
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError

if t.TYPE_CHECKING:
    from ansible.parsing.dataloader import DataLoader


def find_accounts_file(loader: DataLoader, search_path: list[str], path: t.Any, current_dir: bool = False) -> str:
    """The file ``path`` names: an absolute path as given; a relative one in the ``files/`` directory, then the
    directory, of each entry of ``search_path`` (the role's, the playbook's: as ``src`` of ansible.builtin.copy), then,
    with ``current_dir``, in the current directory. ConfigError with a sentence when there is none."""
    if not isinstance(path, str) or not path.strip():
        raise ConfigError("accounts_file: give the path of a CSV file on the controller.")
    try:
        return loader.path_dwim_relative_stack(search_path, "files", path)
    except AnsibleFileNotFound:
        pass
    if current_dir and not os.path.isabs(path) and os.path.isfile(path):
        return os.path.abspath(path)
    where = "the current directory, or to the playbook's directory (or its files/ directory)" if current_dir else \
        "the playbook's directory (or its files/ directory)"
    raise ConfigError(f"accounts_file: {path} was not found on the controller; give an absolute path, or a path relative to {where}.")


def read_accounts_bytes(loader: DataLoader, found: str, path: str) -> bytes:
    """The bytes of the file ``found`` (``path`` as the user gave it, for messages), decrypted in memory when it is
    vault-encrypted. ConfigError with a sentence when it cannot be read."""
    try:
        data, _show_content = loader._get_file_contents(found)  # pylint: disable=protected-access
    except AnsibleError as exc:
        raise ConfigError(f"accounts_file: {path} cannot be read ({exc.message}); check the file and its vault password.") from None
    return bytes(data)


def read_accounts_file(loader: DataLoader, found: str, path: str, source: str) -> tuple[list[dict[str, t.Any]], list[str]]:
    """The accounts of the CSV file ``found`` and their labels (``SOURCE line N``); ConfigError with a sentence
    naming ``source`` and the line (never a cell's value) when it cannot be an account list."""
    return read_accounts_csv(read_accounts_bytes(loader, found, path), source)
