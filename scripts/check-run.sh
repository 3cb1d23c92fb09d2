#!/usr/bin/env bash
# Checks scripts/run.sh the way a user meets it, on free ports and in a temporary run
# directory: the banner only once the daemons answer (and the console serves its page),
# a second start refused (exit 1, a clear message, no banner), a taken port refused, a
# daemon dying at start reported with exit 1, one etcd data directory per port, a clean
# stop. Needs the release binaries and
# the tools (scripts/setup.sh; test.sh runs it first). Takes a few seconds.
# Prints one line per check and exits 1 if any failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.tools/bin:$PATH"
cd "$ROOT" || exit 1

for bin in sdp-controller sdp-deployer sdp-console; do
    if [ ! -x "target/release/$bin" ]; then
        echo "FAIL run.sh checks: target/release/$bin is missing (scripts/setup.sh builds it)"
        exit 1
    fi
done

tmp="$(mktemp -d)"
declare -A pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
failed=0

check() {
    local what="$1"
    shift
    if "$@" >"$tmp/check.log" 2>&1; then
        echo "ok   $what"
    else
        echo "FAIL $what"
        sed 's/^/     /' "$tmp/check.log"
        failed=1
    fi
}

# ports <n>: n distinct free loopback ports, each with the next one free and unused too (an
# etcd port's peer port), below Linux's ephemeral range so that no outgoing connection takes
# one between now and its use.
ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
def free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()
chosen = []
while len(chosen) < int(sys.argv[1]):
    p = random.randrange(20000, 32000)
    taken = {q + d for q in chosen for d in (-1, 0, 1)}
    if p not in taken and p + 1 not in taken and free(p) and free(p + 1):
        chosen.append(p)
print(" ".join(map(str, chosen)))
PY
}
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
healthz() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n' >&3
        IFS= read -r -t 2 line <&3 && [[ "$line" == "HTTP/1."[01]" 200"* ]]
    ) 2>/dev/null
}

# start <name> <etcd port> <controller port> <deployer port> <console port> [VAR=value…]:
# run.sh in the background, render target, log in $tmp/<name>.log.
start() {
    local name="$1" etcd="$2" controller="$3" deployer="$4" console="$5"
    shift 5
    env -u KUBECONFIG -u SDP_HELM_TARGET -u SDP_CONFIG_HOST -u SDP_WORKFLOW_CONFIG_HOST \
        SDP_SETUP_SKIP_BUILD=1 SDP_RUN_DIR="$tmp/run" SDP_RENDER_DIR="$tmp/out" \
        SDP_HELM_NAMESPACE=check-run SDP_RUN_WAIT=20 SDP_CONFIG_PORT="$etcd" \
        SDP_CONTROLLER_ADDR="127.0.0.1:$controller" SDP_DEPLOYER_ADDR="127.0.0.1:$deployer" \
        SDP_CONSOLE_ADDR="127.0.0.1:$console" "$@" \
        "$ROOT/scripts/run.sh" >"$tmp/$name.log" 2>&1 &
    pids[$name]=$!
}
# running <name>: its banner appears (within 30 s) while it runs.
running() {
    for _ in $(seq 150); do
        grep -q 'SDP processing control is running' "$tmp/$1.log" && return 0
        kill -0 "${pids[$1]}" 2>/dev/null || break
        sleep 0.2
    done
    echo "no banner from run.sh '$1'; its log:"
    cat "$tmp/$1.log"
    return 1
}
# ends <name>: it exits within 30 s; prints its exit status.
ends() {
    local pid="${pids[$1]}"
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && { echo "run.sh '$1' still runs"; return 1; }
    wait "$pid"
    echo "exit status $?" >"$tmp/$1.status"
    unset "pids[$1]"
}
# exits_with <name> <status>: it ended with that exit status.
exits_with() {
    [ "$(cat "$tmp/$1.status")" = "exit status $2" ] ||
        { echo "run.sh '$1': $(cat "$tmp/$1.status"), not $2; its log:"; cat "$tmp/$1.log"; return 1; }
}
# data_dirs <run dir> <name>…: exactly these etcd data directories exist.
data_dirs() {
    local dir="$1" got want
    shift
    got="$(cd "$dir" 2>/dev/null && ls -d etcd* 2>/dev/null | sort | tr '\n' ' ')"
    want="$(printf '%s\n' "$@" | sort | tr '\n' ' ')"
    [ "$got" = "$want" ] || { echo "etcd data directories in $dir: '$got', not '$want'"; return 1; }
}
no_banner() {
    ! grep -q 'SDP processing control is running' "$tmp/$1.log" || { echo "'$1' printed the banner:"; cat "$tmp/$1.log"; return 1; }
}
says() {
    grep -qF -- "$2" "$tmp/$1.log" || { echo "'$1' does not say '$2':"; cat "$tmp/$1.log"; return 1; }
}

# page <port>: the console serves its page there, with its script.
page() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET / HTTP/1.0\r\nHost: x\r\n\r\n' >&3
        timeout 5 cat <&3 >"$tmp/page.html"
    ) 2>/dev/null
    head -n 1 "$tmp/page.html" | grep -q '^HTTP/1\.[01] 200' &&
        grep -q '<title>SDP console</title>' "$tmp/page.html" &&
        grep -q 'src="/console.js"' "$tmp/page.html" ||
        { echo "no console page on port $1:"; cat "$tmp/page.html"; return 1; }
}

read -r e1 c1 d1 v1 e2 c2 d2 v2 e3 c3 d3 v3 <<<"$(ports 12)"

first_runs() {
    start first "$e1" "$c1" "$d1" "$v1" && running first &&
        healthz "$c1" && healthz "$d1" && healthz "$v1" && page "$v1" &&
        says first "console         : http://127.0.0.1:$v1/" &&
        data_dirs "$tmp/run" "etcd-$e1"
}
second_refused() {
    start second "$e1" "$c1" "$d1" "$v1" && ends second && exits_with second 1 &&
        says second "another scripts/run.sh (pid ${pids[first]}) is running with etcd port $e1" &&
        no_banner second && healthz "$c1" && healthz "$d1" && healthz "$v1"
}
taken_port_refused() {
    start taken "$e2" "$c1" "$d2" "$v2" && ends taken && exits_with taken 1 &&
        says taken "the controller's address 127.0.0.1:$c1 is in use" && no_banner taken &&
        data_dirs "$tmp/run" "etcd-$e1"
}
taken_console_port_refused() {
    start taken-console "$e2" "$c2" "$d2" "$v1" && ends taken-console &&
        exits_with taken-console 1 &&
        says taken-console "the console's address 127.0.0.1:$v1 is in use" &&
        no_banner taken-console && data_dirs "$tmp/run" "etcd-$e1"
}
other_ports_beside() {
    start beside "$e2" "$c2" "$d2" "$v2" && running beside && healthz "$c2" && healthz "$c1" &&
        page "$v2" && page "$v1" && data_dirs "$tmp/run" "etcd-$e1" "etcd-$e2"
}
dying_daemon() {
    start dying "$e3" "$c3" "$d3" "$v3" SDP_HELM_TARGET=nonsense && ends dying &&
        exits_with dying 1 && says dying "the deployer exited at start" &&
        no_banner dying && ! answers "$e3"
}
clean_stop() {
    kill -TERM "${pids[first]}" "${pids[beside]}" &&
        ends first && ends beside &&
        exits_with first 0 && exits_with beside 0 &&
        says first "run: stopped" &&
        for p in "$e1" "$c1" "$d1" "$v1" "$e2" "$c2" "$d2" "$v2"; do
            ! answers "$p" || { echo "port $p still answers"; return 1; }
        done
}
# In cluster mode (no cluster needed to start), workflows must not be given loopback.
cluster_mode_warns() {
    start loopback "$e1" "$c1" "$d1" "$v1" SDP_HELM_TARGET=cluster SDP_HELM_CREATE_NAMESPACE=false &&
        running loopback &&
        says loopback "run: WARNING: SDP_WORKFLOW_CONFIG_HOST is unset, so workflows get SDP_CONFIG_HOST=127.0.0.1: 127.0.0.1 is a loopback address" &&
        kill -TERM "${pids[loopback]}" && ends loopback && exits_with loopback 0 &&
        start routable "$e1" "$c1" "$d1" "$v1" SDP_HELM_TARGET=cluster SDP_HELM_CREATE_NAMESPACE=false \
            SDP_WORKFLOW_CONFIG_HOST=10.1.2.3:2379 && running routable &&
        kill -TERM "${pids[routable]}" && ends routable && exits_with routable 0 &&
        ! grep -q 'loopback address' "$tmp/routable.log" || { echo "a warning for 10.1.2.3:2379:"; cat "$tmp/routable.log"; return 1; }
}
# Before each port had its own directory every etcd used .run/etcd; for the default port
# (2379) it is moved, data and all. Needs 2379 and 2380 free on this machine.
legacy_data_dir_moved() {
    local run="$tmp/legacy" pid
    mkdir -p "$run"
    etcd --name sdp-local --data-dir "$run/etcd" --listen-client-urls http://127.0.0.1:2379 \
        --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
        --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster sdp-local=http://127.0.0.1:2380 >"$tmp/legacy-etcd.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:2379 put /legacy kept >/dev/null 2>&1 && break; sleep 0.2; done
    kill -TERM "$pid" && wait "$pid"
    start legacy 2379 "$c3" "$d3" "$v3" SDP_RUN_DIR="$run" && running legacy &&
        says legacy "moved $run/etcd to $run/etcd-2379" && data_dirs "$run" etcd-2379 &&
        [ "$(ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:2379 get /legacy --print-value-only)" = kept ] &&
        kill -TERM "${pids[legacy]}" && ends legacy && exits_with legacy 0
}

check "run.sh: banner once the daemons answer /healthz, console page served; etcd data in <run dir>/etcd-<port>" \
    first_runs
check "run.sh: a second start on the same etcd port exits 1 with a clear message, no banner" second_refused
check "run.sh: a start whose controller port is taken exits 1 naming it, before starting etcd" taken_port_refused
check "run.sh: a start whose console port is taken exits 1 naming it, before starting etcd" \
    taken_console_port_refused
check "run.sh: another start on other ports runs beside the first, each etcd with its own data directory" \
    other_ports_beside
check "run.sh: a daemon that dies at start makes run.sh exit 1, no banner, etcd stopped" dying_daemon
check "run.sh: SIGTERM stops everything, exit 0, every port free again" clean_stop
check "run.sh: cluster mode warns when workflows would get a loopback etcd address, only then" \
    cluster_mode_warns
if answers 2379 || answers 2380; then
    echo "skip run.sh: a legacy .run/etcd moves to .run/etcd-2379 (ports 2379/2380 are in use here)"
else
    check "run.sh: a legacy .run/etcd moves to .run/etcd-2379, data kept" legacy_data_dir_moved
fi

exit "$failed"
