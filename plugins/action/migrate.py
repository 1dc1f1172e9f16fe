# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of mailops.imap.migrate: validate on the controller, then run the module on the host."""

from __future__ import annotations

import typing as t

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

from ansible_collections.mailops.imap.plugins.module_utils._argspec import migrate_argument_spec, parse_migrate
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError

MODULE = "mailops.imap.migrate"


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def validate_migrate_args(args: t.Mapping[str, t.Any]) -> str | None:
    """Check the task arguments as the module will, without contacting any host.

    Returns ``None`` when they are valid, otherwise one message naming every problem found by the
    argument spec (types, choices, required and unknown options), or else the first semantic problem
    (ports, hosts, exclude regexes, option combinations). Secrets never appear in it.
    """
    validator = ArgumentSpecValidator(migrate_argument_spec())
    validation = validator.validate(dict(args))
    no_log_values = validation._no_log_values
    if validation.error_messages:
        messages = []
        for error in validation.errors:
            message = _sentence(str(error.msg))
            if isinstance(error, UnsupportedError):
                message = f"Unsupported parameters for ({MODULE}) module: {message}"
            messages.append(message)
        return remove_values(" ".join(messages), no_log_values)
    try:
        parse_migrate(validation.validated_parameters)
    except ConfigError as exc:
        return remove_values(_sentence(str(exc)), no_log_values)
    return None


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        del tmp  # no longer has any effect

        problem = validate_migrate_args(self._task.args)
        if problem is not None:
            result.update(failed=True, changed=False, msg=problem)
            return result

        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        module_result = self._execute_module(
            module_name=MODULE,
            module_args=dict(self._task.args),
            task_vars=task_vars,
            wrap_async=wrap_async,
        )
        result = merge_hash(result, module_result)
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
