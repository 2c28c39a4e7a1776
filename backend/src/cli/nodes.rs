//! `pvpnctl node ...`

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use ipnet::Ipv4Net;
use pvpn_common::addressing::ClientSubnet;
use pvpn_common::client_config::Endpoint;
use pvpn_common::obfuscation::{AwgProfile, Protocol};
use pvpn_common::{NodeName, PublicKey, RegionCode};
use serde_json::json;

use super::{actor, output};
use crate::service::{NewProfile, NodeDeclaration, NodeState, Service};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Register a node, or update it (idempotent: prints created, updated or unchanged). Region
    /// and subnet of an existing node cannot change.
    Add(NodeArgs),
    /// List nodes with their load and what their agents last reported.
    List {
        /// Only this region's nodes.
        #[arg(long)]
        region: Option<RegionCode>,
    },
    /// Stop placing new devices on the node; its devices keep working.
    Disable { name: NodeName },
    /// Let the node take new devices again.
    Enable { name: NodeName },
    /// Tell every user with a device on the node, through the bot (once each, in their
    /// language), that the node's configuration changed and the device needs a new config, with
    /// a button that re-issues it. Run it after changing what clients need (the obfuscation
    /// profile, the endpoint, the port, the key). The running backend's bot sends the messages.
    NotifyReissue { name: NodeName },
    /// Show an AmneziaWG node's obfuscation profile, or change it (`--regenerate`, `--set FILE`
    /// with a JSON profile as `--json` prints it). A change invalidates every client config of
    /// the node.
    Profile(ProfileArgs),
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    pub name: NodeName,
    /// Draw a fresh random profile.
    #[arg(long, conflicts_with = "set")]
    pub regenerate: bool,
    /// Use the profile in this JSON file (jc, jmin, jmax, s1, s2, [s3, s4,] h1..h4).
    #[arg(long)]
    pub set: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Node name (e.g. `nl-1`).
    pub name: NodeName,
    /// Region code the node serves.
    #[arg(long)]
    pub region: RegionCode,
    /// Where clients connect: host:port (IPv6 as [addr]:port).
    #[arg(long)]
    pub endpoint: Endpoint,
    /// The node's WireGuard public key (base64, 44 characters).
    #[arg(long)]
    pub public_key: PublicKey,
    /// UDP port the node's interface listens on.
    #[arg(long)]
    pub listen_port: u16,
    /// Client subnet (IPv4 CIDR, /16 to /30); .1 is the node's own address.
    #[arg(long)]
    pub subnet: Ipv4Net,
    /// DNS server pushed to clients (repeatable).
    #[arg(long)]
    pub dns: Vec<IpAddr>,
    /// Most devices the node takes (bounded by the subnet's size).
    #[arg(long)]
    pub capacity: u32,
    /// `wireguard` or `amneziawg` (obfuscated; gets a generated profile). Fixed at creation.
    #[arg(long, default_value = "wireguard")]
    pub protocol: Protocol,
}

pub async fn run(service: &Service, cmd: NodeCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Add(args) => {
            let subnet = ClientSubnet::new(args.subnet)?;
            let declaration = NodeDeclaration {
                name: args.name,
                region: args.region,
                endpoint: args.endpoint,
                public_key: args.public_key,
                listen_port: args.listen_port,
                subnet,
                dns: args.dns,
                capacity: args.capacity,
                protocol: args.protocol,
            };
            let change = service.declare_node(&actor(), &declaration).await?;
            if json {
                output::json(&json!({ "node": declaration.name.as_str(), "change": change }))
            } else {
                println!("{}", change.as_str());
                Ok(())
            }
        }
        NodeCommand::List { region } => {
            let nodes = service.node_statuses(region.as_ref()).await?;
            if json {
                return output::json(&nodes);
            }
            let rows: Vec<Vec<String>> = nodes
                .iter()
                .map(|n| {
                    vec![
                        n.name.to_string(),
                        n.region.to_string(),
                        n.status.to_string(),
                        n.endpoint.clone(),
                        n.subnet.clone(),
                        format!("{}/{}", n.devices, n.capacity),
                        if n.up { "up".into() } else { "down".into() },
                        output::opt(n.heartbeat_age_secs.map(|s| format!("{s}s"))),
                    ]
                })
                .collect();
            output::table(
                &[
                    "NAME",
                    "REGION",
                    "STATUS",
                    "ENDPOINT",
                    "SUBNET",
                    "DEVICES",
                    "AGENT",
                    "HEARTBEAT",
                ],
                &rows,
            );
            Ok(())
        }
        NodeCommand::Disable { name } => set(service, name, false, json).await,
        NodeCommand::Enable { name } => set(service, name, true, json).await,
        NodeCommand::NotifyReissue { name } => {
            let done = service.notify_reissue(&actor(), &name).await?;
            if json {
                output::json(&done)
            } else {
                println!(
                    "{} user(s) will be told by the bot to re-issue their devices on {name}",
                    done.users
                );
                Ok(())
            }
        }
        NodeCommand::Profile(args) => profile(service, args, json).await,
    }
}

async fn profile(service: &Service, args: ProfileArgs, json: bool) -> anyhow::Result<()> {
    let new = match (&args.set, args.regenerate) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            let profile: AwgProfile = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not a profile: {e}", path.display()))?;
            NewProfile::Set(Box::new(profile))
        }
        (None, true) => NewProfile::Regenerate,
        (None, false) => {
            let interface = service.node_interface(&args.name).await?;
            if json {
                return output::json(&interface);
            }
            match interface.amneziawg {
                None => println!("node {} speaks plain WireGuard: no profile", args.name),
                Some(profile) => {
                    for (name, value) in profile.client_config_lines() {
                        println!("{name} = {value}");
                    }
                }
            }
            return Ok(());
        }
    };
    let set = service.set_node_profile(&actor(), &args.name, new).await?;
    if json {
        return output::json(&set);
    }
    println!(
        "node {} has a new profile (revision {}); its agent sets it on the interface.",
        set.node, set.revision
    );
    println!(
        "Every client config of the node stopped working: {} device(s) need a new config. \
         Tell their users with `pvpnctl node notify-reissue {}`.",
        set.devices, set.node
    );
    Ok(())
}

async fn set(service: &Service, name: NodeName, enabled: bool, json: bool) -> anyhow::Result<()> {
    service.set_node_enabled(&actor(), &name, enabled).await?;
    let status = if enabled {
        NodeState::Active
    } else {
        NodeState::Disabled
    };
    if json {
        output::json(&json!({ "node": name.as_str(), "status": status }))
    } else {
        println!("node {name} is {status}");
        Ok(())
    }
}
