//! The whole of PVPN on one machine, for the end-to-end test and the README's demo.
//!
//! Everything is real except Telegram, which the local Bot API server from `pvpn-testkit` stands
//! in for: PostgreSQL, Redis, the `pvpn-backend` and `pvpn-agent` binaries as separate processes,
//! `wireguard-go` interfaces in network namespaces joined by veth, and ping through the tunnel.
//!
//! # Layout
//!
//! - [`binaries`]: finds the built programs.
//! - [`fleet`]: Debian guests provisioned by `ansible/site.yml` over SSH (the fleet test).
//! - [`live`]: `pvpn-demo` with a real bot token: one local node, live on Telegram.
//! - [`old_server`]: a WireGuard server as it ran before PVPN, for the import cut-over.
//! - [`process`]: a child process with a log file, stopped by its pid when dropped.
//! - [`site`]: one region's node and client network ([`site::VpnSite`]).
//! - [`stack`]: the services and processes of a running PVPN ([`stack::Stack`]).
//! - [`user`]: a Telegram user talking to the bot, as a person would.
//! - [`tunnel`]: a received config brought up in a client namespace, and ping.

pub mod binaries;
pub mod fleet;
pub mod live;
pub mod old_server;
pub mod process;
pub mod site;
pub mod stack;
pub mod tunnel;
pub mod user;
