#!/usr/bin/env bash
# Installs what building and testing moor needs on Debian or Ubuntu:
# protoc (etcd-client and our API build), etcd (the HA store and its tests),
# iproute2, glibc's static libraries (the images' static binaries), Docker
# (started if it is not running), Docker's registry (the pull tests), conntrack
# (removed pods' flows, the proxy's iptables mode), the
# Python gRPC tools for the cross-language client test; then builds the
# local images.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v etcd >/dev/null || need+=(etcd-server)
command -v ip >/dev/null || need+=(iproute2)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
command -v docker >/dev/null || need+=(docker.io)
# A local image registry: the node agent's pull tests push to one.
command -v docker-registry >/dev/null || need+=(docker-registry)
# The node agent deletes a removed pod's flows with it, as Docker does for its
# endpoints; the proxy's iptables mode its stale UDP flows, as kube-proxy.
command -v conntrack >/dev/null || need+=(conntrack)
# The reference application's test drives a real browser, headless.
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Docker: start the daemon when it does not answer.
if ! docker info >/dev/null 2>&1; then
    echo "starting dockerd"
    ($SUDO dockerd >/tmp/moor-dockerd.log 2>&1 &)
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /tmp/moor-dockerd.log" >&2; exit 1; }
fi

if ! python3 -c 'import grpc_tools, grpc' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check grpcio grpcio-tools
fi

./images/build.sh
