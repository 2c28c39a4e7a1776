#!/usr/bin/env bash
# Builds, once per machine, the pristine Debian 12 root (debootstrap minbase plus python3,
# systemd, systemd-sysv, sudo) that the Ansible test and the QEMU guest image start from, and
# prints the path of its tarball. The .deb files debootstrap downloaded go to the shared apt
# archive cache. Concurrent callers wait on one lock, so the root is built once.
# Environment:
#   PVPN_DEBIAN_MIRROR  Debian mirror (default: the host's apt source)
#   PVPN_TEST_CACHE     cache directory (default /var/cache/pvpn-test)
set -euo pipefail

fail() { printf '\033[1;31m[debootstrap-root] FAILED:\033[0m %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (debootstrap needs it)"
for tool in debootstrap tar flock; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing: run scripts/setup.sh"
done

cache=${PVPN_TEST_CACHE:-/var/cache/pvpn-test}
# What a real Debian 12 server has besides minbase: systemd, sudo; Ansible needs python3.
include=python3,systemd,systemd-sysv,sudo
pristine_tar=$cache/debootstrap-bookworm-minbase-${include//,/-}.tar
deb_cache=$cache/apt-archives
mirror=${PVPN_DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$cache" "$deb_cache"
exec 9>"$cache/lock"
flock 9
if [ ! -s "$pristine_tar" ]; then
    printf '\033[1;34m[debootstrap-root]\033[0m %s\n' "debootstrap bookworm from $mirror (cached in $pristine_tar)" >&2
    build=$(mktemp -d "$cache/build.XXXXXX")
    if ! debootstrap --variant=minbase --include="$include" bookworm "$build/root" "$mirror" \
        >"$build/debootstrap.log" 2>&1; then
        tail -n 20 "$build/debootstrap.log" >&2
        rm -rf --one-file-system "$build"
        fail "debootstrap could not build Debian 12 from the mirror $mirror (set PVPN_DEBIAN_MIRROR to a reachable one)"
    fi
    mv "$build"/root/var/cache/apt/archives/*.deb "$deb_cache/" 2>/dev/null || true
    tar -C "$build/root" -cf "$pristine_tar.tmp" .
    mv "$pristine_tar.tmp" "$pristine_tar"
    rm -rf --one-file-system "$build"
fi
flock -u 9
echo "$pristine_tar"
