# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's refusal of a Python older than it supports (the run on a real Python 3.8: test_managed_host.py)."""

from __future__ import annotations

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import cli, pyversion


@pytest.mark.parametrize("version", [(3, 9, 0), (3, 11, 2), (3, 13, 0), (3, 14, 0)])
def test_supported_pythons_pass(version):
    assert pyversion.unsupported_python(version, "/usr/bin/python3") is None


def test_an_older_python_is_named_with_the_fix():
    message = pyversion.unsupported_python((3, 8, 18, "final", 0), "/opt/py38/bin/python")
    assert message is not None
    assert "Python 3.8.18" in message and "/opt/py38/bin/python" in message, message
    assert "Python 3.9 or later" in message and "imapsync_python" in message, message
    assert "\n" not in message


def test_imapsyncctl_refuses_an_older_python_before_anything_else(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(pyversion.sys, "version_info", (3, 8, 18, "final", 0))
    code = cli.main(["--config-dir", str(tmp_path / "nothing"), "--state-dir", str(tmp_path / "state"), "run", "t1"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED
    assert "Python 3.8.18" in err and "3.9 or later" in err, err
    assert not (tmp_path / "state").exists(), "imapsyncctl did something on an unsupported Python"
