# edgeplane %post ($1: 1 = first install, 2 = upgrade). Same policy as the
# .deb: not enabled or started on install (host-interfaces must be set first);
# the restart on upgrade happens in %postun, after the old files are gone.
# config.d comes with its README (a %config file); recreate it should an
# admin have removed it. (`run` waits for a missing directory in any case.)
mkdir -p -m 0755 /etc/edgeplane/config.d
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    echo "edgeplane: installed, not enabled. Set host-interfaces in /etc/edgeplane/edgeplane.yaml,"
    echo "edgeplane: put Kubernetes YAML in /etc/edgeplane/config.d, then: systemctl enable --now edgeplane"
fi
exit 0
