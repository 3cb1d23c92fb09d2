#!/usr/bin/env bash
# The main job: set up (idempotently), then run etcd, the processing controller, the
# Helm deployer and the web console in the foreground on this machine. Render target by
# default (manifests appear in ./out); a real cluster when KUBECONFIG points at one (or
# SDP_HELM_TARGET=cluster).
# Stop with Ctrl-C: every process started here is stopped.
#
# Refuses to start (exit 1, before anything runs) when another run.sh uses the same etcd
# port or something already listens on the controller's, deployer's or console's port.
# Prints the "running" banner only once the daemons answer /healthz; exits 1 if one of
# them stops by itself. Settings (environment): SDP_CONFIG_PORT (2379; etcd's peer port is
# the next one), SDP_CONTROLLER_ADDR (127.0.0.1:8080), SDP_DEPLOYER_ADDR (127.0.0.1:8081),
# SDP_CONSOLE_ADDR (127.0.0.1:8082: the web console), SDP_RUN_DIR (.run: etcd data in
# etcd-<port>, locks), SDP_RENDER_DIR (out),
# SDP_ETCD_LISTEN (127.0.0.1: the address etcd listens on besides loopback),
# SDP_WORKFLOW_CONFIG_HOST (the etcd address workflows get), SDP_RUN_WAIT (30 s).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUN="${SDP_RUN_DIR:-$ROOT/.run}"
OUT="${SDP_RENDER_DIR:-$ROOT/out}"
export SDP_CONFIG_HOST="${SDP_CONFIG_HOST:-127.0.0.1}"
export SDP_CONFIG_PORT="${SDP_CONFIG_PORT:-2379}"
export SDP_HELM_NAMESPACE="${SDP_HELM_NAMESPACE:-default-sdp}"
export SDP_LOG_LEVEL="${SDP_LOG_LEVEL:-info}"
CONTROLLER_ADDR="${SDP_CONTROLLER_ADDR:-127.0.0.1:8080}"
DEPLOYER_ADDR="${SDP_DEPLOYER_ADDR:-127.0.0.1:8081}"
CONSOLE_ADDR="${SDP_CONSOLE_ADDR:-127.0.0.1:8082}"
ETCD_LISTEN="${SDP_ETCD_LISTEN:-127.0.0.1}"
WAIT="${SDP_RUN_WAIT:-30}"

die() {
    echo "run: $*" >&2
    exit 1
}

# host_of / port_of <host:port | [v6]:port>; a wildcard address is reached on loopback.
port_of() { echo "${1##*:}"; }
host_of() {
    local h="${1%:*}"
    h="${h#[}"
    h="${h%]}"
    case "$h" in "" | 0.0.0.0) h=127.0.0.1 ;; "::") h=::1 ;; esac
    echo "$h"
}
# answers <host> <port>: something accepts TCP connections there.
answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
# http_ok <host> <port> <path>: a GET answers 200.
http_ok() {
    (
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
        IFS= read -r -t 2 line <&3 || exit 1
        [[ "$line" == "HTTP/1."[01]" 200"* ]]
    ) 2>/dev/null
}
# bare_host <host | host:port | [v6] | [v6]:port>
bare_host() {
    local a="$1"
    case "$a" in
        \[*) a="${a#\[}"; a="${a%%]*}" ;;
        *:*:*) ;; # IPv6 without brackets: no port
        *:*) a="${a%:*}" ;;
    esac
    echo "$a"
}
is_loopback() {
    case "$(bare_host "$1")" in 127.* | localhost | ::1 | 0.0.0.0 | "") return 0 ;; *) return 1 ;; esac
}

[[ "$SDP_CONFIG_PORT" =~ ^[0-9]+$ ]] || die "SDP_CONFIG_PORT must be a port number, not '$SDP_CONFIG_PORT'"
PEER_PORT=$((SDP_CONFIG_PORT + 1))

# --- one run.sh per etcd port; every port free -----------------------------------------
# The lock is per etcd port because etcd's data directory is: .run/etcd-<port>. It is held
# as long as this script runs (the children get the descriptor closed), and released by
# the kernel however the script ends.
mkdir -p "$RUN" "$OUT"
LOCK="$RUN/run-$SDP_CONFIG_PORT.lock"
exec {lock_fd}>>"$LOCK"
if ! flock -n "$lock_fd"; then
    holder="$(cat "$RUN/run-$SDP_CONFIG_PORT.pid" 2>/dev/null || true)"
    die "another scripts/run.sh${holder:+ (pid $holder)} is running with etcd port $SDP_CONFIG_PORT.
  Stop it first (Ctrl-C in its terminal), or run this one on other ports:
  SDP_CONFIG_PORT=<port> SDP_CONTROLLER_ADDR=127.0.0.1:<port> SDP_DEPLOYER_ADDR=127.0.0.1:<port> SDP_CONSOLE_ADDR=127.0.0.1:<port> $0"
fi
for pair in "controller:SDP_CONTROLLER_ADDR:$CONTROLLER_ADDR" "deployer:SDP_DEPLOYER_ADDR:$DEPLOYER_ADDR" \
    "console:SDP_CONSOLE_ADDR:$CONSOLE_ADDR"; do
    IFS=: read -r who var addr <<<"$pair"
    if answers "$(host_of "$addr")" "$(port_of "$addr")"; then
        die "the $who's address $addr is in use (another run.sh, docker-compose, or something else
  listens there): stop that, or set $var to a free host:port"
    fi
done
echo "$$" >"$RUN/run-$SDP_CONFIG_PORT.pid"

"$ROOT/scripts/setup.sh"
export PATH="$ROOT/target/release:$ROOT/.tools/bin:$PATH"

if [ -z "${SDP_HELM_TARGET:-}" ]; then
    if [ -n "${KUBECONFIG:-}" ] && [ -s "${KUBECONFIG%%:*}" ]; then
        SDP_HELM_TARGET=cluster
    else
        SDP_HELM_TARGET=render
    fi
fi
export SDP_HELM_TARGET SDP_RENDER_DIR="$OUT"

# In a cluster, workflows run in pods: a loopback etcd address is their own pod.
loopback_warning=""
if [ "$SDP_HELM_TARGET" = cluster ]; then
    # the deployer creates the target namespace if it is missing
    export SDP_HELM_CREATE_NAMESPACE="${SDP_HELM_CREATE_NAMESPACE:-true}"
    if [ -n "${SDP_WORKFLOW_CONFIG_HOST:-}" ]; then
        wf_host="$SDP_WORKFLOW_CONFIG_HOST" why="SDP_WORKFLOW_CONFIG_HOST is $SDP_WORKFLOW_CONFIG_HOST"
    else
        wf_host="$SDP_CONFIG_HOST" why="SDP_WORKFLOW_CONFIG_HOST is unset, so workflows get SDP_CONFIG_HOST=$SDP_CONFIG_HOST"
    fi
    IFS=, read -r -a wf_hosts <<<"$wf_host"
    for h in "${wf_hosts[@]}"; do
        if is_loopback "$h"; then
            loopback_warning="$why: $h is a loopback address; in the cluster, that is the workflow's own pod.
    Set SDP_WORKFLOW_CONFIG_HOST to this machine's address as the cluster's pods see it, and
    SDP_ETCD_LISTEN=0.0.0.0 (or that address) so that etcd listens there (without
    authentication: mind your network)."
            echo "run: WARNING: $loopback_warning" >&2
            break
        fi
    done
fi

# Job control: every process started below gets its own process group, so Ctrl-C in
# the terminal reaches only this script, which then stops the daemons first and etcd
# last (the daemons resign their leadership while etcd still answers).
set -m
daemons=()
etcd_pid=""
stop() {
    trap - INT TERM EXIT
    echo
    echo "run: stopping (controller, deployer, console, then etcd)"
    if [ "${#daemons[@]}" -gt 0 ]; then
        kill -TERM "${daemons[@]}" 2>/dev/null || true
        for pid in "${daemons[@]}"; do wait "$pid" 2>/dev/null || true; done
    fi
    if [ -n "$etcd_pid" ]; then
        kill -TERM "$etcd_pid" 2>/dev/null || true
        wait "$etcd_pid" 2>/dev/null || true
    fi
    rm -f "$RUN/run-$SDP_CONFIG_PORT.pid"
    echo "run: stopped"
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

# Tags each output line; ignores SIGINT so that the last lines of a stopping daemon
# still get through.
prefix() { trap '' INT; exec sed -u "s/^/[$1] /"; }

# --- etcd: this machine's own, on loopback, unless one is configured elsewhere ------------
etcd_host="$(bare_host "$SDP_CONFIG_HOST")"
if [[ "$SDP_CONFIG_HOST" == *,* ]] || ! is_loopback "$etcd_host" || [ "${SDP_CONFIG_PROTOCOL:-http}" = https ]; then
    echo "run: using the etcd at $SDP_CONFIG_HOST (port $SDP_CONFIG_PORT)"
elif answers "$etcd_host" "$SDP_CONFIG_PORT"; then
    http_ok "$etcd_host" "$SDP_CONFIG_PORT" /health ||
        die "something other than a healthy etcd listens on $etcd_host:$SDP_CONFIG_PORT: stop it, or set SDP_CONFIG_PORT to a free port"
    echo "run: an etcd already answers on $etcd_host:$SDP_CONFIG_PORT, using it"
else
    answers 127.0.0.1 "$PEER_PORT" &&
        die "etcd's peer port $PEER_PORT (SDP_CONFIG_PORT + 1) is in use: set SDP_CONFIG_PORT to another port"
    data="$RUN/etcd-$SDP_CONFIG_PORT"
    # Before each port had its own directory, every etcd used .run/etcd: it becomes the
    # default port's, where it was used most (the lock above makes the move safe).
    if [ "$SDP_CONFIG_PORT" = 2379 ] && [ -d "$RUN/etcd" ] && [ ! -e "$data" ]; then
        mv "$RUN/etcd" "$data"
        echo "run: moved $RUN/etcd to $data (each etcd port now has its own data directory)"
    fi
    listen="http://127.0.0.1:$SDP_CONFIG_PORT"
    if [ "$ETCD_LISTEN" != 127.0.0.1 ]; then
        listen="http://$ETCD_LISTEN:$SDP_CONFIG_PORT"
        [ "$ETCD_LISTEN" = 0.0.0.0 ] || listen="$listen,http://127.0.0.1:$SDP_CONFIG_PORT"
    fi
    etcd --name sdp-local --data-dir "$data" \
        --listen-client-urls "$listen" \
        --advertise-client-urls "http://127.0.0.1:$SDP_CONFIG_PORT" \
        --listen-peer-urls "http://127.0.0.1:$PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
        --initial-cluster "sdp-local=http://127.0.0.1:$PEER_PORT" \
        --logger zap --log-outputs stderr --log-level warn \
        {lock_fd}>&- > >(prefix etcd {lock_fd}>&-) 2>&1 &
    etcd_pid=$!
    for _ in $(seq $((WAIT * 5))); do
        http_ok 127.0.0.1 "$SDP_CONFIG_PORT" /health && break
        kill -0 "$etcd_pid" 2>/dev/null || die "etcd exited at start (its log is above)"
        sleep 0.2
    done
    http_ok 127.0.0.1 "$SDP_CONFIG_PORT" /health || die "etcd did not become healthy within $WAIT s"
fi

# --- the daemons; the banner once all answer /healthz -----------------------------------
SDP_WORKFLOWS_URL="${SDP_WORKFLOWS_URL:-$ROOT/workflows/workflows.json}" \
SDP_HTTP_ADDR="$CONTROLLER_ADDR" \
    sdp-controller {lock_fd}>&- > >(prefix controller {lock_fd}>&-) 2>&1 &
daemons+=($!)
controller_pid=$!
SDP_CHARTS_DIR="${SDP_CHARTS_DIR:-$ROOT/charts}" \
SDP_HTTP_ADDR="$DEPLOYER_ADDR" \
    sdp-deployer {lock_fd}>&- > >(prefix deployer {lock_fd}>&-) 2>&1 &
daemons+=($!)
deployer_pid=$!
# Read-only: it only follows etcd, and serves the page on its /healthz port.
SDP_HTTP_ADDR="$CONSOLE_ADDR" \
    sdp-console {lock_fd}>&- > >(prefix console {lock_fd}>&-) 2>&1 &
daemons+=($!)
console_pid=$!

for who in controller deployer console; do
    pid_var="${who}_pid"
    addr_var="${who^^}_ADDR"
    addr="${!addr_var}"
    for _ in $(seq $((WAIT * 5))); do
        http_ok "$(host_of "$addr")" "$(port_of "$addr")" /healthz && break
        kill -0 "${!pid_var}" 2>/dev/null || die "the $who exited at start (its log is above)"
        sleep 0.2
    done
    http_ok "$(host_of "$addr")" "$(port_of "$addr")" /healthz ||
        die "the $who did not answer http://$addr/healthz within $WAIT s"
done

cat <<MSG

  SDP processing control is running (etcd $SDP_CONFIG_HOST:$SDP_CONFIG_PORT, target namespace $SDP_HELM_NAMESPACE).
    deployer target : $SDP_HELM_TARGET$( [ "$SDP_HELM_TARGET" = render ] && echo " -> rendered manifests in $OUT/$SDP_HELM_NAMESPACE/" )
    controller      : http://$CONTROLLER_ADDR/metrics  (/healthz, /readyz)
    deployer        : http://$DEPLOYER_ADDR/metrics
    console         : http://$CONSOLE_ADDR/  (open it in a browser: every block, live)
  In a second terminal (see the README walkthrough):
    export PATH=$ROOT/target/release:\$PATH
    sdpcfg process realtime:testdask:0.1.0
    sdpcfg ls values -R /
  Stop everything with Ctrl-C.
MSG
[ -z "$loopback_warning" ] || echo "  WARNING: $loopback_warning"
echo

# Until Ctrl-C (the trap stops everything and exits 0), or until one of them exits by
# itself: then the others are stopped too and the exit status is 1.
gone=""
wait -n -p gone "${daemons[@]}" ${etcd_pid:+"$etcd_pid"} || true
case "$gone" in
    "$controller_pid") gone=controller ;;
    "$deployer_pid") gone=deployer ;;
    "$console_pid") gone=console ;;
    "$etcd_pid") gone=etcd ;;
esac
echo "run: ${gone:-a process} exited by itself; stopping the others" >&2
exit 1
