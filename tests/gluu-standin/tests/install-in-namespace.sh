#!/usr/bin/env bash
# Install the stand-in package with `dpkg -i` as root into the real file system view of an
# isolated namespace (ROOT = /, DPKG_ROOT empty, as on a real node), boot its machine, run
# setup inside it, check it, stop it and purge the package.
#
#   bash tests/gluu-standin/tests/install-in-namespace.sh [--hold] DEB
#
# The script re-runs itself under `unshare --mount --net --uts --ipc --pid --fork`. Inside:
# - mount propagation is private; a fresh tmpfs on /run holds the upper layers of overlays on
#   /etc, /opt, /usr, /var and /tmp (so dpkg, setup and the services write only to that tmpfs;
#   the container's userland is copied from the base, not hard-linked: the overlays are
#   separate mounts),
#   /dev/shm gets its own tmpfs, and / itself is re-bound read-only, so a write anywhere else fails
#   instead of reaching the host;
# - the network namespace has only `lo` (brought up here): every connection stays inside it;
# - the UTS namespace gets the hostname gluu-ns-node.
# There is no systemd on the namespace's /run, so /sbin/gluu-serverd runs the machine itself
# (systemd-nspawn). The machine shares the namespace's network: its services bind
# 127.0.0.1:1636 (LDAPS) and 127.0.0.1:443 (HTTPS), its console 127.0.0.1:60022.
# Everything vanishes when the namespace's first process exits: its mounts, its network stack
# and, being PID 1 of its own PID namespace, every process it leaves behind.
#
# With --hold, the script prints "node up", then waits (at most 60 s) for a line on standard
# input before stopping the node, so a caller can look at the host meanwhile.
#
# Output: one line per verified step ("machine booted", "ldap ok", "https ok", "dpkg installed VERSION",
# "no process left", ...) and "timing PHASE SECONDS" lines. Exit status 0 only when every
# step passed. The whole run is bounded by STANDIN_NS_TIMEOUT seconds (default 240).
set -euo pipefail

readonly NS_HOSTNAME=gluu-ns-node
readonly LB_HOSTNAME=lb.example.org
readonly IP=127.0.0.1
readonly PASSWORD='Ns-S3cret!pw'

die() {
    echo "install-in-namespace: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 [--hold] DEB" >&2
    exit 2
}

# ------------------------------------------------------------------ outside the namespace

outer() {
    local hold=""
    if [[ ${1:-} == --hold ]]; then
        hold=--hold
        shift
    fi
    [[ $# -eq 1 && -n $1 ]] || usage
    local deb
    deb=$(realpath -e -- "$1") || die "no such package: $1"
    [[ $(id -u) -eq 0 ]] || die "must run as root (dpkg -i into / and unshare need it)"
    local tool
    for tool in unshare mount ip dpkg dpkg-deb dpkg-query curl timeout hostname systemd-nspawn nsenter; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done

    local self
    self=$(realpath -e -- "${BASH_SOURCE[0]}")
    # --kill-child: when unshare dies, the namespace's PID 1 gets SIGKILL, which takes every
    # process of the PID namespace with it. unshare --fork ignores SIGTERM, so the time limit
    # sends SIGKILL.
    local rc=0
    timeout --foreground --signal=KILL "${STANDIN_NS_TIMEOUT:-240}" \
        unshare --mount --net --uts --ipc --pid --fork --kill-child --mount-proc \
        --propagation private \
        bash "$self" --inner $hold "$deb" || rc=$?
    case $rc in
        0) echo "namespace gone" ;;
        137) die "timed out after ${STANDIN_NS_TIMEOUT:-240}s or was killed (status $rc)" ;;
        *) die "failed inside the namespace (status $rc)" ;;
    esac
}

# ------------------------------------------------------------------ inside the namespace

step="preparing the namespace"
phase_start=$EPOCHREALTIME
t0=$EPOCHREALTIME

elapsed() { # START -> seconds since START, 3 decimals
    local now=$EPOCHREALTIME
    awk -v a="$1" -v b="$now" 'BEGIN { printf "%.3f", b - a }'
}

phase() { # NAME: report the time of the phase that ends now, start the next
    echo "timing $1 $(elapsed "$phase_start")"
    phase_start=$EPOCHREALTIME
}

# Live (non-zombie) processes of the machine in this PID namespace: its systemd-nspawn, its
# systemd and the services under it (nothing else of this namespace has these names).
node_processes() {
    local d comm state
    for d in /proc/[0-9]*; do
        comm=$(cat "$d/comm" 2>/dev/null) || continue
        case $comm in
            slapd | gluu-standin | systemd | systemd-nspawn | systemd-journal | sshd | dbus-daemon) ;;
            *) continue ;;
        esac
        state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "$d/status" 2>/dev/null) || continue
        [[ $state == Z || $state == X || -z $state ]] && continue
        echo "${d#/proc/} $(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)"
    done
}

# The machine's leader: PID 1 of a nested PID namespace whose root is /opt/gluu-server.
leader() {
    local d want
    want=$(stat -Lc '%d:%i' /opt/gluu-server 2>/dev/null) || return 1
    for d in /proc/[0-9]*; do
        grep -Eq '^NSpid:.*[[:space:]]1$' "$d/status" 2>/dev/null || continue
        [[ $(stat -Lc '%d:%i' "$d/root" 2>/dev/null) == "$want" ]] || continue
        echo "${d#/proc/}"
        return 0
    done
    return 1
}

# gluu-serverd start returns once the machine's init runs (like systemctl start of Gluu's
# Type=notify unit): wait for the leader, its systemd's socket, then the end of its boot.
wait_booted() {
    local pid="" deadline=$((SECONDS + 120)) state
    until pid=$(leader) && [[ -S /proc/$pid/root/run/systemd/private ]]; do
        ((SECONDS < deadline)) || die "the machine did not come up within 120 s"
        sleep 0.05
    done
    state=$(t 120 nsenter --target "$pid" --all -r -w -- systemctl is-system-running --wait) || true
    if [[ $state != running ]]; then
        # Say which unit failed and why, so a failure here can be read from the test's output.
        t 10 nsenter --target "$pid" --all -r -w -- systemctl --failed --no-pager --plain >&2 || true
        t 10 nsenter --target "$pid" --all -r -w -- journalctl -b --no-pager -n 40 -p warning >&2 || true
        die "the machine booted '$state'"
    fi
}

on_exit() {
    local rc=$?
    trap - EXIT
    if [[ $rc -ne 0 ]]; then
        echo "FAILED while $step (status $rc)" >&2
        local log
        for log in /opt/gluu-server/opt/opendj/logs/errors \
            /opt/gluu-server/opt/gluu/jetty/oxauth/logs/oxauth.log; do
            if [[ -f $log ]]; then
                echo "--- last lines of $log" >&2
                tail -n 15 "$log" >&2 || true
            fi
        done
        if [[ -x /sbin/gluu-serverd ]]; then
            timeout 30 /sbin/gluu-serverd stop >&2 || true
        fi
        # Whatever is still running is this namespace's own; it dies with this process (PID 1).
        node_processes >&2 || true
    fi
    exit "$rc"
}

# `timeout` on every external step: nothing waits unbounded.
t() { # SECONDS CMD...
    local limit=$1
    shift
    timeout --kill-after=5 "$limit" "$@"
}

overlay() { # DIR: a copy-on-write view of DIR whose changes live in the tmpfs on /run
    local dir=$1 name
    name=${dir#/}
    mkdir -p "/run/ns-overlay/$name/upper" "/run/ns-overlay/$name/work"
    mount -t overlay "ns-$name" \
        -o "lowerdir=$dir,upperdir=/run/ns-overlay/$name/upper,workdir=/run/ns-overlay/$name/work" \
        "$dir"
}

inner() {
    local hold=""
    if [[ ${1:-} == --hold ]]; then
        hold=1
        shift
    fi
    local deb=$1
    [[ $$ -eq 1 ]] || die "--inner is meant to run as PID 1 of a new PID namespace"
    trap on_exit EXIT

    # -------- mounts
    mount --make-rprivate /
    mount -t tmpfs -o mode=755,size=1g ns-run /run
    local dir
    for dir in /etc /opt /usr /var /tmp; do
        [[ -d $dir ]] || die "$dir is missing on this system"
        overlay "$dir"
    done
    if [[ ! -L /sbin ]]; then
        overlay /sbin # no merged /usr: dpkg writes /sbin/gluu-serverd here
        echo "overlay on /sbin"
    fi
    mount -t tmpfs -o mode=1777,size=64m ns-shm /dev/shm
    mount -o remount,bind,ro /
    if touch /.ns-write-probe 2>/dev/null; then
        rm -f /.ns-write-probe
        die "/ is still writable inside the namespace"
    fi
    export HOME=/tmp/ns-home TMPDIR=/tmp
    mkdir -p "$HOME"
    export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    echo "mounts private, overlays on /etc /opt /usr /var /tmp"

    # -------- network and host name
    ip link set lo up
    local links
    links=$(ip -o link show | awk -F': ' '{ print $2 }' | tr '\n' ' ')
    [[ $links == "lo " ]] || die "unexpected interfaces in the namespace: $links"
    echo "interfaces lo"
    hostname "$NS_HOSTNAME"
    [[ $(hostname) == "$NS_HOSTNAME" ]] || die "cannot set the host name"
    echo "uts hostname $NS_HOSTNAME"
    local port
    for port in 1636 443; do
        if (exec 3<>"/dev/tcp/$IP/$port") 2>/dev/null; then
            die "$IP:$port is already in use inside a fresh namespace"
        fi
    done
    [[ ! -e /opt/gluu-server ]] || die "/opt/gluu-server exists before dpkg -i"
    [[ ! -d /run/systemd/system ]] || die "systemd runs in the namespace?"
    mkdir -p /etc/default
    echo "GLUU_CONSOLE_ADDRESS=$IP" >/etc/default/gluu-server
    phase namespace

    # -------- dpkg -i (its postinst starts the machine)
    step="installing $deb"
    local want_version
    want_version=$(dpkg-deb -f "$deb" Version)
    t 120 dpkg -i "$deb"
    local status
    status=$(dpkg-query -W -f='${Status} ${Version}' gluu-server)
    [[ $status == "install ok installed $want_version" ]] ||
        die "dpkg-query says '$status', expected 'install ok installed $want_version'"
    [[ -x /sbin/gluu-serverd && -x /opt/gluu-server/install/community-edition-setup/setup.py ]] ||
        die "the package's programs are missing after dpkg -i"
    [[ -e /etc/systemd/system/machines.target.wants/systemd-nspawn@gluu-server.service ]] ||
        die "the postinst did not enable the machine"
    echo "dpkg installed $want_version"
    phase dpkg-install

    step="waiting for the machine to boot"
    wait_booted
    echo "machine booted"
    phase boot

    # -------- setup.py inside the machine (ip = the namespace's loopback, HTTPS port 443)
    step="running setup.py"
    local work=/tmp/ns-work
    mkdir -p "$work"
    cat >"/opt/gluu-server/root/setup.properties" <<PROPS
hostname=$LB_HOSTNAME
ip=$IP
ldapPass=$PASSWORD
orgName=Example Org
countryCode=US
city=Austin
state=TX
admin_email=admin@example.org
installOxAuth=True
installOxTrust=True
PROPS
    t 120 nsenter --target "$(leader)" --all -r -w -- /install/community-edition-setup/setup.py \
        -f /root/setup.properties -n --listen_all_interfaces -c
    # As Gluu 4.2.3: only the encrypted setup.properties.last.enc is left.
    local last=/opt/gluu-server/install/community-edition-setup/setup.properties.last
    [[ ! -e $last ]] || die "the plaintext setup.properties.last was left behind"
    printf '%s\n' "$PASSWORD" | t 10 openssl enc -d -aes-256-cbc -pass stdin -in "$last.enc" \
        | grep -qx 'https_port=443' || die "setup.properties.last.enc lacks https_port=443"
    echo "setup ok"
    phase setup

    # -------- gluu-serverd (setup started the services; the machine's boot starts them again)
    step="restarting the machine with /sbin/gluu-serverd"
    t 120 /sbin/gluu-serverd stop
    t 120 /sbin/gluu-serverd start
    wait_booted
    t 30 /sbin/gluu-serverd status >/dev/null
    echo "gluu-serverd start ok"
    phase start

    # -------- LDAPS
    step="checking LDAPS"
    printf '%s' "$PASSWORD" >/opt/gluu-server/root/ldap.pw
    chmod 600 /opt/gluu-server/root/ldap.pw
    local ldif
    ldif=$(t 20 nsenter --target "$(leader)" --all -r -w -- env LDAPTLS_CACERT=/etc/certs/openldap.crt \
        LDAPTLS_REQCERT=demand ldapsearch -H "ldaps://$IP:1636" -o nettimeout=10 -x \
        -D "cn=directory manager" -y /root/ldap.pw -LLL -b ou=oxauth,ou=configuration,o=gluu -s base oxRevision)
    grep -qx 'dn: ou=oxauth,ou=configuration,o=gluu' <<<"$ldif" ||
        die "ou=oxauth,ou=configuration,o=gluu not found: $ldif"
    grep -qx 'oxRevision: 1' <<<"$ldif" || die "unexpected oxRevision: $ldif"
    echo "ldap ok"

    # -------- HTTPS on port 443, under the load balancer's name, verifying the certificate
    step="checking HTTPS"
    local code="" body="" deadline=$((SECONDS + 20))
    while :; do
        code=$(t 15 curl -sS --max-time 10 --cacert /opt/gluu-server/etc/certs/httpd.crt \
            --resolve "$LB_HOSTNAME:443:$IP" -D "$work/headers" -o "$work/health" \
            -w '%{http_code}' "https://$LB_HOSTNAME/oxauth/restv1/health-check") || code=""
        [[ $code == 200 ]] && break
        ((SECONDS < deadline)) || die "health-check answered '${code:-nothing}' for 20 s"
        sleep 0.2
    done
    body=$(cat "$work/health")
    [[ $body == *'"status":"running"'* && $body == *'"db_status":"online"'* ]] ||
        die "unexpected health-check body: $body"
    grep -qi "^x-gluu-node: $IP" "$work/headers" || die "no X-Gluu-Node: $IP header"
    echo "https ok"
    phase checks

    if [[ -n $hold ]]; then
        step="waiting for the go-ahead on standard input"
        echo "node up"
        local reply
        read -r -t 60 reply || die "no go-ahead on standard input within 60 s"
        phase hold
    fi

    # -------- stop: nothing of the node may be left
    step="stopping the node"
    t 60 /sbin/gluu-serverd stop
    local left="" deadline=$((SECONDS + 10))
    while :; do
        left=$(node_processes)
        [[ -z $left ]] && break
        ((SECONDS < deadline)) || die "processes left after stop: $left"
        sleep 0.1
    done
    local st=0
    t 30 /sbin/gluu-serverd status || st=$?
    [[ $st -eq 3 ]] || die "gluu-serverd status after stop exited $st, expected 3"
    for port in 1636 443; do
        if (exec 3<>"/dev/tcp/$IP/$port") 2>/dev/null; then
            die "$IP:$port still accepts connections after stop"
        fi
    done
    echo "no process left"
    phase stop

    # -------- purge (the prerm keeps the container as /opt/gluu-server.save, as Gluu's does)
    step="purging the package"
    # dpkg then tries to rmdir /opt (it holds no package file any more): on a read-only / that
    # is EROFS, which dpkg does not ignore (EBUSY on the overlay's mount point, which it
    # does). So / is writable again for the purge; /opt, /etc, /usr and /var stay overlays.
    mount -o remount,bind,rw /
    t 120 dpkg --purge gluu-server
    if dpkg-query -W -f='${Status}' gluu-server 2>/dev/null | grep -q ' installed$'; then
        die "dpkg still lists gluu-server as installed"
    fi
    [[ ! -e /sbin/gluu-serverd ]] || die "/sbin/gluu-serverd is left after purge"
    [[ ! -e /opt/gluu-server ]] || die "/opt/gluu-server is left after purge"
    [[ -e /opt/gluu-server.save/install/community-edition-setup/setup.properties.last.enc ]] ||
        die "the container was not saved as /opt/gluu-server.save"
    [[ ! -e /etc/gluu/keys ]] || die "the console key is left after purge"
    echo "purged"
    phase purge
    echo "timing total $(elapsed "$t0")"
    step="leaving the namespace"
}

if [[ ${1:-} == --inner ]]; then
    shift
    inner "$@"
else
    outer "$@"
fi
