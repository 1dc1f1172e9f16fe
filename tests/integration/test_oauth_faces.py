"""OAuth2 on the faces of the collection (issue 12, docs/oauth2.md), against the loopback OAuth2 server and a Dovecot
whose oauth2 passdb asks it (harness/oauth.py): bulk migrate with one application credential and a CSV of users, a
sync task with a client secret stored and run, and engine: imapsync with a token file (the fake imapsync logs in with
XOAUTH2 as imapsync 2.229 does)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.mailops.imap.plugins.action import migrate as action
from ansible_collections.mailops.imap.plugins.module_utils import _accounts_csv, _argspec, _definitions, _migrate
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, runner, store as store_mod
from conftest import unique_name
from harness import fakeimapsync, mail
from harness.dovecot import DovecotServer
from harness.oauth import OAuthServer
from harness.proxy import CuttingProxy

pytest.importorskip("msal", reason="msal is in tests/requirements.txt: run make deps")


@pytest.fixture(autouse=True)
def _ca_bundle_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests prefers $REQUESTS_CA_BUNDLE over the CA file a source is given: not in these tests' way.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def _target(local_server: DovecotServer) -> dict:
    return {"host": local_server.host, "port": local_server.port, "security": "starttls", "ca_file": str(local_server.cert_path),
            "master_user": local_server.master_user, "master_password": local_server.master_password}


def _mailbox(make_oauth_account, domain: str, count: int) -> tuple[str, str]:
    """A remote mailbox USER@DOMAIN holding ``count`` messages (seeded with its password), and an empty local user."""
    account = make_oauth_account(domain)
    mail.seed(account.remote_server, account.remote_user, account.remote_password, "INBOX",
              [mail.make_message(f"m{i} of {account.remote_user}") for i in range(count)])
    return account.remote_user, account.local_user


def _remote(oauth_remote: DovecotServer) -> dict:
    return {"remote_host": oauth_remote.host, "remote_port": oauth_remote.port, "remote_security": "starttls",
            "ca_file": str(oauth_remote.cert_path)}


def _entra(oauth_server: OAuthServer, oauth_remote: DovecotServer) -> tuple[dict, object]:
    """The task fields of an Entra ID application with a client secret in a fresh tenant, and the application."""
    tenant = oauth_server.add_tenant()
    app = oauth_server.add_app(tenant)
    fields = {**_remote(oauth_remote),
              "remote_auth": "client_credentials", "remote_oauth_client_id": app.client_id,
              "remote_oauth_tenant": tenant.domain, "remote_oauth_client_secret": app.secret,
              "remote_oauth_authority": oauth_server.url, "remote_oauth_ca_file": str(oauth_server.ca_path)}
    return fields, app


def test_bulk_with_one_application_credential_and_a_csv_of_users(oauth_server, oauth_remote_server, make_oauth_account, local_server, tmp_path):
    fields, app = _entra(oauth_server, oauth_remote_server)
    users = [_mailbox(make_oauth_account, app.tenant.domain, count) for count in (3, 2)]
    csv = "local_user,remote_user\n" + "".join(f"{local},{remote}\n" for remote, local in users)
    module_args, problem = action.prepare_migrate_args(
        dict(fields, accounts_file="users.csv", parallel=2, target=_target(local_server), state_dir=str(tmp_path / "state")),
        _accounts_csv.read_accounts_csv(csv, "accounts_file users.csv"))
    assert problem is None and all(set(account) == {"local_user", "remote_user"} for account in module_args["accounts"])
    # The module's side: its argument spec, then the plan and the forked workers of migrate.
    params = ArgumentSpecValidator(_argspec.migrate_argument_spec()).validate(module_args).validated_parameters
    plan = _argspec.parse_migrate(params)
    outcomes = _migrate.run_accounts(plan.accounts, plan.target, str(tmp_path / "state"), False, plan.parallel)
    result = _migrate.aggregate(plan.accounts, outcomes, False, "now", 0.0)
    assert result["status"] == "success", result
    assert [entry["totals"]["copied"] for entry in result["accounts"]] == [3, 2]
    for remote, local in users:
        assert len(mail.messages(local_server, local, None, "INBOX", master=True)) == len(
            mail.messages(oauth_remote_server, remote, oauth_remote_server.users[remote], "INBOX"))
    text = json.dumps(result)
    assert app.secret not in text and not any(token.token in text for token in oauth_server.issued(app.client_id))
    assert len(oauth_server.issued(app.client_id)) == 2  # one token per account's run (docs/oauth2.md)


def test_a_sync_task_with_a_client_secret_is_stored_apart_and_runs(oauth_server, oauth_remote_server, make_oauth_account, local_server, tmp_path):
    fields, app = _entra(oauth_server, oauth_remote_server)
    remote, local = _mailbox(make_oauth_account, app.tenant.domain, 2)
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    target = config.parse_target(_target(local_server))
    st.write("targets", "default", target.public(), target.master_password)
    task = config.parse_task(dict(fields, name="m365", local_user=local, remote_user=remote))
    # What mailops.imap.sync_task does with a declared task (plugins/modules/sync_task.py).
    change = _definitions.plan_present(st, "tasks", "m365", task.public(), store_mod.task_secret(task))
    assert app.secret not in json.dumps(change.diff())
    change.apply(st)
    secret_path = Path(st.secret_path("tasks", "m365"))
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600 and secret_path.read_text(encoding="utf-8") == app.secret
    assert app.secret not in Path(st.definition_path("tasks", "m365")).read_text(encoding="utf-8")

    outcome = runner.run_task(st, "m365")
    assert outcome.status == "success" and outcome.totals()["copied"] == 2, outcome.as_dict()
    written = json.dumps(outcome.as_dict()) + json.dumps(st.last_result("m365"))
    written += "".join(Path(path).read_text(encoding="utf-8") for path in st.logs("m365"))
    tokens = [token.token for token in oauth_server.issued(app.client_id)]
    assert tokens and app.secret not in written and not any(token in written for token in tokens)
    assert runner.run_task(st, "m365").totals()["copied"] == 0  # incremental, with a token again


def test_engine_imapsync_logs_in_with_the_token_from_its_file(oauth_server, oauth_remote_server, make_oauth_account, local_server, tmp_path, monkeypatch):
    domain = f"{unique_name('d')}.example"
    remote, local = _mailbox(make_oauth_account, domain, 1)
    token_file = tmp_path / "token"
    token = oauth_server.mint_token(remote)
    token_file.write_text(token + "\n", encoding="ascii")
    token_file.chmod(0o600)
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    target = config.parse_target(_target(local_server))
    st.write("targets", "default", target.public(), target.master_password)
    task = config.parse_task({"name": "tok", "local_user": local, "remote_user": remote, **_remote(oauth_remote_server),
                              "engine": "imapsync", "remote_auth": "token_file", "remote_token_file": str(token_file)})
    st.write("tasks", "tok", task.public(), store_mod.task_secret(task))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "record.json"
    monkeypatch.setenv("MAILOPS_IMAP_IMAPSYNC", str(fakeimapsync.install(bin_dir)))
    monkeypatch.setenv(fakeimapsync.ENV_RECORD, str(record))
    monkeypatch.setenv(fakeimapsync.ENV_LOGIN, "1")
    monkeypatch.setenv(fakeimapsync.ENV_MODE, "leak")  # a buggy imapsync printing what it read: masked
    lines: list[str] = []
    outcome = runner.run_task(st, "tok", progress=lines.append)
    seen = fakeimapsync.read_record(record)
    assert outcome.status == "success", outcome.as_dict()
    assert seen["host1"]["ok"] and seen["host1"]["mech"] == "XOAUTH2" and seen["host1"]["user"] == remote
    assert seen["host2"]["ok"]
    argv = seen["argv"]
    assert argv[argv.index("--oauthaccesstoken1") + 1] == seen["oauthaccesstoken1"]["path"] and "--passfile1" not in argv
    assert seen["oauthaccesstoken1"]["mode"] == 0o600 and seen["oauthaccesstoken1"]["dir_mode"] == 0o700
    assert seen["oauthaccesstoken1"]["content"] == token + "\n" and not os.path.exists(seen["oauthaccesstoken1"]["path"])
    assert not any(token in arg for arg in argv) and token not in json.dumps(seen["env"])
    written = "\n".join(lines) + json.dumps(outcome.as_dict())
    written += "".join(Path(path).read_text(encoding="utf-8") for path in st.logs("tok"))
    assert "Host1: password is MASKED" in written and token not in written


def test_engine_imapsync_refuses_a_remote_without_xoauth2_before_imapsync_starts(oauth_server, oauth_remote_server,
                                                                                 make_oauth_account, local_server,
                                                                                 tmp_path, monkeypatch):
    """imapsync 2.229 logs in with a token by XOAUTH2 only: a server announcing only OAUTHBEARER is refused with a
    sentence, by validate (check_logins) and by a run, and imapsync never starts."""
    domain = f"{unique_name('d')}.example"
    remote, local = _mailbox(make_oauth_account, domain, 1)
    token_file = tmp_path / "token"
    token_file.write_text(oauth_server.mint_token(remote), encoding="ascii")
    token_file.chmod(0o600)
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    target = config.parse_target(_target(local_server))
    st.write("targets", "default", target.public(), target.master_password)
    record = tmp_path / "record.json"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("MAILOPS_IMAP_IMAPSYNC", str(fakeimapsync.install(bin_dir)))
    monkeypatch.setenv(fakeimapsync.ENV_RECORD, str(record))
    with CuttingProxy(oauth_remote_server.host, oauth_remote_server.port) as proxy:
        proxy.rewrite(b" AUTH=XOAUTH2", b"", count=20)  # from the greetings' and CAPABILITY's lists
        task = config.parse_task({"name": "bearer", "local_user": local, "remote_user": remote,
                                  "remote_host": proxy.host, "remote_port": proxy.port, "remote_security": "none",
                                  "engine": "imapsync", "remote_auth": "token_file", "remote_token_file": str(token_file)})
        st.write("tasks", "bearer", task.public(), store_mod.task_secret(task))
        (problem,) = runner.check_logins(task, target)
        outcome = runner.run_task(st, "bearer")
    assert (problem["kind"], problem["side"]) == ("auth_failed", "remote")
    assert "does not announce AUTH=XOAUTH2" in problem["detail"] and "use engine: builtin" in problem["detail"]
    assert outcome.status == "failed" and "does not announce AUTH=XOAUTH2" in json.dumps(outcome.as_dict())
    assert not record.exists(), "imapsync was started"
