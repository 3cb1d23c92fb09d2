#!/usr/bin/env bash
# The main job: set up (idempotently), then run etcd, the processing controller and the
# Helm deployer in the foreground on this machine. Render target by default (manifests
# appear in ./out); a real cluster when KUBECONFIG points at one (or SDP_HELM_TARGET=cluster).
# Stop with Ctrl-C: every process started here is stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
export PATH="$ROOT/target/release:$ROOT/.tools/bin:$PATH"

RUN="$ROOT/.run"
OUT="${SDP_RENDER_DIR:-$ROOT/out}"
mkdir -p "$RUN" "$OUT"
export SDP_CONFIG_HOST="${SDP_CONFIG_HOST:-127.0.0.1}"
export SDP_CONFIG_PORT="${SDP_CONFIG_PORT:-2379}"
export SDP_HELM_NAMESPACE="${SDP_HELM_NAMESPACE:-default-sdp}"
export SDP_LOG_LEVEL="${SDP_LOG_LEVEL:-info}"

if [ -z "${SDP_HELM_TARGET:-}" ]; then
    if [ -n "${KUBECONFIG:-}" ] && [ -s "${KUBECONFIG%%:*}" ]; then
        SDP_HELM_TARGET=cluster
    else
        SDP_HELM_TARGET=render
    fi
fi
export SDP_HELM_TARGET SDP_RENDER_DIR="$OUT"

# Job control: every process started below gets its own process group, so Ctrl-C in
# the terminal reaches only this script, which then stops the daemons first and etcd
# last (the daemons resign their leadership while etcd still answers).
set -m
daemons=()
etcd_pid=""
stop() {
    trap - INT TERM EXIT
    echo
    echo "run: stopping (controller, deployer, then etcd)"
    if [ "${#daemons[@]}" -gt 0 ]; then
        kill -TERM "${daemons[@]}" 2>/dev/null || true
        for pid in "${daemons[@]}"; do wait "$pid" 2>/dev/null || true; done
    fi
    if [ -n "$etcd_pid" ]; then
        kill -TERM "$etcd_pid" 2>/dev/null || true
        wait "$etcd_pid" 2>/dev/null || true
    fi
    echo "run: stopped"
}
trap stop INT TERM EXIT

# Tags each output line; ignores SIGINT so that the last lines of a stopping daemon
# still get through.
prefix() { trap '' INT; exec sed -u "s/^/[$1] /"; }

if (exec 3<>"/dev/tcp/$SDP_CONFIG_HOST/$SDP_CONFIG_PORT") 2>/dev/null; then
    echo "run: an etcd already answers on $SDP_CONFIG_HOST:$SDP_CONFIG_PORT, using it"
else
    etcd --name sdp-local --data-dir "$RUN/etcd" \
        --listen-client-urls "http://127.0.0.1:$SDP_CONFIG_PORT" \
        --advertise-client-urls "http://127.0.0.1:$SDP_CONFIG_PORT" \
        --listen-peer-urls "http://127.0.0.1:$((SDP_CONFIG_PORT + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((SDP_CONFIG_PORT + 1))" \
        --initial-cluster "sdp-local=http://127.0.0.1:$((SDP_CONFIG_PORT + 1))" \
        --logger zap --log-outputs stderr --log-level warn \
        > >(prefix etcd) 2>&1 &
    etcd_pid=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$SDP_CONFIG_PORT") 2>/dev/null && break
        sleep 0.2
    done
fi

SDP_WORKFLOWS_URL="${SDP_WORKFLOWS_URL:-$ROOT/workflows/workflows.json}" \
SDP_HTTP_ADDR="${SDP_CONTROLLER_ADDR:-127.0.0.1:8080}" \
    sdp-controller > >(prefix controller) 2>&1 &
daemons+=($!)
SDP_CHARTS_DIR="${SDP_CHARTS_DIR:-$ROOT/charts}" \
SDP_HTTP_ADDR="${SDP_DEPLOYER_ADDR:-127.0.0.1:8081}" \
    sdp-deployer > >(prefix deployer) 2>&1 &
daemons+=($!)
cat <<MSG

  SDP processing control is running (etcd $SDP_CONFIG_HOST:$SDP_CONFIG_PORT, target namespace $SDP_HELM_NAMESPACE).
    deployer target : $SDP_HELM_TARGET$( [ "$SDP_HELM_TARGET" = render ] && echo " -> rendered manifests in $OUT/$SDP_HELM_NAMESPACE/" )
    controller      : http://${SDP_CONTROLLER_ADDR:-127.0.0.1:8080}/metrics  (/healthz, /readyz)
    deployer        : http://${SDP_DEPLOYER_ADDR:-127.0.0.1:8081}/metrics
  In a second terminal (see the README walkthrough):
    export PATH=$ROOT/target/release:\$PATH
    sdpcfg process realtime:testdask:0.1.0
    sdpcfg ls values -R /
  Stop everything with Ctrl-C.

MSG
# Until Ctrl-C, or until one of them exits (then the others are stopped too).
wait -n "${daemons[@]}" ${etcd_pid:+"$etcd_pid"} || true
