#!/usr/bin/env bash
# Lints and renders every chart, validates the rendered manifests against the Kubernetes
# schemas (offline, kubernetes-validate --strict), checks their structure (least-privilege
# RBAC, hardened containers, persistent and clustered etcd, NetworkPolicy, ServiceMonitor…:
# scripts/check_manifests.py), runs the system chart's etcd auth script against a real etcd,
# and checks docker-compose.yml and docker-compose.cluster.yml.
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

# Structural checks (scripts/check_manifests.py) need PyYAML: run them with the Python of
# kubernetes-validate's virtual environment (scripts/setup.sh creates it), found through
# kubernetes-validate on PATH like the tool itself.
PY="$(sed -n '1s/^#!//p' "$(command -v kubernetes-validate 2>/dev/null || echo /dev/null)")"
[ -x "${PY%% *}" ] || PY=python3
structure() { $PY "$ROOT/scripts/check_manifests.py" "$@"; }

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
check "sdp-processing-control: render target, 2 replicas render and validate" \
    render sdp charts/sdp-processing-control -n ska \
    --set deployer.helm.target=render,controller.replicas=2,deployer.replicas=2
check "sdp-processing-control: files/workflows.json equals workflows/workflows.json" \
    cmp workflows/workflows.json charts/sdp-processing-control/files/workflows.json

# Every option of the system chart at once. Secrets are named, never given in values.
cat >"$tmp/all-options.yaml" <<'YAML'
etcd:
  replicas: 3
  persistence: {size: 2Gi, storageClass: fast}
  auth: {enabled: true, existingSecret: sdp-etcd-auth}
  tls: {enabled: true, existingSecret: sdp-etcd-tls}
controller: {replicas: 2, workflowConfigHost: "etcd.example:2379"}
deployer:
  replicas: 2
  helm: {target: render}
  rbac:
    extraRules:
      - {apiGroups: [networking.k8s.io], resources: [ingresses], verbs: [get, list, create, delete]}
workflows: {registry: registry.example/sdp, configSecret: sdp-etcd-client}
configPrefix: /tenant1
networkPolicy: {enabled: true}
serviceMonitor: {enabled: true, labels: {release: prometheus}}
imagePullSecrets: [{name: regcred}]
YAML
spc() { helm template sdp charts/sdp-processing-control -n ska "$@"; }

# kubernetes-validate has no schema for the ServiceMonitor custom resource (it would only
# warn, which validate() counts as failure): it is taken out here and checked on its own
# by "ServiceMonitor selects …" below (apiVersion, selector, port, path).
spc_all_options() {
    spc -f "$tmp/all-options.yaml" >"$tmp/all.yaml" &&
        structure without-kind "$tmp/all.yaml" ServiceMonitor "$tmp/all-but-crd.yaml" &&
        validate "$tmp/all-but-crd.yaml"
}
spc_rbac() {
    spc >"$tmp/spc.yaml" && structure rbac-no-wildcard "$tmp/spc.yaml" &&
        spc -f "$tmp/all-options.yaml" >"$tmp/all.yaml" && structure rbac-no-wildcard "$tmp/all.yaml"
}
spc_rbac_refuses_wildcards() {
    ! spc --set 'deployer.rbac.extraRules[0].apiGroups[0]=*' --set 'deployer.rbac.extraRules[0].resources[0]=pods' \
        --set 'deployer.rbac.extraRules[0].verbs[0]=get' >/dev/null 2>"$tmp/err" && grep -q 'wildcard' "$tmp/err"
}
spc_role_covers_bundled_charts() {
    spc >"$tmp/spc.yaml" && {
        helm template wf charts/workflow --set wf_image=i,pb_id=p --set config_secret=s
        echo ---
        helm template d charts/dask --set jupyter.enabled=true
    } >"$tmp/bundled.yaml" && structure role-covers "$tmp/spc.yaml" "$tmp/bundled.yaml"
}
hardened_everywhere() {
    spc >"$tmp/spc.yaml" && structure hardened "$tmp/spc.yaml" &&
        spc -f "$tmp/all-options.yaml" >"$tmp/all.yaml" && structure hardened "$tmp/all.yaml" &&
        helm template wf charts/workflow --set wf_image=i,pb_id=p >"$tmp/wf.yaml" &&
        structure hardened "$tmp/wf.yaml" &&
        helm template wf charts/workflow --set wf_image=i,pb_id=p,config_secret=s >"$tmp/wf.yaml" &&
        structure hardened "$tmp/wf.yaml" &&
        helm template d charts/dask --set jupyter.enabled=true >"$tmp/dask.yaml" &&
        structure hardened "$tmp/dask.yaml"
}
etcd_persistent_by_default() {
    spc >"$tmp/spc.yaml" && structure etcd-persistent "$tmp/spc.yaml" &&
        # and the check sees the difference: explicitly disabled, it is an emptyDir
        spc --set etcd.persistence.enabled=false >"$tmp/spc.yaml" &&
        ! structure etcd-persistent "$tmp/spc.yaml" >/dev/null && validate "$tmp/spc.yaml"
}
namespace_kept() { spc >"$tmp/spc.yaml" && structure namespace-kept "$tmp/spc.yaml"; }
etcd_three_members() {
    spc --set etcd.replicas=3 >"$tmp/spc.yaml" && validate "$tmp/spc.yaml" &&
        structure etcd-cluster "$tmp/spc.yaml" 3 ska &&
        spc -f "$tmp/all-options.yaml" --set etcd.replicas=5 >"$tmp/all.yaml" &&
        structure etcd-cluster "$tmp/all.yaml" 5 ska https &&
        spc >"$tmp/spc.yaml" && structure etcd-cluster "$tmp/spc.yaml" 1 ska
}
etcd_refuses_bad_clusters() {
    ! spc --set etcd.replicas=2 >/dev/null 2>"$tmp/err" && grep -q 'etcd.replicas' "$tmp/err" &&
        ! spc --set etcd.replicas=3,etcd.persistence.enabled=false >/dev/null 2>"$tmp/err" &&
        grep -q 'persistence' "$tmp/err" &&
        ! spc --set etcd.auth.enabled=true >/dev/null 2>"$tmp/err" && grep -q 'existingSecret' "$tmp/err"
}
registry_value() {
    spc >"$tmp/spc.yaml" &&
        structure registry "$tmp/spc.yaml" charts/sdp-processing-control/files/workflows.json &&
        spc --set workflows.registry=registry.example/sdp >"$tmp/spc.yaml" &&
        structure registry "$tmp/spc.yaml" charts/sdp-processing-control/files/workflows.json registry.example/sdp
}
network_policy() {
    spc -f "$tmp/all-options.yaml" >"$tmp/all.yaml" &&
        helm template wf charts/workflow --set wf_image=i,pb_id=p >"$tmp/wf.yaml" &&
        structure network-policy "$tmp/all.yaml" "$tmp/wf.yaml" ska-sdp
}
service_monitor() { spc -f "$tmp/all-options.yaml" >"$tmp/all.yaml" && structure service-monitor "$tmp/all.yaml"; }
# The console: a Deployment and a Service by default, reading etcd as the daemons do
# (also with TLS and auth); none of it with console.enabled=false.
console_optional() {
    spc >"$tmp/spc.yaml" &&
        grep -qx '  name: sdp-console' "$tmp/spc.yaml" &&
        [ "$(grep -c '^  name: sdp-console$' "$tmp/spc.yaml")" = 2 ] &&
        grep -qx '          image: "sdp/console:0.1.0"' "$tmp/spc.yaml" &&
        spc -f "$tmp/all-options.yaml" >"$tmp/all.yaml" &&
        grep -A3 -x '            - name: SDP_CONFIG_PASSWORD' "$tmp/all.yaml" | grep -q 'name: sdp-etcd-auth' &&
        [ "$(grep -c -x '            - name: SDP_CONFIG_PASSWORD' "$tmp/all.yaml")" = 3 ] &&
        spc --set console.enabled=false >"$tmp/none.yaml" && validate "$tmp/none.yaml" &&
        ! grep -q 'sdp-console' "$tmp/none.yaml" || { echo "console objects not as expected"; return 1; }
}
workflow_config_secret() {
    local values=wf_image=sdp/workflow-testdask:0.1.0,pb_id=realtime-20191121-0000,env.SDP_CONFIG_HOST=a
    helm template wf charts/workflow --set "$values" >"$tmp/plain.yaml" &&
        helm template wf charts/workflow --set "$values" --set config_secret=sdp-etcd-client \
            >"$tmp/secret.yaml" && validate "$tmp/secret.yaml" &&
        structure config-secret "$tmp/plain.yaml" "$tmp/secret.yaml" sdp-etcd-client
}

# What the controller is told to hand on to workflows (issue 11, item 9): the prefix and,
# with auth or TLS, the name of the Secret in the target namespace; never a Secret without
# either. Its etcd host names the release namespace, so that it resolves from the target
# namespace too.
spc_workflow_settings() {
    spc >"$tmp/spc.yaml" &&
        structure controller-env "$tmp/spc.yaml" SDP_CONFIG_HOST=sdp-etcd.ska SDP_CONFIG_PORT=2379 \
            SDP_WORKFLOW_CONFIG_SECRET= SDP_CONFIG_PREFIX= SDP_CONFIG_PROTOCOL= &&
        spc -f "$tmp/all-options.yaml" >"$tmp/all.yaml" &&
        structure controller-env "$tmp/all.yaml" SDP_CONFIG_PREFIX=/tenant1 SDP_CONFIG_PROTOCOL=https \
            SDP_WORKFLOW_CONFIG_SECRET=sdp-etcd-client SDP_WORKFLOW_CONFIG_HOST=etcd.example:2379 &&
        spc --set etcd.tls.enabled=true,etcd.tls.existingSecret=t >"$tmp/tls.yaml" &&
        structure controller-env "$tmp/tls.yaml" SDP_WORKFLOW_CONFIG_SECRET=sdp-etcd-client
}
# The values the controller writes for a workflow of a prefixed, TLS and auth system
# (controller/src/template.rs), as the deployer hands them to helm (--set).
workflow_controller_values() {
    render wf charts/workflow --set wf_image=sdp/workflow-testdask:0.1.0,pb_id=realtime-20191121-0000 \
        --set config_secret=sdp-etcd-client --set env.SDP_CONFIG_HOST=sdp-etcd.ska \
        --set env.SDP_CONFIG_PORT=2479 --set env.SDP_CONFIG_PREFIX=/tenant1 \
        --set env.SDP_CONFIG_PROTOCOL=https --set env.SDP_HELM_NAMESPACE=ska-sdp &&
        structure workflow-env "$tmp/out.yaml" sdp-etcd-client SDP_CONFIG_HOST=sdp-etcd.ska \
            SDP_CONFIG_PORT=2479 SDP_CONFIG_PREFIX=/tenant1 SDP_CONFIG_PROTOCOL=https \
            SDP_CONFIG_CERT=/etc/sdp-config/ca.crt SDP_HELM_NAMESPACE=ska-sdp
}

# free_ports <n>: n distinct free loopback ports, below Linux's ephemeral range so that no
# outgoing connection takes one before it is used.
free_ports() {
    $PY - "$1" <<'PY'
import random, socket, sys
chosen = []
while len(chosen) < int(sys.argv[1]):
    p = random.randrange(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        if p not in chosen:
            chosen.append(p)
    except OSError:
        pass
    finally:
        s.close()
print(" ".join(map(str, chosen)))
PY
}

# The chart's etcd auth bootstrap (files/etcd-auth.sh, run by its hook Job), against a real
# etcd: it enables auth, runs again harmlessly, applies a changed client password, refuses
# a password etcdctl would cut short.
etcd_auth_script() {
    local script=charts/sdp-processing-control/files/etcd-auth.sh client peer pid rc
    read -r client peer <<<"$(free_ports 2)"
    etcd --name auth-check --data-dir "$tmp/etcd-auth" \
        --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "auth-check=http://127.0.0.1:$peer" >"$tmp/etcd-auth.log" 2>&1 &
    pid=$!
    (
        export ETCDCTL_API=3 ETCDCTL_ENDPOINTS="127.0.0.1:$client" SDP_ETCD_WAIT=30 \
            SDP_ETCD_ROOT_PASSWORD=r00t-pw SDP_ETCD_USERNAME=sdp SDP_ETCD_PASSWORD=first
        refuses_spaces() {
            local out
            out="$(SDP_ETCD_PASSWORD='two words' sh "$script" 2>&1)" && return 1
            grep -q 'white space' <<<"$out"
        }
        for _ in $(seq 50); do etcdctl endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
        etcdctl put 2/pb/x '{}' >/dev/null && # anonymous while auth is off
            sh "$script" | grep -q 'authentication enabled' &&
            sh "$script" | grep -q 'already on' &&
            ! etcdctl get 2/pb/x >/dev/null 2>&1 &&
            ETCDCTL_USER=sdp:first etcdctl put 2/pb/x '{}' >/dev/null &&
            SDP_ETCD_PASSWORD=second sh "$script" >/dev/null &&
            ! ETCDCTL_USER=sdp:first etcdctl get 2/pb/x >/dev/null 2>&1 &&
            [ "$(ETCDCTL_USER=sdp:second etcdctl get 2/pb/x --print-value-only)" = '{}' ] &&
            ! ETCDCTL_USER=sdp:second etcdctl user list >/dev/null 2>&1 &&
            refuses_spaces ||
            { echo "the auth script behaved otherwise; etcd's log:"; tail -n 5 "$tmp/etcd-auth.log"; exit 1; }
    ) 2>&1 | grep -av '"level":"warn"'
    rc=${PIPESTATUS[0]}
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return "$rc"
}

# The backup CronJob example of the chart's README, as a user would copy it.
readme_backup_example() {
    sed -n '/^<!-- check-charts: backup example -->$/,/^```$/p' charts/sdp-processing-control/README.md |
        sed '1,2d;$d' >"$tmp/backup.yaml" && grep -q 'kind: CronJob' "$tmp/backup.yaml" &&
        validate "$tmp/backup.yaml" && structure hardened "$tmp/backup.yaml"
}

check "sdp-processing-control: every option on renders and validates (ServiceMonitor apart)" spc_all_options
check "sdp-processing-control: no wildcard in any Role/ClusterRole rule (defaults, every option)" spc_rbac
check "sdp-processing-control: a wildcard in deployer.rbac.extraRules is refused" spc_rbac_refuses_wildcards
check "sdp-processing-control: the deployer's Role covers every kind of the bundled charts" \
    spc_role_covers_bundled_charts
check "all three charts: every container non-root, no escalation, no capabilities, seccomp, requests, memory limit" \
    hardened_everywhere
check "sdp-processing-control: etcd persistent by default (volumeClaimTemplate; emptyDir only if disabled)" \
    etcd_persistent_by_default
check "sdp-processing-control: the target namespace is kept on helm uninstall" namespace_kept
check "sdp-processing-control: etcd.replicas=3/5 render that many members, --initial-cluster, daemons get all" \
    etcd_three_members
check "sdp-processing-control: even member counts, clusters without persistence, auth without Secret refused" \
    etcd_refuses_bad_clusters
check "sdp-processing-control: workflows.registry replaces every repository path (unset: the file as is)" \
    registry_value
check "sdp-processing-control: NetworkPolicy lets only SDP pods reach etcd" network_policy
check "sdp-processing-control: ServiceMonitor selects the /metrics of both daemons and the console" service_monitor
check "sdp-processing-control: the console's Deployment and Service (etcd credentials like the daemons'), none if disabled" \
    console_optional
check "sdp-processing-control: files/etcd-auth.sh turns auth on in a real etcd, idempotently" etcd_auth_script
check "sdp-processing-control: README's backup CronJob example validates and is hardened" readme_backup_example
check "workflow: config_secret adds only the secret-backed env, the CA mount and SDP_CONFIG_CERT" \
    workflow_config_secret
check "workflow: the controller's values for a prefixed TLS+auth system render port, protocol, prefix, Secret" \
    workflow_controller_values
check "sdp-processing-control: the controller gets the prefix, the workflows' Secret (auth/TLS only), a namespaced host" \
    spc_workflow_settings

# compose_yaml <files…>: `docker-compose config` of these files, for Python to read.
compose_config() {
    local args=() f
    for f in "$@"; do args+=(-f "$f"); done
    docker-compose "${args[@]}" config >"$tmp/compose.yaml" 2>"$tmp/compose.err"
}
# compose_py <python>: runs the code with c = that configuration (a dict).
compose_py() {
    $PY -c 'import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); exec(sys.argv[2])' "$tmp/compose.yaml" "$1"
}
compose_ports_no_kubeconfig() {
    compose_config docker-compose.yml && compose_py '
ports = {n: [str(p) for p in s.get("ports", [])] for n, s in c["services"].items()}
assert ports["controller"] == ["127.0.0.1:8080:8080/tcp"], ports["controller"]
assert ports["deployer"] == ["127.0.0.1:8081:8080/tcp"], ports["deployer"]
assert ports["console"] == ["127.0.0.1:8082:8082/tcp"], ports["console"]
v = c["services"]["console"]
assert v["build"]["target"] == "console" and v["environment"]["SDP_HTTP_ADDR"] == "0.0.0.0:8082", v
d = c["services"]["deployer"]
assert not any("kube" in v for v in d.get("volumes", [])), d.get("volumes")
assert "KUBECONFIG" not in d["environment"] and d["environment"]["SDP_HELM_TARGET"] == "render"
assert d["user"] == "0:0" and "setpriv" in d["entrypoint"][2]
'
}
compose_cluster_mode() {
    env -u SDP_WORKFLOW_CONFIG_HOST docker-compose -f docker-compose.yml -f docker-compose.cluster.yml \
        config -q 2>"$tmp/compose.err" &&
        grep -q 'SDP_WORKFLOW_CONFIG_HOST variable is not set' "$tmp/compose.err" &&
        SDP_WORKFLOW_CONFIG_HOST=192.0.2.10 compose_config docker-compose.yml docker-compose.cluster.yml &&
        [ ! -s "$tmp/compose.err" ] && compose_py '
d = c["services"]["deployer"]
assert d["environment"]["SDP_HELM_TARGET"] == "cluster" and d["environment"]["KUBECONFIG"] == "/etc/sdp/kube/config"
assert [v.split(":")[1:] for v in d["volumes"] if "kube" in v] == [["/etc/sdp/kube", "ro"]], d["volumes"]
assert d["depends_on"]["cluster-check"]["condition"] == "service_completed_successfully"
assert c["services"]["controller"]["environment"]["SDP_WORKFLOW_CONFIG_HOST"] == "192.0.2.10"
'
}
# The cluster-check service's script, run by sh here as in its container.
compose_cluster_check_warns() {
    $PY -c 'import sys, yaml
c = yaml.safe_load(open("docker-compose.cluster.yml"))
print(c["services"]["cluster-check"]["entrypoint"][2].replace("$$", "$"))' >"$tmp/cluster-check.sh" || return 1
    local host out
    for host in "" 127.0.0.1 localhost:2379 "[::1]:2379" etcd "192.0.2.10,127.0.0.1:2379"; do
        out="$(SDP_WORKFLOW_CONFIG_HOST="$host" sh "$tmp/cluster-check.sh")" || return 1
        grep -q WARNING <<<"$out" || { echo "no warning for '$host': $out"; return 1; }
    done
    for host in 192.0.2.10 "192.0.2.10:2379,192.0.2.11" sdp-etcd.example.org; do
        out="$(SDP_WORKFLOW_CONFIG_HOST="$host" sh "$tmp/cluster-check.sh")" || return 1
        ! grep -q WARNING <<<"$out" || { echo "a warning for '$host': $out"; return 1; }
    done
}
# The deployer's entrypoint, run here with /out replaced by a directory of a given owner and
# a stand-in sdp-deployer that reports who it runs as. Needs root (setpriv), like the container.
compose_deployer_runs_as_out_owner() {
    [ "$(id -u)" = 0 ] || { echo "skipped: needs root"; return 0; }
    local entry owner
    entry="$($PY -c 'import sys, yaml
c = yaml.safe_load(open("docker-compose.yml"))
print(c["services"]["deployer"]["entrypoint"][2].replace("$$", "$"))')" || return 1
    chmod 711 "$tmp" && mkdir -p "$tmp/bin" && printf '#!/bin/sh\necho "$(id -u):$(id -g) $*"\n' >"$tmp/bin/sdp-deployer" &&
        chmod 755 "$tmp/bin/sdp-deployer" || return 1
    for owner in 0:0 12345:23456; do
        mkdir -p "$tmp/out-$owner" && chown "$owner" "$tmp/out-$owner" &&
            [ "$(PATH="$tmp/bin:$PATH" sh -c "${entry//\/out/$tmp/out-$owner}" sdp-deployer --x)" = "$owner --x" ] ||
            { echo "not run as $owner"; return 1; }
    done
}

check "docker-compose.yml: docker-compose config -q" docker-compose -f docker-compose.yml config -q
check "docker-compose.yml: controller on 127.0.0.1:8080, deployer on 127.0.0.1:8081, console on 127.0.0.1:8082, no kubeconfig mount" \
    compose_ports_no_kubeconfig
check "docker-compose.yml + docker-compose.cluster.yml: kubeconfig directory, warns without SDP_WORKFLOW_CONFIG_HOST" \
    compose_cluster_mode
check "docker-compose.cluster.yml: cluster-check warns for loopback or 'etcd' addresses, only for them" \
    compose_cluster_check_warns
check "docker-compose.yml: the deployer runs as the owner of ./out (root-owned and uid 12345 tried)" \
    compose_deployer_runs_as_out_owner

exit "$failed"
