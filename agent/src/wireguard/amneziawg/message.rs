//! The generic netlink messages of the `amneziawg` family, version 3: the family type for
//! `netlink-packet-generic`, `SET_DEVICE` messages (peer changes chunked under a size limit,
//! obfuscation parameters) and the decoding of `GET_DEVICE` dumps spread over several messages.
//!
//! Attribute numbers and types are the module's (`src/uapi/wireguard.h`, `src/netlink.c` in
//! `vendor/amneziawg`'s kernel module tarball). They are WireGuard's plus the obfuscation device
//! attributes, so peers are encoded exactly as `netlink-packet-wireguard` encodes them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use netlink_packet_generic::{GenlFamily, GenlHeader};
use netlink_packet_utils::{DecodeError, Emitable, ParseableParametrized};
use pvpn_common::{PeerSpec, PresharedKey, PublicKey};

use super::nla::{Attr, NlaError, NlaWriter, attr_size, parse};
use crate::wireguard::{InterfacePeer, ObfuscationParams, PeerChange};

pub const FAMILY_NAME: &str = "amneziawg";
pub const FAMILY_VERSION: u8 = 3;

pub const CMD_GET_DEVICE: u8 = 0;
pub const CMD_SET_DEVICE: u8 = 1;

mod device {
    pub const IFNAME: u16 = 2;
    pub const PEERS: u16 = 8;
    pub const JC: u16 = 9;
    pub const JMIN: u16 = 10;
    pub const JMAX: u16 = 11;
    pub const S1: u16 = 12;
    pub const S2: u16 = 13;
    pub const H1: u16 = 14;
    pub const H2: u16 = 15;
    pub const H3: u16 = 16;
    pub const H4: u16 = 17;
    pub const S3: u16 = 19;
    pub const S4: u16 = 20;
    /// `I1`–`I5`, `NLA_NUL_STRING`; an empty string clears one.
    pub const I: [u16; 5] = [21, 22, 23, 24, 25];
}

mod peer {
    pub const PUBLIC_KEY: u16 = 1;
    pub const PRESHARED_KEY: u16 = 2;
    pub const FLAGS: u16 = 3;
    pub const ENDPOINT: u16 = 4;
    pub const PERSISTENT_KEEPALIVE_INTERVAL: u16 = 5;
    pub const LAST_HANDSHAKE_TIME: u16 = 6;
    pub const RX_BYTES: u16 = 7;
    pub const TX_BYTES: u16 = 8;
    pub const ALLOWEDIPS: u16 = 9;

    pub const F_REMOVE_ME: u32 = 1 << 0;
    pub const F_REPLACE_ALLOWEDIPS: u32 = 1 << 1;
}

mod allowed_ip {
    pub const FAMILY: u16 = 1;
    pub const IPADDR: u16 = 2;
    pub const CIDR_MASK: u16 = 3;
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// One message of the family: its command and its attributes, already encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwgGenl {
    pub cmd: u8,
    pub attrs: Vec<u8>,
}

impl GenlFamily for AwgGenl {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }

    fn version(&self) -> u8 {
        FAMILY_VERSION
    }

    fn command(&self) -> u8 {
        self.cmd
    }
}

impl Emitable for AwgGenl {
    fn buffer_len(&self) -> usize {
        self.attrs.len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        buffer[..self.attrs.len()].copy_from_slice(&self.attrs);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for AwgGenl {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(Self {
            cmd: header.cmd,
            attrs: buf.to_vec(),
        })
    }
}

/// Why a request could not be encoded within the size limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer {key} needs {size} bytes, more than one message holds ({limit})")]
pub struct PeerTooLarge {
    pub key: PublicKey,
    pub size: usize,
    pub limit: usize,
}

/// A `GET_DEVICE` dump request for the interface.
pub fn get_device(iface: &str) -> AwgGenl {
    let mut w = NlaWriter::new();
    w.put_str(device::IFNAME, iface);
    AwgGenl {
        cmd: CMD_GET_DEVICE,
        attrs: w.into_bytes(),
    }
}

/// A `SET_DEVICE` message setting every obfuscation parameter of the interface at once (the
/// module checks H1–H4 against each other with the new values). Every `I*` is sent, an unset one
/// as the empty string, which clears a value set behind the agent's back.
pub fn set_obfuscation(iface: &str, params: &ObfuscationParams) -> AwgGenl {
    let mut w = NlaWriter::new();
    w.put_str(device::IFNAME, iface);
    for (kind, value) in [
        (device::JC, params.jc),
        (device::JMIN, params.jmin),
        (device::JMAX, params.jmax),
        (device::S1, params.s1),
        (device::S2, params.s2),
        (device::S3, params.s3),
        (device::S4, params.s4),
    ] {
        w.put_u16(kind, value);
    }
    for (kind, value) in [device::H1, device::H2, device::H3, device::H4]
        .into_iter()
        .zip(params.h)
    {
        w.put_u64(kind, value);
    }
    for (kind, value) in device::I.into_iter().zip(&params.i) {
        w.put_str(kind, value);
    }
    AwgGenl {
        cmd: CMD_SET_DEVICE,
        attrs: w.into_bytes(),
    }
}

/// `SET_DEVICE` messages applying `changes` in order, each with at most `max_attrs_len` bytes of
/// attributes (the kernel reads one netlink message per receive buffer). A peer is never split
/// across messages, so `REPLACE_ALLOWEDIPS` replaces its whole list.
pub fn set_peers(
    iface: &str,
    changes: &[PeerChange],
    max_attrs_len: usize,
) -> Result<Vec<AwgGenl>, PeerTooLarge> {
    let mut header = NlaWriter::new();
    header.put_str(device::IFNAME, iface);
    let header = header.into_bytes();
    // The interface name and the PEERS nest's own header come before any peer.
    let room = max_attrs_len.saturating_sub(header.len() + attr_size(0));

    let mut messages = Vec::new();
    let mut peers = NlaWriter::new();
    for change in changes {
        let encoded = encode_change(change);
        if encoded.len() > room {
            return Err(PeerTooLarge {
                key: *change.public_key(),
                size: encoded.len(),
                limit: room,
            });
        }
        if peers.len() + encoded.len() > room {
            messages.push(peers_message(&header, std::mem::take(&mut peers)));
        }
        peers.extend(&encoded);
    }
    if !peers.is_empty() {
        messages.push(peers_message(&header, peers));
    }
    Ok(messages)
}

fn peers_message(header: &[u8], peers: NlaWriter) -> AwgGenl {
    let mut w = NlaWriter::new();
    w.extend(header);
    let nest = w.begin_nest(device::PEERS);
    w.extend(&peers.into_bytes());
    w.end_nest(nest);
    AwgGenl {
        cmd: CMD_SET_DEVICE,
        attrs: w.into_bytes(),
    }
}

/// One peer nest: an upsert sets everything the agent owns (allowed IPs replaced, preshared key
/// and keepalive set or cleared with zeros), never the endpoint; a removal is key and flag.
fn encode_change(change: &PeerChange) -> Vec<u8> {
    let mut w = NlaWriter::new();
    let nest = w.begin_nest(0);
    w.put(peer::PUBLIC_KEY, change.public_key().as_bytes());
    match change {
        PeerChange::Remove(_) => w.put_u32(peer::FLAGS, peer::F_REMOVE_ME),
        PeerChange::Upsert(spec) => {
            w.put_u32(peer::FLAGS, peer::F_REPLACE_ALLOWEDIPS);
            let psk = spec
                .preshared_key
                .as_ref()
                .map(|k| *k.as_bytes())
                .unwrap_or([0; 32]);
            w.put(peer::PRESHARED_KEY, &psk);
            w.put_u32(
                peer::PERSISTENT_KEEPALIVE_INTERVAL,
                keepalive_range(spec.persistent_keepalive),
            );
            let ips = w.begin_nest(peer::ALLOWEDIPS);
            for net in &spec.allowed_ips {
                let ip = w.begin_nest(0);
                match net.addr() {
                    IpAddr::V4(a) => {
                        w.put_u16(allowed_ip::FAMILY, AF_INET);
                        w.put(allowed_ip::IPADDR, &a.octets());
                    }
                    IpAddr::V6(a) => {
                        w.put_u16(allowed_ip::FAMILY, AF_INET6);
                        w.put(allowed_ip::IPADDR, &a.octets());
                    }
                }
                w.put_u8(allowed_ip::CIDR_MASK, net.prefix_len());
                w.end_nest(ip);
            }
            w.end_nest(ips);
        }
    }
    w.end_nest(nest);
    w.into_bytes()
}

/// The module's keepalive is a range of seconds (`u16_range_t`: upper bound in the high half,
/// lower in the low half, 0 for off); the agent sets one value, lower = upper.
fn keepalive_range(secs: Option<u16>) -> u32 {
    secs.map_or(0, |s| (u32::from(s) << 16) | u32::from(s))
}

/// Reads [`keepalive_range`] back. A true range (never set by the agent) reads as `Some(0)`, a
/// value no spec has, so a reconcile sets the peer's keepalive again.
fn keepalive_from_range(range: u32) -> Option<u16> {
    // Truncation is the encoding: each half is one u16.
    let (low, high) = (range as u16, (range >> 16) as u16);
    match (low, high) {
        (0, 0) => None,
        (low, high) if low == high => Some(low),
        _ => Some(0),
    }
}

/// What a `GET_DEVICE` dump says about the interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceDump {
    pub params: ObfuscationParams,
    pub peers: Vec<InterfacePeer>,
}

/// Coalesces the messages of one dump: device attributes come in the first, peers in all of
/// them, and a peer with many allowed IPs continues in the next message under the same key
/// (only its key and the rest of its allowed IPs repeated).
pub fn decode_dump<'a>(
    messages: impl IntoIterator<Item = &'a [u8]>,
) -> Result<DeviceDump, NlaError> {
    let mut dump = DeviceDump::default();
    for attrs in messages {
        for attr in parse(attrs)? {
            match attr.kind {
                device::JC => dump.params.jc = attr.u16()?,
                device::JMIN => dump.params.jmin = attr.u16()?,
                device::JMAX => dump.params.jmax = attr.u16()?,
                device::S1 => dump.params.s1 = attr.u16()?,
                device::S2 => dump.params.s2 = attr.u16()?,
                device::S3 => dump.params.s3 = attr.u16()?,
                device::S4 => dump.params.s4 = attr.u16()?,
                device::H1 => dump.params.h[0] = attr.u64()?,
                device::H2 => dump.params.h[1] = attr.u64()?,
                device::H3 => dump.params.h[2] = attr.u64()?,
                device::H4 => dump.params.h[3] = attr.u64()?,
                kind if device::I.contains(&kind) => {
                    let slot = usize::from(kind - device::I[0]);
                    dump.params.i[slot] = attr.string();
                }
                device::PEERS => {
                    for nest in attr.nested()? {
                        let next = decode_peer(&nest)?;
                        match dump.peers.last_mut() {
                            Some(last) if last.spec.public_key == next.spec.public_key => {
                                last.spec.allowed_ips.extend(next.spec.allowed_ips);
                            }
                            _ => dump.peers.push(next),
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(dump)
}

fn decode_peer(nest: &Attr<'_>) -> Result<InterfacePeer, NlaError> {
    let mut key = None;
    let mut peer = InterfacePeer {
        spec: PeerSpec {
            public_key: PublicKey::from_bytes([0; 32]),
            allowed_ips: Vec::new(),
            preshared_key: None,
            persistent_keepalive: None,
        },
        endpoint: None,
        last_handshake: None,
        rx_bytes: 0,
        tx_bytes: 0,
    };
    for attr in nest.nested()? {
        match attr.kind {
            peer::PUBLIC_KEY => key = Some(PublicKey::from_bytes(attr.key()?)),
            peer::PRESHARED_KEY => {
                let psk = attr.key()?;
                peer.spec.preshared_key = (psk != [0; 32]).then(|| PresharedKey::from_bytes(psk));
            }
            peer::PERSISTENT_KEEPALIVE_INTERVAL => {
                peer.spec.persistent_keepalive = keepalive_from_range(attr.u32()?);
            }
            peer::ENDPOINT => peer.endpoint = decode_sockaddr(attr.value),
            peer::LAST_HANDSHAKE_TIME => peer.last_handshake = decode_timespec(&attr)?,
            peer::RX_BYTES => peer.rx_bytes = attr.u64()?,
            peer::TX_BYTES => peer.tx_bytes = attr.u64()?,
            peer::ALLOWEDIPS => {
                for ip in attr.nested()? {
                    peer.spec.allowed_ips.push(decode_allowed_ip(&ip)?);
                }
            }
            _ => {}
        }
    }
    peer.spec.public_key =
        key.ok_or_else(|| NlaError::Malformed("a peer without a public key".into()))?;
    Ok(peer)
}

fn decode_allowed_ip(nest: &Attr<'_>) -> Result<IpNet, NlaError> {
    let (mut addr, mut cidr) = (None, None);
    for attr in nest.nested()? {
        match attr.kind {
            allowed_ip::IPADDR => {
                addr = match attr.value.len() {
                    4 => Some(IpAddr::V4(Ipv4Addr::from(
                        <[u8; 4]>::try_from(attr.value).unwrap_or_default(),
                    ))),
                    16 => Some(IpAddr::V6(Ipv6Addr::from(
                        <[u8; 16]>::try_from(attr.value).unwrap_or_default(),
                    ))),
                    len => {
                        return Err(NlaError::Length {
                            kind: attr.kind,
                            len,
                            expected: "4 or 16",
                        });
                    }
                }
            }
            allowed_ip::CIDR_MASK => cidr = Some(attr.u8()?),
            _ => {}
        }
    }
    match (addr, cidr) {
        (Some(addr), Some(cidr)) => IpNet::new(addr, cidr)
            .map_err(|_| NlaError::Malformed(format!("allowed IP {addr}/{cidr}"))),
        _ => Err(NlaError::Malformed(
            "an allowed IP without address or mask".into(),
        )),
    }
}

/// `struct sockaddr_in` / `sockaddr_in6`: family in host order, port in network order.
fn decode_sockaddr(value: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(value.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(value.get(2..4)?.try_into().ok()?);
    match family {
        AF_INET => {
            let ip: [u8; 4] = value.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(ip.into(), port)))
        }
        AF_INET6 => {
            let flowinfo = u32::from_be_bytes(value.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = value.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(value.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip.into(),
                port,
                flowinfo,
                scope,
            )))
        }
        _ => None,
    }
}

/// `struct __kernel_timespec` (two `i64`); zero means never.
fn decode_timespec(attr: &Attr<'_>) -> Result<Option<SystemTime>, NlaError> {
    let bytes: [u8; 16] = attr.value.try_into().map_err(|_| NlaError::Length {
        kind: attr.kind,
        len: attr.value.len(),
        expected: "16",
    })?;
    let secs = i64::from_ne_bytes(bytes[..8].try_into().unwrap_or_default());
    let nanos = i64::from_ne_bytes(bytes[8..].try_into().unwrap_or_default());
    if secs <= 0 && nanos <= 0 {
        return Ok(None);
    }
    let since_epoch = Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32);
    Ok(Some(UNIX_EPOCH + since_epoch))
}

#[cfg(test)]
mod tests;
