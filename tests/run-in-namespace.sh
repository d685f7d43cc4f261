#!/usr/bin/env bash
# Run one command as root in an isolated copy of this machine: its own mount, network, UTS, IPC
# and PID namespaces, with every write to the system landing in a tmpfs that vanishes with it.
#
#   bash tests/run-in-namespace.sh [--hostname NAME] -- CMD [ARG...]
#
# The same isolation as tests/gluu-standin/tests/install-in-namespace.sh (which keeps its own
# copy, tied to the stand-in's checks), for any command:
# - mount propagation is private; a fresh tmpfs on /run holds the upper layers of overlays on
#   /etc, /opt, /usr, /var and /tmp (and /sbin, /bin, /lib when they are not symlinks into /usr),
#   so dpkg, apt-get and whatever CMD starts write only to that tmpfs; /dev/shm gets its own
#   tmpfs; / itself is re-bound read-only, so a write anywhere else (e.g. the build's target
#   directory) fails instead of reaching the host;
# - the network namespace has only `lo` (brought up here): CMD and everything it starts talk to
#   each other on loopback and cannot reach, or be reached from, the host;
# - the UTS namespace gets the host name NAME (default clustermgr-ns);
# - CMD runs as a child of the namespace's PID 1 (this script), so when CMD ends, PID 1 exits and
#   the kernel kills every process left in the namespace; its mounts and network stack go too.
#
# CMD keeps the environment, except PATH (the system's), HOME=/tmp/ns-home and TMPDIR=/tmp.
# Set-up messages go to standard error, prefixed "run-in-namespace:"; standard output is CMD's.
# Exit status: CMD's; 137 when the time limit (RUN_IN_NAMESPACE_TIMEOUT seconds, default 300)
# killed the namespace; 1 when the namespace could not be set up.
set -euo pipefail

say() {
    echo "run-in-namespace: $*" >&2
}

die() {
    say "$*"
    exit 1
}

usage() {
    echo "usage: $0 [--hostname NAME] -- CMD [ARG...]" >&2
    exit 2
}

# ------------------------------------------------------------------ outside the namespace

outer() {
    local name=clustermgr-ns
    while [[ $# -gt 0 ]]; do
        case $1 in
            --hostname)
                [[ $# -ge 2 && -n $2 ]] || usage
                name=$2
                shift 2
                ;;
            --)
                shift
                break
                ;;
            *) usage ;;
        esac
    done
    [[ $# -ge 1 ]] || usage
    [[ $(id -u) -eq 0 ]] || die "must run as root (unshare and the overlay mounts need it)"
    local tool
    for tool in unshare mount ip hostname timeout; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done
    grep -qw overlay /proc/filesystems || die "the kernel has no overlay file system"

    local self limit=${RUN_IN_NAMESPACE_TIMEOUT:-300}
    self=$(realpath -e -- "${BASH_SOURCE[0]}")
    # --kill-child: when unshare dies, the namespace's PID 1 gets SIGKILL, which takes every
    # process of the PID namespace with it. unshare --fork ignores SIGTERM, so the time limit
    # sends SIGKILL.
    local rc=0
    timeout --foreground --signal=KILL "$limit" \
        unshare --mount --net --uts --ipc --pid --fork --kill-child --mount-proc \
        --propagation private \
        bash "$self" --inner "$name" "$@" || rc=$?
    if [[ $rc -eq 137 ]]; then
        say "timed out after ${limit}s or was killed (status $rc)"
    fi
    exit "$rc"
}

# ------------------------------------------------------------------ inside the namespace

overlay() { # DIR: a copy-on-write view of DIR whose changes live in the tmpfs on /run
    local dir=$1 name
    name=${dir#/}
    mkdir -p "/run/ns-overlay/$name/upper" "/run/ns-overlay/$name/work"
    mount -t overlay "ns-$name" \
        -o "lowerdir=$dir,upperdir=/run/ns-overlay/$name/upper,workdir=/run/ns-overlay/$name/work" \
        "$dir"
}

inner() {
    local name=$1
    shift
    [[ $$ -eq 1 ]] || die "--inner is meant to run as PID 1 of a new PID namespace"

    # -------- mounts
    mount --make-rprivate /
    mount -t tmpfs -o mode=755,size=512m ns-run /run
    local dir
    for dir in /etc /opt /usr /var /tmp; do
        [[ -d $dir ]] || die "$dir is missing on this system"
        overlay "$dir"
    done
    for dir in /sbin /bin /lib; do
        # Without merged /usr, dpkg also writes these.
        if [[ -d $dir && ! -L $dir ]]; then
            overlay "$dir"
        fi
    done
    mount -t tmpfs -o mode=1777,size=64m ns-shm /dev/shm
    mount -o remount,bind,ro /
    if touch /.ns-write-probe 2>/dev/null; then
        rm -f /.ns-write-probe
        die "/ is still writable inside the namespace"
    fi

    # -------- network and host name
    ip link set lo up
    local links
    links=$(ip -o link show | awk -F': ' '{ print $2 }' | tr '\n' ' ')
    [[ $links == "lo " ]] || die "unexpected interfaces in the namespace: $links"
    hostname "$name"
    [[ $(hostname) == "$name" ]] || die "cannot set the host name"
    say "ready: overlays on /etc /opt /usr /var /tmp, / read-only, interfaces lo, hostname $name"

    export HOME=/tmp/ns-home TMPDIR=/tmp
    export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    mkdir -p "$HOME"
    # A child, not exec: PID 1 stays this shell, and its exit ends the namespace.
    local rc=0
    "$@" || rc=$?
    exit "$rc"
}

if [[ ${1:-} == --inner ]]; then
    shift
    inner "$@"
else
    outer "$@"
fi
