"""Integration-test harness for mailops.imap: throwaway Dovecot and Cyrus servers, mail seeding and snapshots, a cutting TCP proxy, a loopback OAuth2 server."""

from __future__ import annotations

from .cyrus import CyrusError, CyrusServer, find_cyrus
from .dovecot import DovecotError, DovecotServer, find_dovecot
from .oauth import OAuthServer
from .proxy import CuttingProxy

__all__ = ["CuttingProxy", "CyrusError", "CyrusServer", "DovecotError", "DovecotServer", "OAuthServer", "find_cyrus", "find_dovecot"]
