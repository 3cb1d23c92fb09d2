#!/usr/bin/env bash
# Lints and renders every chart, validates the rendered manifests against the Kubernetes
# schemas (offline, kubernetes-validate --strict), and checks docker-compose.yml.
# Prints one line per check and exits 1 if any failed. Tools come from .tools/bin
# (scripts/setup.sh installs them).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.tools/bin:$PATH"
# A Kubernetes version whose schemas kubernetes-validate ships; override with K8S_VERSION.
K8S_VERSION="${K8S_VERSION:-1.30.0}"
cd "$ROOT" || exit 1

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failed=0

# check <description> <command…>: one line of result; on failure also the command's output.
check() {
    local what="$1"
    shift
    if "$@" >"$tmp/log" 2>&1; then
        echo "ok   $what"
    else
        echo "FAIL $what"
        sed 's/^/     /' "$tmp/log"
        failed=1
    fi
}

# validate <file|->: strict schema validation. kubernetes-validate only warns (and exits 0)
# about a kind or apiVersion it has no schema for; --quiet prints nothing on success, so
# any output at all counts as failure.
validate() {
    local out rc
    out="$(kubernetes-validate -k "$K8S_VERSION" --strict --quiet "$@" 2>&1)"
    rc=$?
    [ -z "$out" ] || printf '%s\n' "$out"
    [ "$rc" -eq 0 ] && [ -z "$out" ]
}

# render <helm template args…>: render into $tmp/out.yaml (not empty), then validate it.
render() {
    helm template "$@" >"$tmp/out.yaml" && [ -s "$tmp/out.yaml" ] && validate - <"$tmp/out.yaml"
}

# has <line>…: every line occurs, exactly, in the last rendering.
has() {
    local line
    for line in "$@"; do
        grep -qxF -- "$line" "$tmp/out.yaml" || { echo "missing line: '$line'"; return 1; }
    done
}

# The validator must be able to fail, or every "ok" below means nothing.
validator_can_fail() {
    cat >"$tmp/bad.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  replicas: "2"
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec: {containers: [{name: bad, image: bad}]}
YAML
    ! validate "$tmp/bad.yaml" || return 1
    printf 'apiVersion: apps/v9\nkind: Deployment\nmetadata: {name: bad}\n' >"$tmp/bad.yaml"
    ! validate "$tmp/bad.yaml"
}

workflow_dotted_env() {
    render wf charts/workflow --set wf_image=sdp/workflow-testdask:0.1.0 \
        --set pb_id=realtime-20191121-0000 --set env.SDP_CONFIG_HOST=a \
        --set env.SDP_CONFIG_PORT=2379 &&
        has '      args: ["realtime-20191121-0000"]' '          value: "a"' '          value: "2379"' \
            '    sdp.skao.int/pb-id: "realtime-20191121-0000"'
}

# Values as a file, shaped like what the processing controller asks for.
workflow_values_file() {
    cat >"$tmp/workflow-values.yaml" <<'YAML'
wf_image: sdp/workflow-testdask:0.1.0
pb_id: realtime-20191121-0000
env: {SDP_CONFIG_HOST: a, SDP_CONFIG_PORT: 2379, SDP_HELM_NAMESPACE: sdp, FLAG: false}
YAML
    render wf charts/workflow -f "$tmp/workflow-values.yaml" &&
        has '          value: "a"' '          value: "2379"' '          value: "false"' \
            '      image: "sdp/workflow-testdask:0.1.0"'
}

workflow_requires_image() {
    ! helm template wf charts/workflow --set pb_id=p >/dev/null 2>"$tmp/err" &&
        grep -q 'wf_image is required' "$tmp/err"
}

# The values the 2019 testdask workflow passes (stable/dask style).
dask_seed_values() {
    local seed=jupyter.enabled=false,scheduler.serviceType=ClusterIP,worker.replicas=2
    render d charts/dask --set "$seed" &&
        helm template d charts/dask -s templates/worker.yaml --set "$seed" >"$tmp/out.yaml" &&
        has '  replicas: 2' '            - "tcp://d-scheduler:8786"'
}

check "kubernetes-validate (k8s $K8S_VERSION) rejects a string replicas and an unknown apiVersion" validator_can_fail

check "workflow: helm lint --strict" helm lint --strict charts/workflow --set wf_image=x,pb_id=y
check "workflow: dotted env (--set env.X=…) renders, validates, values quoted" workflow_dotted_env
check "workflow: values file with nested env renders, validates, values quoted" workflow_values_file
check "workflow: missing wf_image fails with a clear message" workflow_requires_image

check "dask: helm lint --strict" helm lint --strict charts/dask
check "dask: seed values render and validate, worker replicas 2" dask_seed_values
check "dask: jupyter.enabled=true renders and validates" render d charts/dask --set jupyter.enabled=true

check "sdp-processing-control: helm lint --strict" helm lint --strict charts/sdp-processing-control
check "sdp-processing-control: defaults render and validate" render sdp charts/sdp-processing-control
check "sdp-processing-control: persistence, render target, 2 replicas render and validate" \
    render sdp charts/sdp-processing-control -n ska --set etcd.persistence.enabled=true \
    --set deployer.helm.target=render,controller.replicas=2,deployer.replicas=2
check "sdp-processing-control: files/workflows.json equals workflows/workflows.json" \
    cmp workflows/workflows.json charts/sdp-processing-control/files/workflows.json

check "docker-compose.yml: docker-compose config -q" docker-compose -f docker-compose.yml config -q

exit "$failed"
