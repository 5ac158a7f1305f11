#!/usr/bin/env bash
# A multi-host lab on one machine, for moor's multi-node tests.
#
# Each host is a network namespace LAB-hI with its own containerd and dockerd;
# a bridge LAB-br in the root namespace is their LAN, and the root namespace
# holds .254 on it, so hosts have a default route and the root namespace can
# reach them (and serve them). Images come from the root dockerd: there is no
# registry. Everything is derived from the lab's name, so several labs run side
# by side and `down` needs no record of what a killed `up` managed to make.
#
#   lab.sh up N [--name LAB] [--subnet A.B.C.0/24|auto] [--image IMAGE]...
#   lab.sh down [--name LAB]
#   lab.sh exec [--name LAB] HOST -- CMD...
#   lab.sh cut [--name LAB] HOST
#   lab.sh reconnect [--name LAB] HOST
#   lab.sh status [--name LAB]
#
# Needs root, iproute2, util-linux (nsenter, flock), iptables, docker.io.
set -euo pipefail

readonly RUN_ROOT=/run/moor-lab
readonly DATA_ROOT=/var/tmp/moor-lab
readonly DEFAULT_NAME=moorlab
readonly DEFAULT_SUBNET=198.18.0.0/24
# Bounds, in seconds, on each wait; generous because they guard against hangs.
readonly START_TIMEOUT=60
readonly STOP_TIMEOUT=20
readonly KILL_TIMEOUT=10
# Interface names are at most 15 bytes: LAB-h99 and LAB-br must fit.
readonly MAX_NAME=10
readonly MAX_HOSTS=99

usage() {
    cat <<EOF
usage: lab.sh up N [--name LAB] [--subnet A.B.C.0/24|auto] [--image IMAGE]...
         N hosts LAB-h1..LAB-hN at A.B.C.1..N, each with its own dockerd holding
         the IMAGEs of the root dockerd; prints one 'NAME ADDRESS DOCKER_HOST'
         line per host. auto: the first free /24 of 198.18.1.0-198.19.255.0.
       lab.sh down [--name LAB]
         stops and removes everything of the lab; safe to repeat.
       lab.sh exec [--name LAB] HOST -- CMD...
         runs CMD in HOST's network namespace (HOST: LAB-hI, hI or I) with
         DOCKER_HOST set to HOST's dockerd.
       lab.sh cut [--name LAB] HOST
         unplugs HOST from the lab's LAN (its cable pulled: no packet, ARP
         included, crosses; its processes run on and notice nothing).
       lab.sh reconnect [--name LAB] HOST
         plugs HOST back in.
       lab.sh status [--name LAB]
         the lab's hosts and whether their dockerd answers.
LAB defaults to $DEFAULT_NAME (1-$MAX_NAME of a-z, 0-9, '-'), the subnet to $DEFAULT_SUBNET.
EOF
}

die() {
    echo "lab.sh: $*" >&2
    exit 1
}

warn() {
    echo "lab.sh: $*" >&2
}

# === names and paths ===

# Sets LAB and every name derived from it.
set_lab() {
    [[ $1 =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ && ${#1} -le $MAX_NAME ]] ||
        die "bad lab name '$1': 1-$MAX_NAME of a-z, 0-9 and '-', not starting or ending with '-'"
    LAB=$1
    RUN_DIR=$RUN_ROOT/$LAB
    DATA_DIR=$DATA_ROOT/$LAB
    BRIDGE=$LAB-br
    COMMENT=moor-lab:$LAB
}

# The lab's network namespaces that exist, one a line.
lab_netns() {
    ip netns list | awk '{print $1}' | grep -E "^$LAB-h[0-9]+\$" || true
}

# The lab's links in the root namespace: its bridge and the hosts' veth ends.
lab_links() {
    ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' |
        grep -E "^$LAB-(br|h[0-9]+)\$" || true
}

# The cgroup directories (any hierarchy) of the lab's containers.
lab_cgroups() {
    local dir
    for dir in /sys/fs/cgroup/moor-lab-"$LAB"-h* /sys/fs/cgroup/*/moor-lab-"$LAB"-h*; do
        [[ -d $dir && ${dir##*/} =~ ^moor-lab-$LAB-h[0-9]+$ ]] && echo "$dir"
    done
    return 0
}

# The lab's processes: daemons and shims by the lab's paths in their command
# lines, whatever runs in its namespaces, and its containers by cgroup.
lab_pids() {
    local ns cgroup
    {
        pgrep -f -- "$RUN_DIR/|$DATA_DIR/" || true
        for ns in $(lab_netns); do
            ip netns pids "$ns" 2>/dev/null || true
        done
        for cgroup in $(lab_cgroups); do
            find "$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null || true
        done
    } | sort -un
}

# Mount points under the lab's directories, deepest first.
lab_mounts() {
    awk -v run="$RUN_DIR/" -v data="$DATA_DIR/" \
        'index($5, run) == 1 || index($5, data) == 1 {print $5}' /proc/self/mountinfo |
        sort -r
}

# === waiting and stopping ===

# Polls CMD every 0.1 s until it succeeds; fails after SECONDS.
wait_until() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# Whether PID runs (a zombie does not: nobody may be left to reap it).
alive() {
    local state
    state=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

none_alive() {
    local pid
    for pid; do
        ! alive "$pid" || return 1
    done
}

# Sends SIGNAL to PIDS and waits up to SECONDS for all of them to exit.
stop_pids() {
    local signal=$1 seconds=$2
    shift 2
    (($#)) || return 0
    kill -s "$signal" "$@" 2>/dev/null || true
    wait_until "$seconds" none_alive "$@"
}

# Stops the processes whose command line matches PATTERN: TERM, then KILL.
stop_matching() {
    local pattern=$1 pids
    mapfile -t pids < <(pgrep -f -- "$pattern" || true)
    stop_pids TERM "$STOP_TIMEOUT" "${pids[@]}" || stop_pids KILL "$KILL_TIMEOUT" "${pids[@]}"
}

# === up ===

cmd_up() {
    local count="" subnet=$DEFAULT_SUBNET images=() name=$DEFAULT_NAME
    while (($#)); do
        case $1 in
            --name) name=${2:?--name needs a value}; shift 2 ;;
            --subnet) subnet=${2:?--subnet needs a value}; shift 2 ;;
            --image) images+=("${2:?--image needs a value}"); shift 2 ;;
            -h | --help) usage; exit 0 ;;
            -*) die "up: unknown option '$1'" ;;
            *) [[ -z $count ]] || die "up: one host count only"; count=$1; shift ;;
        esac
    done
    [[ $count =~ ^[1-9][0-9]*$ && $count -le $MAX_HOSTS ]] ||
        die "usage: lab.sh up N [--name LAB] [--subnet A.B.C.0/24|auto] [--image IMAGE]... (N: 1-$MAX_HOSTS)"
    [[ $subnet == auto || $subnet =~ ^([0-9]{1,3}\.){3}0/24$ ]] ||
        die "bad subnet '$subnet': want A.B.C.0/24 or auto"
    set_lab "$name"
    check_prerequisites
    local image
    for image in "${images[@]}"; do
        docker image inspect --format . "$image" >/dev/null 2>&1 ||
            die "image $image is not in the root dockerd (moor's images: ./images/build.sh)"
    done

    mkdir -p "$RUN_ROOT" "$DATA_ROOT"
    # The run directory is the lab's claim on its name: mkdir is atomic.
    if ! mkdir "$RUN_DIR" 2>/dev/null; then
        [[ -e $RUN_DIR ]] && die "lab $LAB exists; remove it first with: lab.sh down --name $LAB"
        die "cannot create $RUN_DIR"
    fi
    trap 'up_failed $?' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # Only a lab that no longer runs leaves a data directory without a run
    # directory (/run is cleared at boot).
    unmount_all
    rm -rf --one-file-system "$DATA_DIR"
    mkdir -p "$DATA_DIR"

    claim_subnet "$subnet"
    local i
    for ((i = 1; i <= count; i++)); do
        add_host "$i"
    done
    start_daemons "$count"
    ((${#images[@]} == 0)) || load_images "$count" "${images[@]}"

    for ((i = 1; i <= count; i++)); do
        echo "$LAB-h$i $PREFIX.$i unix://$RUN_DIR/h$i/docker.sock"
    done >"$RUN_DIR/hosts"
    cat "$RUN_DIR/hosts"
    trap - EXIT INT TERM
}

# Starts every host's containerd, then its dockerd, each as soon as it can:
# hosts start side by side. Returns once every dockerd answers.
start_daemons() {
    local count=$1 i
    for ((i = 1; i <= count; i++)); do
        start_containerd "$i"
    done
    for ((i = 1; i <= count; i++)); do
        wait_until "$START_TIMEOUT" containerd_ready "$i" ||
            die "containerd of $LAB-h$i did not start within ${START_TIMEOUT}s; its log:$(log_tail "$i" containerd)"
        start_dockerd "$i"
    done
    for ((i = 1; i <= count; i++)); do
        wait_until "$START_TIMEOUT" dockerd_ready "$i" ||
            die "dockerd of $LAB-h$i did not answer within ${START_TIMEOUT}s; its log:$(log_tail "$i" dockerd)"
    done
}

# On a failed up: remove what it made, keep its exit status.
up_failed() {
    local status=$1
    ((status != 0)) || return 0
    trap - EXIT INT TERM
    warn "up failed; removing lab $LAB"
    teardown >&2 || warn "could not remove all of lab $LAB; run: lab.sh down --name $LAB"
    exit "$status"
}

check_prerequisites() {
    (($(id -u) == 0)) || die "needs root: it makes network namespaces, a bridge and dockerds"
    local command
    for command in ip nsenter flock pgrep iptables dockerd containerd docker; do
        command -v "$command" >/dev/null ||
            die "$command is not on PATH; install iproute2, util-linux, procps, iptables and docker.io"
    done
}

# Picks the subnet (the first free one for auto) and sets PREFIX to its first
# three octets; makes the bridge with .254 on it and lets frames cross it.
# Under a lock, so two labs starting at once cannot take the same subnet.
claim_subnet() {
    local subnet=$1 lock prefix=""
    exec {lock}<"$RUN_ROOT"
    flock -w "$START_TIMEOUT" "$lock" || die "could not lock $RUN_ROOT within ${START_TIMEOUT}s"
    if [[ $subnet == auto ]]; then
        local candidate
        for candidate in 198.18.{1..255} 198.19.{0..255}; do
            subnet_in_use "$candidate" || { prefix=$candidate; break; }
        done
        [[ -n $prefix ]] || die "no free /24 left in 198.18.0.0/15"
    else
        prefix=${subnet%.0/24}
        ! subnet_in_use "$prefix" ||
            die "subnet $subnet is in use (by another lab or an interface); pick another or use --subnet auto"
    fi
    echo "$prefix.0/24" >"$RUN_DIR/subnet"
    ip link add "$BRIDGE" type bridge
    ip addr add "$prefix.254/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    exec {lock}<&-
    # The root dockerd sets FORWARD's policy to DROP and bridged frames pass
    # through iptables (bridge-nf-call-iptables), so the hosts would not reach
    # each other without this. Traffic to and from the root namespace is INPUT
    # and OUTPUT, which Docker leaves open.
    iptables -w -I "$(forward_chain)" -i "$BRIDGE" -o "$BRIDGE" -m comment --comment "$COMMENT" -j ACCEPT
    PREFIX=$prefix
}

# Whether A.B.C.0/24 (given as A.B.C) overlaps a route or another lab.
subnet_in_use() {
    [[ -n $(ip -4 route show root "$1.0/24") ]] && return 0
    grep -qxF "$1.0/24" "$RUN_ROOT"/*/subnet 2>/dev/null
}

# DOCKER-USER when a root dockerd made it (Docker keeps our rules there across
# its restarts), FORWARD otherwise.
forward_chain() {
    if iptables -w -n -L DOCKER-USER >/dev/null 2>&1; then echo DOCKER-USER; else echo FORWARD; fi
}

# Host I: its namespace, its veth into the bridge as eth0, its address.
add_host() {
    local i=$1 prefix=$PREFIX ns=$LAB-h$1
    ip netns add "$ns"
    ip link add "$ns" type veth peer name eth0 netns "$ns"
    ip link set "$ns" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$prefix.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$prefix.254"
    nsenter --net="/run/netns/$ns" sysctl -qw net.ipv4.ip_forward=1
    mkdir -p "$RUN_DIR/h$i" "$DATA_DIR/h$i"
}

# Each host runs its own containerd in its namespace. Left to itself, dockerd
# 20.10 would use the system's containerd when /run/containerd/containerd.sock
# exists, and that one's shims live in the root namespace: host-network
# containers would land there.
start_containerd() {
    local i=$1 run=$RUN_DIR/h$1 data=$DATA_DIR/h$1
    cat >"$run/containerd.toml" <<EOF
version = 2
root = "$data/containerd"
state = "$run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$run/containerd.sock"
EOF
    # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup
    # mounts dockerd needs.
    nsenter --net="/run/netns/$LAB-h$i" containerd --config "$run/containerd.toml" \
        </dev/null >>"$data/containerd.log" 2>&1 &
    echo $! >"$run/containerd.pid"
}

containerd_ready() {
    local run=$RUN_DIR/h$1
    alive "$(cat "$run/containerd.pid")" || die "containerd of $LAB-h$1 exited; its log:$(log_tail "$1" containerd)"
    [[ -S $run/containerd.sock ]]
}

start_dockerd() {
    local i=$1 run=$RUN_DIR/h$1 data=$DATA_DIR/h$1 ns=$LAB-h$1
    # A config file of its own, or dockerd reads /etc/docker/daemon.json. The
    # cgroup parent lets `down` find (and kill) containers whatever happened
    # to dockerd.
    cat >"$run/daemon.json" <<EOF
{
  "cgroup-parent": "/moor-lab-$ns",
  "exec-opts": ["native.cgroupdriver=cgroupfs"]
}
EOF
    nsenter --net="/run/netns/$ns" dockerd \
        --config-file "$run/daemon.json" \
        --data-root "$data/docker" \
        --exec-root "$run/docker" \
        --pidfile "$run/docker.pid" \
        -H "unix://$run/docker.sock" \
        --containerd "$run/containerd.sock" \
        --containerd-namespace "$ns" \
        --containerd-plugins-namespace "$ns-plugins" \
        </dev/null >>"$data/dockerd.log" 2>&1 &
    echo $! >"$run/dockerd.pid"
}

dockerd_ready() {
    local run=$RUN_DIR/h$1
    alive "$(cat "$run/dockerd.pid")" || die "dockerd of $LAB-h$1 exited; its log:$(log_tail "$1" dockerd)"
    docker -H "unix://$run/docker.sock" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# The end of host I's DAEMON log, indented, for error messages.
log_tail() {
    echo
    tail -n 20 "$DATA_DIR/h$1/$2.log" 2>/dev/null | sed 's/^/    /'
}

# Saves IMAGES from the root dockerd once and loads them into every host.
load_images() {
    local count=$1 i pids=()
    shift
    docker save -o "$DATA_DIR/images.tar" "$@"
    for ((i = 1; i <= count; i++)); do
        docker -H "unix://$RUN_DIR/h$i/docker.sock" load -q -i "$DATA_DIR/images.tar" >/dev/null &
        pids+=($!)
    done
    for ((i = 1; i <= count; i++)); do
        wait "${pids[i - 1]}" || die "loading images into $LAB-h$i failed"
    done
    rm -f "$DATA_DIR/images.tar"
}

# === down ===

cmd_down() {
    local name=$DEFAULT_NAME
    while (($#)); do
        case $1 in
            --name) name=${2:?--name needs a value}; shift 2 ;;
            -h | --help) usage; exit 0 ;;
            *) die "usage: lab.sh down [--name LAB]" ;;
        esac
    done
    set_lab "$name"
    check_prerequisites
    teardown
    echo "lab/$LAB deleted"
}

# Removes everything of the lab that exists, in dependency order, and fails
# if anything is left. Each step tolerates the absence of what it removes, so
# it serves a partial up and a second down alike.
teardown() {
    set +e
    remove_containers
    # dockerd first, while its containerd still answers; then containerd.
    stop_matching "^dockerd .*($RUN_DIR|$DATA_DIR)/" || warn "a dockerd of lab $LAB did not exit"
    stop_matching "^containerd --config $RUN_DIR/" || warn "a containerd of lab $LAB did not exit"
    local pids sockets
    mapfile -t sockets < <(shim_sockets)
    mapfile -t pids < <(lab_pids)
    stop_pids KILL "$KILL_TIMEOUT" "${pids[@]}" || warn "processes of lab $LAB survived SIGKILL"
    ((${#sockets[@]} == 0)) || rm -f "${sockets[@]}"
    unmount_all

    local link ns cgroup
    for link in $(lab_links); do
        ip link del "$link" 2>/dev/null
    done
    for ns in $(lab_netns); do
        ip netns del "$ns" || warn "could not remove network namespace $ns"
    done
    local chain
    for chain in DOCKER-USER FORWARD; do
        while iptables -w -D "$chain" -i "$BRIDGE" -o "$BRIDGE" -m comment --comment "$COMMENT" -j ACCEPT 2>/dev/null; do :; done
    done
    for cgroup in $(lab_cgroups); do
        find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    # What moor wrote for Docker to trust a registry on one of the lab's
    # addresses (/etc/docker/certs.d is shared by every dockerd here).
    local subnet
    subnet=$(cat "$RUN_DIR/subnet" 2>/dev/null)
    [[ -z $subnet ]] || rm -rf /etc/docker/certs.d/"${subnet%.0/24}".*:*
    rm -rf --one-file-system "$DATA_DIR"
    # Last: the run directory is the claim on the name.
    rm -rf --one-file-system "$RUN_DIR"
    set -e
    leftovers
}

# Through each dockerd that still answers, so it cleans up after them.
remove_containers() {
    local socket ids
    for socket in "$RUN_DIR"/h*/docker.sock; do
        [[ -S $socket ]] || continue
        ids=$(timeout 10 docker -H "unix://$socket" ps -aq 2>/dev/null) || continue
        [[ -z $ids ]] && continue
        # shellcheck disable=SC2086 # one container id per word
        timeout 60 docker -H "unix://$socket" rm -f $ids >/dev/null 2>&1 ||
            warn "dockerd at $socket did not remove its containers; killing them"
    done
}

# The sockets the lab's live shims made in /run/containerd/s, a directory
# every containerd's shims share, named by a hash of containerd's address,
# namespace and container id. A shim removes its own when it exits, not when
# it is killed.
shim_sockets() {
    local pid arg args namespace id address
    for pid in $(pgrep -f -- "^[^ ]*containerd-shim[^ ]* .*-address $RUN_DIR/"); do
        mapfile -d '' args <"/proc/$pid/cmdline" 2>/dev/null || continue
        namespace="" id="" address=""
        for ((arg = 0; arg + 1 < ${#args[@]}; arg++)); do
            case ${args[arg]} in
                -namespace) namespace=${args[arg + 1]} ;;
                -id) id=${args[arg + 1]} ;;
                -address) address=${args[arg + 1]} ;;
            esac
        done
        [[ -n $namespace && -n $id && -n $address ]] || continue
        printf '%s' "$address/$namespace/$id" | sha256sum | sed 's|^\([0-9a-f]*\).*|/run/containerd/s/\1|'
    done
}

unmount_all() {
    local mount
    while read -r mount; do
        umount "$mount" 2>/dev/null || umount -l "$mount" || warn "could not unmount $mount"
    done < <(lab_mounts)
}

# Fails, naming them, if any of the lab's things still exist.
leftovers() {
    local left=()
    [[ -z $(lab_netns) ]] || left+=("network namespaces: $(lab_netns | xargs)")
    [[ -z $(lab_links) ]] || left+=("links: $(lab_links | xargs)")
    [[ -z $(lab_pids) ]] || left+=("processes: $(lab_pids | xargs)")
    [[ -z $(lab_mounts) ]] || left+=("mounts: $(lab_mounts | xargs)")
    [[ -z $(lab_cgroups) ]] || left+=("cgroups: $(lab_cgroups | xargs)")
    ! iptables -w -S 2>/dev/null | grep -qF "\"$COMMENT\"" || left+=("iptables rules with comment $COMMENT")
    [[ ! -e $DATA_DIR ]] || left+=("$DATA_DIR")
    [[ ! -e $RUN_DIR ]] || left+=("$RUN_DIR")
    ((${#left[@]} == 0)) && return 0
    warn "lab $LAB is not fully removed; left:"
    printf '  %s\n' "${left[@]}" >&2
    return 1
}

# === exec and status ===

cmd_exec() {
    local name=$DEFAULT_NAME host=""
    while (($#)); do
        case $1 in
            --name) name=${2:?--name needs a value}; shift 2 ;;
            --) shift; break ;;
            -*) die "usage: lab.sh exec [--name LAB] HOST -- CMD..." ;;
            *) [[ -z $host ]] || die "usage: lab.sh exec [--name LAB] HOST -- CMD..."; host=$1; shift ;;
        esac
    done
    [[ -n $host && $# -gt 0 ]] || die "usage: lab.sh exec [--name LAB] HOST -- CMD..."
    set_lab "$name"
    [[ $host =~ ^[0-9]+$ ]] && host=$LAB-h$host
    [[ $host =~ ^h[0-9]+$ ]] && host=$LAB-$host
    local ns address docker_host
    read -r ns address docker_host < <(awk -v h="$host" '$1 == h' "$RUN_DIR/hosts" 2>/dev/null) ||
        die "no host $host in lab $LAB (see lab.sh status --name $LAB)"
    DOCKER_HOST=$docker_host exec nsenter --net="/run/netns/$ns" -- "$@"
}

# cut and reconnect: the host's veth end on the bridge goes down or up. A
# veth whose peer is down carries nothing, so the host sees its link lose
# carrier and keeps its address and routes, as with a pulled cable.
cmd_link() {
    local state=$1 verb=$2 name=$DEFAULT_NAME host=""
    shift 2
    while (($#)); do
        case $1 in
            --name) name=${2:?--name needs a value}; shift 2 ;;
            -*) die "usage: lab.sh $verb [--name LAB] HOST" ;;
            *) [[ -z $host ]] || die "usage: lab.sh $verb [--name LAB] HOST"; host=$1; shift ;;
        esac
    done
    [[ -n $host ]] || die "usage: lab.sh $verb [--name LAB] HOST"
    set_lab "$name"
    [[ $host =~ ^[0-9]+$ ]] && host=$LAB-h$host
    [[ $host =~ ^h[0-9]+$ ]] && host=$LAB-$host
    awk -v h="$host" '$1 == h {found = 1} END {exit !found}' "$RUN_DIR/hosts" 2>/dev/null ||
        die "no host $host in lab $LAB (see lab.sh status --name $LAB)"
    ip link set "$host" "$state" || die "cannot set $host's link $state"
}

cmd_status() {
    local name=$DEFAULT_NAME
    while (($#)); do
        case $1 in
            --name) name=${2:?--name needs a value}; shift 2 ;;
            *) die "usage: lab.sh status [--name LAB]" ;;
        esac
    done
    set_lab "$name"
    [[ -f $RUN_DIR/hosts ]] || die "lab $LAB is not up"
    local prefix
    prefix=$(sed 's/\.0\/24$//' "$RUN_DIR/subnet")
    echo "lab $LAB: subnet $prefix.0/24 on bridge $BRIDGE, root namespace at $prefix.254"
    local ns address docker_host state
    {
        echo "NAME ADDRESS DOCKERD STORAGE CONTAINERS DOCKER_HOST"
        while read -r ns address docker_host; do
            state=$(timeout 10 docker -H "$docker_host" info \
                --format '{{.ServerVersion}} {{.Driver}} {{.Containers}}' 2>/dev/null) ||
                state="down - -"
            echo "$ns $address $state $docker_host"
        done <"$RUN_DIR/hosts"
    } | column -t
}

main() {
    (($#)) || { usage >&2; exit 2; }
    local command=$1
    shift
    case $command in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        exec) cmd_exec "$@" ;;
        cut) cmd_link down cut "$@" ;;
        reconnect) cmd_link up reconnect "$@" ;;
        status) cmd_status "$@" ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
