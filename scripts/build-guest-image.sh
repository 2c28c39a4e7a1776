#!/usr/bin/env bash
# Builds, once per machine and per set of inputs, the Debian 12 guest image the QEMU test fixture
# (pvpn-testkit's `vm` module) boots: the pristine debootstrap root (scripts/debootstrap-root.sh)
# plus Debian's cloud kernel, udev, kmod, iproute2, ping, wireguard-tools and openssh-server, an
# initramfs that loads the virtio drivers, and a boot unit that takes the guest's address and the
# test run's SSH key from the kernel command line. Prints the image directory, which holds
# `vmlinuz`, `initrd.img` and `rootfs.img` (raw ext4, read-only base for per-test overlays).
#
# The directory name carries a hash of this script, the package list and the kernel version the
# mirror offers, so a change to any of them builds a new image. Concurrent callers wait on one
# lock. Environment: PVPN_TEST_CACHE (default /var/cache/pvpn-test), PVPN_DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1;34m[build-guest-image]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[1;31m[build-guest-image] FAILED:\033[0m %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (chroot and mounts need it)"
for tool in mkfs.ext4 chroot tar flock sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing: run scripts/setup.sh"
done

cache=${PVPN_TEST_CACHE:-/var/cache/pvpn-test}
packages=(linux-image-cloud-amd64 initramfs-tools udev kmod iproute2 iputils-ping wireguard-tools openssh-server)
# The kernel the mirror serves today: the host runs the same Debian release with the same apt
# sources, which the guest root gets too.
kernel=$(apt-cache policy linux-image-cloud-amd64 2>/dev/null | awk '/Candidate:/ {print $2}')
key=$( { cat "$0"; echo "${packages[*]}"; echo "kernel=${kernel:-unknown}"; } | sha256sum | cut -c1-16)
image=$cache/guest-bookworm-$key

if [ -s "$image/rootfs.img" ]; then
    echo "$image"
    exit 0
fi

pristine_tar=$(scripts/debootstrap-root.sh)
exec 8>"$cache/guest-image.lock"
flock 8
if [ -s "$image/rootfs.img" ]; then
    echo "$image"
    exit 0
fi

log "building the guest image $image (kernel ${kernel:-unknown})"
build=$(mktemp -d "$cache/guest-build.XXXXXX")
root=$build/root
cleanup() {
    for m in dev/pts dev proc sys; do umount "$root/$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$build"
}
trap cleanup EXIT
mkdir -p "$root"
tar -C "$root" -xf "$pristine_tar"
cp "$cache"/apt-archives/*.deb "$root/var/cache/apt/archives/" 2>/dev/null || true
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The host's apt sources (bookworm, -updates, -security), so the guest gets the kernel the cache
# key names; debootstrap's own list has the release pocket only.
if [ -s /etc/apt/sources.list.d/debian.sources ]; then
    rm -f "$root/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources"
fi

# The initramfs needs only what mounts /dev/vda: the virtio PCI and block drivers (ext4 is built in).
mkdir -p "$root/etc/initramfs-tools/conf.d"
echo 'MODULES=list' >"$root/etc/initramfs-tools/conf.d/pvpn-guest"
printf '%s\n' virtio_pci virtio_blk >>"$root/etc/initramfs-tools/modules"

export DEBIAN_FRONTEND=noninteractive
if ! { chroot "$root" apt-get update -qq &&
       chroot "$root" apt-get install -y -qq --no-install-recommends "${packages[@]}"; } \
    >"$build/apt.log" 2>&1; then
    tail -n 30 "$build/apt.log" >&2
    fail "installing ${packages[*]} in the guest root (see above)"
fi
cp -n "$root"/var/cache/apt/archives/*.deb "$cache/apt-archives/" 2>/dev/null || true
chroot "$root" apt-get clean

# The guest's setup at boot: address, gateway and the run's SSH key from the kernel command line
# (pvpn.addr=198.18.x.y/24 pvpn.gw=198.18.x.1 pvpn.ssh_key=<base64 of the public key line>).
cat >"$root/usr/local/sbin/pvpn-guest-setup" <<'SETUP'
#!/bin/sh
set -eu
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        pvpn.addr=*) addr=${arg#pvpn.addr=} ;;
        pvpn.gw=*) gw=${arg#pvpn.gw=} ;;
        pvpn.ssh_key=*) ssh_key=${arg#pvpn.ssh_key=} ;;
    esac
done
mkdir -p -m 700 /root/.ssh
echo "$ssh_key" | base64 -d >/root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
ip link set lo up
ip addr add "$addr" dev eth0
ip link set eth0 up
ip route add default via "$gw"
SETUP
chmod 755 "$root/usr/local/sbin/pvpn-guest-setup"
cat >"$root/etc/systemd/system/pvpn-guest-setup.service" <<'UNIT'
[Unit]
Description=PVPN test guest: address and SSH key from the kernel command line
Wants=sys-subsystem-net-devices-eth0.device
After=sys-subsystem-net-devices-eth0.device
Before=ssh.service network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/pvpn-guest-setup

[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable pvpn-guest-setup.service >/dev/null 2>&1
# Nothing that waits for a network the guest does not have, or writes the clock, at boot.
# Masked: units a throwaway test guest does not need, each seconds of boot under TCG.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer getty-static.service systemd-random-seed.service; do
    chroot "$root" systemctl mask "$unit" >/dev/null 2>&1
done
cat >"$root/etc/ssh/sshd_config.d/pvpn-guest.conf" <<'SSHD'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
SSHD
echo 'pvpn-guest' >"$root/etc/hostname"
# No fstab entry: the initramfs mounts /dev/vda read-write (root=/dev/vda rw), and systemd then
# does not wait for the device unit to remount it.
: >"$root/etc/fstab"
echo 'wireguard' >"$root/etc/modules-load.d/wireguard.conf"
: >"$root/etc/resolv.conf"

version=$(ls "$root/lib/modules" | head -n 1)
[ -n "$version" ] && [ -s "$root/boot/initrd.img-$version" ] \
    || fail "the kernel or its initramfs is missing in the guest root"
for m in dev/pts dev proc sys; do umount "$root/$m"; done

mkdir -p "$build/image"
cp "$root/boot/vmlinuz-$version" "$build/image/vmlinuz"
cp "$root/boot/initrd.img-$version" "$build/image/initrd.img"
echo "$version" >"$build/image/kernel-version"
mkfs.ext4 -q -F -L pvpn-guest -d "$root" "$build/image/rootfs.img" 1G >&2 \
    || fail "mkfs.ext4 -d could not make the root file system image"
rm -rf "$image"
mv "$build/image" "$image"
# Images of older inputs are never used again.
find "$cache" -maxdepth 1 -name 'guest-bookworm-*' ! -path "$image" -exec rm -rf {} +
log "guest image ready: $image"
echo "$image"
