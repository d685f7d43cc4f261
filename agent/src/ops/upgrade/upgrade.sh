#!/bin/sh
# Replaces clustermgr-agent with a new package. Run by the agent in the transient systemd unit
# clustermgr-agent-upgrade, outside the agent's own unit: the package's prerm stops the agent
# and its postinst starts it again, which would kill a dpkg started inside that unit.
#
# Keeps the installed package (rebuilt from the dpkg database, as dpkg-repack does) as
# DIR/previous.deb, installs NEW_DEB, and waits until the new agent has a session with the
# controller (it writes its package version to DIR/online when the controller welcomes it).
# If none comes within WITHIN seconds, or the install fails, previous.deb goes back. Nothing is
# installed unless previous.deb is the installed package whole: every file the package lists is
# on disk and unchanged (its md5sums), and every maintainer script was copied.
# The verdict, one line in RESULT:
#   upgraded OLD NEW | rolled-back OLD NEW REASON | failed REASON
#
# Usage: upgrade.sh DIR NEW_DEB NEW_VERSION WITHIN RESULT
# (UPGRADE_ROOT: the file system the package is installed in, "" for /; tests use a copy.)
set -u
pkg=clustermgr-agent
root=${UPGRADE_ROOT:-}
info=$root/var/lib/dpkg/info/$pkg

verdict() {
    printf '%s\n' "$*" >"$result.tmp" && mv -f "$result.tmp" "$result"
    echo "$*"
}

keep_failed() {
    verdict "failed cannot copy $1 to keep the installed $pkg; nothing was changed"
    exit 1
}

# The installed package is whole on disk: prints the first problem and fails otherwise.
installed_intact() {
    [ -f "$info.list" ] || { echo "$info.list is missing"; return 1; }
    while IFS= read -r p; do
        [ "$p" = "/." ] && continue
        if [ ! -e "$root$p" ] && [ ! -L "$root$p" ]; then
            echo "$p (listed by the installed $pkg) is missing"
            return 1
        fi
    done <"$info.list"
    [ -f "$info.md5sums" ] || return 0
    # The sums of the files dpkg installed (not those a path-exclude left out), conffiles
    # excepted: they are the administrator's to change.
    conffiles=$info.conffiles
    [ -f "$conffiles" ] || conffiles=/dev/null
    changed=$(awk 'FILENAME == ARGV[1] { listed[substr($0, 2)] = 1; next }
        FILENAME == ARGV[2] { conf[substr($1, 2)] = 1; next }
        { p = substr($0, 35) } (p in listed) && !(p in conf)' \
        "$info.list" "$conffiles" "$info.md5sums" |
        (cd "$root/" && md5sum --quiet -c - 2>/dev/null) | head -n 1)
    if [ -n "$changed" ]; then
        echo "/${changed%: *} differs from the installed $pkg (md5sums)"
        return 1
    fi
}

# dpkg -i FILE; on failure prints why (a lock held by another dpkg or apt said so).
dpkg_install() {
    err=$dir/dpkg.err
    # dpkg's output goes to the journal, its errors are read here.
    if dpkg --force-confold -i "$1" >&2 2>"$err"; then
        cat "$err" >&2
        return 0
    fi
    cat "$err" >&2
    locked='locked by another process|database is locked|frontend lock'
    if grep -qiE "$locked" "$err"; then
        echo "dpkg is locked by another process ($(grep -iE -m 1 "$locked" "$err"))"
    else
        echo "dpkg -i $1 failed"
    fi
    return 1
}

dir=$1 new=$2 version=$3 within=$4 result=$5

old=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null) || old=""
if [ -z "$old" ]; then
    verdict "failed $pkg is not installed from a package"
    exit 1
fi

if [ "$(dpkg-deb -f "$dir/previous.deb" Version 2>/dev/null)" != "$old" ]; then
    echo "keeping $pkg $old as $dir/previous.deb"
    tree=$dir/repack
    rm -rf "$tree" && mkdir -p "$tree/DEBIAN" || keep_failed "$tree"
    if ! why=$(installed_intact); then
        verdict "failed $why: the installed $pkg cannot be kept whole (reinstall it: apt-get install --reinstall $pkg); nothing was changed"
        exit 1
    fi
    dpkg-query -s "$pkg" >"$tree/status" || keep_failed "the dpkg status of $pkg"
    awk '/^[^ ]/ { skip = ($1 == "Status:" || $1 == "Conffiles:") } !skip' \
        <"$tree/status" >"$tree/DEBIAN/control" || keep_failed "the dpkg status of $pkg"
    rm -f "$tree/status"
    for f in preinst postinst prerm postrm conffiles md5sums; do
        if [ -f "$info.$f" ]; then
            cp -p "$info.$f" "$tree/DEBIAN/$f" || keep_failed "$info.$f"
        fi
    done
    # Directories through a symbolic link of the system (/lib -> usr/lib on merged-/usr) are
    # left to the system: the package lists the paths it shipped.
    while IFS= read -r p; do
        [ "$p" = "/." ] && continue
        if [ -d "$root$p" ]; then
            [ -L "$root$p" ] || mkdir -p "$tree$p" || keep_failed "$p"
        elif [ -f "$root$p" ] || [ -L "$root$p" ]; then
            mkdir -p "$tree$(dirname "$p")" && cp -a "$root$p" "$tree$p" || keep_failed "$p"
        fi
    done <"$info.list"
    if ! dpkg-deb --root-owner-group -Zgzip -b "$tree" "$dir/previous.deb.tmp" >/dev/null; then
        verdict "failed cannot rebuild the installed $pkg $old to keep it; nothing was changed"
        exit 1
    fi
    mv -f "$dir/previous.deb.tmp" "$dir/previous.deb"
    rm -rf "$tree"
fi

rm -f "$dir/online"
echo "installing $pkg $version over $old"
if why=$(dpkg_install "$new"); then
    end=$(($(date +%s) + within))
    while [ "$(date +%s)" -lt "$end" ]; do
        if [ "$(cat "$dir/online" 2>/dev/null)" = "$version" ]; then
            verdict "upgraded $old $version"
            exit 0
        fi
        sleep 1
    done
    why="the new agent ($version) did not come online within ${within}s"
else
    case $why in
    "dpkg is locked"*)
        verdict "failed $why: $pkg $version was not installed, $old is still installed; nothing was changed"
        exit 1
        ;;
    esac
    why="dpkg -i of $pkg $version failed"
fi
echo "$why; reinstalling $old"
rm -f "$dir/online"
if back=$(dpkg_install "$dir/previous.deb"); then
    verdict "rolled-back $old $version $why"
else
    verdict "failed $why, and reinstalling $old failed: $back; install $dir/previous.deb (journalctl -u clustermgr-agent-upgrade)"
fi
exit 1
