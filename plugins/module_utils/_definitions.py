# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What declaring or removing a definition changes: shared by ``mail_target`` and ``sync_task``.

A definition is stored normalized (the public dict of the parsed target or task, see
:class:`store.Store`), its secret apart. Declaring one again is a change only when the normalized
public dict or the secret differ from what is stored (or when the stored secret file is readable by
others than its owner: it is then written again with mode 0600). The diff shows the public dict with
the secret masked; a changed secret shows as changed, never with either value.

No Ansible imports: the modules turn a :class:`Change` into their result.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import typing as t

from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError
from ansible_collections.mailops.imap.plugins.module_utils._engine.store import Store, secret_field

MASK = "********"
MASK_CHANGED = "******** (changed)"
SECRET_FIELDS = {"targets": "master_password", "tasks": "remote_password"}


def _normalized(public: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The public dict as it reads back from its JSON file (tuples become lists and so on)."""
    return json.loads(json.dumps(dict(public), sort_keys=True, ensure_ascii=False))


def _stored(store: Store, kind: str, name: str) -> tuple[bool, dict[str, t.Any]]:
    """Whether a definition is stored, and its content ({} when its file holds no JSON object: declaring it again
    replaces it)."""
    stored = store.read_public(kind, name)
    return stored.exists, stored.data or {}


def _exposed(path: str) -> bool:
    """Whether an existing secret or definition file is readable or writable by others than its owner."""
    try:
        return bool(stat.S_IMODE(os.stat(path).st_mode) & 0o077)
    except FileNotFoundError:
        return False


def masked(public: t.Mapping[str, t.Any] | None, field: str, has_secret: bool, secret_changed: bool = False) -> dict[str, t.Any]:
    """The public dict with the secret field as a placeholder (never its value); {} for no definition."""
    if public is None:
        return {}
    data = dict(public)
    if has_secret:
        data[field] = MASK_CHANGED if secret_changed else MASK
    return data


@dataclasses.dataclass(frozen=True)
class Change:
    """The difference between what is stored and what is declared, for one definition."""

    kind: str
    name: str
    path: str
    before: dict[str, t.Any] | None  # stored public dict (None: no definition file)
    before_secret: bool  # whether a secret file exists
    before_secret_shown: bool  # whether the diff shows a stored secret (masked): its file exists and is not empty
    after: dict[str, t.Any] | None  # declared public dict (None: state absent)
    secret: str | None = dataclasses.field(default=None, repr=False)  # declared secret
    secret_changed: bool = False
    secret_exposed: bool = False
    definition_exposed: bool = False  # a definition file others can read (0644 before release 8): rewritten 0600

    @property
    def changed(self) -> bool:
        if self.after is None:
            return self.before is not None or self.before_secret
        return self.before != self.after or self.secret_changed or self.secret_exposed or self.definition_exposed

    @property
    def secret_field(self) -> str:
        """The field the secret file holds: a task's depends on its remote_auth (store.secret_field)."""
        if self.kind == "tasks":
            return secret_field((self.after or self.before or {}).get("remote_auth"))
        return SECRET_FIELDS[self.kind]

    def diff(self) -> dict[str, t.Any]:
        """Ansible's diff: the definition before and after, the secret masked."""
        # A task whose token source has no secret (a token file or command, a certificate) stores an empty secret:
        # its diff shows no masked field at all.
        before = masked(self.before, self.secret_field, self.before_secret_shown)
        if self.before is None and self.before_secret_shown:
            before = {self.secret_field: MASK}  # a secret left without its definition
        after = masked(self.after, self.secret_field, self.after is not None and bool(self.secret),
                       self.secret_changed and self.before_secret_shown)
        return {"before": before, "after": after, "before_header": self.path, "after_header": self.path}

    def definition(self) -> dict[str, t.Any]:
        """The public definition as stored after the change ({} when absent)."""
        return dict(self.after) if self.after is not None else {}

    def apply(self, store: Store) -> None:
        """Write (atomically, secret first) or remove the definition; nothing when unchanged."""
        if not self.changed:
            return
        if self.after is None:
            store.remove(self.kind, self.name)
        else:
            store.write(self.kind, self.name, self.after, self.secret)


def plan_present(store: Store, kind: str, name: str, public: t.Mapping[str, t.Any], secret: str) -> Change:
    """The change that storing ``public`` and ``secret`` as ``kind``/``name`` makes."""
    path = store.definition_path(kind, name)
    secret_path = store.secret_path(kind, name)
    exists, stored = _stored(store, kind, name)
    has_secret, stored_secret = store.read_secret(kind, name)
    return Change(
        kind=kind, name=name, path=path,
        before=stored if exists else None, before_secret=has_secret, before_secret_shown=bool(stored_secret),
        after=_normalized(public), secret=secret,
        secret_changed=not has_secret or stored_secret != secret,
        secret_exposed=has_secret and _exposed(secret_path),
        definition_exposed=exists and _exposed(path),
    )


def plan_absent(store: Store, kind: str, name: str) -> Change:
    """The change that removing ``kind``/``name`` (definition and secret) makes."""
    path = store.definition_path(kind, name)
    exists, stored = _stored(store, kind, name)
    has_secret = os.path.lexists(store.secret_path(kind, name))
    return Change(kind=kind, name=name, path=path, before=stored if exists else None, before_secret=has_secret,
                  before_secret_shown=has_secret, after=None)


def action(change: Change) -> str:
    """What a change does to its definition: ``created``, ``updated``, ``removed`` or ``unchanged``."""
    if not change.changed:
        return "unchanged"
    if change.after is None:
        return "removed"
    return "created" if change.before is None else "updated"


def stored_names(store: Store, kind: str) -> list[str]:
    """The names with a definition or a secret under the store's config_dir (a secret left alone counts too)."""
    try:
        return sorted(set(store.names(kind)) | set(store.secret_names(kind)))
    except OSError as exc:
        raise ConfigError(f"{exc.filename} cannot be read ({exc.strerror}); run the task as root (become: true) "
                          "or choose a config_dir this user owns.") from None


@dataclasses.dataclass(frozen=True)
class BulkChange:
    """The changes that declaring many definitions of one kind at once makes (``sync_task`` with ``tasks``).

    ``changes`` holds one :class:`Change` per declared definition, in the order given, then one per removed
    definition (``purge``), in name order.
    """

    kind: str
    directory: str
    changes: tuple[Change, ...]

    @property
    def changed(self) -> bool:
        return any(change.changed for change in self.changes)

    def results(self) -> list[dict[str, t.Any]]:
        """One entry per declared definition: its name, what happens to it, whether its secret is (re)set."""
        return [{"name": change.name, "action": action(change), "changed": change.changed,
                 "password_changed": change.secret_changed}
                for change in self.changes if change.after is not None]

    def removed(self) -> list[str]:
        """The names whose definition (or secret) is removed."""
        return [change.name for change in self.changes if change.after is None and change.changed]

    def counts(self) -> dict[str, int]:
        """How many definitions are created, updated, unchanged and removed."""
        counts = {"created": 0, "updated": 0, "unchanged": 0, "removed": 0}
        for change in self.changes:
            if change.after is not None or change.changed:
                counts[action(change)] += 1
        return counts

    def diff(self) -> dict[str, t.Any]:
        """Ansible's diff: the changed definitions only, by name, before and after, the secrets masked."""
        before: dict[str, t.Any] = {}
        after: dict[str, t.Any] = {}
        for change in self.changes:
            if not change.changed:
                continue
            one = change.diff()
            if one["before"]:
                before[change.name] = one["before"]
            if one["after"]:
                after[change.name] = one["after"]
        return {"before": before, "after": after, "before_header": self.directory, "after_header": self.directory}

    def apply(self, store: Store) -> None:
        """Write the declared definitions that changed, then remove the purged ones."""
        for change in self.changes:
            change.apply(store)


def plan_bulk(store: Store, kind: str, declared: t.Sequence[tuple[str, t.Mapping[str, t.Any], str]], purge: bool) -> BulkChange:
    """The changes that storing every ``(name, public, secret)`` of ``declared`` makes, and with ``purge`` removing
    every other stored definition of ``kind`` (and its secret). Names must be unique (the caller checks)."""
    changes = [plan_present(store, kind, name, public, secret) for name, public, secret in declared]
    if purge:
        listed = {name for name, _public, _secret in declared}
        changes += [plan_absent(store, kind, name) for name in stored_names(store, kind) if name not in listed]
    return BulkChange(kind=kind, directory=store.definitions_dir(kind), changes=tuple(changes))


def tasks_using_target(store: Store, target: str) -> list[str]:
    """The names of the stored tasks whose definition refers to the mail target ``target``."""
    users = []
    for name in store.names("tasks"):
        exists, public = _stored(store, "tasks", name)
        if exists and public.get("target", "default") == target:
            users.append(name)
    return users


def target_missing(store: Store, target: str) -> bool:
    """Whether the mail target ``target`` has no definition under the store's config_dir."""
    return not store.read_public("targets", target).exists


def missing_target_message(store: Store, target: str) -> str:
    """The refusal of a task whose mail target is not defined (real run)."""
    return (f"The mail target {target!r} is not defined in {store.config_dir}; define it first with "
            f"mailops.imap.mail_target (name: {target}), in an earlier task of the play, then define this sync task.")


def missing_target_warning(store: Store, target: str, validate: bool) -> str:
    """The check mode warning for a task whose mail target is not defined yet."""
    text = (f"The mail target {target!r} is not defined in {store.config_dir} yet: in check mode an earlier "
            f"mailops.imap.mail_target task writes nothing, but a real run fails unless {target!r} is defined by then.")
    if validate:
        text += " The logins were not validated, since the target's master user is not known yet."
    return text


def target_in_use_message(target: str, tasks: t.Sequence[str]) -> str:
    """The refusal to remove a mail target that tasks still refer to."""
    names = ", ".join(tasks)
    return (f"The mail target {target!r} is still used by the sync task(s) {names}; remove them first "
            f"(mailops.imap.sync_task with state: absent) or point them at another target.")


def login_failure(problems: t.Sequence[t.Mapping[str, t.Any]]) -> dict[str, t.Any]:
    """The failure of ``validate: true``: the sentence of each failed login, the first one's kind and side, all errors."""
    first = problems[0]
    return {
        "msg": " ".join(str(p["detail"]) for p in problems) + " The definition was not saved (validate: true).",
        "kind": first["kind"],
        "side": first.get("side"),
        "errors": [{"kind": p["kind"], "side": p.get("side"), "detail": p["detail"]} for p in problems],
    }
