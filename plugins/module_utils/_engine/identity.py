# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Message identity for runs without usable state: Message-ID, Date and size; a hash of the whole
header for messages without Message-ID. Matching counts multiplicities."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import typing as t

Identity = t.Tuple[str, str, int]

ID_FIELDS = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)]"
HEADER = "BODY.PEEK[HEADER]"
_WS = re.compile(r"\s+")


def _body_item(data: t.Mapping[bytes, t.Any], prefix: bytes) -> bytes:
    for key, value in data.items():
        if key.upper().startswith(prefix):
            return value or b""
    return b""


def header_fields(raw: bytes) -> dict[str, str]:
    """Unfolded header fields (lower-case names; the first occurrence wins)."""
    fields: dict[str, str] = {}
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
    text = re.sub(r"\n[ \t]+", " ", text)
    for line in text.split("\n"):
        name, sep, value = line.partition(":")
        if sep and name and " " not in name:
            fields.setdefault(name.strip().lower(), _WS.sub(" ", value).strip())
    return fields


def message_id(raw_header: bytes) -> str | None:
    return header_fields(raw_header).get("message-id") or None


def identities(conn: t.Any, uids: t.Sequence[int]) -> dict[int, Identity]:
    """Identity of each message (two FETCHes at most; the second only for messages without Message-ID)."""
    result: dict[int, Identity] = {}
    missing: list[int] = []
    for uid, data in conn.fetch(uids, ["RFC822.SIZE", ID_FIELDS]).items():
        fields = header_fields(_body_item(data, b"BODY[HEADER"))
        size = int(data.get(b"RFC822.SIZE", 0))
        mid = fields.get("message-id")
        if mid:
            result[uid] = (mid, fields.get("date", ""), size)
        else:
            result[uid] = ("", "", size)
            missing.append(uid)
    if missing:
        for uid, data in conn.fetch(missing, [HEADER]).items():
            digest = hashlib.sha256(_body_item(data, b"BODY[HEADER]")).hexdigest()
            result[uid] = ("sha256:" + digest, "", result[uid][2])
    return result


class IdentityPool:
    """A multiset of local messages by identity, kept in a private temporary SQLite database so that memory does
    not grow with the size of the local folder."""

    def __init__(self) -> None:
        self.db = sqlite3.connect("", isolation_level=None)  # "": a private temporary database, on disk when large
        self.db.execute("CREATE TABLE pool (digest BLOB NOT NULL, luid INTEGER NOT NULL, PRIMARY KEY (digest, luid)) WITHOUT ROWID")
        self.size = 0

    @staticmethod
    def _digest(ident: Identity) -> bytes:
        return hashlib.sha256(f"{ident[0]}\0{ident[1]}\0{ident[2]}".encode("utf-8", "surrogateescape")).digest()

    def add(self, local: t.Mapping[int, Identity]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR IGNORE INTO pool VALUES (?, ?)", [(self._digest(i), luid) for luid, i in local.items()])
        self.db.execute("COMMIT")
        self.size += len(local)

    def take(self, ident: Identity) -> int | None:
        """The lowest local UID of this identity not taken yet, or None."""
        digest = self._digest(ident)
        row = self.db.execute("SELECT luid FROM pool WHERE digest = ? ORDER BY luid LIMIT 1", (digest,)).fetchone()
        if row is None:
            return None
        self.db.execute("DELETE FROM pool WHERE digest = ? AND luid = ?", (digest, row[0]))
        self.size -= 1
        return int(row[0])

    def __bool__(self) -> bool:
        return self.size > 0

    def close(self) -> None:
        self.db.close()


def match(remote: t.Mapping[int, Identity], local: t.Mapping[int, Identity]) -> dict[int, int]:
    """Pair remote UIDs with distinct local UIDs of the same identity (multiplicities count).

    Returns remote UID -> local UID for the remote messages already present locally.
    """
    pool = IdentityPool()
    try:
        pool.add(local)
        pairs: dict[int, int] = {}
        for ruid in sorted(remote):
            luid = pool.take(remote[ruid])
            if luid is not None:
                pairs[ruid] = luid
        return pairs
    finally:
        pool.close()
