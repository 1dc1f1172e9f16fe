"""Throwaway Cyrus IMAP 3.6 servers (Debian's packages, unpacked) for integration tests: a remote nobody here wrote.

``make test`` runs tests/install_cyrus.sh, which unpacks Debian's ``cyrus-imapd`` and ``cyrus-common`` with
``dpkg-deb -x`` into /var/cache/mailops-imap-tests/cyrus-VERSION (they conflict with the dovecot packages under
apt) and points the symlink /var/cache/mailops-imap-tests/cyrus at it; ``$CYRUS_ROOT`` names another unpacked tree.

Each :class:`CyrusServer` lives in its own temporary directory (imapd.conf, cyrus.conf, configuration directory,
partition, sasldb) and is started as ``master -C imapd.conf -M cyrus.conf`` as root; Cyrus drops to the ``cyrus``
user (created when missing). It listens on one free loopback port, plain IMAP without TLS. Passwords are checked
against the instance's own sasldb (``saslpasswd2 -f``); the administrator is :data:`ADMIN_USER`. Two layouts:

``debian``
    Debian's imapd.conf (``altnamespace: no``, ``unixhierarchysep: no``): NAMESPACE
    ``(("INBOX." ".")) (("user." ".")) (("" "."))``; a user's folders are ``INBOX.Work``, another user's
    ``user.bob.Shared``, shared folders are top-level names (``Announcements``).

``upstream``
    Cyrus's own defaults (3.x: ``altnamespace: yes``, ``unixhierarchysep: yes``): personal ``""`` with ``/``,
    other users ``Other Users/``, shared folders ``Shared Folders/``.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from imapclient import IMAPClient

from . import mail
from .dovecot import LOOPBACK, ServerProcess, free_port

CACHE_ROOT = Path("/var/cache/mailops-imap-tests/cyrus")
ADMIN_USER = "cyrusadmin"
ADMIN_PASSWORD = "Adm\u00efn'pw\"\\1"
CYRUS_USER = "cyrus"
CYRUS_GROUP = "mail"
REALM = "localhost"
_BIN = Path("usr/lib/cyrus/bin")


class CyrusError(RuntimeError):
    """A throwaway Cyrus instance could not be started, stopped or driven."""


@dataclass(frozen=True)
class Layout:
    """How one Cyrus configuration names folders, as a user sees them (its NAMESPACE) and as the admin does."""

    name: str
    separator: str
    personal_prefix: str
    other_users_prefix: str
    shared_prefix: str
    imapd_options: tuple[tuple[str, str], ...]

    def admin_user_root(self, user: str) -> str:
        """The admin's name of *user*'s INBOX (the admin has no personal namespace: ``user.alice``/``user/alice``)."""
        return f"user{self.separator}{user}"


LAYOUTS = {
    "debian": Layout("debian", ".", "INBOX.", "user.", "", (("altnamespace", "no"), ("unixhierarchysep", "no"))),
    "upstream": Layout("upstream", "/", "", "Other Users/", "Shared Folders/", ()),
}


def find_cyrus() -> Path | None:
    """The root of an unpacked Cyrus tree (``$CYRUS_ROOT``, else :data:`CACHE_ROOT`) holding ``master``, or None."""
    root = Path(os.environ.get("CYRUS_ROOT") or CACHE_ROOT)
    master = root / _BIN / "master"
    return root if master.is_file() and os.access(master, os.X_OK) else None


def find_saslpasswd2() -> str | None:
    """The path of ``saslpasswd2`` (Debian package sasl2-bin) or None."""
    for candidate in (shutil.which("saslpasswd2"), "/usr/sbin/saslpasswd2"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _cyrus_ids() -> tuple[int, int]:
    """The uid and gid Cyrus runs as; the ``cyrus`` system user (group ``mail``, as Debian makes it) is created when missing."""
    try:
        entry = pwd.getpwnam(CYRUS_USER)
    except KeyError:
        group = CYRUS_GROUP if _group_exists(CYRUS_GROUP) else None
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
             *(["--gid", group] if group else ["--user-group"]), CYRUS_USER],
            check=True, capture_output=True, timeout=30,
        )
        entry = pwd.getpwnam(CYRUS_USER)
    return entry.pw_uid, entry.pw_gid


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _processes_using(marker: str) -> list[int]:
    """PIDs of live (not zombie) processes whose command line contains *marker*."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode("utf-8", "replace")
            state = Path(f"/proc/{entry}/stat").read_text(encoding="ascii", errors="replace").rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry))
    return found


def _listening_inode(host: str, port: int) -> str | None:
    """The inode of the TCP socket listening on IPv4 *host*:*port* (from /proc/net/tcp), or None."""
    wanted = f"{socket.htonl(int.from_bytes(socket.inet_aton(host), 'big')):08X}:{port:04X}"
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
                return fields[9]
    return None


def _holds_socket(pid: int, inode: str) -> bool:
    """True when process *pid* has the socket *inode* open."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                return True
    return False


class CyrusServer(ServerProcess):
    """A private Cyrus IMAP instance in one of the :data:`LAYOUTS`, as a context manager (or :meth:`start`/:meth:`stop`).

    Attributes: ``layout`` (:class:`Layout`), ``host``, ``port`` (plain IMAP, valid once started), ``ssl_port``
    (always None: no TLS), ``separator``, ``users`` (name -> password, the admin not included), ``admin_user``,
    ``admin_password``, ``root`` (the instance's directory), ``startup_seconds`` (the last start, until the port
    greets). It works with the helpers of :mod:`harness.mail` (``mail.seed(server, user, password, ...)``).

    Master logins: Cyrus lets an administrator log in as any user with ``AUTHENTICATE PLAIN`` (authorization
    identity = the user, authentication identity = the administrator), so ``master_user``/``master_password`` are the
    administrator's and ``mail.login(server, user)`` (no password) works; Cyrus knows no ``user*master`` LOGIN syntax
    (``master_separator`` is None).
    """

    def __init__(self, layout: str = "debian", *, startup_timeout: float = 20.0) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, not {layout!r}")
        self.layout = LAYOUTS[layout]
        self.separator = self.layout.separator
        self.host = LOOPBACK
        self.port = 0
        self.ssl_port: int | None = None
        self.admin_user = ADMIN_USER
        self.admin_password = ADMIN_PASSWORD
        self.master_user = ADMIN_USER
        self.master_password = ADMIN_PASSWORD
        self.master_separator: str | None = None
        self.users: dict[str, str] = {}
        self.startup_timeout = startup_timeout
        self.startup_seconds = 0.0
        self.root = Path(tempfile.mkdtemp(prefix=f"cyrus-{layout}-"))
        self.imapd_conf = self.root / "imapd.conf"
        self.cyrus_conf = self.root / "cyrus.conf"
        self.sasldb = self.root / "sasldb2"
        self.stderr_path = self.root / "master.out"
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<CyrusServer {self.layout.name} {self.host}:{self.port} running={self.running}>"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> CyrusServer:
        """Write the configuration, start ``master`` and wait until IMAP greets; retry on a port race."""
        if self.running:
            return self
        tree = find_cyrus()
        if tree is None:
            raise CyrusError("Cyrus IMAP was not found: run `make deps` as root (tests/install_cyrus.sh) or set CYRUS_ROOT")
        if find_saslpasswd2() is None:
            raise CyrusError("saslpasswd2 was not found: run `make deps` as root (it installs the package sasl2-bin)")
        uid, gid = _cyrus_ids()
        for name in ("config", "partition", "proc", "lock", "socket", "sieve"):
            (self.root / name).mkdir(exist_ok=True)
        self._set_password(self.admin_user, self.admin_password)
        # The package's private libraries (libcyrus*.so.0) are in the unpacked tree, where ld.so does not look.
        env = {**os.environ, "LD_LIBRARY_PATH": ":".join(sorted({str(lib.parent) for lib in tree.glob("usr/lib/*/libcyrus*.so.*")}))}
        last_error: CyrusError | None = None
        for _attempt in range(3):
            self.port = free_port()
            self.imapd_conf.write_text(self._render_imapd_conf(), encoding="utf-8")
            self.cyrus_conf.write_text(self._render_cyrus_conf(tree), encoding="utf-8")
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, uid, gid)
            started = time.monotonic()
            with open(self.stderr_path, "wb") as out:
                # pylint: disable-next=consider-using-with
                self._proc = subprocess.Popen(
                    [str(tree / _BIN / "master"), "-D", "-C", str(self.imapd_conf), "-M", str(self.cyrus_conf),
                     "-p", str(self.root / "master.pid")],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                )
            try:
                self._wait_ready()
                self.startup_seconds = time.monotonic() - started
                return self
            except CyrusError as error:
                last_error = error
                self._terminate()
                if "in use" not in str(error):
                    break
        raise last_error if last_error else CyrusError("cyrus did not start")

    def stop(self) -> None:
        """Stop the instance (master and every process it started) and remove its directory. Idempotent."""
        self._terminate()
        shutil.rmtree(self.root, ignore_errors=True)

    def _terminate(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        sig = signal.SIGTERM
        while pids := self.processes():
            if time.monotonic() > deadline:
                if sig == signal.SIGKILL:
                    raise CyrusError(f"cyrus processes {pids} survived SIGKILL")
                sig, deadline = signal.SIGKILL, time.monotonic() + timeout
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(0.05)

    def _wait_ready(self) -> None:
        """Wait until this instance's master listens on the port and imapd greets there. master only logs (to syslog)
        that it could not bind and keeps running, so a port taken since it was chosen is found by its owner."""
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise CyrusError(f"cyrus master ({self.layout.name}) exited during startup\n{self.diagnostics()}")
            inode = _listening_inode(self.host, self.port)
            if inode is not None and not _holds_socket(self._proc.pid, inode):
                raise CyrusError(f"port {self.port} is in use by another process")
            if inode is not None and self._greets():
                return
            if time.monotonic() > deadline:
                raise CyrusError(f"cyrus ({self.layout.name}) did not answer on port {self.port} within "
                                 f"{self.startup_timeout}s\n{self.diagnostics()}")
            time.sleep(0.05)

    def _greets(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                return sock.recv(256).startswith(b"* OK")
        except OSError:
            return False

    def diagnostics(self) -> str:
        """The output of master (Cyrus logs to syslog; master's own complaints go to its stderr)."""
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace").strip() or "(no output from master)"
        except OSError:
            return "(no output from master)"

    def processes(self) -> list[int]:
        """PIDs of this instance's live processes: each names its imapd.conf on its command line (master, imapd...)."""
        return _processes_using(str(self.imapd_conf))

    # ------------------------------------------------------------------ users, folders, ACLs

    def add_user(self, name: str, password: str) -> str:
        """Create *name* with *password* (its sasldb entry and its INBOX); works on a running server. Returns *name*."""
        if not name.isascii() or not name.isalnum():
            raise ValueError(f"unsupported user name {name!r} (letters and digits only)")
        self._set_password(name, password)
        self.users[name] = password
        with self.admin_session() as client:
            client.create_folder(self.layout.admin_user_root(name))
        return name

    def _set_password(self, name: str, password: str) -> None:
        """Write *name*'s password into the instance's sasldb (saslpasswd2 reads it from stdin with -p)."""
        binary = find_saslpasswd2()
        if binary is None:
            raise CyrusError("saslpasswd2 was not found: run `make deps` as root (it installs the package sasl2-bin)")
        result = subprocess.run(
            [binary, "-f", str(self.sasldb), "-u", REALM, "-p", "-c", name],
            input=password.encode("utf-8"), capture_output=True, timeout=30, check=False,
        )
        if result.returncode != 0:
            raise CyrusError(f"saslpasswd2 failed for {name!r}: {result.stderr.decode('utf-8', 'replace').strip()}")
        uid, gid = _cyrus_ids()
        os.chown(self.sasldb, uid, gid)

    @contextlib.contextmanager
    def admin_session(self) -> Iterator[IMAPClient]:
        """A logged-in IMAPClient of the administrator (logged out at the end)."""
        with mail.session(self, self.admin_user, self.admin_password) as client:
            yield client

    @contextlib.contextmanager
    def user_session(self, user: str) -> Iterator[IMAPClient]:
        """A logged-in IMAPClient of *user*, with the password given to :meth:`add_user` (logged out at the end)."""
        with mail.session(self, user, self.users[user]) as client:
            yield client

    def personal(self, *parts: str) -> str:
        """The name a user gives its own folder *parts* (``personal("Work", "Projects")``); no parts: INBOX."""
        return self.layout.personal_prefix + self.separator.join(parts) if parts else "INBOX"

    def other_users(self, owner: str, *parts: str) -> str:
        """The name another user sees for *owner*'s folder *parts* (``user.bob.Shared``, ``Other Users/bob/Shared``)."""
        return self.layout.other_users_prefix + self.separator.join([owner, *parts])

    def shared(self, *parts: str) -> str:
        """The name a user sees for the shared folder *parts* (``Announcements``, ``Shared Folders/Announcements``)."""
        return self.layout.shared_prefix + self.separator.join(parts)

    def create_folder(self, user: str | None, name: str, special_use: str | None = None) -> None:
        """Create folder *name* as *user* (None: as the administrator), with the SPECIAL-USE attribute *special_use*
        (``\\Sent``...) when given (RFC 6154 ``CREATE ... (USE (...))``)."""
        session = self.admin_session() if user is None else self.user_session(user)
        with session as client:
            if special_use is None:
                client.create_folder(name)
                return
            typ, data = client._imap._simple_command(  # pylint: disable=protected-access
                "CREATE", client._normalise_folder(name), f"(USE ({special_use}))")  # pylint: disable=protected-access
            if typ != "OK":
                raise CyrusError(f"CREATE {name!r} (USE ({special_use})) failed: {data!r}")

    def set_acl(self, user: str | None, mailbox: str, identifier: str, rights: str) -> None:
        """``SETACL mailbox identifier rights`` as *user* (None: as the administrator)."""
        session = self.admin_session() if user is None else self.user_session(user)
        with session as client:
            client.setacl(mailbox, identifier, rights)

    def create_shared_folder(self, name: str, acl: dict[str, str], messages: Sequence[mail.SeedItem] = ()) -> str:
        """Create the top-level shared folder *name* as the administrator, with the ACL entries *acl*
        (identifier -> rights), holding *messages*; returns its name as users see it (:meth:`shared`)."""
        # The administrator has no personal namespace: it names a shared folder without prefix in both layouts.
        self.create_folder(None, name)
        for identifier, rights in {self.admin_user: "lrswipkxtecdan", **acl}.items():
            self.set_acl(None, name, identifier, rights)
        if messages:
            mail.seed(self, self.admin_user, self.admin_password, name, messages)
        return self.shared(name)

    def _render_imapd_conf(self) -> str:
        options = [
            ("configdirectory", str(self.root / "config")),
            ("defaultpartition", "default"),
            ("partition-default", str(self.root / "partition")),
            ("proc_path", str(self.root / "proc")),
            ("mboxname_lockpath", str(self.root / "lock")),
            ("lmtpsocket", str(self.root / "socket" / "lmtp")),
            ("idlesocket", str(self.root / "socket" / "idle")),
            ("notifysocket", str(self.root / "socket" / "notify")),
            ("sievedir", str(self.root / "sieve")),
            ("servername", REALM),
            ("admins", self.admin_user),
            ("allowplaintext", "yes"),
            ("sasl_mech_list", "PLAIN LOGIN"),
            ("sasl_pwcheck_method", "auxprop"),
            ("sasl_auxprop_plugin", "sasldb"),
            ("sasl_sasldb_path", str(self.sasldb)),
            ("syslog_prefix", f"cyrus-test-{self.layout.name}"),
            ("failedloginpause", "0"),
            *self.layout.imapd_options,
        ]
        return "".join(f"{key}: {value}\n" for key, value in options)

    def _render_cyrus_conf(self, tree: Path) -> str:
        conf = f"-C {self.imapd_conf}"
        return (
            "START {\n"
            f'  recover cmd="{tree / _BIN / "ctl_cyrusdb"} {conf} -r"\n'
            "}\n"
            "SERVICES {\n"
            f'  imap cmd="{tree / _BIN / "imapd"} {conf}" listen="{self.host}:{self.port}" prefork=1\n'
            "}\n"
            "EVENTS {\n"
            "}\n"
        )
