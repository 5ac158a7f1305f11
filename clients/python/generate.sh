#!/usr/bin/env bash
# Generates Python gRPC stubs for moor's API from proto/ into $1 (default ./gen).
# Needs: python3 -m pip install grpcio grpcio-tools
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/gen}"
mkdir -p "$out"
proto="$here/../../proto"
python3 -m grpc_tools.protoc -I "$proto" --python_out="$out" --grpc_python_out="$out" \
    $(cd "$proto" && find moor -name '*.proto' | sort)
# Make the generated packages importable.
find "$out/moor" -type d -exec touch {}/__init__.py \;
