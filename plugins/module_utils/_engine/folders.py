# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which remote folders to sync and where each one lands locally."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import typing as t

from .errors import ConfigError, SyncError

SPECIAL_USES = (b"\\SENT", b"\\TRASH", b"\\JUNK", b"\\DRAFTS", b"\\ARCHIVE")

# Well-known names of special folders, for servers that do not announce SPECIAL-USE (case-insensitive).
WELL_KNOWN: dict[bytes, tuple[str, ...]] = {
    b"\\SENT": ("Sent", "Sent Items", "Sent Messages", "Sent Mail", "[Gmail]/Sent Mail", "Gesendet", "Gesendete Objekte",
                "Gesendete Elemente", "Posta inviata", "Elementi inviati", "Envoyés", "Éléments envoyés", "Enviados",
                "Elementos enviados", "Verzonden items"),
    b"\\TRASH": ("Trash", "Deleted Items", "Deleted Messages", "Deleted", "Bin", "[Gmail]/Trash", "[Gmail]/Bin", "Papierkorb",
                 "Gelöschte Elemente", "Cestino", "Posta eliminata", "Elementi eliminati", "Corbeille", "Éléments supprimés",
                 "Papelera", "Elementos eliminados", "Verwijderde items"),
    b"\\JUNK": ("Junk", "Junk E-mail", "Junk Email", "Junk Mail", "Spam", "Bulk Mail", "[Gmail]/Spam", "Junk-E-Mail",
                "Posta indesiderata", "Courrier indésirable", "Correo no deseado", "Ongewenste e-mail"),
    b"\\DRAFTS": ("Drafts", "Draft", "[Gmail]/Drafts", "Entwürfe", "Bozze", "Brouillons", "Borradores", "Concepten"),
    b"\\ARCHIVE": ("Archive", "Archives", "Archiv", "Archivio", "Archivo", "Archief"),
}

# A character of the local separator inside a remote name component is replaced by this; so is a control character
# (C0, DEL, C1), which would otherwise reach the local server's commands and every log raw.
SEPARATOR_SUBSTITUTE = "_"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


# A server's namespaces (imap.Connection.namespace): the personal one as (prefix, separator), and the prefixes of
# other users' and shared namespaces, empty ones included; None when the server has no NAMESPACE.
Namespace = t.Tuple[t.Tuple[str, str], t.Optional[t.List[str]]]


def is_personal(name: str, personal_prefix: str, others: t.Sequence[str], sep: str) -> bool:
    """Whether a remote folder is the user's own: INBOX always; any other name belongs to the namespace with the longest
    prefix that holds it (or whose root it is, such as ``user`` for ``user.``), personal on a tie. A name no other
    namespace holds is personal; a name outside the personal prefix when another namespace has the empty prefix
    (Cyrus without altnamespace: shared ``""``, personal ``INBOX.``) is not (docs/sync-engine.md "Folders")."""
    if name.upper() == "INBOX":
        return True

    def holds(prefix: str) -> bool:
        return name.startswith(prefix) or bool(prefix and sep and name + sep == prefix)

    other = max((len(prefix) for prefix in others if holds(prefix)), default=-1)
    if other < 0:
        return True
    return holds(personal_prefix) and len(personal_prefix) >= other


@dataclasses.dataclass(frozen=True)
class FolderPlan:
    remote: str
    local: str
    special_use: bytes | None = None


def _relative(name: str, prefix: str) -> str:
    if prefix and name.startswith(prefix) and name.upper() != "INBOX":
        return name[len(prefix):]
    return name


def translate(name: str, remote_prefix: str, remote_sep: str, local_prefix: str, local_sep: str) -> str:
    """The local name of a remote folder: prefix swapped, separators translated, local separators and control characters
    inside names replaced."""
    relative = _relative(name, remote_prefix)
    parts = relative.split(remote_sep) if remote_sep else [relative]
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
        if len(parts) == 1:
            return "INBOX"
    parts = [_CONTROL.sub(SEPARATOR_SUBSTITUTE, p) for p in parts]
    if local_sep:
        parts = [p.replace(local_sep, SEPARATOR_SUBSTITUTE) for p in parts]
    joined = (local_sep or remote_sep or "/").join(parts)
    if parts[0] == "INBOX":
        return joined
    return local_prefix + joined


def excluded(name: str, patterns: t.Sequence[re.Pattern[str]]) -> bool:
    return any(p.search(name) for p in patterns)


# The exclude patterns of a run are matched against the remote folder names in a child process stopped after this
# long: a regex that backtracks for hours (the definition check refuses the known shapes, not every one) fails the
# run instead of holding its lock for good. A signal alarm would not do: bulk runs execute accounts in threads.
EXCLUDE_TIMEOUT_S = 30.0
_EXCLUDE_CHILD = """
import json, re, sys
job = json.load(sys.stdin)
for index, (pattern, flags) in enumerate(job["patterns"]):
    sys.stdout.write(f"pattern {index}\\n")
    sys.stdout.flush()
    regex = re.compile(pattern, flags)
    sys.stdout.write("".join(f"{n}\\n" for n, name in enumerate(job["names"]) if regex.search(name)))
sys.stdout.write("done\\n")
"""


def excluded_names(names: t.Sequence[str], patterns: t.Sequence[re.Pattern[str]]) -> set[str]:
    """The ``names`` an exclude pattern matches (searched, not anchored), within :data:`EXCLUDE_TIMEOUT_S`.

    Raises SyncError (``invalid_definition``) naming the pattern that did not finish in time.
    """
    if not patterns or not names:
        return set()
    if not sys.executable:  # an embedding without an interpreter to start: no child, the definition check stands alone
        return {name for name in names if excluded(name, patterns)}
    job = json.dumps({"patterns": [(p.pattern, p.flags) for p in patterns], "names": list(names)})
    try:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", _EXCLUDE_CHILD], input=job.encode("ascii"),
                              capture_output=True, timeout=EXCLUDE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        started = [line for line in (exc.output or b"").decode("ascii", "replace").splitlines() if line.startswith("pattern ")]
        slow = patterns[int(started[-1].split()[1])].pattern if started else patterns[0].pattern
        raise SyncError(
            ConfigError.kind, f"exclude: the pattern {slow!r} did not finish matching the remote folder names within "
            f"{EXCLUDE_TIMEOUT_S:g} s (it backtracks); simplify it (no repeated group that repeats inside, no repeated "
            "alternatives that start alike, fewer '.*') and run again.",
        ) from None
    lines = proc.stdout.decode("ascii", "replace").splitlines()
    if proc.returncode != 0 or lines[-1:] != ["done"]:
        raise SyncError(ConfigError.kind, f"exclude: the patterns could not be matched in a child process ({sys.executable} "
                        f"exited with status {proc.returncode}); check that the run may start {sys.executable}.")
    return {names[int(line)] for line in lines if line.isdigit()}


def selectable(listed: t.Sequence[tuple[t.Sequence[bytes], str, str]]) -> set[str]:
    """The names of the folders of a LIST that can be selected (neither \\Noselect nor \\NonExistent), INBOX in
    capitals whatever case the server gave it."""
    return {name.upper() if name.upper() == "INBOX" else name for flags, _sep, name in listed
            if b"\\NONEXISTENT" not in flags and b"\\NOSELECT" not in flags}


def plan(
    remote_list: t.Sequence[tuple[tuple[bytes, ...], str, str]],
    remote_ns: Namespace,
    local_list: t.Sequence[tuple[tuple[bytes, ...], str, str]],
    local_ns: Namespace,
    mode: str,
    patterns: t.Sequence[re.Pattern[str]],
    special_use_mapping: bool,
) -> list[FolderPlan]:
    """The folders to sync, INBOX first, then in remote order of names."""
    (remote_prefix, remote_ns_sep), remote_others = remote_ns
    (local_prefix, local_ns_sep), _local_others = local_ns
    remote_sep = remote_ns_sep or next((sep for _f, sep, _n in remote_list if sep), "/")
    local_sep = local_ns_sep or next((sep for _f, sep, _n in local_list if sep), "/")

    selectable = [
        (flags, name) for flags, _sep, name in remote_list
        if b"\\NOSELECT" not in flags and b"\\NONEXISTENT" not in flags
        and is_personal(name, remote_prefix, remote_others or (), remote_sep)
    ]
    if mode == "inbox":
        selectable = [(flags, name) for flags, name in selectable if name.upper() == "INBOX"]
    elif mode == "all_except":
        dropped = excluded_names([name for _flags, name in selectable], patterns)
        selectable = [(flags, name) for flags, name in selectable if name not in dropped]

    local_by_use: dict[bytes, str] = {}
    for flags, _sep, name in local_list:
        for use in SPECIAL_USES:
            if use in flags:
                local_by_use.setdefault(use, name)

    remote_use: dict[str, bytes] = {}
    if special_use_mapping:
        announced = set()
        for flags, name in selectable:
            for use in SPECIAL_USES:
                if use in flags:
                    remote_use[name] = use
                    announced.add(use)
        for use, names in WELL_KNOWN.items():
            if use in announced:
                continue
            wanted = [n.casefold() for n in names]
            for flags, name in selectable:
                rel = _relative(name, remote_prefix).replace(remote_sep, "/").casefold()
                if rel in wanted and name not in remote_use:
                    remote_use[name] = use
                    break

    plans = []
    for _flags, name in selectable:
        folder_use = remote_use.get(name)
        local = local_by_use.get(folder_use) if folder_use else None
        if local is None:
            local = translate(name, remote_prefix, remote_sep, local_prefix, local_sep)
        plans.append(FolderPlan(remote=name, local=local, special_use=folder_use))
    plans.sort(key=lambda p: (p.remote.upper() != "INBOX", p.remote))
    return plans
