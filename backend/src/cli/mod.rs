//! `pvpnctl`, the admin CLI: the same service layer the bot uses, from a shell on the backend
//! host. Reads `DATABASE_URL` (and `PVPN_CONFIG`) like `pvpn-backend`. Every listing takes
//! `--json`; declarations (`region add`, `node add`) are idempotent and print `created`,
//! `updated` or `unchanged`.

mod import;
mod nodes;
mod ops;
mod output;
mod regions;
mod users;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::db;
use crate::service::{Actor, Service};

/// PVPN admin CLI.
#[derive(Debug, Parser)]
#[command(
    name = "pvpnctl",
    version,
    about = "PVPN admin CLI: regions, nodes, users, invites, reconcile, status."
)]
#[command(after_help = "Reads DATABASE_URL (or `database_url` in the PVPN_CONFIG TOML file).")]
pub struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Regions users can pick.
    #[command(subcommand)]
    Region(regions::RegionCommand),
    /// VPN nodes (one WireGuard interface each).
    #[command(subcommand)]
    Node(nodes::NodeCommand),
    /// Bring an existing WireGuard server's peers onto a node (no new configs for anyone).
    Import(import::ImportArgs),
    /// Registered users.
    #[command(subcommand)]
    User(users::UserCommand),
    /// Invite codes for invite-only registration.
    #[command(subcommand)]
    Invite(ops::InviteCommand),
    /// Ask a node or every node of a region to reconcile its interface with its snapshot.
    Reconcile(ops::ReconcileArgs),
    /// What each node reported about its last reconcile (the drift it repaired).
    Drift,
    /// Nodes, heartbeat age, applied vs published revision, outbox backlog.
    Status,
}

/// Who runs the CLI, for the audit log.
fn actor() -> Actor {
    Actor::Cli(
        std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "unknown".into()),
    )
}

/// Runs one command; the error's message is what the user sees.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load()?;
    let pool = db::pool(config.database_url.expose(), 2)?;
    if matches!(cli.command, Command::Migrate) {
        match db::migrate_counting(&pool).await? {
            0 => println!("unchanged"),
            n => println!("applied {n} migration(s)"),
        }
        return Ok(());
    }
    let service = Service::new(pool, config.service_settings());
    let json = cli.json;
    match cli.command {
        Command::Migrate => Ok(()),
        Command::Region(cmd) => regions::run(&service, cmd, json).await,
        Command::Node(cmd) => nodes::run(&service, cmd, json).await,
        Command::Import(args) => import::run(&service, args, json).await,
        Command::User(cmd) => users::run(&service, cmd, json).await,
        Command::Invite(cmd) => ops::invite(&service, cmd, json).await,
        Command::Reconcile(args) => ops::reconcile(&service, args, json).await,
        Command::Drift => ops::drift(&service, json).await,
        Command::Status => ops::status(&service, json).await,
    }
}
