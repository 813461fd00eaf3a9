#!/bin/bash
# Run by tests/integration/test_qemu_as_its_own_user.py inside `unshare --mount --propagation private`: a
# libvirtd of its own whose QEMU runs as libvirt-qemu (as on a stock Debian host), and /var/lib/limen a
# directory of WORK's laid out as a packaged install made it before (data dir and ISO library 0700). It says,
# a line each: doctor's QEMU file access check; then runs `limen serve` once (an upgrade's first start) and
# says the modes, the check again, whether a VM (as limen defines it) with a pool disk and a library ISO starts,
# as whom, on which display, and boots from the ISO, and the ISO's owner and mode after the VM stopped.
# (One start only: libvirt probes QEMU again for each, ~45 s here, as /dev/kvm is not libvirt-qemu's.)
# Arguments: WORK CACHE ISO LIMEN PORT VNC_MIN VNC_MAX. CACHE is libvirt's /var/cache/libvirt there (its probes
# of QEMU), so that the real libvirtd's is not written over. VNC_MIN–VNC_MAX is its VM's display port range:
# the two libvirtds share the network and neither knows the other's ports, so on the default 5900+ one's
# check that a port is free and its QEMU's bind could straddle the other's (a VM of the real libvirtd then
# failed to start: "Failed to find an available port").
set -u
WORK=$1 CACHE=$2 ISO=$3 LIMEN=$4 PORT=$5 VNC_MIN=$6 VNC_MAX=$7
mkdir -p "$WORK"/{run,lib/qemu,log/qemu,etc/qemu,etc/storage,state} "$CACHE"
cp /etc/libvirt/qemu.conf /etc/libvirt/libvirt.conf "$WORK/etc/"  # not the real libvirtd's VMs and pools
sed -i -E 's/^[# ]*(user|group)[[:space:]]*=.*/\1 = "libvirt-qemu"/' "$WORK/etc/qemu.conf"
sed -i -E '/^[[:space:]]*remote_display_port_(min|max)[[:space:]]*=/d' "$WORK/etc/qemu.conf"
printf 'remote_display_port_min = %d\nremote_display_port_max = %d\n' "$VNC_MIN" "$VNC_MAX" >>"$WORK/etc/qemu.conf"
mount --bind "$WORK/run" /run/libvirt
mount --bind "$WORK/lib" /var/lib/libvirt
mount --bind "$WORK/etc" /etc/libvirt
mount --bind "$WORK/log" /var/log/libvirt
mount --bind "$CACHE" /var/cache/libvirt
mount --bind "$WORK/state" /var/lib/limen
L=/var/lib/limen
install -d -m 0700 $L/isos
install -d -m 0711 $L/pool  # as libvirt builds a pool's directory
install -m 0600 "$ISO" $L/isos/demo.iso  # as an older limen uploaded it, under the service's umask 0077
qemu-img create -q -f qcow2 $L/pool/disk.qcow2 64M && chmod 0600 $L/pool/disk.qcow2
chmod 0700 $L
libvirtd -p "$WORK/libvirtd.pid" >"$WORK/libvirtd.out" 2>&1 &
LIBVIRTD=$!
trap 'kill $LIBVIRTD; wait $LIBVIRTD' EXIT
for _ in $(seq 300); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
# The VM as limen defines it: its CD-ROM must not be relabelled (libvirt would leave the ISO libvirt-qemu's).
"$(dirname "$LIMEN")/python" - "$L" >"$WORK/vm.xml" <<'PY'
import sys
from datetime import UTC, datetime
from limen.hypervisor.domain_xml import DomainPlan, build_domain_xml
data = sys.argv[1]
print(build_domain_xml(DomainPlan(
    name="limen-test-qemu-user", virt_type="qemu", vcpus=1, memory_mib=64, vnc_listen="127.0.0.1",
    created_at=datetime.now(UTC), disk_path=f"{data}/pool/disk.qcow2", iso_path=f"{data}/isos/demo.iso",
    boot_order=("cdrom", "hd"))))
PY
export LIMEN_LIBVIRT_URI=qemu:///system LIMEN_DATA_DIR=$L LIMEN_ISO_DIR=$L/isos LIMEN_LOG_DIR="$WORK/limen-log" \
  LIMEN_STORAGE_POOL_DIR=$L/pool LIMEN_LANG=en LIMEN_PORT=$PORT LIMEN_LIBVIRT_TIMEOUT=120
doctor() {
  "$LIMEN" --json doctor >"$WORK/doctor.json" 2>"$WORK/doctor.err"
  echo "doctor: $(python3 -c 'import json, sys
print(*[(c["outcome"], c["detail"]) for c in json.load(sys.stdin)["checks"] if c["name"] == "QEMU file access"][0])' \
    <"$WORK/doctor.json")"
}
iso_read_bytes() {
  virsh -c qemu:///system domblkstat limen-test-qemu-user hdc 2>/dev/null | awk '$2 == "rd_bytes" {print $3}'
}
start_vm() {
  if virsh -c qemu:///system create "$WORK/vm.xml" >"$WORK/create.out" 2>&1; then
    echo "vm: started as $(ps -o user= -p "$(cat /run/libvirt/qemu/limen-test-qemu-user.pid)")"
    echo "vnc: $(virsh -c qemu:///system domdisplay limen-test-qemu-user)"
    # The firmware boots from the CD-ROM: QEMU reads the ISO (it boots the ISO, not only opens it).
    for _ in $(seq 600); do [ "$(iso_read_bytes)" -gt 0 ] 2>/dev/null && break; sleep 0.1; done
    echo "boot: $(iso_read_bytes) bytes read from the ISO"
    virsh -c qemu:///system destroy limen-test-qemu-user >/dev/null
    echo "iso after: $(stat -c '%U %a' $L/isos/demo.iso)"
  else
    echo "vm: $(tr '\n' ' ' <"$WORK/create.out")"
  fi
}
doctor
"$LIMEN" serve >"$WORK/serve.out" 2>&1 &
for _ in $(seq 300); do grep -q "serving on\|^limen:" "$WORK/serve.out" && break; sleep 0.1; done
kill $!; wait $!
echo "modes: $(stat -c '%n %a' $L $L/isos $L/isos/demo.iso | tr '\n' ' ')"
doctor
start_vm
