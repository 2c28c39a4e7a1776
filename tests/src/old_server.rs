//! A WireGuard server as it ran before PVPN, for the import cut-over test and bench: a
//! `wg setconf` file with its own key, port and peers, the operator's mapping of those peers to
//! Telegram users, and optionally one real client's config among them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use pvpn_common::keys::KeyPair;
use pvpn_common::{PresharedKey, PublicKey};

use crate::site::{LISTEN_PORT, VpnSite};

/// What the old server looks like.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub peers: usize,
    /// Index of the peer that is a real client (its config is rendered).
    pub client: Option<usize>,
    pub client_telegram_id: i64,
    /// Peers 1..=n get a server-side `PersistentKeepalive = 25`.
    pub with_keepalive: usize,
    /// Every n-th peer (0, n, 2n, …; never the client) has no mapping.
    pub unmapped_every: usize,
}

pub struct OldServer {
    /// The server's `wg setconf` file: its private key, its port, its peers.
    pub setconf: String,
    /// CSV: `public_key,telegram_id,device_name`; five devices per user.
    pub mapping: String,
    pub client_config: Option<String>,
    pub client_key: Option<PublicKey>,
    /// Allowed IPs of every peer, as the server holds them.
    pub allowed: BTreeMap<PublicKey, String>,
}

impl OldServer {
    /// Peers at the site's client addresses from the first one up.
    pub fn generate(site: &VpnSite, shape: Shape) -> Self {
        let base = u32::from(site.subnet.network()) + 2;
        let mut setconf = format!(
            "[Interface]\nPrivateKey = {}\nListenPort = {LISTEN_PORT}\n",
            site.private_key.to_base64()
        );
        let mut mapping = String::from("public_key,telegram_id,device_name\n");
        let mut allowed = BTreeMap::new();
        let mut client = None;
        for i in 0..shape.peers {
            let keys = KeyPair::generate();
            let psk = PresharedKey::generate();
            let address = Ipv4Addr::from(base + u32::try_from(i).unwrap_or(u32::MAX));
            setconf.push_str(&format!(
                "\n[Peer]\nPublicKey = {}\nPresharedKey = {}\nAllowedIPs = {address}/32\n",
                keys.public,
                psk.to_base64()
            ));
            if (1..=shape.with_keepalive).contains(&i) {
                setconf.push_str("PersistentKeepalive = 25\n");
            }
            allowed.insert(keys.public, format!("{address}/32"));
            if Some(i) == shape.client {
                mapping.push_str(&format!(
                    "{},{},phone\n",
                    keys.public, shape.client_telegram_id
                ));
                client = Some((keys, psk, address));
            } else if shape.unmapped_every == 0 || i % shape.unmapped_every != 0 {
                let user = 500_000 + i64::try_from(i / 5).unwrap_or(0);
                mapping.push_str(&format!("{},{user},dev-{i}\n", keys.public));
            }
        }
        let client_key = client.as_ref().map(|(keys, _, _)| keys.public);
        let client_config = client.map(|(keys, psk, address)| {
            format!(
                "[Interface]\nPrivateKey = {}\nAddress = {address}/32\n\n[Peer]\nPublicKey = {}\n\
                 PresharedKey = {}\nEndpoint = {}\nAllowedIPs = 0.0.0.0/0\n",
                keys.private.to_base64(),
                site.wg.public_key(),
                psk.to_base64(),
                site.endpoint
            )
        });
        Self {
            setconf,
            mapping,
            client_config,
            client_key,
            allowed,
        }
    }
}
