# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``engine: imapsync``: the upstream imapsync 2.229 command line equivalent to a task.

Pure Python, no Ansible imports. :func:`check_expressible` refuses, when a task is defined, every task option
that upstream imapsync 2.229 cannot express equivalently (one sentence per option, naming it, the reason and
the fix); :func:`render` returns the argument vector. The vector never contains a password: only the paths of
the password files (``--passfile1``, ``--passfile2``), which hold the password on their first line, and with an OAuth2
``remote_auth`` the path of the access token's file (``--oauthaccesstoken1``).

Sources (cited next to each rendered flag):

* README -- the imapsync 2.229 documentation ("This documentation refers to Imapsync $Revision: 2.229 $"),
  https://github.com/imapsync/imapsync/blob/master/README (the same text as ``imapsync --help`` and the
  POD of the ``imapsync`` script), sections ``OPTIONS/...``.
* FAQ.Security -- https://imapsync.lamiral.info/FAQ.d/FAQ.Security.txt
* FAQ.Folders_Selection -- https://imapsync.lamiral.info/FAQ.d/FAQ.Folders_Selection.txt
* source -- the ``imapsync`` script, $Id: imapsync,v 2.229 2022/09/14 $ (``get_options_cmd``, ``login_imap``,
  ``set_tls``, ``authenticate_imap``, ``plainauth`` and the folder selection of ``single_sync``).
* IO::Socket::SSL -- the ``new``/``start_SSL`` parameters that ``--sslargsN key=value`` passes through
  ("See all possibilities in the new() method of IO::Socket::SSL", README).
* NethServer 8 -- https://github.com/NethServer/ns8-imapsync: ``imapsync-setflag1.patch``,
  ``imapsync-delete1older.patch`` and ``imapsync-sievedelivery2.patch`` add the options that "Only INBOX",
  "older than N days" and its Sieve delivery need; upstream 2.229 has none of them (its ``get_options_cmd``
  declares no ``setflag1``, ``delete1older`` nor ``sievedelivery2``).
"""

from __future__ import annotations

import base64
import ipaddress

from . import deletion
from .config import Target, Task
from .errors import ConfigError
from .folders import Namespace

IMAPSYNC_VERSION = "2.229"

# The top-level hierarchies that NethServer 8 always excludes, because imapsync cannot skip other users' and
# shared namespaces by itself. Rendered only for a remote without NAMESPACE: otherwise the run reads the remote's
# namespaces first and excludes exactly those that are not the user's (namespace_excludes).
SHARED_EXCLUDES = ("^Shared(/.*)?$", "^Public(/.*)?$")

# What NethServer 8 passes on every run (docs/sync-engine.md "engine: imapsync"), each rendered here too:
# --noauthmd5: never CRAM-MD5, the login is LOGIN (remote) and PLAIN with an authorization identity (local);
# --allowsizemismatch: a message whose fetched size differs from its RFC822.SIZE is copied, not skipped (a lost
#   message otherwise); --skipsize: identify messages by their headers only, so such a copy (whose size on the
#   local server differs) is not copied again on the next run; --fastio1/--fastio2: Mail::IMAPClient's Fast_io
#   (non-blocking reads), a speed setting with no effect on what is copied.
NS8_PARITY = ("--noauthmd5", "--allowsizemismatch", "--skipsize", "--fastio1", "--fastio2")

# Differences that are not task options, so nothing to refuse: stated for the documentation and the role.
LIMITATIONS = (
    "Flags: the command carries --noresyncflags, so a flag changed on the local copy is never overwritten "
    "(imapsync would otherwise copy the remote flags over it), but a flag changed on the remote after the "
    "message was copied is not applied locally either.",
    "Identity: imapsync recognises a message by its Message-Id and Received headers (--skipsize: not its size) and "
    "reads the headers of every message on both sides on every run; messages of a folder that share those headers "
    "are all copied (--syncduplicates).",
    "Changed copies: with --addheader a message that has no Message-Id gets a synthetic \"Message-Id: "
    "<uid>@imapsync\" header on its local copy, so that copy is not byte-identical to the remote message (without "
    "the option imapsync would skip it, and the mail would be lost); the builtin engine copies every message unchanged.",
    "Remote deletion (after_sync): --delete1 --noexpungeaftereach flags each copied message \\Deleted and then "
    "expunges the whole remote folder, so messages already flagged \\Deleted on the remote are expunged too, "
    "whether or not they were copied.",
    "Namespaces: imapsync has no option to skip other users' and shared namespaces, so each run first logs in to "
    "the remote and reads its NAMESPACE, and the command excludes every folder that is not the user's (the "
    "builtin engine's rule); a remote without NAMESPACE gets NethServer 8's fixed exclusion of the top-level Shared "
    "and Public hierarchies instead.",
    "Special folders: --automap maps the folders imapsync knows (its documentation lists Sent, Junk, Drafts, "
    "All, Archive and Flagged), not the builtin engine's list of well-known names.",
    "Folder names: --exclude patterns are matched against the modified UTF-7 names the server sends, so a "
    "wildcard spanning a non-ASCII character may match differently from the builtin engine.",
    "Authentication: the remote login is imapsync's default LOGIN (the builtin engine prefers AUTHENTICATE "
    "PLAIN); the local login is SASL PLAIN with an authorization identity (--authuser2) and does not fall "
    "back to LOGIN as user<separator>master.",
    "TLS: with validate_certs the certificate is checked against ca_file, or else against IO::Socket::SSL's "
    "default CA store, and the host name with the 'imap' scheme. STARTTLS is requested explicitly "
    "(--tlsN), so a server that refuses it stops the run (\"Can not go to tls encryption\") instead of "
    "falling back to plain text, and security: none disables the opportunistic upgrade (--nosslN --notlsN).",
    "Results: imapsync prints a text summary; the JSON result of the builtin engine is not produced.",
    "OAuth2: imapsync logs in to the remote with SASL XOAUTH2 only (a server that offers only OAUTHBEARER refuses "
    "it), and 2.229 reads its --oauthaccesstoken1 file once: the run renews the file before the token expires, but a "
    "connection imapsync reopens after the token expired fails. Keep such runs shorter than a token's life (about an "
    "hour with Entra ID and Google), or use engine: builtin, which gets a valid token at every reconnection.",
)


def _line_break(secret: str) -> bool:
    return any(ch in secret for ch in "\r\n\0")


def _octal_escape(pattern: str, start: int) -> int | None:
    """The value of a Python octal escape whose digits begin at ``start`` (after the backslash), if any."""
    digits = ""
    if pattern[start:start + 1] == "0":
        digits = "0"
        for ch in pattern[start + 1:start + 3]:
            if ch not in "01234567":
                break
            digits += ch
    elif len(pattern) >= start + 3 and all(ch in "01234567" for ch in pattern[start:start + 3]):
        digits = pattern[start:start + 3]
    return int(digits, 8) if digits else None


def _escape_problem(pattern: str, index: int) -> str | None:
    """A reason why the escape at ``index`` (a backslash) does not mean the same to Perl, if any."""
    nxt = pattern[index + 1:index + 2]
    if nxt in ("u", "U", "N"):
        return (
            f"uses the Python escape \\{nxt}, which Perl regular expressions read differently; "
            "write the character itself, or use engine: builtin"
        )
    value = None
    if nxt == "x":
        try:
            value = int(pattern[index + 2:index + 4], 16)
        except ValueError:
            value = None
    elif nxt.isdigit():
        value = _octal_escape(pattern, index + 1)
    if value is not None and value > 0x7F:
        return "non-ascii"
    return None


def _class_end(pattern: str, start: int) -> tuple[int, str | None]:
    """Skip the character class opened at ``start``; return the index after it and a problem, if any."""
    i = start + 1
    if pattern[i:i + 1] == "^":
        i += 1
    if pattern[i:i + 1] == "]":
        i += 1  # a ']' first in a class is a literal in both Python and Perl
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            problem = _escape_problem(pattern, i)
            if problem:
                return i, problem
            i += 2
            continue
        if ch == "[" and pattern[i + 1:i + 2] in (":", "=", "."):
            return i, (
                "uses a POSIX bracket expression ([:...:], [=...=] or [. .]) inside a character class, which "
                "Perl reads as a character class and Python as literal characters; list the characters instead"
            )
        if ch == "]":
            return i + 1, None
        i += 1
    return i, None


def _pattern_problem(pattern: str) -> str | None:
    """Why imapsync's Perl ``--exclude`` would not match the same remote folders as this Python regex, if so."""
    if "\0" in pattern:
        return "contains a NUL character, which no command line can carry; remove it"
    i = 0
    problem: str | None = None
    while i < len(pattern) and problem is None:
        ch = pattern[i]
        if ch == "\\":
            problem = _escape_problem(pattern, i)
            i += 2
        elif ch == "[":
            i, problem = _class_end(pattern, i)
        elif ch == "{" and pattern[i + 1:i + 2] == ",":
            problem = "uses the quantifier {,n}, which Perl before 5.34 reads as literal text; write {0,n} instead"
        else:
            i += 1
    if problem == "non-ascii" or any(ord(ch) > 0x7F for ch in pattern) or "&" in pattern:
        # FAQ.Folders_Selection: "Imapsync uses the same encoding as IMAP, utf7imap" -- --exclude sees
        # 'Entw&APw-rfe', where the builtin engine (and this Python pattern) sees 'Entwürfe'.
        return (
            "contains a non-ASCII character or '&'; imapsync 2.229 matches --exclude against the modified UTF-7 "
            "folder names the server sends (such as 'Entw&APw-rfe' for 'Entwürfe'), so it would not match the "
            "same folders; use a pattern of ASCII characters other than '&', or engine: builtin"
        )
    return problem


def _perl_literal(text: str) -> str:
    """``text`` as a Perl (and Python) regular expression matching it literally: every character but ASCII letters,
    digits and '_' is escaped with a backslash, which both read as that character."""
    return "".join(ch if (ch.isascii() and ch.isalnum()) or ch == "_" else "\\" + ch for ch in text)


def _mutf7(text: str) -> str:
    """``text`` in modified UTF-7 (RFC 3501, 5.1.3), the form in which imapsync matches --exclude against names."""
    out, pending = [], ""

    def flush() -> None:
        nonlocal pending
        if pending:
            out.append("&" + base64.b64encode(pending.encode("utf-16-be")).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending = ""

    for ch in text:
        if " " <= ch <= "~":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending += ch
    flush()
    return "".join(out)


def namespace_excludes(namespace: Namespace | None) -> list[str]:
    """The ``--exclude`` regexes (Perl, matched against modified UTF-7 names) that leave out every remote folder that
    is not the user's, by the builtin engine's rule (folders.is_personal): INBOX is always the user's, any other name
    belongs to the namespace with the longest prefix that holds it, personal on a tie.

    Without NAMESPACE (``namespace`` None, or no other namespaces known as None): NethServer 8's SHARED_EXCLUDES.
    """
    others = namespace[1] if namespace is not None else None
    if namespace is None or others is None:
        return list(SHARED_EXCLUDES)
    personal, sep = namespace[0]
    keep_inbox = "(?!(?i:INBOX)$)"  # imapsync's regexes are case-sensitive; INBOX is not
    patterns = []
    for prefix in dict.fromkeys(others):  # once each, in the server's order
        if prefix == personal:
            continue  # a tie: personal
        keep_personal = ""
        if len(personal) > len(prefix) and personal.startswith(prefix):
            keep_personal = f"(?!{_perl_literal(_mutf7(personal))})"  # the longer personal prefix wins inside it
        if not prefix:
            patterns.append(f"^{keep_inbox}{keep_personal}")
            continue
        encoded = _mutf7(prefix)
        if sep and encoded.endswith(sep):  # the namespace's root too: "user" for "user."
            body = f"{_perl_literal(encoded[:-len(sep)])}(?:{_perl_literal(sep)}|$)"
        else:
            body = _perl_literal(encoded)
        patterns.append(f"^{keep_inbox}{keep_personal}{body}")
    return patterns


def unsupported(task: Task, target: Target) -> list[str]:
    """One sentence per task option that upstream imapsync 2.229 cannot express equivalently (none: [])."""
    problems = []
    if task.folders == "inbox":
        # README 2.229, OPTIONS/folders and OPTIONS/message selection: --folder INBOX --search1 UNSEEN selects
        # the unseen messages, but no option marks them \Seen on host1 after the copy (source: no 'setflag1' in
        # get_options_cmd; NethServer 8 adds it with imapsync-setflag1.patch).
        problems.append(
            "folders: inbox cannot be rendered for imapsync 2.229: it can select the unseen INBOX messages "
            "(--folder INBOX --search1 UNSEEN) but has no option to mark them \\Seen on the remote once copied "
            "(--setflag1 exists only in NethServer 8's patched imapsync), so every run would fetch them again; "
            "use engine: builtin for INBOX retrieval."
        )
        if task.sieve:
            problems.append(
                "sieve: true cannot be rendered for imapsync 2.229: upstream imapsync has no way to run the local "
                "user's Sieve filter on the messages it copies (--sievedelivery2 exists only in NethServer 8's "
                "patched imapsync); set sieve: false or use engine: builtin."
            )
        if task.delivery == "lmtp":
            problems.append(
                "delivery: lmtp cannot be rendered for imapsync 2.229: imapsync copies messages with IMAP APPEND "
                "only and has no LMTP delivery; use delivery: imap or engine: builtin."
            )
    if (problem := deletion.policy(task.delete_remote).imapsync_problem) is not None:  # _engine/deletion.py
        problems.append(problem)
    if task.folders == "all_except":
        for index, pattern in enumerate(task.exclude, start=1):
            problem = _pattern_problem(pattern)
            if problem:
                problems.append(f"exclude: entry {index} {pattern!r} {problem}.")
    # README 2.229, OPTIONS/credentials: "--passfile1 str : Password file for the user1. It must contain the
    # password on the first line."
    if _line_break(task.remote_password):
        problems.append(
            "remote_password contains a line break or NUL character, and imapsync 2.229 reads only the first "
            "line of its --passfile1 password file; change the password or use engine: builtin."
        )
    if _line_break(target.master_password):
        problems.append(
            f"target {target.name!r}: master_password contains a line break or NUL character, and imapsync 2.229 "
            "reads only the first line of its --passfile2 password file; change the password or use engine: builtin."
        )
    return problems


def check_expressible(task: Task, target: Target) -> None:
    """Refuse (ConfigError) a task that upstream imapsync 2.229 cannot run equivalently, naming every option."""
    problems = unsupported(task, target)
    if problems:
        raise ConfigError(" ".join(problems))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host(field: str, host: str) -> str:
    """The host as imapsync and IO::Socket::SSL need it: an address as is, a name in ASCII (IDNA)."""
    if _is_ip(host):
        return host  # bare, also for IPv6: IO::Socket::IP takes "2001:db8::1" with a separate port
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ConfigError(f"{field}: {host!r} cannot be written in ASCII (IDNA) for imapsync; use its ASCII form.") from None


def _encryption(side: str, security: str, host: str, validate_certs: bool, ca_file: str | None) -> list[str]:
    """The encryption flags of one side (side "1" is the remote, "2" the local server)."""
    # README 2.229, OPTIONS/encryption: --sslN "Use a SSL connection", --tlsN "Use a TLS connection",
    # --nosslN / --notlsN "Do not use ...". Each mode names both flags, so that nothing is left to imapsync's
    # automatic detection ("Imapsync activates ssl or tls encryption by default, if possible", SECURITY).
    if security == "none":
        # Source, login_imap: STARTTLS is attempted on its own only when --tlsN is not defined at all;
        # FAQ.Security: "If either --notls or --ssl are explicitly mentioned ... STARTTLS won't be done."
        return [f"--nossl{side}", f"--notls{side}"]
    if security == "ssl":
        args = [f"--ssl{side}", f"--notls{side}"]
    else:
        # starttls. Source, login_imap: with --tlsN, "if ( ! $imap->starttls() )" is a login failure ("Can not go
        # to tls encryption"), never a fall back to plain text; FAQ.Security: "--tls ... Fails if encryption
        # cannot be established."
        args = [f"--nossl{side}", f"--tls{side}"]
    sslargs = f"--sslargs{side}"  # README: "Pass any ssl parameter for hostN ssl or tls connection"
    if validate_certs:
        # FAQ.Security: "to set SSL_verify_mode to SSL_VERIFY_PEER on host1 ... --sslargs1 SSL_verify_mode=1";
        # imapsync's own default is SSL_VERIFY_NONE (source: $SSL_VERIFY_POLICY). Its set_tls() sets no
        # SSL_verifycn_scheme and start_SSL() cannot know the peer's name, so IO::Socket::SSL would only warn
        # about the host name: SSL_verifycn_scheme and SSL_verifycn_name make the name check mandatory.
        args += [sslargs, "SSL_verify_mode=1", sslargs, "SSL_verifycn_scheme=imap", sslargs, f"SSL_verifycn_name={host}"]
        if ca_file:
            # FAQ.Security: "--sslargs1 SSL_ca_file=/etc/ssl/certs/ca-certificates.crt".
            args += [sslargs, f"SSL_ca_file={ca_file}"]
    else:
        args += [sslargs, "SSL_verify_mode=0"]  # FAQ.Security: "--sslargs2 SSL_verify_mode=0"
    if not _is_ip(host):
        args += [sslargs, f"SSL_hostname={host}"]  # IO::Socket::SSL: SNI, which start_SSL() cannot guess either
    return args


def uses_token(task: Task) -> bool:
    """Whether the remote login is an OAuth2 access token (any ``remote_auth`` but ``password``): imapsync then gets it
    in a file through ``--oauthaccesstoken1`` instead of a password through ``--passfile1``."""
    return task.remote_auth != "password"


def render(task: Task, target: Target, passfile1: str, passfile2: str, namespace: Namespace | None = None) -> list[str]:
    """The imapsync 2.229 argument vector of ``task`` into ``target`` (refused first: see check_expressible).

    ``passfile1`` holds the remote password (or, when :func:`uses_token`, the remote access token) and ``passfile2``
    the target's master password, each on the first line of its file; the vector carries only these paths, never a
    password nor a token. Each item is one argument for
    ``execve`` (no shell): regexes, names and paths reach imapsync unchanged. ``namespace`` is the remote's
    (imap.Connection.namespace): what is not the user's is excluded (namespace_excludes).
    """
    check_expressible(task, target)
    for name, path in (("passfile1", passfile1), ("passfile2", passfile2)):
        if not path or "\0" in path:
            raise ValueError(f"{name} must be the path of a password file.")
    remote = _host("remote_host", task.remote_host)
    local = _host(f"target {target.name!r}: host", target.host)
    argv = [
        "imapsync",
        # README 2.229, OPTIONS/credentials: --host1, --port1, --user1, --passfile1 ("This option avoids showing
        # the password on the command line like --password1 does").
        "--host1", remote,
        "--port1", str(task.remote_port),
        "--user1", task.remote_user,
    ]
    if uses_token(task):
        # README 2.229, OPTIONS/credentials: --oauthaccesstoken1 takes the access token, or a file holding it on its
        # first line, and logs in with SASL XOAUTH2 as --user1 (no password then). Only the file's path is on the
        # command line; engine_imapsync.py keeps the file fresh, but 2.229 reads it once (docs/oauth2.md "engine:
        # imapsync"). --authmech1 XOAUTH2 states the mechanism: imapsync has no OAUTHBEARER.
        argv += ["--authmech1", "XOAUTH2", "--oauthaccesstoken1", passfile1]
    else:
        argv += ["--passfile1", passfile1]
    argv += _encryption("1", task.remote_security, remote, task.validate_certs, task.ca_file)
    argv += [
        # README 2.229, OPTIONS/credentials and OPTIONS/authentication: "--authuser2 str : User to auth with on
        # host2 (admin user)". Source: with an authuser the mechanism defaults to PLAIN ("Avoid using
        # --authmech1 SOMETHING with --authuser1", README) and plainauth() sends "user2 NUL authuser2 NUL
        # password": Dovecot's master-user login with an authorization identity. --passfile2 holds the master
        # password.
        "--host2", local,
        "--port2", str(target.port),
        "--user2", task.local_user,
        "--authuser2", target.master_user,
        "--passfile2", passfile2,
    ]
    argv += _encryption("2", target.security, local, target.validate_certs, target.ca_file)

    # Folders. README 2.229, OPTIONS/folders: all folders by default; "--exclude reg : Skips folders matching
    # this regular expression ... --exclude reg : or this one, etc.". Each regex is its own --exclude (imapsync
    # ORs them), so inline flags such as (?i) stay local to their pattern; source: grep { /$exclude/ } on the
    # host1 folder names, without /x ("No, do not add /x after the regex, never.").
    for pattern in namespace_excludes(namespace):
        argv += ["--exclude", pattern]
    if task.folders == "all_except":
        for pattern in task.exclude:
            argv += ["--exclude", pattern]
    if task.special_use_mapping:
        # README 2.229, OPTIONS/folders: "--automap : guesses folders mapping, for folders well known as "Sent",
        # "Junk", "Drafts", "All", "Archive", "Flagged"." (off by default, source: $sync->{automap} ... : 0).
        argv.append("--automap")
    # README 2.229, OPTIONS/folders: "--subscribeall : Subscribe to the folders transferred on the host2 even if
    # they are not subscribed on host1" (the builtin engine subscribes every folder it creates).
    argv.append("--subscribeall")

    # Messages. README 2.229, OPTIONS/dates: "--syncinternaldates : Sets the internal dates on host2 as the same
    # as host1. Turned on by default." -- stated, not left to the default.
    argv.append("--syncinternaldates")
    # README 2.229, OPTIONS/flags: "--noresyncflags : Do not resync flags for already transferred messages.
    # May be useful when a user has already started to play with its host2 account." (a local change wins)
    argv.append("--noresyncflags")
    # README 2.229, OPTIONS/miscellaneous: "--addheader : When a message has no headers to be identified,
    # --addheader adds a "Message-Id" header" -- otherwise such a message is skipped, not copied.
    argv.append("--addheader")
    # README 2.229, OPTIONS/messages selection: "--syncduplicates : Sync also duplicates. Off by default." Without it
    # the second of two messages of a folder that share their identifying headers is skipped: mail lost with exit
    # status 0 (real transcripts 02 and 04 in tests/unit/plugins/module_utils/_engine/data/imapsync-2.229/).
    argv.append("--syncduplicates")
    argv += NS8_PARITY
    argv += deletion.policy(task.delete_remote).imapsync_args  # the deletion flags: _engine/deletion.py

    # Output. README 2.229: "--nofoldersizes : Do not calculate the size of each folder at the beginning of the
    # sync" (OPTIONS/folders sizes), "--nolog : Turn off logging on file" (OPTIONS/log; the output goes to the
    # journal), "--noreleasecheck : Do not check for any new imapsync release" (OPTIONS/behavior: no HTTP
    # request from the host).
    argv += ["--nofoldersizes", "--nolog", "--noreleasecheck"]
    return argv
