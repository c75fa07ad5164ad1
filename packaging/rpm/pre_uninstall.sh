# edgeplane %preun ($1: 0 = removal, 1 = upgrade). On removal: stop and
# disable the service, then detach and unpin the data plane, which would
# otherwise keep forwarding with nothing left to manage it. Upgrades keep it.
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl --no-reload disable --now edgeplane.service >/dev/null 2>&1 || :
    fi
    if [ -x /usr/bin/edgeplane ]; then
        /usr/bin/edgeplane reset ||
            echo "edgeplane: 'edgeplane reset' failed; pinned programs may remain under the state-dir" >&2
    fi
fi
exit 0
