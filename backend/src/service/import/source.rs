//! Reading the peers a running WireGuard server holds, from `wg show <iface> dump` output or from
//! its `wg-quick` config file, with the line each peer came from.
//!
//! Only what a peer is on the server side is kept: public key, preshared key, allowed IPs and
//! keepalive. The interface's own private key (the first line of a dump, `PrivateKey` in the
//! `[Interface]` section) is skipped without being parsed, so it never reaches memory as a key.

use ipnet::IpNet;
use pvpn_common::{PresharedKey, PublicKey};

use super::Problem;

/// One peer of the old server, as its file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePeer {
    /// 1-based line of the peer (its dump line, or its `[Peer]` header).
    pub line: usize,
    pub public_key: PublicKey,
    pub preshared_key: Option<PresharedKey>,
    pub allowed_ips: Vec<IpNet>,
    /// The server-side `PersistentKeepalive`, if the old server set one (PVPN does not keep it).
    pub persistent_keepalive: Option<u16>,
}

/// Which format a peers file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// `wg show <iface> dump`: tab-separated, the interface line first.
    Dump,
    /// A `wg-quick` / `wg setconf` file with `[Interface]` and `[Peer]` sections.
    Config,
}

impl SourceFormat {
    /// A file whose first meaningful line is a `[Section]` is a config, anything else a dump.
    pub fn detect(text: &str) -> Self {
        let first = text
            .lines()
            .map(|l| strip_comment(l).trim())
            .find(|l| !l.is_empty());
        match first {
            Some(l) if l.starts_with('[') => SourceFormat::Config,
            _ => SourceFormat::Dump,
        }
    }
}

/// Parses `text` (named `source` in messages); every malformed line is reported.
pub fn parse_peers(source: &str, text: &str) -> Result<Vec<SourcePeer>, Vec<Problem>> {
    match SourceFormat::detect(text) {
        SourceFormat::Dump => parse_dump(source, text),
        SourceFormat::Config => parse_config(source, text),
    }
}

fn strip_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or("")
}

fn parse_key(value: &str) -> Result<PublicKey, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} is not a WireGuard public key (44 characters of base64)"))
}

fn parse_psk(value: &str) -> Result<Option<PresharedKey>, String> {
    if value == "(none)" {
        return Ok(None);
    }
    // The value is a secret: the message does not repeat it.
    value
        .parse()
        .map(Some)
        .map_err(|_| "the preshared key is not 44 characters of base64".to_string())
}

fn parse_allowed_ips(value: &str) -> Result<Vec<IpNet>, String> {
    if value == "(none)" || value.trim().is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|ip| {
            let ip = ip.trim();
            ip.parse::<IpNet>()
                .or_else(|_| ip.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{ip:?} is not an IP network"))
        })
        .collect()
}

fn parse_keepalive(value: &str) -> Result<Option<u16>, String> {
    match value {
        "off" | "0" => Ok(None),
        v => v
            .parse::<u16>()
            .map(Some)
            .map_err(|_| format!("keepalive {v:?} is not a number of seconds or \"off\"")),
    }
}

/// `wg show <iface> dump`: one interface line (4 fields, skipped), then one line per peer:
/// public key, preshared key, endpoint, allowed IPs, latest handshake, rx, tx, keepalive.
fn parse_dump(source: &str, text: &str) -> Result<Vec<SourcePeer>, Vec<Problem>> {
    let mut peers = Vec::new();
    let mut problems = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.trim_end_matches('\r').split('\t').collect();
        let problem = |message: String| Problem::at(source, line, message);
        match fields.len() {
            // The interface line holds the server's private key: not looked at.
            4 => continue,
            8 => {}
            5 | 9 => {
                problems.push(problem(
                    "this looks like `wg show all dump`; use `wg show <interface> dump`".into(),
                ));
                continue;
            }
            n => {
                problems.push(problem(format!(
                    "expected 8 tab-separated fields of a `wg show <interface> dump` peer line, found {n}"
                )));
                continue;
            }
        }
        let parsed = (|| {
            Ok::<_, String>(SourcePeer {
                line,
                public_key: parse_key(fields[0])?,
                preshared_key: parse_psk(fields[1])?,
                allowed_ips: parse_allowed_ips(fields[3])?,
                persistent_keepalive: parse_keepalive(fields[7])?,
            })
        })();
        match parsed {
            Ok(peer) => peers.push(peer),
            Err(message) => problems.push(problem(message)),
        }
    }
    if problems.is_empty() {
        Ok(peers)
    } else {
        Err(problems)
    }
}

/// A `[Peer]` section being read.
#[derive(Default)]
struct PeerSection {
    line: usize,
    public_key: Option<PublicKey>,
    preshared_key: Option<PresharedKey>,
    allowed_ips: Vec<IpNet>,
    persistent_keepalive: Option<u16>,
    broken: bool,
}

impl PeerSection {
    fn finish(self, source: &str, peers: &mut Vec<SourcePeer>, problems: &mut Vec<Problem>) {
        if self.broken {
            return;
        }
        match self.public_key {
            Some(public_key) => peers.push(SourcePeer {
                line: self.line,
                public_key,
                preshared_key: self.preshared_key,
                allowed_ips: self.allowed_ips,
                persistent_keepalive: self.persistent_keepalive,
            }),
            None => problems.push(Problem::at(
                source,
                self.line,
                "[Peer] section without a PublicKey".into(),
            )),
        }
    }
}

/// A `wg-quick` config: `[Interface]` is skipped whole (it holds the server's private key),
/// `[Peer]` sections give the peers. Keys are case-insensitive, as `wg` reads them.
fn parse_config(source: &str, text: &str) -> Result<Vec<SourcePeer>, Vec<Problem>> {
    let mut peers = Vec::new();
    let mut problems = Vec::new();
    let mut current: Option<PeerSection> = None;
    let mut in_interface = false;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = strip_comment(raw).trim();
        if content.is_empty() {
            continue;
        }
        if content.starts_with('[') {
            if let Some(section) = current.take() {
                section.finish(source, &mut peers, &mut problems);
            }
            in_interface = false;
            match content.to_ascii_lowercase().as_str() {
                "[interface]" => in_interface = true,
                "[peer]" => {
                    current = Some(PeerSection {
                        line,
                        ..PeerSection::default()
                    })
                }
                other => problems.push(Problem::at(
                    source,
                    line,
                    format!("unknown section {other}; expected [Interface] or [Peer]"),
                )),
            }
            continue;
        }
        if in_interface {
            continue;
        }
        let Some(section) = current.as_mut() else {
            problems.push(Problem::at(
                source,
                line,
                "a setting outside any [Peer] section".into(),
            ));
            continue;
        };
        if let Err(message) = apply_setting(section, content) {
            section.broken = true;
            problems.push(Problem::at(source, line, message));
        }
    }
    if let Some(section) = current.take() {
        section.finish(source, &mut peers, &mut problems);
    }
    if problems.is_empty() {
        Ok(peers)
    } else {
        Err(problems)
    }
}

fn apply_setting(section: &mut PeerSection, content: &str) -> Result<(), String> {
    let Some((key, value)) = content.split_once('=') else {
        return Err(format!("expected `Key = Value`, found {content:?}"));
    };
    let value = value.trim();
    match key.trim().to_ascii_lowercase().as_str() {
        "publickey" => section.public_key = Some(parse_key(value)?),
        "presharedkey" => section.preshared_key = parse_psk(value)?,
        // Several AllowedIPs lines add up, as in `wg`.
        "allowedips" => section.allowed_ips.extend(parse_allowed_ips(value)?),
        "persistentkeepalive" => section.persistent_keepalive = parse_keepalive(value)?,
        // Where the client was last seen is WireGuard's to learn, not ours to import.
        "endpoint" => {}
        other => return Err(format!("unknown [Peer] setting {other:?}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::import::Location;
    use pvpn_common::keys::KeyPair;

    #[test]
    fn reads_a_dump_and_skips_the_interface_line() {
        let (a, b) = (KeyPair::generate().public, KeyPair::generate().public);
        let psk = PresharedKey::generate();
        let text = format!(
            "SECRET\tSERVERPUB\t51820\toff\n\
             {a}\t{}\t198.18.0.9:4000\t198.19.0.2/32\t1700000000\t10\t20\t25\n\
             {b}\t(none)\t(none)\t198.19.0.3/32\t0\t0\t0\toff\n",
            psk.to_base64()
        );
        let peers = parse_peers("dump", &text).unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].line, 2);
        assert_eq!(peers[0].public_key, a);
        assert_eq!(peers[0].preshared_key, Some(psk));
        assert_eq!(peers[0].persistent_keepalive, Some(25));
        assert_eq!(peers[1].preshared_key, None);
        assert_eq!(peers[1].allowed_ips, vec!["198.19.0.3/32".parse().unwrap()]);
    }

    #[test]
    fn names_every_garbled_dump_line() {
        let a = KeyPair::generate().public;
        let text = format!(
            "{a}\t(none)\t(none)\t198.19.0.2/32\t0\t0\t0\toff\nnot a peer\n\
             {a}\t(none)\t(none)\tbanana\t0\t0\t0\toff\n"
        );
        let problems = parse_peers("dump.txt", &text).unwrap_err();
        let lines: Vec<_> = problems.iter().map(|p| p.at).collect();
        assert_eq!(
            lines,
            vec![Some(Location::Line(2)), Some(Location::Line(3))]
        );
        assert!(problems[1].to_string().starts_with("dump.txt:3: "));
    }

    #[test]
    fn reads_a_wg_quick_config() {
        let (a, b) = (KeyPair::generate().public, KeyPair::generate().public);
        let text = format!(
            "# old server\n[Interface]\nPrivateKey = whatever\nAddress = 198.19.0.1/24\n\
             ListenPort = 51820\n\n[Peer]\n# alice\nPublicKey = {a}\nAllowedIPs = 198.19.0.2/32\n\
             [peer]\npublickey={b}\nallowedips = 198.19.0.3\nPersistentKeepalive = 25\n"
        );
        let peers = parse_peers("wg0.conf", &text).unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!((peers[0].line, peers[1].line), (7, 11));
        assert_eq!(peers[1].allowed_ips, vec!["198.19.0.3/32".parse().unwrap()]);
        assert_eq!(peers[1].persistent_keepalive, Some(25));
    }

    #[test]
    fn config_errors_name_their_lines() {
        let text = "[Interface]\nPrivateKey = x\n[Peer]\nPublicKey = short\n[Peer]\nAllowedIPs = 198.19.0.3/32\nFoo = 1\n";
        let problems = parse_peers("wg0.conf", text).unwrap_err();
        let lines: Vec<_> = problems.iter().map(|p| p.at).collect();
        assert_eq!(
            lines,
            vec![Some(Location::Line(4)), Some(Location::Line(7))]
        );
    }
}
