"""The naive baseline the engine is measured against, written with imapclient directly.

One connection per side, no identity matching, no state, strictly sequential: for each remote folder,
FETCH the sizes, then repeatedly FETCH a batch (BODY.PEEK[] FLAGS INTERNALDATE, batches bounded to
about 4 MB) and MULTIAPPEND it locally before fetching the next one. Folder names are translated
(separator) but special-use folders are not mapped; TLS and logins are done exactly as the engine
does them (STARTTLS verified against a CA file, AUTHENTICATE PLAIN, master user on the local side), and imaplib's
debug copy turned off as the engine turns it off (plugins/module_utils/_engine/imap.py ``Connection._connect``):
imapclient sets imaplib's debug level to 5, and imaplib then builds a text copy of every response, bodies included.
"""

from __future__ import annotations

import ssl
import typing as t

from imapclient import IMAPClient

BATCH_BYTES = 4 * 1024 * 1024
UID_CHUNK = 1000


def _connect(host: str, port: int, security: str, ca_file: str | None, timeout: float = 120.0) -> IMAPClient:
    context = ssl.create_default_context(cafile=ca_file) if security in ("starttls", "ssl") else None
    client = IMAPClient(host, port=port, ssl=security == "ssl", ssl_context=context, timeout=timeout)
    client._imap.debug = 0  # pylint: disable=protected-access  # no text copy of every response (module doc)
    if security == "starttls":
        client.starttls(context)
    client.normalise_times = False  # keep INTERNALDATE offsets, as the engine does
    return client


def _local_name(name: str, remote_sep: str, local_sep: str) -> str:
    if name.upper() == "INBOX":
        return "INBOX"
    return local_sep.join(part.replace(local_sep, "_") for part in name.split(remote_sep))


def _batches(uids: list[int], sizes: dict[int, int]) -> t.Iterator[list[int]]:
    batch: list[int] = []
    weight = 0
    for uid in uids:
        if batch and weight + sizes[uid] > BATCH_BYTES:
            yield batch
            batch, weight = [], 0
        batch.append(uid)
        weight += sizes[uid]
    if batch:
        yield batch


def run(remote: dict[str, t.Any], local: dict[str, t.Any]) -> dict[str, t.Any]:
    """Copy every selectable remote folder; returns per-folder counts {local name: [messages, bytes]}."""
    src = _connect(remote["host"], remote["port"], remote["security"], remote.get("ca_file"))
    src.plain_login(remote["user"], remote["password"])
    dst = _connect(local["host"], local["port"], local["security"], local.get("ca_file"))
    dst.plain_login(local["master_user"], local["master_password"], authorization_identity=local["user"])
    copied: dict[str, list[int]] = {}
    try:
        remote_sep = src.namespace().personal[0][1] or "/"
        local_sep = dst.namespace().personal[0][1] or "."
        existing = {name for _flags, _sep, name in dst.list_folders()}
        for flags, _sep, name in src.list_folders():
            if any(f.upper() in (b"\\NOSELECT", b"\\NONEXISTENT") for f in flags):
                continue
            target = _local_name(name, remote_sep, local_sep)
            if target not in existing and target != "INBOX":
                dst.create_folder(target)
                dst.subscribe_folder(target)
                existing.add(target)
            counts = copied.setdefault(target, [0, 0])
            src.select_folder(name, readonly=True)
            uids = sorted(src.search(["ALL"]))
            sizes: dict[int, int] = {}
            for start in range(0, len(uids), UID_CHUNK):
                for uid, data in src.fetch(uids[start:start + UID_CHUNK], ["RFC822.SIZE"]).items():
                    sizes[uid] = int(data[b"RFC822.SIZE"])
            uids = [u for u in uids if u in sizes]
            for batch in _batches(uids, sizes):
                fetched = src.fetch(batch, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
                msgs = []
                for uid in batch:
                    data = fetched.get(uid)
                    if data is None or data.get(b"BODY[]") is None:
                        continue
                    msgs.append({
                        "msg": data[b"BODY[]"],
                        "flags": [f for f in data[b"FLAGS"] if f.upper() != b"\\RECENT"],
                        "date": data[b"INTERNALDATE"],
                    })
                del fetched
                if not msgs:
                    continue
                typ, resp = dst.multiappend(target, msgs)
                if typ != "OK":
                    raise RuntimeError(f"baseline: APPEND to {target!r} failed: {resp!r}")
                counts[0] += len(msgs)
                counts[1] += sum(len(m["msg"]) for m in msgs)
                del msgs
    finally:
        for client in (src, dst):
            try:
                client.logout()
            except Exception:  # pylint: disable=broad-exception-caught
                client.shutdown()
    return {"folders": copied, "copied": sum(c[0] for c in copied.values()), "bytes": sum(c[1] for c in copied.values())}
