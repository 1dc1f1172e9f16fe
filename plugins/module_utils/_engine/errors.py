# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors a user meets: each carries a machine-readable kind and a sentence naming cause and fix."""

from __future__ import annotations

from .contract import Kind

# The failure kinds, as the engine's modules name them (the words: contract.Kind).
CONNECT_FAILED = Kind.CONNECT_FAILED
TLS_FAILED = Kind.TLS_FAILED
AUTH_FAILED = Kind.AUTH_FAILED
TOKEN_FAILED = Kind.TOKEN_FAILED
STARTTLS_UNSUPPORTED = Kind.STARTTLS_UNSUPPORTED
TIMEOUT = Kind.TIMEOUT
SERVER_BUSY = Kind.SERVER_BUSY
PROTOCOL_ERROR = Kind.PROTOCOL_ERROR
CONNECTION_LOST = Kind.CONNECTION_LOST
MISSING_LIBRARY = Kind.MISSING_LIBRARY
STATE_ERROR = Kind.STATE_ERROR


class ConfigError(ValueError):
    """A definition is invalid; the message names the field and the fix."""

    kind = Kind.INVALID_DEFINITION


class SyncError(Exception):
    """A failure that stops a run (or a folder), classified for programs and worded for people."""

    def __init__(self, kind: Kind, message: str, side: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.side = side
        self.message = message

    def __str__(self) -> str:
        return self.message


class Transient(SyncError):
    """A failure that may pass by itself: the run reconnects with backoff and resumes, a bounded number of times."""


class ConnectionLost(Transient):
    """The connection to a server dropped (or stalled: kind ``timeout``) in the middle of a run; the run may
    reconnect and resume."""

    def __init__(self, message: str, side: str | None = None, kind: Kind = CONNECTION_LOST) -> None:
        super().__init__(kind, message, side)


class ServerBusy(Transient):
    """The server refused for now (too many connections, a subsystem down, a mailbox in use): ``cause`` names the
    server and keeps its words, ``advice`` says what to do if it persists."""

    def __init__(self, cause: str, advice: str, side: str | None = None) -> None:
        super().__init__(SERVER_BUSY, f"{cause}; {advice}.", side)
        self.cause = cause
        self.advice = advice


def gave_up(failure: SyncError, attempts: int) -> SyncError:
    """The failure that stops a run when ``failure`` persisted through ``attempts`` reconnects (or logins)."""
    if isinstance(failure, ServerBusy):
        return SyncError(failure.kind, f"{failure.cause}, still after {attempts} retries; {failure.advice}.", failure.side)
    detail = failure.message[:-1] if failure.message.endswith(".") else failure.message
    return SyncError(failure.kind, f"{detail}; gave up after {attempts} reconnects. The next run resumes where this one stopped.",
                     failure.side)
