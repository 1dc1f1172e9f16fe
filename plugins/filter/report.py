# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration report of a fleet as CSV (report_csv) and as a Markdown page (report_markdown), for
playbooks/report.yml (docs/report.md). The input is the report's artifact: ``hosts`` maps each host to the
``accounts`` that mailops.imap.migration_report returned there.

Every value came from a server or an account list at some point, so each is made safe for where it goes: text
through text.printable (no control character: a tab is written ``\\t``), a CSV cell that a spreadsheet would run as
a formula (starting with ``= + - @``) prefixed with ``'``, Markdown punctuation backslash-escaped and ``& < >``
written as entities (nothing from a value starts a line of the page), counts checked to be whole numbers.
"""

from __future__ import annotations

import csv
import html
import io
import re
import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.mailops.imap.plugins.module_utils._engine.report import COUNTS, REASONS
from ansible_collections.mailops.imap.plugins.module_utils._engine.text import printable

CSV_COLUMNS = ("host", "account", "account_status", "folder", "local_folder", "folder_status", *COUNTS, "error_kind",
               "error_message")
_FORMULA_START = ("=", "+", "-", "@")  # (a tab or a carriage return never starts a printable text)
# Markup inside a line (every text of the page is inside a line: a table cell or after other words): emphasis, code,
# links and images, strike-through, a cell's end; a backslash, so that no escape is undone.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
REASON_WORDS = {
    "excluded": "the task's folder rules (folders, exclude) do not sync the folder",
    "too_big": "larger than the local server accepts; never fetched",
    "refused": "the local server refused it (for example over quota); the next run tries it again",
    "not_copied": "not copied yet (new since the last run, or the last run stopped before it); run the migration again",
}


def _text(value: t.Any) -> str:
    return "" if value is None else printable(value)


def _count(value: t.Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AnsibleFilterError(f"report: {name} is {value!r}, not a count; give the accounts that "
                                 "mailops.imap.migration_report returned.")
    return value


def _accounts(report: t.Any) -> list[tuple[str, dict[str, t.Any]]]:
    """(host, account report) for every account of ``report`` (the artifact), by host then in the order given."""
    if not isinstance(report, t.Mapping) or not isinstance(report.get("hosts"), t.Mapping):
        raise AnsibleFilterError("report: give the report's artifact, a dictionary whose hosts maps each host to the "
                                 "accounts mailops.imap.migration_report returned.")
    out = []
    for host in sorted(report["hosts"]):
        accounts = report["hosts"][host]
        if not isinstance(accounts, t.Sequence) or isinstance(accounts, (str, bytes)):
            raise AnsibleFilterError(f"report: the accounts of {_text(host)} are not a list.")
        for account in accounts:
            if not isinstance(account, t.Mapping):
                raise AnsibleFilterError(f"report: an account of {_text(host)} is not a dictionary.")
            out.append((str(host), dict(account)))
    return out


def csv_cell(value: t.Any) -> str:
    """A cell a spreadsheet shows as text: printable, and not a formula (a leading ``= + - @`` gets a ``'``)."""
    text = _text(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def report_csv(report: t.Any) -> str:
    """One row per folder of every account (an account without folders, for example a failed one, has one row with
    no folder), CSV_COLUMNS first; ``error_kind`` and ``error_message`` are the folder's failure, else the account's;
    quoted as spreadsheets quote, CRLF line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for host, account in _accounts(report):
        head = [host, account.get("account"), account.get("status")]
        for folder in account.get("folders") or [{}]:
            counts = [_count(folder.get(name, 0), name) for name in COUNTS]
            failed = folder if folder.get("kind") else account  # a folder's own failure, else the account's
            tail = [failed.get("kind"), failed.get("message")]
            writer.writerow([csv_cell(cell) for cell in (*head, folder.get("folder"), folder.get("local_folder"),
                                                         folder.get("status"))] + counts + [csv_cell(cell) for cell in tail])
    return buffer.getvalue()


def markdown_text(value: t.Any) -> str:
    """Text shown as written in Markdown (and in the HTML it becomes), on one line, safe inside a table cell."""
    return html.escape(_MARKDOWN_SPECIAL.sub(r"\\\1", _text(value)), quote=False)


def human_size(value: int) -> str:
    size, unit = float(value), 0
    while size >= 1024 and unit < len(_UNITS) - 1:
        size, unit = size / 1024, unit + 1
    return f"{int(size)} {_UNITS[unit]}" if unit == 0 else f"{size:.1f} {_UNITS[unit]}"


def _row(cells: t.Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: t.Sequence[str], rows: t.Iterable[t.Sequence[str]]) -> list[str]:
    return [_row(header), _row("---" for _h in header), *(_row(row) for row in rows)]


def _count_cells(counts: t.Mapping[str, t.Any]) -> list[str]:
    return [str(_count(counts.get("remote_messages", 0), "remote_messages")),
            human_size(_count(counts.get("remote_bytes", 0), "remote_bytes")),
            str(_count(counts.get("local_messages", 0), "local_messages")),
            human_size(_count(counts.get("local_bytes", 0), "local_bytes")),
            str(_count(counts.get("missing", 0), "missing")),
            *(str(_count(counts.get(reason, 0), reason)) for reason in REASONS)]


def _failure(entry: t.Mapping[str, t.Any]) -> str:
    """An account's or a folder's failure as ``kind: message``, or nothing."""
    return markdown_text(f"{entry.get('kind')}: {entry.get('message')}") if entry.get("kind") else ""


COUNT_HEADER = ("Remote messages", "Remote size", "Local messages", "Local size", "Missing", "Excluded", "Too big",
                "Refused", "Not copied")


def report_markdown(report: t.Any, generated: t.Any = None) -> str:
    """A page to sign a migration off: the summary, one table of accounts, one of the folders with missing messages,
    and what each reason means."""
    accounts = _accounts(report)
    statuses = [account.get("status") for _host, account in accounts]
    lines = ["# Migration report", ""]
    if generated:
        lines += [f"Measured {markdown_text(generated)} (UTC).", ""]
    lines.append(f"{len(accounts)} account(s): {statuses.count('complete')} complete, {statuses.count('incomplete')} "
                 f"incomplete, {statuses.count('failed')} failed.")
    missing_hosts = report.get("missing_hosts") or []
    if missing_hosts:
        lines.append(f"Hosts without an answer (their accounts are not in this report): "
                     f"{', '.join(markdown_text(host) for host in missing_hosts)}.")
    host_failures = report.get("host_failures") or {}
    if isinstance(host_failures, t.Mapping):
        lines += [f"Host {markdown_text(host)} could not report (its accounts are not in this report): "
                  f"{markdown_text(host_failures[host])}" for host in sorted(host_failures)]
    lines += ["", "## Accounts", ""]
    lines += _table(("Host", "Account", "Status", *COUNT_HEADER, "Why it failed"), (
        [markdown_text(host), markdown_text(account.get("account")), markdown_text(account.get("status")),
         *_count_cells(account.get("totals") or {}), _failure(account)]
        for host, account in accounts))
    rows = [[markdown_text(host), markdown_text(account.get("account")), markdown_text(folder.get("folder")),
             markdown_text(folder.get("local_folder")), markdown_text(folder.get("status")), *_count_cells(folder),
             _failure(folder)]
            for host, account in accounts for folder in account.get("folders") or []
            if folder.get("status") != "complete"]
    lines += ["", "## Folders with messages not on the local server", ""]
    lines += _table(("Host", "Account", "Remote folder", "Local folder", "Status", *COUNT_HEADER, "Why it failed"),
                    rows) if rows else [
        "None: every remote message of every folder is on the local server."]
    lines += ["", "## Why a message is missing", ""]
    lines += [f"- **{header}**: {REASON_WORDS[reason]}." for header, reason in zip(COUNT_HEADER[5:], REASONS)]
    return "\n".join(lines) + "\n"


class FilterModule:
    """The filters of mailops.imap for the migration report."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"report_csv": report_csv, "report_markdown": report_markdown}
