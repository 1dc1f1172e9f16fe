# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Provider presets (remote_provider): the defaults they give, what the task gives wins, stored definitions read back."""

from __future__ import annotations

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, folders, imapsync_cmd, presets, schema
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError

BASE = {"local_user": "alice", "remote_user": "alice@example.org", "remote_password": "pw", "target": "default"}

# The folders a Gmail account shows over IMAP (English interface) and those a migration must copy.
GMAIL_LIST = ["INBOX", "[Gmail]/All Mail", "[Gmail]/Drafts", "[Gmail]/Important", "[Gmail]/Sent Mail", "[Gmail]/Spam",
              "[Gmail]/Starred", "[Gmail]/Trash", "Receipts", "Work/All Mail notes"]
GMAIL_COPIED = {"INBOX", "[Gmail]/Drafts", "[Gmail]/Sent Mail", "[Gmail]/Spam", "[Gmail]/Trash", "Receipts", "Work/All Mail notes"}


def test_microsoft365_gives_host_port_and_implicit_tls():
    task = config.parse_task(dict(BASE, remote_provider="microsoft365"))
    assert (task.remote_host, task.remote_port, task.remote_security) == ("outlook.office365.com", 993, "ssl")
    assert task.folders == "all" and task.exclude == ()


def test_google_leaves_out_the_virtual_folders_and_copies_the_others():
    task = config.parse_task(dict(BASE, remote_provider="google"))
    assert (task.remote_host, task.remote_port, task.remote_security) == ("imap.gmail.com", 993, "ssl")
    assert task.folders == "all_except"
    dropped = folders.excluded_names(GMAIL_LIST, task.exclude_patterns())
    assert set(GMAIL_LIST) - dropped == GMAIL_COPIED
    assert folders.excluded_names(["[Google Mail]/All Mail", "[Google Mail]/Sent Mail"], task.exclude_patterns()) == {
        "[Google Mail]/All Mail"}


def test_what_the_task_gives_wins_and_its_excludes_are_kept():
    task = config.parse_task(dict(BASE, remote_provider="google", remote_host="imap.example.org", remote_security="starttls",
                                  exclude=["^Receipts$"]))
    assert (task.remote_host, task.remote_port, task.remote_security) == ("imap.example.org", 143, "starttls")
    assert task.exclude == ("^Receipts$", *presets.GMAIL_VIRTUAL)
    copy_all = config.parse_task(dict(BASE, remote_provider="google", folders="all"))
    assert copy_all.folders == "all"  # an explicit choice: exclude is ignored (with the usual warning)
    assert config.parse_task(dict(BASE, remote_provider="microsoft365", remote_port=1993)).remote_port == 1993


def test_a_stored_definition_reads_back_unchanged():
    task = config.parse_task(dict(BASE, remote_provider="google", exclude=["^Receipts$"]))
    public = task.public()
    again = config.parse_task(dict(public, remote_password="pw"), declared=False)
    assert again == task
    assert public["remote_provider"] == "google" and public["exclude"].count(presets.GMAIL_VIRTUAL[0]) == 1


def test_no_preset_changes_nothing_and_a_bad_one_is_refused():
    assert config.parse_task(dict(BASE, remote_host="imap.example.org")).remote_provider == "none"
    with pytest.raises(ConfigError, match=r"remote_provider: 'gmail' is not a valid value; use one of none, microsoft365, google\."):
        config.parse_task(dict(BASE, remote_provider="gmail"))
    with pytest.raises(ConfigError, match="remote_host is required"):
        config.parse_task(dict(BASE, remote_provider="none"))


def test_the_gmail_patterns_mean_the_same_to_imapsync():
    task = config.parse_task(dict(BASE, remote_provider="google", engine="imapsync"))
    imapsync_cmd.check_expressible(task, config.Target(master_password="m"))
    argv = imapsync_cmd.render(task, config.Target(master_password="m"), "/p1", "/p2", (("", "/"), []))
    assert [argv[i + 1] for i, arg in enumerate(argv) if arg == "--exclude"] == list(presets.GMAIL_VIRTUAL)


@pytest.mark.parametrize("face", [schema.Face.MIGRATE, schema.Face.TASK, schema.Face.ROLE_TASK])
def test_a_preset_wins_over_what_an_argument_spec_fills_in(face):
    """The modules and the role validate their options before parse_task sees them: an argument spec that filled in
    remote_security or folders would hide the preset's (Gmail on port 143, its virtual folders copied twice)."""
    spec = schema.argument_spec(config.Task, face)
    given = {name: value for name, value in dict(BASE, remote_provider="google", name="g").items() if name in spec}
    validated = ArgumentSpecValidator(spec).validate(given)
    assert validated.error_messages == []
    task = config.parse_task({name: value for name, value in validated.validated_parameters.items()
                              if value is not None and name in config.TASK_FIELDS})
    assert (task.remote_host, task.remote_port, task.remote_security, task.folders) == ("imap.gmail.com", 993, "ssl",
                                                                                        "all_except")
    assert set(presets.GMAIL_VIRTUAL) <= set(task.exclude)
