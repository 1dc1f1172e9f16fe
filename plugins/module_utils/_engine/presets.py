# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Provider presets: the ``remote_provider`` field of a task and the defaults it gives (docs/oauth2.md "Provider presets").

A preset only fills in what the task does not give: ``remote_host``, ``remote_port``, ``remote_security`` and, for
Gmail, ``folders`` (V(all_except)) and the ``exclude`` patterns of Gmail's virtual folders, which are added to the
patterns the task gives (once each). What a task gives explicitly wins, so a stored definition (which holds every
value) reads back unchanged. :func:`apply` is the one place of this rule; :func:`schema.parse_task` calls it first.

Pure Python, no Ansible imports.
"""

from __future__ import annotations

import dataclasses
import typing as t

from .errors import ConfigError

NONE = "none"


@dataclasses.dataclass(frozen=True)
class Preset:
    """The defaults one provider gives a task."""

    host: str
    port: int
    security: str
    folders: str | None = None  # None: the task's own default (all)
    exclude: tuple[str, ...] = ()


# Gmail shows every label as a folder; these show messages that are also in another folder, so copying them
# would copy each message again: All Mail holds every message, Important and Starred hold views of others.
# "[Google Mail]" is the root some accounts (Germany, the UK) see instead of "[Gmail]". The names are those of
# the English interface (Gmail translates them); see docs/oauth2.md "Provider presets".
GMAIL_VIRTUAL = (
    r"^\[(?:Gmail|Google Mail)\]/All Mail$",
    r"^\[(?:Gmail|Google Mail)\]/Important$",
    r"^\[(?:Gmail|Google Mail)\]/Starred$",
)

PRESETS: dict[str, Preset] = {
    # Exchange Online: https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/pop3-and-imap4/
    # pop3-and-imap4 ("IMAP4 server name: outlook.office365.com, port 993, encryption method SSL/TLS").
    "microsoft365": Preset(host="outlook.office365.com", port=993, security="ssl"),
    # Gmail and Google Workspace: https://developers.google.com/gmail/imap/imap-smtp ("imap.gmail.com : 993 with SSL").
    "google": Preset(host="imap.gmail.com", port=993, security="ssl", folders="all_except", exclude=GMAIL_VIRTUAL),
}
CHOICES = (NONE, *PRESETS)


def check(field: str, value: t.Any) -> str:
    """The ``remote_provider`` field: one of CHOICES (None: V(none))."""
    if value is None:
        return NONE
    if value not in CHOICES:
        raise ConfigError(f"{field}: {value!r} is not a valid value; use one of {', '.join(CHOICES)}.")
    return str(value)


def apply(data: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The task fields ``data`` (None: not given) with the defaults of its ``remote_provider`` filled in; ConfigError
    for an unknown provider (before any field it would have given is found missing)."""
    values = dict(data)
    preset = PRESETS.get(check("remote_provider", values.get("remote_provider")))
    if preset is None:
        return values
    for name, value in (("remote_host", preset.host), ("remote_security", preset.security), ("folders", preset.folders)):
        if values.get(name) in (None, "") and value is not None:
            values[name] = value
    if values.get("remote_port") is None and values.get("remote_security") == preset.security:
        values["remote_port"] = preset.port
    if preset.exclude and values.get("folders") == "all_except":
        given = values.get("exclude")
        patterns = list(given.splitlines() if isinstance(given, str) else given or ())
        values["exclude"] = patterns + [p for p in preset.exclude if p not in patterns]
    return values
