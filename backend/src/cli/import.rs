//! `pvpnctl import`: bring an existing WireGuard server's peers onto a PVPN node without a new
//! config for anyone. Parsing the files happens here; every rule is in `service::import`.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use pvpn_common::NodeName;

use super::{actor, output};
use crate::service::Service;
use crate::service::import::{
    ImportError, ImportReport, ImportRequest, Problem, UnmappedPeer, UnmappedPeers, parse_mapping,
    parse_peers,
};

/// Most problems printed; the rest are counted.
const MAX_PRINTED_PROBLEMS: usize = 100;

#[derive(Debug, Args)]
#[command(
    long_about = "Import the peers of an existing WireGuard server onto a PVPN node, so that its \
users keep their configs: public keys, preshared keys and addresses are taken over as they are \
(PVPN never sees a private key). Everything is checked first; any problem changes nothing.\n\n\
Run it after `pvpnctl node add` and BEFORE the node's agent starts: the agent owns the \
interface's peer list, and removes every peer its snapshot does not hold. Peers the mapping does \
not name are imported as unassigned (owned by an operator placeholder until a later import maps \
them; they keep working), or with `--unmapped leave-out` not imported — the agent then removes \
them when it takes over, which needs `--remove-unmapped`.\n\n\
Server-side PersistentKeepalive is not kept: PVPN nodes send none (clients keep theirs); the \
agent clears it in place, without removing the peer.\n\n\
Running the same import again changes nothing and says so; a later import with more mappings \
assigns unassigned devices to their users."
)]
pub struct ImportArgs {
    /// The PVPN node that is (or replaces) the old server.
    pub node: NodeName,
    /// The old server's peers: `wg show <iface> dump` output or its wg-quick config (`-`: stdin).
    #[arg(long)]
    pub peers: PathBuf,
    /// Public key → Telegram id, device name: CSV (`public_key,telegram_id,device_name`),
    /// a JSON array or JSON Lines of `{"public_key", "telegram_id", "device_name"}`.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// What to do with peers the mapping does not name.
    #[arg(long, value_enum, default_value = "unassigned")]
    pub unmapped: UnmappedPeers,
    /// Confirms that left-out peers are removed from the interface when the agent takes over.
    #[arg(long)]
    pub remove_unmapped: bool,
    /// Check everything and print what would happen; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Return at commit instead of waiting until the relay (pvpn-backend) published the node's
    /// snapshot to Redis. Start the agent only after that: a partial snapshot would make it
    /// remove the peers not published yet.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the relay, in seconds.
    #[arg(long, default_value_t = 300)]
    pub wait_secs: u64,
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the peers from stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

pub async fn run(service: &Service, args: ImportArgs, json: bool) -> anyhow::Result<()> {
    let peers_source = args.peers.display().to_string();
    let peers_text = read(&args.peers)?;
    let (mapping_source, mapping_text) = match &args.mapping {
        Some(path) => (path.display().to_string(), read(path)?),
        None => ("(no mapping)".to_string(), String::new()),
    };
    let peers = parse_peers(&peers_source, &peers_text);
    let mapping = parse_mapping(&mapping_source, &mapping_text);
    let (peers, mapping) = match (peers, mapping) {
        (Ok(p), Ok(m)) => (p, m),
        (p, m) => {
            let problems: Vec<Problem> =
                [p.err(), m.err()].into_iter().flatten().flatten().collect();
            return refuse(&problems, json);
        }
    };
    let request = ImportRequest {
        node: args.node,
        peers_source,
        peers,
        mapping_source,
        mapping,
        unmapped: args.unmapped,
        confirm_removal: args.remove_unmapped,
        dry_run: args.dry_run,
    };
    let report = match service.import_peers(&actor(), &request).await {
        Ok(report) => report,
        Err(ImportError::Invalid(problems)) => return refuse(&problems, json),
        Err(ImportError::Service(e)) => return Err(e.into()),
    };
    if json {
        output::json(&report)?;
    } else {
        print_report(&report);
    }
    if report.dry_run || args.no_wait {
        return Ok(());
    }
    wait_published(
        service,
        &request.node,
        Duration::from_secs(args.wait_secs),
        json,
    )
    .await
}

/// Waits until the relay has published every revision of the node, so the agent may start.
async fn wait_published(
    service: &Service,
    node: &NodeName,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let (revision, published) = service.node_publication(node).await?;
        if published >= revision {
            if !json {
                println!(
                    "published to Redis at revision {revision}: the node's agent may take over"
                );
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the import is committed, but after {}s the relay has published node {node} only up to revision {published} of {revision}: is pvpn-backend running? Do not start the node's agent before `pvpnctl status` shows it published at {revision} (or run this import again: it waits)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn refuse(problems: &[Problem], json: bool) -> anyhow::Result<()> {
    if json {
        output::json(&serde_json::json!({ "refused": true, "problems": problems }))?;
    } else {
        for problem in problems.iter().take(MAX_PRINTED_PROBLEMS) {
            eprintln!("{problem}");
        }
        if problems.len() > MAX_PRINTED_PROBLEMS {
            eprintln!("… and {} more", problems.len() - MAX_PRINTED_PROBLEMS);
        }
    }
    bail!(
        "import refused: {} problem(s); nothing was changed",
        problems.len()
    )
}

/// Most unmapped peers listed by line; `--json` lists all.
const MAX_LISTED_PEERS: usize = 50;

fn list_peers(what: &str, peers: &[UnmappedPeer]) {
    if peers.is_empty() {
        return;
    }
    println!("  {what}: {}", peers.len());
    for peer in peers.iter().take(MAX_LISTED_PEERS) {
        println!("    line {}: {}", peer.line, peer.public_key);
    }
    if peers.len() > MAX_LISTED_PEERS {
        println!(
            "    … and {} more (--json lists all)",
            peers.len() - MAX_LISTED_PEERS
        );
    }
}

fn print_report(r: &ImportReport) {
    println!("node {}: {} peer(s) in the file", r.node, r.peers);
    println!(
        "  new devices: {} ({} unassigned), new users: {}",
        r.created_devices, r.unassigned_devices, r.created_users
    );
    println!(
        "  assigned to their users: {}, already imported: {}",
        r.assigned_devices, r.unchanged_devices
    );
    list_peers(
        "unmapped, imported as unassigned (a later import with their mapping assigns them)",
        &r.unassigned,
    );
    list_peers(
        "unmapped, left out (the agent removes them when it takes over)",
        &r.left_out,
    );
    if r.keepalive_dropped > 0 {
        println!(
            "  server-side PersistentKeepalive not kept on {} peer(s) (cleared in place by the agent)",
            r.keepalive_dropped
        );
    }
    let verdict = match (r.dry_run, r.changed, r.revisions) {
        (true, true, _) => "dry run: nothing was written".to_string(),
        (true, false, _) | (false, false, _) => {
            "unchanged: everything is already imported".to_string()
        }
        (false, true, Some((first, last))) => {
            format!("imported; node revisions {first}..={last}")
        }
        (false, true, None) => "imported".to_string(),
    };
    println!("{verdict}");
}
