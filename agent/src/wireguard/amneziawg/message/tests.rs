use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_generic::GenlMessage;
use pvpn_common::keys::KeyPair;
use pvpn_common::obfuscation::AwgProfile;

use super::*;

fn spec(i: u32) -> PeerSpec {
    PeerSpec {
        public_key: KeyPair::generate().public,
        allowed_ips: vec![
            format!("198.18.{}.{}/32", 10 + i / 250, 1 + i % 250)
                .parse()
                .unwrap(),
            format!("fd00::{:x}/128", i + 1).parse().unwrap(),
        ],
        preshared_key: i.is_multiple_of(2).then(PresharedKey::generate),
        persistent_keepalive: i.is_multiple_of(3).then_some(25),
    }
}

/// Through a whole netlink message and back, as the kernel would receive it.
fn through_netlink(message: &AwgGenl) -> AwgGenl {
    let mut nl = NetlinkMessage::from(GenlMessage::from_payload(message.clone()));
    nl.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    nl.finalize();
    let mut buf = vec![0; nl.buffer_len()];
    nl.serialize(&mut buf);
    let back = NetlinkMessage::<GenlMessage<AwgGenl>>::deserialize(&buf).unwrap();
    let NetlinkPayload::InnerMessage(genl) = back.payload else {
        panic!("not a generic netlink message: {back:?}");
    };
    assert_eq!(genl.header.version, FAMILY_VERSION);
    genl.payload
}

#[test]
fn upserts_round_trip_through_the_peer_encoding() {
    let specs: Vec<PeerSpec> = (0..5).map(spec).collect();
    let changes: Vec<PeerChange> = specs.iter().cloned().map(PeerChange::Upsert).collect();
    let messages = set_peers("awg0", &changes, 8000).unwrap();
    assert_eq!(messages.len(), 1);
    let message = through_netlink(&messages[0]);
    assert_eq!(message.cmd, CMD_SET_DEVICE);
    let dump = decode_dump([message.attrs.as_slice()]).unwrap();
    let decoded: Vec<PeerSpec> = dump.peers.into_iter().map(|p| p.spec).collect();
    assert_eq!(decoded, specs);
}

#[test]
fn every_upsert_replaces_allowed_ips_and_removals_carry_only_key_and_flag() {
    let upsert = PeerChange::Upsert(spec(1));
    let removed = KeyPair::generate().public;
    let messages = set_peers("awg0", &[upsert, PeerChange::Remove(removed)], 8000).unwrap();
    let attrs = parse(&messages[0].attrs).unwrap();
    assert_eq!(attrs[0].string(), "awg0");
    let peers = attrs[1].nested().unwrap();
    let flags = |peer: &Attr<'_>| {
        peer.nested()
            .unwrap()
            .iter()
            .find(|a| a.kind == peer::FLAGS)
            .map(|a| a.u32().unwrap())
    };
    assert_eq!(flags(&peers[0]), Some(peer::F_REPLACE_ALLOWEDIPS));
    assert_eq!(flags(&peers[1]), Some(peer::F_REMOVE_ME));
    let removal: Vec<u16> = peers[1].nested().unwrap().iter().map(|a| a.kind).collect();
    assert_eq!(removal, vec![peer::PUBLIC_KEY, peer::FLAGS]);
    assert_eq!(
        peers[1].nested().unwrap()[0].key().unwrap(),
        *removed.as_bytes()
    );
}

#[test]
fn large_batches_are_chunked_under_the_limit_in_order() {
    let limit = 4096 - 20;
    let changes: Vec<PeerChange> = (0..600).map(|i| PeerChange::Upsert(spec(i))).collect();
    let messages = set_peers("awg0", &changes, limit).unwrap();
    assert!(messages.len() > 10, "{} messages", messages.len());
    assert!(messages.iter().all(|m| m.attrs.len() <= limit));
    for m in &messages {
        assert_eq!(
            parse(&m.attrs).unwrap()[0].string(),
            "awg0",
            "every chunk names the interface"
        );
    }
    let dump = decode_dump(messages.iter().map(|m| m.attrs.as_slice())).unwrap();
    let keys: Vec<PublicKey> = dump.peers.iter().map(|p| p.spec.public_key).collect();
    let want: Vec<PublicKey> = changes.iter().map(|c| *c.public_key()).collect();
    assert_eq!(keys, want, "no peer lost, split or reordered");
}

#[test]
fn a_peer_larger_than_a_message_is_refused() {
    let mut huge = spec(0);
    huge.allowed_ips = (0..200u32)
        .map(|i| format!("198.18.0.{}/32", i).parse().unwrap())
        .collect();
    let err = set_peers("awg0", &[PeerChange::Upsert(huge.clone())], 1024).unwrap_err();
    assert_eq!(err.key, huge.public_key);
}

#[test]
fn obfuscation_parameters_round_trip() {
    let params = ObfuscationParams::from(&AwgProfile::generate());
    let message = through_netlink(&set_obfuscation("awg0", &params));
    let dump = decode_dump([message.attrs.as_slice()]).unwrap();
    assert_eq!(dump.params, params);
    assert!(dump.peers.is_empty());
}

/// `I1`–`I5` are the module's attributes 21–25 (`WGDEVICE_A_I1` follows `S4` = 20 in
/// `src/uapi/wireguard.h`), NUL-terminated strings: set ones carry their description, unset ones
/// the empty string that clears them on the interface.
#[test]
fn special_junk_is_set_as_strings_and_unset_ones_are_cleared() {
    let mut profile = AwgProfile::generate();
    profile.i1 = Some("<b 0xc0ff><r 16>".parse().unwrap());
    profile.i4 = Some("<t>".parse().unwrap());
    let params = ObfuscationParams::from(&profile);
    let message = set_obfuscation("awg0", &params);
    let attrs = parse(&message.attrs).unwrap();
    let strings: Vec<(u16, &[u8])> = attrs
        .iter()
        .filter(|a| (21..=25).contains(&a.kind))
        .map(|a| (a.kind, a.value))
        .collect();
    assert_eq!(
        strings,
        vec![
            (21, &b"<b 0xc0ff><r 16>\0"[..]),
            (22, &b"\0"[..]),
            (23, &b"\0"[..]),
            (24, &b"<t>\0"[..]),
            (25, &b"\0"[..]),
        ]
    );
    let dump = decode_dump([through_netlink(&message).attrs.as_slice()]).unwrap();
    assert_eq!(dump.params, params);
    assert_eq!(dump.params.i[0], "<b 0xc0ff><r 16>");
}

/// The module reports an `I*` it never had set not at all and a cleared one as an empty string:
/// both read as unset, so a profile without `I*` matches either interface.
#[test]
fn special_junk_missing_or_empty_in_a_dump_reads_as_unset() {
    let want = ObfuscationParams::from(&AwgProfile::generate());
    let mut w = NlaWriter::new();
    w.put_str(device::IFNAME, "awg0");
    for (kind, value) in [
        (device::JC, want.jc),
        (device::JMIN, want.jmin),
        (device::JMAX, want.jmax),
        (device::S1, want.s1),
        (device::S2, want.s2),
        (device::S3, want.s3),
        (device::S4, want.s4),
    ] {
        w.put_u16(kind, value);
    }
    for (kind, value) in [device::H1, device::H2, device::H3, device::H4]
        .into_iter()
        .zip(want.h)
    {
        w.put_u64(kind, value);
    }
    w.put_str(device::I[1], "");
    let dump = decode_dump([w.into_bytes().as_slice()]).unwrap();
    assert_eq!(dump.params, want);
}

/// A dump as the module writes it: device attributes first, `u32` keepalives, the
/// advanced-security flag, and a peer whose allowed IPs continue in the next message.
#[test]
fn a_multi_message_kernel_dump_is_coalesced() {
    let params = ObfuscationParams::from(&AwgProfile::generate());
    let first = spec(0);
    let second = spec(1);
    let endpoint: SocketAddr = "198.18.0.9:41000".parse().unwrap();

    let peer_attrs = |w: &mut NlaWriter, s: &PeerSpec, ips: &[IpNet], full: bool| {
        let nest = w.begin_nest(0);
        w.put_u32(peer::FLAGS, 1 << 3);
        w.put(peer::PUBLIC_KEY, s.public_key.as_bytes());
        if full {
            w.put(
                peer::PRESHARED_KEY,
                &s.preshared_key
                    .as_ref()
                    .map(|k| *k.as_bytes())
                    .unwrap_or([0; 32]),
            );
            let mut ts = Vec::new();
            ts.extend_from_slice(&1_700_000_000i64.to_ne_bytes());
            ts.extend_from_slice(&5i64.to_ne_bytes());
            w.put(peer::LAST_HANDSHAKE_TIME, &ts);
            w.put_u32(
                peer::PERSISTENT_KEEPALIVE_INTERVAL,
                keepalive_range(s.persistent_keepalive),
            );
            w.put_u64(peer::TX_BYTES, 11);
            w.put_u64(peer::RX_BYTES, 22);
            w.put_u32(10, 1);
            let mut sa = vec![0u8; 16];
            sa[..2].copy_from_slice(&AF_INET.to_ne_bytes());
            sa[2..4].copy_from_slice(&endpoint.port().to_be_bytes());
            sa[4..8].copy_from_slice(&[198, 18, 0, 9]);
            w.put(peer::ENDPOINT, &sa);
        }
        let list = w.begin_nest(peer::ALLOWEDIPS);
        for ip in ips {
            let n = w.begin_nest(0);
            w.put_u8(allowed_ip::CIDR_MASK, ip.prefix_len());
            let (family, addr) = match ip.addr() {
                IpAddr::V4(a) => (AF_INET, a.octets().to_vec()),
                IpAddr::V6(a) => (AF_INET6, a.octets().to_vec()),
            };
            w.put_u16(allowed_ip::FAMILY, family);
            w.put(allowed_ip::IPADDR, &addr);
            w.end_nest(n);
        }
        w.end_nest(list);
        w.end_nest(nest);
    };

    let mut one = NlaWriter::new();
    one.put_u16(6, 51820);
    one.put_str(device::IFNAME, "awg0");
    let with_params = set_obfuscation("awg0", &params);
    one.extend(&with_params.attrs[attr_size(5)..]);
    let peers = one.begin_nest(device::PEERS);
    peer_attrs(&mut one, &first, &first.allowed_ips, true);
    peer_attrs(&mut one, &second, &second.allowed_ips[..1], true);
    one.end_nest(peers);

    let mut two = NlaWriter::new();
    two.put_str(device::IFNAME, "awg0");
    let peers = two.begin_nest(device::PEERS);
    peer_attrs(&mut two, &second, &second.allowed_ips[1..], false);
    two.end_nest(peers);

    let (one, two) = (one.into_bytes(), two.into_bytes());
    let dump = decode_dump([one.as_slice(), two.as_slice()]).unwrap();
    assert_eq!(dump.params, params);
    assert_eq!(dump.peers.len(), 2);
    assert_eq!(dump.peers[0].spec, first);
    assert_eq!(
        dump.peers[1].spec, second,
        "allowed IPs joined across messages"
    );
    assert_eq!(dump.peers[1].endpoint, Some(endpoint));
    assert_eq!((dump.peers[1].rx_bytes, dump.peers[1].tx_bytes), (22, 11));
    assert_eq!(
        dump.peers[0].last_handshake,
        Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5))
    );
}

#[test]
fn malformed_dumps_are_errors() {
    let mut w = NlaWriter::new();
    let peers = w.begin_nest(device::PEERS);
    let p = w.begin_nest(0);
    w.put_u64(peer::RX_BYTES, 1);
    w.end_nest(p);
    w.end_nest(peers);
    assert!(
        decode_dump([w.into_bytes().as_slice()]).is_err(),
        "a peer without a key"
    );
    let mut w = NlaWriter::new();
    w.put_u32(device::JC, 4);
    assert!(
        decode_dump([w.into_bytes().as_slice()]).is_err(),
        "Jc is a u16"
    );
}

#[test]
fn keepalives_are_the_modules_u16_ranges() {
    assert_eq!(keepalive_range(None), 0);
    assert_eq!(keepalive_range(Some(25)), (25 << 16) | 25);
    assert_eq!(keepalive_from_range(keepalive_range(Some(25))), Some(25));
    assert_eq!(keepalive_from_range(0), None);
    assert_eq!(
        keepalive_from_range((30 << 16) | 25),
        Some(0),
        "a range is drift"
    );
}
