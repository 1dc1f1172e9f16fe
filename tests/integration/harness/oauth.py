"""A small OAuth2 authorization server on loopback for the OAuth2 integration tests (issue 12).

:class:`OAuthServer` runs two stdlib ``ThreadingHTTPServer`` listeners in daemon threads:

``url`` (HTTPS, certificate from a throwaway CA in ``ca_path``)
    What the client libraries talk to, as they talk to the real providers:

    * Microsoft Entra ID, as msal's ``ConfidentialClientApplication`` uses it with the authority
      ``authority(tenant)`` = ``https://127.0.0.1:PORT/TENANT`` (TENANT: the tenant id or one of its domains):
      ``GET /TENANT/v2.0/.well-known/openid-configuration`` (msal's tenant discovery; an unknown tenant answers 400
      ``AADSTS90002`` as Entra does), ``GET /common/discovery/instance`` (instance discovery, only fetched when msal
      is given ``instance_discovery=INSTANCE_DISCOVERY_URL``; pass ``instance_discovery=False`` or
      ``validate_authority=False`` otherwise, or msal asks login.microsoftonline.com), and
      ``POST /TENANT/oauth2/v2.0/token`` with ``grant_type=client_credentials`` authenticated by ``client_secret`` or
      by a ``private_key_jwt`` client assertion (RS256 with ``x5t`` or PS256 with ``x5t#S256``, as msal signs it
      for a certificate). Errors carry Entra's codes: ``AADSTS7000215`` (wrong secret), ``AADSTS700027`` (assertion
      not signed by a registered certificate), ``AADSTS700016`` (unknown application), ``AADSTS90002`` (unknown
      tenant), ``AADSTS65001`` (admin consent missing), ``AADSTS70011`` (scope not granted).
    * Google, as google-auth's ``service_account.Credentials`` uses it: ``POST /token`` with the JWT-bearer grant
      (RFC 7523), the assertion's RS256 signature checked with the service account's public key (its ``aud`` is
      Google's token URL whatever ``token_uri`` says, as google-auth signs it, or this one); errors as Google
      words them (``invalid_grant`` "Invalid JWT Signature.", ``unauthorized_client`` when domain-wide delegation is
      missing or the scope is not granted).

``introspection_url`` (plain HTTP on loopback, ``POST /introspect`` with ``token=...``, RFC 7662)
    What Dovecot's ``oauth2`` passdb asks (see dovecot.py ``oauth2_introspection_url``). Besides ``active`` and
    ``exp`` it always answers two names, so that Dovecot refuses a dead or unknown token with a plain
    authentication failure (its passdb fails with an internal error, "Temporary authentication failure", when the
    username attribute is missing): ``username`` is the mailbox a user token was issued for (Google's ``sub``,
    :meth:`OAuthServer.mint_token`), else :data:`NO_USER`; ``app_mailboxes`` is ``*@DOMAIN`` (the tenant's first
    domain) for an app-only token (client credentials), else :data:`NO_MAILBOXES`: such a token opens every mailbox
    ``USER@DOMAIN`` of its tenant, as Exchange Online lets an application with ``IMAP.AccessAsApp`` open the
    mailboxes it was granted. The placeholders contain "!", which no user name of the harness does.

Controls: ``token_lifetime`` (seconds, for tokens issued from then on), :meth:`OAuthServer.revoke`,
:meth:`OAuthServer.expire`, :meth:`OAuthServer.revoke_all`, ``token_delay`` (seconds the token endpoints wait
before answering: a slow or hung endpoint) and :meth:`OAuthServer.script_token_responses` (the next answers of
the token endpoints given raw: an outage, garbage, an oversized body); what the server saw: ``hits`` (requests per endpoint
name), :meth:`OAuthServer.issued` (tokens issued, oldest first) and :meth:`OAuthServer.reset_counts`.
Key material for the clients: :meth:`OAuthServer.add_app` (client secret and/or :class:`ClientCertificate`) and
:meth:`OAuthServer.add_service_account` (:class:`ServiceAccount`, whose JSON key names this server's ``token_uri``).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import json
import math
import os
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import SplitResult, parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

LOOPBACK = "127.0.0.1"
ENTRA_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_SCOPE = "https://mail.google.com/"
GOOGLE_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
NO_USER = "!none"
NO_MAILBOXES = "nobody@!none"
MAX_BODY = 64 * 1024
CLOCK_SKEW = 300
DROP = 0  # a scripted "status" (script_token_responses): close the connection without answering


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _write_private(path: str | Path, data: bytes) -> Path:
    """Write *data* to *path* created 0600 (it holds a private key or a secret)."""
    target = Path(path)
    target.unlink(missing_ok=True)
    with open(target, "xb", opener=lambda p, flags: os.open(p, flags, 0o600)) as handle:
        handle.write(data)
    return target


def _self_signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, common_name: str, *, ca: bool,
                 days: int = 30) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(key, hashes.SHA256())


@dataclass
class ClientCertificate:
    """An application's certificate credential: an RSA private key and its self-signed certificate.

    ``pem`` (private key then certificate) is what a ``remote_oauth_certificate`` file holds; msal takes
    ``{"private_key": private_key_pem, "thumbprint": sha1_thumbprint}`` (RS256) or
    ``{"private_key": private_key_pem, "public_certificate": certificate_pem}`` (PS256, msal >= 1.35).
    """

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate(cls, common_name: str = "mailops-test-app") -> ClientCertificate:
        """A fresh 2048-bit RSA key and a certificate for it, valid 30 days."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(key, _self_signed(key, common_name, ca=False))

    @property
    def private_key_pem(self) -> str:
        return _pem_key(self.key).decode("ascii")

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def pem(self) -> str:
        return self.private_key_pem + self.certificate_pem

    @property
    def sha1_thumbprint(self) -> str:
        """Hex SHA-1 of the DER certificate (Entra's "thumbprint"; the JWT's ``x5t``)."""
        return self.certificate.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - the protocol's own identifier

    @property
    def sha256_thumbprint(self) -> str:
        """Hex SHA-256 of the DER certificate (the JWT's ``x5t#S256``)."""
        return self.certificate.fingerprint(hashes.SHA256()).hex()

    def write(self, path: str | Path) -> Path:
        """Write :attr:`pem` to *path* with mode 0600; returns the path."""
        return _write_private(path, self.pem.encode("ascii"))


@dataclass
class Tenant:
    """An Entra ID tenant: its id (a GUID) and domains; ``domains[0]`` is the domain of its mailboxes."""

    tenant_id: str
    domains: tuple[str, ...]

    @property
    def domain(self) -> str:
        return self.domains[0]


@dataclass
class App:
    """An application registered in a tenant (client credentials). ``secret``/``certificate`` are its credentials
    (either may be None); ``consented`` is whether an administrator granted its permissions; ``scopes`` are the
    scopes it may ask for. A test may change any of them (rotate the secret, withdraw consent): the next token
    request sees the change."""

    tenant: Tenant
    client_id: str
    name: str
    secret: str | None
    certificate: ClientCertificate | None
    consented: bool = True
    scopes: frozenset[str] = frozenset({ENTRA_SCOPE})


@dataclass
class ServiceAccount:
    """A Google service account. ``delegated_domain`` is the domain whose users it may impersonate (domain-wide
    delegation; None: none granted); ``scopes`` are the scopes delegated. A test may change them, or replace ``key``
    (a key file written before then no longer signs valid assertions)."""

    client_email: str
    client_id: str
    key_id: str
    key: rsa.RSAPrivateKey
    token_uri: str
    delegated_domain: str | None
    scopes: frozenset[str] = frozenset({GOOGLE_SCOPE})

    def key_info(self) -> dict[str, str]:
        """The JSON key as the Google Cloud console downloads it (``token_uri`` names the test server)."""
        return {
            "type": "service_account",
            "project_id": "mailops-test",
            "private_key_id": self.key_id,
            "private_key": _pem_key(self.key).decode("ascii"),
            "client_email": self.client_email,
            "client_id": self.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{self.client_email}",
            "universe_domain": "googleapis.com",
        }

    def write_key_file(self, path: str | Path) -> Path:
        """Write the JSON key to *path* with mode 0600; returns the path."""
        return _write_private(path, json.dumps(self.key_info(), indent=2).encode("ascii"))


@dataclass
class IssuedToken:
    """An access token the server issued. ``grant`` is ``client_credentials``, ``jwt_bearer`` or ``minted``;
    ``username`` the mailbox of a user token (else ""), ``app_domain`` the tenant domain of an app-only token (else
    ""); ``client`` the client id or service account e-mail (None when minted)."""

    token: str
    grant: str
    username: str
    app_domain: str
    client: str | None
    scope: str
    issued_at: float
    expires_at: float
    revoked: bool = False

    @property
    def active(self) -> bool:
        return not self.revoked and time.time() < self.expires_at


class OAuthError(Exception):
    """An error answer of the token endpoint: HTTP *status* and the JSON *body*."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error_description") or body.get("error"))
        self.status = status
        self.body = body


def _entra_error(status: int, error: str, code: int, message: str) -> OAuthError:
    """An Entra ID error answer: ``AADSTS<code>: message`` followed by the trace lines Entra appends."""
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return OAuthError(status, {
        "error": error,
        "error_description": f"AADSTS{code}: {message} Trace ID: {trace_id} Correlation ID: {correlation_id} "
                             f"Timestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    })


def _split_jwt(assertion: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signing input, signature) of a compact JWS; ValueError when it is not one."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWT")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"undecodable JWT: {error}") from error
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("JWT header or claims are not objects")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def _verify_rsa(public_key: Any, alg: str, signing_input: bytes, signature: bytes) -> bool:
    """Whether *signature* over *signing_input* is valid for RS256 or PS256 with *public_key*."""
    if not isinstance(public_key, rsa.RSAPublicKey):
        return False
    if alg == "RS256":
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
    elif alg == "PS256":
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
    else:
        return False
    try:
        public_key.verify(signature, signing_input, pad, hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _time_claims_ok(claims: dict[str, Any]) -> bool:
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat", now))
    return isinstance(exp, (int, float)) and isinstance(nbf, (int, float)) and nbf - CLOCK_SKEW <= now < exp + CLOCK_SKEW


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the owning :class:`OAuthServer` (``self.server.owner``)."""

    protocol_version = "HTTP/1.1"
    server_version = "mailops-test-oauth/1"
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
        """Silent: request lines would carry tokens."""

    def _send_json(self, status: int, body: dict[str, Any] | bytes) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (a timeout test): nothing to tell it

    def _form(self) -> dict[str, str] | None:
        """The urlencoded body as a dict of first values; None (after answering 400/413) when unusable."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._send_json(413 if length > MAX_BODY else 400, {"error": "invalid_request"})
            return None
        raw = self.rfile.read(length)
        try:
            parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            self._send_json(400, {"error": "invalid_request", "error_description": "body is not UTF-8"})
            return None
        return {name: values[0] for name, values in parsed.items()}

    def do_GET(self) -> None:  # pylint: disable=invalid-name
        server = cast("_Server", self.server)
        status, body = server.owner.handle_get(urlsplit(self.path), secure=server.secure)
        self._send_json(status, body)

    def do_POST(self) -> None:  # pylint: disable=invalid-name
        server = cast("_Server", self.server)
        form = self._form()
        if form is None:
            return
        status, body = server.owner.handle_post(urlsplit(self.path).path, form, secure=server.secure)
        if status == DROP:
            self.close_connection = True  # a scripted outage: the connection closes without an answer
            return
        self._send_json(status, body)


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer whose TLS handshake (if any) happens in the request's thread, not in accept()."""

    daemon_threads = True

    def __init__(self, owner: OAuthServer, context: ssl.SSLContext | None) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.owner = owner
        self.context = context
        self.secure = context is not None

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_Handler.timeout)
        if self.context is not None:
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
        super().finish_request(request, client_address)


class OAuthServer:
    """The test authorization server (see the module docstring). Use as a context manager, or start()/stop().

    Attributes: ``url`` (``https://127.0.0.1:PORT``), ``ca_path`` (PEM of the CA that signed its certificate: msal's
    ``verify=``, a requests session's ``verify``, ``remote_oauth_ca_file``), ``introspection_url``
    (``http://127.0.0.1:PORT2/introspect``), ``token_uri`` (Google's token endpoint here), ``token_lifetime``
    (seconds; may be fractional, ``expires_in`` is rounded up), ``hits`` (a Counter of endpoint names:
    ``openid-configuration``, ``instance-discovery``, ``entra-token``, ``google-token``, ``introspect``, ``unknown``).
    """

    def __init__(self, token_lifetime: float = 3600.0) -> None:
        self.token_lifetime = token_lifetime
        self.token_delay = 0.0
        self.hits: Counter[str] = Counter()
        self._scripted: list[tuple[int, bytes]] = []
        self.root = Path(tempfile.mkdtemp(prefix="mailops-oauth-"))
        self.ca_path = self.root / "ca.pem"
        self._lock = threading.Lock()
        self._tenants: list[Tenant] = []
        self._apps: dict[str, App] = {}
        self._service_accounts: dict[str, ServiceAccount] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._issued: list[IssuedToken] = []
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._context = self._make_tls()
        self.port = 0
        self.introspection_port = 0

    # ------------------------------------------------------------------ lifecycle

    def _make_tls(self) -> ssl.SSLContext:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _self_signed(ca_key, "mailops test OAuth CA", ca=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName([
                    x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]),
                    critical=False)
                .sign(ca_key, hashes.SHA256()))
        self.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        cert_path, key_path = self.root / "server.pem", self.root / "server.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(key_path, _pem_key(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert_path), str(key_path))
        return context

    def start(self) -> Self:
        """Start both listeners (idempotent)."""
        if self._servers:
            return self
        for context in (self._context, None):
            server = _Server(self, context)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                                      name=f"oauth-{'https' if context else 'http'}")
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self.port = self._servers[0].server_address[1]
        self.introspection_port = self._servers[1].server_address[1]
        return self

    def stop(self) -> None:
        """Stop both listeners and remove the key material directory (idempotent)."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def introspection_url(self) -> str:
        return f"http://{LOOPBACK}:{self.introspection_port}/introspect"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def instance_discovery_url(self) -> str:
        """An instance discovery endpoint for msal's ``instance_discovery=`` (instead of login.microsoftonline.com)."""
        return f"{self.url}/common/discovery/instance"

    def authority(self, tenant: Tenant | str) -> str:
        """The msal authority of *tenant* (a Tenant, or any string: an unknown one makes discovery fail)."""
        name = tenant.tenant_id if isinstance(tenant, Tenant) else tenant
        return f"{self.url}/{name}"

    def entra_token_endpoint(self, tenant: Tenant) -> str:
        return f"{self.url}/{tenant.tenant_id}/oauth2/v2.0/token"

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context trusting :attr:`ca_path`."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    # ------------------------------------------------------------------ registrations

    def add_tenant(self, domain: str | None = None, *, tenant_id: str | None = None) -> Tenant:
        """Register a tenant (random GUID; *domain* defaults to ``t<hex>.example``)."""
        tenant = Tenant(tenant_id or str(uuid.uuid4()), (domain or f"t{secrets.token_hex(4)}.example",))
        with self._lock:
            self._tenants.append(tenant)
        return tenant

    def add_app(self, tenant: Tenant, *, secret: bool | str = True, certificate: bool | ClientCertificate = False,
                consented: bool = True, scopes: tuple[str, ...] = (ENTRA_SCOPE,), name: str = "mailops migration") -> App:
        """Register an application in *tenant*: *secret* True makes a random client secret (a str is used as is);
        *certificate* True generates a :class:`ClientCertificate`."""
        if secret is True:
            secret_value: str | None = secrets.token_urlsafe(30) + "~._-"
        else:
            secret_value = secret or None
        cert = ClientCertificate.generate() if certificate is True else (certificate or None)
        app = App(tenant, str(uuid.uuid4()), name, secret_value, cert, consented, frozenset(scopes))
        with self._lock:
            self._apps[app.client_id] = app
        return app

    def add_service_account(self, delegated_domain: str | None = None, *,
                            scopes: tuple[str, ...] = (GOOGLE_SCOPE,)) -> ServiceAccount:
        """Register a Google service account with domain-wide delegation for *delegated_domain* (None: none)."""
        name = f"migrate-{secrets.token_hex(3)}"
        account = ServiceAccount(
            client_email=f"{name}@mailops-test.iam.gserviceaccount.com",
            client_id=str(secrets.randbelow(10 ** 20) + 10 ** 20),
            key_id=secrets.token_hex(20),
            key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
            token_uri=self.token_uri,
            delegated_domain=delegated_domain,
            scopes=frozenset(scopes),
        )
        with self._lock:
            self._service_accounts[account.client_email] = account
        return account

    # ------------------------------------------------------------------ tokens

    def _issue(self, grant: str, *, username: str = "", app_domain: str = "", client: str | None = None,
               scope: str = "", lifetime: float | None = None) -> IssuedToken:
        now = time.time()
        life = self.token_lifetime if lifetime is None else lifetime
        issued = IssuedToken(f"tk-{secrets.token_urlsafe(32)}", grant, username, app_domain, client, scope,
                             now, now + life)
        with self._lock:
            self._tokens[issued.token] = issued
            self._issued.append(issued)
        return issued

    def mint_token(self, username: str, lifetime: float | None = None, scope: str = "") -> str:
        """A user token for *username* (as a token file or command would hold), without any grant."""
        return self._issue("minted", username=username, scope=scope, lifetime=lifetime).token

    def issued(self, client: str | None = None) -> list[IssuedToken]:
        """Tokens issued so far (oldest first), optionally only those of one client id / service account e-mail."""
        with self._lock:
            return [t for t in self._issued if client is None or t.client == client]

    def token_info(self, token: str) -> IssuedToken | None:
        with self._lock:
            return self._tokens.get(token)

    def revoke(self, token: str) -> None:
        """Make *token* inactive (introspection answers ``active: false``)."""
        with self._lock:
            self._tokens[token].revoked = True

    def revoke_all(self) -> None:
        with self._lock:
            for issued in self._tokens.values():
                issued.revoked = True

    def expire(self, token: str) -> None:
        """Make *token* expired now."""
        with self._lock:
            self._tokens[token].expires_at = time.time() - 1

    def script_token_responses(self, *answers: tuple[int, bytes]) -> None:
        """Answer the next token requests (either endpoint, one each, in order) with these (HTTP status, raw body)
        pairs instead of processing them; the body is sent as ``application/json`` whatever it holds. Status
        :data:`DROP` closes the connection without an answer (an endpoint that cannot be reached for now)."""
        with self._lock:
            self._scripted.extend(answers)

    def next_scripted(self) -> tuple[int, bytes] | None:
        """The next scripted answer of a token endpoint (removed), or None."""
        with self._lock:
            return self._scripted.pop(0) if self._scripted else None

    def reset_counts(self) -> None:
        with self._lock:
            self.hits.clear()

    def _hit(self, name: str) -> None:
        with self._lock:
            self.hits[name] += 1

    # ------------------------------------------------------------------ HTTP

    def _tenant(self, name: str) -> Tenant | None:
        lowered = name.lower()
        with self._lock:
            for tenant in self._tenants:
                if lowered == tenant.tenant_id or lowered in (d.lower() for d in tenant.domains):
                    return tenant
        return None

    @staticmethod
    def _unknown_tenant(name: str) -> OAuthError:
        return _entra_error(400, "invalid_tenant" if name else "invalid_request", 90002,
                            f"Tenant '{name}' not found. Check to make sure you have the correct tenant ID and are "
                            "signing into the correct cloud. Check with your subscription administrator, this may "
                            "happen if there are no active subscriptions for the tenant.")

    def _openid_configuration(self, tenant: Tenant) -> dict[str, Any]:
        base = f"{self.url}/{tenant.tenant_id}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }

    def handle_get(self, url: SplitResult, *, secure: bool) -> tuple[int, dict[str, Any]]:
        """Answer a GET (discovery documents)."""
        parts = [p for p in url.path.split("/") if p]
        if secure and len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            self._hit("openid-configuration")
            tenant = self._tenant(parts[0])
            if tenant is None:
                error = self._unknown_tenant(parts[0])
                return error.status, error.body
            return 200, self._openid_configuration(tenant)
        if secure and parts == ["common", "discovery", "instance"]:
            self._hit("instance-discovery")
            endpoint = parse_qs(url.query).get("authorization_endpoint", [""])[0]
            tenant_name = ([p for p in urlsplit(endpoint).path.split("/") if p] or ["common"])[0]
            return 200, {
                "tenant_discovery_endpoint": f"{self.url}/{tenant_name}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": f"{LOOPBACK}:{self.port}", "preferred_cache": f"{LOOPBACK}:{self.port}",
                              "aliases": [f"{LOOPBACK}:{self.port}"]}],
            }
        self._hit("unknown")
        return 404, {"error": "not_found"}

    def handle_post(self, path: str, form: dict[str, str], *, secure: bool) -> tuple[int, dict[str, Any] | bytes]:
        """Answer a POST (token endpoints, introspection)."""
        parts = [p for p in path.split("/") if p]
        if parts == ["introspect"]:
            self._hit("introspect")
            return 200, self._introspect(form.get("token", ""))
        if secure and parts == ["token"]:
            endpoint = "google-token"
        elif secure and len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            endpoint = "entra-token"
        else:
            self._hit("unknown")
            return 404, {"error": "not_found"}
        self._hit(endpoint)
        if self.token_delay > 0:
            time.sleep(self.token_delay)
        scripted = self.next_scripted()
        if scripted is not None:
            return scripted
        try:
            if endpoint == "google-token":
                return 200, self._google_token(form)
            return 200, self._entra_token(parts[0], form)
        except OAuthError as error:
            return error.status, error.body

    def _introspect(self, token: str) -> dict[str, Any]:
        issued = self.token_info(token) if token else None
        if issued is None:
            return {"active": False, "username": NO_USER, "app_mailboxes": NO_MAILBOXES}
        answer: dict[str, Any] = {
            "active": issued.active, "username": issued.username or NO_USER,
            "app_mailboxes": f"*@{issued.app_domain}" if issued.app_domain else NO_MAILBOXES,
        }
        if issued.active:
            answer.update({"scope": issued.scope, "exp": int(issued.expires_at), "iat": int(issued.issued_at),
                           "token_type": "Bearer", "client_id": issued.client or ""})
        return answer

    # -- Entra ID client credentials

    def _entra_token(self, tenant_name: str, form: dict[str, str]) -> dict[str, Any]:
        tenant = self._tenant(tenant_name)
        if tenant is None:
            raise self._unknown_tenant(tenant_name)
        if form.get("grant_type") != "client_credentials":
            raise _entra_error(400, "unsupported_grant_type", 70003,
                               "The app requested an unsupported grant type. This test server implements "
                               "client_credentials only.")
        client_id = form.get("client_id", "")
        with self._lock:
            app = self._apps.get(client_id)
        if app is None or app.tenant is not tenant:
            raise _entra_error(400, "unauthorized_client", 700016,
                               f"Application with identifier '{client_id}' was not found in the directory "
                               f"'{tenant.domain}'. This can happen if the application has not been installed by the "
                               "administrator of the tenant or consented to by any user in the tenant. You may have "
                               "sent your authentication request to the wrong tenant.")
        self._authenticate_app(app, form)
        scope = form.get("scope", "")
        requested = set(scope.split())
        if not requested or not requested <= app.scopes:
            raise _entra_error(400, "invalid_scope", 70011,
                               f"The provided request must include a 'scope' input parameter. The provided value for "
                               f"the input parameter 'scope' is not valid. The scope {scope} is not valid.")
        if not app.consented:
            raise _entra_error(400, "invalid_grant", 65001,
                               f"The user or administrator has not consented to use the application with ID "
                               f"'{app.client_id}' named '{app.name}'. Send an interactive authorization request for "
                               "this user and resource.")
        issued = self._issue("client_credentials", app_domain=tenant.domain, client=app.client_id, scope=scope)
        expires_in = max(0, math.ceil(issued.expires_at - issued.issued_at))
        return {"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in,
                "access_token": issued.token}

    def _authenticate_app(self, app: App, form: dict[str, str]) -> None:
        if "client_assertion" in form:
            if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE or not self._assertion_ok(app, form["client_assertion"]):
                raise _entra_error(401, "invalid_client", 700027,
                                   "Client assertion failed signature validation or the certificate used to sign it "
                                   f"is not registered on application '{app.client_id}'.")
            return
        secret = form.get("client_secret")
        if secret is None:
            raise _entra_error(401, "invalid_client", 7000218,
                               "The request body must contain the following parameter: 'client_assertion' or "
                               "'client_secret'.")
        if app.secret is None or not secrets.compare_digest(secret.encode("utf-8"), app.secret.encode("utf-8")):
            raise _entra_error(401, "invalid_client", 7000215,
                               "Invalid client secret provided. Ensure the secret being sent in the request is the "
                               f"client secret value, not the client secret ID, for a secret added to app "
                               f"'{app.client_id}'.")

    def _assertion_ok(self, app: App, assertion: str) -> bool:
        """Whether *assertion* is msal's client assertion for *app*: signed by its certificate's key (RS256 + x5t or
        PS256 + x5t#S256 naming that certificate), ``iss``/``sub`` the client id, ``aud`` the token endpoint, in time."""
        if app.certificate is None:
            return False
        try:
            header, claims, signing_input, signature = _split_jwt(assertion)
        except ValueError:
            return False
        cert = app.certificate
        alg = header.get("alg")  # msal pads the base64url thumbprints with "="; compare them without
        if alg == "PS256":
            named = str(header.get("x5t#S256")).rstrip("=") == _b64url(bytes.fromhex(cert.sha256_thumbprint))
        elif alg == "RS256":
            named = str(header.get("x5t")).rstrip("=") == _b64url(bytes.fromhex(cert.sha1_thumbprint))
        else:
            named = False
        return (named and claims.get("iss") == app.client_id and claims.get("sub") == app.client_id
                and claims.get("aud") == self.entra_token_endpoint(app.tenant) and _time_claims_ok(claims)
                and _verify_rsa(cert.key.public_key(), str(alg), signing_input, signature))

    # -- Google JWT bearer

    def _google_token(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("grant_type") != JWT_BEARER:
            raise OAuthError(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "
                                                                                           f"{form.get('grant_type', '')}"})
        try:
            header, claims, signing_input, signature = _split_jwt(form.get("assertion", ""))
        except ValueError as error:
            raise OAuthError(400, {"error": "invalid_grant", "error_description": "Invalid JWT: " + str(error)}) from error
        with self._lock:
            account = self._service_accounts.get(str(claims.get("iss")))
        if account is None:
            raise OAuthError(401, {"error": "invalid_client", "error_description": "The OAuth client was not found."})
        if (header.get("alg") != "RS256" or header.get("kid") != account.key_id
                or not _verify_rsa(account.key.public_key(), "RS256", signing_input, signature)):
            raise OAuthError(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        if claims.get("aud") not in (GOOGLE_AUDIENCE, self.token_uri) or not _time_claims_ok(claims):
            raise OAuthError(400, {"error": "invalid_grant", "error_description":
                                   "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                                   "timeframe. Check your iat and exp values in the JWT claim."})
        scope = str(claims.get("scope", ""))
        subject = str(claims.get("sub", ""))
        if not set(scope.split()) or not set(scope.split()) <= account.scopes or (
                subject and (account.delegated_domain is None
                             or not subject.lower().endswith("@" + account.delegated_domain.lower()))):
            raise OAuthError(401, {"error": "unauthorized_client", "error_description":
                                   "Client is unauthorized to retrieve access tokens using this method, or client not "
                                   "authorized for any of the scopes requested."})
        issued = self._issue("jwt_bearer", username=subject, client=account.client_email, scope=scope)
        return {"access_token": issued.token, "expires_in": max(0, math.ceil(issued.expires_at - issued.issued_at)),
                "token_type": "Bearer"}


def sasl_xoauth2(user: str, token: str) -> bytes:
    """The XOAUTH2 initial response (Google's format): ``user=U^Aauth=Bearer T^A^A``."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode("utf-8")


def sasl_oauthbearer(user: str, token: str, host: str, port: int) -> bytes:
    """The OAUTHBEARER initial response (RFC 7628): ``n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A``."""
    escaped = user.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={escaped},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode("utf-8")


__all__ = [
    "App", "ClientCertificate", "ENTRA_SCOPE", "GOOGLE_SCOPE", "IssuedToken", "OAuthServer", "ServiceAccount",
    "Tenant", "sasl_oauthbearer", "sasl_xoauth2",
]
