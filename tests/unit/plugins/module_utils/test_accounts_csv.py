# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one reader of an accounts CSV (plugins/module_utils/_accounts_csv.py), and the checks of accounts the
playbook migrate.yml makes through the filters of plugins/filter/accounts.py."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.mailops.imap.plugins.filter import accounts as filters
from ansible_collections.mailops.imap.plugins.module_utils import _accounts_csv, _argspec
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError


def read_csv(data):
    return _accounts_csv.read_accounts_csv(data, "accounts_file users.csv")


def test_csv_rows_and_line_numbers():
    accounts, labels = read_csv(
        "Local_User, remote_user ,remote_password,remote_port,exclude\r\n"
        "alice,alice@x,\"pw, with \"\"quotes\"\" \",993,\"^Spam$,Trash\"\r\n"
        "\r\n"
        ",,,,\r\n"
        "bob,bob@x,\" spaced \",,\"^A{1,3}$\nJunk\"\r\n"
        "carol,carol@x,pw3\r\n"
    )
    assert accounts == [
        {"local_user": "alice", "remote_user": "alice@x", "remote_password": "pw, with \"quotes\" ", "remote_port": "993",
         "exclude": ["^Spam$", "Trash"]},
        {"local_user": "bob", "remote_user": "bob@x", "remote_password": " spaced ", "exclude": ["^A{1,3}$", "Junk"]},
        {"local_user": "carol", "remote_user": "carol@x", "remote_password": "pw3"},
    ]
    assert labels == ["accounts_file users.csv line 2", "accounts_file users.csv line 5", "accounts_file users.csv line 7"]


def test_csv_structure_problems():
    with pytest.raises(ConfigError, match=r"^accounts_file users.csv line 1: unknown column\(s\) 'passwd', 'target'; "):
        read_csv("local_user,passwd,target\nalice,x,y\n")
    with pytest.raises(ConfigError, match=r"line 1: the column\(s\) local_user appear more than once"):
        read_csv("local_user,local_user\na,b\n")
    with pytest.raises(ConfigError, match=r"line 3: 3 cells but the header on line 1 names 2 columns; quote cells"):
        read_csv("local_user,remote_user\na,b\nc,d,e\n")
    with pytest.raises(ConfigError, match=r"users.csv is empty"):
        read_csv("\n\n")
    with pytest.raises(ConfigError, match=r"users.csv has a header row but no account"):
        read_csv("local_user,remote_user\n")
    with pytest.raises(ConfigError, match=r"line 2: not valid CSV"):
        read_csv('local_user,remote_user\n"a"b,c\n')


def test_csv_bytes_and_text_read_alike():
    text = "\ufefflocal_user,remote_user\r\n\"multi\nline\",u\r\nc,d\r\n"
    expected = ([{"local_user": "multi\nline", "remote_user": "u"}, {"local_user": "c", "remote_user": "d"}],
                ["accounts_file users.csv line 2", "accounts_file users.csv line 4"])
    assert read_csv(text) == expected
    assert read_csv(text.encode("utf-8")) == expected


def test_csv_columns_are_the_account_fields():
    header = ",".join(_argspec.account_options())
    accounts, _labels = read_csv(f"{header}\n" + ",".join(f"v{i}" for i in range(len(_argspec.account_options()))) + "\n")
    assert list(accounts[0]) == list(_argspec.account_options())
    with pytest.raises(ConfigError, match=r"unknown column\(s\) 'target'; the header row names task fields: local_user, "):
        read_csv("local_user,target\na,b\n")


@pytest.mark.parametrize(("data", "message"), [
    (b"local_user\n\xe4lice\n",
     "accounts_file users.csv line 2, column 1: byte 0xE4 is not UTF-8 text; save the file as UTF-8 (in a spreadsheet: CSV UTF-8)."),
    (b"local_user,remote_user\r\na,b\r\n\xc3\xa4,b\xe9x\r\n", "accounts_file users.csv line 3, column 4: byte 0xE9 "),
    (b"\xef\xbb\xbflocal_user\n\xff\n", "accounts_file users.csv line 2, column 1: byte 0xFF "),
])
def test_csv_not_utf8_named_by_line_and_column(data, message):
    with pytest.raises(ConfigError) as caught:
        read_csv(data)
    assert str(caught.value).startswith(message)
    assert "lice" not in str(caught.value)


# --- the playbook's checks (filters) ----------------------------------------------------------------------------


def test_account_fields_problem():
    assert filters.account_fields_problem({}) == ""
    assert filters.account_fields_problem({"remote_host": "x", "exclude": ["a"], "remote_password": "p"}) == ""
    message = filters.account_fields_problem({"remote_hots": "x", "target": {}, "remote_host": "y"})
    assert message.startswith("migrate_defaults must be a dictionary of task fields (local_user, remote_user, remote_password, ")
    assert message.endswith("; unknown: remote_hots, target.")
    assert filters.account_fields_problem(["remote_host"], "defaults").endswith(
        "; unknown: none, but it is not a dictionary.")
    assert filters.account_fields_problem(["x"], "defaults").startswith("defaults must be")


def listed(*accounts):
    return {"accounts": list(accounts), "labels": [f"entry {i}" for i in range(1, len(accounts) + 1)]}


def test_repeated_accounts_once_the_defaults_applied():
    alice = {"local_user": "alice", "remote_user": "alice@x"}
    found = filters.repeated_accounts(listed(
        alice,
        dict(alice, remote_host="IMAP.example.org", remote_password="other"),  # the host's case does not matter
        dict(alice, remote_port="143"),                                      # the default port of starttls
        dict(alice, remote_security="ssl"),                                  # port 993: another account
        dict(alice, remote_security="ssl", remote_port=993),
        dict(alice, local_user="bob"),
    ), {"remote_host": "imap.example.org"})
    assert found == ["entry 2 repeats entry 1", "entry 3 repeats entry 1", "entry 5 repeats entry 4"]


def test_repeated_accounts_default_port_follows_the_default_security():
    alice = {"local_user": "alice", "remote_user": "alice@x", "remote_host": "h"}
    assert filters.repeated_accounts(listed(alice, dict(alice, remote_port=993)), {"remote_security": "ssl"}) == [
        "entry 2 repeats entry 1"]
    assert filters.repeated_accounts(listed(alice, dict(alice, remote_port=993)), {}) == []


def test_repeated_accounts_leaves_bad_accounts_to_the_module():
    alice = {"local_user": "alice", "remote_user": "alice@x", "remote_host": "h"}
    assert filters.repeated_accounts(listed(alice, dict(alice, remote_port="imap"), "not a dict", {"local_user": "x"}), {}) == []
    assert filters.repeated_accounts(listed(alice, alice), {"remote_port": 0}) == []
    with pytest.raises(AnsibleFilterError, match="give a dictionary of accounts and labels"):
        filters.repeated_accounts([alice, alice])


def test_repeated_accounts_of_a_csv():
    data = read_csv("local_user,remote_user,remote_host,remote_port\na,a@x,h,\nb,b@x,h,\na,a@x,H,143\n")
    assert filters.repeated_accounts({"accounts": data[0], "labels": data[1]}) == [
        "accounts_file users.csv line 4 repeats accounts_file users.csv line 2"]
