#!/usr/bin/env bash
# Install Cyrus IMAP for the integration tests (tests/integration/harness/cyrus.py), idempotently, as root on Debian 12.
#
# cyrus-imapd conflicts with dovecot-imapd under apt (both provide imap-server) and cyrus-common wants a mail
# transport agent, so neither is installed: their .debs are fetched with `apt-get download` and unpacked with
# `dpkg-deb -x` into $CACHE/cyrus-VERSION, and the symlink $CACHE/cyrus points at the tree the harness runs.
# Only their runtime libraries are installed with apt, plus sasl2-bin (saslpasswd2 writes each test server's
# own sasldb). Arguments: the Debian packages to install (the Makefile's CYRUS_APT_PACKAGES).
# Not root, or no apt-get: warn and exit 0 (only the Cyrus integration tests need it).
set -euo pipefail

CACHE=${MAILOPS_TEST_CACHE:-/var/cache/mailops-imap-tests}
TREE_LINK=$CACHE/cyrus
DEBS=(cyrus-imapd cyrus-common)

missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ] && [ -x "$TREE_LINK/usr/lib/cyrus/bin/master" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "WARNING: Cyrus IMAP is not installed for the integration tests (run make deps as root)" >&2
    exit 0
fi

updated=no
apt_update() {
    if [ "$updated" = no ]; then
        apt-get update -q
        updated=yes
    fi
}

if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing:${missing[*]/#/ }"
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi

if [ ! -x "$TREE_LINK/usr/lib/cyrus/bin/master" ]; then
    download=$(mktemp -d)
    trap 'rm -rf "$download"' EXIT
    # apt-get download writes into the current directory as the _apt user when it can (else it warns): let it.
    chmod 0755 "$download"
    if id _apt >/dev/null 2>&1; then chown _apt "$download"; fi
    if ! (cd "$download" && apt-get download -q "${DEBS[@]}"); then
        apt_update
        (cd "$download" && apt-get download -q "${DEBS[@]}")
    fi
    version=$(dpkg-deb -f "$download"/cyrus-imapd_*.deb Version)
    tree=$CACHE/cyrus-$version
    rm -rf "$tree.partial"
    mkdir -p "$tree.partial"
    for deb in "$download"/*.deb; do
        dpkg-deb -x "$deb" "$tree.partial"
    done
    rm -rf "$tree"
    mv "$tree.partial" "$tree"
    ln -sfn "cyrus-$version" "$TREE_LINK"
    echo "Cyrus IMAP $version unpacked in $tree"
fi
