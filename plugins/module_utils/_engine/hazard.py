# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Regular expressions that can backtrack for hours: the hazard check of the ``exclude`` patterns.

Pure Python, no Ansible imports (the engine runs on hosts too).
"""

from __future__ import annotations

import re
import typing as t

try:  # the parser of the re module: Python 3.11 renamed it (sre_parse still works there, with a warning)
    from re import _parser as _sre  # type: ignore[attr-defined]  # pylint: disable=no-name-in-module
except ImportError:  # Python 3.9, 3.10
    import sre_parse as _sre  # type: ignore[no-redef]  # pylint: disable=deprecated-module

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
            members: set[int] = set()
            for kind, v in av:
                for code in ([v] if kind == _sre.LITERAL else range(v[0], v[1] + 1)):
                    members |= _cases(code, fold)
            chars = members
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
