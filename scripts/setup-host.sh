#!/usr/bin/env bash
# Brings a Debian 12 host to the state limen needs: system packages, a configured libvirtd that runs
# without systemd, and the demo boot ISO. Every step checks before it acts, so reruns are cheap and safe.
set -euo pipefail

ISO_DIR=${LIMEN_ISO_DIR:-/var/lib/limen/isos}
APT_PACKAGES=(
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
  libvirt-dev pkg-config
  python3-venv python3-dev  # the venv is made from Debian's python3; libvirt-python builds against its headers
  grub-pc-bin grub-common xorriso mtools grub-rescue-pc memtest86+
  chromium
  fonts-noto-cjk  # Korean in the UI: screenshots and headless Chromium need a CJK font
  redis-server
  postgresql
  nginx-light
  haproxy
  tini  # reaps the QEMUs libvirtd starts: see start_libvirtd
)

log() { printf '[setup] %s\n' "$*"; }

install_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_qemu_user() {
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  getent passwd libvirt-qemu >/dev/null || useradd --system -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
  mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/lib/libvirt/images /run/libvirt
}

# Sets one `key = value` line in qemu.conf, replacing an existing (possibly commented) line.
set_qemu_conf() {
  local key=$1 value=$2 conf=/etc/libvirt/qemu.conf
  touch "$conf"
  if grep -qE "^[# ]*${key}[[:space:]]*=" "$conf"; then
    grep -qxF "${key} = ${value}" "$conf" || sed -i -E "s|^[# ]*${key}[[:space:]]*=.*|${key} = ${value}|" "$conf"
  else
    printf '%s = %s\n' "$key" "$value" >>"$conf"
  fi
}

configure_libvirt() {
  # Without systemd there are no cgroups to delegate and no virtlogd; run QEMU as root without a
  # security driver, which is what a single-host test machine needs.
  set_qemu_conf user '"root"'
  set_qemu_conf group '"root"'
  set_qemu_conf security_driver '"none"'
  set_qemu_conf cgroup_controllers '[ ]'
  set_qemu_conf stdio_handler '"file"'
}

libvirtd_answers() { timeout 10 virsh -c qemu:///system version >/dev/null 2>&1; }

start_libvirtd() {
  if libvirtd_answers; then return; fi
  if pgrep -x libvirtd >/dev/null; then
    log "libvirtd runs but does not answer; restarting it"
    pkill -x libvirtd || true
    sleep 1
  fi
  rm -f /run/libvirtd.pid
  log "starting libvirtd"
  # libvirtd daemonizes each QEMU, whose parent becomes the nearest "subreaper" ancestor, else PID 1. Without
  # systemd, PID 1 may reap exited children late (this machine's init: ~1.5 s), and libvirt waits for a
  # stopped QEMU's pid to vanish: every VM stop took ~1.5 s more. tini -s, a subreaper above libvirtd, reaps
  # them at once; it also forwards signals to libvirtd and ends with it.
  setsid tini -s -- libvirtd >>/var/log/libvirt/libvirtd.out 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    libvirtd_answers && return
    sleep 0.5
  done
  echo "libvirtd did not answer within 30 s; see /var/log/libvirt" >&2
  exit 1
}

# build_grub_iso PATH: a GRUB rescue ISO whose grub.cfg is scripts/demo-iso/grub.cfg (screen and serial).
build_grub_iso() {
  local tree
  tree=$(mktemp -d)
  mkdir -p "$tree/boot/grub"
  cp "$(dirname "${BASH_SOURCE[0]}")/demo-iso/grub.cfg" "$tree/boot/grub/grub.cfg"
  grub-mkrescue -o "$1.tmp" "$tree" >/dev/null 2>&1
  mv "$1.tmp" "$1"
  rm -rf "$tree"
}

build_demo_iso() {
  mkdir -p "$ISO_DIR"
  local iso="$ISO_DIR/limen-grub-demo.iso"
  # Rebuilt when missing or when it predates the serial console (its grub.cfg lacks the serial lines).
  if [[ ! -s $iso ]] || ! grep -aq 'terminal_output console serial' "$iso"; then
    log "building the demo GRUB ISO at $iso"
    build_grub_iso "$iso"
  fi
  # The ISOs Debian's packages ship sit beside it, so users see every bootable image in one place.
  local shipped
  for shipped in /usr/lib/grub-rescue/grub-rescue-cdrom.iso /usr/lib/memtest86+/memtest86+x64.iso; do
    [[ -e $shipped && ! -e $ISO_DIR/$(basename "$shipped") ]] && ln -s "$shipped" "$ISO_DIR/$(basename "$shipped")"
  done
  return 0
}

install_packages
ensure_qemu_user
configure_libvirt
start_libvirtd
build_demo_iso
log "host ready (libvirt: qemu:///system, ISO dir: $ISO_DIR)"
