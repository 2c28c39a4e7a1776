#!/usr/bin/env bash
# Runs PVPN's whole test suite: formatting, lints, and every test against real PostgreSQL, Redis
# and wireguard-go, and kernel WireGuard in Debian guests under QEMU. Needs root (tests create
# network namespaces and tap devices). Any failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

export PVPN_TEST_PG_URL="${PVPN_TEST_PG_URL:-postgres://pvpn:pvpn@127.0.0.1:5432/postgres}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== Debian guest image for the QEMU tests (built once per machine, ~3 min cold)"
scripts/build-guest-image.sh >/dev/null
echo "== AmneziaWG module and tools for the guests (built once per kernel, ~2 min cold)"
scripts/build-awg.sh >/dev/null
echo "== the fleet test's apt repository for its guests (built once per machine and inputs, needs Debian's mirror then)"
scripts/build-fleet-repo.sh >/dev/null
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
scripts/test-ansible.sh  # ansible/: lint, then the playbooks applied to debootstrapped Debian 12 roots and checked
