# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which remote folders are synced and where they land (docs/spec.md "Folders")."""

from __future__ import annotations

import re

from ansible_collections.mailops.imap.plugins.module_utils._engine import folders

SLASH_NS = (("", "/"), ["Shared/", "Other Users/"])
DOT_NS = (("", "."), [])
LOCAL = [((b"\\HASNOCHILDREN", b"\\SENT"), ".", "Sent"), ((b"\\TRASH",), ".", "Trash"), ((b"\\JUNK",), ".", "Junk"),
         ((b"\\DRAFTS",), ".", "Drafts"), ((), ".", "INBOX")]


def listing(*names, flags=None):
    flags = flags or {}
    return [(flags.get(name, ()), "/", name) for name in names]


def plan_map(remote, mode="all", exclude=(), special=True, local=None, remote_ns=SLASH_NS, local_ns=DOT_NS):
    patterns = [re.compile(p) for p in exclude]
    plans = folders.plan(remote, remote_ns, local if local is not None else LOCAL, local_ns, mode, patterns, special)
    return {p.remote: p.local for p in plans}


def test_translate_separators_and_local_separator_inside_a_name():
    assert folders.translate("Releases/v1.2", "", "/", "", ".") == "Releases.v1_2"
    assert folders.translate("a.b/c", "", "/", "", ".") == "a_b.c"
    assert folders.translate("a/b_c", "", ".", "", "/") == "a_b_c"
    assert folders.translate("inbox", "", "/", "", ".") == "INBOX"
    assert folders.translate("INBOX.Sub", "INBOX.", ".", "", "/") == "Sub"
    assert folders.translate("Sub/Deeper", "", "/", "INBOX.", ".") == "INBOX.Sub.Deeper"


def test_translate_replaces_control_characters_like_a_local_separator():
    # A remote name chosen to forge log lines and drive terminals never reaches the local server (or a log) raw.
    assert folders.translate("x\nstatus success\x1b[2J/in\r\x00side\x7f\x9b", "", "/", "", ".") == "x_status success_[2J.in__side__"
    assert folders.translate("Caf\u00e9 \u65e5\u672c/ok", "", "/", "", ".") == "Caf\u00e9 \u65e5\u672c.ok"  # other Unicode is kept


def test_noselect_and_other_namespaces_skipped_children_kept():
    remote = listing("INBOX", "Ghost", "Ghost/Child", "Shared/team/x", "Other Users/bob/INBOX",
                     flags={"Ghost": (b"\\NOSELECT", b"\\HASCHILDREN")})
    assert plan_map(remote) == {"INBOX": "INBOX", "Ghost/Child": "Ghost.Child"}


# NAMESPACE of Cyrus IMAP 3.6 with Debian's configuration (altnamespace: no): personal "INBOX.", other users "user.",
# shared with the EMPTY prefix; and with its upstream defaults (altnamespace: yes, unixhierarchysep: yes).
CYRUS_DEBIAN_NS = (("INBOX.", "."), ["user.", ""])
CYRUS_UPSTREAM_NS = (("", "/"), ["Other Users/", "Shared Folders/"])


def dotted(*names):
    return [((), ".", name) for name in names]


def test_an_empty_shared_prefix_makes_every_name_outside_the_personal_prefix_shared():
    # A shared "Announcements" readable by anyone must never land in alice's account (issue: privacy).
    remote = dotted("INBOX", "INBOX.Sent", "INBOX.Projects.2024", "Announcements", "Announcements.Archive", "user",
                    "user.bob", "user.bob.Shared")
    assert plan_map(remote, remote_ns=CYRUS_DEBIAN_NS) == {"INBOX": "INBOX", "INBOX.Projects.2024": "Projects.2024",
                                                           "INBOX.Sent": "Sent"}


def test_altnamespace_prefixes_are_not_personal_and_their_roots_neither():
    remote = listing("INBOX", "Sent", "Work/2024", "Other Users", "Other Users/bob", "Other Users/bob/Shared",
                     "Shared Folders", "Shared Folders/Announcements")
    assert set(plan_map(remote, remote_ns=CYRUS_UPSTREAM_NS)) == {"INBOX", "Sent", "Work/2024"}


def test_ownership_is_by_the_longest_namespace_prefix():
    assert folders.is_personal("INBOX.Sent", "INBOX.", ["user.", ""], ".")
    assert not folders.is_personal("Sent", "INBOX.", ["user.", ""], ".")
    assert folders.is_personal("inbox", "INBOX.", ["user.", ""], ".")
    assert not folders.is_personal("INBOX.shared.x", "INBOX.", ["INBOX.shared."], ".")  # a longer other prefix wins
    assert folders.is_personal("Sent", "INBOX.", [], ".")  # no namespace holds it but the personal: the user's
    assert folders.is_personal("Sent", "", [""], "/")  # a tie: personal


def test_special_use_flag_maps_to_the_local_folder_of_the_same_use():
    remote = listing("INBOX", "Sent Items", "Gelöscht", "Sent", flags={"Sent Items": (b"\\SENT",), "Gelöscht": (b"\\TRASH",)})
    mapped = plan_map(remote)
    assert mapped["Sent Items"] == "Sent" and mapped["Gelöscht"] == "Trash"
    assert mapped["Sent"] == "Sent"  # a plain folder of that name keeps its name
    assert plan_map(remote, special=False)["Sent Items"] == "Sent Items"


def test_well_known_names_without_special_use():
    remote = listing("INBOX", "Deleted Items", "Junk E-mail", "Sent Items", "Drafts", "Archive/2020")
    mapped = plan_map(remote, local=LOCAL + [((b"\\ARCHIVE",), ".", "Archives")])
    assert mapped["Deleted Items"] == "Trash" and mapped["Junk E-mail"] == "Junk" and mapped["Sent Items"] == "Sent"
    assert mapped["Archive/2020"] == "Archive.2020"  # only the folder itself is special, not its children
    # Without a local folder of that use the remote name is kept.
    assert plan_map(listing("INBOX", "Deleted Items"), local=[])["Deleted Items"] == "Deleted Items"


def test_announced_special_use_beats_well_known_names():
    remote = listing("INBOX", "Sent", "Sent Items", flags={"Sent Items": (b"\\SENT",)})
    mapped = plan_map(remote)
    assert mapped == {"INBOX": "INBOX", "Sent": "Sent", "Sent Items": "Sent"}


def test_all_except_searches_unanchored_and_inbox_mode():
    remote = listing("INBOX", "Spam", "Archive/Spam-2020", "Work")
    assert set(plan_map(remote, "all_except", ["Spam"])) == {"INBOX", "Work"}
    assert set(plan_map(remote, "all_except", ["^Spam$"])) == {"INBOX", "Archive/Spam-2020", "Work"}
    assert set(plan_map(remote, "inbox")) == {"INBOX"}


def test_inbox_first_then_by_name():
    plans = folders.plan(listing("b", "INBOX", "a"), SLASH_NS, LOCAL, DOT_NS, "all", [], True)
    assert [p.remote for p in plans] == ["INBOX", "a", "b"]
