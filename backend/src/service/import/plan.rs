//! Deciding what an import does, before anything is written: every peer of the old server is
//! checked against the node, the mapping and what PVPN already knows, and either every check
//! passes and the result is a [`Plan`], or the import is refused with every [`Problem`] found.
//!
//! A pure function of its inputs (the database facts are read by the caller under the locks),
//! so the rules are unit-tested here and the transaction only carries them out.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::IpNet;
use pvpn_common::addressing::ClientSubnet;
use pvpn_common::{PresharedKey, PublicKey};

use super::mapping::MappingEntry;
use super::source::SourcePeer;
use super::{Location, Problem, UnmappedPeers};

/// A device PVPN already has with one of the imported keys.
#[derive(Debug, Clone)]
pub struct KnownDevice {
    pub id: i64,
    pub node: String,
    pub active: bool,
    pub address: Ipv4Addr,
    pub preshared_key: Option<PresharedKey>,
    pub owner_telegram_id: i64,
}

/// What matters about an existing user for an import.
#[derive(Debug, Clone, Copy)]
pub struct KnownUser {
    pub banned: bool,
    pub expired: bool,
}

/// The facts an import is checked against, read inside its transaction.
#[derive(Debug)]
pub struct Facts {
    pub node: String,
    pub subnet: ClientSubnet,
    /// How many more live devices the node may hold (capacity and subnet).
    pub room: u64,
    pub known_devices: HashMap<PublicKey, KnownDevice>,
    /// Live addresses on the node and the key holding each.
    pub live_addresses: HashMap<Ipv4Addr, PublicKey>,
    pub users: HashMap<i64, KnownUser>,
    /// The Telegram id of the operator-owned placeholder that holds unassigned devices.
    pub unassigned_telegram_id: i64,
}

/// Who a new or re-assigned device belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    Telegram(i64),
    /// The placeholder user: the device works, nobody sees it in the bot until a later import
    /// maps it to someone.
    Unassigned,
}

#[derive(Debug, Clone)]
pub struct NewDevice {
    /// The peer's line in the peers file.
    pub line: usize,
    pub public_key: PublicKey,
    pub preshared_key: Option<PresharedKey>,
    pub address: Ipv4Addr,
    pub owner: Owner,
    pub name: String,
}

/// An unassigned device that the mapping now gives to a user.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub device_id: i64,
    pub public_key: PublicKey,
    pub telegram_id: i64,
    pub name: String,
}

/// What the import will do.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<NewDevice>,
    pub assign: Vec<Assignment>,
    /// Peers PVPN already holds exactly as the file says.
    pub unchanged: usize,
    /// Peers without a mapping that are not imported: `(line, key)`.
    pub left_out: Vec<(usize, PublicKey)>,
    /// Telegram ids that get a new account.
    pub new_users: BTreeSet<i64>,
    /// Peers whose server-side keepalive PVPN does not keep (the agent clears it in place).
    pub keepalive_dropped: usize,
}

impl Plan {
    pub fn changes_nothing(&self) -> bool {
        self.create.is_empty() && self.assign.is_empty()
    }
}

/// Inputs that are not database facts.
pub struct Request<'a> {
    pub peers_source: &'a str,
    pub peers: &'a [SourcePeer],
    pub mapping_source: &'a str,
    pub mapping: &'a [MappingEntry],
    pub unmapped: UnmappedPeers,
}

/// The one client address a peer may route: a single IPv4 host inside the node's client range.
fn single_host(peer: &SourcePeer, subnet: &ClientSubnet) -> Result<Ipv4Addr, String> {
    let [IpNet::V4(net)] = peer.allowed_ips.as_slice() else {
        return Err(format!(
            "allowed IPs must be exactly one IPv4 /32 address, found {:?}",
            peer.allowed_ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        ));
    };
    if net.prefix_len() != 32 {
        return Err(format!(
            "allowed IP {net} is not a single host address (/32)"
        ));
    }
    let address = net.addr();
    if !subnet.contains_client(address) {
        return Err(format!(
            "address {address} is not a client address of the node's subnet {}",
            subnet.net()
        ));
    }
    Ok(address)
}

fn default_name(owner: Owner, address: Ipv4Addr) -> String {
    match owner {
        Owner::Telegram(_) => format!("imported-{address}"),
        Owner::Unassigned => format!("unassigned-{address}"),
    }
}

/// Checks the request against the facts; the plan, or every problem found.
pub fn plan(request: &Request<'_>, facts: &Facts) -> Result<Plan, Vec<Problem>> {
    let mut problems = Vec::new();
    let peer_problem = |line: usize, message: String| {
        Problem::new(request.peers_source, Some(Location::Line(line)), message)
    };

    let mut owners: HashMap<PublicKey, &MappingEntry> = HashMap::new();
    for entry in request.mapping {
        if let Some(first) = owners.get(&entry.public_key) {
            problems.push(Problem::new(
                request.mapping_source,
                Some(entry.at),
                format!(
                    "key {} is mapped twice (first at {})",
                    entry.public_key, first.at
                ),
            ));
            continue;
        }
        owners.insert(entry.public_key, entry);
    }

    let mut plan = Plan::default();
    let mut seen_keys: HashMap<PublicKey, usize> = HashMap::new();
    let mut seen_addresses: HashMap<Ipv4Addr, usize> = HashMap::new();
    for peer in request.peers {
        if let Some(first) = seen_keys.insert(peer.public_key, peer.line) {
            problems.push(peer_problem(
                peer.line,
                format!("key {} repeats the peer of line {first}", peer.public_key),
            ));
            continue;
        }
        let address = match single_host(peer, &facts.subnet) {
            Ok(a) => a,
            Err(message) => {
                problems.push(peer_problem(peer.line, message));
                continue;
            }
        };
        if let Some(first) = seen_addresses.insert(address, peer.line) {
            problems.push(peer_problem(
                peer.line,
                format!("address {address} is also the address of the peer of line {first}"),
            ));
            continue;
        }
        if peer.persistent_keepalive.is_some() {
            plan.keepalive_dropped += 1;
        }
        let mapped = owners.get(&peer.public_key).copied();
        if let Some(known) = facts.known_devices.get(&peer.public_key) {
            match check_known(peer, address, mapped, known, facts) {
                Ok(Some(assignment)) => plan.assign.push(assignment),
                Ok(None) => plan.unchanged += 1,
                Err(message) => problems.push(peer_problem(peer.line, message)),
            }
            continue;
        }
        if let Some(holder) = facts.live_addresses.get(&address) {
            problems.push(peer_problem(
                peer.line,
                format!(
                    "address {address} is already used on node {} by key {holder}",
                    facts.node
                ),
            ));
            continue;
        }
        let owner = match (mapped, request.unmapped) {
            (Some(entry), _) => Owner::Telegram(entry.telegram_id),
            (None, UnmappedPeers::Unassigned) => Owner::Unassigned,
            (None, UnmappedPeers::LeaveOut) => {
                plan.left_out.push((peer.line, peer.public_key));
                continue;
            }
        };
        let name = mapped
            .and_then(|e| e.device_name.clone())
            .unwrap_or_else(|| default_name(owner, address));
        plan.create.push(NewDevice {
            line: peer.line,
            public_key: peer.public_key,
            preshared_key: peer.preshared_key.clone(),
            address,
            owner,
            name,
        });
    }

    for entry in request.mapping {
        if !seen_keys.contains_key(&entry.public_key) {
            problems.push(Problem::new(
                request.mapping_source,
                Some(entry.at),
                format!("key {} is not among the node's peers", entry.public_key),
            ));
        }
    }
    check_users(request, facts, &mut plan, &mut problems);
    let creating = u64::try_from(plan.create.len()).unwrap_or(u64::MAX);
    if creating > facts.room {
        problems.push(Problem::new(
            request.peers_source,
            None,
            format!(
                "node {} has room for {} more devices, the import adds {creating}; raise its capacity (`pvpnctl node add … --capacity`)",
                facts.node, facts.room
            ),
        ));
    }
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

/// A key PVPN knows: the same device (unchanged, or now assigned), or a refusal.
fn check_known(
    peer: &SourcePeer,
    address: Ipv4Addr,
    mapped: Option<&MappingEntry>,
    known: &KnownDevice,
    facts: &Facts,
) -> Result<Option<Assignment>, String> {
    let key = peer.public_key;
    if !known.active {
        return Err(format!(
            "key {key} belonged to PVPN device {} that was revoked; a key never returns",
            known.id
        ));
    }
    if known.node != facts.node {
        return Err(format!(
            "key {key} is already PVPN device {} on node {}",
            known.id, known.node
        ));
    }
    if known.address != address || known.preshared_key != peer.preshared_key {
        return Err(format!(
            "key {key} is already PVPN device {} with another address or preshared key",
            known.id
        ));
    }
    let unassigned = known.owner_telegram_id == facts.unassigned_telegram_id;
    match mapped {
        None => Ok(None),
        Some(entry) if entry.telegram_id == known.owner_telegram_id => Ok(None),
        Some(entry) if unassigned => Ok(Some(Assignment {
            device_id: known.id,
            public_key: key,
            telegram_id: entry.telegram_id,
            name: entry
                .device_name
                .clone()
                .unwrap_or_else(|| default_name(Owner::Telegram(entry.telegram_id), address)),
        })),
        Some(entry) => Err(format!(
            "key {key} is PVPN device {} of Telegram user {}, the mapping ({}) says {}",
            known.id, known.owner_telegram_id, entry.at, entry.telegram_id
        )),
    }
}

/// New accounts for unknown Telegram ids; banned or expired users get no imported device.
fn check_users(request: &Request<'_>, facts: &Facts, plan: &mut Plan, problems: &mut Vec<Problem>) {
    let receiving: BTreeSet<i64> = plan
        .create
        .iter()
        .filter_map(|d| match d.owner {
            Owner::Telegram(id) => Some(id),
            Owner::Unassigned => None,
        })
        .chain(plan.assign.iter().map(|a| a.telegram_id))
        .collect();
    for id in receiving {
        match facts.users.get(&id) {
            None => {
                plan.new_users.insert(id);
            }
            Some(user) if user.banned || user.expired => {
                let at = request
                    .mapping
                    .iter()
                    .find(|e| e.telegram_id == id)
                    .map(|e| e.at);
                let why = if user.banned { "banned" } else { "expired" };
                problems.push(Problem::new(
                    request.mapping_source,
                    at,
                    format!("Telegram user {id} is {why}; lift that first or leave them out"),
                ));
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
