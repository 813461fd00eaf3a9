#!/bin/sh
# A second, independent libvirt host on this machine, for tests and `make cluster`.
#
#   scripts/extra-host.sh start STATE_DIR ADDRESS VNC_MIN VNC_MAX   # prints the daemon's PID
#   scripts/extra-host.sh stop STATE_DIR                            # kills that daemon and its VMs
#
# The daemon runs in its own mount namespace with /run/libvirt, /var/lib/libvirt, /etc/libvirt (only the
# *.conf files of this machine's, so none of its VMs, networks or pools), /var/log/libvirt and
# /var/cache/libvirt bind-mounted from STATE_DIR. It listens for qemu+tcp (no auth) on ADDRESS only, and
# its VMs' VNC servers listen there too, on ports VNC_MIN..VNC_MAX, so they never meet the machine's own
# libvirtd (qemu:///system), which this script never touches. ADDRESS must be a loopback address. Its own
# host UUID lets libvirt migrate VMs between such hosts (it refuses a migration to the "same" host).
set -eu

usage() { echo "usage: $0 start STATE_DIR ADDRESS VNC_MIN VNC_MAX | stop STATE_DIR" >&2; exit 2; }

start() {
    state=$(realpath -m "$1"); address=$2; vnc_min=$3; vnc_max=$4
    case "$address" in 127.*) ;; *) echo "$0: $address is not a loopback address" >&2; exit 2 ;; esac
    mkdir -p "$state/run" "$state/lib/images" "$state/etc/qemu/autostart" "$state/etc/storage/autostart" \
             "$state/etc/qemu/networks/autostart" "$state/log" "$state/cache"
    for conf in /etc/libvirt/*.conf; do cp "$conf" "$state/etc/"; done
    cat > "$state/etc/libvirtd.conf" <<CONF
listen_tcp = 1
listen_tls = 0
listen_addr = "$address"
auth_tcp = "none"
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
unix_sock_dir = "/run/libvirt"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
CONF
    cat >> "$state/etc/qemu.conf" <<CONF
vnc_listen = "$address"
remote_display_port_min = $vnc_min
remote_display_port_max = $vnc_max
CONF
    # unshare: the bind mounts are seen by this daemon (and its QEMUs) only.
    unshare --mount --propagation private sh -c '
        state=$1
        mount --bind "$state/run" /run/libvirt
        mount --bind "$state/lib" /var/lib/libvirt
        mount --bind "$state/etc" /etc/libvirt
        mount --bind "$state/log" /var/log/libvirt
        mount --bind "$state/cache" /var/cache/libvirt
        exec libvirtd --listen --pid-file "$state/libvirtd.pid" --config /etc/libvirt/libvirtd.conf
    ' extra-host "$state" >"$state/stdout.log" 2>&1 &
    echo $! > "$state/unshare.pid"
    # The daemon answers once its TCP socket is up.
    for _ in $(seq 1 100); do
        if virsh -c "qemu+tcp://$address/system" version >/dev/null 2>&1; then
            cat "$state/unshare.pid"; return 0
        fi
        sleep 0.1
    done
    echo "$0: libvirtd on $address did not answer within 10 s; see $state/log/libvirtd.log" >&2
    stop "$state"; exit 1
}

stop() {
    state=$(realpath -m "$1")
    [ -f "$state/unshare.pid" ] || return 0
    pid=$(cat "$state/unshare.pid")
    # The QEMUs first (their pid files are in this host's /run/libvirt), then the daemon; never by name.
    for qemu_pid in "$state"/run/qemu/*.pid; do
        [ -f "$qemu_pid" ] && kill -9 "$(cat "$qemu_pid")" 2>/dev/null || true
    done
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$state/unshare.pid"
}

[ $# -ge 1 ] || usage
case "$1" in
    start) [ $# -eq 5 ] || usage; start "$2" "$3" "$4" "$5" ;;
    stop) [ $# -eq 2 ] || usage; stop "$2" ;;
    *) usage ;;
esac
