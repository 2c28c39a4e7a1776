# shellcheck shell=bash
# The checks scripts/test-ansible.sh runs on the roots it provisioned (sourced by it: uses its
# variables and its fail/log helpers). Each check uses the real tool a real host would use.

backend=$work/backend

in_root() { local root=$1; shift; chroot "$root" "$@"; }

# File mode and owner, as the target itself names the owner.
check_mode() { # root path "mode owner"
    local got
    got=$(in_root "$1" stat -c '%a %U' "$2" 2>/dev/null) || fail "$2 is missing in $1"
    [ "$got" = "$3" ] || fail "$1$2 has mode/owner '$got', expected '$3'"
}

check_contains() { # file fixed-string what
    grep -qF -- "$2" "$1" || fail "$1 lacks $3 ('$2')"
}

log "permissions of secrets"
check_mode "$backend" /etc/pvpn/backend.env "600 root"
check_mode "$backend" /etc/redis/users.acl "600 redis"
check_mode "$backend" /usr/local/sbin/pvpnctl "700 root"
check_mode "$backend" /etc/redis/tls/ca.key "600 root"
check_mode "$backend" /etc/redis/tls/server.key "640 root"
[ "$(in_root "$backend" stat -c '%G' /etc/redis/tls/server.key)" = redis ] || fail "Redis cannot read its TLS key (group redis)"
check_mode "$backend" /etc/redis/tls "750 root"
check_mode "$backend" /etc/pvpn/redis-ca.crt "644 root"
for node in nl-1 de-1; do
    check_mode "$work/$node" /etc/pvpn/agent.env "600 root"
    check_mode "$work/$node" /etc/pvpn/redis-ca.crt "644 root"
    cmp -s "$backend/etc/redis/tls/ca.crt" "$work/$node/etc/pvpn/redis-ca.crt" \
        || fail "$node does not trust the backend host's Redis CA (its redis-ca.crt differs)"
    # The private keys stay on the backend host.
    for key in ca.key server.key; do
        body=$(sed -n 2p "$backend/etc/redis/tls/$key")
        leaks=$(grep -rlF -- "$body" "$work/$node/etc" "$work/$node/var" 2>/dev/null || true)
        [ -z "$leaks" ] || fail "the backend host's $key leaked to $node: $leaks"
    done
    check_mode "$work/$node" /etc/wireguard "700 root"
    check_mode "$work/$node" /etc/wireguard/wg0.key "600 root"
    check_mode "$work/$node" /etc/wireguard/wg0.conf "600 root"
done
grep -q "$redis_backend_password" "$backend/etc/redis/users.acl" \
    && fail "users.acl holds a password in clear text (it must hold SHA-256 hashes only)"

log "env files carry the contract's variables"
check_contains "$backend/etc/pvpn/backend.env" "DATABASE_URL='postgres://$db_user:" "DATABASE_URL"
check_contains "$backend/etc/pvpn/backend.env" "REDIS_URL='rediss://pvpn-backend:" "REDIS_URL over TLS"
check_contains "$backend/etc/pvpn/backend.env" "PVPN_REDIS_CA_FILE='/etc/pvpn/redis-ca.crt'" "the Redis CA"
check_contains "$work/de-1/etc/pvpn/agent.env" "PVPN_REDIS_CA_FILE='/etc/pvpn/redis-ca.crt'" "the Redis CA"
check_contains "$backend/etc/pvpn/backend.env" "PVPN_ADMIN_IDS='1001'" "PVPN_ADMIN_IDS"
check_contains "$work/nl-1/etc/pvpn/agent.env" "REDIS_URL='rediss://pvpn-agent-nl-1:$redis_nl_password@127.0.0.1:6379/0'" "nl-1's own REDIS_URL, over TLS"
check_contains "$work/nl-1/etc/pvpn/agent.env" "PVPN_SUBNET='10.66.0.0/22'" "nl-1's client subnet"
check_contains "$backend/etc/redis/redis.conf" "maxmemory 512mb" "a memory limit"
check_contains "$backend/etc/redis/redis.conf" "maxmemory-policy noeviction" "noeviction"
check_contains "$work/nl-1/etc/pvpn/agent.env" "PVPN_REGION='nl'" "PVPN_REGION"
check_contains "$work/nl-1/etc/pvpn/agent.env" "PVPN_NODE='nl-1'" "PVPN_NODE"
check_contains "$work/de-1/etc/pvpn/agent.env" "PVPN_WG_INTERFACE='wg0'" "PVPN_WG_INTERFACE"

log "WireGuard interface configs: own address and port, no peers"
check_contains "$work/nl-1/etc/wireguard/wg0.conf" "Address = 10.66.0.1/22" "the first host of 10.66.0.0/22"
check_contains "$work/de-1/etc/wireguard/wg0.conf" "Address = 10.67.0.1/24" "the first host of 10.67.0.0/24"
check_contains "$work/de-1/etc/wireguard/wg0.conf" "ListenPort = 51821" "the listen port"
grep -qi '^\[Peer\]' "$work"/{nl-1,de-1}/etc/wireguard/wg0.conf && fail "wg0.conf has [Peer] sections (the agent owns peers)"
check_contains "$work/nl-1/etc/sysctl.d/90-pvpn.conf" "net.ipv4.ip_forward = 1" "IP forwarding"

log "node private keys: on their node only"
declare -A public_keys
for node in nl-1 de-1; do
    private_key=$(cat "$work/$node/etc/wireguard/wg0.key")
    public_keys[$node]=$(wg pubkey <<<"$private_key") || fail "$node's wg0.key is not a WireGuard private key"
    # Anywhere else: the Ansible output, the inventory, the other targets, Ansible's temp files,
    # the repository.
    leaks=$(grep -rlF --devices=skip --exclude-dir=proc --exclude-dir="$node" -- "$private_key" "$work" "$repo/ansible" ~/.ansible 2>/dev/null || true)
    [ -z "$leaks" ] || fail "$node's private key leaked to: $leaks"
done
unset private_key
[ "${public_keys[nl-1]}" != "${public_keys[de-1]}" ] || fail "two nodes got the same key"

log "registration in PostgreSQL (pvpnctl node add, delegated to the backend host)"
psql_test() { runuser -u postgres -- psql -X -q -tA -d "$db_name" -v ON_ERROR_STOP=1 -c "$1"; }
regions=$(psql_test "SELECT string_agg(code || '=' || display_name, ',' ORDER BY code) FROM regions")
[ "$regions" = "de=Germany,nl=Netherlands" ] || fail "regions in the database: '$regions'"
nodes=$(psql_test "SELECT string_agg(concat_ws(' ', name, region, endpoint, public_key, listen_port, subnet, capacity, array_to_string(dns, ';')), ',' ORDER BY name) FROM nodes")
expected="de-1 de 198.18.0.2:51821 ${public_keys[de-1]} 51821 10.67.0.0/24 250 198.18.0.53,nl-1 nl 198.18.0.1:51820 ${public_keys[nl-1]} 51820 10.66.0.0/22 250 1.1.1.1;9.9.9.9"
[ "$nodes" = "$expected" ] || fail "nodes in the database:
  got      $nodes
  expected $expected"

log "a changed endpoint updates the registration, and the run says so"
ansible-playbook -i "$work/inventory.yml" region.yml --limit de-1 -e pvpn_node_endpoint=198.18.0.3:51821 \
    >"$work/run-endpoint.log" 2>&1 || { tail -n 40 "$work/run-endpoint.log" >&2; fail "region.yml with a new endpoint failed"; }
changed_tasks=$(grep -B2 '^changed:' "$work/run-endpoint.log" | sed -n 's/^TASK \[\(.*\)\] \**$/\1/p' | tr '\n' ';')
[ "$changed_tasks" = "node_registration : Register the node with the backend;" ] \
    || fail "a new endpoint changed: '$changed_tasks' (expected only the registration)"
[ "$(psql_test "SELECT endpoint FROM nodes WHERE name = 'de-1'")" = "198.18.0.3:51821" ] \
    || fail "the new endpoint of de-1 did not reach PostgreSQL"

log "firewalls: nft accepts every ruleset, and they load in a scratch network namespace"
for node in nl-1 de-1; do
    ruleset=$work/$node/etc/nftables.conf
    nft -c -f "$ruleset" || fail "nft -c rejects $node's /etc/nftables.conf"
done
# (the scratch namespace $netns is deleted by the caller's cleanup, also on failure)
ip netns add "$netns"
ip netns exec "$netns" nft -f "$work/nl-1/etc/nftables.conf" || fail "nl-1's ruleset does not load"
loaded=$(ip netns exec "$netns" nft list ruleset)
ip netns delete "$netns"
for rule in 'policy drop' 'udp dport 51820 accept' 'tcp dport 22 accept' \
    'ip saddr 10.66.0.0/22 oifname != "wg0" masquerade' 'iifname "wg0" oifname != "wg0" accept'; do
    grep -qF -- "$rule" <<<"$loaded" || fail "nl-1's loaded ruleset lacks '$rule':
$loaded"
done
[ "$(grep -c 'policy drop' <<<"$loaded")" -eq 2 ] || fail "input and forward must both drop by default"
grep -Eq 'iifname "wg0" ip daddr \{.*169\.254\.0\.0/16.*\} drop' <<<"$loaded" \
    || fail "clients can reach the provider's metadata service (169.254.0.0/16) through nl-1:
$loaded"

nft -c -f "$backend/etc/nftables.conf" || fail "nft -c rejects the backend host's /etc/nftables.conf"
ip netns add "$netns"
ip netns exec "$netns" nft -f "$backend/etc/nftables.conf" || fail "the backend host's ruleset does not load"
loaded=$(ip netns exec "$netns" nft list ruleset)
ip netns delete "$netns"
for rule in 'policy drop' 'tcp dport 22 accept' 'ip saddr { 198.18.0.1, 198.18.0.2 } tcp dport 6379 accept'; do
    grep -qF -- "$rule" <<<"$loaded" || fail "the backend host's loaded ruleset lacks '$rule':
$loaded"
done
grep -Eq 'ip6 saddr .*2001:db8::1.* tcp dport 6379 accept' <<<"$loaded" || fail "the backend host lets no IPv6 node reach Redis:
$loaded"
[ "$(grep -c 'dport' <<<"$loaded")" -eq 3 ] || fail "the backend host opens more than SSH and Redis:
$loaded"

log "systemd units: systemd-analyze verify, and enabled"
verify_units() { # root units...
    local root=$1 out; shift
    out=$(systemd-analyze verify --root="$root" --man=no "$@" 2>&1) || fail "systemd-analyze verify ${*} in $root:
$out"
    # verify exits 0 on some warnings; a warning about our own units is a failure too.
    if grep -E 'pvpn-(backend|agent)\.service' <<<"$out"; then
        fail "systemd-analyze warns about a PVPN unit (above)"
    fi
    # Hardening: systemd's own exposure score (0-10, printed; 100ths here) stays at "OK" (< 2).
    out=$(systemd-analyze security --offline=yes --root="$root" --threshold=20 "$@" 2>&1) \
        || fail "systemd-analyze security: ${*} is exposed more than it should be:
$(tail -n 5 <<<"$out")"
}
verify_units "$backend" pvpn-backend.service
check_contains "$backend/etc/systemd/system/pvpn-backend.service" "ProtectSystem=strict" "ProtectSystem=strict"
for node in nl-1 de-1; do
    verify_units "$work/$node" pvpn-agent.service
done
check_contains "$work/nl-1/etc/systemd/system/pvpn-agent.service" "CapabilityBoundingSet=CAP_NET_ADMIN" "CAP_NET_ADMIN only"
check_enabled() { # root unit
    [ -n "$(find "$1/etc/systemd/system" -path '*.wants/*' -name "$2.service" -print -quit)" ] \
        || fail "$2 is not enabled in $1"
}
check_user() { # root user
    in_root "$1" getent passwd "$2" | grep -q ':/usr/sbin/nologin$' || fail "system user $2 is missing in $1"
}
for unit in pvpn-backend postgresql redis-server nftables; do
    check_enabled "$backend" "$unit"
done
check_user "$backend" pvpn
for node in nl-1 de-1; do
    for unit in pvpn-agent nftables wg-quick@wg0; do
        check_enabled "$work/$node" "$unit"
    done
    check_user "$work/$node" pvpn-agent
done

log "a new name for Redis: the next run issues a new certificate and changes nothing else"
old_serial=$(openssl x509 -in "$backend/etc/redis/tls/server.crt" -noout -serial)
ansible-playbook -i "$work/inventory.yml" backend.yml -e '{"pvpn_redis_tls_names": ["redis.pvpn.test", "redis2.pvpn.test"]}' \
    >"$work/run-tls-names.log" 2>&1 || { tail -n 40 "$work/run-tls-names.log" >&2; fail "backend.yml with a new Redis name failed"; }
changed_tasks=$(grep -B2 '^changed:' "$work/run-tls-names.log" | sed -n 's/^TASK \[\(.*\)\] \**$/\1/p' | tr '\n' ';')
[ "$changed_tasks" = "redis : Write the server certificate's extensions (its names);redis : Issue the server certificate;" ] \
    || fail "a new Redis name changed: '$changed_tasks' (expected the certificate only)"
[ "$(openssl x509 -in "$backend/etc/redis/tls/server.crt" -noout -serial)" != "$old_serial" ] || fail "the Redis certificate was not issued again"
openssl x509 -in "$backend/etc/redis/tls/server.crt" -noout -ext subjectAltName | grep -qF 'DNS:redis2.pvpn.test' \
    || fail "the new Redis certificate lacks the new name"

log "Redis: TLS only, with a certificate from the backend host's own CA"
conf=$backend/etc/redis/redis.conf
tls=$backend/etc/redis/tls
for line in 'port 0' 'tls-port 6379' 'tls-cert-file /etc/redis/tls/server.crt' \
    'tls-key-file /etc/redis/tls/server.key' 'tls-auth-clients no'; do
    grep -qxF -- "$line" "$conf" || fail "redis.conf lacks '$line'"
done
[ "$(grep -cE '^port ' "$conf")" -eq 1 ] || fail "redis.conf opens a plain-TCP port: $(grep -E '^port ' "$conf")"
openssl verify -CAfile "$tls/ca.crt" "$tls/server.crt" >/dev/null || fail "the Redis certificate is not signed by the backend host's CA"
san=$(openssl x509 -in "$tls/server.crt" -noout -ext subjectAltName)
grep -qF 'IP Address:127.0.0.1' <<<"$san" && grep -qF 'DNS:localhost' <<<"$san" && grep -qF 'DNS:redis.pvpn.test' <<<"$san" \
    || fail "the Redis certificate does not name 127.0.0.1, localhost and pvpn_redis_tls_names: $san"
openssl x509 -in "$tls/ca.crt" -noout -ext basicConstraints | grep -qF 'CA:TRUE' || fail "the Redis CA is not a CA"

log "Redis: the rendered configuration and ACL file in a throwaway redis-server"
redis_dir=$work/redis
mkdir "$redis_dir"
redis_port=$(free_port)
# The rendered configuration as is (port 0: no plain TCP), but on a free TLS port and with the
# paths of the backend root's files.
redis-server "$conf" --tls-port "$redis_port" --bind 127.0.0.1 \
    --tls-cert-file "$tls/server.crt" --tls-key-file "$tls/server.key" --tls-ca-cert-file "$tls/ca.crt" \
    --aclfile "$backend/etc/redis/users.acl" --dir "$redis_dir" --logfile "$redis_dir/redis.log" \
    --pidfile "$redis_dir/redis.pid" --supervised no --daemonize no &
redis_pid=$!
backend_ca=$backend/etc/pvpn/redis-ca.crt
for _ in $(seq 1 50); do
    redis-cli --tls --cacert "$backend_ca" -p "$redis_port" ping 2>/dev/null | grep -q NOAUTH && break
    sleep 0.1
done
listening=$(ss -Hltnp | grep -F "pid=$redis_pid," | awk '{print $4}' | sort | tr '\n' ' ')
[ "$listening" = "127.0.0.1:$redis_port " ] || fail "redis-server listens on '$listening', expected only its TLS port 127.0.0.1:$redis_port"
plain=$(timeout 5 redis-cli -p "$redis_port" ping 2>&1 || true)
grep -qE 'PONG|NOAUTH' <<<"$plain" && fail "Redis answered plain TCP on its TLS port: $plain"
[ -d "$redis_dir/appendonlydir" ] || fail "Redis runs without its append-only file (persistence must be on): $(cat "$redis_dir/redis.log")"

url_of() { # env file -> its REDIS_URL on the throwaway port
    sed -n "s/^REDIS_URL='\(.*\)'$/\1/p" "$1" | sed "s/:6379\//:$redis_port\//"
}
backend_url=$(url_of "$backend/etc/pvpn/backend.env")
nl_url=$(url_of "$work/nl-1/etc/pvpn/agent.env")
de_url=$(url_of "$work/de-1/etc/pvpn/agent.env")
expect() { # url pattern command... (several commands on one connection: pass them on stdin)
    local url=$1 pattern=$2 out; shift 2
    out=$(redis-cli --no-auth-warning --cacert "$backend_ca" -u "$url" "$@" 2>&1)
    grep -qE -- "$pattern" <<<"$out" || fail "redis: '$*' as $(sed 's|rediss://\([^:@]*\).*|\1|' <<<"$url") answered '$out', expected /$pattern/"
}
expect_transaction() { # url pattern <<<MULTI ... EXEC: every command queued, none refused
    local url=$1 pattern=$2 out
    out=$(redis-cli --no-auth-warning --cacert "$backend_ca" -u "$url" 2>&1)
    if grep -qE -- "$pattern" <<<"$out" && grep -q QUEUED <<<"$out" && ! grep -qE 'NOPERM|ERR' <<<"$out"; then
        return 0
    fi
    fail "redis: a MULTI block answered '$out', expected every command QUEUED and /$pattern/"
}
# The backend publishes to every region (atomically, with a script) and reads feedback.
expect "$backend_url" '^[0-9]+-[0-9]+$' EVAL "redis.call('HSET', KEYS[2], 'k', 'v'); redis.call('SET', KEYS[3], '1'); return redis.call('XADD', KEYS[1], '*', 'event', '{}')" 3 'pvpn:{nl}:events' 'pvpn:{nl}:node:nl-1:peers' 'pvpn:{nl}:node:nl-1:revision'
expect "$backend_url" '^OK$' EVAL "return redis.call('SET', KEYS[1], ARGV[1])" 1 'pvpn:{nl}:node:nl-1:interface' '{"protocol":"wireguard"}'
expect "$backend_url" '^[0-9]+-[0-9]+$' XADD 'pvpn:{de}:events' '*' event '{}'
expect "$backend_url" '^OK$' XGROUP CREATE 'pvpn:{nl}:node:nl-1:feedback' backend '$' MKSTREAM
expect "$backend_url" 'NOPERM' FLUSHALL
# A node's agent does its own work as its own user (pvpn-agent-nl-1)...
expect "$nl_url" '^OK$' XGROUP CREATE 'pvpn:{nl}:events' agent:nl-1 0 MKSTREAM
expect "$nl_url" 'pvpn:\{nl\}:events' XREADGROUP GROUP agent:nl-1 nl-1 COUNT 10 STREAMS 'pvpn:{nl}:events' '>'
expect "$nl_url" '^[0-9]+$' XACK 'pvpn:{nl}:events' agent:nl-1 0-1
expect "$nl_url" '^0' XAUTOCLAIM 'pvpn:{nl}:events' agent:nl-1 nl-1 60000 0
expect "$nl_url" '^[0-9]+-[0-9]+$' XADD 'pvpn:{nl}:node:nl-1:feedback' MAXLEN '~' 10000 '*' event '{}'
expect "$nl_url" '^[0-9]+-[0-9]+$' XADD 'pvpn:{nl}:node:nl-1:dead' '*' reason bad source_id 1-1 payload x
expect "$nl_url" '^OK$' SET 'pvpn:{nl}:node:nl-1:heartbeat' '{}' EX 30
expect "$nl_url" '^OK$' SET 'pvpn:{nl}:node:nl-1:lease' token-1 NX PX 30000
expect "$nl_url" '^1$' PEXPIRE 'pvpn:{nl}:node:nl-1:lease' 30000
expect "$nl_url" '^1$' DEL 'pvpn:{nl}:node:nl-1:lease'
# The agent's snapshot read: peers, revision, epoch and interface spec in one MULTI.
expect_transaction "$nl_url" 'protocol' <<<"MULTI
HGETALL pvpn:{nl}:node:nl-1:peers
GET pvpn:{nl}:node:nl-1:revision
GET pvpn:{nl}:node:nl-1:epoch
GET pvpn:{nl}:node:nl-1:interface
EXEC"
# ...and every write to anyone's desired state, to another node's state, and every forbidden
# command gets NOPERM (issue #11): one command at a time.
nl_forbidden=(
    "XADD pvpn:{nl}:events * event {}"
    "XTRIM pvpn:{nl}:events MAXLEN 0"
    "DEL pvpn:{nl}:events"
    "HSET pvpn:{nl}:node:nl-1:peers k evil"
    "SET pvpn:{nl}:node:nl-1:interface {}"
    "HDEL pvpn:{nl}:node:nl-1:peers k"
    "DEL pvpn:{nl}:node:nl-1:peers"
    "SET pvpn:{nl}:node:nl-1:revision 999999"
    "INCR pvpn:{nl}:node:nl-1:revision"
    "HSET pvpn:{nl}:node:nl-2:peers k evil"
    "DEL pvpn:{nl}:node:nl-2:peers"
    "SET pvpn:{nl}:node:nl-2:revision 1"
    "SET pvpn:{nl}:epoch x"
    "SET pvpn:{nl}:node:nl-2:heartbeat {}"
    "SET pvpn:{nl}:node:nl-2:lease stolen"
    "XADD pvpn:{nl}:node:nl-2:feedback * event {}"
    "XADD pvpn:{nl}:node:nl-2:dead * reason x"
    "XADD pvpn:{de}:node:de-1:feedback * event {}"
    "HGETALL pvpn:{nl}:node:nl-2:peers"
    "HGETALL pvpn:{de}:node:de-1:peers"
    "XREADGROUP GROUP agent:nl-1 nl-1 COUNT 1 STREAMS pvpn:{de}:events >"
    "XGROUP SETID pvpn:{nl}:events agent:nl-1 $"
    "XGROUP DESTROY pvpn:{nl}:events agent:nl-1"
    "XGROUP DELCONSUMER pvpn:{nl}:events agent:nl-1 nl-1"
    "XDEL pvpn:{nl}:events 0-1"
    "EVAL x 0"
    "EVAL_RO x 0"
    "EVALSHA e0e1f9fabfc9d4800c877a703b823ac0578ff8db 0"
    "SCRIPT LOAD x"
    "FUNCTION LIST"
    "FUNCTION FLUSH"
    "FCALL f 0"
    "FLUSHALL"
    "FLUSHDB"
    "KEYS *"
    "SCAN 0"
    "CONFIG GET *"
    "CONFIG SET maxmemory 0"
    "ACL LIST"
    "SAVE"
    "REPLICAOF NO ONE"
    "SHUTDOWN"
    "CLIENT KILL TYPE normal"
    "PUBLISH x y"
    "SET pvpn:{nl}x 1"
)
for command in "${nl_forbidden[@]}"; do
    read -ra words <<<"$command"
    expect "$nl_url" 'NOPERM' "${words[@]}"
done
expect "$de_url" '^[0-9]+-[0-9]+$' XADD 'pvpn:{de}:node:de-1:feedback' '*' event '{}'
expect "$de_url" 'NOPERM' XADD 'pvpn:{nl}:node:nl-1:feedback' '*' event '{}'
expect "$de_url" 'NOPERM' GET 'pvpn:{nl}:epoch'
# Redis cannot tie a consumer group to a user: nl-1's user can read and acknowledge through
# another node's group on the shared events stream. Harmless by design (ARCHITECTURE.md, "Redis
# credentials"): the victim's periodic reconcile against its own snapshot restores what it missed.
expect "$backend_url" '^OK$' XGROUP CREATE 'pvpn:{nl}:events' agent:nl-2 '$'
expect "$nl_url" '^[0-9]+$' XACK 'pvpn:{nl}:events' agent:nl-2 0-1
# No anonymous access, no wrong passwords.
expect "rediss://127.0.0.1:$redis_port/0" 'NOAUTH' PING
expect "rediss://pvpn-agent-nl-1:wrong-password-0000@127.0.0.1:$redis_port/0" 'WRONGPASS' PING
expect "rediss://pvpn-agent-nl-1:$redis_de_password@127.0.0.1:$redis_port/0" 'WRONGPASS' PING

log "the real pvpn-backend, with the backend host's env file, works as its ACL user"
# Its DATABASE_URL already names the test database; only the Redis port is swapped in.
backend_metrics_port=$(free_port)
(
    set -a
    # shellcheck disable=SC1091
    . "$backend/etc/pvpn/backend.env"
    set +a
    REDIS_URL=$backend_url PVPN_REDIS_CA_FILE=$backend$PVPN_REDIS_CA_FILE \
        PVPN_METRICS_ADDR=127.0.0.1:$backend_metrics_port exec "$work/bin/pvpn-backend"
) >"$work/backend.log" 2>&1 &
backend_pid=$!
backend_ok=""
for _ in $(seq 1 100); do
    # With Redis empty of its epochs, the backend republishes every node's snapshot from PostgreSQL.
    if [ "$(redis-cli --no-auth-warning --cacert "$backend_ca" -u "$backend_url" EXISTS 'pvpn:{nl}:epoch' 'pvpn:{de}:epoch')" = 2 ] \
        && [ "$(redis-cli --no-auth-warning --cacert "$backend_ca" -u "$backend_url" GET 'pvpn:{de}:node:de-1:revision')" = 0 ]; then
        backend_ok=1
        break
    fi
    kill -0 "$backend_pid" 2>/dev/null || break
    sleep 0.2
done
[ -n "$backend_ok" ] || fail "pvpn-backend did not republish the regions' snapshots as pvpn-backend:
$(tail -n 30 "$work/backend.log")"
grep -qiE 'NOPERM|no permissions' "$work/backend.log" && fail "pvpn-backend hit a NOPERM with its ACL user:
$(grep -iE 'NOPERM|no permissions' "$work/backend.log" | head -5)"
kill "$backend_pid" && wait "$backend_pid" 2>/dev/null || true
backend_pid=""

log "the real pvpn-agent, with nl-1's env file, works as its own ACL user"
# The agent drives a wireguard-go interface in a scratch namespace through its UAPI socket (this
# machine has no WireGuard kernel module); everything else comes from the provisioned agent.env.
wg_iface=pvpnans$$
ip netns add "$netns"
ip netns exec "$netns" wireguard-go -f "$wg_iface" >"$work/wireguard-go.log" 2>&1 &
wg_pid=$!
for _ in $(seq 1 50); do [ -S "/var/run/wireguard/$wg_iface.sock" ] && break; sleep 0.1; done
[ -S "/var/run/wireguard/$wg_iface.sock" ] || fail "wireguard-go did not create $wg_iface: $(cat "$work/wireguard-go.log")"
wg set "$wg_iface" private-key <(wg genkey) listen-port 0 || fail "cannot configure $wg_iface"
client_key=$(wg genkey | wg pubkey)
expect "$backend_url" '^1$' HSET 'pvpn:{nl}:node:nl-1:peers' "$client_key" \
    "{\"v\":1,\"public_key\":\"$client_key\",\"allowed_ips\":[\"10.66.0.2/32\"]}"
expect "$backend_url" '^OK$' SET 'pvpn:{nl}:node:nl-1:revision' 1
metrics_port=$(free_port)
(
    set -a
    # shellcheck disable=SC1091
    . "$work/nl-1/etc/pvpn/agent.env"
    set +a
    REDIS_URL=$nl_url PVPN_REDIS_CA_FILE=$work/nl-1$PVPN_REDIS_CA_FILE \
        PVPN_WG_INTERFACE=$wg_iface PVPN_WG_BACKEND=userspace \
        PVPN_METRICS_ADDR=127.0.0.1:$metrics_port PVPN_HEARTBEAT_INTERVAL_SECS=1 \
        exec "$work/bin/pvpn-agent"
) >"$work/agent.log" 2>&1 &
agent_pid=$!
agent_ok=""
for _ in $(seq 1 100); do
    if wg show "$wg_iface" peers | grep -qxF "$client_key" \
        && [ -n "$(redis-cli --no-auth-warning --cacert "$backend_ca" -u "$backend_url" GET 'pvpn:{nl}:node:nl-1:heartbeat')" ]; then
        agent_ok=1
        break
    fi
    kill -0 "$agent_pid" 2>/dev/null || break
    sleep 0.2
done
[ -n "$agent_ok" ] || fail "pvpn-agent did not apply its snapshot and send a heartbeat as pvpn-agent-nl-1:
$(tail -n 30 "$work/agent.log")"
grep -qiE 'NOPERM|no permissions' "$work/agent.log" && fail "pvpn-agent hit a NOPERM with its ACL user:
$(grep -iE 'NOPERM|no permissions' "$work/agent.log" | head -5)"
expect "$backend_url" '^[1-9][0-9]*$' XLEN 'pvpn:{nl}:node:nl-1:feedback'
kill "$agent_pid" && wait "$agent_pid" 2>/dev/null || true
agent_pid=""
kill "$wg_pid" && wait "$wg_pid" 2>/dev/null || true
wg_pid=""
ip netns delete "$netns"

kill "$redis_pid" && wait "$redis_pid" 2>/dev/null || true
redis_pid=""
check_contains "$backend/etc/redis/redis.conf" "bind 127.0.0.1" "the bind address from pvpn_redis_bind"
