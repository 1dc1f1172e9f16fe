# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``engine: imapsync``: the rendered imapsync 2.229 argument vectors and the refused options (issue 5)."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import warnings

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import config
from ansible_collections.mailops.imap.plugins.module_utils._engine import folders, imapsync_cmd
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError

REMOTE_SECRET = "r3m0te'\"\\ü pass"
MASTER_SECRET = "m4ster'\"\\é pass"
P1 = "/run/mailops-imap/alice.pass1"
P2 = "/run/mailops-imap/alice.pass2"

BASE = {
    "name": "alice",
    "local_user": "alice@example.org",
    "remote_user": "alice@old.example.org",
    "remote_password": REMOTE_SECRET,
    "remote_host": "imap.old.example.org",
    "engine": "imapsync",
}


def task(**changes):
    data = dict(BASE)
    data.update(changes)
    return config.parse_task(data)


def target(**changes):
    data = {"master_password": MASTER_SECRET}
    data.update(changes)
    return config.parse_target(data)


@contextlib.contextmanager
def quiet():
    """Silence Python's FutureWarning about [[ (a possible nested set), which a refused pattern provokes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def render(the_task, the_target=None):
    return imapsync_cmd.render(the_task, the_target or target(), P1, P2)


# The options of imapsync 2.229 as documented in its README ("This documentation refers to Imapsync
# $Revision: 2.229 $"), https://github.com/imapsync/imapsync/blob/master/README at the 2.229 release (the same
# text as `imapsync --help` and the script's POD), sections OPTIONS/credentials ... OPTIONS/behavior.
# --noexpungeaftereach is documented inside the --delete1 entry ("use --noexpungeaftereach to speed up").
DOCUMENTED_2_229 = frozenset("""
--dry
--host1 --port1 --user1 --password1 --host2 --port2 --user2 --password2 --showpasswords --passfile1 --passfile2
--nossl1 --ssl1 --nossl2 --ssl2 --notls1 --tls1 --notls2 --tls2 --debugssl --sslargs1 --sslargs2
--authmech1 --authmech2 --authuser1 --authuser2 --proxyauth1 --proxyauth2 --authmd51 --authmd52 --domain1 --domain2
--oauthaccesstoken1 --oauthaccesstoken2 --oauthdirect1 --oauthdirect2
--folder --folderrec --folderfirst --folderlast --nomixfolders --skipemptyfolders --include --exclude --automap
--f1f2 --subfolder2 --subfolder1 --subscribed --subscribe --subscribeall --prefix1 --prefix2 --sep1 --sep2 --regextrans2
--nofoldersizes --nofoldersizesatend --justfoldersizes
--tmpdir --pidfile --pidfilelocking
--nolog --logfile --logdir
--skipmess --skipcrossduplicates --debugcrossduplicates --pipemess --disarmreadreceipts --regexmess --truncmess
--synclabels --resynclabels
--regexflag --resyncflags --noresyncflags --filterbuggyflags
--delete1 --noexpungeaftereach --expunge1 --noexpunge1 --delete1emptyfolders --delete2 --delete2duplicates
--delete2folders --delete2foldersonly --delete2foldersbutnot --noexpunge2 --nouidexpunge2
--syncinternaldates --idatefromheader
--maxsize --minsize --maxage --minage --search --search1 --search2 --noabletosearch --noabletosearch1 --noabletosearch2
--maxlinelength --useheader --syncduplicates --usecache --nousecache --useuid
--syncacls --nosyncacls --addheader
--debug --debugfolders --debugcontent --debugflags --debugimap1 --debugimap2 --debugimap --debugmemory
--errorsmax --tests --testslive --testslive6
--gmail1 --gmail2 --office1 --office2 --exchange1 --exchange2 --domino1 --domino2
--timeout1 --timeout2 --keepalive1 --keepalive2 --nokeepalive1 --nokeepalive2 --maxmessagespersecond
--maxbytespersecond --maxbytesafter --maxsleep --abort --exitwhenover --version --noreleasecheck --releasecheck
--emailreport1 --emailreport2 --noemailreport1 --noemailreport2 --noid --justconnect --justlogin --justfolders --help
""".split())
# What NethServer 8 passes to its imapsync 2.229 on every run (docs/sync-engine.md "engine: imapsync"): accepted by
# 2.229's get_options_cmd, though not in the README sections above.
NS8_2_229 = frozenset(imapsync_cmd.NS8_PARITY)

# How imapsync 2.229 declares the options the renderer uses, copied from sub get_options_cmd of the script
# ($Id: imapsync,v 2.229 2022/09/14 18:08:24 gilles Exp $): "!" is negatable (--noX), "=s"/"=i" take a value,
# "%" a key=value pair. exclude=s is bound to an array (\@exclude), so it repeats.
GETOPT_2_229 = (
    "host1=s", "host2=s", "port1=i", "port2=i", "user1=s", "user2=s", "passfile1=s", "passfile2=s",
    "authuser2=s", "ssl1!", "ssl2!", "tls1!", "tls2!", "sslargs1=s%", "sslargs2=s%", "exclude=s", "automap!",
    "subscribeall|subscribe_all!", "syncinternaldates!", "resyncflags!", "addheader!", "delete|delete1!",
    "expungeaftereach!", "foldersizes!", "log!", "releasecheck!", "syncduplicates!", "authmd5!", "allowsizemismatch!",
    "skipsize!", "fastio1!", "fastio2!",
)
ARRAYS = ("exclude",)


def option_names(spec):
    """The command-line spellings that one Getopt::Long declaration accepts, and whether it takes a value."""
    names, _sep, kind = re.match(r"^([\w|]+)(=|!)?(.*)$", spec).groups()
    spellings = {"--" + n for n in names.split("|")}
    if spec.endswith("!"):
        spellings |= {"--no" + n for n in names.split("|")}
    return spellings, "=" in spec and kind[:1] in "sif"


def split_options(argv):
    """(option, value or None) pairs, reading argv as Getopt::Long does with the 2.229 declarations."""
    takes_value = {}
    for spec in GETOPT_2_229:
        spellings, value = option_names(spec)
        takes_value.update(dict.fromkeys(spellings, value))
    pairs = []
    items = iter(argv[1:])
    for item in items:
        assert item in takes_value, f"{item} is not declared by imapsync 2.229's get_options_cmd"
        pairs.append((item, next(items) if takes_value[item] else None))
    return pairs


def options(argv):
    return [name for name, _value in split_options(argv)]


def values(argv, name):
    return [value for option, value in split_options(argv) if option == name]


# --- representative vectors ----------------------------------------------------------------------------


def test_all_folders_starttls_verified_with_ca_file():
    argv = render(task(ca_file="/etc/ssl/old-ca.pem"))
    assert argv == [
        "imapsync",
        "--host1", "imap.old.example.org", "--port1", "143", "--user1", "alice@old.example.org", "--passfile1", P1,
        "--nossl1", "--tls1",
        "--sslargs1", "SSL_verify_mode=1", "--sslargs1", "SSL_verifycn_scheme=imap",
        "--sslargs1", "SSL_verifycn_name=imap.old.example.org", "--sslargs1", "SSL_ca_file=/etc/ssl/old-ca.pem",
        "--sslargs1", "SSL_hostname=imap.old.example.org",
        "--host2", "127.0.0.1", "--port2", "143", "--user2", "alice@example.org", "--authuser2", "vmail", "--passfile2", P2,
        "--nossl2", "--tls2",
        "--sslargs2", "SSL_verify_mode=1", "--sslargs2", "SSL_verifycn_scheme=imap", "--sslargs2", "SSL_verifycn_name=127.0.0.1",
        "--exclude", "^Shared(/.*)?$", "--exclude", "^Public(/.*)?$",
        "--automap", "--subscribeall", "--syncinternaldates", "--noresyncflags", "--addheader", "--syncduplicates",
        "--noauthmd5", "--allowsizemismatch", "--skipsize", "--fastio1", "--fastio2",
        "--nofoldersizes", "--nolog", "--noreleasecheck",
    ]


def test_ssl_without_certificate_validation():
    argv = render(task(remote_security="ssl", validate_certs=False), target(security="none"))
    assert argv == [
        "imapsync",
        "--host1", "imap.old.example.org", "--port1", "993", "--user1", "alice@old.example.org", "--passfile1", P1,
        "--ssl1", "--notls1", "--sslargs1", "SSL_verify_mode=0", "--sslargs1", "SSL_hostname=imap.old.example.org",
        "--host2", "127.0.0.1", "--port2", "143", "--user2", "alice@example.org", "--authuser2", "vmail", "--passfile2", P2,
        "--nossl2", "--notls2",
        "--exclude", "^Shared(/.*)?$", "--exclude", "^Public(/.*)?$",
        "--automap", "--subscribeall", "--syncinternaldates", "--noresyncflags", "--addheader", "--syncduplicates",
        "--noauthmd5", "--allowsizemismatch", "--skipsize", "--fastio1", "--fastio2",
        "--nofoldersizes", "--nolog", "--noreleasecheck",
    ]


def test_plain_text_turns_off_both_encryptions_and_passes_no_tls_parameter():
    argv = render(task(remote_security="none", remote_port=10143, ca_file="/etc/ignored.pem"))
    assert argv[1:11] == ["--host1", "imap.old.example.org", "--port1", "10143", "--user1", "alice@old.example.org",
                          "--passfile1", P1, "--nossl1", "--notls1"]
    assert "--sslargs1" not in argv
    assert not any("ignored.pem" in item for item in argv)


def test_all_except_passes_each_regex_unchanged_as_its_own_item():
    patterns = ["^Trash$", r"Archive\\2019", "Joe's mail", r"(?i)^junk(\.|/|$)", "^-dash"]
    argv = render(task(folders="all_except", exclude=patterns, special_use_mapping=False))
    assert argv[argv.index("--exclude"):argv.index("--subscribeall")] == [
        "--exclude", "^Shared(/.*)?$", "--exclude", "^Public(/.*)?$",
        "--exclude", "^Trash$", "--exclude", "Archive\\\\2019", "--exclude", "Joe's mail",
        "--exclude", "(?i)^junk(\\.|/|$)", "--exclude", "^-dash",
    ]
    assert values(argv, "--exclude")[2:] == patterns
    assert "--automap" not in argv


def test_exclude_is_ignored_unless_all_except():
    argv = render(task(folders="all", exclude=["^Trash$"]))
    assert values(argv, "--exclude") == list(imapsync_cmd.SHARED_EXCLUDES)


def test_delete_after_sync():
    argv = render(task(delete_remote="after_sync"))
    assert argv[argv.index("--fastio2") + 1:] == ["--delete1", "--noexpungeaftereach", "--nofoldersizes", "--nolog",
                                                  "--noreleasecheck"]
    assert "--delete1" not in render(task())


def test_local_side_logs_in_as_the_master_user_on_behalf_of_the_local_user():
    the_target = target(name="ns8", host="mail.example.org", port=993, security="ssl", master_user="admin",
                        master_separator="%", ca_file="/etc/ssl/local.pem")
    argv = render(task(), the_target)
    start = argv.index("--host2")
    assert argv[start:start + 10] == ["--host2", "mail.example.org", "--port2", "993", "--user2", "alice@example.org",
                                      "--authuser2", "admin", "--passfile2", P2]
    assert values(argv, "--sslargs2") == ["SSL_verify_mode=1", "SSL_verifycn_scheme=imap", "SSL_verifycn_name=mail.example.org",
                                          "SSL_ca_file=/etc/ssl/local.pem", "SSL_hostname=mail.example.org"]
    assert options(argv)[options(argv).index("--passfile2") + 1:][:2] == ["--ssl2", "--notls2"]
    # SASL PLAIN with an authorization identity: no "user%admin" login, no separator, no --authmech2
    assert values(argv, "--user2") == ["alice@example.org"]
    assert not any("%" in item for item in argv)
    assert "--authmech2" not in argv


def test_ipv6_remote_host_is_passed_bare():
    argv = render(task(remote_host="[2001:db8::25]", remote_security="ssl"))
    assert values(argv, "--host1") == ["2001:db8::25"]
    # an address is verified as such; no SNI for an address
    assert values(argv, "--sslargs1") == ["SSL_verify_mode=1", "SSL_verifycn_scheme=imap", "SSL_verifycn_name=2001:db8::25"]


def test_ipv6_target_host():
    argv = render(task(), target(host="::1"))
    assert values(argv, "--host2") == ["::1"]


def test_idn_host_is_passed_in_ascii():
    argv = render(task(remote_host="imap.bücher.example"))
    assert values(argv, "--host1") == ["imap.xn--bcher-kva.example"]
    assert "SSL_verifycn_name=imap.xn--bcher-kva.example" in values(argv, "--sslargs1")


def test_no_password_on_the_command_line():
    for the_task in (task(), task(remote_security="ssl", folders="all_except", exclude=["x"], delete_remote="after_sync")):
        argv = render(the_task)
        assert P1 in argv and P2 in argv
        for secret in (REMOTE_SECRET, MASTER_SECRET):
            assert not any(secret in item or item in secret for item in argv if len(item) > 3)
        assert not {"--password1", "--password2", "--showpasswords"} & set(argv)


def test_every_rendered_option_is_documented_for_2_229():
    tasks = [
        task(), task(ca_file="/ca.pem"), task(remote_security="ssl", validate_certs=False), task(remote_security="none"),
        task(folders="all_except", exclude=["a", "b"]), task(delete_remote="after_sync"), task(special_use_mapping=False),
    ]
    targets = [target(), target(security="ssl", ca_file="/ca.pem"), target(security="none"), target(validate_certs=False)]
    seen = set()
    for the_task in tasks:
        for the_target in targets:
            argv = render(the_task, the_target)
            assert argv[0] == "imapsync"
            names = options(argv)  # every item is a declared option or the value of the one before it
            assert set(names) <= DOCUMENTED_2_229 | NS8_2_229, sorted(set(names) - DOCUMENTED_2_229 - NS8_2_229)
            seen.update(names)
    assert {"--tls1", "--ssl1", "--notls1", "--nossl1", "--delete1", "--noexpungeaftereach", "--exclude", "--automap"} <= seen


def test_version():
    assert imapsync_cmd.IMAPSYNC_VERSION == "2.229"


def test_limitations_are_sentences():
    assert imapsync_cmd.LIMITATIONS
    for sentence in imapsync_cmd.LIMITATIONS:
        assert sentence[0].isupper() and sentence.endswith(".")


# --- refusals --------------------------------------------------------------------------------------------


def refusal(the_task, the_target=None):
    the_target = the_target or target()
    with pytest.raises(ConfigError) as exc_info:
        imapsync_cmd.check_expressible(the_task, the_target)
    message = str(exc_info.value)
    with pytest.raises(ConfigError) as again:
        imapsync_cmd.render(the_task, the_target, P1, P2)
    assert str(again.value) == message
    assert message.endswith(".")
    assert REMOTE_SECRET not in message and MASTER_SECRET not in message
    return message


def test_expressible_tasks_have_no_problem():
    for the_task in (task(), task(folders="all_except", exclude=["^Trash$", "it's", r"a\\b"]), task(delete_remote="after_sync"),
                     task(folders="all", sieve=True, delivery="lmtp")):
        assert not imapsync_cmd.unsupported(the_task, target())
        imapsync_cmd.check_expressible(the_task, target())


def test_inbox_mode_is_refused_with_its_sieve_and_lmtp_options():
    message = refusal(task(folders="inbox", delivery="lmtp"))
    problems = imapsync_cmd.unsupported(task(folders="inbox", delivery="lmtp"), target())
    assert message == " ".join(problems)
    assert problems == [
        "folders: inbox cannot be rendered for imapsync 2.229: it can select the unseen INBOX messages (--folder INBOX "
        "--search1 UNSEEN) but has no option to mark them \\Seen on the remote once copied (--setflag1 exists only in "
        "NethServer 8's patched imapsync), so every run would fetch them again; use engine: builtin for INBOX retrieval.",
        "sieve: true cannot be rendered for imapsync 2.229: upstream imapsync has no way to run the local user's Sieve "
        "filter on the messages it copies (--sievedelivery2 exists only in NethServer 8's patched imapsync); set sieve: "
        "false or use engine: builtin.",
        "delivery: lmtp cannot be rendered for imapsync 2.229: imapsync copies messages with IMAP APPEND only and has no "
        "LMTP delivery; use delivery: imap or engine: builtin.",
    ]


def test_inbox_mode_without_sieve_is_still_refused():
    message = refusal(task(folders="inbox", sieve=False))
    assert message.startswith("folders: inbox cannot be rendered for imapsync 2.229:")
    assert "sieve" not in message.split("retrieval.", 1)[1]


def test_delete_older_than_is_refused():
    message = refusal(task(delete_remote="older_than", delete_remote_days=30))
    assert message == (
        "delete_remote: older_than cannot be rendered for imapsync 2.229: --delete1 deletes every message it has copied "
        "whatever its age, and adding --minage would stop newer messages from being copied at all (--delete1older, which "
        "deletes by age, exists only in NethServer 8's patched imapsync); use delete_remote: after_sync or never, or "
        "engine: builtin."
    )


NON_ASCII = (
    "contains a non-ASCII character or '&'; imapsync 2.229 matches --exclude against the modified UTF-7 folder names the "
    "server sends (such as 'Entw&APw-rfe' for 'Entwürfe'), so it would not match the same folders; use a pattern of "
    "ASCII characters other than '&', or engine: builtin."
)


@pytest.mark.parametrize("pattern, reason", [
    ("^Entwürfe$", NON_ASCII),
    ("Budget & Plans", NON_ASCII),
    (r"^Entw\xfcrfe", NON_ASCII),
    (r"[\374]", NON_ASCII),
    (r"^\u0045ntw", "uses the Python escape \\u, which Perl regular expressions read differently; write the character "
                    "itself, or use engine: builtin."),
    ("^[[:digit:]]+$", "uses a POSIX bracket expression ([:...:], [=...=] or [. .]) inside a character class, which Perl "
                       "reads as a character class and Python as literal characters; list the characters instead."),
    ("^x{,3}$", "uses the quantifier {,n}, which Perl before 5.34 reads as literal text; write {0,n} instead."),
    ("a\0b", "contains a NUL character, which no command line can carry; remove it."),
])
def test_exclude_patterns_perl_would_read_differently_are_refused(pattern, reason):
    with quiet():  # Python warns "Possible nested set" for [[:digit:]] (and reads it as literal characters)
        the_task = task(folders="all_except", exclude=["^Trash$", pattern])
    assert refusal(the_task) == f"exclude: entry 2 {pattern!r} {reason}"


@pytest.mark.parametrize("pattern", ["^Trash$", r"\[Gmail\]", "[]a]", r"[\]\[:]", r"\\u", "^a{0,3}$", "x{2,}", r"\x41", "it's"])
def test_exclude_patterns_with_the_same_meaning_are_accepted(pattern):
    assert not imapsync_cmd.unsupported(task(folders="all_except", exclude=[pattern]), target())


def test_exclude_is_checked_only_when_rendered():
    assert not imapsync_cmd.unsupported(task(folders="all", exclude=["Entwürfe"]), target())


def test_passwords_with_a_line_break_are_refused():
    message = refusal(task(remote_password="Xq7\nZk9"), target(master_password="Wv3\rYp2"))
    assert message == (
        "remote_password contains a line break or NUL character, and imapsync 2.229 reads only the first line of its "
        "--passfile1 password file; change the password or use engine: builtin. target 'default': master_password "
        "contains a line break or NUL character, and imapsync 2.229 reads only the first line of its --passfile2 "
        "password file; change the password or use engine: builtin."
    )
    assert not any(part in message for part in ("Xq7", "Zk9", "Wv3", "Yp2"))


def test_every_problem_is_named_at_once():
    problems = imapsync_cmd.unsupported(
        task(folders="inbox", delete_remote="older_than", delete_remote_days=7, remote_password="a\nb"), target())
    assert [p.split(" ", 1)[0] for p in problems] == ["folders:", "sieve:", "delete_remote:", "remote_password"]


def test_password_file_paths_are_required():
    with pytest.raises(ValueError):
        imapsync_cmd.render(task(), target(), "", P2)


# --- what imapsync's own parser and regex engine make of it (real Perl, where installed) -----------------

PERL = shutil.which("perl")
needs_perl = pytest.mark.skipif(PERL is None, reason="perl is not installed")

# Parses argv with Getopt::Long and the 2.229 declarations (GETOPT_2_229), then prints each value in hex.
GETOPT_SCRIPT = r"""
use strict; use warnings;
use Getopt::Long qw(GetOptionsFromArray);
my ($specs, $arrays, @argv) = @ARGV;
my (%dest, @decl);
my %array = map { $_ => 1 } split /,/, $arrays;
for my $spec (split /,/, $specs) {
    my ($names) = $spec =~ /^([\w|]+)/;
    my $key = (split /\|/, $names)[0];
    if ($spec =~ /%$/) { $dest{$key} = {}; push @decl, $spec, $dest{$key}; }
    elsif ($array{$key}) { $dest{$key} = []; push @decl, $spec, $dest{$key}; }
    else { push @decl, $spec, \$dest{$key}; }
}
GetOptionsFromArray(\@argv, @decl) or die "Getopt::Long refused the command line\n";
die "extra arguments: @argv\n" if @argv;
for my $key (sort keys %dest) {
    my $v = $dest{$key};
    next unless defined $v;
    if (ref $v eq 'HASH') { print "$key %", unpack('H*', $_), '=', unpack('H*', $v->{$_}), "\n" for sort keys %$v; }
    elsif (ref $v eq 'ARRAY') { print "$key @", unpack('H*', $_), "\n" for @$v; }
    else { print "$key \$", unpack('H*', $v), "\n"; }
}
"""


def perl_getopt(argv):
    result = subprocess.run(
        [PERL, "-e", GETOPT_SCRIPT, ",".join(GETOPT_2_229), ",".join(ARRAYS), *argv[1:]],
        capture_output=True, check=True,
    )
    parsed = {}
    for line in result.stdout.decode("ascii").splitlines():
        key, kind_value = line.split(" ", 1)
        kind, value = kind_value[0], kind_value[1:]
        if kind == "%":
            name, _eq, item = value.partition("=")
            parsed.setdefault(key, {})[bytes.fromhex(name).decode()] = bytes.fromhex(item).decode()
        elif kind == "@":
            parsed.setdefault(key, []).append(bytes.fromhex(value).decode())
        else:
            parsed[key] = bytes.fromhex(value).decode()
    return parsed


@needs_perl
def test_getopt_long_reads_the_vector_as_intended():
    patterns = ["^Trash$", r"Archive\\2019", "Joe's mail", "^-dash", "--", "a b"]
    argv = render(task(folders="all_except", exclude=patterns, delete_remote="after_sync", ca_file="/etc/ssl/a=b.pem",
                       local_user="-alice"))
    parsed = perl_getopt(argv)
    assert parsed["exclude"] == [*imapsync_cmd.SHARED_EXCLUDES, *patterns]
    assert parsed["host1"] == "imap.old.example.org" and parsed["port1"] == "143"
    assert parsed["user1"] == "alice@old.example.org" and parsed["passfile1"] == P1
    assert parsed["user2"] == "-alice" and parsed["authuser2"] == "vmail" and parsed["passfile2"] == P2
    assert parsed["sslargs1"] == {"SSL_verify_mode": "1", "SSL_verifycn_scheme": "imap", "SSL_verifycn_name": "imap.old.example.org",
                                  "SSL_ca_file": "/etc/ssl/a=b.pem", "SSL_hostname": "imap.old.example.org"}
    assert (parsed["ssl1"], parsed["tls1"], parsed["ssl2"], parsed["tls2"]) == ("0", "1", "0", "1")
    assert parsed["delete"] == "1" and parsed["expungeaftereach"] == "0"
    assert (parsed["resyncflags"], parsed["log"], parsed["foldersizes"], parsed["releasecheck"]) == ("0", "0", "0", "0")
    assert (parsed["addheader"], parsed["automap"], parsed["subscribeall"], parsed["syncinternaldates"]) == ("1", "1", "1", "1")
    assert (parsed["syncduplicates"], parsed["authmd5"], parsed["allowsizemismatch"], parsed["skipsize"]) == ("1", "0", "1", "1")
    assert (parsed["fastio1"], parsed["fastio2"]) == ("1", "1")


# imapsync 2.229 selects folders with grep { /$exclude/ } over the names (source, sub single_sync). The names are
# ASCII here: whether modified UTF-7 names match is the other check (NON_ASCII above).
PERL_MATCH = r"""
my ($pattern, @names) = @ARGV;
print join('', map { ($_ =~ /$pattern/) ? 1 : 0 } @names), "\n";
"""
FOLDERS = ["INBOX", "Trash", "INBOX/Trash", "Junk", "junk", "Junk E-mail", "Sent Items", "Archive\\2019", "Archive/2019",
           "Joe's mail", "-dash", "[Gmail]/All Mail", "a b", "ab", "Entw&APw-rfe", "12", "x.y", "a]", "u", "AAA"]


@needs_perl
@pytest.mark.parametrize("pattern", [
    "^Trash$", r"Archive\\2019", "Joe's mail", r"(?i)^junk(\.|/|$)", "^-dash", r"\[Gmail\]", "[]a]", r"[\]\[:]", r"\\u",
    "^a{0,3}$", "x{2,}", r"\x41", "a b", "(?x) a b", "^(?P<n>A)(?P=n)", r"Junk\b", r"\d+$", "Sent(?= )", "a|",
])
def test_accepted_patterns_select_the_same_folders_in_perl(pattern):
    assert not imapsync_cmd.unsupported(task(folders="all_except", exclude=[pattern]), target())
    perl = subprocess.run([PERL, "-e", PERL_MATCH, pattern, *FOLDERS], capture_output=True, check=True, text=True).stdout.strip()
    python = "".join("1" if re.search(pattern, name) else "0" for name in FOLDERS)
    assert perl == python


@needs_perl
@pytest.mark.parametrize("pattern, name", [(r"^\u0041", "A"), ("^[[:digit:]]+$", "12")])
def test_refused_patterns_do_differ_in_perl(pattern, name):
    perl = subprocess.run([PERL, "-e", PERL_MATCH, pattern, name], capture_output=True, check=True, text=True).stdout.strip()
    with quiet():
        python = "1" if re.search(pattern, name) else "0"
    assert perl != python


# --- namespaces: imapsync excludes what the builtin engine would not sync (folders.is_personal) ------------

# (namespace as imap.Connection.namespace returns it, names as LIST gives them decoded, separator)
NAMESPACES = {
    "cyrus-debian": ((("INBOX.", "."), ["user.", ""]), [
        "INBOX", "INBOX.Sent", "INBOX.Projects.2024", "INBOX.B\u00e9ta", "Announcements", "Announcements.Old", "user",
        "user.bob", "user.bob.Shared", "inbox"], "."),
    "cyrus-upstream": ((("", "/"), ["Other Users/", "Shared Folders/"]), [
        "INBOX", "Sent", "Work/2024", "Other Users", "Other Users/bob", "Other Users/bob/Shared", "Shared Folders",
        "Shared Folders/Announcements", "Other", "Shared Folders2", "B\u00e9ta/x"], "/"),
    "dovecot-shared": ((("", "/"), ["shared/", "Public/"]), [
        "INBOX", "Sent", "shared", "shared/bob/INBOX", "Public/team", "Shared", "Publications"], "/"),
    "personal-prefix-inside-other": ((("INBOX.", "."), ["INBOX.shared.", "\u00dcbrig."]), [
        "INBOX", "INBOX.Sent", "INBOX.shared", "INBOX.shared.team", "INBOX.sharedx", "\u00dcbrig.x", "Other"], "."),
}


def mutf7(name):
    return imapsync_cmd._mutf7(name)  # pylint: disable=protected-access


def excluded_by(patterns, names, engine):
    encoded = [mutf7(name) for name in names]
    if engine == "python":
        return {name for name, raw in zip(names, encoded) if any(re.search(p, raw) for p in patterns)}
    found = set()
    for pattern in patterns:
        out = subprocess.run([PERL, "-e", PERL_MATCH, pattern, *encoded], capture_output=True, check=True, text=True).stdout.strip()
        found |= {name for name, bit in zip(names, out) if bit == "1"}
    return found


@pytest.mark.parametrize("engine", ["python", pytest.param("perl", marks=needs_perl)])
@pytest.mark.parametrize("layout", sorted(NAMESPACES))
def test_namespace_excludes_leave_exactly_the_users_folders(layout, engine):
    namespace, names, sep = NAMESPACES[layout]
    (personal, _sep), others = namespace
    patterns = imapsync_cmd.namespace_excludes(namespace)
    not_personal = {name for name in names if not folders.is_personal(name, personal, others, sep)}
    assert not_personal  # each layout has shared names
    assert excluded_by(patterns, names, engine) == not_personal


@pytest.mark.parametrize("engine", ["python", pytest.param("perl", marks=needs_perl)])
def test_control_characters_of_a_hostile_prefix_reach_the_command_encoded(engine):
    # Modified UTF-7 encodes them (RFC 3501, 5.1.3), as the server sends such names on the wire.
    namespace = (("", "/"), ["sh\x1b[2Jared\x00/", "x\ny/"])
    names = ["INBOX", "Sent", "sh\x1b[2Jared\x00/a", "x\ny/b", "shared/a"]
    patterns = imapsync_cmd.namespace_excludes(namespace)
    assert not any(ch < " " or ch == "\x7f" for pattern in patterns for ch in pattern)
    assert excluded_by(patterns, names, engine) == {"sh\x1b[2Jared\x00/a", "x\ny/b"}


def test_without_namespace_the_fixed_exclusions_of_nethserver_8_stay():
    assert imapsync_cmd.namespace_excludes(None) == list(imapsync_cmd.SHARED_EXCLUDES)
    assert imapsync_cmd.namespace_excludes((("", ""), None)) == list(imapsync_cmd.SHARED_EXCLUDES)
    assert imapsync_cmd.namespace_excludes((("", "/"), [])) == []  # NAMESPACE with nothing shared: nothing excluded


def test_the_rendered_command_excludes_the_remote_namespaces():
    namespace = NAMESPACES["cyrus-upstream"][0]
    argv = imapsync_cmd.render(task(folders="all_except", exclude=["^Trash$"]), target(), P1, P2, namespace)
    assert values(argv, "--exclude") == [*imapsync_cmd.namespace_excludes(namespace), "^Trash$"]
    assert not set(imapsync_cmd.SHARED_EXCLUDES) & set(values(argv, "--exclude"))


def test_modified_utf7_of_prefixes():
    assert mutf7("Entw\u00fcrfe") == "Entw&APw-rfe"
    assert mutf7("A&B") == "A&-B"
    assert mutf7("\u65e5\u672c\u8a9e") == "&ZeVnLIqe-"


def test_an_oauth_remote_gets_the_token_file_and_xoauth2_instead_of_a_password_file():
    task = config.parse_task({"local_user": "alice", "remote_user": "alice@example.org", "remote_host": "imap.example.org",
                              "remote_auth": "client_credentials", "remote_oauth_client_id": "app", "remote_oauth_tenant": "t",
                              "remote_oauth_client_secret": "s3cret", "engine": "imapsync"})
    argv = imapsync_cmd.render(task, config.Target(master_password="m"), "/run/x/oauthaccesstoken1", "/run/x/passfile2")
    assert argv[argv.index("--oauthaccesstoken1") + 1] == "/run/x/oauthaccesstoken1"
    assert argv[argv.index("--authmech1") + 1] == "XOAUTH2"
    assert "--passfile1" not in argv and "s3cret" not in argv and argv[argv.index("--passfile2") + 1] == "/run/x/passfile2"
