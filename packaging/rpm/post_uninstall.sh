# edgeplane %postun ($1: 0 = removal, >= 1 = upgrade). Reload unit files; on
# upgrade restart the service only if it was running (the pinned programs
# stay attached across the restart, so forwarding does not stop).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart edgeplane.service >/dev/null 2>&1 || :
    fi
fi
exit 0
