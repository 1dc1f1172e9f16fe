# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delivery through the local server's LMTP (``delivery: lmtp``): the full delivery pipeline applies
(global sieve_before/sieve_after scripts, the user's Sieve script, vacation replies, quota)."""

from __future__ import annotations

import email.utils
import smtplib
import socket
import typing as t

from . import errors
from .identity import header_fields

if t.TYPE_CHECKING:  # pragma: no cover
    from .config import Target


def envelope_sender(header: bytes) -> str:
    """The envelope sender: Return-Path, else the From address, else the null sender."""
    fields = header_fields(header)
    for name in ("return-path", "from"):
        value = fields.get(name)
        if value:
            address = email.utils.parseaddr(value)[1]
            if address and "@" in address:
                return address
            if name == "return-path" and value.strip() == "<>":
                return ""
    return ""


class LmtpDelivery:
    """One LMTP session to the local server, delivering messages to one recipient."""

    def __init__(self, target: Target, recipient: str, timeout: float = 120.0) -> None:
        self.target = target
        self.recipient = recipient
        self.timeout = timeout
        self.client: smtplib.LMTP | None = None

    def _where(self) -> str:
        host = self.target.lmtp_host
        return f"the local LMTP server {host}" if host.startswith("/") else f"the local LMTP server {host}:{self.target.lmtp_port}"

    def __enter__(self) -> LmtpDelivery:
        host = self.target.lmtp_host
        try:
            if host.startswith("/"):
                self.client = smtplib.LMTP(host, timeout=self.timeout)
            else:
                self.client = smtplib.LMTP(host, self.target.lmtp_port, timeout=self.timeout)
            self.client.ehlo_or_helo_if_needed()
        except (OSError, smtplib.SMTPException) as exc:
            raise errors.SyncError(
                errors.CONNECT_FAILED,
                f"Cannot connect to {self._where()} ({exc}); check lmtp_host and lmtp_port of the target, "
                "and that Dovecot's lmtp service listens there.",
                "local",
            ) from None
        return self

    def __exit__(self, *_exc: object) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()

    def deliver(self, message: bytes) -> str | None:
        """Deliver one message; None when delivered, else the server's refusal (the session stays usable)."""
        if self.client is None:
            raise RuntimeError("LMTP session not open")
        end = message.find(b"\r\n\r\n")
        sender = envelope_sender(message[:end] if end >= 0 else message[:65536])
        options = ["BODY=8BITMIME"] if self.client.has_extn("8bitmime") else []
        try:
            refused = self.client.sendmail(sender, [self.recipient], message, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients.get(self.recipient, (0, b""))
            self.client.rset()
            return f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}"
        except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
            self.client.rset()
            return f"{exc.smtp_code} {exc.smtp_error.decode('utf-8', 'replace') if isinstance(exc.smtp_error, bytes) else exc.smtp_error}"
        except (smtplib.SMTPServerDisconnected, socket.timeout, OSError) as exc:
            raise errors.ConnectionLost(f"The connection to {self._where()} was lost while delivering ({exc}).", "local") from None
        if refused:
            code, text = refused.get(self.recipient, (0, b""))
            return f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}"
        return None
