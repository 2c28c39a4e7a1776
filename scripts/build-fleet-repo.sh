#!/usr/bin/env bash
# Builds, once per machine and per set of inputs, the local apt repository the fleet test
# (tests/tests/fleet.rs) serves to its Debian guests, which reach no network but the test's own:
# every package the roles' apt tasks install, with the dependency closure relative to the guest
# image, as a flat repository (`deb [trusted=yes] http://<host>/ ./`). Prints its directory.
#
# The package list is read from the roles themselves (every ansible.builtin.apt task's `name`),
# plus python3-apt, which Ansible's apt module installs on a target that lacks it. The one
# templated name, an AmneziaWG node's `linux-headers-{{ pvpn_awg_kernel }}`, is the guest
# image's kernel (what the booted guests run); any other template is an error. The packages
# are downloaded with `apt-get install --download-only` in a copy of the guest image's root, so
# exactly what the guest lacks is fetched. The directory name carries a hash of this script, the
# package list and the guest image, so a change to any of them builds a new repository.
# Environment: PVPN_TEST_CACHE (default /var/cache/pvpn-test).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1;34m[build-fleet-repo]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[1;31m[build-fleet-repo] FAILED:\033[0m %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (the loop mount and chroot need it)"
for tool in dpkg-scanpackages mount losetup chroot flock sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing: run scripts/setup.sh"
done

cache=${PVPN_TEST_CACHE:-/var/cache/pvpn-test}
image=$(scripts/build-guest-image.sh) || fail "no guest image (see above)"

kernel=$(cat "$image/kernel-version" 2>/dev/null) || true
[ -n "$kernel" ] || fail "$image/kernel-version is missing or empty"

# The roles' packages: pvpn_awg_kernel is the guest's kernel; any other template cannot be
# resolved here, so it is an error.
packages=$(/usr/bin/python3 - ansible/roles "$kernel" <<'PY'
import pathlib, re, sys, yaml
kernel = sys.argv[2]
names = {"python3-apt"}
for path in sorted(pathlib.Path(sys.argv[1]).glob("*/tasks/*.yml")):
    for task in yaml.safe_load(path.read_text()) or []:
        args = task.get("ansible.builtin.apt") or task.get("apt")
        if not isinstance(args, dict) or "name" not in args:
            continue
        wanted = args["name"]
        for name in [wanted] if isinstance(wanted, str) else wanted:
            name = re.sub(r"\{\{\s*pvpn_awg_kernel\s*\}\}", kernel, name)
            if "{{" in name:
                sys.exit(f"{path}: templated package name {name!r}")
            names.add(name)
print(" ".join(sorted(names)))
PY
) || fail "could not read the package list from ansible/roles"
key=$( { cat "$0"; echo "$packages"; basename "$image"; } | sha256sum | cut -c1-16)
repo=$cache/fleet-repo-$key

if [ -s "$repo/Packages" ]; then
    echo "$repo"
    exit 0
fi
exec 8>"$cache/fleet-repo.lock"
flock 8
if [ -s "$repo/Packages" ]; then
    echo "$repo"
    exit 0
fi

log "building the fleet's apt repository $repo: $packages"
build=$(mktemp -d "$cache/fleet-repo-build.XXXXXX")
root=$build/root
cleanup() {
    mountpoint -q "$root/proc" 2>/dev/null && umount "$root/proc"
    mountpoint -q "$root" 2>/dev/null && umount "$root"
    rm -rf --one-file-system "$build"
}
trap cleanup EXIT
# A throwaway copy of the guest's root file system: apt writes its lists and archives there.
cp --sparse=always "$image/rootfs.img" "$build/rootfs.img"
mkdir "$root"
mount -o loop "$build/rootfs.img" "$root" || fail "cannot loop-mount a copy of the guest root"
mount -t proc proc "$root/proc"
cp /etc/resolv.conf "$root/etc/resolv.conf"
rm -f "$root"/var/cache/apt/archives/*.deb
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # the package list is words
if ! { chroot "$root" apt-get update -qq &&
       chroot "$root" apt-get install -y -qq --download-only --no-install-recommends $packages &&
       chroot "$root" apt-get install -y -qq --download-only python3-apt; } >"$build/apt.log" 2>&1; then
    tail -n 30 "$build/apt.log" >&2
    fail "downloading $packages for the guest (see above)"
fi
mkdir "$build/repo"
cp "$root"/var/cache/apt/archives/*.deb "$build/repo/"
(cd "$build/repo" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null) \
    || fail "dpkg-scanpackages"
[ -s "$build/repo/Packages" ] || fail "the repository is empty"
rm -rf "$repo"
mv "$build/repo" "$repo"
# Repositories of older inputs are never used again.
find "$cache" -maxdepth 1 -name 'fleet-repo-*' ! -name 'fleet-repo-build.*' ! -name '*.lock' \
    ! -path "$repo" -exec rm -rf {} +
log "fleet repository ready: $repo ($(ls "$repo" | grep -c '\.deb$') packages)"
echo "$repo"
