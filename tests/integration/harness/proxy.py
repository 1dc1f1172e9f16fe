"""A TCP proxy on a free loopback port that can cut its connections after a number of bytes.

Used to simulate "the connection was cut in the middle of a run"::

    with CuttingProxy(server.host, server.port) as proxy:
        proxy.cut_after(200_000)            # server -> client bytes, counted from now, over all connections
        run_sync(host=proxy.host, port=proxy.port)   # fails part-way
        assert proxy.cut_event.is_set()
        run_sync(host=proxy.host, port=proxy.port)   # new connections are forwarded normally again

A cut is one-shot: when the armed number of bytes has been forwarded in the armed direction, every
connection open at that moment is closed (by default with a TCP reset), the trigger disarms itself, and
later connections are forwarded normally until :meth:`CuttingProxy.cut_after` is called again.

A cut can also wait for a pattern (a regular expression over bytes): the connection that carries it is
forwarded up to where the match begins, then every connection is closed, so the match itself never arrives::

    proxy.cut_on(rb"\\S+ OK Create completed")   # the server created the folder; its client never learns it

And the proxy can rewrite what passes, to play a server that answers differently (within one read of at most
64 KiB; plain-text connections only, of course)::

    proxy.rewrite(rb"NO \\[ALREADYEXISTS\\] ", b"NO ")    # a server without RFC 5530 response codes

The proxy can also hold the traffic (every connection, new ones too) without closing anything, to keep a
client busy for exactly as long as a test needs::

    proxy.pause()                           # from now on nothing is forwarded (connections are accepted)
    proxy.pause_after(300_000)              # or: forward 300 kB more server -> client, then hold
    assert proxy.wait_paused(10)
    proxy.resume()                          # forward everything that waited, and what follows
"""

from __future__ import annotations

import re
import selectors
import socket
import struct
import threading
from types import TracebackType

S2C = "s2c"
C2S = "c2s"
DIRECTIONS = (S2C, C2S)
_CHUNK = 65536
_TAIL = 4096  # bytes of each connection and direction kept to find a pattern that spans two reads


class _Connection:
    """One proxied client connection: a client socket and an upstream socket."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()
        self.thread: threading.Thread | None = None
        self.tail = {S2C: b"", C2S: b""}  # the last bytes forwarded, per direction (for cut_on)
        self._close_lock = threading.Lock()

    def close(self, reset: bool = False) -> None:
        """Close both sides; with *reset* send a TCP RST instead of a FIN."""
        with self._close_lock:
            if self.closed.is_set():
                return
            self.closed.set()
            for sock in (self.client, self.upstream):
                try:
                    if reset:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    else:
                        sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    sock.close()
                except OSError:
                    pass


class CuttingProxy:
    """Forward ``127.0.0.1:<port>`` to ``(target_host, target_port)`` and cut connections on demand.

    Attributes: ``host``, ``port`` (where clients connect), ``target``, ``cut_event`` (set when a cut
    happened; cleared by :meth:`cut_after`), ``cuts`` (number of cuts so far), ``accepted`` (number of
    connections accepted), ``bytes_s2c`` / ``bytes_c2s`` (totals forwarded).
    """

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1", max_connections: int = 64,
                 connect_timeout: float = 5.0) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.cut_event = threading.Event()
        self.cuts = 0
        self.accepted = 0
        self.bytes_s2c = 0
        self.bytes_c2s = 0
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._armed: tuple[str, int, bool] | None = None  # (direction, bytes still allowed, reset)
        self._pause_armed: tuple[str, int] | None = None  # (direction, bytes still allowed before holding)
        self._pattern_armed: tuple[str, re.Pattern[bytes], bool] | None = None  # (direction, pattern, reset)
        self._rewrites: list[tuple[str, re.Pattern[bytes], bytes, int]] = []  # (direction, pattern, replacement, count left)
        self.rewritten = 0  # number of replacements made by rewrite()
        self._flowing = threading.Event()
        self._flowing.set()
        self.paused_event = threading.Event()  # set while the traffic is held

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> CuttingProxy:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> CuttingProxy:
        """Bind a free port on ``host`` and start accepting."""
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(16)
        listener.settimeout(0.2)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"proxy-accept-{self.port}", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection and join all threads (bounded by *timeout* each)."""
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
            self._accept_thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for conn in self._snapshot_connections():
            conn.close()
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout)

    # ------------------------------------------------------------------ control

    def cut_after(self, nbytes: int, direction: str = S2C, *, reset: bool = True) -> None:
        """Arm a one-shot cut: after *nbytes* more bytes (all connections together) went in *direction*
        (``"s2c"`` server to client, ``"c2s"`` client to server), close all current connections."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}")
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        with self._lock:
            self.cut_event.clear()
            self._armed = (direction, nbytes, reset)

    def cut_on(self, pattern: bytes, direction: str = S2C, *, reset: bool = True) -> None:
        """Arm a one-shot cut on a pattern: when *pattern* (a bytes regex) completes in *direction* on any connection,
        forward that connection's bytes up to the start of the match, then close all current connections."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}")
        with self._lock:
            self.cut_event.clear()
            self._pattern_armed = (direction, re.compile(pattern), reset)

    def rewrite(self, pattern: bytes, replacement: bytes, direction: str = S2C, *, count: int = 1) -> None:
        """Replace the next *count* matches of *pattern* (a bytes regex, within one read) in *direction* by *replacement*."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}")
        with self._lock:
            self._rewrites.append((direction, re.compile(pattern), replacement, count))

    def disarm(self) -> None:
        """Cancel a pending :meth:`cut_after` or :meth:`cut_on`."""
        with self._lock:
            self._armed = None
            self._pattern_armed = None

    def cut_now(self, *, reset: bool = True) -> int:
        """Close every current connection immediately; returns how many were cut."""
        with self._lock:
            self._armed = None
            self._pattern_armed = None
        return self._cut(reset)

    def wait_cut(self, timeout: float | None = None) -> bool:
        """Wait until a cut happened; returns whether it did."""
        return self.cut_event.wait(timeout)

    def pause(self) -> None:
        """Hold all traffic from now on (connections stay open, new ones are accepted) until :meth:`resume`."""
        with self._lock:
            self._pause_armed = None
            self._flowing.clear()
            self.paused_event.set()

    def pause_after(self, nbytes: int, direction: str = S2C) -> None:
        """Arm a one-shot pause: forward *nbytes* more bytes in *direction* (all connections together), then hold
        all traffic until :meth:`resume`."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}")
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        with self._lock:
            self._pause_armed = (direction, nbytes)

    def resume(self) -> None:
        """Forward again (what waited first); cancels a pending :meth:`pause_after`."""
        with self._lock:
            self._pause_armed = None
            self.paused_event.clear()
            self._flowing.set()

    def wait_paused(self, timeout: float | None = None) -> bool:
        """Wait until the traffic is held; returns whether it is."""
        return self.paused_event.wait(timeout)

    @property
    def active_connections(self) -> int:
        """Number of connections currently open."""
        with self._lock:
            return len(self._connections)

    # ------------------------------------------------------------------ internals

    def _snapshot_connections(self) -> list[_Connection]:
        with self._lock:
            return list(self._connections)

    def _cut(self, reset: bool) -> int:
        with self._lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            conn.close(reset=reset)
        with self._lock:
            self.cuts += 1
        self.cut_event.set()
        return len(conns)

    def _accept_loop(self) -> None:
        listener = self._listener
        if listener is None:
            return
        while not self._stopping.is_set():
            try:
                client, _addr = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                too_many = len(self._connections) >= self.max_connections
            if too_many:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=self.connect_timeout)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            conn = _Connection(client, upstream)
            conn.thread = threading.Thread(target=self._pump, args=(conn,), name=f"proxy-conn-{self.port}", daemon=True)
            with self._lock:
                self._connections.add(conn)
                self.accepted += 1
                self._threads = [thread for thread in self._threads if thread.is_alive()] + [conn.thread]
            conn.thread.start()

    def _account(self, direction: str, size: int) -> tuple[int, bool | None]:
        """Count *size* bytes in *direction*; return (bytes allowed through, reset flag if a cut is due)."""
        with self._lock:
            if direction == S2C:
                self.bytes_s2c += size
            else:
                self.bytes_c2s += size
            if self._armed is None or self._armed[0] != direction:
                return size, None
            _direction, remaining, reset = self._armed
            if size < remaining:
                self._armed = (direction, remaining - size, reset)
                return size, None
            self._armed = None
            return remaining, reset

    def _pause_point(self, direction: str, size: int) -> int | None:
        """With a pause armed for *direction*: how many of *size* bytes go through before the traffic is held."""
        with self._lock:
            if self._pause_armed is None or self._pause_armed[0] != direction:
                return None
            remaining = self._pause_armed[1]
            if size < remaining:
                self._pause_armed = (direction, remaining - size)
                return None
            self._pause_armed = None
            self._flowing.clear()
            self.paused_event.set()
            return remaining

    def _rewrite(self, direction: str, data: bytes) -> bytes:
        with self._lock:
            for index, (wanted, pattern, replacement, left) in enumerate(self._rewrites):
                if wanted != direction or left <= 0:
                    continue
                data, made = pattern.subn(replacement, data, count=left)
                self._rewrites[index] = (wanted, pattern, replacement, left - made)
                self.rewritten += made
            self._rewrites = [r for r in self._rewrites if r[3] > 0]
        return data

    def _pattern_point(self, conn: _Connection, direction: str, data: bytes) -> tuple[int, bool] | None:
        """With cut_on armed for *direction*: (bytes of *data* to forward, reset) when the pattern completes in it."""
        with self._lock:
            armed = self._pattern_armed
            if armed is None or armed[0] != direction:
                return None
            tail = conn.tail[direction]
            window = tail + data
            for match in armed[1].finditer(window):
                if match.end() > len(tail):
                    self._pattern_armed = None
                    return max(0, match.start() - len(tail)), armed[2]
            conn.tail[direction] = window[-_TAIL:]
            return None

    def _hold(self, conn: _Connection) -> bool:
        """Wait while the traffic is held; False when the connection or the proxy closed meanwhile."""
        while not self._flowing.wait(0.2):
            if conn.closed.is_set() or self._stopping.is_set():
                return False
        return not conn.closed.is_set()

    def _forward(self, destination: socket.socket, direction: str, data: bytes) -> bool:
        """Send *data* on, counting it (and cutting when a cut is due); False once the connection was cut."""
        allowed, reset = self._account(direction, len(data))
        if allowed:
            destination.sendall(data[:allowed])
        if reset is not None:
            self._cut(reset)
            return False
        return True

    def _pump(self, conn: _Connection) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(conn.client, selectors.EVENT_READ, (conn.upstream, C2S))
            sel.register(conn.upstream, selectors.EVENT_READ, (conn.client, S2C))
            while not conn.closed.is_set() and not self._stopping.is_set():
                for key, _mask in sel.select(timeout=0.2):
                    if not self._hold(conn):
                        return
                    destination, direction = key.data
                    data = key.fileobj.recv(_CHUNK)  # type: ignore[union-attr]
                    if not data:
                        conn.close()
                        return
                    data = self._rewrite(direction, data)
                    cut = self._pattern_point(conn, direction, data)
                    if cut is not None:
                        allowed, reset = cut
                        if allowed and not self._forward(destination, direction, data[:allowed]):
                            return
                        self._cut(reset)
                        return
                    held = self._pause_point(direction, len(data))
                    if held is not None:
                        if held and not self._forward(destination, direction, data[:held]):
                            return
                        if not self._hold(conn):
                            return
                        data = data[held:]
                    if data and not self._forward(destination, direction, data):
                        return
        except (OSError, ValueError):
            conn.close()
        finally:
            sel.close()
            with self._lock:
                self._connections.discard(conn)
