"""Throwaway Dovecot instances for integration tests.

Each :class:`DovecotServer` lives in its own temporary directory (configuration, certificate, users,
mail, sockets, state and log) and listens on free loopback ports only. Two kinds exist:

``remote``
    Plays the foreign IMAP server: hierarchy separator ``/`` (``LAYOUT=fs`` maildir), STARTTLS on the
    plain port and implicit TLS on the IMAPS port with a self-signed certificate (``cert_path``),
    ``Sent Items`` auto-created with ``\\Sent``, ``Trash``/``Drafts`` declared but not created. Given
    ``master_user`` and ``master_password``, it also plays a NethServer whose whole mail is migrated without
    the users' passwords: ``USER*MASTER`` logs in as USER with the master's password.

``local``
    Plays the NethServer 8 Dovecot: separator ``.`` (Maildir++), auto-created and subscribed
    ``Sent``/``Trash``/``Junk``/``Drafts`` with SPECIAL-USE, a master user ``vmail``, imap_filter_sieve
    and an LMTP listener with Sieve.

Users live in a passwd-file that Dovecot re-reads when it changes, so :meth:`DovecotServer.add_user`
works on a running server.

Given ``oauth2_introspection_url`` (oauth.py ``OAuthServer.introspection_url``), an instance also accepts OAuth2
access tokens with the SASL mechanisms ``oauth2_mechanisms`` (``xoauth2``, ``oauthbearer`` or both; AUTH=PLAIN and
LOGIN stay for passwords): Dovecot's ``oauth2`` passdb asks the introspection endpoint (RFC 7662, POST) about every
token, so a revoked or expired token is refused at once. A user token opens the mailbox named by the answer's
``username``; an app-only token (client credentials) opens every mailbox ``USER@DOMAIN`` when the answer's
``app_mailboxes`` is ``*@DOMAIN``. The users themselves come from :meth:`DovecotServer.add_user` as always (the
userdb; their passwords keep working).
"""

from __future__ import annotations

import base64
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

LOOPBACK = "127.0.0.1"
MASTER_USER = "vmail"
MASTER_PASSWORD = "M\u00e2st'er\"pw\\1"
MASTER_SEPARATOR = "*"
KINDS = ("remote", "local")
OAUTH2_MECHANISMS = ("xoauth2", "oauthbearer")
_USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,127}$")
_DH_FILE = Path("/usr/share/dovecot/dh.pem")


class DovecotError(RuntimeError):
    """A throwaway Dovecot instance could not be started, stopped or driven."""


def find_dovecot() -> str | None:
    """Return the path of the ``dovecot`` binary (``$DOVECOT_BIN``, ``$PATH``, ``/usr/sbin``) or None."""
    candidates = [os.environ.get("DOVECOT_BIN"), shutil.which("dovecot"), "/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_doveadm() -> str | None:
    """Return the path of the ``doveadm`` binary or None."""
    candidates = [os.environ.get("DOVEADM_BIN"), shutil.which("doveadm"), "/usr/bin/doveadm", "/usr/local/bin/doveadm"]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on *host* right now (bind to port 0 and release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _quote(value: str | os.PathLike) -> str:
    """Quote a value for dovecot.conf (double quotes, backslash escapes)."""
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _live_group_members(pgid: int) -> list[int]:
    """PIDs in process group *pgid* that are alive (zombies waiting to be reaped do not count)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            members.append(int(entry))
    return members


class ServerProcess:
    """What the harness's servers (DovecotServer, cyrus.CyrusServer) share around their master process: used as a
    context manager, a server is started on entry (and stopped again if starting fails) and stopped on exit; it is
    running while its master process is alive. Subclasses give :meth:`start` and :meth:`stop`."""

    _proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the master process is alive."""
        return self._proc is not None and self._proc.poll() is None


class DovecotServer(ServerProcess):
    """A private Dovecot instance started with ``dovecot -F -c FILE`` as a subprocess.

    Use as a context manager or call :meth:`start` and :meth:`stop`. Attributes (valid after
    construction unless stated): ``kind``, ``host``, ``port`` (plain IMAP, offering STARTTLS when
    ``starttls``), ``ssl_port`` (IMAPS, None without TLS), ``lmtp_port`` (local kind, else None),
    ``separator``, ``mail_root``, ``home_root``, ``cert_path`` (None without TLS), ``config_path``,
    ``log_path``, ``master_user``/``master_password``/``master_separator`` (the local kind always has the
    master user ``vmail``; the remote kind only when given one, else None),
    ``sieve`` (whether imap_filter_sieve/LMTP Sieve are configured), ``users`` (name -> password),
    ``max_userip_connections`` (Dovecot's ``mail_max_userip_connections``: sessions per user and IP; the
    next login is refused with ``NO [LIMIT]``), ``mail_fsync`` (Dovecot's setting: ``never`` by default, fast and
    enough for throwaway mail; None leaves Dovecot's own default, ``optimized``, as a production server has it),
    ``oauth2_introspection_url`` and ``oauth2_mechanisms`` (the module docstring; None and () without OAuth2).
    """

    def __init__(self, kind: str, *, starttls: bool = True, sieve: bool = True, startup_timeout: float = 20.0,
                 max_userip_connections: int = 200, master_user: str | None = None,
                 master_password: str | None = None, mail_fsync: str | None = "never",
                 oauth2_introspection_url: str | None = None,
                 oauth2_mechanisms: tuple[str, ...] = OAUTH2_MECHANISMS) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        if kind == "local":
            master_user = master_user or MASTER_USER
            master_password = MASTER_PASSWORD if master_password is None else master_password
        if (master_user is None) != (master_password is None):
            raise ValueError("a master user needs both master_user and master_password")
        if mail_fsync not in (None, "never", "optimized", "always"):
            raise ValueError(f"mail_fsync must be None, never, optimized or always, not {mail_fsync!r}")
        if oauth2_introspection_url is None:
            oauth2_mechanisms = ()
        elif not oauth2_mechanisms or not set(oauth2_mechanisms) <= set(OAUTH2_MECHANISMS):
            raise ValueError(f"oauth2_mechanisms must be some of {OAUTH2_MECHANISMS}, not {oauth2_mechanisms!r}")
        if master_user is not None and not _USERNAME_RE.match(master_user):
            raise ValueError(f"unsupported master user name {master_user!r}")
        self.kind = kind
        self.starttls = starttls
        self.sieve = sieve and kind == "local"
        self.startup_timeout = startup_timeout
        self.max_userip_connections = max_userip_connections
        self.mail_fsync = mail_fsync
        self.oauth2_introspection_url = oauth2_introspection_url
        self.oauth2_mechanisms = tuple(dict.fromkeys(oauth2_mechanisms))
        self.host = LOOPBACK
        self.separator = "/" if kind == "remote" else "."
        self.port: int = 0
        self.ssl_port: int | None = None
        self.lmtp_port: int | None = None
        self.master_user: str | None = master_user
        self.master_password: str | None = master_password
        self.master_separator: str | None = MASTER_SEPARATOR if master_user is not None else None
        self.users: dict[str, str] = {}
        self.quotas: dict[str, str] = {}
        self._proc: subprocess.Popen | None = None
        self._uid = pwd.getpwnam("dovecot").pw_uid
        self._gid = grp.getgrnam("dovecot").gr_gid

        self.root = Path(tempfile.mkdtemp(prefix=f"mailops-dc-{kind}-"))
        os.chmod(self.root, 0o755)
        self.etc_dir = self.root / "etc"
        self.base_dir = self.root / "run"
        self.state_dir = self.root / "state"
        self.mail_root = self.root / "mail"
        self.home_root = self.root / "home"
        self.log_path = self.root / "dovecot.log"
        self.stderr_path = self.root / "dovecot.stderr"
        self.config_path = self.etc_dir / "dovecot.conf"
        self.passwd_dir = self.etc_dir / "users.d"
        self.master_passwd_path = self.etc_dir / "master-users"
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        self.etc_dir.mkdir(mode=0o755)
        self.lmtp_socket = self.root / "lmtp.sock"
        self.sieve_before_dir = self.root / "sieve-before"
        self.capture_dir = self.root / "captured-mail"
        self.sendmail_path = self.root / "sendmail-capture"
        if self.sieve:
            for directory in (self.sieve_before_dir, self.capture_dir):
                directory.mkdir(mode=0o755)
                os.chown(directory, self._uid, self._gid)
            self.sendmail_path.write_text(
                "#!/bin/sh\n# Captures what Dovecot would send (vacation replies, redirects): one file per message.\n"
                f'cat > "{self.capture_dir}/$(date +%s%N)-$$.eml"\n', encoding="utf-8")
            os.chmod(self.sendmail_path, 0o755)
        self.passwd_dir.mkdir(mode=0o755)
        self.state_dir.mkdir(mode=0o755)
        for directory in (self.mail_root, self.home_root):
            directory.mkdir(mode=0o750)
            os.chown(directory, self._uid, self._gid)
        if master_user is not None and master_password is not None:
            self.master_passwd_path.write_text(f"{master_user}:{{PLAIN.B64}}{_b64(master_password)}\n", encoding="utf-8")
        if starttls:
            self._make_certificate()
        if oauth2_introspection_url is not None:
            self._write_oauth2_configs(oauth2_introspection_url)

    # ------------------------------------------------------------------ lifecycle

    def __repr__(self) -> str:
        return f"<DovecotServer {self.kind} {self.host}:{self.port} ssl_port={self.ssl_port} running={self.running}>"

    def start(self) -> DovecotServer:
        """Start the instance and wait until every listener answers; retry on a port race."""
        if self.running:
            return self
        binary = find_dovecot()
        if binary is None:
            raise DovecotError("the dovecot binary was not found (install dovecot-imapd or set DOVECOT_BIN)")
        if not self.root.exists():
            raise DovecotError("this DovecotServer was stopped and its directory removed; create a new one")
        last_error: DovecotError | None = None
        for _attempt in range(3):
            self._choose_ports()
            self.config_path.write_text(self._render_config(), encoding="utf-8")
            with open(self.stderr_path, "wb") as stderr:
                # pylint: disable-next=consider-using-with
                self._proc = subprocess.Popen(
                    [binary, "-F", "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL, stdout=stderr, stderr=subprocess.STDOUT, start_new_session=True,
                )
            try:
                self._wait_ready()
                return self
            except DovecotError as error:
                last_error = error
                self._terminate()
                if "in use" not in str(error):
                    break
        raise last_error if last_error else DovecotError("dovecot did not start")

    def stop(self) -> None:
        """Stop the instance (all its processes) and remove its directory. Idempotent."""
        self._terminate()
        shutil.rmtree(self.root, ignore_errors=True)

    def _terminate(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pgid = proc.pid
        if proc.poll() is None:
            # The whole group at once: a master told alone waits about a second for its children to end, and
            # the instance's mail is removed right after (stop) or was never used (a failed start).
            self._killpg(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._killpg(pgid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        # Children (auth, imap, log, ...) share the master's process group; make sure none survive.
        deadline = time.monotonic() + timeout
        sig = signal.SIGTERM
        while _live_group_members(pgid):
            if time.monotonic() > deadline:
                if sig == signal.SIGKILL:
                    raise DovecotError(f"dovecot processes of group {pgid} survived SIGKILL")
                sig, deadline = signal.SIGKILL, time.monotonic() + timeout
            self._killpg(pgid, sig)
            time.sleep(0.05)

    @staticmethod
    def _killpg(pgid: int, sig: int) -> bool:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return False
        return True

    def _choose_ports(self) -> None:
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        plain, secure, lmtp = sorted(ports)
        self.port = plain
        self.ssl_port = secure if self.starttls else None
        self.lmtp_port = lmtp if self.kind == "local" else None

    def _wait_ready(self) -> None:
        listeners = [(self.port, b"* OK", False), (self.ssl_port, b"* OK", True), (self.lmtp_port, b"220", False)]
        deadline = time.monotonic() + self.startup_timeout
        for port, greeting, use_tls in listeners:
            if port is None:
                continue
            while True:
                if self._proc is None or self._proc.poll() is not None:
                    raise DovecotError(f"dovecot ({self.kind}) exited during startup\n{self.diagnostics()}")
                if self._greets(port, greeting, use_tls):
                    break
                if time.monotonic() > deadline:
                    raise DovecotError(f"dovecot ({self.kind}) did not answer on port {port} within {self.startup_timeout}s\n{self.diagnostics()}")
                time.sleep(0.05)

    def _greets(self, port: int, greeting: bytes, use_tls: bool) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=2) as raw:
                if not use_tls:
                    return raw.recv(256).startswith(greeting)
                with self.ssl_context().wrap_socket(raw, server_hostname=self.host) as tls:
                    return tls.recv(256).startswith(greeting)
        except OSError:
            return False

    def diagnostics(self, lines: int = 40) -> str:
        """Return the tail of the dovecot log and of its stdout/stderr, for error messages."""
        parts = []
        for path in (self.log_path, self.stderr_path):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            tail = "\n".join(text.splitlines()[-lines:])
            if tail:
                parts.append(f"--- {path.name} (tail) ---\n{tail}")
        return "\n".join(parts) or "(no dovecot output)"

    # ------------------------------------------------------------------ users
    #
    # Dovecot's passwd-file driver stat()s a file at most once per second, so a user appended to a shared
    # file can stay invisible for up to a second. One passwd-file per user (the path contains %u) avoids
    # that: a new user's file is read on its first lookup. Replacing or removing a user still waits until
    # Dovecot sees the change (bounded, about a second at most).

    def add_user(self, name: str, password: str) -> str:
        """Add (or replace) a user; a running server accepts it at once (no restart, no reload). Returns *name*."""
        if not _USERNAME_RE.match(name):
            raise ValueError(f"unsupported user name {name!r}")
        replacing = name in self.users
        self.users[name] = password
        path = self.passwd_dir / name
        tmp = self.passwd_dir / f".{name}.tmp"
        extra = f"userdb_quota_rule=*:storage={self.quotas[name]}" if name in self.quotas else ""
        tmp.write_text(f"{name}:{{PLAIN.B64}}{_b64(password)}:{self._uid}:{self._gid}::{self.home_root / name}::{extra}\n", encoding="utf-8")
        if replacing:
            # Dovecot compares mtime (seconds) and size: make sure a same-size rewrite is noticed too.
            stamp = max(int(time.time()), int(path.stat().st_mtime) + 1)
            os.utime(tmp, (stamp, stamp))
        os.replace(tmp, path)
        if replacing and self.running:
            self._wait_auth(name, password, expect=True)
        return name

    def set_user_quota(self, name: str, storage: str | None) -> None:
        """Give a user of the local server a storage quota (for example "1M"), or none; applies to new sessions."""
        if self.kind != "local":
            raise ValueError("quotas are configured on the local server only")
        if storage is None:
            self.quotas.pop(name, None)
        else:
            self.quotas[name] = storage
        self.add_user(name, self.users[name])
        # Dovecot re-reads a passwd-file when its mtime (seconds) changed, checking at most once a second:
        # wait until its userdb answers with the new rule (bounded).
        wanted = f"*:storage={storage}" if storage is not None else None
        deadline = time.monotonic() + 10
        while True:
            fields = dict(line.split("\t", 1) for line in self.doveadm("user", name).stdout.splitlines() if "\t" in line)
            if fields.get("quota_rule") == wanted or time.monotonic() > deadline:
                break
            time.sleep(0.2)

    def remove_user(self, name: str) -> None:
        """Remove a user (its mail is kept); waits until a running server refuses it."""
        password = self.users.pop(name, None)
        (self.passwd_dir / name).unlink(missing_ok=True)
        if password is not None and self.running:
            self._wait_auth(name, password, expect=False)

    def _wait_auth(self, name: str, password: str, expect: bool, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            result = self.doveadm("auth", "test", "-x", "service=imap", "-x", "no-penalty=yes", name, password, check=False)
            if (result.returncode == 0) == expect:
                return
            if time.monotonic() > deadline:
                raise DovecotError(f"dovecot did not pick up the change of user {name!r} within {timeout}s")
            time.sleep(0.1)

    def user_home(self, name: str) -> Path:
        """The home directory of *name* (holds ``sieve/`` and ``.dovecot.sieve`` on the local kind)."""
        return self.home_root / name

    def user_maildir(self, name: str) -> Path:
        """The mail directory of *name*."""
        return self.mail_root / name

    def install_sieve(self, user: str, script: str, name: str = "main") -> Path:
        """Install and activate a Sieve script for *user* (``~/sieve/NAME.sieve``, ``~/.dovecot.sieve`` symlink)."""
        home = self.user_home(user)
        sieve_dir = home / "sieve"
        sieve_dir.mkdir(parents=True, exist_ok=True)
        script_path = sieve_dir / f"{name}.sieve"
        script_path.write_text(script, encoding="utf-8")
        active = home / ".dovecot.sieve"
        if active.is_symlink() or active.exists():
            active.unlink()
        active.symlink_to(Path("sieve") / f"{name}.sieve")
        for path in (home, sieve_dir, script_path):
            os.lchown(path, self._uid, self._gid)
        os.lchown(active, self._uid, self._gid)
        return script_path

    # ------------------------------------------------------------------ helpers

    def install_sieve_before(self, script: str, name: str = "global") -> Path:
        """Install a global Sieve script that runs before every user's script at delivery (sieve_before)."""
        path = self.sieve_before_dir / f"{name}.sieve"
        path.write_text(script, encoding="utf-8")
        os.chown(path, self._uid, self._gid)
        return path

    def captured_mail(self) -> list[bytes]:
        """The messages Dovecot handed to its sendmail_path (vacation replies...), oldest first."""
        return [p.read_bytes() for p in sorted(self.capture_dir.glob("*.eml"))]

    def doveadm(self, *args: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """Run ``doveadm -c CONF ARGS...`` against this instance; returns the completed process (text output)."""
        binary = find_doveadm()
        if binary is None:
            raise DovecotError("the doveadm binary was not found")
        result = subprocess.run(
            [binary, "-c", str(self.config_path), *args], capture_output=True, text=True, timeout=timeout, check=False,
        )
        if check and result.returncode != 0:
            raise DovecotError(f"doveadm {' '.join(args)} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
        return result

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client SSL context that trusts this instance's self-signed certificate."""
        if self.cert_path is None:
            raise DovecotError("this instance has no TLS (created with starttls=False)")
        return ssl.create_default_context(cafile=str(self.cert_path))

    def log_text(self) -> str:
        """The whole dovecot log of this instance so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ files

    def _make_certificate(self) -> None:
        self.cert_path = self.etc_dir / "cert.pem"
        self.key_path = self.etc_dir / "key.pem"
        openssl_cnf = self.etc_dir / "openssl.cnf"
        openssl_cnf.write_text(
            "[req]\n"
            "distinguished_name = dn\n"
            "x509_extensions = v3\n"
            "prompt = no\n"
            "[dn]\n"
            "CN = 127.0.0.1\n"
            "[v3]\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid:always\n"
            "basicConstraints = critical, CA:TRUE\n"
            "keyUsage = critical, digitalSignature, keyEncipherment, keyCertSign\n"
            "extendedKeyUsage = serverAuth\n"
            "subjectAltName = IP:127.0.0.1, DNS:localhost\n",
            encoding="utf-8",
        )
        result = subprocess.run(
            [
                "openssl", "req", "-x509", "-new", "-nodes", "-config", str(openssl_cnf),
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-sha256", "-days", "30",
                "-keyout", str(self.key_path), "-out", str(self.cert_path),
            ],
            capture_output=True, text=True, check=False, timeout=60,
        )
        if result.returncode != 0:
            raise DovecotError(f"openssl could not create a certificate: {result.stderr.strip()}")
        os.chmod(self.key_path, 0o600)

    def _write_oauth2_configs(self, introspection_url: str) -> None:
        """The two ``oauth2`` passdb files: tokens of one user (``username``), app-only tokens (``app_mailboxes``)."""
        for name, attribute, username_format in (("user", "username", "%Lu"), ("app", "app_mailboxes", "%Ld")):
            (self.etc_dir / f"oauth2-{name}.conf.ext").write_text(
                "# Generated by tests/integration/harness/dovecot.py: ask the test OAuth server about every token.\n"
                "introspection_mode = post\n"
                f"introspection_url = {introspection_url}\n"
                f"username_attribute = {attribute}\n"
                f"username_format = {username_format}\n"
                "active_attribute = active\n"
                "active_value = true\n"
                "timeout_msecs = 10000\n",
                encoding="utf-8")

    def _oauth2_passdbs(self) -> list[str]:
        """Two ``oauth2`` passdbs: the first accepts a user token for its user, else (``continue``) the second
        accepts an app-only token for a mailbox of its domain. Dovecot's passdb compares ``username_format``
        expanded for the login name with the same format expanded for the token's attribute."""
        mechanisms = " ".join(self.oauth2_mechanisms)
        return [
            "passdb {",
            "  driver = oauth2",
            f"  mechanisms = {mechanisms}",
            f"  args = {self.etc_dir / 'oauth2-user.conf.ext'}",
            "  result_failure = continue",
            "}",
            "passdb {",
            "  driver = oauth2",
            f"  mechanisms = {mechanisms}",
            f"  args = {self.etc_dir / 'oauth2-app.conf.ext'}",
            "}",
        ]

    def _render_config(self) -> str:
        remote = self.kind == "remote"
        protocols = "imap lmtp" if self.kind == "local" else "imap"
        if remote:
            mail_location = f"maildir:{self.mail_root}/%u:LAYOUT=fs"
            mailboxes = (
                '  mailbox "Sent Items" {\n    auto = subscribe\n    special_use = \\Sent\n  }\n'
                '  mailbox Trash {\n    auto = no\n    special_use = \\Trash\n  }\n'
                '  mailbox Drafts {\n    auto = no\n    special_use = \\Drafts\n  }\n'
            )
        else:
            mail_location = f"maildir:{self.mail_root}/%u"
            mailboxes = "".join(
                f"  mailbox {name} {{\n    auto = subscribe\n    special_use = \\{name}\n  }}\n"
                for name in ("Sent", "Trash", "Junk", "Drafts")
            )
        lines = [
            "# Generated by tests/integration/harness/dovecot.py; throwaway test instance.",
            f"instance_name = mailops-{self.kind}-{self.root.name}",
            f"base_dir = {self.base_dir}",
            f"state_dir = {self.state_dir}",
            f"log_path = {self.log_path}",
            f"protocols = {protocols}",
            f"listen = {LOOPBACK}",
            "shutdown_clients = yes",
            "disable_plaintext_auth = no",
            f"auth_mechanisms = {' '.join(('plain', 'login', *self.oauth2_mechanisms))}",
            "auth_verbose = yes",
            "auth_failure_delay = 0",
            "mail_uid = dovecot",
            "mail_gid = dovecot",
            f"first_valid_uid = {self._uid}",
            f"mail_location = {mail_location}",
            *([f"mail_fsync = {self.mail_fsync}"] if self.mail_fsync is not None else []),
            f"mail_max_userip_connections = {self.max_userip_connections}",
            "",
        ]
        if self.starttls:
            lines += [
                "ssl = yes",
                f"ssl_cert = <{self.cert_path}",
                f"ssl_key = <{self.key_path}",
            ]
            if _DH_FILE.is_file():
                lines.append(f"ssl_dh = <{_DH_FILE}")
        else:
            lines.append("ssl = no")
        lines += [
            "",
            "namespace inbox {",
            "  inbox = yes",
            f"  separator = {self.separator}",
            '  prefix = ""',
            mailboxes.rstrip("\n"),
            "}",
            "",
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {self.passwd_dir}/%u",
            *(["  mechanisms = plain login"] if self.oauth2_mechanisms else []),
            "}",
            *(self._oauth2_passdbs() if self.oauth2_mechanisms else []),
            "userdb {",
            "  driver = passwd-file",
            f"  args = username_format=%u {self.passwd_dir}/%u",
            "}",
            "",
            "service imap-login {",
            "  inet_listener imap {",
            f"    address = {LOOPBACK}",
            f"    port = {self.port}",
            "  }",
        ]
        if self.ssl_port:
            lines += [
                "  inet_listener imaps {",
                f"    address = {LOOPBACK}",
                f"    port = {self.ssl_port}",
                "    ssl = yes",
                "  }",
            ]
        lines += [
            "}",
            # Without the anvil penalty socket the auth process cannot apply its growing delay (2-15 s) to
            # repeated failed logins from 127.0.0.1, which would slow down wrong-password tests.
            "service anvil {",
            "  unix_listener anvil-auth-penalty {",
            "    mode = 0",
            "  }",
            "}",
            "service stats {",
            "  unix_listener stats-writer {",
            "    mode = 0666",
            "  }",
            "}",
        ]
        if self.sieve:
            lines += [
                "mail_plugins = $mail_plugins",
                # Mail that Sieve sends (vacation replies, redirects) is captured, not sent: see captured_mail().
                f"sendmail_path = {self.sendmail_path}",
                "plugin {",
                "  sieve = file:~/sieve;active=~/.dovecot.sieve",
                # Global scripts run before the user's (install_sieve_before); an empty directory runs none.
                f"  sieve_before = {self.sieve_before_dir}",
                # LMTP recipients here are bare user names: let vacation answer without an address check.
                "  sieve_vacation_dont_check_recipient = yes",
                "}",
                "protocol imap {",
                "  mail_plugins = $mail_plugins imap_sieve imap_filter_sieve",
                "}",
            ]
        if self.kind == "local":
            # Quotas (set per user with set_user_quota) let tests make the local server refuse a message.
            lines[lines.index("passdb {"):lines.index("passdb {")] = [
                "mail_plugins = $mail_plugins quota",
                "plugin {",
                "  quota = count:User quota",
                "  quota_vsizes = yes",
                "}",
                "",
            ]
            lines += [
                "service lmtp {",
                "  inet_listener lmtp {",
                f"    address = {LOOPBACK}",
                f"    port = {self.lmtp_port}",
                "  }",
                # The same service on a UNIX socket (lmtp_socket), as NethServer's containers expose it.
                f"  unix_listener {self.lmtp_socket} {{",
                "    mode = 0666",
                "  }",
                "}",
                "postmaster_address = postmaster@localhost",
                "protocol lmtp {",
                "  auth_username_format = %Ln",
                "  mail_plugins = $mail_plugins sieve" if self.sieve else "  mail_plugins = $mail_plugins",
                "}",
            ]
        if self.master_user is not None:
            # Dovecot's master users: "USER*MASTER" with MASTER's password logs in as USER (the master passdb
            # checks the password, "pass = yes" then looks USER up in the ordinary passdb).
            lines[lines.index("passdb {"):lines.index("passdb {")] = [
                f"auth_master_user_separator = {self.master_separator}",
                "passdb {",
                "  driver = passwd-file",
                f"  args = scheme=PLAIN username_format=%u {self.master_passwd_path}",
                "  master = yes",
                "  pass = yes",
                *(["  mechanisms = plain login"] if self.oauth2_mechanisms else []),
                "}",
            ]
        return "\n".join(lines) + "\n"
