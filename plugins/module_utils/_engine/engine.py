# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engines behind one interface, selected by the ``engine`` field of a task (``builtin`` or ``imapsync``).

An engine is anything with a ``name``, a ``check(task, target)`` that refuses (ConfigError) a definition the
engine cannot run as defined, and a ``run(request)`` that carries out one :class:`Request` and returns its
:class:`result.RunResult`, in check mode too (``request.check_mode``: nothing is written anywhere). Whatever
the engine, a run takes the task's and the account's locks from :meth:`store.Store.run_locks` before it
changes anything, calls ``request.on_locked`` once it holds them, and ends ``skipped`` when another run holds
one. The task runner (:mod:`runner`) knows this interface only; each engine lives in its own module
(:mod:`engine_builtin`, :mod:`engine_imapsync`).
"""

from __future__ import annotations

import dataclasses
import threading
import typing as t

from . import engine_builtin
from .config import Target, Task
from .errors import ConfigError
from .result import RunResult
from .schema import ENGINE_CHOICES
from .store import Store

LogFn = t.Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Request:
    """One run of the defined task ``name``, as the task runner hands it to an engine."""

    store: Store
    name: str
    task: Task
    target: Target
    check_mode: bool = False
    log: LogFn | None = None  # progress lines (no secret)
    stop: threading.Event | None = None  # set: end the run gracefully
    on_locked: t.Callable[[], None] | None = None  # called once the run holds its locks (a skipped run never calls it)


class Engine(t.Protocol):
    """What the task runner asks of an engine."""

    name: str

    def check(self, task: Task, target: Target) -> None:
        """Raise ConfigError when this engine cannot run ``task`` into ``target`` as defined."""

    def run(self, request: Request) -> RunResult:
        """Carry out one run (in check mode, only compute it); never raises for a failure of the run itself."""


def for_task(task: Task) -> Engine:
    """The engine that runs ``task`` (its ``engine`` field); ConfigError for a name no engine has. Only the engine a
    task names is imported: a builtin run (a migrate task's module above all, which compiles every module it imports
    at each start) never loads imapsync's."""
    if task.engine == "builtin":
        return engine_builtin.ENGINE
    if task.engine == "imapsync":
        from . import engine_imapsync  # pylint: disable=import-outside-toplevel
        return engine_imapsync.ENGINE
    raise ConfigError(f"engine: {task.engine!r} is not an engine of this host; use one of {', '.join(ENGINE_CHOICES)}.")


def check_logins(task: Task, target: Target) -> list[dict[str, t.Any]]:
    """Log in to the remote and the local server as a run of ``task`` would, then log out; the errors as result
    entries (empty when both logins work). Whatever the task's engine, the builtin engine's IMAP client logs in; for
    engine: imapsync, the remote must also offer what imapsync logs in with (engine_imapsync.check_mechanism)."""
    if task.engine == "imapsync":
        from . import engine_imapsync  # pylint: disable=import-outside-toplevel
        return engine_builtin.check_logins(task, target, engine_imapsync.check_mechanism)
    return engine_builtin.check_logins(task, target)
