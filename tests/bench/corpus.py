"""The benchmark's mailbox: a deterministic, realistic remote account (folders, size mix, flags, dates).

Sizes: mostly a few KB, about one message in ten of 100-800 KB, and one of 12 MB in INBOX; with the
default scale that is 2,050 messages, about 115 MB, in 17 folders (13 of them with mail). Flags mimic
a real account (mostly \\Seen, some \\Answered, \\Flagged, keywords; \\Draft in Drafts, a few
\\Deleted in Trash); INTERNALDATEs spread over six years with several UTC offsets.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from harness.mail import make_message

BIG_MESSAGE_BYTES = 12 * 1024 * 1024

# (remote folder, messages at scale 1). Separator "/" (the harness's remote server).
FOLDERS: tuple[tuple[str, int], ...] = (
    ("INBOX", 500),
    ("Sent Items", 300),
    ("Drafts", 20),
    ("Trash", 80),
    ("Archive/2022", 250),
    ("Archive/2023", 250),
    ("Archive/2024", 200),
    ("Projects/Alpha", 120),
    ("Projects/Beta", 90),
    ("Lists/dovecot", 100),
    ("Lists/python-dev", 70),
    ("Receipts", 40),
    ("Clients/M\u00fcller & S\u00f6hne", 30),
)

_OFFSETS = [timezone(timedelta(hours=h, minutes=m)) for h, m in ((0, 0), (1, 0), (2, 0), (-5, 0), (5, 30), (-8, 0))]
_EPOCH = datetime(2019, 1, 1, tzinfo=timezone.utc)
_SPAN_S = 6 * 365 * 86400


def _size(rng: random.Random, small_only: bool) -> int:
    if not small_only and rng.random() < 0.105:
        return rng.randint(100 * 1024, 800 * 1024)
    # a few KB: 1.5-20 KB, skewed towards the low end
    return int(1500 + rng.betavariate(1.3, 5.0) * 18500)


def _flags(rng: random.Random, folder: str) -> tuple[bytes, ...]:
    flags = []
    if folder == "Drafts":
        return (b"\\Draft", b"\\Seen") if rng.random() < 0.5 else (b"\\Draft",)
    if rng.random() < 0.85 or folder.startswith(("Sent", "Archive")):
        flags.append(b"\\Seen")
    if rng.random() < 0.10:
        flags.append(b"\\Answered")
    if rng.random() < 0.05:
        flags.append(b"\\Flagged")
    if rng.random() < 0.03:
        flags.append(b"$Forwarded")
    if rng.random() < 0.02:
        flags.append(rng.choice([b"$label1", b"Work", b"$MDNSent"]))
    if folder == "Trash" and rng.random() < 0.03:
        flags.append(b"\\Deleted")
    return tuple(flags)


def messages(folder: str, count: int, *, seed: str, start: int = 0,
             small_only: bool = False) -> Iterator[tuple[bytes, tuple[bytes, ...], datetime]]:
    """``count`` seed items ``(bytes, flags, internaldate)`` for *folder*; deterministic for (seed, folder, start)."""
    rng = random.Random(f"{seed}/{folder}/{start}")
    for index in range(start, start + count):
        when = (_EPOCH + timedelta(seconds=rng.randrange(_SPAN_S))).astimezone(rng.choice(_OFFSETS)).replace(microsecond=0)
        subject = f"[{seed}] {folder} #{index}: " + rng.choice(
            ("Quarterly report", "Re: meeting notes", "Invoice", "Fwd: photos", "Build failed", "Welcome", "Ci vediamo domani",
             "R\u00e9sum\u00e9 attached", "\u00dcbersicht"))
        size = _size(rng, small_only)
        sent = when - timedelta(seconds=rng.randint(1, 600))
        message_id: bool | None = True if rng.random() > 0.01 else None  # a few messages lack a Message-ID
        try:
            body = make_message(subject, date=sent, size=size, message_id=message_id)
        except ValueError:
            body = make_message(subject, date=sent, message_id=message_id)
        yield body, _flags(rng, folder), when


def big_message(seed: str) -> tuple[bytes, tuple[bytes, ...], datetime]:
    when = datetime(2024, 6, 1, 12, 0, 0, tzinfo=_OFFSETS[2])
    body = make_message(f"[{seed}] the 12 MB attachment", date=when - timedelta(minutes=3), size=BIG_MESSAGE_BYTES)
    return body, (b"\\Seen", b"\\Flagged"), when
