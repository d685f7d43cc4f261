#!/bin/sh
# Replaces clustermgr-agent with a new package. Run by the agent in the transient systemd unit
# clustermgr-agent-upgrade, outside the agent's own unit: the package's prerm stops the agent
# and its postinst starts it again, which would kill a dpkg started inside that unit.
#
# Keeps the installed package (rebuilt from the dpkg database, as dpkg-repack does) as
# DIR/previous.deb, installs NEW_DEB, and waits until the new agent has a session with the
# controller (it writes its package version to DIR/online when the controller welcomes it).
# If none comes within WITHIN seconds, or the install fails, previous.deb goes back.
# The verdict, one line in RESULT:
#   upgraded OLD NEW | rolled-back OLD NEW REASON | failed REASON
#
# Usage: upgrade.sh DIR NEW_DEB NEW_VERSION WITHIN RESULT
set -u
dir=$1 new=$2 version=$3 within=$4 result=$5
pkg=clustermgr-agent

verdict() {
    printf '%s\n' "$*" >"$result.tmp" && mv -f "$result.tmp" "$result"
    echo "$*"
}

keep_failed() {
    verdict "failed cannot copy $1 to keep the installed $pkg; nothing was changed"
    exit 1
}

old=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null) || old=""
if [ -z "$old" ]; then
    verdict "failed $pkg is not installed from a package"
    exit 1
fi

if [ "$(dpkg-deb -f "$dir/previous.deb" Version 2>/dev/null)" != "$old" ]; then
    echo "keeping $pkg $old as $dir/previous.deb"
    tree=$dir/repack
    rm -rf "$tree" && mkdir -p "$tree/DEBIAN" || keep_failed "$tree"
    dpkg-query -s "$pkg" |
        awk '/^[^ ]/ { skip = ($1 == "Status:" || $1 == "Conffiles:") } !skip' >"$tree/DEBIAN/control"
    info=/var/lib/dpkg/info/$pkg
    for f in preinst postinst prerm postrm conffiles md5sums; do
        [ -f "$info.$f" ] && cp -p "$info.$f" "$tree/DEBIAN/$f"
    done
    # Directories through a symbolic link of the system (/lib -> usr/lib on merged-/usr) are
    # left to the system: the package lists the paths it shipped.
    while IFS= read -r p; do
        [ "$p" = "/." ] && continue
        if [ -d "$p" ]; then
            [ -L "$p" ] || mkdir -p "$tree$p" || keep_failed "$p"
        elif [ -f "$p" ] || [ -L "$p" ]; then
            mkdir -p "$tree$(dirname "$p")" && cp -a "$p" "$tree$p" || keep_failed "$p"
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
if dpkg --force-confold -i "$new"; then
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
    why="dpkg -i of $pkg $version failed"
fi
echo "$why; reinstalling $old"
rm -f "$dir/online"
if dpkg --force-confold -i "$dir/previous.deb"; then
    verdict "rolled-back $old $version $why"
else
    verdict "failed $why, and reinstalling $old failed too: see journalctl -u clustermgr-agent-upgrade"
fi
exit 1
