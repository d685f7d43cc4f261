#!/bin/sh
# Gluu Server stand-in: the web applications' versions (setup installs this file as
# /opt/gluu/bin/show_version.py, which gluu-serverd version runs).
exec /opt/gluu/bin/gluu-standin show-version
