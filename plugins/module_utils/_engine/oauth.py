# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OAuth2 access tokens for the remote login (``remote_auth``, docs/spec.md): where a token comes from.

:func:`token_source` gives the :class:`TokenSource` of a task, or None for ``remote_auth: password``:

- ``token_file``: a file another process keeps fresh, read at every call (private to its owner, bounded in size);
- ``token_command``: a command run without a shell at every call (no input, bounded in time and output);
- ``client_credentials``: the client-credentials grant (RFC 6749 section 4.4) of a Microsoft Entra ID application,
  through msal (ConfidentialClientApplication), with a client secret or a certificate;
- ``service_account``: a Google service account with domain-wide delegation acting as the remote user, through
  google-auth (the JWT-bearer grant of RFC 7523).

A grant's token is kept while valid and obtained again when less than :data:`REFRESH_MARGIN_S` (or
:data:`REFRESH_FRACTION` of its life, whichever is less) remain, or when asked with ``fresh=True`` (the IMAP server
refused it). The token endpoint is untrusted like a remote server: every HTTP exchange is bounded in time and size
(:class:`_Http`). Token and secrets never appear in an exception, a log or any process's arguments.

Pure Python, no Ansible imports; msal, google-auth and requests are imported when a grant needs them.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import selectors
import shlex
import signal
import stat
import subprocess
import threading
import time
import typing as t
import urllib.parse

from . import errors
from .text import capitalized, printable

SOURCES = ("token_file", "token_command", "client_credentials", "service_account")
TOKEN_MAX_BYTES = 16 * 1024  # a token file, a token command's output
COMMAND_TIMEOUT_S = 60.0  # a token command, start to exit
STDERR_KEPT = 4096  # bytes of a token command's error output kept (an excerpt of them is shown)
EXCERPT = 200  # characters of a command's error output or of an endpoint's error description shown
HTTP_TIMEOUT_S = 30.0  # one HTTP exchange with a token endpoint, connect to last byte
HTTP_MAX_BYTES = 1024 * 1024  # one response of a token endpoint
REFRESH_MARGIN_S = 300.0
REFRESH_FRACTION = 0.1
TOKEN_SIDE = "token endpoint"  # the side of a failure of a grant (results' ``side``)
SOURCE_SIDE = "token source"  # the side of a failure of a token file or command, or of a grant's key or certificate file
# RFC 6750 section 2.1 b64token: what a bearer token may hold (and so what may enter a SASL message).
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# Entra ID error codes (AADSTS...) and what to do about them.
_AADSTS_ADVICE = {
    "7000215": "check remote_oauth_client_secret: give the secret's value (not its id), and a new secret if it expired",
    "7000222": "the client secret has expired: create a new one for the application and give it in remote_oauth_client_secret",
    "700027": "check remote_oauth_certificate: its certificate must be one of those registered with the application",
    "90002": "check remote_oauth_tenant: give the tenant's id or one of its verified domain names",
    "700016": "check remote_oauth_client_id and remote_oauth_tenant: the application is not registered in that tenant",
    "65001": "grant admin consent to the application's permissions (IMAP.AccessAsApp) in the tenant",
    "7000112": "the application is disabled in the tenant: enable it",
}


class TokenError(errors.SyncError):
    """No token could be obtained: the token endpoint refused (its own error code and words), or a token file or
    command failed. Kind ``token_failed``; side :data:`TOKEN_SIDE` or :data:`SOURCE_SIDE`."""

    def __init__(self, message: str, side: str = TOKEN_SIDE) -> None:
        super().__init__(errors.TOKEN_FAILED, message, side)


class TokenUnavailable(TokenError, errors.Transient):
    """The token endpoint could not be reached or did not answer in time: this may pass, so a run reconnecting in its
    middle tries again with its backoff (sync.Syncer). An answer, even HTTP 5xx or 429, stays a :class:`TokenError`
    that stops the run: msal holds such an answer back from every new request for up to 60 s (Retry-After), longer
    than the whole reconnect backoff (docs/oauth2.md "When the token endpoint is down")."""


class TokenSource(t.Protocol):
    """Where the access tokens of one remote account come from."""

    describe: str  # "the token file /x", "the token endpoint of tenant T": the subject of a sentence about it
    renewable: bool  # a grant: a token the server refused may be followed by a new one (token(fresh=True))

    def token(self, *, fresh: bool = False) -> str:
        """An access token; ``fresh=True`` bypasses any cache. Raises TokenError."""


def token_source(task: t.Any) -> TokenSource | None:
    """The token source of a parsed task (schema.check_remote_auth has checked its fields), None for a password.

    Nothing is read, run or requested here: the first :meth:`TokenSource.token` does that.
    """
    auth = task.remote_auth
    if auth == "password":
        return None
    if auth == "token_file":
        return TokenFile(task.remote_token_file)
    if auth == "token_command":
        return TokenCommand(task.remote_token_command)
    if auth == "client_credentials":
        return ClientCredentials(task.remote_oauth_client_id, task.remote_oauth_tenant, task.remote_oauth_authority,
                                 task.remote_oauth_scope, task.remote_oauth_client_secret, task.remote_oauth_certificate,
                                 task.remote_oauth_ca_file)
    if auth == "service_account":
        return ServiceAccount(task.remote_oauth_key_file, task.remote_user, task.remote_oauth_scope, task.remote_oauth_ca_file)
    raise errors.ConfigError(f"remote_auth: {auth!r} is not a token source; use one of {', '.join(SOURCES)}.")


def checked_token(raw: bytes | str, where: str, side: str = TOKEN_SIDE) -> str:
    """``raw`` stripped, when it is a bearer token (RFC 6750 characters); else TokenError naming ``where`` (never the
    token's bytes)."""
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    token = text.strip()
    if not token:
        raise TokenError(f"{capitalized(where)} gave an empty token; check that it holds a current access token.", side)
    if not _TOKEN_RE.fullmatch(token):
        raise TokenError(f"{capitalized(where)} gave something that is not an access token (a bearer token is one "
                         "word of letters, digits and -._~+/ characters); check what it holds.", side)
    return token


def command_words(field: str, command: str) -> list[str]:
    """``command`` split like a shell would (quotes, backslashes), never run by one; ConfigError naming ``field``."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise errors.ConfigError(f"{field}: {printable(command, 100)!r} cannot be split into words ({exc}); check its "
                                 "quotes.") from None
    if not words:
        raise errors.ConfigError(f"{field} is empty; give a command that prints the access token.")
    return words


def private_file(path: str, what: str, limit: int = TOKEN_MAX_BYTES, side: str = SOURCE_SIDE) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes that its group and others cannot read (as ssh
    wants of a private key); TokenError naming ``what`` and the fix otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise TokenError(f"{capitalized(what)} cannot be read ({exc.strerror}); check the path and that the user "
                         "running the sync may read it.", side) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise TokenError(f"{capitalized(what)} is not a regular file; give the path of a file.", side)
        if info.st_mode & 0o077:
            raise TokenError(f"{capitalized(what)} may be read by its group or by others (mode "
                             f"{stat.S_IMODE(info.st_mode):04o}); make it private to its owner: chmod 600 {path}.", side)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TokenError(f"{capitalized(what)} is larger than {limit} bytes; give the file that holds only the "
                         "access token (or key).", side)
    return data


# --- the user's own tokens ------------------------------------------------------------------------------------

class TokenFile:
    """A token file another process keeps fresh: read at every call."""

    renewable = False

    def __init__(self, path: str) -> None:
        self.path = path
        self.describe = f"the token file {path}"

    def token(self, *, fresh: bool = False) -> str:  # pylint: disable=unused-argument
        return checked_token(private_file(self.path, self.describe), self.describe, SOURCE_SIDE)


class TokenCommand:
    """A command that prints the token: run at every call, without a shell, with no input, bounded in time and output."""

    renewable = False

    def __init__(self, command: str, timeout: float = COMMAND_TIMEOUT_S) -> None:
        self.words = command_words("remote_token_command", command)
        self.timeout = timeout
        self.describe = f"the token command {printable(self.words[0], 100)}"

    def token(self, *, fresh: bool = False) -> str:  # pylint: disable=unused-argument
        status, out, err = run_bounded(self.words, self.timeout, self.describe)
        if status != 0:
            excerpt = printable(err.decode("utf-8", "replace").strip(), EXCERPT) or "no error output"
            raise TokenError(f"{capitalized(self.describe)} failed (exit status {status}: {excerpt}); run "
                             "it by hand as the user of the sync to see why.", SOURCE_SIDE)
        return checked_token(out, self.describe, SOURCE_SIDE)


def run_bounded(words: list[str], timeout: float, what: str) -> tuple[int, bytes, bytes]:
    """Run ``words`` (no shell, stdin closed, its own process group): exit status, stdout, the first STDERR_KEPT bytes of
    stderr. Killed, with TokenError, when it runs longer than ``timeout`` or prints more than TOKEN_MAX_BYTES."""
    try:
        proc = subprocess.Popen(words, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # pylint: disable=consider-using-with
                                close_fds=True, start_new_session=True)
    except OSError as exc:
        raise TokenError(f"{capitalized(what)} cannot be started ({exc.strerror}); give the full path of an "
                         "executable program.", SOURCE_SIDE) from None
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    problem = None
    with selectors.DefaultSelector() as selector:
        for stream, buffer in ((proc.stdout, out), (proc.stderr, err)):
            if stream is not None:
                selector.register(stream, selectors.EVENT_READ, buffer)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                problem = f"did not finish within {timeout:g} s"
                break
            for key, _events in selector.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
            if len(out) > TOKEN_MAX_BYTES:
                problem = f"printed more than {TOKEN_MAX_BYTES} bytes"
                break
            del err[STDERR_KEPT:]
    if problem is None:
        try:
            status = proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            problem = f"did not finish within {timeout:g} s"
    if problem is not None:
        _kill(proc)
        raise TokenError(f"{capitalized(what)} {problem} and was stopped; make it print only the access token.",
                         SOURCE_SIDE)
    _close(proc)
    return status, bytes(out), bytes(err[:STDERR_KEPT])


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()
    _close(proc)


def _close(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


# --- grants ------------------------------------------------------------------------------------------------------

class _Grant:
    """A token obtained from a token endpoint, kept while valid (see the module's documentation)."""

    renewable = True
    describe = "the token endpoint"

    def __init__(self) -> None:
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()  # the connections of a run may log in from several threads at once
        self.requests = 0  # tokens obtained from the endpoint (for tests and logs)

    def token(self, *, fresh: bool = False) -> str:
        with self._lock:
            if fresh or self._token is None or time.monotonic() >= self._renew_at:
                token, life = self._obtain()
                self.requests += 1
                self._token = checked_token(token, self.describe)
                self._renew_at = time.monotonic() + renew_after(life)
            return self._token

    def _obtain(self) -> tuple[str, float]:
        """A new token and its life in seconds, from the endpoint."""
        raise NotImplementedError


def renew_after(life: float) -> float:
    """Seconds after which a token valid for ``life`` seconds is obtained again: when less than REFRESH_MARGIN_S or
    REFRESH_FRACTION of its life (whichever is less) remain."""
    life = max(0.0, life)
    return life - min(REFRESH_MARGIN_S, REFRESH_FRACTION * life)


class ClientCredentials(_Grant):  # pylint: disable=too-many-instance-attributes
    """The client-credentials grant of an Entra ID application, through msal (a secret or a certificate)."""

    def __init__(self, client_id: str, tenant: str, authority: str, scope: str, secret: str | None,
                 certificate: str | None, ca_file: str | None) -> None:
        super().__init__()
        self.client_id, self.tenant, self.scope = client_id, tenant, scope
        self.authority = f"{authority.rstrip('/')}/{urllib.parse.quote(tenant, safe='')}"
        self._secret, self.certificate, self.ca_file = secret, certificate, ca_file
        self.describe = f"the token endpoint of tenant {printable(tenant, 100)}"
        self._app: t.Any = None
        self._http: _Http | None = None

    def _credential(self) -> t.Any:
        if self._secret is not None:
            return self._secret
        pem = private_file(t.cast(str, self.certificate), f"the certificate file {self.certificate}", 1024 * 1024)
        return certificate_credential(pem, str(self.certificate))

    def _obtain(self) -> tuple[str, float]:
        msal = _import("msal", "msal")
        http = self._http = self._http or _Http(self.ca_file, self.describe)
        http.last_error = None
        try:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id, client_credential=self._credential(), authority=self.authority, http_client=http,
                    instance_discovery=False)
            cache = self._app.token_cache  # msal keeps tokens too: ours decide when a new one is needed
            for entry in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(entry)
            result = self._app.acquire_token_for_client(scopes=[self.scope])
        except TokenError:
            raise
        except Exception as exc:  # pylint: disable=broad-except  # msal raises ValueError and others for an endpoint's answer
            raise self._failed(http.last_error, exc) from None
        if not isinstance(result, dict) or "access_token" not in result:
            raise self._failed(result if isinstance(result, dict) else http.last_error, None)
        return str(result["access_token"]), _seconds(result.get("expires_in"))

    def _failed(self, answer: dict[str, t.Any] | None, exc: BaseException | None) -> TokenError:
        """The sentence of a refusal: the endpoint's error code and words, and what to do about them."""
        if answer and answer.get("error"):
            description = printable(str(answer.get("error_description") or ""), EXCERPT)
            code = _aadsts(answer)
            advice = _AADSTS_ADVICE.get(code or "", "check the application's id, credentials and permissions in the tenant")
            return TokenError(f"{capitalized(self.describe)} ({self.authority}) refused a token for application "
                              f"{printable(self.client_id, 100)}: {printable(answer['error'], 100)} ({description}); {advice}.")
        reason = printable(exc, EXCERPT) if exc is not None else "no token in its answer"
        return TokenError(f"{capitalized(self.describe)} ({self.authority}) gave no token ({reason}); check "
                          "remote_oauth_authority and remote_oauth_tenant, and the network path to the endpoint.")


def certificate_credential(pem: bytes, path: str) -> dict[str, str]:
    """msal's credential of a certificate: the private key and the certificate of the PEM, and the certificate's SHA-1
    thumbprint (what Entra ID shows for a registered certificate)."""
    x509 = _import("cryptography.x509", "cryptography")
    hashes = _import("cryptography.hazmat.primitives.hashes", "cryptography")
    serialization = _import("cryptography.hazmat.primitives.serialization", "cryptography")
    try:
        cert = x509.load_pem_x509_certificate(pem)
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise TokenError(f"The certificate file {path} must hold an unencrypted PEM private key and its PEM certificate; "
                         "convert it (openssl pkcs12 -nodes, or openssl pkey) and try again.", SOURCE_SIDE) from None
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {"private_key": key_pem.decode("ascii"), "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),  # nosec B303
            "public_certificate": cert.public_bytes(serialization.Encoding.PEM).decode("ascii")}


def _aadsts(answer: t.Mapping[str, t.Any]) -> str | None:
    codes = answer.get("error_codes")
    if isinstance(codes, list) and codes:
        return str(codes[0])
    match = re.match(r"AADSTS(\d+)", str(answer.get("error_description") or ""))
    return match.group(1) if match else None


class ServiceAccount(_Grant):
    """A Google service account with domain-wide delegation acting as ``subject``, through google-auth."""

    def __init__(self, key_file: str, subject: str, scope: str, ca_file: str | None) -> None:
        super().__init__()
        self.key_file, self.subject, self.scope, self.ca_file = key_file, subject, scope, ca_file
        self.describe = f"the token endpoint of the service account key {key_file}"
        self._http: _Http | None = None

    def _obtain(self) -> tuple[str, float]:
        service_account = _import("google.oauth2.service_account", "google-auth")
        exceptions = _import("google.auth.exceptions", "google-auth")
        info = self._key()
        http = self._http = self._http or _Http(self.ca_file, self.describe)
        http.last_error = None
        try:
            credentials = service_account.Credentials.from_service_account_info(info, scopes=[self.scope], subject=self.subject)
            credentials.refresh(http.google_request())
        except TokenError:
            raise
        except exceptions.RefreshError as exc:
            answer = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else http.last_error or {}
            code = printable(answer.get("error") or "refused", 100)
            description = printable(answer.get("error_description") or (exc.args[0] if exc.args else ""), EXCERPT)
            raise TokenError(f"{capitalized(self.describe)} refused a token for {printable(self.subject, 100)}: "
                             f"{code} ({description}); check that the service account's client id has domain-wide "
                             f"delegation of the scope {self.scope} and that the user exists.") from None
        except Exception as exc:  # pylint: disable=broad-except
            raise TokenError(f"{capitalized(self.describe)} gave no token ({printable(exc, EXCERPT)}); check the "
                             "key file and the network path to the endpoint.") from None
        expiry = credentials.expiry
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        life = (expiry - now).total_seconds() if isinstance(expiry, datetime.datetime) else 3600.0
        return str(credentials.token), life

    def _key(self) -> dict[str, t.Any]:
        what = f"the service account key file {self.key_file}"
        raw = private_file(self.key_file, what, 64 * 1024)
        try:
            info = json.loads(raw)
        except ValueError:
            info = None
        if not isinstance(info, dict) or info.get("type") != "service_account" or not info.get("private_key"):
            raise TokenError(f"{capitalized(what)} is not the JSON key of a service account; download a key of the "
                             "service account (JSON) from the Google Cloud console.", SOURCE_SIDE)
        token_uri = info.get("token_uri")
        if token_uri is not None and not (isinstance(token_uri, str) and token_uri.lower().startswith("https://")):
            # google-auth would send the signed assertion there: never in clear text
            raise TokenError(f"{capitalized(what)} gives a token_uri that is not an https:// URL "
                             f"({printable(token_uri, 100)}); download a genuine key of the service account.", SOURCE_SIDE)
        return info


def _seconds(value: t.Any) -> float:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 0.0


def _import(module: str, package: str) -> t.Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise errors.SyncError(errors.MISSING_LIBRARY, f"The Python library {package} is not installed on this host; install "
                               f"it (pip install {package.split()[0]}) to use this remote_auth.", SOURCE_SIDE) from None


# --- HTTP to a token endpoint, bounded ---------------------------------------------------------------------------

class _Response:
    """What msal reads of an HTTP response (``status_code``, ``text``, ``headers``, ``raise_for_status``)."""

    def __init__(self, status: int, headers: t.Mapping[str, str], body: bytes) -> None:
        self.status_code = self.status = status
        self.headers = dict(headers)
        self.content = self.data = body
        self.text = body.decode("utf-8", "replace")

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise OSError(f"HTTP status {self.status_code}")


class _Http:
    """HTTPS to a token endpoint through requests: verified (with ``ca_file`` when given), no redirects, each exchange
    within HTTP_TIMEOUT_S (plus one read's timeout) and HTTP_MAX_BYTES. The last JSON error answer is kept (:attr:`last_error`)."""

    def __init__(self, ca_file: str | None, describe: str) -> None:
        requests = _import("requests", "requests")
        self._session = requests.Session()
        self._verify: str | bool = ca_file or True  # per request: requests lets REQUESTS_CA_BUNDLE override a session's
        self._describe = describe
        self.last_error: dict[str, t.Any] | None = None

    def get(self, url: str, params: t.Any = None, headers: t.Any = None, **_kwargs: t.Any) -> _Response:
        return self.request("GET", url, params=params, headers=headers)

    def post(self, url: str, params: t.Any = None, data: t.Any = None, headers: t.Any = None, **_kwargs: t.Any) -> _Response:
        return self.request("POST", url, params=params, data=data, headers=headers)

    def close(self) -> None:
        self._session.close()

    def request(self, method: str, url: str, **kwargs: t.Any) -> _Response:
        """One exchange, within HTTP_TIMEOUT_S from connect to last byte, headers included (requests' own timeouts
        apply to each read only, which an endpoint dripping a byte at a time never reaches): it runs in a thread of
        its own, which is left behind, with its session, when the deadline passes."""
        where = printable(urllib.parse.urlsplit(url).netloc, 100)
        outcome: dict[str, t.Any] = {}
        session = self._session

        def exchange() -> None:
            try:
                outcome["response"] = self._exchange(session, method, url, where, **kwargs)
            except BaseException as exc:  # pylint: disable=broad-except  # raised again in the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=exchange, name="token-endpoint", daemon=True)
        worker.start()
        worker.join(HTTP_TIMEOUT_S)
        if worker.is_alive():
            self._session = _import("requests", "requests").Session()  # the late thread keeps the old one
            raise TokenUnavailable(f"The token endpoint {where} did not complete an answer within {HTTP_TIMEOUT_S:g} s; "
                                   "check the network path to it.")
        if "error" in outcome:
            raise outcome["error"]
        response: _Response = outcome["response"]
        if response.status_code >= 400:
            try:
                answer_json = json.loads(response.text)
            except ValueError:
                answer_json = None
            self.last_error = answer_json if isinstance(answer_json, dict) else {"error": f"HTTP {response.status_code}"}
        return response

    def _exchange(self, session: t.Any, method: str, url: str, where: str, **kwargs: t.Any) -> _Response:
        """The request and its answer, at most HTTP_MAX_BYTES of body; TokenError for a failure."""
        requests = _import("requests", "requests")
        try:
            with session.request(method, url, stream=True, allow_redirects=False, verify=self._verify,
                                 timeout=(HTTP_TIMEOUT_S, HTTP_TIMEOUT_S), **kwargs) as answer:
                body = bytearray()
                while chunk := answer.raw.read(65536, decode_content=True):
                    body.extend(chunk)
                    if len(body) > HTTP_MAX_BYTES:
                        raise TokenError(f"The token endpoint {where} sent more than {HTTP_MAX_BYTES} bytes in one answer; "
                                         "check remote_oauth_authority (a genuine endpoint does not do this).")
                return _Response(answer.status_code, answer.headers, bytes(body))
        except TokenError:
            raise
        except requests.exceptions.SSLError as exc:
            raise TokenError(f"The TLS certificate of the token endpoint {where} could not be verified "
                             f"({printable(_root(exc), EXCERPT)}); give its CA certificate in remote_oauth_ca_file.") from None
        except requests.exceptions.RequestException as exc:
            # Refused, reset, timed out: may pass. Anything else (a URL requests cannot use) will not.
            failure = TokenUnavailable if isinstance(exc, (requests.exceptions.ConnectionError,
                                                           requests.exceptions.Timeout)) else TokenError
            raise failure(f"The token endpoint {where} could not be reached ({printable(_root(exc), EXCERPT)}); "
                          "check remote_oauth_authority and the network path to it.") from None

    def google_request(self) -> t.Any:
        """This client as a google-auth transport (google.auth.transport.Request)."""
        transport = _import("google.auth.transport", "google-auth")
        http = self

        class _GoogleRequest(transport.Request):  # type: ignore[misc,name-defined]  # pylint: disable=too-few-public-methods
            def __call__(self, url: str, method: str = "GET", body: t.Any = None, headers: t.Any = None,
                         timeout: t.Any = None, **_kwargs: t.Any) -> t.Any:
                return http.request(method, url, data=body, headers=headers)

        return _GoogleRequest()


def _root(exc: BaseException) -> BaseException:
    """The innermost cause of a requests exception (urllib3 wraps the socket's error twice)."""
    seen = exc
    while seen.__context__ is not None and seen.__context__ is not seen:
        seen = seen.__context__
    return seen
