//! AmneziaWG nodes end to end on the backend side, with the real `pvpnctl`, PostgreSQL and Redis:
//! a node declared with `--protocol amneziawg` gets a profile its client configs carry; `pvpnctl
//! node profile` shows it, regenerates or sets it (validated, I1–I5 included), names the devices
//! that need new configs, and refuses plain WireGuard nodes; the relay publishes the spec with every snapshot
//! and a profile change as an `InterfaceSet` on the node's next revision, atomically with the
//! node's interface key.

mod support;

use std::time::Duration;

use pvpn_common::keys::KeyPair;
use pvpn_common::obfuscation::{AwgProfile, InterfaceSpec, Protocol};
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::wire::StreamEvent;
use pvpn_testkit::redis_server::RedisServer;
use serde_json::Value;
use support::pvpnctl_bin::{fails, ok};
use support::redis_side::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(20);

fn add_node(url: &str, name: &str, subnet: &str, protocol: &str) -> String {
    let key = KeyPair::generate().public.to_base64();
    ok(
        url,
        &[
            "node",
            "add",
            name,
            "--region",
            "nl",
            "--endpoint",
            "vpn.example.net:51820",
            "--public-key",
            &key,
            "--listen-port",
            "51820",
            "--subnet",
            subnet,
            "--capacity",
            "10",
            "--protocol",
            protocol,
        ],
    )
}

fn profile_of(url: &str, node: &str) -> InterfaceSpec {
    let text = ok(url, &["node", "profile", node, "--json"]);
    serde_json::from_str(&text).expect("an interface spec")
}

async fn interface_in_redis(url: &str, node: &str) -> Option<InterfaceSpec> {
    let key = RegionKeys::new(&region("nl")).node_interface(&node_name(node));
    let text: Option<String> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut connect(url).await)
        .await
        .expect("GET");
    text.map(|t| serde_json::from_str(&t).expect("plain JSON spec"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pvpnctl_manages_an_amneziawg_nodes_profile() {
    let env = env().await;
    let url = env.database.url();
    ok(url, &["region", "add", "nl", "--name", "Netherlands"]);
    assert_eq!(
        add_node(url, "nl-1", "198.18.0.0/24", "amneziawg").trim(),
        "created"
    );
    add_node(url, "nl-2", "198.18.1.0/24", "wireguard");

    let spec = profile_of(url, "nl-1");
    assert_eq!(spec.protocol, Protocol::AmneziaWg);
    let first = spec.amneziawg.expect("a generated profile");
    first.validate().unwrap();
    let shown = ok(url, &["node", "profile", "nl-1"]);
    assert!(shown.contains(&format!("Jc = {}", first.jc)), "{shown}");
    assert_eq!(profile_of(url, "nl-2"), InterfaceSpec::wireguard());
    let refused = fails(url, &["node", "profile", "nl-2", "--regenerate"]);
    assert!(refused.contains("plain WireGuard"), "{refused}");

    // Client configs of the node carry its profile (nl-2 disabled: the device lands on nl-1).
    ok(url, &["node", "disable", "nl-2"]);
    user(&env.service, 1).await;
    let granted = env
        .service
        .grant_device(1, &region("nl"), None)
        .await
        .unwrap();
    let config = granted.config.expose();
    for (name, value) in first.client_config_lines() {
        assert!(config.contains(&format!("{name} = {value}")), "{config}");
    }

    let said = ok(url, &["node", "profile", "nl-1", "--regenerate"]);
    assert!(said.contains("1 device(s) need a new config"), "{said}");
    assert!(said.contains("pvpnctl node notify-reissue nl-1"), "{said}");
    let second = profile_of(url, "nl-1").amneziawg.unwrap();
    assert_ne!(second, first);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("profile.json");
    let mut bad = serde_json::to_value(&second).unwrap();
    bad["jc"] = Value::from(0);
    std::fs::write(&file, bad.to_string()).unwrap();
    let refused = fails(
        url,
        &["node", "profile", "nl-1", "--set", file.to_str().unwrap()],
    );
    assert!(refused.contains("Jc must be 1 to 128"), "{refused}");
    assert_eq!(
        profile_of(url, "nl-1").amneziawg,
        Some(second.clone()),
        "unchanged"
    );

    // I1–I5: a bad tag and too much text in sum are refused with the reason.
    let mut bad = serde_json::to_value(&second).unwrap();
    bad["i2"] = Value::from("<b 0xc0ff><r 16");
    std::fs::write(&file, bad.to_string()).unwrap();
    let refused = fails(
        url,
        &["node", "profile", "nl-1", "--set", file.to_str().unwrap()],
    );
    assert!(
        refused.contains("\"<b 0xc0ff><r 16\"") && refused.contains("not closed"),
        "{refused}"
    );
    let long = format!("<b 0x{}>", "00".repeat(600));
    let mut bad = serde_json::to_value(&second).unwrap();
    bad["i1"] = Value::from(long.clone());
    bad["i2"] = Value::from(long);
    std::fs::write(&file, bad.to_string()).unwrap();
    let refused = fails(
        url,
        &["node", "profile", "nl-1", "--set", file.to_str().unwrap()],
    );
    assert!(
        refused.contains("I1 to I5 have 2412 characters together"),
        "{refused}"
    );
    assert_eq!(
        profile_of(url, "nl-1").amneziawg,
        Some(second.clone()),
        "unchanged"
    );

    let mut chosen = AwgProfile::generate();
    chosen.i1 = Some("<b 0x5a5a><rc 8><t>".parse().unwrap());
    std::fs::write(&file, serde_json::to_string(&chosen).unwrap()).unwrap();
    ok(
        url,
        &["node", "profile", "nl-1", "--set", file.to_str().unwrap()],
    );
    assert_eq!(profile_of(url, "nl-1").amneziawg, Some(chosen));
    let shown = ok(url, &["node", "profile", "nl-1"]);
    assert!(shown.contains("I1 = <b 0x5a5a><rc 8><t>\n"), "{shown}");
    assert!(!shown.contains("I2"), "unset I* are not shown: {shown}");
    let reissued = env
        .service
        .grant_device(1, &region("nl"), None)
        .await
        .unwrap();
    let config = reissued.config.expose();
    assert!(config.contains("\nI1 = <b 0x5a5a><rc 8><t>\n"), "{config}");
    assert!(!config.contains("I2 ="), "{config}");

    let moved = fails(
        url,
        &[
            "node",
            "add",
            "nl-1",
            "--region",
            "nl",
            "--endpoint",
            "vpn.example.net:51820",
            "--public-key",
            &KeyPair::generate().public.to_base64(),
            "--listen-port",
            "51820",
            "--subnet",
            "198.18.0.0/24",
            "--capacity",
            "10",
        ],
    );
    assert!(moved.contains("protocol cannot change"), "{moved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_the_interface_with_snapshots_and_profile_changes() {
    let env = env().await;
    let url = env.database.url();
    let redis = RedisServer::start().unwrap();
    ok(url, &["region", "add", "nl", "--name", "Netherlands"]);
    add_node(url, "nl-1", "198.18.0.0/24", "amneziawg");
    let relay = start_relay(&env.pool, &redis.url());
    wait_for("the node's snapshot", LIMIT, || async {
        interface_in_redis(&redis.url(), "nl-1").await.is_some()
    })
    .await;
    let published = interface_in_redis(&redis.url(), "nl-1").await.unwrap();
    assert_eq!(
        published,
        profile_of(url, "nl-1"),
        "written with the snapshot"
    );

    user(&env.service, 1).await;
    env.service
        .grant_device(1, &region("nl"), None)
        .await
        .unwrap(); // revision 1
    ok(url, &["node", "profile", "nl-1", "--regenerate"]); // revision 2
    wait_published(&env.pool).await;
    let now = profile_of(url, "nl-1");
    assert_ne!(now, published);
    assert_eq!(
        interface_in_redis(&redis.url(), "nl-1").await,
        Some(now.clone())
    );
    let mut conn = connect(&redis.url()).await;
    let events = events(&mut conn, "nl").await;
    let set = events
        .iter()
        .find_map(|e| match e {
            StreamEvent::InterfaceSet {
                revision,
                interface,
                ..
            } => Some((*revision, interface.clone())),
            _ => None,
        })
        .expect("an InterfaceSet on the stream");
    assert_eq!(
        set,
        (2, now.clone()),
        "ordered after the grant, with the new profile"
    );
    let (revision, peers) = snapshot(&mut conn, "nl", "nl-1").await;
    assert_eq!(
        (revision, peers.len()),
        (Some(2), 1),
        "the revision moved, the peers did not"
    );
    relay.stop().await;

    // A Redis written by a relay from before protocols has no interface key: the consistency
    // check of the next relay finds it and republishes the node.
    let key = RegionKeys::new(&region("nl")).node_interface(&node_name("nl-1"));
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let relay = start_relay(&env.pool, &redis.url());
    wait_for("the interface spec republished", LIMIT, || async {
        interface_in_redis(&redis.url(), "nl-1").await == Some(now.clone())
    })
    .await;
    relay.stop().await;
}

/// The bot sends a config as a QR code too: the largest config an AmneziaWG node can issue (every
/// parameter at its longest: S3/S4 set, H1–H4 ten-digit ranges, all five I1–I5 set and together
/// as long as a profile allows, a long endpoint, two DNS servers) still fits one code that
/// decodes to exactly the file (the bot's `qr_png`, read back with rqrr as the bot conversation
/// tests do). Raising `MAX_SPECIAL_JUNK_TEXT` past what a code holds fails here.
#[test]
fn the_largest_amneziawg_config_fits_a_qr_code() {
    use pvpn_common::client_config::{ClientConfig, Endpoint};
    use pvpn_common::obfuscation::{HeaderRange, MAX_SPECIAL_JUNK_TEXT, SpecialJunk};
    use pvpn_common::{PresharedKey, PrivateKey};

    let range = |low: u32| HeaderRange::new(low, low + 99_999_999).unwrap();
    // I1–I5 share the text limit: four short ones, and I1 a `<b>` taking up the rest (its
    // length grows in steps of two hex digits, so pad with `<t>` when one character is left).
    let short: SpecialJunk = "<rc 12><t>".parse().unwrap();
    let mut rest = MAX_SPECIAL_JUNK_TEXT - 4 * short.as_str().len();
    let mut i1 = String::new();
    while rest >= 3 && (rest - "<b 0x>".len()) % 2 != 0 {
        i1.push_str("<t>");
        rest -= 3;
    }
    i1.push_str(&format!(
        "<b 0x{}>",
        "5a".repeat((rest - "<b 0x>".len()) / 2)
    ));
    let i1: SpecialJunk = i1.parse().expect("within one packet");
    let profile = AwgProfile {
        jc: 128,
        jmin: 1000,
        jmax: 1280,
        s1: 1132,
        s2: 1180,
        s3: 1200,
        s4: 1248,
        h1: range(1_000_000_000),
        h2: range(1_200_000_000),
        h3: range(1_400_000_000),
        h4: range(1_600_000_000),
        i1: Some(i1),
        i2: Some(short.clone()),
        i3: Some(short.clone()),
        i4: Some(short.clone()),
        i5: Some(short),
    };
    profile.validate().unwrap();
    let junk_text: usize = profile
        .special_junk()
        .iter()
        .filter_map(|(_, j)| j.map(|j| j.as_str().len()))
        .sum();
    assert_eq!(junk_text, MAX_SPECIAL_JUNK_TEXT, "I1–I5 at their longest");
    let key = PrivateKey::generate();
    let psk = PresharedKey::generate();
    let endpoint: Endpoint = "vpn-node-amsterdam-01.example-provider.net:51820"
        .parse()
        .unwrap();
    let config = ClientConfig {
        private_key: &key,
        addresses: &["198.18.255.254/32".parse().unwrap()],
        dns: &["198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap()],
        server_public_key: &PrivateKey::generate().public_key(),
        preshared_key: Some(&psk),
        endpoint: &endpoint,
        allowed_ips: &["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
        obfuscation: Some(&profile),
    }
    .render();
    let text = config.expose();
    assert!(
        text.contains("S4 = 1248") && text.contains("H4 = ") && text.contains("I5 = <rc 12><t>"),
        "{text}"
    );
    let png = pvpn_backend::bot::config_file::qr_png(text).expect("fits a QR code");
    let image = image::load_from_memory(&png).expect("a PNG").to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    let mut bytes = Vec::new();
    grids[0].decode_to(&mut bytes).expect("the QR code decodes");
    assert_eq!(bytes, text.as_bytes(), "the QR code holds exactly the file");
}
