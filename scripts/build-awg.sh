#!/usr/bin/env bash
# Builds, once per machine and per set of inputs, AmneziaWG for the QEMU test guests from the
# vendored release tarballs (vendor/amneziawg): the kernel module `amneziawg.ko` for the guest
# image's kernel (against Debian's linux-headers package of that kernel, installed here on the
# host), and the `awg` and `awg-quick` tools. Prints the output directory, which holds
# `amneziawg.ko`, `awg` and `awg-quick`.
#
# The directory name carries a hash of this script, the tarballs and the kernel version, so a
# change to any of them builds anew. The kernel is the guest image's (scripts/build-guest-image.sh
# builds or finds it), or the first argument. Concurrent callers wait on one lock.
# Environment: PVPN_TEST_CACHE (default /var/cache/pvpn-test).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1;34m[build-awg]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[1;31m[build-awg] FAILED:\033[0m %s\n' "$*" >&2; exit 1; }

cache=${PVPN_TEST_CACHE:-/var/cache/pvpn-test}
module_tar=$(ls vendor/amneziawg/amneziawg-linux-kernel-module-*.tar.gz)
tools_tar=$(ls vendor/amneziawg/amneziawg-tools-*.tar.gz)
if [ $# -ge 1 ]; then
    kernel=$1
else
    image=$(scripts/build-guest-image.sh)
    kernel=$(cat "$image/kernel-version")
fi
[ -n "$kernel" ] || fail "no guest kernel version"
key=$( { cat "$0"; sha256sum "$module_tar" "$tools_tar"; echo "kernel=$kernel"; } | sha256sum | cut -c1-16)
out=$cache/awg-$key

done_marker() { [ -s "$out/amneziawg.ko" ] && [ -x "$out/awg" ] && [ -x "$out/awg-quick" ]; }
if done_marker; then
    echo "$out"
    exit 0
fi
mkdir -p "$cache"
exec 8>"$cache/awg.lock"
flock 8
if done_marker; then
    echo "$out"
    exit 0
fi

headers=/usr/src/linux-headers-$kernel
if [ ! -d "$headers" ]; then
    [ "$(id -u)" -eq 0 ] || fail "$headers is missing; install linux-headers-$kernel (as root)"
    log "installing linux-headers-$kernel"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "linux-headers-$kernel" >&2 || fail "installing linux-headers-$kernel"
fi
for tool in make gcc; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing: run scripts/setup.sh"
done

log "building AmneziaWG for kernel $kernel into $out"
build=$(mktemp -d "$cache/awg-build.XXXXXX")
trap 'rm -rf --one-file-system "$build"' EXIT
tar -C "$build" -xzf "$module_tar"
tar -C "$build" -xzf "$tools_tar"
module_src=$(echo "$build"/amneziawg-linux-kernel-module-*/src)
tools_src=$(echo "$build"/amneziawg-tools-*/src)
make -C "$module_src" KERNELDIR="$headers" -j2 >"$build/module.log" 2>&1 ||
    { tail -n 30 "$build/module.log" >&2; fail "building the module (see above)"; }
make -C "$tools_src" -j2 >"$build/tools.log" 2>&1 ||
    { tail -n 30 "$build/tools.log" >&2; fail "building the tools (see above)"; }
grep -aq "vermagic=$kernel " "$module_src/amneziawg.ko" ||
    fail "amneziawg.ko was not built for $kernel"

staging=$build/out
mkdir -p "$staging"
# Without debug info the module is ~10x smaller: faster to copy into every guest.
strip --strip-debug -o "$staging/amneziawg.ko" "$module_src/amneziawg.ko"
install -m 0755 "$tools_src/wg" "$staging/awg"
install -m 0755 "$tools_src/wg-quick/linux.bash" "$staging/awg-quick"
rm -rf "$out"
mv "$staging" "$out"
echo "$out"
