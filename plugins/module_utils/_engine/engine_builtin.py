# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``engine: builtin``: the sync of :mod:`sync`, in this process, with the task's state database of the store.

It runs every valid definition, so its :meth:`BuiltinEngine.check` refuses nothing. Its IMAP client also
checks the logins of a task (:func:`check_logins`, ``validate``), whatever engine runs the task.
"""

from __future__ import annotations

import typing as t

from . import errors, sync
from .config import Target, Task
from .contract import plain
from .imap import Connection
from .result import RunResult

if t.TYPE_CHECKING:  # the interface module imports this one
    from .engine import Request


class BuiltinEngine:
    """The builtin engine (see the module documentation)."""

    name = "builtin"

    def check(self, task: Task, target: Target) -> None:
        """Nothing to refuse: the builtin engine runs every valid definition."""

    def run(self, request: Request) -> RunResult:
        store = request.store
        return sync.run(request.task, request.target, store.state_path(request.name), check_mode=request.check_mode,
                        task_name=request.name, log=request.log, stop=request.stop, on_locked=request.on_locked,
                        state_dir=store.state_dir)


ENGINE = BuiltinEngine()


def check_logins(task: Task, target: Target,
                 accept: t.Callable[[Connection], None] | None = None) -> list[dict[str, t.Any]]:
    """Log in to the remote and the local server (as the task would, with a token from the task's token source), then
    log out; errors as result entries, each with the side that failed: ``remote``, ``local``, or for the token of
    the remote login ``token endpoint`` (a grant) or ``token source`` (a token file or command). ``accept``: what
    the task's engine also requires of each logged-in connection (errors.SyncError when it is not met)."""
    problems = []
    for endpoint in sync.endpoints(task, target):
        try:
            connection = Connection(endpoint)
            try:
                if accept is not None:
                    accept(connection)
            finally:
                connection.close()
        except errors.SyncError as exc:
            problems.append({"folder": "", "uid": None, "message_id": None, "kind": plain(exc.kind), "detail": exc.message,
                             "side": exc.side or endpoint.side})
    return problems
