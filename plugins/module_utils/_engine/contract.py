# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The words of the result contract (docs/spec.md "The result"): statuses, failure kinds, failure scopes.

One enum each, used everywhere instead of string literals. The members are ``str`` (``Status.SUCCESS ==
"success"``, ``f"{Status.SUCCESS}"`` is ``success``), so results, JSON and stored last results keep the plain
words; :func:`plain` turns a member into a plain ``str`` where a result leaves the engine.
"""

from __future__ import annotations

import enum
import typing as t


class _Word(str, enum.Enum):
    """A word of the contract: a ``str`` whose ``str()`` and format are its value (as Python 3.11's StrEnum)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return str(self.value).__format__(spec)


class Status(_Word):
    """How a run (or an account of a bulk migration) ended."""

    SUCCESS = "success"  # everything was copied (or, in check mode, would be)
    PARTIAL = "partial"  # the run ended, with errors of some messages or folders
    FAILED = "failed"  # the run stopped: nothing, or only part, was done
    SKIPPED = "skipped"  # another run of the same task (or account) held its lock


class Scope(_Word):
    """What a failure stops: one message, one folder, or the whole run."""

    MESSAGE = "message"
    FOLDER = "folder"
    RUN = "run"


class Kind(_Word):
    """The machine-readable kind of an error in a result (``errors[].kind``)."""

    # Failures that stop a run.
    CONNECT_FAILED = "connect_failed"
    TLS_FAILED = "tls_failed"
    AUTH_FAILED = "auth_failed"
    TOKEN_FAILED = "token_failed"  # remote_auth with a token source: no OAuth2 token (the endpoint, file or command failed)
    STARTTLS_UNSUPPORTED = "starttls_unsupported"
    TIMEOUT = "timeout"
    SERVER_BUSY = "server_busy"  # refused for now (RFC 5530 LIMIT at login, UNAVAILABLE, INUSE), still after the retries
    MISSING_LIBRARY = "missing_library"
    MISSING_PROGRAM = "missing_program"  # engine imapsync: the program cannot be found or started
    INVALID_DEFINITION = "invalid_definition"
    UNSUPPORTED = "unsupported"  # a task of another engine given to the builtin engine
    INTERNAL_ERROR = "internal_error"
    # Failures of a folder or of the run, after the logins.
    PROTOCOL_ERROR = "protocol_error"
    CONNECTION_LOST = "connection_lost"
    STATE_ERROR = "state_error"
    IMAPSYNC_FAILED = "imapsync_failed"  # engine imapsync: its exit status and statistics
    # Failures of one message.
    TOO_BIG = "too_big"
    APPEND_REFUSED = "append_refused"
    DELIVERY_REFUSED = "delivery_refused"


# The kinds whose failure stops the run at once, whatever folder it happened in (no other folder can work).
RUN_STOPPERS: frozenset[Kind] = frozenset({
    Kind.AUTH_FAILED, Kind.TOKEN_FAILED, Kind.TLS_FAILED, Kind.CONNECT_FAILED, Kind.TIMEOUT, Kind.STARTTLS_UNSUPPORTED,
    Kind.MISSING_LIBRARY, Kind.STATE_ERROR, Kind.SERVER_BUSY,
})


def plain(value: t.Any) -> t.Any:
    """A member as its plain ``str`` value (anything else unchanged): for results that leave the engine."""
    return str(value.value) if isinstance(value, enum.Enum) else value
