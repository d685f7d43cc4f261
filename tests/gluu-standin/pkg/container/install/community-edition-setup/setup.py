#!/bin/sh
# Gluu Server stand-in: the setup program (not Python). Takes Gluu's flags (-f setup.properties,
# -n, -c, --listen_all_interfaces, --no-data); runs inside the booted machine.
here=$(cd "$(dirname "$0")" && pwd) || exit 1
exec "$here/../../opt/gluu/bin/gluu-standin" setup "$@"
