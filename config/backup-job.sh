#!/bin/sh
# mailstack backup job: runs in the pinned restic image (Alpine, busybox sh) as the container's
# main process. Generated settings come from job.conf (config/backup.py: job_settings); secrets are
# files under $SECRETS_DIR (uploaded from Pulumi secrets), never environment variables or arguments.
#
#   job.sh loop            schedule loop (the container's command): check the repository, then once a
#                          minute run every domain's backup when the UTC minute is in the schedule
#   job.sh once [DOMAIN]   the same run now (make backup), with restic's progress
#   job.sh health          health check: the loop is alive and neither the repository check nor the
#                          last run failed
#   job.sh restic ARGS     restic with the stack's repository, password and credentials
#   job.sh forget          the retention step alone (forget --prune with the stack's keep rules)
#   job.sh status          the result of the last run
#   job.sh due-selftest    reads "minute hour day month weekday" lines, prints 1 (due) or 0 per line
#
# One run, for each domain: deliver a marker message by SMTP (port 25 of the domain's server, on the
# stack network) to backup-drill@<domain>, wait until Dovecot has given it a UID in dovecot-uidlist,
# ask the webmail-export sidecar for a consistent copy of Roundcube's SQLite database (VACUUM INTO),
# then `restic backup /data/<domain>` with the fixed host and the domain's tags plus the marker's
# Message-ID and UID. After all domains: `restic forget --prune` with the retention, then `restic check`.
set -u

CONF=${MAILSTACK_JOB_CONF:-/mailstack/job.conf}
# shellcheck disable=SC1090
. "$CONF"

CR=$(printf '\r')
SMTP_TIMEOUT=${SMTP_TIMEOUT:-30}
MARKER_TIMEOUT=${MARKER_TIMEOUT:-120}
EXPORT_TIMEOUT=${EXPORT_TIMEOUT:-120}
HEARTBEAT_MAX_AGE=${HEARTBEAT_MAX_AGE:-180}

log() { printf '%s mailstack-backup: %s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$*"; }

# --- restic --------------------------------------------------------------------------------------

run_restic() {
    if [ -f "$JOB_DIR/ssh_config" ]; then
        set -- -o "sftp.command=ssh -F $JOB_DIR/ssh_config mailstack-repository -s sftp" "$@"
    fi
    set -- --repository-file "$SECRETS_DIR/repository" --password-file "$SECRETS_DIR/password" \
        --cache-dir "$CACHE_DIR" "$@"
    if [ -f "$SECRETS_DIR/aws-credentials" ]; then
        # A path, not a secret: restic's S3 backend reads the keys from this file.
        AWS_SHARED_CREDENTIALS_FILE="$SECRETS_DIR/aws-credentials" restic "$@"
    else
        restic "$@"
    fi
}

# Open the repository, or create it when there is none yet. Never creates one after any other error
# (a wrong password must not lead to a second repository).
prepare_repository() {
    out=$(run_restic cat config 2>&1 >/dev/null) && return 0
    case $out in
        *"Is there a repository at the following location?"* | *"repository does not exist"*)
            log "no repository yet: creating it"
            run_restic init >/dev/null || return 1
            log "repository created (keep its password outside this host: without it no backup can be read)"
            return 0
            ;;
    esac
    printf '%s\n' "$out" | sed 's/^/restic: /' >&2
    return 1
}

# --- schedule ------------------------------------------------------------------------------------

in_set() { case $2 in *" $1 "*) return 0 ;; esac; return 1; }

# due MINUTE HOUR DAY MONTH WEEKDAY (numbers, Sunday = 0): is this minute in the schedule?
due() {
    in_set "$1" "$SCHEDULE_MINUTES" || return 1
    in_set "$2" "$SCHEDULE_HOURS" || return 1
    in_set "$4" "$SCHEDULE_MONTHS" || return 1
    dom=1; dow=1
    in_set "$3" "$SCHEDULE_DAYS" || dom=0
    in_set "$5" "$SCHEDULE_WEEKDAYS" || dow=0
    if [ "$SCHEDULE_DAY_OR" = 1 ]; then
        [ "$dom" = 1 ] || [ "$dow" = 1 ]
    else
        [ "$dom" = 1 ] && [ "$dow" = 1 ]
    fi
}

# "05" -> "5" (date pads with zeros; the sets hold plain numbers)
num() { n=${1#0}; printf '%s' "${n:-0}"; }

# --- SMTP ----------------------------------------------------------------------------------------

# Read one SMTP reply (all its lines) from fd 4; succeed when its code starts with $1.
smtp_expect() {
    while :; do
        if ! IFS= read -r -t "$SMTP_TIMEOUT" line <&4; then
            SMTP_LAST="no answer within ${SMTP_TIMEOUT} s (connection closed or timed out)"
            return 1
        fi
        line=${line%"$CR"}
        SMTP_LAST=$line
        case $line in [0-9][0-9][0-9]-*) continue ;; esac
        case $line in "$1"*) return 0 ;; esac
        return 1
    done
}

smtp_say() { printf '%s\r\n' "$1" >&3; }

# smtp_send HOST PORT ADDRESS MESSAGE-ID DOMAIN: deliver the marker message to ADDRESS.
# The envelope sender is null (<>) and the From is the job's own .invalid name: the server checks
# neither against its own domain's SPF or DMARC (the job's address is not the domain's egress address),
# and null-sender mail is never refused for its sender.
smtp_send() {
    host=$1; port=$2; address=$3; msgid=$4; domain=$5
    fifo=$(mktemp -d "${TMPDIR:-/tmp}/mailstack-smtp.XXXXXX") || return 1
    mkfifo "$fifo/in" "$fifo/out" || { rm -rf "$fifo"; return 1; }
    nc "$host" "$port" <"$fifo/in" >"$fifo/out" 2>/dev/null &
    ncpid=$!
    exec 3>"$fifo/in" 4<"$fifo/out"
    now=$(date -u -R)
    ok=0
    if smtp_expect 2 && smtp_say "EHLO $HELO_NAME" && smtp_expect 2 &&
        smtp_say "MAIL FROM:<>" && smtp_expect 2 &&
        smtp_say "RCPT TO:<$address>" && smtp_expect 2 &&
        smtp_say "DATA" && smtp_expect 3; then
        {
            printf 'From: mailstack backup job <backup@%s>\r\n' "$HELO_NAME"
            printf 'To: <%s>\r\n' "$address"
            printf 'Subject: mailstack restore drill marker %s\r\n' "$msgid"
            printf 'Date: %s\r\n' "$now"
            printf 'Message-ID: <%s>\r\n' "$msgid"
            printf 'X-Mailstack-Drill: %s\r\n' "$STACK"
            printf 'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n'
            printf 'This message marks a backup of %s (stack %s).\r\n' "$domain" "$STACK"
            printf 'make restore-drill looks for it, with the same UID, in the restored mailbox.\r\n'
            printf '.\r\n'
        } >&3
        if smtp_expect 2; then
            ok=1
            smtp_say "QUIT"
            smtp_expect 2 || :
        fi
    fi
    exec 3>&- 4<&-
    kill "$ncpid" 2>/dev/null
    wait "$ncpid" 2>/dev/null
    rm -rf "$fifo"
    [ "$ok" = 1 ]
}

# marker_uid MAILDIR MESSAGE-ID: the UID Dovecot gave the message, once it is in dovecot-uidlist.
marker_uid() {
    file=$(grep -l -F "Message-ID: <$2>" "$1"/new/* "$1"/cur/* 2>/dev/null | head -n 1)
    [ -n "$file" ] || return 1
    base=${file##*/}
    base=${base%%:*}
    awk -v base="$base" '
        { n = index($0, " :") }
        n > 0 && substr($0, n + 2) == base { print $1; found = 1; exit }
        END { exit found ? 0 : 1 }
    ' "$1/dovecot-uidlist" 2>/dev/null
}

# --- webmail export ------------------------------------------------------------------------------

# request_export DIR: ask the sidecar for a fresh VACUUM INTO copy in DIR; wait for its answer.
request_export() {
    dir=$1
    mkdir -p "$dir/$REQUESTS_DIR" || return 1
    id="$(date -u +%s)-$$"
    : >"$dir/$REQUESTS_DIR/$id.request" || return 1
    waited=0
    while [ ! -f "$dir/$REQUESTS_DIR/$id.done" ]; do
        if [ "$waited" -ge "$EXPORT_TIMEOUT" ]; then
            rm -f "$dir/$REQUESTS_DIR/$id.request"
            EXPORT_RESULT="the webmail-export sidecar did not answer within ${EXPORT_TIMEOUT} s"
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    EXPORT_RESULT=$(cat "$dir/$REQUESTS_DIR/$id.done")
    rm -f "$dir/$REQUESTS_DIR/$id.done"
    case $EXPORT_RESULT in ok*) return 0 ;; esac
    return 1
}

# --- one run -------------------------------------------------------------------------------------

random_hex() { od -A n -N 6 -t x1 /dev/urandom | tr -d ' \n'; }

# backup_domain INDEX: marker, export, snapshot of one domain; sets DOMAIN_RESULT ("ok ..." or "failed ...").
backup_domain() {
    eval "name=\$D$1_NAME dir=\$D$1_DIR smtp_host=\$D$1_SMTP_HOST smtp_port=\$D$1_SMTP_PORT webmail=\$D$1_WEBMAIL"
    eval "address=\$D$1_DRILL maildir=\$D$1_DRILL_MAILDIR"
    # shellcheck disable=SC2154
    root="$DATA_DIR/$dir"
    problems=""
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    msgid="mailstack-drill.$stamp.$(random_hex)@$name"
    set -- --tag mailstack --tag "stack=$STACK" --tag "domain=$name"
    # shellcheck disable=SC2154
    if smtp_send "$smtp_host" "$smtp_port" "$address" "$msgid" "$name"; then
        uid=""
        waited=0
        while :; do
            uid=$(marker_uid "$root/$maildir" "$msgid") && break
            if [ "$waited" -ge "$MARKER_TIMEOUT" ]; then
                uid=""
                break
            fi
            sleep 1
            waited=$((waited + 1))
        done
        if [ -n "$uid" ]; then
            log "$name: marker <$msgid> delivered, UID $uid"
            set -- "$@" --tag "marker=$msgid" --tag "marker-uid=$uid"
        else
            problems="$problems; the marker was accepted but not in $address's mailbox within ${MARKER_TIMEOUT} s"
            set -- "$@" --tag "marker=$msgid" --tag "marker-uid=none"
        fi
    else
        problems="$problems; marker delivery to $address at $smtp_host:$smtp_port failed: $SMTP_LAST"
        set -- "$@" --tag "marker=none"
    fi
    # shellcheck disable=SC2154
    if [ "$webmail" = 1 ]; then
        if request_export "$root/webmail"; then
            log "$name: webmail database: $EXPORT_RESULT"
        else
            problems="$problems; webmail database copy failed ($EXPORT_RESULT): the snapshot keeps the previous copy"
        fi
    fi
    code=0
    for attempt in 1 2; do
        run_restic backup --host "$RESTIC_HOST" "$@" --exclude "$root/webmail/$REQUESTS_DIR" "$root"
        code=$?
        # 3: some files could not be read (a message renamed by a flag change while restic listed the
        # directory); the second pass reads the current names.
        [ "$code" = 3 ] && [ "$attempt" = 1 ] && { log "$name: restic could not read some files; once more"; continue; }
        break
    done
    if [ "$code" != 0 ]; then
        problems="$problems; restic backup exited with $code"
    fi
    if [ -n "$problems" ]; then
        RUN_FAILED=1
        DOMAIN_RESULT="failed $name$problems"
    else
        DOMAIN_RESULT="ok $name"
    fi
}

# The retention: only this stack's host; one group per domain (its paths), markers ignored.
forget() {
    # shellcheck disable=SC2086
    run_restic forget --host "$RESTIC_HOST" --group-by host,paths $KEEP_ARGS --prune
}

acquire_lock() {
    if mkdir "$STATE_DIR/lock" 2>/dev/null; then
        echo $$ >"$STATE_DIR/lock/pid"
        return 0
    fi
    other=$(cat "$STATE_DIR/lock/pid" 2>/dev/null || echo "")
    if [ -n "$other" ] && kill -0 "$other" 2>/dev/null; then
        log "another run (pid $other) is in progress"
        return 1
    fi
    rm -rf "$STATE_DIR/lock"
    mkdir "$STATE_DIR/lock" 2>/dev/null || return 1
    echo $$ >"$STATE_DIR/lock/pid"
}

release_lock() { rm -rf "$STATE_DIR/lock"; }

# run_all WHY [DOMAIN]: one run over every domain (or only DOMAIN); status file; exit status.
run_all() {
    why=$1; only=${2:-}
    mkdir -p "$STATE_DIR"
    acquire_lock || return 1
    started=$(date -u +%s)
    RUN_FAILED=0
    results=""
    log "$why run started"
    run_restic unlock >/dev/null 2>&1 || :
    i=1
    matched=0
    while [ "$i" -le "$DOMAIN_COUNT" ]; do
        eval "name=\$D${i}_NAME"
        # shellcheck disable=SC2154
        if [ -z "$only" ] || [ "$only" = "$name" ]; then
            matched=1
            backup_domain "$i"
            log "$DOMAIN_RESULT"
            results="$results$DOMAIN_RESULT
"
        fi
        i=$((i + 1))
    done
    if [ -n "$only" ] && [ "$matched" = 0 ]; then
        log "no domain $only in this stack"
        release_lock
        return 2
    fi
    if [ -z "$only" ] && [ -n "$EDGE_DIR" ] && [ -d "$DATA_DIR/$EDGE_DIR" ]; then
        run_restic backup --host "$RESTIC_HOST" --tag mailstack --tag "stack=$STACK" --tag "scope=edge" \
            "$DATA_DIR/$EDGE_DIR" || { RUN_FAILED=1; results="${results}failed edge certificates
"; }
    fi
    if ! forget; then
        RUN_FAILED=1
        results="${results}failed forget --prune
"
    elif ! run_restic check >/dev/null; then
        RUN_FAILED=1
        results="${results}failed restic check found a problem in the repository
"
    fi
    seconds=$(($(date -u +%s) - started))
    if [ "$RUN_FAILED" = 0 ]; then state=ok; else state=failed; fi
    {
        printf '%s %s run at %s, %s s\n' "$state" "$why" "$(date -u -d "@$started" '+%Y-%m-%dT%H:%M:%SZ')" "$seconds"
        printf '%s' "$results"
    } >"$STATE_DIR/status.tmp" && mv -f "$STATE_DIR/status.tmp" "$STATE_DIR/status"
    log "$why run $state after $seconds s"
    release_lock
    [ "$RUN_FAILED" = 0 ]
}

# As PID 1 the shell ignores SIGTERM unless it traps it; sleeping in the background lets `docker stop`
# end the loop at once (a run in progress finishes first, within the stop grace period).
nap() {
    sleep "$1" &
    wait $!
}

loop() {
    trap 'log "stopping"; exit 0' TERM INT
    mkdir -p "$STATE_DIR"
    rm -f "$STATE_DIR/repository-failed"
    log "stack $STACK, restic host $RESTIC_HOST, $DOMAIN_COUNT domain(s); $(restic version 2>/dev/null | head -n 1)"
    until prepare_repository; do
        : >"$STATE_DIR/repository-failed"
        date -u +%s >"$STATE_DIR/heartbeat"
        log "cannot open the repository (see above); retrying in 60 s"
        nap 60
    done
    rm -f "$STATE_DIR/repository-failed"
    log "repository ready; schedule (UTC): minutes$SCHEDULE_MINUTES hours$SCHEDULE_HOURS"
    last=""
    while :; do
        date -u +%s >"$STATE_DIR/heartbeat"
        # shellcheck disable=SC2046
        set -- $(date -u '+%Y%m%d%H%M %M %H %d %m %w')
        key=$1
        if [ "$key" != "$last" ] && due "$(num "$2")" "$(num "$3")" "$(num "$4")" "$(num "$5")" "$6"; then
            last=$key
            run_all scheduled || :
        fi
        seconds=$(num "$(date -u +%S)")
        nap $((60 - seconds))
    done
}

health() {
    beat=$(cat "$STATE_DIR/heartbeat" 2>/dev/null) || { echo "no heartbeat yet"; return 1; }
    age=$(($(date -u +%s) - beat))
    if [ "$age" -gt "$HEARTBEAT_MAX_AGE" ]; then
        echo "the schedule loop last ran $age s ago"
        return 1
    fi
    if [ -f "$STATE_DIR/repository-failed" ]; then
        echo "cannot open the repository (docker logs show restic's error)"
        return 1
    fi
    case $(head -n 1 "$STATE_DIR/status" 2>/dev/null) in
        failed*) echo "the last run failed:"; cat "$STATE_DIR/status"; return 1 ;;
    esac
    echo ok
}

case ${1:-} in
    loop) loop ;;
    once) shift; mkdir -p "$STATE_DIR"; prepare_repository && run_all manual "${1:-}" ;;
    health) health ;;
    restic) shift; run_restic "$@" ;;
    forget) forget ;;
    status) cat "$STATE_DIR/status" 2>/dev/null || echo "no run yet" ;;
    due-selftest)
        while read -r m h d mo w; do
            if due "$m" "$h" "$d" "$mo" "$w"; then echo 1; else echo 0; fi
        done
        ;;
    *)
        echo "usage: job.sh loop | once [DOMAIN] | health | status | restic ARGS... | forget | due-selftest" >&2
        exit 64
        ;;
esac
