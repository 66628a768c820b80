#!/usr/bin/env bash
# Install the Debian packages that mailstack's contract tests (tests/contract) run for real:
#   postfix          postconf, postmap, the Postfix daemons (main.cf checks, transport maps, verify fixture)
#   dovecot-core     doveadm pw (account hashes), the Dovecot daemon (verify fixture)
#   dovecot-imapd    IMAP for the verify fixture
#   dovecot-lmtpd    LMTP delivery from Postfix to Dovecot in the verify fixture
#   wireguard-tools  wg, wg-quick (parse and apply generated WireGuard configs)
#   wireguard-go     userspace WireGuard device (the CI kernel has no WireGuard module)
#   php-cli          php -l on generated Roundcube config files; runs Roundcube's IMAP library
#   php-mbstring     Roundcube's library needs it (the webmail client-address plugin's test)
#   busybox          the shell and applets of the Caddy and restic images (Alpine), to run the edge's
#                    Caddyfile writer and the backup job's script as they run there
#   iproute2         ip netns / ip link for the WireGuard namespaces
#   rspamd           rspamd, rspamc, rspamadm: signs with the generated DKIM files (the DKIM signer's tests)
#   restic           restic 0.14 (Debian 12): the backup job's commands, backup/restore/forget for real
#   php-sqlite3      PDO SQLite for the webmail-export sidecar's VACUUM INTO (Roundcube's database copy)
#
# Also unpacked, never installed: Debian's roundcube-core (Roundcube's own PHP library, 1.6.x) into
# /var/lib/mailstack-tests/roundcube-core, for the contract test of mailstack's Roundcube plugin. Installing
# it would pull in a web server and a database setup; the test needs only its PHP files.
#
# Idempotent: only packages that are missing are installed; when all are present nothing runs (no apt-get
# update either). Run as root on Debian 12 (the docker-mailserver 15.1.0 base), non-interactively.
# Installing Postfix, Dovecot and Rspamd must not turn this machine into a mail server: Postfix is preseeded to
# "No configuration" (no system main.cf), a temporary /usr/sbin/policy-rc.d refuses every service start
# during the install, and on a systemd host the newly installed postfix/dovecot/rspamd units are disabled so
# they do not start at the next boot either. The tests start their own instances on loopback ports.
#
# Without root or apt-get this prints what to install and exits 0: contract tests then skip locally,
# while CI (MAILSTACK_REQUIRE_CONTRACT=1) fails them.
set -euo pipefail

PACKAGES=(
    postfix
    dovecot-core
    dovecot-imapd
    dovecot-lmtpd
    wireguard-tools
    wireguard-go
    php-cli
    php-mbstring
    busybox
    iproute2
    rspamd
    restic
    php-sqlite3
)
ROUNDCUBE_DIR=/var/lib/mailstack-tests/roundcube-core

POLICY_RC=/usr/sbin/policy-rc.d

log() { printf 'install-debian-deps: %s\n' "$*"; }

is_installed() {
    # dpkg-query prints "install ok installed" only for a fully configured package.
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    log "no apt-get/dpkg here (not a Debian-like system): nothing installed."
    log "install the equivalents of these Debian packages by hand: ${PACKAGES[*]}"
    log "until then the contract tests are skipped (and fail in CI, where MAILSTACK_REQUIRE_CONTRACT=1)."
    exit 0
fi

MISSING=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || MISSING+=("$pkg")
done

# Wait for another apt/dpkg run (unattended upgrades, a parallel install) instead of failing at once.
APT_LOCK=(-o DPkg::Lock::Timeout=600)

unpack_roundcube() {
    if [[ -f "$ROUNDCUBE_DIR/.mailstack-unpacked" ]]; then
        log "roundcube-core library present: $ROUNDCUBE_DIR ($(cat "$ROUNDCUBE_DIR/.mailstack-unpacked"))"
        return 0
    fi
    local work deb
    work="$(mktemp -d)"
    chmod 0755 "$work"
    if ! (cd "$work" && apt-get "${APT_LOCK[@]}" download -qq roundcube-core 2>/dev/null); then
        apt-get "${APT_LOCK[@]}" update -qq
        (cd "$work" && apt-get "${APT_LOCK[@]}" download -qq roundcube-core)
    fi
    deb="$(ls "$work"/roundcube-core_*.deb)"
    rm -rf "$ROUNDCUBE_DIR.tmp"
    mkdir -p "$ROUNDCUBE_DIR.tmp"
    dpkg-deb -x "$deb" "$ROUNDCUBE_DIR.tmp"
    dpkg-deb -f "$deb" Version >"$ROUNDCUBE_DIR.tmp/.mailstack-unpacked"
    rm -rf "$ROUNDCUBE_DIR"
    mv "$ROUNDCUBE_DIR.tmp" "$ROUNDCUBE_DIR"
    rm -rf "$work"
    log "unpacked roundcube-core $(cat "$ROUNDCUBE_DIR/.mailstack-unpacked") into $ROUNDCUBE_DIR"
}

if ((${#MISSING[@]} == 0)); then
    log "all present: ${PACKAGES[*]}"
    if [[ "$(id -u)" -eq 0 ]]; then
        unpack_roundcube
    fi
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    log "not root: cannot install the missing packages: ${MISSING[*]}"
    log "run as root:  sudo tools/install-debian-deps.sh   (or: sudo apt-get install ${MISSING[*]})"
    log "until then the contract tests are skipped (and fail in CI, where MAILSTACK_REQUIRE_CONTRACT=1)."
    exit 0
fi

START=$(date +%s)
log "installing: ${MISSING[*]}"

# Refuse service starts during the install. Keep an existing policy-rc.d (e.g. the one Docker's Debian
# images ship) and put it back afterwards, whatever happens.
POLICY_BACKUP=""
if [[ -e "$POLICY_RC" ]]; then
    POLICY_BACKUP="$(mktemp "${POLICY_RC}.mailstack-backup.XXXXXX")"
    cp -p "$POLICY_RC" "$POLICY_BACKUP"
fi
restore_policy() {
    if [[ -n "$POLICY_BACKUP" ]]; then
        mv -f "$POLICY_BACKUP" "$POLICY_RC"
    else
        rm -f "$POLICY_RC"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\n# temporary, written by mailstack tools/install-debian-deps.sh\nexit 101\n' >"$POLICY_RC"
chmod 0755 "$POLICY_RC"

export DEBIAN_FRONTEND=noninteractive
# "No configuration": postfix's postinst writes no main.cf and configures no system MTA.
printf '%s\n' \
    'postfix postfix/main_mailer_type select No configuration' \
    'postfix postfix/mailname string localhost' |
    debconf-set-selections

apt-get "${APT_LOCK[@]}" update -qq
apt-get "${APT_LOCK[@]}" install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${MISSING[@]}"

# On a systemd host, units of packages we just installed were enabled by their postinst; the tests start
# their own instances, so keep these from starting at boot. Packages that were already installed are left
# as their owner configured them.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    for unit in postfix dovecot rspamd; do
        for pkg in "${MISSING[@]}"; do
            if [[ "$pkg" == "$unit" || "$pkg" == "${unit}-core" ]]; then
                systemctl disable --quiet "${unit}.service" 2>/dev/null || true
                log "disabled ${unit}.service at boot (re-enable with: systemctl enable ${unit})"
            fi
        done
    done
fi

STILL_MISSING=()
for pkg in "${MISSING[@]}"; do
    is_installed "$pkg" || STILL_MISSING+=("$pkg")
done
if ((${#STILL_MISSING[@]} > 0)); then
    log "ERROR: still not installed after apt-get: ${STILL_MISSING[*]}"
    exit 1
fi

log "installed ${#MISSING[@]} package(s) in $(($(date +%s) - START)) s: ${MISSING[*]}"
unpack_roundcube
