#!/usr/bin/env bash
# Installs what building and testing moor needs on Debian or Ubuntu:
# protoc (etcd-client and our API build), etcd (the HA store and its tests),
# iproute2, and the Python gRPC tools for the cross-language client test.
set -euo pipefail

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v etcd >/dev/null || need+=(etcd-server)
command -v ip >/dev/null || need+=(iproute2)
if ((${#need[@]})); then
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! python3 -c 'import grpc_tools, grpc' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check grpcio grpcio-tools
fi
