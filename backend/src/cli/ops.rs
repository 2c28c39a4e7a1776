//! `pvpnctl invite ...`, `reconcile`, `drift`, `status`: operating the running system.

use clap::{Args, Subcommand};
use pvpn_common::{NodeName, RegionCode};
use serde_json::json;

use super::{actor, output};
use crate::admin_args::InviteDays;
use crate::service::{ReconcileTarget, Service};

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Create an invite code (send users t.me/<bot>?start=<code>).
    Create {
        /// How many registrations the code admits.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Days until the code expires, 1 to 3650 (default: never).
        #[arg(long)]
        expires_in_days: Option<InviteDays>,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ReconcileArgs {
    /// Reconcile this node.
    #[arg(long)]
    pub node: Option<NodeName>,
    /// Reconcile every node of this region.
    #[arg(long)]
    pub region: Option<RegionCode>,
}

pub async fn invite(service: &Service, cmd: InviteCommand, json: bool) -> anyhow::Result<()> {
    let InviteCommand::Create {
        uses,
        expires_in_days,
    } = cmd;
    let valid_for = expires_in_days.map(InviteDays::duration);
    let invite = service.create_invite(&actor(), uses, valid_for).await?;
    if json {
        return output::json(&invite);
    }
    println!("{}", invite.code);
    Ok(())
}

pub async fn reconcile(service: &Service, args: ReconcileArgs, json: bool) -> anyhow::Result<()> {
    let target = match (args.node, args.region) {
        (Some(node), _) => ReconcileTarget::Node(node),
        (None, Some(region)) => ReconcileTarget::Region(region),
        (None, None) => anyhow::bail!("give --node or --region"),
    };
    let request_id = service.request_reconcile(&actor(), &target).await?;
    if json {
        return output::json(&json!({ "request_id": request_id }));
    }
    println!("reconcile requested: {request_id}");
    println!("see `pvpnctl drift` once the agents report back");
    Ok(())
}

pub async fn drift(service: &Service, json: bool) -> anyhow::Result<()> {
    let nodes = service.node_statuses(None).await?;
    if json {
        let drift: Vec<_> = nodes
            .iter()
            .map(|n| json!({ "node": n.name, "region": n.region, "up": n.up, "last_reconcile": n.last_reconcile }))
            .collect();
        return output::json(&drift);
    }
    let field = |n: &crate::service::NodeStatus, key: &str| {
        output::opt(
            n.last_reconcile
                .as_ref()
                .and_then(|r| r.get(key))
                .map(|v| v.to_string().trim_matches('"').to_string()),
        )
    };
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.to_string(),
                field(n, "trigger"),
                field(n, "request_id"),
                field(n, "snapshot_revision"),
                field(n, "added"),
                field(n, "removed"),
                field(n, "updated"),
            ]
        })
        .collect();
    output::table(
        &[
            "NODE", "TRIGGER", "REQUEST", "REVISION", "ADDED", "REMOVED", "UPDATED",
        ],
        &rows,
    );
    Ok(())
}

pub async fn status(service: &Service, json: bool) -> anyhow::Result<()> {
    let status = service.system_status().await?;
    if json {
        return output::json(&status);
    }
    println!(
        "users: {}  active devices: {}  outbox backlog: {}{}",
        status.users,
        status.active_devices,
        status.outbox_backlog,
        status
            .oldest_unpublished_secs
            .map(|s| format!(" (oldest {s}s)"))
            .unwrap_or_default()
    );
    let rows: Vec<Vec<String>> = status
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.to_string(),
                n.region.to_string(),
                n.status.to_string(),
                if n.up { "up".into() } else { "down".into() },
                output::opt(n.heartbeat_age_secs.map(|s| format!("{s}s"))),
                n.revision.to_string(),
                n.published_revision.to_string(),
                n.applied_revision.to_string(),
                output::opt(n.peer_count),
                format!("{}/{}", n.devices, n.capacity),
            ]
        })
        .collect();
    output::table(
        &[
            "NODE",
            "REGION",
            "STATUS",
            "AGENT",
            "HEARTBEAT",
            "REVISION",
            "PUBLISHED",
            "APPLIED",
            "PEERS",
            "DEVICES",
        ],
        &rows,
    );
    Ok(())
}
