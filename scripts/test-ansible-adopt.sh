# shellcheck shell=bash
# Adopting a host that already runs WireGuard (pvpn_wg_adopt), sourced by scripts/test-ansible.sh
# after its checks (uses its variables and helpers): a fresh Debian root with an old server's
# wg-quick config becomes node nl-2 with the same private key, port and address; a port that
# differs stops the run before anything is written; a second run changes nothing.

log "adopting a host that already runs WireGuard (pvpn_wg_adopt)"
adopt_root=$work/nl-2
mkdir "$adopt_root"
roots+=("$adopt_root")
tar -C "$adopt_root" -xf "$pristine_tar"
printf '#!/bin/sh\nexit 101\n' >"$adopt_root/usr/sbin/policy-rc.d"
chmod 755 "$adopt_root/usr/sbin/policy-rc.d"
cp "$deb_cache"/*.deb "$adopt_root/var/cache/apt/archives/" 2>/dev/null || true
mount -t proc proc "$adopt_root/proc"

old_key=$(wg genkey)
old_public=$(wg pubkey <<<"$old_key")
install -d -m 0700 "$adopt_root/etc/wireguard"
{
    echo "# The old server, configured by hand."
    echo "[Interface]"
    echo "PrivateKey = $old_key"
    echo "Address = 10.68.0.1/24"
    echo "ListenPort = 51822"
    echo
    echo "[Peer]"
    echo "PublicKey = $(wg genkey | wg pubkey)"
    echo "AllowedIPs = 10.68.0.2/32"
} >"$adopt_root/etc/wireguard/wg0.conf"
chmod 600 "$adopt_root/etc/wireguard/wg0.conf"
cp "$adopt_root/etc/wireguard/wg0.conf" "$work/old-wg0.conf"
{
    echo "all:"
    echo "  children:"
    echo "    vpn_nodes:"
    echo "      children:"
    echo "        region_nl:"
    echo "          hosts:"
    echo "            nl-2: {ansible_host: $adopt_root, pvpn_node_subnet: 10.68.0.0/24, pvpn_wg_listen_port: 51822, pvpn_node_endpoint: \"198.18.0.4:51822\", pvpn_wg_adopt: true}"
} >"$work/adopt.yml"

adopt_run() { # log-file extra-args...
    local out=$1
    shift
    ansible-playbook -i "$work/inventory.yml" -i "$work/adopt.yml" region.yml --limit nl-2 "$@" >"$out" 2>&1
}

if adopt_run "$work/adopt0.log" -e pvpn_wg_listen_port=51820; then
    fail "adopting with another port than the old server's succeeded"
fi
grep -qF "PVPN would use port 51820" "$work/adopt0.log" || { tail -n 30 "$work/adopt0.log" >&2; fail "a port mismatch failed without saying so"; }
if grep -Eq 'changed=[1-9]' "$work/adopt0.log"; then fail "a refused adoption changed something"; fi
cmp -s "$work/old-wg0.conf" "$adopt_root/etc/wireguard/wg0.conf" || fail "a refused adoption touched the old config"

adopt_run "$work/adopt1.log" || { tail -n 60 "$work/adopt1.log" >&2; fail "adopting nl-2 failed (log above)"; }
grep -qF "pvpn-agent is installed but not started" "$work/adopt1.log" || fail "the adoption run did not say what is left to do"
adopt_run "$work/adopt2.log" || { tail -n 60 "$work/adopt2.log" >&2; fail "the second adoption run failed"; }
grep -Eq '^nl-2 +: ok=[0-9]+ +changed=0 ' "$work/adopt2.log" || { grep -B3 '^changed:' "$work/adopt2.log" >&2; fail "adopting is not idempotent (above)"; }

check_mode "$adopt_root" /etc/wireguard/wg0.key "600 root"
check_mode "$adopt_root" /etc/wireguard/wg0.conf.pre-pvpn "600 root"
[ "$(wg pubkey <"$adopt_root/etc/wireguard/wg0.key")" = "$old_public" ] || fail "the adopted node has a new key: existing configs would stop working"
cmp -s "$work/old-wg0.conf" "$adopt_root/etc/wireguard/wg0.conf.pre-pvpn" || fail "the old config was not kept as wg0.conf.pre-pvpn"
check_contains "$adopt_root/etc/wireguard/wg0.conf" "Address = 10.68.0.1/24" "the old address"
check_contains "$adopt_root/etc/wireguard/wg0.conf" "ListenPort = 51822" "the old port"
if grep -qi '^\[Peer\]' "$adopt_root/etc/wireguard/wg0.conf"; then fail "the adopted wg0.conf still has [Peer] sections"; fi
if grep -qi 'PrivateKey *=' "$adopt_root/etc/wireguard/wg0.conf"; then fail "the adopted wg0.conf still holds the private key"; fi
[ "$(psql_test "SELECT public_key || ' ' || listen_port FROM nodes WHERE name = 'nl-2'")" = "$old_public 51822" ] \
    || fail "nl-2 is not registered with its old public key and port"
log "adoption keeps the key, port and address"
