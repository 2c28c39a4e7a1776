#!/usr/bin/env bash
# Tests ansible/ for real: syntax check and ansible-lint (production profile), then site.yml
# (backend.yml + region.yml) applied through Ansible's chroot connection to three Debian 12 roots
# built with debootstrap (a backend host and two nodes of two regions), checked with the real
# tools (nft, systemd-analyze, redis-server, PostgreSQL, wg), and a second run that must change
# nothing; then a fourth root that already runs WireGuard is adopted (scripts/test-ansible-adopt.sh)
# and a fifth becomes an AmneziaWG node (scripts/test-ansible-amneziawg.sh).
# Needs root. Any failed check fails the run with a message saying what is wrong.
#
# The debootstrap root and the downloaded .deb files are cached in $PVPN_TEST_CACHE so repeated
# runs on the same machine take a few minutes. Environment:
#   PVPN_BINARIES_DIR   where pvpn-backend, pvpnctl, pvpn-agent are (default target/debug, built
#                       here with cargo build when it is the default)
#   PVPN_DEBIAN_MIRROR  Debian mirror for debootstrap (default: the host's apt source)
#   PVPN_TEST_CACHE     cache directory (default /var/cache/pvpn-test; scripts/debootstrap-root.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

log() { printf '\033[1;34m[test-ansible]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[test-ansible] FAILED:\033[0m %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (debootstrap and chroot need it)"
for tool in ansible-playbook ansible-lint debootstrap nft systemd-analyze redis-server redis-cli openssl ss psql wg wireguard-go ip tar flock; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing: run scripts/setup.sh"
done

cache=${PVPN_TEST_CACHE:-/var/cache/pvpn-test}
deb_cache=$cache/apt-archives

# ---------------------------------------------------------------------------------------------
# Binaries: the real ones, never stand-ins.
if [ -z "${PVPN_BINARIES_DIR:-}" ]; then
    log "building pvpn-backend, pvpnctl and pvpn-agent (debug)"
    cargo build --locked -p pvpn-backend -p pvpn-agent --bins
    bin_dir=$repo/target/debug
else
    bin_dir=$PVPN_BINARIES_DIR
fi
for bin in pvpn-backend pvpnctl pvpn-agent; do
    [ -x "$bin_dir/$bin" ] || fail "$bin_dir/$bin is missing: the playbooks copy the real binaries (cargo build -p pvpn-backend -p pvpn-agent --bins)"
done

# ---------------------------------------------------------------------------------------------
# Static checks.
cd "$repo/ansible"
export ANSIBLE_CONFIG=$repo/ansible/ansible.cfg ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
for playbook in site.yml backend.yml region.yml; do
    log "syntax check: $playbook"
    ansible-playbook -i inventory.example.yml --syntax-check "$playbook" >/dev/null \
        || fail "ansible-playbook --syntax-check $playbook"
done
log "ansible-lint (production profile)"
ansible-lint --profile production --nocolor || fail "ansible-lint found problems (see above)"

# ---------------------------------------------------------------------------------------------
# A pristine Debian 12 root, built once per machine (shared with the QEMU guest image).
pristine_tar=$("$repo/scripts/debootstrap-root.sh") || fail "no pristine Debian 12 root (see above)"
mkdir -p "$deb_cache"
# The package cache is shared with other runs on this machine: writes to it hold this lock.
exec 9>"$cache/lock"

# ---------------------------------------------------------------------------------------------
# Three targets: a backend host and one node in each of two regions.
work=$(mktemp -d /var/tmp/pvpn-ansible-test.XXXXXX)
db_name=pvpn_ansible_test_$$
db_user=pvpn_ansible_test_$$
redis_pid=""
backend_pid=""
agent_pid=""
wg_pid=""
chroot_pg=""
netns=pvpn-ansible-$$
roots=()

cleanup() {
    local status=$?
    set +e
    for pid in "$backend_pid" "$agent_pid" "$wg_pid" "$redis_pid"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    [ -e "/run/netns/$netns" ] && ip netns delete "$netns"
    [ -n "$chroot_pg" ] && chroot "$chroot_pg" pg_ctlcluster 15 main stop -m immediate
    runuser -u postgres -- psql -q -d postgres -c "DROP DATABASE IF EXISTS $db_name" >/dev/null 2>&1
    runuser -u postgres -- psql -q -d postgres -c "DROP ROLE IF EXISTS $db_user" >/dev/null 2>&1
    for root in "${roots[@]}"; do
        mountpoint -q "$root/proc" && umount "$root/proc"
    done
    for root in "${roots[@]}"; do
        # Never delete through a mount that is still there.
        if mountpoint -q "$root/proc"; then
            echo "[test-ansible] $root/proc is still mounted; leaving $work in place" >&2
            exit "$status"
        fi
    done
    rm -rf --one-file-system "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A snapshot of the binaries: other builds may replace target/debug's files between the two runs.
mkdir "$work/bin"
cp "$bin_dir"/{pvpn-backend,pvpnctl,pvpn-agent} "$work/bin/"

for host in backend nl-1 de-1; do
    root=$work/$host
    mkdir "$root"
    roots+=("$root")
    tar -C "$root" -xf "$pristine_tar"
    # Packages must not start daemons inside the build root (they would share this machine's
    # network and ports): the usual policy for building images.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    cp "$deb_cache"/*.deb "$root/var/cache/apt/archives/" 2>/dev/null || true
    mount -t proc proc "$root/proc"
done

# A throwaway database and role on this machine's PostgreSQL: the backend chroot shares the
# machine's network, so its pvpnctl migrates it and registers the nodes in it.
random_secret() { head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32; }
db_password=$(random_secret)
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d postgres >/dev/null <<SQL
CREATE ROLE $db_user LOGIN PASSWORD '$db_password';
CREATE DATABASE $db_name OWNER $db_user;
SQL

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
redis_backend_password=$(random_secret)
redis_nl_password=$(random_secret)
redis_de_password=$(random_secret)
# nl-2 is the host scripts/test-ansible-adopt.sh adds to the inventory later.
redis_nl2_password=$(random_secret)
cat >"$work/inventory.yml" <<EOF
all:
  vars:
    ansible_connection: community.general.chroot
    pvpn_binaries_dir: $work/bin
    pvpn_regions:
      nl: {name: Netherlands}
      de: {name: Germany}
    pvpn_postgres_user: $db_user
    pvpn_postgres_database: $db_name
    pvpn_postgres_password: $db_password
    # The backend host's own PostgreSQL listens on a free port; until the test starts it, the
    # backend uses this machine's PostgreSQL (port 5432) through the shared network.
    pvpn_postgres_port: $pg_port
    pvpn_postgres_listen_addresses: [127.0.0.1]
    pvpn_backend_database_port: 5432
    pvpn_redis_backend_password: $redis_backend_password
    pvpn_redis_node_passwords: {nl-1: $redis_nl_password, de-1: $redis_de_password, nl-2: $redis_nl2_password}
    pvpn_redis_host: 127.0.0.1
    # No init runs in a chroot: nothing is started, but the database is this machine's.
    pvpn_backend_database_online: true
  children:
    backend:
      hosts:
        backend: {ansible_host: $work/backend}
      vars:
        pvpn_redis_bind: [127.0.0.1]
        pvpn_redis_tls_names: [redis.pvpn.test]
        pvpn_backend_firewall_redis_clients: [198.18.0.1, 198.18.0.2, "2001:db8::1"]
        pvpn_backend_admin_ids: [1001]
    vpn_nodes:
      children:
        region_nl:
          vars: {pvpn_region: nl}
          hosts:
            nl-1: {ansible_host: $work/nl-1, pvpn_node_subnet: 10.66.0.0/22, pvpn_node_endpoint: "198.18.0.1:51820"}
        region_de:
          vars: {pvpn_region: de}
          hosts:
            de-1: {ansible_host: $work/de-1, pvpn_node_subnet: 10.67.0.0/24, pvpn_wg_listen_port: 51821, pvpn_node_endpoint: "198.18.0.2:51821", pvpn_node_dns: [198.18.0.53]}
EOF

run_site() { # $1: log file
    ansible-playbook -i "$work/inventory.yml" site.yml >"$1" 2>&1 || { tail -n 60 "$1" >&2; fail "ansible-playbook site.yml failed (log above)"; }
}
log "first run of site.yml (backend.yml, region.yml) through the chroot connection"
run_site "$work/run1.log"
grep -A5 'PLAY RECAP' "$work/run1.log"
# Keep the packages the targets downloaded for the next run on this machine.
flock 9
for root in "${roots[@]}"; do
    cp -n "$root"/var/cache/apt/archives/*.deb "$deb_cache/" 2>/dev/null || true
done
flock -u 9
log "second run of site.yml: must change nothing"
run_site "$work/run2.log"
grep -A5 'PLAY RECAP' "$work/run2.log"
recap=$(sed -n '/PLAY RECAP/,$p' "$work/run2.log" | grep -E 'ok=[0-9]+')
[ "$(echo "$recap" | wc -l)" -eq 3 ] || fail "expected 3 hosts in the second run's PLAY RECAP, got: $recap"
echo "$recap" | grep -Eq 'changed=[1-9]' && { grep -B3 -E '^changed:' "$work/run2.log" >&2; fail "the second run changed something (tasks above)"; }
echo "$recap" | grep -Eq '(failed|unreachable)=[1-9]' && fail "the second run failed on a host"

# No process may be left running from a target root (nothing is started without an init).
for p in /proc/[0-9]*; do
    target=$(readlink "$p/root" 2>/dev/null || true)
    case "$target" in "$work"/*) fail "process ${p#/proc/} runs inside $target: $(tr '\0' ' ' <"$p/cmdline")";; esac
done

# The postgres role's database steps need a running server: start the backend root's own
# cluster (configured by the role) and apply backend.yml as on a live host, twice.
log "postgres role against the backend root's own PostgreSQL (port $pg_port)"
chroot_pg=$work/backend
chroot "$chroot_pg" pg_ctlcluster 15 main start || fail "the backend root's PostgreSQL cluster does not start"
run_backend_live() { # $1: log file
    ansible-playbook -i "$work/inventory.yml" backend.yml -e pvpn_postgres_running=true >"$1" 2>&1 \
        || { tail -n 60 "$1" >&2; fail "backend.yml with pvpn_postgres_running=true failed (log above)"; }
}
run_backend_live "$work/run3.log"
changed_tasks=$(grep -B2 '^changed:' "$work/run3.log" | sed -n 's/^TASK \[\(.*\)\] \**$/\1/p' | tr '\n' ';')
[ "$changed_tasks" = "postgres : Create the backend's database role;postgres : Create the backend's database;" ] \
    || fail "backend.yml on a running PostgreSQL changed: $changed_tasks"
run_backend_live "$work/run4.log"
grep -Eq '^backend +: ok=[0-9]+ +changed=0 ' "$work/run4.log" || { grep -B3 '^changed:' "$work/run4.log" >&2; fail "the postgres role is not idempotent (above)"; }
owner=$(PGPASSWORD=$db_password psql -X -h 127.0.0.1 -p "$pg_port" -U "$db_user" -d "$db_name" -tA \
    -c "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()") \
    || fail "cannot log in to the backend root's PostgreSQL as $db_user with the password the role set"
[ "$owner" = "$db_user" ] || fail "$db_name is owned by '$owner', expected $db_user"
chroot "$chroot_pg" pg_ctlcluster 15 main stop || fail "the backend root's PostgreSQL does not stop"
chroot_pg=""

log "bad settings stop the run with a clear message and change nothing"
expect_failure() { # message args...
    local message=$1 out; shift
    if out=$(ansible-playbook -i "$work/inventory.yml" "$@" 2>&1); then
        fail "ansible-playbook $* succeeded, expected it to fail with '$message'"
    fi
    grep -qF -- "$message" <<<"$out" || { tail -n 30 <<<"$out" >&2; fail "ansible-playbook $* failed without saying '$message'"; }
    grep -Eq 'changed=[1-9]' <<<"$out" && { tail -n 30 <<<"$out" >&2; fail "ansible-playbook $* changed something before failing"; }
    return 0
}
mkdir "$work/empty"
expect_failure "pvpn-agent is missing from $work/empty" region.yml --limit nl-1 -e "pvpn_binaries_dir=$work/empty"
expect_failure "pvpn-backend is missing from $work/empty" backend.yml -e "pvpn_binaries_dir=$work/empty"
expect_failure "has host bits set" region.yml --limit nl-1 -e pvpn_node_subnet=10.66.0.1/22
expect_failure "must be /16 to /30" region.yml --limit nl-1 -e pvpn_node_subnet=10.0.0.0/8
expect_failure "names host names and IP addresses only" backend.yml -e '{"pvpn_redis_tls_names": ["bad name!"]}'

export PVPN_TEST_WORK=$work PVPN_TEST_DB=$db_name
log "checking the provisioned roots with the real tools"
source "$repo/scripts/test-ansible-checks.sh"
source "$repo/scripts/test-ansible-adopt.sh"
source "$repo/scripts/test-ansible-amneziawg.sh"
log "all Ansible checks passed"
