"""The report's CSV and Markdown (plugins/filter/report.py): hostile folder names and account names stay text."""

from __future__ import annotations

import csv
import io

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.mailops.imap.plugins.filter import report
from ansible_collections.mailops.imap.plugins.module_utils._engine.report import COUNTS


def folder(name: str, **counts: int) -> dict:
    return {"folder": name, "local_folder": name, "status": counts.pop("status", "incomplete"),
            **dict.fromkeys(COUNTS, 0), **counts}


def artifact(*folders: dict, account: str = "alice at imap.example.org -> alice", **extra) -> dict:
    entry = {"account": account, "status": "incomplete", "kind": None, "message": None, "folders": list(folders),
             "totals": {**dict.fromkeys(COUNTS, 0), "missing": 1}}
    entry.update(extra)
    return {"hosts": {"w1": [entry]}, "missing_hosts": []}


@pytest.mark.parametrize(("name", "cell"), [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1", "'+1"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    # Control characters are written as escapes, so a cell never starts with a tab or a carriage return.
    ("\tTab", "\\tTab"), ("\rCR", "\\rCR"), ("Plain=1", "Plain=1")])
def test_a_csv_cell_that_a_spreadsheet_would_run_starts_with_a_quote(name, cell):
    rows = list(csv.reader(io.StringIO(report.report_csv(artifact(folder(name, remote_messages=1))))))
    assert rows[0] == list(report.CSV_COLUMNS)
    assert rows[1][report.CSV_COLUMNS.index("folder")] == cell


def test_csv_rows_keep_commas_quotes_and_line_breaks_of_names_as_one_cell():
    name = 'a,b "c"\nd'
    rows = list(csv.DictReader(io.StringIO(report.report_csv(artifact(folder(name, remote_messages=7, refused=1))))))
    (row,) = rows
    assert row["folder"] == 'a,b "c"\\nd' and row["remote_messages"] == "7" and row["refused"] == "1"
    assert row["host"] == "w1" and row["account_status"] == "incomplete"


def test_a_failed_account_is_one_csv_row_with_its_kind_and_message():
    text = report.report_csv(artifact(kind="auth_failed", message="-refused; check the password.", status="failed"))
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert (row["folder"], row["error_kind"], row["error_message"]) == ("", "auth_failed", "'-refused; check the password.")


def test_markdown_shows_names_as_written_and_adds_no_markup():
    hostile = "<script>alert(1)</script> | *b* [l](http://x) `c` _i_ ~s~ \\ &amp;"
    page = report.report_markdown(artifact(folder(hostile, missing=1, not_copied=1), account="a|b <i>"), "2026-01-31T09:00:00")
    assert "<script>" not in page and "<i>" not in page
    # A backslash is shown as text.printable writes it (two), each escaped for Markdown.
    assert "&lt;script&gt;alert(1)&lt;/script&gt; \\| \\*b\\* \\[l\\](http://x) \\`c\\` \\_i\\_ \\~s\\~ \\\\\\\\ &amp;amp;" in page
    assert "| w1 | a\\|b &lt;i&gt; |" in page
    assert "Measured 2026-01-31T09:00:00 (UTC)." in page
    # Every table row has as many cells as its header.
    for line in page.splitlines():
        if line.startswith("| Host | Account | Remote folder"):
            header = line
    cells = header.count(" | ")
    assert all(line.replace("\\|", "").count(" | ") == cells for line in page.splitlines()
               if line.startswith("| w1 |") and "Remote folder" not in line and line.count(" | ") >= cells)


def test_markdown_lists_only_folders_that_are_not_complete():
    page = report.report_markdown(artifact(folder("Done", status="complete", remote_messages=3), folder("Open", missing=1)))
    assert "| Open |" in page and "| Done |" not in page
    complete = report.report_markdown(artifact(folder("Done", status="complete")))
    assert "None: every remote message of every folder is on the local server." in complete


def test_sizes_are_human_readable():
    assert [report.human_size(n) for n in (0, 1023, 1536, 5 * 1024 ** 3)] == ["0 B", "1023 B", "1.5 KiB", "5.0 GiB"]


@pytest.mark.parametrize("bad", [None, {"hosts": []}, {"hosts": {"w1": "x"}}, {"hosts": {"w1": ["x"]}}])
def test_input_that_is_not_a_report_is_refused_with_a_sentence(bad):
    with pytest.raises(AnsibleFilterError, match="report: "):
        report.report_csv(bad)


@pytest.mark.parametrize("count", [-1, "3", 1.5, True])
def test_a_count_that_is_not_a_whole_number_is_refused(count):
    with pytest.raises(AnsibleFilterError, match="remote_messages is"):
        report.report_csv(artifact(folder("INBOX", remote_messages=count)))


def test_a_folders_own_failure_is_in_its_row_and_a_hosts_failure_on_the_page():
    broken = folder("Archive", status="failed", kind="protocol_error", message="The remote server refused to open it.")
    given = artifact(broken) | {"host_failures": {"w2": "accounts entry 1: remote_host is required."}}
    (row,) = list(csv.DictReader(io.StringIO(report.report_csv(given))))
    assert (row["folder_status"], row["error_kind"], row["error_message"]) == (
        "failed", "protocol_error", "The remote server refused to open it.")
    page = report.report_markdown(given)
    assert "| Archive | Archive | failed |" in page and "protocol\\_error: The remote server refused to open it. |" in page
    assert "Host w2 could not report (its accounts are not in this report): accounts entry 1: remote\\_host is required." in page
