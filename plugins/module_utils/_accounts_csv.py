# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one reader of an accounts CSV file (``accounts_file`` of mailops.imap.migrate, the lookup
mailops.imap.accounts_csv), and the checks the bulk paths share on accounts that are not validated yet.

The file: UTF-8 (a leading byte order mark is dropped), a header row of task field names (the fields of one
account of ``accounts``: :func:`_argspec.account_options`), then one account a row. Messages name the file, the
line and the header's column names, never a cell's value. No Ansible import beyond ``ansible.module_utils``.
"""

from __future__ import annotations

import codecs
import csv
import io
import typing as t

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.mailops.imap.plugins.module_utils._argspec import REQUIRED_TASK_OPTIONS, account_options, merge_account
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, schema
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError


# remote_auth and the fields of every way to log in (schema.AUTH_FIELDS).
_AUTH_FIELDS = frozenset({"remote_auth", *(name for names in schema.AUTH_FIELDS.values() for name in names)})


def decode_utf8(data: bytes, source: str) -> str:
    """``data`` decoded as UTF-8 (a leading byte order mark dropped); ConfigError naming ``source``, the line and
    the column (in characters, from 1) of the first byte that is not UTF-8 otherwise."""
    body = data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        line_start = body.rfind(b"\n", 0, exc.start) + 1
        column = len(body[line_start:exc.start].decode("utf-8")) + 1
        raise ConfigError(f"{source} line {line}, column {column}: byte 0x{body[exc.start]:02X} is not UTF-8 text; save the "
                          "file as UTF-8 (in a spreadsheet: CSV UTF-8).") from None


def split_exclude(cell: str) -> list[str]:
    """An ``exclude`` cell: one regex a line when the cell holds line breaks, else comma-separated (as NethServer 8)."""
    if "\n" in cell or "\r" in cell:
        return [line for line in cell.splitlines() if line.strip()]
    return [part.strip() for part in cell.split(",") if part.strip()]


def read_accounts_csv(data: bytes | str, source: str) -> tuple[list[dict[str, t.Any]], list[str]]:
    """The accounts of a CSV file (header row of task field names, one account a row) and their labels.

    ``data`` is the file's bytes (decoded by :func:`decode_utf8`) or its text; ``source`` names the file in
    messages (``accounts_file users.csv``). Blank cells are not given (the value given once for all accounts
    applies), blank rows are skipped; a label names the line a row starts on (the header is line 1). Raises
    ConfigError for a file that cannot be an account list (not UTF-8, no header, unknown or repeated column, a row
    with too many cells, bad quoting, no account). The values are not validated here: see
    :func:`_argspec.parse_accounts`.
    """
    text = decode_utf8(data, source) if isinstance(data, bytes) else data.removeprefix("\ufeff")
    allowed = account_options()
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header: list[str] | None = None
        header_line = 1
        accounts: list[dict[str, t.Any]] = []
        labels: list[str] = []
        line = 1  # the line the next record starts on
        for row in reader:
            start, line = line, reader.line_num + 1
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if header is None:
                header, header_line = [cell.lower() for cell in cells], start
                unknown = [name for name in header if name not in allowed]
                if unknown:
                    raise ConfigError(
                        f"{source} line {start}: unknown column(s) {', '.join(repr(n) for n in unknown)}; the header row names "
                        f"task fields: {', '.join(allowed)} (the target and the options shared by all accounts are given "
                        "once, outside the file)."
                    )
                repeated = sorted({name for name in header if header.count(name) > 1})
                if repeated:
                    raise ConfigError(f"{source} line {start}: the column(s) {', '.join(repeated)} appear more than once; keep one of each.")
                continue
            if len(cells) > len(header):
                raise ConfigError(f"{source} line {start}: {len(cells)} cells but the header on line {header_line} names "
                                  f"{len(header)} columns; quote cells that contain a comma.")
            account: dict[str, t.Any] = {}
            for name, cell in zip(header, row):
                if cell.strip() == "":
                    continue
                if name == "exclude":
                    account[name] = split_exclude(cell)
                elif allowed[name].get("no_log"):
                    account[name] = cell  # exactly as written: a password may begin or end with spaces
                else:
                    account[name] = cell.strip()
            accounts.append(account)
            labels.append(f"{source} line {start}")
    except csv.Error as exc:
        raise ConfigError(f"{source} line {reader.line_num}: not valid CSV ({exc}); check the quoting of that row.") from None
    if header is None:
        raise ConfigError(f"{source} is empty; give a header row of task field names, then one account a row.")
    if not accounts:
        raise ConfigError(f"{source} has a header row but no account; add one account a row below it.")
    return accounts, labels


def fields_problem(value: t.Any, name: str) -> str:
    """'' when ``value`` is a dictionary of account fields (the values given once for all accounts), else a sentence
    naming ``name``, the valid fields and the unknown ones."""
    allowed = account_options()
    unknown = [str(key) for key in value if key not in allowed] if isinstance(value, t.Mapping) else []
    if isinstance(value, t.Mapping) and not unknown:
        return ""
    return (f"{name} must be a dictionary of task fields ({', '.join(allowed)}); "
            f"unknown: {', '.join(unknown) if unknown else 'none, but it is not a dictionary'}.")


def _converted(values: t.Any, validator: ArgumentSpecValidator) -> dict[str, t.Any] | None:
    """Account fields converted to their types as the migrate action converts them, or None when they are not valid."""
    if not isinstance(values, t.Mapping):
        return None
    checked = validator.validate(dict(values))
    if checked.error_messages:
        return None
    return {name: value for name, value in checked.validated_parameters.items() if value is not None}


def repeated_accounts(accounts: t.Sequence[t.Any], labels: t.Sequence[str], defaults: t.Any) -> list[str]:
    """``"LABEL repeats LABEL"`` for each account that repeats an earlier one, once ``defaults`` (the fields given once
    for all accounts) applied: the same remote user, remote host, remote port and local user, so the same state
    (:func:`config.state_key`). An account whose values are not valid is left to the migrate module, which names it."""
    validator = ArgumentSpecValidator(account_options())
    shared = _converted(defaults if defaults is not None else {}, validator)
    if shared is None:
        return []
    target = config.Target()
    seen: dict[str, str] = {}
    found: list[str] = []
    for label, account in zip(labels, accounts):
        values = _converted(account, validator)
        if values is None:
            continue
        data = merge_account(shared, values)
        if any(data.get(name) in (None, "") for name in REQUIRED_TASK_OPTIONS):
            continue
        # How the account logs in is not part of the key, and its password or client secret may come later
        # (mailops_imap_remote_password of the playbook): checked as a password login.
        data = {name: value for name, value in data.items() if name not in _AUTH_FIELDS}
        data.update(target=target.name, remote_password="-")
        try:
            task = config.parse_task(data)
        except ConfigError:
            continue
        key = config.state_key(task, target)
        if key in seen:
            found.append(f"{label} repeats {seen[key]}")
        else:
            seen[key] = label
    return found
