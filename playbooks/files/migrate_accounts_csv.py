# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read an accounts CSV on the controller for playbooks/migrate.yml, which shares its rows out across hosts.

migrate.yml runs this with the controller's Python (``ansible_playbook_python``) and the CSV file on standard
input, base64-encoded (so that its bytes arrive as they are, UTF-8 or not): Ansible's file lookup reads the file
(decrypting it in memory when it is vault-encrypted), so no decrypted copy of the file is written anywhere.
Standard library only, no Ansible import.

Prints one JSON object: ``{"accounts": [...], "labels": [...]}`` (one dict of task fields per account and the
line it starts on, "accounts_file PATH line N"), or ``{"error": "sentence"}`` for a file that cannot be an
account list. Exits 0 either way, so that the playbook can show the sentence while hiding the accounts
(``no_log``). No message ever holds a cell of a row: only header names and line numbers.

The format is the one of ``mailops.imap.migrate``'s ``accounts_file`` (plugins/module_utils/_argspec.py,
``read_accounts_csv``), rule for rule; tests/integration/test_playbooks.py checks that both read the same
files alike. Values are validated later, by the migrate action plugin, on each host's slice.
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import io
import json
import os
import sys

# The columns an accounts CSV may have: the fields of one account of mailops.imap.migrate's "accounts".
COLUMNS = (
    "local_user", "remote_user", "remote_password", "remote_host", "remote_security", "remote_port",
    "validate_certs", "ca_file", "folders", "exclude", "delete_remote", "delete_remote_days",
    "special_use_mapping", "sieve", "delivery",
)


def _load_csvtext():
    """The collection's plugins/module_utils/_csvtext.py (the UTF-8 rule the migrate action plugin applies too)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "plugins", "module_utils", "_csvtext.py")
    spec = importlib.util.spec_from_file_location("mailops_imap_csvtext", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


csvtext = _load_csvtext()


class CsvError(Exception):
    """The file cannot be an account list; the message is a sentence without any cell value."""


def split_exclude(cell: str) -> list[str]:
    """An ``exclude`` cell: one regex a line when the cell holds line breaks, else comma-separated."""
    if "\n" in cell or "\r" in cell:
        return [line for line in cell.splitlines() if line.strip()]
    return [part.strip() for part in cell.split(",") if part.strip()]


def read_accounts(text: str, source: str) -> tuple[list[dict], list[str]]:
    """The accounts of the CSV text and their labels (the line each row starts on; the header is line 1)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    header_line = 1
    accounts: list[dict] = []
    labels: list[str] = []
    line = 1
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if header is None:
                header, header_line = [cell.lower() for cell in cells], start
                unknown = [name for name in header if name not in COLUMNS]
                if unknown:
                    raise CsvError(
                        f"{source} line {start}: unknown column(s) {', '.join(repr(n) for n in unknown)}; the header row "
                        f"names task fields: {', '.join(COLUMNS)} (the target and the other options are given once, "
                        "in migrate_defaults and migrate_target)."
                    )
                repeated = sorted({name for name in header if header.count(name) > 1})
                if repeated:
                    raise CsvError(f"{source} line {start}: the column(s) {', '.join(repeated)} appear more than once; keep one of each.")
                continue
            if len(cells) > len(header):
                raise CsvError(f"{source} line {start}: {len(cells)} cells but the header on line {header_line} names "
                               f"{len(header)} columns; quote cells that contain a comma.")
            account: dict = {}
            for name, cell in zip(header, row):
                if cell.strip() == "":
                    continue
                if name == "exclude":
                    account[name] = split_exclude(cell)
                elif name == "remote_password":
                    account[name] = cell  # exactly as written: a password may begin or end with spaces
                else:
                    account[name] = cell.strip()
            accounts.append(account)
            labels.append(f"{source} line {start}")
    except csv.Error as exc:
        raise CsvError(f"{source} line {reader.line_num}: not valid CSV ({exc}); check the quoting of that row.") from None
    if header is None:
        raise CsvError(f"{source} is empty; give a header row of task field names, then one account a row.")
    if not accounts:
        raise CsvError(f"{source} has a header row but no account; add one account a row below it.")
    return accounts, labels


def main(argv: list[str]) -> int:
    source = "accounts_file " + (argv[1] if len(argv) > 1 else "-")
    try:
        data = base64.b64decode(sys.stdin.buffer.read(), validate=False)
        accounts, labels = read_accounts(csvtext.decode_utf8(data, source), source)
    except (CsvError, csvtext.NotUtf8) as exc:
        print(json.dumps({"error": str(exc)}))
    else:
        print(json.dumps({"accounts": accounts, "labels": labels}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
