#!/usr/bin/env bash
# The README's first command: prepares this machine (scripts/setup.sh), builds PVPN, and runs it.
#
# Without TELEGRAM_BOT_TOKEN: a whole PVPN on this machine with the bundled local Bot API server
# in place of Telegram; a scripted user gets a config and pings through the tunnel; Ctrl-C removes
# everything it started. With TELEGRAM_BOT_TOKEN (and PVPN_PUBLIC_ENDPOINT): the bot is live on
# Telegram with one local node. See README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "[run] building pvpn-backend, pvpnctl, pvpn-agent and pvpn-demo (the first build takes a few minutes)"
cargo build --locked --bins -p pvpn-backend -p pvpn-agent -p pvpn-tests
exec target/debug/pvpn-demo
