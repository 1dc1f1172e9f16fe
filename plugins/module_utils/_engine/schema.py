# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fields of a sync task and of a mail target, each declared once, and everything derived from them.

:class:`Task` and :class:`Target` are the schema: every dataclass field carries a :class:`Meta` (Ansible type,
choices, the faces that offer it, required-ness, no_log, its validator and its documentation). From them come
the parsers (:func:`parse_task`, :func:`parse_target`), the argument specs of the modules (:func:`argument_spec`),
the CSV columns of ``accounts_file`` (the :attr:`Face.ACCOUNT` face), the option documentation of the modules
(:func:`option_docs`, rendered by ``plugins/doc_fragments/fields.py``) and of the role (:func:`role_options`,
written into ``roles/imapsync/meta/argument_specs.yml`` by ``tests/update_generated.py``).

Adding a task option is one ``dataclasses.field`` of :class:`Task` (plus what the engines do with it).
Rules that involve two fields are one function each (:func:`port_by_security`, :func:`check_delete_days`,
:func:`check_interval`, :func:`check_exclude_hazards`, :func:`check_remote_auth`).

Pure Python, no Ansible imports: the same code runs in modules (through AnsiballZ) and on hosts
(``imapsyncctl``). Every check raises :class:`ConfigError` with a sentence that names the field, the cause and the
fix, before anything is written anywhere.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
import typing as t

from . import deletion, oauth, presets
from .errors import ConfigError
from .hazard import exclude_hazard

SECURITY_CHOICES = ("starttls", "ssl", "none")
FOLDERS_CHOICES = ("inbox", "all", "all_except")
DELETE_CHOICES = deletion.CHOICES  # one entry per policy: _engine/deletion.py
SCHEDULE_CHOICES = ("manual", "interval")
ENGINE_CHOICES = ("builtin", "imapsync")
DELIVERY_CHOICES = ("imap", "lmtp")
FLAG_SYNC_CHOICES = ("all", "changed_folders")
REMOTE_AUTH_CHOICES = ("password",) + oauth.SOURCES  # password, then the token sources of _engine/oauth.py
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_SCOPES = {"client_credentials": "https://outlook.office365.com/.default", "service_account": "https://mail.google.com/"}
INTERVAL_MAX = 1440  # minutes: one run a day at least

# Whole strings only: \Z, not $ (which also matches before a trailing line feed: "t1\n").
TASK_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}\Z")
_HOST_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z", re.IGNORECASE)


class Face(enum.Enum):
    """Where a field is offered to users."""

    MIGRATE = "migrate"  # an option of mailops.imap.migrate (inline migration; the defaults of every account)
    ACCOUNT = "account"  # a field of migrate's accounts elements, a column of its accounts_file
    TASK = "task"  # an option of mailops.imap.sync_task (one task, by name)
    TASK_ELEMENT = "task_element"  # a field of the elements of sync_task's tasks
    TARGET = "target"  # an option of mailops.imap.mail_target, a suboption of migrate's target
    ROLE_TASK = "role_task"  # a field of the elements of the imapsync role's imapsync_tasks
    ROLE_TARGET = "role_target"  # a field of the imapsync role's imapsync_target


# Faces whose fields inherit the values of the module call: they show neither defaults nor required-ness.
INHERITING = frozenset({Face.ACCOUNT, Face.TASK_ELEMENT})
ALL_TASK_FACES = frozenset({Face.MIGRATE, Face.ACCOUNT, Face.TASK, Face.TASK_ELEMENT, Face.ROLE_TASK})
DEFINED_TASK_FACES = frozenset({Face.TASK, Face.TASK_ELEMENT, Face.ROLE_TASK})  # not an inline migrate
TARGET_FACES = frozenset({Face.TARGET, Face.ROLE_TARGET})
SHOWN_DEFAULTS = frozenset(Face) - INHERITING


# --- validators: (label, value) -> the normalized value, or ConfigError -------------------------------------------

def _choice(field: str, value: t.Any, choices: t.Sequence[str]) -> str:
    if value not in choices:
        allowed = ", ".join(choices)
        raise ConfigError(f"{field}: {value!r} is not a valid value; use one of {allowed}.")
    return value


def _port(field: str, value: t.Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{field}: {value!r} is not a port number; use a whole number from 1 to 65535.") from None
    if isinstance(value, bool) or not 1 <= port <= 65535 or str(value).strip() not in (str(port), f"{port}.0"):
        raise ConfigError(f"{field}: {value!r} is not a port number; use a whole number from 1 to 65535.")
    return port


def _int_range(field: str, value: t.Any, low: int, high: int | None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or number < low or (high is not None and number > high):
        limit = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ConfigError(f"{field}: {value!r} is not valid; use a whole number {limit}.")
    return number


def _bool(field: str, value: t.Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true", "1", "on", "y"):
        return True
    if text in ("no", "false", "0", "off", "n"):
        return False
    raise ConfigError(f"{field}: {value!r} is not a boolean; use true or false.")


def _text(field: str, value: t.Any, required: bool) -> str | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if required:
            raise ConfigError(f"{field} is required; give it a value.")
        return None
    if not isinstance(value, str):
        value = str(value)
    if any(ch in value for ch in "\r\n\0"):
        raise ConfigError(f"{field}: line breaks and NUL characters are not allowed.")
    return value


def _required(field: str, value: t.Any) -> str:
    text = _text(field, value, True)
    if text is None:  # _text raises for a missing required value; this keeps type checkers informed
        raise ConfigError(f"{field} is required; give it a value.")
    return text


def _optional_text(field: str, value: t.Any) -> str | None:
    return _text(field, value, False)


def check_host(field: str, value: t.Any) -> str:
    """Accept a hostname (IDN too), an IPv4 or an IPv6 address; return it as given (stripped)."""
    host = _required(field, value).strip()
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare)
        return bare
    except ValueError:
        pass
    try:
        ascii_host = bare.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    labels = ascii_host.split(".") if ascii_host else []
    if not labels or len(ascii_host) > 253 or not all(_HOST_LABEL_RE.fullmatch(label) for label in labels):
        raise ConfigError(f"{field}: {value!r} is not a hostname or IP address; use a name such as imap.example.org or an address.")
    return bare


def _lmtp_host(field: str, value: t.Any) -> str:
    """A host, or the path of a UNIX socket (starting with /)."""
    host = _required(field, value)
    return host if host.startswith("/") else check_host(field, host)


def _task_name(field: str, value: t.Any) -> str | None:
    name = _text(field, value, False)
    if name is not None and not TASK_NAME_RE.fullmatch(name):
        raise ConfigError(
            f"{field}: {name!r} is not a valid task name; use 1 to 64 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit."
        )
    return name


def _secret(field: str, value: t.Any) -> str:  # pylint: disable=unused-argument
    return "" if value is None else str(value)


def _optional_url(field: str, value: t.Any) -> str | None:
    """An https URL (a token endpoint's base), without the trailing slash."""
    url = _optional_text(field, value)
    if url is None:
        return None
    url = url.strip().rstrip("/")
    if not re.fullmatch(r"https://[^\s/?#]+(/[^\s?#]*)?", url):
        raise ConfigError(f"{field}: {value!r} is not an https URL; give one such as {DEFAULT_AUTHORITY}.")
    return url


def _optional_port(field: str, value: t.Any) -> int | None:
    return None if value is None else _port(field, value)


def _optional_days(field: str, value: t.Any) -> int | None:
    return None if value is None else _int_range(field, value, 1, None)


def _exclude(field: str, value: t.Any, hazards: bool = False) -> tuple[str, ...]:
    """The exclude patterns; with ``hazards``, a pattern that may backtrack for hours is refused (exclude_hazard)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.splitlines()
    patterns = []
    for index, entry in enumerate(value, start=1):
        if entry is None or str(entry).strip() == "":
            continue  # blank entries are ignored (NethServer 8 turns them into a match-all)
        entry = str(entry)
        try:
            re.compile(entry)
        except re.error as exc:
            raise ConfigError(
                f"{field}: entry {index} {entry!r} is not a valid regular expression ({exc}); fix or remove it."
            ) from None
        hazard = exclude_hazard(entry) if hazards else None
        if hazard is not None:
            raise ConfigError(f"{field}: entry {index} {entry!r} {hazard}.")
        patterns.append(entry)
    return tuple(patterns)


def _choices(choices: t.Sequence[str]) -> t.Callable[[str, t.Any], str]:
    def check(field: str, value: t.Any) -> str:
        return _choice(field, value, choices)
    return check


def _optional_interval(field: str, value: t.Any) -> int | None:
    return None if value is None else _int_range(field, value, 1, INTERVAL_MAX)


# --- the rules between fields: one function each ----------------------------------------------------------------

def port_by_security(port: t.Any, security: str) -> int:
    """The port of a server given none: 993 with implicit TLS (ssl), else 143."""
    return port if port is not None else (993 if security == "ssl" else 143)


def check_delete_days(delete_remote: str, days: int | None) -> int | None:
    """``delete_remote_days`` is required with ``delete_remote: older_than`` (its range is checked on its own)."""
    if delete_remote == "older_than" and days is None:
        raise ConfigError("delete_remote_days is required with delete_remote: older_than; give the age in days (at least 1).")
    return days


def check_interval(schedule: str, interval: t.Any) -> int | None:
    """``interval_minutes``: from 1 to INTERVAL_MAX when given, and required with ``schedule: interval``.

    The one place of this rule: :func:`parse_task` and the timers of ``module_utils/_units.py`` call it.
    """
    if schedule == "interval" and interval is None:
        raise ConfigError(f"interval_minutes is required with schedule: interval; give a number of minutes from 1 to {INTERVAL_MAX}.")
    return _optional_interval("interval_minutes", interval)


# The fields of each token source (remote_auth); remote_password is the field of remote_auth: password.
AUTH_FIELDS: dict[str, tuple[str, ...]] = {
    "password": ("remote_password",),
    "token_file": ("remote_token_file",),
    "token_command": ("remote_token_command",),
    "client_credentials": ("remote_oauth_client_id", "remote_oauth_client_secret", "remote_oauth_certificate",
                           "remote_oauth_tenant", "remote_oauth_authority", "remote_oauth_scope", "remote_oauth_ca_file"),
    "service_account": ("remote_oauth_key_file", "remote_oauth_scope", "remote_oauth_ca_file"),
}
_AUTH_REQUIRED: dict[str, tuple[str, ...]] = {
    "password": ("remote_password",),
    "token_file": ("remote_token_file",),
    "token_command": ("remote_token_command",),
    "client_credentials": ("remote_oauth_client_id", "remote_oauth_tenant"),
    "service_account": ("remote_oauth_key_file",),
}


def check_remote_auth(values: dict[str, t.Any]) -> dict[str, t.Any]:
    """The rule of ``remote_auth`` and the fields of its token source: each source's required fields given, a field of
    another source refused (a password given with a token source is a mix-up, not a fallback), exactly one of a
    client secret and a certificate, and the defaults of authority and scope filled in for the source that has them.

    ``values`` are the checked fields (None or "" where not given); returns the fields of the remote authentication.
    """
    auth = values["remote_auth"]
    given = {name for names in AUTH_FIELDS.values() for name in names if values.get(name) not in (None, "")}
    for name in sorted(given - set(AUTH_FIELDS[auth])):
        owners = " or ".join(f"remote_auth: {source}" for source, names in AUTH_FIELDS.items() if name in names)
        raise ConfigError(f"{name} is a field of {owners}, not of remote_auth: {auth}; remove it or change remote_auth.")
    for name in _AUTH_REQUIRED[auth]:
        if name not in given:
            what = "the remote account's password" if name == "remote_password" else "a value"
            raise ConfigError(f"{name} is required with remote_auth: {auth}; give {what}.")
    out = {name: values.get(name) for names in AUTH_FIELDS.values() for name in names}
    out["remote_password"] = values.get("remote_password") or ""
    if auth == "client_credentials":
        secret, certificate = "remote_oauth_client_secret" in given, "remote_oauth_certificate" in given
        if secret == certificate:
            raise ConfigError("remote_auth: client_credentials needs exactly one of remote_oauth_client_secret and "
                              f"remote_oauth_certificate; {'both were' if secret else 'neither was'} given.")
        out["remote_oauth_authority"] = values.get("remote_oauth_authority") or DEFAULT_AUTHORITY
    if auth == "token_command":
        oauth.command_words("remote_token_command", values["remote_token_command"])  # ConfigError when it cannot split
    if auth in DEFAULT_SCOPES:
        out["remote_oauth_scope"] = values.get("remote_oauth_scope") or DEFAULT_SCOPES[auth]
    return out


def check_exclude_hazards(given: t.Any, folders: str) -> None:
    """A declared task with ``folders: all_except`` refuses an exclude pattern that may backtrack for hours.

    A stored definition (declared by an earlier version) is not refused for a pattern the hazard check would refuse
    today: its runs still match under the time bound of folders.excluded_names.
    """
    if folders == "all_except":
        _exclude("exclude", given, hazards=True)


# --- the schema -------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Meta:
    """What a field is to users: its type, where it is offered, how it is checked and documented.

    ``doc`` lines use Ansible markup; ``O(~NAME...)`` names a sibling field and is rendered with the prefix of the
    face (``O(target.security=ssl)`` under migrate's ``target``, ``O(imapsync_tasks[].folders)`` in the role).
    ``notes`` are lines of one face only, written as they are. ``needed``: a definition must have the field once
    the values of the module call are merged in (checked by the modules, with a sentence, not by the argument
    spec). ``defaults``: the faces whose argument spec holds the default (a default decided by another field, as
    ``remote_port``'s, is in none). ``not_secret``: the name looks like a secret's to ansible-test (``token``) but the
    value is not one, which the argument spec says (``no_log: false``). ``derived``: the default is decided by a rule
    between fields (:func:`port_by_security`), so the field's validator sees None when the field is not given.
    """

    type: str
    doc: tuple[str, ...]
    check: t.Callable[[str, t.Any], t.Any]
    faces: frozenset[Face]
    choices: tuple[str, ...] | None = None
    elements: str | None = None
    no_log: bool = False
    not_secret: bool = False
    needed: bool = False
    required: frozenset[Face] = frozenset()
    defaults: frozenset[Face] = SHOWN_DEFAULTS
    role_type: str | None = None
    derived: bool = False
    notes: t.Mapping[Face, tuple[str, ...]] = dataclasses.field(default_factory=dict)


def declare(default: t.Any = dataclasses.MISSING, repr_: bool = True, **meta: t.Any) -> t.Any:
    """A dataclass field carrying its :class:`Meta` (a tuple default is kept: the dataclass is frozen)."""
    return dataclasses.field(default=default, repr=repr_, metadata={"schema": Meta(**meta)})  # pylint: disable=invalid-field-call


_NEEDED_MIGRATE = "Required for an inline migration; in bulk, the default of the accounts that do not give it."
_NEEDED_TASK = "Required with O(state=present)."
_IMAPSYNC_FLAGS = ("Ignored with {engine}: imapsync never copies the flags of the messages it transferred before "
                   "(C(--noresyncflags)).")
_CA_DOC = "A file on the managed host with the CA certificates to verify the {side} server with, instead of the system's."
_SECURITY_DOC = ("V(starttls) upgrades a plain connection; if the server does not offer STARTTLS a run fails, it never falls back "
                 "to plain text. V(ssl) is implicit TLS. V(none) sends the {secret} in clear text{tail}.")


@dataclasses.dataclass(frozen=True)
class Target:
    """The local server receiving the mail, reached through a master user."""

    name: str = declare(
        "default", type="str", check=_required, faces=TARGET_FACES,
        doc=("The name of the mail target, 1 to 64 characters of V(a-z), V(0-9), V(_), V(.) and V(-), starting with a "
             "letter or a digit. It is part of the key of the state of an inline migration.",),
        notes={Face.TARGET: ("Sync tasks refer to it with O(mailops.imap.sync_task#module:target).",),
               Face.ROLE_TARGET: ("The tasks that name no target deliver to it.",)})
    host: str = declare(
        "127.0.0.1", type="str", check=check_host, faces=TARGET_FACES,
        doc=("The local IMAP server, given as a hostname, an IPv4 or an IPv6 address.",))
    port: int = declare(
        143, type="int", check=_optional_port, faces=TARGET_FACES,
        defaults=frozenset(), derived=True,
        doc=("The TCP port of the local IMAP server, 1 to 65535.", "Defaults to 993 with O(~security=ssl), otherwise 143."))
    security: str = declare(
        "starttls", type="str", check=_choices(SECURITY_CHOICES), choices=SECURITY_CHOICES, faces=TARGET_FACES,
        doc=("How the connection to the local server is protected.",
             _SECURITY_DOC.format(secret="master password", tail=", which is acceptable on the loopback interface only")))
    validate_certs: bool = declare(
        True, type="bool", check=_bool, faces=TARGET_FACES,
        doc=("Whether the local server's TLS certificate is verified.",))
    ca_file: str | None = declare(
        None, type="path", role_type="str", check=_optional_text, faces=TARGET_FACES,
        doc=(_CA_DOC.format(side="local"),))
    master_user: str = declare(
        "vmail", type="str", check=_required, faces=TARGET_FACES,
        doc=("The Dovecot master user that logs in on behalf of the local user of each migration or task.",))
    master_password: str = declare(
        "", repr_=False, type="str", check=_secret, faces=TARGET_FACES, no_log=True, needed=True,
        required=frozenset({Face.ROLE_TARGET}), defaults=frozenset(),
        doc=("The master user's password. Any characters are allowed. It is never logged nor returned.",),
        notes={Face.TARGET: ("Stored by M(mailops.imap.mail_target) apart from the definition, readable by root only, and "
                             "never shown in a diff. Required there with O(mailops.imap.mail_target#module:state=present).",),
               Face.ROLE_TARGET: ("Stored readable by the owner of O(imapsync_config_dir) only.",)})
    master_separator: str = declare(
        "*", type="str", check=_required, faces=TARGET_FACES,
        doc=("The separator of the C(user*master) login, used where the server does not offer AUTHENTICATE PLAIN with "
             "an authorization identity.",))
    lmtp_host: str = declare(
        "127.0.0.1", type="str", check=_lmtp_host, faces=TARGET_FACES,
        doc=("The LMTP server for the tasks and migrations with C(delivery=lmtp), given as a host name, an address or "
             "the path of a UNIX socket.",))
    lmtp_port: int = declare(
        24, type="int", check=_port, faces=TARGET_FACES,
        doc=("The TCP port of the LMTP server.",))

    def public(self) -> dict[str, t.Any]:
        """The definition without secrets."""
        data = dataclasses.asdict(self)
        data.pop("master_password")
        return data


@dataclasses.dataclass(frozen=True)
class Task:  # pylint: disable=too-many-instance-attributes
    """One remote account into one local user."""

    local_user: str = declare(
        type="str", check=_required, faces=ALL_TASK_FACES, needed=True, required=frozenset({Face.ROLE_TASK}),
        doc=("The local account that receives the mail (NethServer 8 I(Local user)).",))
    remote_user: str = declare(
        type="str", check=_required, faces=ALL_TASK_FACES, needed=True, required=frozenset({Face.ROLE_TASK}),
        doc=("The login of the remote account (NethServer 8 I(Remote user)).",
             "For a NethServer or Dovecot remote with a master user, V(user*vmail) with the master password works."))
    remote_password: str = declare(
        "", repr_=False, type="str", check=_secret, faces=ALL_TASK_FACES, no_log=True, defaults=frozenset(),
        doc=("The password of the remote account (NethServer 8 I(Remote password)). Any characters are allowed.",
             "It is never logged nor returned.",
             "Required with O(~remote_auth=password), the default; refused with the other values of O(~remote_auth), "
             "which log in with a token instead."),
        notes={Face.MIGRATE: ("In bulk, for example the master password of a NethServer remote, with V(user*vmail) "
                              "remote users.",),
               Face.TASK: ("It is stored apart from the definition, readable by root only, and never shown in a diff.",),
               Face.ROLE_TASK: ("Stored readable by the owner of O(imapsync_config_dir) only.",)})
    # --- OAuth2 (docs/spec.md): which source gives the token, and the fields of each source (check_remote_auth) ---
    remote_auth: str = declare(
        "password", type="str", check=_choices(REMOTE_AUTH_CHOICES), choices=REMOTE_AUTH_CHOICES, faces=ALL_TASK_FACES,
        doc=("How the engine logs in to the remote server.",
             "V(password) with O(~remote_password) (AUTHENTICATE PLAIN, else LOGIN).",
             "The other values log in with an OAuth2 access token for O(~remote_user), by SASL C(OAUTHBEARER) (RFC 7628) "
             "where the server announces it, else C(XOAUTH2); a server that announces neither fails the run with a "
             "sentence saying so.",
             "V(token_file): the token is in the file O(~remote_token_file), which another process keeps fresh.",
             "V(token_command): the token is what the command O(~remote_token_command) prints.",
             "V(client_credentials): the client-credentials grant (RFC 6749 section 4.4) of the Microsoft Entra ID "
             "application O(~remote_oauth_client_id) in the tenant O(~remote_oauth_tenant), for Microsoft 365 "
             "(the application needs the C(IMAP.AccessAsApp) permission and access to the mailbox).",
             "V(service_account): a Google service account with domain-wide delegation (O(~remote_oauth_key_file)) "
             "acting as O(~remote_user), for Google Workspace.",
             "A token file or command is read again at every connection, so a token another process refreshed is used "
             "from the next reconnection on. A token obtained from a grant is kept while it is valid, renewed before "
             "it expires (in the last 5 minutes or 10% of its life), and renewed once more when the server refuses it.",
             "A field of another token source is refused."))
    remote_token_file: str | None = declare(
        None, type="path", role_type="str", check=_optional_text, faces=ALL_TASK_FACES,
        doc=("With O(~remote_auth=token_file), the file on the host running the sync that holds the access token (at "
             "most 16 KiB; surrounding white space is ignored). It is read at every connection.",
             "It must not be readable by the group or by others (C(chmod 600)), like an SSH private key."))
    remote_token_command: str | None = declare(
        None, type="str", check=_optional_text, faces=ALL_TASK_FACES, not_secret=True,
        doc=("With O(~remote_auth=token_command), a command that prints the access token on its standard output, run at "
             "every connection on the host running the sync.",
             "It is split like a shell would (quotes, backslashes) but run without a shell, with no input, the "
             "environment of the sync, at most 60 seconds and 16 KiB of output. A failure shows the exit status and "
             "a short excerpt of its error output.",
             "Its words are visible in the process list of that host: keep secrets out of them."))
    remote_oauth_client_id: str | None = declare(
        None, type="str", check=_optional_text, faces=ALL_TASK_FACES,
        doc=("With O(~remote_auth=client_credentials), the application (client) id of the Entra ID application.",))
    remote_oauth_client_secret: str | None = declare(
        None, repr_=False, type="str", check=_optional_text, faces=ALL_TASK_FACES, no_log=True,
        doc=("With O(~remote_auth=client_credentials), a client secret of the application. It is never logged nor "
             "returned.", "Give it or O(~remote_oauth_certificate), not both."),
        notes={Face.TASK: ("It is stored apart from the definition, readable by root only, and never shown in a diff.",),
               Face.ROLE_TASK: ("Stored readable by the owner of O(imapsync_config_dir) only.",)})
    remote_oauth_certificate: str | None = declare(
        None, type="path", role_type="str", check=_optional_text, faces=ALL_TASK_FACES,
        doc=("With O(~remote_auth=client_credentials), instead of a client secret: a PEM file on the host running the "
             "sync holding the private key and the certificate registered with the application (its SHA-1 thumbprint "
             "is computed from it).", "It must not be readable by the group or by others (C(chmod 600))."))
    remote_oauth_tenant: str | None = declare(
        None, type="str", check=_optional_text, faces=ALL_TASK_FACES,
        doc=("With O(~remote_auth=client_credentials), the Entra ID tenant: its id or one of its domain names.",))
    remote_oauth_authority: str | None = declare(
        None, type="str", check=_optional_url, faces=ALL_TASK_FACES, defaults=frozenset(), derived=True,
        doc=("With O(~remote_auth=client_credentials), the https URL of the Entra ID login service, without the tenant.",
             f"Defaults to V({DEFAULT_AUTHORITY}); other clouds have their own (for example "
             "V(https://login.microsoftonline.us))."))
    remote_oauth_scope: str | None = declare(
        None, type="str", check=_optional_text, faces=ALL_TASK_FACES, defaults=frozenset(), derived=True,
        doc=("With O(~remote_auth=client_credentials) or O(~remote_auth=service_account), the scope of the token.",
             f"Defaults to V({DEFAULT_SCOPES['client_credentials']}) with V(client_credentials), "
             f"V({DEFAULT_SCOPES['service_account']}) with V(service_account)."))
    remote_oauth_key_file: str | None = declare(
        None, type="path", role_type="str", check=_optional_text, faces=ALL_TASK_FACES,
        doc=("With O(~remote_auth=service_account), the JSON key file of the Google service account, on the host running "
             "the sync. Its client id needs domain-wide delegation of the scope O(~remote_oauth_scope) in the Google "
             "Workspace admin console.", "It must not be readable by the group or by others (C(chmod 600))."))
    remote_oauth_ca_file: str | None = declare(
        None, type="path", role_type="str", check=_optional_text, faces=ALL_TASK_FACES,
        doc=("With O(~remote_auth=client_credentials) or O(~remote_auth=service_account), a PEM file of CA certificates "
             "to verify the token endpoint with, instead of the system's (a TLS-inspecting proxy, a test server).",))
    remote_host: str = declare(  # "" is not given; not `needed`: a remote_provider gives it (presets.apply), else parse_task refuses ""
        "", type="str", check=check_host, faces=ALL_TASK_FACES, defaults=frozenset(),
        doc=("The remote IMAP server (NethServer 8 I(IMAP server)), given as a hostname (internationalised names too), "
             "an IPv4 or an IPv6 address.", "Required unless O(~remote_provider) gives it."))
    name: str | None = declare(
        None, type="str", check=_task_name, faces=DEFINED_TASK_FACES,
        required=frozenset({Face.TASK_ELEMENT, Face.ROLE_TASK}),
        doc=("The name of the task, unique on the host, 1 to 64 characters of V(a-z), V(0-9), V(_), V(.) and V(-), "
             "starting with a letter or a digit. It names the task's files, state and systemd timer.",),
        notes={Face.TASK: ("Required unless O(tasks) is given; O(name) and O(tasks) exclude each other.",)})
    target: str = declare(
        "default", type="str", check=_required, faces=DEFINED_TASK_FACES, defaults=frozenset({Face.TASK}),
        doc=("The name of the mail target (see M(mailops.imap.mail_target)) that receives the mail.",),
        notes={Face.TASK: ("It must be defined on the host when the task is stored; in check mode a missing target only "
                           "gives a warning.", "With O(tasks), the target of every element that names none."),
               Face.ROLE_TASK: ("Default the name of O(imapsync_target).",)})
    remote_security: str = declare(  # no default in the argument specs: a preset's must win (presets.apply)
        "starttls", type="str", check=_choices(SECURITY_CHOICES), choices=SECURITY_CHOICES, faces=ALL_TASK_FACES,
        defaults=frozenset(),
        doc=("How the connection to the remote server is protected (NethServer 8 I(Select encryption)).",
             _SECURITY_DOC.format(secret="password", tail=""),
             "Defaults to V(starttls), or to V(ssl) with a O(~remote_provider)."))
    remote_port: int = declare(
        143, type="int", check=_optional_port, faces=ALL_TASK_FACES,
        defaults=frozenset(), derived=True,
        doc=("The TCP port of the remote server (NethServer 8 I(IMAP TCP Port)), 1 to 65535.",
             "Defaults to 993 with O(~remote_security=ssl), otherwise 143."))
    remote_provider: str = declare(  # the rule: _engine/presets.py
        presets.NONE, type="str", check=presets.check, choices=presets.CHOICES, faces=ALL_TASK_FACES,
        doc=("A provider preset (docs/oauth2.md \"Provider presets\"): the defaults of the fields the task does not give.",
             "V(microsoft365) (Exchange Online): O(~remote_host=outlook.office365.com), O(~remote_security=ssl), port 993.",
             "V(google) (Gmail, Google Workspace): O(~remote_host=imap.gmail.com), O(~remote_security=ssl), port 993, "
             "O(~folders=all_except), and O(~exclude) gains the patterns of Gmail's virtual folders C([Gmail]/All Mail), "
             "C([Gmail]/Important) and C([Gmail]/Starred), whose messages are all in other folders too (a message "
             "archived without a label is only in C(All Mail): label such messages before the migration).",
             "V(none) gives no default."))
    validate_certs: bool = declare(
        True, type="bool", check=_bool, faces=ALL_TASK_FACES,
        doc=("Whether the remote server's TLS certificate is verified.",))
    ca_file: str | None = declare(
        None, type="path", role_type="str", check=_optional_text, faces=ALL_TASK_FACES,
        doc=(_CA_DOC.format(side="remote"),),
        notes={Face.ROLE_TASK: ("The role makes it readable to the service.",)})
    folders: str = declare(  # no default in the argument specs: a preset's must win (presets.apply)
        "all", type="str", check=_choices(FOLDERS_CHOICES), choices=FOLDERS_CHOICES, faces=ALL_TASK_FACES,
        defaults=frozenset(),
        doc=("What is copied (NethServer 8 I(Folder synchronization)).",
             "V(all) copies every selectable remote folder, recursively, into the local folder of the same path; "
             "missing local folders are created and subscribed. Other users' and shared namespaces are never copied.",
             "V(all_except) does the same, without the folders matched by O(~exclude).",
             "V(inbox) copies only the messages of the remote INBOX that are not C(\\Seen) and flags each copied "
             "message C(\\Seen) on the remote, so it is never copied twice. See O(~sieve) and O(~delivery).",
             "Defaults to V(all), or to V(all_except) with O(~remote_provider=google)."))
    exclude: tuple[str, ...] = declare(
        (), type="list", elements="str", check=_exclude, faces=ALL_TASK_FACES,
        doc=("With O(~folders=all_except), Python regular expressions, one per entry, searched (not anchored) in the "
             "remote folder names; a folder that matches any of them is not copied.",
             "Blank entries are ignored. An invalid expression is an error that names it, and so is one that can take "
             "hours to match a long folder name (a quantified group holding another quantifier, such as V((a+\\)+), or "
             "repeated alternatives that start alike, such as V((a|ab\\)+)). Runs of the builtin engine stop matching "
             "after 30 seconds.",
             "Give a YAML list. Ansible splits a single string at commas, so an expression that contains a comma "
             "(such as V({1,3})) must be a list entry of its own.",
             "Ignored, with a warning, unless O(~folders=all_except)."),
        notes={Face.TASK: ("With O(engine=imapsync), imapsync matches the patterns itself, within the run's time limit.",
                           "Stored as given.")})
    delete_remote: str = declare(
        "never", type="str", check=_choices(DELETE_CHOICES), choices=DELETE_CHOICES, faces=ALL_TASK_FACES,
        doc=("Whether messages are deleted on the remote server (NethServer 8 I(Remote server messages deletion)).",
             "V(never) leaves the remote untouched (apart from C(\\Seen) flags with O(~folders=inbox)).",
             "V(after_sync) deletes a remote message once it is confirmed present locally.",
             "V(older_than) deletes remote messages older than O(~delete_remote_days) days that are confirmed present "
             "locally. A message that was never copied is never deleted.",
             "Nothing is deleted in check mode."))
    delete_remote_days: int | None = declare(
        None, type="int", check=_optional_days, faces=ALL_TASK_FACES,
        doc=("With O(~delete_remote=older_than), the age in days (at least 1) after which remote messages are deleted.",
             "Required with O(~delete_remote=older_than)."))
    schedule: str = declare(
        "manual", type="str", check=_choices(SCHEDULE_CHOICES), choices=SCHEDULE_CHOICES, faces=DEFINED_TASK_FACES,
        doc=("When the task runs (NethServer 8 I(Task frequency)).",
             "V(manual) only when started (C(imapsyncctl run NAME), M(mailops.imap.migrate) with C(task=NAME)).",
             "V(interval) every O(~interval_minutes) minutes, by the timer the C(mailops.imap.imapsync) role installs."))
    interval_minutes: int | None = declare(
        None, type="int", check=_optional_interval, faces=DEFINED_TASK_FACES,
        doc=(f"With O(~schedule=interval), the minutes between two runs, 1 to {INTERVAL_MAX}.",
             "Required with O(~schedule=interval)."))
    special_use_mapping: bool = declare(
        True, type="bool", check=_bool, faces=ALL_TASK_FACES,
        doc=("Whether the remote Sent, Trash, Junk, Drafts and Archive folders (marked with SPECIAL-USE, or with "
             "well-known names such as C(Sent Items) or C(Deleted Items)) land in the local folder of the same use.",))
    sieve: bool = declare(
        True, type="bool", check=_bool, faces=ALL_TASK_FACES,
        doc=("With O(~folders=inbox), whether the local user's Sieve filter runs on the copied messages (IMAP "
             "C(FILTER SIEVE), Dovecot's C(imap_filter_sieve) plugin).",
             "Where the local server lacks that capability the messages stay in INBOX and a warning says so."))
    engine: str = declare(
        "builtin", type="str", check=_choices(ENGINE_CHOICES), choices=ENGINE_CHOICES, faces=DEFINED_TASK_FACES,
        doc=("What runs the task. V(builtin) is the collection's sync engine. V(imapsync) makes the "
             "C(mailops.imap.imapsync) role render an equivalent imapsync command line instead.",
             "With V(imapsync), the options upstream imapsync cannot express equivalently are refused when the task is "
             "defined, with a sentence naming each of them.",
             "With V(imapsync), a message without a Message-ID header gets a synthetic one (C(--addheader)) on its local "
             "copy, so that copy is not byte-identical to the remote message; V(builtin) copies every message unchanged."))
    delivery: str = declare(
        "imap", type="str", check=_choices(DELIVERY_CHOICES), choices=DELIVERY_CHOICES, faces=ALL_TASK_FACES,
        doc=("With O(~folders=inbox), how messages reach the local INBOX.",
             "V(imap) appends them over IMAP (then runs Sieve, see O(~sieve)).",
             "V(lmtp) delivers them through the LMTP server of the mail target (its C(lmtp_host)), a full local delivery "
             "with global Sieve scripts, vacation replies and quota."))
    flag_sync: str = declare(
        "all", type="str", check=_choices(FLAG_SYNC_CHOICES), choices=FLAG_SYNC_CHOICES, faces=ALL_TASK_FACES,
        doc=("How the builtin engine finds the remote flag changes (C(\\Seen), C(\\Flagged), keywords) to copy when the "
             "remote server lacks CONDSTORE, such as Courier-IMAP. With CONDSTORE the option changes nothing: a run "
             "reads the flags of the changed messages only.",
             "V(all) reads the flags of every copied message of every folder on every run, so every remote flag change "
             "reaches the local copy at the next run.",
             "V(changed_folders) skips a folder whose remote UIDVALIDITY, UIDNEXT and message count are unchanged since "
             "its last completed sync (and that has nothing to retry or delete) after one STATUS command, without "
             "opening it. The price: a flag changed on the remote in such a folder is not copied until that folder "
             "changes (a message arrives or is expunged); then every flag change of the folder is copied.",
             "Ignored with O(~folders=inbox), which copies no flags after the copy."),
        notes={Face.TASK: (_IMAPSYNC_FLAGS.format(engine="O(engine=imapsync)"),),
               Face.ROLE_TASK: (_IMAPSYNC_FLAGS.format(engine="O(imapsync_tasks[].engine=imapsync)"),)})
    enabled: bool = declare(
        True, type="bool", check=_bool, faces=DEFINED_TASK_FACES,
        doc=("Whether the task is active. A disabled task keeps its definition and its state; its timer is stopped.",))

    def public(self) -> dict[str, t.Any]:
        """The definition without secrets (:func:`secret_fields`)."""
        data = dataclasses.asdict(self)
        for name in secret_fields(Task):
            data.pop(name)
        data["exclude"] = list(self.exclude)
        return data

    def exclude_patterns(self) -> list[re.Pattern[str]]:
        """The compiled exclude regexes (blank entries are ignored)."""
        return [re.compile(p) for p in self.exclude]


Definition = t.Union[t.Type[Task], t.Type[Target]]  # typing.Type: importable on Python 3.8, which pyversion.py refuses clearly


def meta(cls: Definition, name: str) -> Meta:
    """The schema of one field."""
    return cls.__dataclass_fields__[name].metadata["schema"]


def fields(cls: Definition, face: Face | None = None) -> tuple[str, ...]:
    """The field names of ``cls`` in declaration order, those ``face`` offers if given."""
    return tuple(f.name for f in dataclasses.fields(cls) if face is None or face in f.metadata["schema"].faces)


def secret_fields(cls: Definition) -> tuple[str, ...]:
    """The fields that are secrets (no_log): never in a definition shown, stored apart, readable by root only."""
    return tuple(name for name in fields(cls) if meta(cls, name).no_log)


def needed(cls: Definition) -> tuple[str, ...]:
    """The fields a definition must have once the values of the module call are merged in."""
    return tuple(name for name in fields(cls) if meta(cls, name).needed)


def default(cls: Definition, name: str) -> t.Any:
    """The default of a field (a list for a tuple), or None when it has none."""
    value = cls.__dataclass_fields__[name].default
    if value is dataclasses.MISSING:
        return None
    return list(value) if isinstance(value, tuple) else value


TASK_FIELDS = fields(Task)
TARGET_FIELDS = fields(Target)


# --- parsing ----------------------------------------------------------------------------------------------------

def _unknown(kind: str, data: t.Mapping[str, t.Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"{kind}: unknown field(s) {', '.join(unknown)}; valid fields are {', '.join(allowed)}.")


def _checked(cls: Definition, data: t.Mapping[str, t.Any], label: str) -> dict[str, t.Any]:
    """Every field of ``cls``, checked by its validator: the value given, else its default (None: none given)."""
    values: dict[str, t.Any] = {}
    for name in fields(cls):
        field = meta(cls, name)
        value = data[name] if name in data else (None if field.derived else default(cls, name))
        values[name] = field.check(f"{label}{name}", value)
    return values


def parse_target(data: t.Mapping[str, t.Any] | None) -> Target:
    """Validate a mail target definition (missing fields take their defaults)."""
    data = {k: v for k, v in (data or {}).items() if v is not None}
    _unknown("target", data, TARGET_FIELDS)
    values = _checked(Target, data, "target.")
    values["port"] = port_by_security(values["port"], values["security"])
    return Target(**values)


def parse_task(data: t.Mapping[str, t.Any], declared: bool = True) -> Task:
    """Validate a sync task definition (missing fields take their defaults).

    ``declared``: the definition is being declared (a module, a CSV), not read back from the store.
    """
    data = {k: v for k, v in data.items() if v is not None}
    _unknown("task", data, TASK_FIELDS)
    data = presets.apply(data)
    if data.get("remote_host") in (None, ""):
        raise ConfigError("remote_host is required; give the remote IMAP server's name or address, or a remote_provider "
                          f"({', '.join(c for c in presets.CHOICES if c != presets.NONE)}) that gives it.")
    values = _checked(Task, data, "")
    values["remote_port"] = port_by_security(values["remote_port"], values["remote_security"])
    values.update(check_remote_auth(values))
    values["delete_remote_days"] = check_delete_days(values["delete_remote"], values["delete_remote_days"])
    values["interval_minutes"] = check_interval(values["schedule"], values["interval_minutes"])
    if declared:
        check_exclude_hazards(data.get("exclude"), values["folders"])
    return Task(**values)


# --- argument specs and documentation ---------------------------------------------------------------------------

_REF = re.compile(r"O\(~")


def argument_spec(cls: Definition, face: Face) -> dict[str, dict[str, t.Any]]:
    """The argument spec options of the fields ``face`` offers (a fresh copy on every call)."""
    spec: dict[str, dict[str, t.Any]] = {}
    for name in fields(cls, face):
        field = meta(cls, name)
        role = face in (Face.ROLE_TASK, Face.ROLE_TARGET)
        option: dict[str, t.Any] = {"type": (field.role_type or field.type) if role else field.type}
        if field.elements:
            option["elements"] = field.elements
        if face in field.required:
            option["required"] = True
        value = default(cls, name)
        if face in field.defaults and face not in INHERITING and value is not None:
            option["default"] = value
        if field.choices:
            option["choices"] = list(field.choices)
        if field.no_log or field.not_secret:
            option["no_log"] = field.no_log
        spec[name] = option
    return spec


def description(cls: Definition, name: str, face: Face, prefix: str = "") -> list[str]:
    """The documentation lines of a field in ``face``; ``prefix`` is the path of its siblings (``target.``)."""
    field = meta(cls, name)
    if face is Face.ACCOUNT:
        return [f"As O({name})." + (" It is never logged nor returned." if field.no_log else "")]
    if face is Face.TASK_ELEMENT:
        return [f"See O({name})."]
    lines = [_REF.sub(f"O({prefix}", line) for line in field.doc]
    lines += field.notes.get(face, ())
    if field.needed and face is Face.MIGRATE:
        lines.append(_NEEDED_MIGRATE)
    elif field.needed and face is Face.TASK:
        lines.append(_NEEDED_TASK)
    return lines


def option_docs(cls: Definition, face: Face, prefix: str = "") -> dict[str, dict[str, t.Any]]:
    """The module documentation of the fields ``face`` offers, as ``options`` (or ``suboptions``) entries.

    They agree with :func:`argument_spec` (type, elements, required, default, choices), as validate-modules checks.
    """
    docs: dict[str, dict[str, t.Any]] = {}
    for name, option in argument_spec(cls, face).items():
        doc: dict[str, t.Any] = {"description": description(cls, name, face, prefix)}
        doc.update((key, value) for key, value in option.items() if key != "no_log")
        docs[name] = doc
    return docs


ROLE_PREFIX = {Face.ROLE_TASK: "imapsync_tasks[].", Face.ROLE_TARGET: "imapsync_target."}


def role_options(cls: Definition, face: Face) -> dict[str, dict[str, t.Any]]:
    """The options of the role's ``imapsync_tasks`` elements or ``imapsync_target`` (meta/argument_specs.yml)."""
    docs: dict[str, dict[str, t.Any]] = {}
    for name, option in argument_spec(cls, face).items():
        docs[name] = {"description": description(cls, name, face, ROLE_PREFIX[face]), **option}
    return docs
