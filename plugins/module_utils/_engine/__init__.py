# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mailops.imap sync engine: pure Python (imapclient and the standard library), no Ansible imports."""
