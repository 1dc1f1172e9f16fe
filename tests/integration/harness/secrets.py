"""Watch every process's command line and environment for passwords while something runs."""

from __future__ import annotations

import os
import threading
from types import TracebackType


def _read_all(path: str) -> bytes:
    """The whole content of *path*, read with os.read: a scan of every process every 20 ms then costs about half the CPU
    time that Python file objects cost (it runs beside every ansible-playbook of the integration tests)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class SecretWatcher:
    """Scans /proc/*/cmdline and /proc/*/environ for the given passwords until stopped; ``seen`` lists the hits.

    ``with SecretWatcher(secrets) as watcher: ...`` then ``assert not watcher.seen``.
    """

    def __init__(self, secrets: list[str] | tuple[str, ...], interval: float = 0.02) -> None:
        self.needles = [s.encode("utf-8") for s in secrets if s]
        self.seen: list[str] = []
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.needles and not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmdline = _read_all(f"/proc/{pid}/cmdline")
                    environ = _read_all(f"/proc/{pid}/environ")
                except OSError:
                    continue
                if any(n in cmdline or n in environ for n in self.needles):
                    self.seen.append(cmdline.replace(b"\0", b" ").decode("utf-8", "replace")[:200])
            self._stop.wait(self.interval)

    def start(self) -> SecretWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> SecretWatcher:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
