#!/bin/bash
# Run by tests/integration/test_qemu_as_its_own_user.py inside `unshare --mount --propagation private`: a
# libvirtd of its own whose QEMU runs as libvirt-qemu (as on a stock Debian host), and /var/lib/limen a
# directory of WORK's laid out as a packaged install made it before (data dir and ISO library 0700). It says,
# a line each: doctor's QEMU file access check; then runs `limen serve` once (an upgrade's first start) and
# says the modes, the check again, and whether a VM with a pool disk and a library ISO starts, as whom.
# (One start only: libvirt probes QEMU again for each, ~45 s here, as /dev/kvm is not libvirt-qemu's.)
# Arguments: WORK CACHE ISO LIMEN PORT. CACHE is libvirt's /var/cache/libvirt there (its probes of QEMU), so
# that the real libvirtd's is not written over.
set -u
WORK=$1 CACHE=$2 ISO=$3 LIMEN=$4 PORT=$5
mkdir -p "$WORK"/{run,lib/qemu,log/qemu,etc/qemu,etc/storage,state} "$CACHE"
cp /etc/libvirt/qemu.conf /etc/libvirt/libvirt.conf "$WORK/etc/"  # not the real libvirtd's VMs and pools
sed -i -E 's/^[# ]*(user|group)[[:space:]]*=.*/\1 = "libvirt-qemu"/' "$WORK/etc/qemu.conf"
mount --bind "$WORK/run" /run/libvirt
mount --bind "$WORK/lib" /var/lib/libvirt
mount --bind "$WORK/etc" /etc/libvirt
mount --bind "$WORK/log" /var/log/libvirt
mount --bind "$CACHE" /var/cache/libvirt
mount --bind "$WORK/state" /var/lib/limen
L=/var/lib/limen
install -d -m 0700 $L/isos
install -d -m 0711 $L/pool  # as libvirt builds a pool's directory
install -m 0600 "$ISO" $L/isos/demo.iso
qemu-img create -q -f qcow2 $L/pool/disk.qcow2 64M && chmod 0600 $L/pool/disk.qcow2
chmod 0700 $L
libvirtd -p "$WORK/libvirtd.pid" >"$WORK/libvirtd.out" 2>&1 &
LIBVIRTD=$!
trap 'kill $LIBVIRTD; wait $LIBVIRTD' EXIT
for _ in $(seq 300); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
cat >"$WORK/vm.xml" <<XML
<domain type='qemu'><name>limen-test-qemu-user</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type><boot dev='cdrom'/></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$L/pool/disk.qcow2'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='$L/isos/demo.iso'/><target dev='sdb' bus='sata'/><readonly/></disk>
</devices></domain>
XML
export LIMEN_LIBVIRT_URI=qemu:///system LIMEN_DATA_DIR=$L LIMEN_ISO_DIR=$L/isos LIMEN_LOG_DIR="$WORK/limen-log" \
  LIMEN_STORAGE_POOL_DIR=$L/pool LIMEN_LANG=en LIMEN_PORT=$PORT LIMEN_LIBVIRT_TIMEOUT=120
doctor() {
  "$LIMEN" --json doctor >"$WORK/doctor.json" 2>"$WORK/doctor.err"
  echo "doctor: $(python3 -c 'import json, sys
print(*[(c["outcome"], c["detail"]) for c in json.load(sys.stdin)["checks"] if c["name"] == "QEMU file access"][0])' \
    <"$WORK/doctor.json")"
}
start_vm() {
  if virsh -c qemu:///system create "$WORK/vm.xml" >"$WORK/create.out" 2>&1; then
    echo "vm: started as $(ps -o user= -p "$(cat /run/libvirt/qemu/limen-test-qemu-user.pid)")"
    virsh -c qemu:///system destroy limen-test-qemu-user >/dev/null
  else
    echo "vm: $(tr '\n' ' ' <"$WORK/create.out")"
  fi
}
doctor
"$LIMEN" serve >"$WORK/serve.out" 2>&1 &
for _ in $(seq 300); do grep -q "serving on\|^limen:" "$WORK/serve.out" && break; sleep 0.1; done
kill $!; wait $!
echo "modes: $(stat -c '%n %a' $L $L/isos | tr '\n' ' ')"
doctor
start_vm
