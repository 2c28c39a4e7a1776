//! [`WireGuard`] for kernel AmneziaWG: the `amneziawg` generic netlink family, version 3, spoken
//! directly (no crate speaks this version; `wireguard-control` knows only the `wireguard` family).
//!
//! [`nla`] reads and writes attributes, [`message`] builds and decodes the family's messages;
//! this module sends them with `netlink-request` (the transport `wireguard-control` uses): one
//! dump per read, one acknowledged message per chunk of peer changes.
//!
//! The obfuscation parameters PVPN models ([`ObfuscationParams`]: `Jc`, `Jmin`, `Jmax`, `S1`–`S4`,
//! `H1`–`H4`, `I1`–`I5`) are read, compared and set together. The module's newer attributes
//! (AmneziaWG 2.0's header protection key, content padding, rekey/reject/keepalive timers, maximum
//! handshake attempts) are neither sent nor read: they stay at the module's defaults (WireGuard's
//! own timers, no header protection), which every AmneziaWG client works with, and a change to
//! them behind the agent's back is not reported.

pub mod message;
pub mod nla;

use std::path::Path;

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_generic::GenlMessage;
use netlink_request::{max_genl_payload_length, netlink_request_genl};
use pvpn_common::obfuscation::Protocol;

use self::message::{AwgGenl, DeviceDump};
use super::{InterfacePeer, ObfuscationParams, PeerChange, WgError, WireGuard};

/// A kernel AmneziaWG interface, by name.
#[derive(Debug, Clone)]
pub struct AmneziaWireGuard {
    name: String,
}

impl AmneziaWireGuard {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }

    fn io_error(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> WgError + '_ {
        move |source| WgError::Io {
            iface: self.name.clone(),
            action,
            source,
        }
    }

    fn request(&self, message: AwgGenl, flags: u16) -> std::io::Result<Vec<AwgGenl>> {
        let replies = netlink_request_genl(GenlMessage::from_payload(message), Some(flags))?;
        replies
            .into_iter()
            .map(|reply| match reply {
                NetlinkMessage {
                    payload: NetlinkPayload::InnerMessage(genl),
                    ..
                } => Ok(genl.payload),
                other => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unexpected netlink reply {:?}", other.header),
                )),
            })
            .collect()
    }

    fn dump(&self) -> Result<DeviceDump, WgError> {
        self.check_exists()?;
        let replies = self
            .request(
                message::get_device(&self.name),
                NLM_F_REQUEST | NLM_F_DUMP | NLM_F_ACK,
            )
            .map_err(self.io_error("reading the device"))?;
        message::decode_dump(replies.iter().map(|r| r.attrs.as_slice())).map_err(|e| WgError::Io {
            iface: self.name.clone(),
            action: "decoding the device",
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }
}

impl WireGuard for AmneziaWireGuard {
    fn check_exists(&self) -> Result<(), WgError> {
        if Path::new("/sys/class/net").join(&self.name).exists() {
            Ok(())
        } else {
            Err(WgError::InterfaceMissing(self.name.clone()))
        }
    }

    fn read_peers(&self) -> Result<Vec<InterfacePeer>, WgError> {
        Ok(self.dump()?.peers)
    }

    fn apply(&self, changes: &[PeerChange]) -> Result<(), WgError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.check_exists()?;
        let messages =
            message::set_peers(&self.name, changes, max_genl_payload_length()).map_err(|e| {
                WgError::Io {
                    iface: self.name.clone(),
                    action: "encoding peer changes",
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                }
            })?;
        for message in messages {
            self.request(message, NLM_F_REQUEST | NLM_F_ACK)
                .map_err(self.io_error("applying peer changes"))?;
        }
        Ok(())
    }

    fn protocol(&self) -> Protocol {
        Protocol::AmneziaWg
    }

    fn read_obfuscation(&self) -> Result<Option<ObfuscationParams>, WgError> {
        Ok(Some(self.dump()?.params))
    }

    fn set_obfuscation(&self, params: &ObfuscationParams) -> Result<(), WgError> {
        self.check_exists()?;
        self.request(
            message::set_obfuscation(&self.name, params),
            NLM_F_REQUEST | NLM_F_ACK,
        )
        .map_err(self.io_error("setting the obfuscation parameters"))?;
        Ok(())
    }
}
