# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deletion policies of ``delete_remote``: one entry each, so that a new policy is one entry here.

An entry says what the policy is called, what it does (its doc text), whether it needs ``delete_remote_days``, which
remote messages the builtin engine considers for deletion (IMAP SEARCH criteria; only those the state confirms
present locally are deleted: docs/sync-engine.md), and how it renders for imapsync (its arguments, or why it cannot).
"""

from __future__ import annotations

import dataclasses
import datetime
import typing as t


@dataclasses.dataclass(frozen=True)
class Policy:
    """One ``delete_remote`` choice."""

    name: str
    doc: str  # its line in the option's documentation (Ansible markup, as in plugins/modules/migrate.py)
    deletes: bool  # whether the builtin engine deletes anything under this policy
    needs_days: bool = False  # delete_remote_days is required (and is the age in days)
    imapsync_args: tuple[str, ...] = ()  # the imapsync 2.229 arguments that render it
    imapsync_problem: str | None = None  # why imapsync 2.229 cannot render it (the definition is refused), else None

    def criteria(self, days: int | None, today: datetime.date | None = None) -> list[t.Any]:
        """The IMAP SEARCH criteria of the remote messages this policy deletes once they are confirmed present locally."""
        criteria: list[t.Any] = ["NOT", "DELETED"]
        if self.needs_days:
            cutoff = (today or datetime.date.today()) - datetime.timedelta(days=days or 0)
            criteria = ["BEFORE", cutoff] + criteria
        return criteria


POLICIES: dict[str, Policy] = {policy.name: policy for policy in (
    Policy(
        name="never",
        doc="V(never) leaves the remote untouched (apart from C(\\Seen) flags with O(folders=inbox)).",
        deletes=False,
    ),
    Policy(
        name="after_sync",
        doc="V(after_sync) deletes a remote message once it is confirmed present locally.",
        deletes=True,
        # README 2.229, OPTIONS/deletions: "--delete1 : Deletes messages on host1 server after a successful
        # transfer ... use --noexpungeaftereach to speed up, expunging will then be done only twice per folder".
        # Source: a message is queued for deletion only once copied, or once found on host2.
        imapsync_args=("--delete1", "--noexpungeaftereach"),
    ),
    Policy(
        name="older_than",
        doc="V(older_than) deletes remote messages older than O(delete_remote_days) days that are confirmed present "
            "locally.",
        deletes=True,
        needs_days=True,
        # README 2.229, OPTIONS/deletions: "--delete1 : Deletes messages on host1 server after a successful
        # transfer"; OPTIONS/message selection: "--minage int : Skip messages newer than int days".
        imapsync_problem=(
            "delete_remote: older_than cannot be rendered for imapsync 2.229: --delete1 deletes every message it "
            "has copied whatever its age, and adding --minage would stop newer messages from being copied at all "
            "(--delete1older, which deletes by age, exists only in NethServer 8's patched imapsync); use "
            "delete_remote: after_sync or never, or engine: builtin."
        ),
    ),
)}

CHOICES: tuple[str, ...] = tuple(POLICIES)


def policy(name: str) -> Policy:
    """The policy of a (validated) ``delete_remote`` value."""
    return POLICIES[name]
