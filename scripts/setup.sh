#!/usr/bin/env bash
# Prepares a Debian machine for PVPN: installs the packages it needs and starts PostgreSQL and
# Redis. Safe to run again: it installs only what is missing and starts only what is not running.
set -euo pipefail

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/setup.sh installs packages and starts services: run it as root (or with sudo)." >&2
    exit 1
fi

packages=(
    postgresql redis-server            # the backend's database and broker
    wireguard-go wireguard-tools       # a WireGuard implementation without the kernel module, and wg
    iproute2 iputils-ping nftables     # namespaces and veth for tests, ping, the nodes' firewall
    ansible ansible-lint debootstrap   # provisioning, and a Debian root to provision in tests
    systemd                            # systemd-analyze verifies the units Ansible installs
    qemu-system-x86 qemu-utils         # Debian guests with kernel WireGuard (pvpn-testkit's vm)
    openssh-client                     # the command channel into those guests
    openssl                            # certificates for Redis over TLS in tests
    dpkg-dev dnsmasq-base              # the fleet test's apt repository and its "internet" resolver
    build-essential pkg-config ca-certificates
    # linux-headers-<guest kernel> for the AmneziaWG module: scripts/build-awg.sh installs the
    # version the guest image has.
)
missing_packages() {
    local pkg
    for pkg in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || echo "$pkg"
    done
}
# Two passes: installing one package can remove another that was there (Debian's
# qemu-system-x86 removes a backported qemu-utils it conflicts with, taking qemu-img along).
updated=false
for _ in 1 2; do
    mapfile -t missing < <(missing_packages)
    [ ${#missing[@]} -eq 0 ] && break
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $updated || { apt-get update -qq; updated=true; }
    # Without --no-install-recommends, wireguard-tools pulls in a kernel image.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
done
mapfile -t missing < <(missing_packages)
if [ ${#missing[@]} -gt 0 ]; then
    echo "scripts/setup.sh: still missing after installing: ${missing[*]}" >&2
    exit 1
fi
$updated || log "packages already installed"

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is missing: install Rust 1.95 (https://rustup.rs) and run this again." >&2
    exit 1
fi

# PostgreSQL: start the cluster if it is down, then make sure the role PVPN's tests and demo use
# exists (password login works whatever pg_hba.conf says for 127.0.0.1).
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL"
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pvpn') THEN
        CREATE ROLE pvpn LOGIN CREATEDB PASSWORD 'pvpn';
    END IF;
END
$$;
SQL
runuser -u postgres -- psql -q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'pvpn'" | grep -q 1 \
    || runuser -u postgres -- createdb -O pvpn pvpn
log "PostgreSQL ready (role and database pvpn)"

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/pvpn-setup.log
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "Redis did not start on 127.0.0.1:6379" >&2; exit 1; }
log "Redis ready"

[ -c /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200; }
log "done"
