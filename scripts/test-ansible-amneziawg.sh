# shellcheck shell=bash
# An AmneziaWG node (pvpn_protocol: amneziawg), sourced by scripts/test-ansible.sh after the other
# checks (uses its variables and helpers): a fresh Debian root becomes node nl-3, where DKMS builds
# the vendored module for the QEMU guests' kernel (headers installed, that kernel not running),
# awg and awg-quick are built and run, the awg-quick@awg0 and pvpn-agent units pass
# systemd-analyze verify, the agent is configured for AmneziaWG, the node is registered as an
# AmneziaWG node with a profile (`pvpnctl node add --protocol amneziawg` on the backend host), and a
# second run changes nothing. The plain nodes got none of it.

log "an AmneziaWG node: DKMS module, awg tools, interface unit, agent"
awg_root=$work/nl-3
mkdir "$awg_root"
roots+=("$awg_root")
tar -C "$awg_root" -xf "$pristine_tar"
printf '#!/bin/sh\nexit 101\n' >"$awg_root/usr/sbin/policy-rc.d"
chmod 755 "$awg_root/usr/sbin/policy-rc.d"
cp "$deb_cache"/*.deb "$awg_root/var/cache/apt/archives/" 2>/dev/null || true
mount -t proc proc "$awg_root/proc"
# The host's apt sources (bookworm, -updates, -security), as a real node has them: the guests'
# kernel headers come from -security or -updates; debootstrap's own list has the release only.
if [ -s /etc/apt/sources.list.d/debian.sources ]; then
    rm -f "$awg_root/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/debian.sources "$awg_root/etc/apt/sources.list.d/debian.sources"
fi

# The kernel the QEMU guests run (the cloud kernel the mirror serves today), not this machine's.
awg_kernel=$(apt-cache depends linux-headers-cloud-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: linux-headers-\([0-9].*-cloud-amd64\)$/\1/p' | head -n 1)
[ -n "$awg_kernel" ] || fail "apt knows no linux-headers-cloud-amd64 (apt-get update?)"
redis_nl3_password=$(random_secret)
{
    echo "all:"
    echo "  children:"
    echo "    vpn_nodes:"
    echo "      children:"
    echo "        region_nl:"
    echo "          hosts:"
    echo "            nl-3:"
    echo "              ansible_host: $awg_root"
    echo "              pvpn_region: nl"
    echo "              pvpn_protocol: amneziawg"
    echo "              pvpn_awg_kernel: $awg_kernel"
    echo "              pvpn_node_subnet: 10.69.0.0/24"
    echo "              pvpn_node_endpoint: \"198.18.0.5:51820\""
    echo "              pvpn_redis_node_passwords: {nl-3: $redis_nl3_password}"
} >"$work/amneziawg.yml"
awg_run() { # log-file
    ansible-playbook -i "$work/inventory.yml" -i "$work/amneziawg.yml" region.yml --limit nl-3 >"$1" 2>&1
}
awg_started=$SECONDS
awg_run "$work/awg1.log" || { tail -n 60 "$work/awg1.log" >&2; fail "provisioning the AmneziaWG node failed (log above)"; }
flock 9
cp -n "$awg_root"/var/cache/apt/archives/*.deb "$deb_cache/" 2>/dev/null || true
flock -u 9
awg_run "$work/awg2.log" || { tail -n 60 "$work/awg2.log" >&2; fail "the second run on the AmneziaWG node failed"; }
grep -Eq '^nl-3 +: ok=[0-9]+ +changed=0 ' "$work/awg2.log" || { grep -B3 '^changed:' "$work/awg2.log" >&2; fail "the AmneziaWG node's second run changed something (above)"; }
log "AmneziaWG node provisioned twice in $((SECONDS - awg_started)) s"

# The module: built by DKMS for the guests' kernel, which is not the one running here.
in_root "$awg_root" dkms status -m amneziawg -k "$awg_kernel" | grep -q 'installed' \
    || fail "DKMS did not install amneziawg for $awg_kernel: $(in_root "$awg_root" dkms status 2>&1)"
module=$awg_root/lib/modules/$awg_kernel/updates/dkms/amneziawg.ko
[ -f "$module" ] || fail "no $module"
in_root "$awg_root" modinfo -F vermagic "/lib/modules/$awg_kernel/updates/dkms/amneziawg.ko" | grep -q "^$awg_kernel " \
    || fail "amneziawg.ko is not built for $awg_kernel"
check_contains "$awg_root/etc/modules-load.d/amneziawg.conf" "amneziawg" "the module loaded at boot"

# The tools run.
in_root "$awg_root" awg --version | grep -q 'amneziawg-tools' || fail "awg does not run"
awg_public=$(in_root "$awg_root" sh -c 'awg pubkey < /etc/wireguard/awg0.key') || fail "awg pubkey fails on the node's key"
[ "$awg_public" = "$(wg pubkey <"$awg_root/etc/wireguard/awg0.key")" ] || fail "awg and wg disagree on the node's public key"
in_root "$awg_root" bash -n /usr/bin/awg-quick || fail "awg-quick is not a valid bash script"

# The interface: awg-quick's config holds address, port and the key's PostUp, nothing else.
conf=$awg_root/etc/amnezia/amneziawg/awg0.conf
check_mode "$awg_root" /etc/amnezia/amneziawg/awg0.conf "600 root"
check_mode "$awg_root" /etc/wireguard/awg0.key "600 root"
check_contains "$conf" "Address = 10.69.0.1/24" "the node's address"
check_contains "$conf" "ListenPort = 51820" "the port"
check_contains "$conf" "PostUp = awg set %i private-key /etc/wireguard/%i.key" "the key's PostUp"
if grep -Eqi '^\[Peer\]|^ *(Jc|Jmin|Jmax|S[1-4]|H[1-4]|I[1-5]) *=|PrivateKey' "$conf"; then
    fail "awg0.conf holds peers, obfuscation parameters or the key (the agent owns peers and parameters)"
fi
verify_units "$awg_root" pvpn-agent.service
out=$(systemd-analyze verify --root="$awg_root" --man=no awg-quick@awg0.service 2>&1) \
    || fail "systemd-analyze verify awg-quick@awg0.service:
$out"
check_enabled "$awg_root" awg-quick@awg0
check_enabled "$awg_root" pvpn-agent
check_contains "$awg_root/etc/systemd/system/pvpn-agent.service" "Requires=awg-quick@awg0.service" "the AmneziaWG interface unit"
check_contains "$awg_root/etc/pvpn/agent.env" "PVPN_WG_BACKEND='amneziawg'" "the AmneziaWG backend"
check_contains "$awg_root/etc/pvpn/agent.env" "PVPN_WG_INTERFACE='awg0'" "the interface"

# Plain WireGuard nodes got none of it.
for node in nl-1 de-1; do
    [ ! -e "$work/$node/usr/sbin/dkms" ] && [ ! -e "$work/$node/usr/bin/awg" ] \
        || fail "the plain WireGuard node $node got AmneziaWG's build tools"
    check_contains "$work/$node/etc/systemd/system/pvpn-agent.service" "Requires=wg-quick@wg0.service" "its WireGuard interface unit"
done
# Registered through the backend host's pvpnctl as an AmneziaWG node, with a generated profile.
[ "$(psql_test "SELECT protocol || ' ' || (awg_profile IS NOT NULL) FROM nodes WHERE name = 'nl-3'")" = "amneziawg true" ] \
    || fail "nl-3 is not registered as an AmneziaWG node with a profile: $(psql_test "SELECT protocol, awg_profile FROM nodes WHERE name = 'nl-3'")"
log "the AmneziaWG node is provisioned and registered; plain nodes are untouched"
