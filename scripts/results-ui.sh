#!/usr/bin/env bash
# Deploys the reference application, results-ui, from the cluster's own registry:
# builds its two images (results-api, results-ui), pushes them to the registry
# under TAG, and applies helm-like-manifests/results-ui/ with the image
# references pointing there (imagePullPolicy Always, so every node pulls).
#
#   scripts/results-ui.sh [--registry HOST:PORT] [--tag TAG] [--data DIR]
#
# --registry  the cluster's registry as this machine's Docker reaches it
#             (default localhost:5000, what `moor up` runs); on several
#             machines, the address `moor up` printed for nodes.
# --tag       the images' tag (default 0.1); a new tag rolls both deployments.
# --data      where results-api keeps its results on the node (default
#             /var/lib/moor-results; a hostPath, so a new pod finds them).
#
# moorctl talks to its current context (`moor up` writes it); set MOORCTL to
# use another binary than the one on PATH (or target/release/moorctl).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

registry=localhost:5000
tag=0.1
data=/var/lib/moor-results
while (($#)); do
    case $1 in
        --registry) registry=${2:?--registry needs HOST:PORT}; shift 2 ;;
        --tag) tag=${2:?--tag needs a value}; shift 2 ;;
        --data) data=${2:?--data needs a directory}; shift 2 ;;
        -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "results-ui.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "results-ui.sh: bad tag '$tag'" >&2; exit 2; }
[[ $data == /* && $data != *'|'* ]] || { echo "results-ui.sh: --data needs an absolute path, got '$data'" >&2; exit 2; }

moorctl=${MOORCTL:-}
if [[ -z $moorctl ]]; then
    if command -v moorctl >/dev/null; then
        moorctl=moorctl
    elif [[ -x $root/target/release/moorctl ]]; then
        moorctl=$root/target/release/moorctl
    else
        echo "results-ui.sh: moorctl is not on PATH; build it (cargo build --release -p moorctl) or set MOORCTL" >&2
        exit 1
    fi
fi

"$root/images/build.sh" >/dev/null
for image in results-api results-ui; do
    docker tag "moor/$image:0.1" "$registry/$image:$tag"
    # Quiet on success; the registry's own words on failure.
    if ! out="$(docker push "$registry/$image:$tag" 2>&1)"; then
        echo "$out" >&2
        echo "results-ui.sh: cannot push to $registry: is the cluster's registry running (moor up without --no-registry)?" >&2
        exit 1
    fi
    echo "pushed $registry/$image:$tag"
done

manifests=("$root"/helm-like-manifests/results-ui/*.yaml)
for i in "${!manifests[@]}"; do
    ((i == 0)) || echo "---"
    sed -e "s|REGISTRY/\(results-[a-z]*\):0\.1|$registry/\1:$tag|g" \
        -e "s|path: /var/lib/moor-results|path: $data|" "${manifests[$i]}"
done | "$moorctl" apply -f -
