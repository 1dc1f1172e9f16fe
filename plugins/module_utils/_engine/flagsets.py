# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bounds on flags a server sends, and the caches of what the engine works out from a set of flags.

A mailbox has few different sets of flags, so what the engine computes from one (the flags kept, their order, the
APPEND flag list, the state's text) is kept for the sets met most recently instead of being computed per message. A
server decides what it sends, so only small sets are kept (:func:`small`) and only so many (FLAG_SETS): together
about a MiB whatever a server sends.
"""

from __future__ import annotations

import functools
import typing as t

MAX_FLAG_BYTES = 256  # a longer flag is dropped as not valid (Dovecot's keywords: 50 bytes, mail_max_keyword_length)
FLAG_SETS = 256  # sets of flags kept per cache
SMALL_SET = 16  # flags in a set that is kept

_T = t.TypeVar("_T")


def small(flags: t.Collection[t.Any]) -> bool:
    """Whether a set of flags may be kept in a cache: at most SMALL_SET flags of at most MAX_FLAG_BYTES each."""
    return len(flags) <= SMALL_SET and all(len(flag) <= MAX_FLAG_BYTES for flag in flags)


def cached(compute: t.Callable[[t.Any], _T]) -> t.Callable[[t.Any], _T]:
    """``compute(flags)``, kept for up to FLAG_SETS small, hashable sets of flags; computed afresh for any other."""
    keep = functools.lru_cache(maxsize=FLAG_SETS)(compute)

    @functools.wraps(compute)
    def get(flags: t.Any) -> _T:
        if isinstance(flags, (tuple, frozenset)):
            try:
                if small(flags):
                    return keep(flags)
            except TypeError:  # an element without a length (imapclient reads a numeric atom as an int) or not a key
                pass
        return compute(flags)

    return get
