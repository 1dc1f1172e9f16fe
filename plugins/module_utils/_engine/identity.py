# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Message identity for runs without usable state: Message-ID, Date and size; a hash of the whole
header for messages without Message-ID. Matching counts multiplicities.

Where that cheap key is ambiguous (it occurs more than once among the remote messages considered in a folder, or
more than once among the local candidates) the messages of that key are told apart by a SHA-256 of their whole
content, fetched for those messages only: two different messages with the same Message-ID, Date and size never
stand for each other, and true twins (identical bytes) still match by multiplicity."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import typing as t

Identity = t.Tuple[str, str, int]

ID_FIELDS = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)]"
HEADER = "BODY.PEEK[HEADER]"
CONTENT = "BODY.PEEK[]"
CONTENT_BATCH_BYTES = 4 * 1024 * 1024  # message bytes per FETCH when content digests are needed
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


def content_digests(conn: t.Any, uids: t.Sequence[int], sizes: t.Mapping[int, int]) -> dict[int, bytes]:
    """SHA-256 of the whole content of each message (byte-bounded FETCHes: one batch in memory at a time)."""
    digests: dict[int, bytes] = {}
    batch: list[int] = []
    weight = 0
    for position, uid in enumerate(sorted(uids)):
        batch.append(uid)
        weight += sizes.get(uid, 0)
        if weight >= CONTENT_BATCH_BYTES or position == len(uids) - 1:
            for fetched, data in conn.fetch(batch, [CONTENT], sizes=sizes).items():
                body = data.get(b"BODY[]")
                if body is not None:
                    digests[fetched] = hashlib.sha256(body).digest()
            batch, weight = [], 0
    return digests


class IdentityPool:
    """A multiset of local messages by identity, kept in a private temporary SQLite database so that memory does
    not grow with the size of the local folder; with the identities of the remote messages considered (a first pass
    over the folder), which tell whether a key is ambiguous, and the content digests of the ambiguous ones."""

    def __init__(self) -> None:
        self.db = sqlite3.connect("", isolation_level=None)  # "": a private temporary database, on disk when large
        self.db.execute("CREATE TABLE pool (digest BLOB NOT NULL, luid INTEGER NOT NULL, size INTEGER NOT NULL, content BLOB, "
                        "PRIMARY KEY (digest, luid)) WITHOUT ROWID")
        self.db.execute("CREATE TABLE remote (ruid INTEGER PRIMARY KEY, digest BLOB NOT NULL, mid TEXT NOT NULL, date TEXT NOT NULL, "
                        "size INTEGER NOT NULL)")
        self.db.execute("CREATE INDEX remote_digest ON remote (digest)")
        self.size = 0

    @staticmethod
    def _digest(ident: Identity) -> bytes:
        return hashlib.sha256(f"{ident[0]}\0{ident[1]}\0{ident[2]}".encode("utf-8", "surrogateescape")).digest()

    def add(self, local: t.Mapping[int, Identity]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR IGNORE INTO pool VALUES (?, ?, ?, NULL)",
                            [(self._digest(i), luid, i[2]) for luid, i in local.items()])
        self.db.execute("COMMIT")
        self.size += len(local)

    def add_remote(self, remote: t.Mapping[int, Identity]) -> None:
        """Record the identities of remote messages (the first pass over a folder)."""
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO remote VALUES (?, ?, ?, ?, ?)",
                            [(ruid, self._digest(i), i[0], i[1], i[2]) for ruid, i in remote.items()])
        self.db.execute("COMMIT")

    def remote_identities(self, uids: t.Sequence[int]) -> dict[int, Identity]:
        """The recorded identities among ``uids``."""
        found: dict[int, Identity] = {}
        for part in range(0, len(uids), 500):
            chunk = list(uids[part:part + 500])
            rows = self.db.execute(f"SELECT ruid, mid, date, size FROM remote WHERE ruid IN ({','.join('?' * len(chunk))})", chunk)
            found.update((int(ruid), (mid, date, int(size))) for ruid, mid, date, size in rows)
        return found

    def remote_windows(self, window: int) -> t.Iterator[list[int]]:
        """The recorded remote UIDs in ascending order, ``window`` at a time."""
        last = 0
        while True:
            uids = [int(r[0]) for r in self.db.execute("SELECT ruid FROM remote WHERE ruid > ? ORDER BY ruid LIMIT ?", (last, window))]
            if not uids:
                return
            yield uids
            last = uids[-1]

    def ambiguous(self, ident: Identity) -> bool:
        """Whether matching ``ident`` needs content digests: a local candidate has this key, and the key occurs more
        than once among the local candidates or among the remote messages recorded."""
        digest = self._digest(ident)
        local = self.db.execute("SELECT COUNT(*) FROM (SELECT 1 FROM pool WHERE digest = ? LIMIT 2)", (digest,)).fetchone()[0]
        if local == 0:
            return False
        if local > 1:
            return True
        return self.db.execute("SELECT COUNT(*) FROM (SELECT 1 FROM remote WHERE digest = ? LIMIT 2)", (digest,)).fetchone()[0] > 1

    def unresolved(self) -> dict[int, int]:
        """Local UID -> size of the local candidates whose key is ambiguous and whose content digest is not known yet."""
        rows = self.db.execute(
            "SELECT luid, size FROM pool p WHERE content IS NULL AND ("
            "(SELECT COUNT(*) FROM (SELECT 1 FROM pool q WHERE q.digest = p.digest LIMIT 2)) > 1 OR "
            "(SELECT COUNT(*) FROM (SELECT 1 FROM remote r WHERE r.digest = p.digest LIMIT 2)) > 1)"
        )
        return {int(luid): int(size) for luid, size in rows}

    def set_contents(self, contents: t.Mapping[int, bytes]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("UPDATE pool SET content = ? WHERE luid = ?", [(digest, luid) for luid, digest in contents.items()])
        self.db.execute("COMMIT")

    def take(self, ident: Identity, content: bytes | None = None) -> int | None:
        """The lowest local UID of this identity (and, when given, this content digest) not taken yet, or None."""
        digest = self._digest(ident)
        if content is None:
            row = self.db.execute("SELECT luid FROM pool WHERE digest = ? ORDER BY luid LIMIT 1", (digest,)).fetchone()
        else:
            row = self.db.execute("SELECT luid FROM pool WHERE digest = ? AND content = ? ORDER BY luid LIMIT 1",
                                  (digest, content)).fetchone()
        if row is None:
            return None
        self.db.execute("DELETE FROM pool WHERE digest = ? AND luid = ?", (digest, row[0]))
        self.size -= 1
        return int(row[0])

    def __bool__(self) -> bool:
        return self.size > 0

    def close(self) -> None:
        self.db.close()


def match(remote: t.Mapping[int, Identity], local: t.Mapping[int, Identity],
          remote_contents: t.Mapping[int, bytes] | None = None, local_contents: t.Mapping[int, bytes] | None = None) -> dict[int, int]:
    """Pair remote UIDs with distinct local UIDs of the same identity (multiplicities count); where the key is
    ambiguous, of the same content digest too (from ``remote_contents`` / ``local_contents``; without them, by key
    alone). The engine matches a folder window by window with an :class:`IdentityPool`, to the same rule.

    Returns remote UID -> local UID for the remote messages already present locally.
    """
    pool = IdentityPool()
    try:
        pool.add(local)
        pool.add_remote(remote)
        unresolved = pool.unresolved()
        pool.set_contents({luid: digest for luid, digest in (local_contents or {}).items() if luid in unresolved})
        pairs: dict[int, int] = {}
        for ruid in sorted(remote):
            if remote_contents is not None and pool.ambiguous(remote[ruid]):
                content = remote_contents.get(ruid)
                luid = pool.take(remote[ruid], content) if content is not None else None
            else:
                luid = pool.take(remote[ruid])
            if luid is not None:
                pairs[ruid] = luid
        return pairs
    finally:
        pool.close()
