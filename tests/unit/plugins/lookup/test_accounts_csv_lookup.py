# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lookup mailops.imap.accounts_csv: where it finds the file, vault decryption in memory, its errors, and
values that are never templated."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible.errors import AnsibleLookupError
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret
from ansible.template import Templar, is_trusted_as_template

import yaml

from ansible import constants as C

from ansible_collections.mailops.imap.plugins.lookup import accounts_csv

VAULT = [("default", VaultSecret(b"unit-vault-secret"))]
ROWS = "local_user,remote_user,remote_password\r\nalice,alice@x,\" {{ lookup('env', 'HOME') }} \"\r\n\r\nbob,bob@x,pw2\r\n"


def lookup(play_dir: Path, *terms: str, **options):
    loader = DataLoader()
    loader.set_basedir(str(play_dir))
    loader.set_vault_secrets(VAULT)
    plugin = accounts_csv.LookupModule(loader=loader, templar=Templar(loader=loader))
    plugin._load_name = NAME
    return plugin.run(list(terms), variables={}, **options)


NAME = "mailops.imap.accounts_csv"


@pytest.fixture(scope="module", autouse=True)
def options():
    """The options of the lookup, from its documentation (as Ansible's plugin loader registers them)."""
    C.config.initialize_plugin_configuration_definitions("lookup", NAME, yaml.safe_load(accounts_csv.DOCUMENTATION)["options"])


@pytest.fixture
def play_dir(tmp_path, monkeypatch):
    """A playbook directory with files/, and an unrelated current directory."""
    (tmp_path / "play" / "files").mkdir(parents=True)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path / "play"


def test_accounts_and_labels_of_the_file_found(play_dir):
    path = play_dir / "files" / "users.csv"
    path.write_text(ROWS, encoding="utf-8")
    (play_dir / "users.csv").write_text("local_user\nnot this one\n", encoding="utf-8")
    (result,) = lookup(play_dir, "users.csv")
    assert result == {
        "path": str(path),
        "accounts": [{"local_user": "alice", "remote_user": "alice@x", "remote_password": " {{ lookup('env', 'HOME') }} "},
                     {"local_user": "bob", "remote_user": "bob@x", "remote_password": "pw2"}],
        "labels": [f"accounts_file {path} line 2", f"accounts_file {path} line 4"],
    }
    assert not is_trusted_as_template(result["accounts"][0]["remote_password"]), "a password is never templated"


def test_search_order_playbook_dir_then_current_dir_absolute_as_given(play_dir, tmp_path):
    (play_dir / "in-play.csv").write_text("local_user\na\n", encoding="utf-8")
    (tmp_path / "cwd" / "sub").mkdir()
    (tmp_path / "cwd" / "sub" / "in-cwd.csv").write_text("local_user\nb\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("local_user\nc\n", encoding="utf-8")
    first, second, third = lookup(play_dir, "in-play.csv", "sub/in-cwd.csv", str(elsewhere))
    assert first["path"] == str(play_dir / "in-play.csv") and first["accounts"] == [{"local_user": "a"}]
    assert second["path"] == str(tmp_path / "cwd" / "sub" / "in-cwd.csv") and second["accounts"] == [{"local_user": "b"}]
    assert third["labels"] == [f"accounts_file {elsewhere} line 2"]
    assert lookup(play_dir, "sub/in-cwd.csv", parse=False) == [{"path": str(tmp_path / "cwd" / "sub" / "in-cwd.csv")}]


def test_vault_encrypted_file_decrypted_in_memory(play_dir, tmp_path, monkeypatch):
    (play_dir / "files" / "users.csv").write_bytes(VaultLib(VAULT).encrypt(ROWS.encode("utf-8")))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    (result,) = lookup(play_dir, "users.csv")
    assert [a["local_user"] for a in result["accounts"]] == ["alice", "bob"]
    assert lookup(play_dir, "users.csv", parse=False) == [{"path": str(play_dir / "files" / "users.csv")}]
    assert list((tmp_path / "tmp").iterdir()) == [], "no decrypted copy was written"


def refusal(play_dir: Path, term: str, **options) -> str:
    with pytest.raises(AnsibleLookupError) as caught:
        lookup(play_dir, term, **options)
    return str(caught.value)


def test_errors_are_one_sentence_without_a_cell(play_dir):
    assert refusal(play_dir, "nope.csv") == (
        "accounts_file: nope.csv was not found on the controller; give an absolute path, or a path relative to the current "
        "directory, or to the playbook's directory (or its files/ directory).")
    assert refusal(play_dir, "nope.csv", parse=False).startswith("accounts_file: nope.csv was not found")
    (play_dir / "locked.csv").write_bytes(VaultLib([("default", VaultSecret(b"other"))]).encrypt(b"local_user\nsecret-cell\n"))
    message = refusal(play_dir, "locked.csv", parse=False)
    assert message.startswith("accounts_file: locked.csv cannot be read (") and message.endswith("check the file and its vault password.")
    (play_dir / "bad.csv").write_text("local_user,passwd\nalice,secret-cell\n", encoding="utf-8")
    message = refusal(play_dir, "bad.csv")
    assert message.startswith(f"accounts_file {play_dir / 'bad.csv'} line 1: unknown column(s) 'passwd'; ") and "secret-cell" not in message
    assert lookup(play_dir, "bad.csv", parse=False) == [{"path": str(play_dir / "bad.csv")}], "parse=false does not read the rows"
    (play_dir / "latin.csv").write_bytes(b"local_user\nsecret-cell\n\xe4\n")
    assert refusal(play_dir, "latin.csv") == (f"accounts_file {play_dir / 'latin.csv'} line 3, column 1: byte 0xE4 is not UTF-8 "
                                              "text; save the file as UTF-8 (in a spreadsheet: CSV UTF-8).")
    assert refusal(play_dir, "") == "accounts_file: give the path of a CSV file on the controller."


def test_errors_returned_on_request(play_dir):
    (play_dir / "bad.csv").write_text("local_user,passwd\nalice,secret-cell\n", encoding="utf-8")
    (play_dir / "good.csv").write_text("local_user\nalice\n", encoding="utf-8")
    bad, missing, good = lookup(play_dir, "bad.csv", "nope.csv", "good.csv", on_error="return")
    assert bad == {"error": refusal(play_dir, "bad.csv")}
    assert missing == {"error": refusal(play_dir, "nope.csv")}
    assert good["accounts"] == [{"local_user": "alice"}]
    assert lookup(play_dir, "nope.csv", parse=False, on_error="return") == [{"error": refusal(play_dir, "nope.csv")}]
