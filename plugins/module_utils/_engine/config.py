# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Task and target definitions: defaults, validation and the state key.

Pure Python, no Ansible imports: the same code runs in modules (through AnsiballZ) and on hosts
(``imapsyncctl``). Every check raises :class:`ConfigError` with a sentence that names the field,
the cause and the fix, before anything is written anywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
import typing as t

from . import deletion
from .errors import ConfigError

try:  # the parser of the re module: Python 3.11 renamed it (sre_parse still works there, with a warning)
    from re import _parser as _sre  # type: ignore[attr-defined]  # pylint: disable=no-name-in-module
except ImportError:  # Python 3.9, 3.10
    import sre_parse as _sre  # type: ignore[no-redef]  # pylint: disable=deprecated-module

SECURITY_CHOICES = ("starttls", "ssl", "none")
FOLDERS_CHOICES = ("inbox", "all", "all_except")
DELETE_CHOICES = deletion.CHOICES  # one entry per policy: _engine/deletion.py
SCHEDULE_CHOICES = ("manual", "interval")
ENGINE_CHOICES = ("builtin", "imapsync")
DELIVERY_CHOICES = ("imap", "lmtp")

# Whole strings only: \Z, not $ (which also matches before a trailing line feed: "t1\n").
TASK_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}\Z")
_HOST_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Target:
    """The local server receiving the mail, reached through a master user."""

    name: str = "default"
    host: str = "127.0.0.1"
    port: int = 143
    security: str = "starttls"
    validate_certs: bool = True
    ca_file: str | None = None
    master_user: str = "vmail"
    master_password: str = dataclasses.field(default="", repr=False)
    master_separator: str = "*"
    lmtp_host: str = "127.0.0.1"
    lmtp_port: int = 24

    def public(self) -> dict[str, t.Any]:
        """The definition without secrets."""
        data = dataclasses.asdict(self)
        data.pop("master_password")
        return data


@dataclasses.dataclass(frozen=True)
class Task:
    """One remote account into one local user."""

    local_user: str
    remote_user: str
    remote_host: str
    remote_password: str = dataclasses.field(default="", repr=False)
    name: str | None = None
    target: str = "default"
    remote_security: str = "starttls"
    remote_port: int = 143
    validate_certs: bool = True
    ca_file: str | None = None
    folders: str = "all"
    exclude: tuple[str, ...] = ()
    delete_remote: str = "never"
    delete_remote_days: int | None = None
    schedule: str = "manual"
    interval_minutes: int | None = None
    sieve: bool = True
    special_use_mapping: bool = True
    engine: str = "builtin"
    delivery: str = "imap"
    enabled: bool = True

    def public(self) -> dict[str, t.Any]:
        """The definition without secrets."""
        data = dataclasses.asdict(self)
        data.pop("remote_password")
        data["exclude"] = list(self.exclude)
        return data

    def exclude_patterns(self) -> list[re.Pattern[str]]:
        """The compiled exclude regexes (blank entries are ignored)."""
        return [re.compile(p) for p in self.exclude]


TASK_FIELDS = tuple(f.name for f in dataclasses.fields(Task))
TARGET_FIELDS = tuple(f.name for f in dataclasses.fields(Target))


def _choice(field: str, value: t.Any, choices: tuple[str, ...]) -> str:
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


_REPEAT_NAMES = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
_REPEATS = tuple(getattr(_sre, name) for name in _REPEAT_NAMES if hasattr(_sre, name))
_ZERO_WIDTH = tuple(getattr(_sre, name) for name in ("AT", "ASSERT", "ASSERT_NOT") if hasattr(_sre, name))
_WIDE_RANGE = 1024  # a character range wider than this counts as "any character" when alternatives are compared


def _cases(code: int, fold: bool) -> set[int]:
    """A character, and with IGNORECASE its other cases (those of one character)."""
    if not fold:
        return {code}
    return {code} | {ord(c) for c in (chr(code).lower(), chr(code).upper()) if len(c) == 1}


def _firsts(items: t.Any, fold: bool) -> tuple[frozenset[int] | None, bool]:
    """The characters a regex sequence can start with (None: too many to tell) and whether it can match empty."""
    found: set[int] = set()
    for op, av in items:
        if op in _ZERO_WIDTH:
            continue
        chars: set[int] | None = set()
        nullable = False
        if op == _sre.LITERAL:
            chars = _cases(av, fold)
        elif op == _sre.IN and all(kind == _sre.LITERAL or (kind == _sre.RANGE and v[1] - v[0] <= _WIDE_RANGE) for kind, v in av):
            for kind, v in av:
                for code in ([v] if kind == _sre.LITERAL else range(v[0], v[1] + 1)):
                    chars |= _cases(code, fold)
        elif op == _sre.SUBPATTERN:
            sub, nullable = _firsts(av[-1], fold)
            chars = set(sub) if sub is not None else None
        elif op == _sre.BRANCH:
            for alternative in av[1]:
                sub, empty = _firsts(alternative, fold)
                nullable = nullable or empty
                chars = None if sub is None or chars is None else chars | sub
        elif op in _REPEATS:
            sub, empty = _firsts(av[2], fold)
            chars, nullable = (set(sub) if sub is not None else None), empty or av[0] == 0
        else:  # any character, a negated set, a class (\w, \d), a back reference...
            return None, False
        if chars is None:
            return None, False
        found |= chars
        if not nullable:
            return frozenset(found), False
    return frozenset(found), True


def _overlapping(alternatives: t.Sequence[t.Any], fold: bool) -> bool:
    """Whether two alternatives of a group can start with the same character (or one can match nothing)."""
    seen: set[int] = set()
    for alternative in alternatives:
        chars, nullable = _firsts(alternative, fold)
        if nullable or chars is None or seen & chars:
            return True
        seen |= chars
    return False


def _backtracking(items: t.Any, outer: str | None, fold: bool) -> str | None:
    """Why the regex can backtrack exponentially ("nested" quantifiers, "overlapping" alternatives repeated), if so.

    ``outer`` is the repetition around ``items``: None, "bounded" ({2,5}) or "unbounded" (*, +, {2,})."""
    for op, av in items:
        if op in _REPEATS:
            repeats, unbounded = av[1] > 1, av[1] == _sre.MAXREPEAT
            if repeats and outer is not None and (outer == "unbounded" or unbounded):
                return "nested"
            inner = outer
            if repeats:
                inner = "unbounded" if unbounded or outer == "unbounded" else "bounded"
            why = _backtracking(av[2], inner, fold)
        elif op == _sre.BRANCH:
            if outer == "unbounded" and _overlapping(av[1], fold):
                return "overlapping"
            why = next((w for w in (_backtracking(alt, outer, fold) for alt in av[1]) if w), None)
        elif op == _sre.SUBPATTERN:
            why = _backtracking(av[-1], outer, fold)
        elif op in _ZERO_WIDTH and op != _sre.AT:
            why = _backtracking(av[1], outer, fold)
        elif op == getattr(_sre, "GROUPREF_EXISTS", None):
            why = next((w for w in (_backtracking(b, outer, fold) for b in av[1:] if b) if w), None)
        elif op == getattr(_sre, "ATOMIC_GROUP", None):
            why = _backtracking(av, outer, fold)
        else:
            why = None
        if why:
            return why
    return None


def exclude_hazard(pattern: str) -> str | None:
    """Why matching ``pattern`` can take exponential time (catastrophic backtracking), as advice; None if it cannot.

    Refused: a quantified group that holds another quantifier where either one is unbounded (``(a+)+``,
    ``(\\w+\\s?)*``, ``(.*a){20}``), and an unbounded repetition of alternatives that can start with the same
    character or match nothing (``(a|ab)+``, ``(a|b|ab)*``). Some safe patterns are refused too: the rule is
    simple on purpose, and the run still matches under a time limit (folders.EXCLUDE_TIMEOUT_S).
    """
    parsed = _sre.parse(pattern)
    fold = bool(parsed.state.flags & re.IGNORECASE)
    why = _backtracking(list(parsed), None, fold)
    if why == "nested":
        return ("repeats a group that holds another repeat, which can take hours to match a long folder name; write it "
                "with one quantifier, for example 'a+' rather than '(a+)+', or '[a-z ]+' rather than '([a-z]+ ?)+'")
    if why == "overlapping":
        return ("repeats alternatives that can start with the same character (or match nothing), which can take hours "
                "to match a long folder name; make them start differently, for example '(ab?)+' rather than '(a|ab)+', "
                "or use a character class: '[ab]+' rather than '(a|b|ab)+'")
    return None


def _exclude(value: t.Any, hazards: bool = True) -> tuple[str, ...]:
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
                f"exclude: entry {index} {entry!r} is not a valid regular expression ({exc}); fix or remove it."
            ) from None
        hazard = exclude_hazard(entry) if hazards else None
        if hazard is not None:
            raise ConfigError(f"exclude: entry {index} {entry!r} {hazard}.")
        patterns.append(entry)
    return tuple(patterns)


def _unknown(kind: str, data: t.Mapping[str, t.Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"{kind}: unknown field(s) {', '.join(unknown)}; valid fields are {', '.join(allowed)}.")


def parse_target(data: t.Mapping[str, t.Any] | None) -> Target:
    """Validate a mail target definition (missing fields take their defaults)."""
    data = {k: v for k, v in (data or {}).items() if v is not None}
    _unknown("target", data, TARGET_FIELDS)
    security = _choice("target.security", data.get("security", "starttls"), SECURITY_CHOICES)
    port = _port("target.port", data["port"]) if "port" in data else (993 if security == "ssl" else 143)
    separator = _required("target.master_separator", data.get("master_separator", "*"))
    lmtp_host = _required("target.lmtp_host", data.get("lmtp_host", "127.0.0.1"))
    if not lmtp_host.startswith("/"):
        lmtp_host = check_host("target.lmtp_host", lmtp_host)
    return Target(
        name=_required("target.name", data.get("name", "default")),
        host=check_host("target.host", data.get("host", "127.0.0.1")),
        port=port,
        security=security,
        validate_certs=_bool("target.validate_certs", data.get("validate_certs", True)),
        ca_file=_text("target.ca_file", data.get("ca_file"), False),
        master_user=_required("target.master_user", data.get("master_user", "vmail")),
        master_password=str(data.get("master_password", "")),
        master_separator=separator,
        lmtp_host=lmtp_host,
        lmtp_port=_port("target.lmtp_port", data.get("lmtp_port", 24)),
    )


def parse_task(data: t.Mapping[str, t.Any], declared: bool = True) -> Task:
    """Validate a sync task definition (missing fields take their defaults).

    ``declared``: the definition is being declared (a module, a CSV), not read back from the store.
    """
    data = {k: v for k, v in data.items() if v is not None}
    _unknown("task", data, TASK_FIELDS)
    name = _text("name", data.get("name"), False)
    if name is not None and not TASK_NAME_RE.fullmatch(name):
        raise ConfigError(
            f"name: {name!r} is not a valid task name; use 1 to 64 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit."
        )
    security = _choice("remote_security", data.get("remote_security", "starttls"), SECURITY_CHOICES)
    port = _port("remote_port", data["remote_port"]) if "remote_port" in data else (993 if security == "ssl" else 143)
    folders = _choice("folders", data.get("folders", "all"), FOLDERS_CHOICES)
    delete_remote = _choice("delete_remote", data.get("delete_remote", "never"), DELETE_CHOICES)
    days = data.get("delete_remote_days")
    if delete_remote == "older_than":
        if days is None:
            raise ConfigError("delete_remote_days is required with delete_remote: older_than; give the age in days (at least 1).")
        days = _int_range("delete_remote_days", days, 1, None)
    elif days is not None:
        days = _int_range("delete_remote_days", days, 1, None)
    schedule = _choice("schedule", data.get("schedule", "manual"), SCHEDULE_CHOICES)
    interval = data.get("interval_minutes")
    if schedule == "interval":
        if interval is None:
            raise ConfigError("interval_minutes is required with schedule: interval; give a number of minutes from 1 to 1440.")
        interval = _int_range("interval_minutes", interval, 1, 1440)
    elif interval is not None:
        interval = _int_range("interval_minutes", interval, 1, 1440)
    # A stored definition (declared by an earlier version) is not refused for a pattern the hazard check would refuse
    # today: its runs still match under the time bound of folders.excluded_names.
    exclude = _exclude(data.get("exclude"), hazards=declared and folders == "all_except")
    password = data.get("remote_password")
    if password is None or password == "":
        raise ConfigError("remote_password is required; give the remote account's password.")
    local_user = _required("local_user", data.get("local_user"))
    remote_user = _required("remote_user", data.get("remote_user"))
    return Task(
        name=name,
        target=_required("target", data.get("target", "default")),
        local_user=local_user,
        remote_user=remote_user,
        remote_password=str(password),
        remote_host=check_host("remote_host", data.get("remote_host")),
        remote_security=security,
        remote_port=port,
        validate_certs=_bool("validate_certs", data.get("validate_certs", True)),
        ca_file=_text("ca_file", data.get("ca_file"), False),
        folders=folders,
        exclude=exclude,
        delete_remote=delete_remote,
        delete_remote_days=days,
        schedule=schedule,
        interval_minutes=interval,
        sieve=_bool("sieve", data.get("sieve", True)),
        special_use_mapping=_bool("special_use_mapping", data.get("special_use_mapping", True)),
        engine=_choice("engine", data.get("engine", "builtin"), ENGINE_CHOICES),
        delivery=_choice("delivery", data.get("delivery", "imap"), DELIVERY_CHOICES),
        enabled=_bool("enabled", data.get("enabled", True)),
    )


def state_key(task: Task, target: Target) -> str:
    """The key of an inline migration's state: remote host, port, user, target and local user.

    Repeating the same inline migration finds the same state, so it is incremental.
    """
    ident = "\0".join((task.remote_host.lower(), str(task.remote_port), task.remote_user, target.name, task.local_user))
    return "inline-" + hashlib.sha256(ident.encode("utf-8")).hexdigest()[:32]
