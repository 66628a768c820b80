#!/bin/sh
# mailstack webmail-export sidecar: runs in the pinned Roundcube image (Debian, PHP with pdo_sqlite) next
# to a domain's webmail, with Roundcube's database volume and the export volume mounted.
#
# Roundcube keeps its SQLite database in WAL mode, so a plain file copy taken while it writes can be
# torn. When the backup job drops a request file into the export volume, this loop makes a consistent
# copy with SQLite's own `VACUUM INTO` (a read transaction: Roundcube keeps working meanwhile), gives it
# the owner and mode of the live database, renames it into place and answers with a .done file.
#
#   webmail-export.sh loop     the container's command
#   webmail-export.sh health   health check: the loop is alive
#   webmail-export.sh once     one export now (used by the tests)
set -u

DB=${MAILSTACK_ROUNDCUBE_DB:-/var/roundcube/db/sqlite.db}
EXPORT=${MAILSTACK_EXPORT_DIR:-/export}
REQUESTS=$EXPORT/.requests
FILE=${MAILSTACK_EXPORT_FILE:-sqlite.db}
HEARTBEAT=${MAILSTACK_HEARTBEAT:-/tmp/mailstack-export-heartbeat}
POLL_SECONDS=${MAILSTACK_POLL_SECONDS:-2}

log() { printf '%s mailstack-webmail-export: %s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$*"; }

# shellcheck disable=SC2016
VACUUM_PHP='
$db = new PDO("sqlite:" . $argv[1], null, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_TIMEOUT => 60]);
$db->prepare("VACUUM INTO ?")->execute([$argv[2]]);
'

export_db() {
    if [ ! -s "$DB" ]; then
        # Roundcube creates its database at the first request: nothing to copy yet.
        rm -f "$EXPORT/$FILE"
        RESULT="ok: no database yet"
        return 0
    fi
    tmp="$EXPORT/.$FILE.tmp"
    rm -f "$tmp"
    if ! err=$(php -r "$VACUUM_PHP" -- "$DB" "$tmp" 2>&1); then
        rm -f "$tmp"
        RESULT="error: VACUUM INTO failed: $(printf '%s' "$err" | tr '\n' ' ' | cut -c 1-300)"
        return 1
    fi
    # Restored as Roundcube's own database: same owner and mode, for the file and its directory.
    chown --reference="$DB" "$tmp" && chmod --reference="$DB" "$tmp" &&
        chown --reference="$(dirname "$DB")" "$EXPORT" && chmod --reference="$(dirname "$DB")" "$EXPORT" &&
        mv -f "$tmp" "$EXPORT/$FILE" || {
        rm -f "$tmp"
        RESULT="error: could not install the copy in $EXPORT"
        return 1
    }
    RESULT="ok: $(wc -c <"$EXPORT/$FILE") bytes"
    return 0
}

answer() {
    request=$1
    id=${request##*/}
    id=${id%.request}
    export_db || :
    printf '%s\n' "$RESULT" >"$REQUESTS/$id.done.tmp" && mv -f "$REQUESTS/$id.done.tmp" "$REQUESTS/$id.done"
    rm -f "$request"
    log "request $id: $RESULT"
}

loop() {
    trap 'log "stopping"; exit 0' TERM INT  # PID 1 ignores SIGTERM without a trap
    mkdir -p "$REQUESTS"
    log "watching $REQUESTS for the backup job's requests (database $DB)"
    while :; do
        date -u +%s >"$HEARTBEAT"
        for request in "$REQUESTS"/*.request; do
            [ -f "$request" ] || continue
            answer "$request"
        done
        sleep "$POLL_SECONDS" &
        wait $!
    done
}

health() {
    beat=$(cat "$HEARTBEAT" 2>/dev/null) || { echo "no heartbeat yet"; return 1; }
    age=$(($(date -u +%s) - beat))
    [ "$age" -le 60 ] || { echo "the export loop last ran $age s ago"; return 1; }
    echo ok
}

case ${1:-} in
    loop) loop ;;
    health) health ;;
    once) mkdir -p "$EXPORT"; export_db; status=$?; echo "$RESULT"; exit $status ;;
    *) echo "usage: webmail-export.sh loop | health | once" >&2; exit 64 ;;
esac
