//! `pvpnctl import` (the real binary) against a per-test database: peers from a `wg show dump`
//! or a wg-quick file become devices with their own keys and addresses; a garbled line, a
//! duplicate key or a foreign address is refused with its line and changes nothing; dry runs
//! and repeated imports write nothing; unmapped peers are unassigned or, confirmed, left out.

mod support;

use std::path::{Path, PathBuf};

use pvpn_common::PresharedKey;
use pvpn_common::keys::KeyPair;
use serde_json::Value;
use sqlx::PgPool;
use support::pvpnctl_bin::{fails, ok};
use support::*;

/// One peer of the "old server".
struct OldPeer {
    key: String,
    psk: Option<String>,
    address: String,
}

fn old_peers(n: usize) -> Vec<OldPeer> {
    (0..n)
        .map(|i| OldPeer {
            key: KeyPair::generate().public.to_base64(),
            psk: (i % 2 == 0).then(|| PresharedKey::generate().to_base64()),
            address: format!("198.19.0.{}", i + 2),
        })
        .collect()
}

fn dump(peers: &[OldPeer]) -> String {
    let mut text = format!(
        "{}\t{}\t51820\toff\n",
        pvpn_common::PrivateKey::generate().to_base64(),
        KeyPair::generate().public
    );
    for p in peers {
        text.push_str(&format!(
            "{}\t{}\t198.18.9.9:5000\t{}/32\t0\t0\t0\toff\n",
            p.key,
            p.psk.as_deref().unwrap_or("(none)"),
            p.address
        ));
    }
    text
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("pvpn-import-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self { dir }
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write file");
        path.display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn import_json(url: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json", "import", "nl-1", "--no-wait"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(url, &all)).expect("--json output")
}

/// Everything an import could change, to prove a refusal changed nothing.
async fn state(pool: &PgPool) -> (i64, i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM devices),
                (SELECT count(*) FROM outbox), (SELECT count(*) FROM audit_log),
                (SELECT revision FROM nodes WHERE name = 'nl-1')",
    )
    .fetch_one(pool)
    .await
    .expect("state")
}

async fn seeded() -> Env {
    let env = env().await;
    seed_region(&env.service, "nl", &[("nl-1", "198.19.0.0/24", 250)]).await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_peers_with_their_keys_once_and_then_changes_nothing() {
    let env = seeded().await;
    let url = env.database.url();
    let files = Files::new();
    let peers = old_peers(6);
    let dump_path = files.write("dump.txt", &dump(&peers));
    let mapping = format!(
        "public_key,telegram_id,device_name\n{},1001,alice phone\n{},1001,alice laptop\n{},1002,\n",
        peers[0].key, peers[1].key, peers[2].key
    );
    let mapping_path = files.write("map.csv", &mapping);
    let args = [
        "--peers",
        dump_path.as_str(),
        "--mapping",
        mapping_path.as_str(),
    ];

    let before = state(&env.pool).await;
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let report = import_json(url, &dry);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["created_devices"], 6);
    assert_eq!(report["unassigned_devices"], 3);
    let unassigned: Vec<u64> = report["unassigned"]
        .as_array()
        .expect("unassigned peers listed")
        .iter()
        .filter_map(|p| p["line"].as_u64())
        .collect();
    assert_eq!(
        unassigned,
        vec![5, 6, 7],
        "the unmapped peers, by their dump lines"
    );
    assert_eq!(report["created_users"], 2);
    assert_eq!(state(&env.pool).await, before, "a dry run writes nothing");

    let report = import_json(url, &args);
    assert_eq!(report["changed"], true);
    assert_eq!(report["created_devices"], 6);
    assert_eq!(report["revisions"], serde_json::json!([1, 6]));

    let rows: Vec<(String, Option<String>, String, i64, String)> = sqlx::query_as(
        "SELECT d.public_key, d.preshared_key, host(d.address), u.telegram_id, d.name
         FROM devices d JOIN users u ON u.id = d.user_id
         WHERE d.imported_at IS NOT NULL AND d.status = 'active' ORDER BY d.address",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 6);
    for (row, peer) in rows.iter().zip(&peers) {
        assert_eq!(
            (&row.0, &row.1, &row.2),
            (&peer.key, &peer.psk, &peer.address)
        );
    }
    assert_eq!((rows[0].3, rows[0].4.as_str()), (1001, "alice phone"));
    assert_eq!(
        (rows[2].3, rows[2].4.as_str()),
        (1002, "imported-198.19.0.4")
    );
    assert_eq!(rows[3].3, 0, "unmapped peers belong to the placeholder");

    let outbox: Vec<(i64, String)> =
        sqlx::query_as("SELECT revision, kind FROM outbox WHERE node = 'nl-1' ORDER BY revision")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(outbox.len(), 6, "one outbox row per device, like a grant");
    assert!(
        outbox
            .iter()
            .enumerate()
            .all(|(i, (r, k))| *r == i as i64 + 1 && k == "peer_upsert")
    );
    let audit: (String, String) =
        sqlx::query_as("SELECT actor, action FROM audit_log WHERE action = 'node.import'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(audit, ("cli:tester".into(), "node.import".into()));

    // The user sees the device under their account.
    let devices = env.service.list_devices(1001).await.unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices.iter().all(|d| d.imported_config));

    let after_first = state(&env.pool).await;
    let mut plain = vec!["import", "nl-1", "--no-wait"];
    plain.extend_from_slice(&args);
    let text = ok(url, &plain);
    assert!(text.contains("unchanged"), "{text}");
    assert_eq!(
        state(&env.pool).await,
        after_first,
        "a second import writes nothing"
    );

    // A later mapping gives an unassigned device to its user, without touching the peer.
    let more = format!("{mapping}{},1003,bob tablet\n", peers[4].key);
    let more_path = files.write("more.csv", &more);
    let report = import_json(url, &["--peers", &dump_path, "--mapping", &more_path]);
    assert_eq!(
        (
            report["assigned_devices"].as_u64(),
            report["created_devices"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(
        state(&env.pool).await.2,
        after_first.2,
        "assigning writes no outbox row"
    );
    let bob = env.service.list_devices(1003).await.unwrap();
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].name, "bob tablet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_line_and_change_nothing() {
    let env = seeded().await;
    let url = env.database.url();
    let files = Files::new();
    let peers = old_peers(4);
    let good = dump(&peers);

    // A key PVPN already has, on the same node: granted, so not importable.
    user(&env.service, 2001).await;
    let granted = env
        .service
        .grant_device(2001, &region("nl"), Some("pvpn"))
        .await
        .unwrap();
    let before = state(&env.pool).await;

    let cases: Vec<(&str, String, Option<String>, &str)> = vec![
        (
            "garbled line",
            format!("{good}this is not a peer\n"),
            None,
            ":6: expected 8 tab-separated fields",
        ),
        (
            "duplicate key in the peers",
            format!(
                "{good}{}\t(none)\t(none)\t198.19.0.77/32\t0\t0\t0\toff\n",
                peers[1].key
            ),
            None,
            ":6: key",
        ),
        (
            "foreign address",
            good.replace("198.19.0.4/32", "198.18.200.4/32"),
            None,
            ":4: address 198.18.200.4 is not a client address",
        ),
        (
            "not a single host",
            good.replace("198.19.0.4/32", "198.19.0.4/32,198.19.0.100/32"),
            None,
            ":4: allowed IPs must be exactly one",
        ),
        (
            "address already used by PVPN",
            good.replace("198.19.0.3/32", &format!("{}/32", granted.device.address)),
            None,
            "already used on node nl-1",
        ),
        (
            "duplicate key in the mapping",
            good.clone(),
            Some(format!("{},1,a\n{},2,b\n", peers[0].key, peers[0].key)),
            "map.csv:2: key",
        ),
        (
            "garbled mapping line",
            good.clone(),
            Some(format!("{},1,a\n{},one,b\n", peers[0].key, peers[1].key)),
            "map.csv:2: telegram id \"one\" is not a number",
        ),
        (
            "key already known to PVPN elsewhere",
            format!(
                "{good}{}\t(none)\t(none)\t198.19.0.90/32\t0\t0\t0\toff\n",
                granted.device.public_key
            ),
            None,
            ":6: key",
        ),
    ];
    for (what, peers_text, mapping, expected) in cases {
        let peers_path = files.write("dump.txt", &peers_text);
        let mut args = vec!["import", "nl-1", "--peers", &peers_path];
        let mapping_path;
        if let Some(m) = &mapping {
            mapping_path = files.write("map.csv", m);
            args.extend(["--mapping", &mapping_path]);
        }
        let stderr = fails(url, &args);
        assert!(stderr.contains(expected), "{what}: {stderr}");
        assert!(stderr.contains("nothing was changed"), "{what}: {stderr}");
        assert_eq!(state(&env.pool).await, before, "{what}: nothing changed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_out_peers_need_confirmation_and_a_wg_quick_file_works_too() {
    let env = seeded().await;
    let url = env.database.url();
    let files = Files::new();
    let peers = old_peers(3);
    let mut conf = String::from("[Interface]\nPrivateKey = notreadatall\nListenPort = 51820\n");
    for p in &peers {
        conf.push_str(&format!(
            "\n[Peer]\nPublicKey = {}\nAllowedIPs = {}/32\n",
            p.key, p.address
        ));
        if let Some(psk) = &p.psk {
            conf.push_str(&format!("PresharedKey = {psk}\n"));
        }
    }
    conf.push_str("PersistentKeepalive = 25\n");
    let conf_path = files.write("wg0.conf", &conf);
    let mapping_path = files.write(
        "map.json",
        &format!(
            "[{{\"public_key\":\"{}\",\"telegram_id\":3001,\"device_name\":\"phone\"}}]",
            peers[0].key
        ),
    );
    let base = [
        "--peers",
        conf_path.as_str(),
        "--mapping",
        mapping_path.as_str(),
        "--unmapped",
        "leave-out",
    ];
    let before = state(&env.pool).await;
    let mut args = vec!["import", "nl-1"];
    args.extend_from_slice(&base);
    let stderr = fails(url, &args);
    // Each left-out peer is named by the line of its [Peer] header.
    assert!(
        stderr.contains("wg0.conf:") && stderr.contains("--remove-unmapped"),
        "{stderr}"
    );
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
    assert_eq!(state(&env.pool).await, before);

    let mut confirmed = base.to_vec();
    confirmed.push("--remove-unmapped");
    let report = import_json(url, &confirmed);
    assert_eq!(report["created_devices"], 1);
    assert_eq!(report["left_out"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["keepalive_dropped"], 1);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM devices")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    assert_eq!(
        env.service.list_devices(3001).await.unwrap()[0].name,
        "phone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_node_or_a_banned_user_is_refused() {
    let env = seeded().await;
    let url = env.database.url();
    let files = Files::new();
    let peers = old_peers(1);
    let dump_path = files.write("dump.txt", &dump(&peers));
    let stderr = fails(url, &["import", "nl-9", "--peers", &dump_path]);
    assert!(stderr.contains("no such node"), "{stderr}");

    user(&env.service, 4001).await;
    env.service
        .ban_user(&OPERATOR, &pvpn_backend::service::UserRef::TelegramId(4001))
        .await
        .unwrap();
    let mapping_path = files.write("map.csv", &format!("{},4001,x\n", peers[0].key));
    let stderr = fails(
        url,
        &[
            "import",
            "nl-1",
            "--peers",
            &dump_path,
            "--mapping",
            &mapping_path,
        ],
    );
    assert!(
        stderr.contains("map.csv:1: Telegram user 4001 is banned"),
        "{stderr}"
    );
    assert!(Path::new(&dump_path).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_after_an_import_take_addresses_the_import_left_free() {
    let env = seeded().await;
    let url = env.database.url();
    let files = Files::new();
    // The old server used .2, .3, .5, .6 and .7; .4 was free.
    let mut peers = old_peers(6);
    peers.remove(2);
    let dump_path = files.write("dump.txt", &dump(&peers));
    let mapping_path = files.write("map.csv", "public_key,telegram_id,device_name\n");
    import_json(
        url,
        &[
            "--peers",
            dump_path.as_str(),
            "--mapping",
            mapping_path.as_str(),
        ],
    );
    let live: i32 = sqlx::query_scalar("SELECT live_devices FROM nodes WHERE name = 'nl-1'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(live, 5, "the node counts the imported devices as live");

    user(&env.service, 3001).await;
    let mut granted = Vec::new();
    for name in ["a", "b"] {
        let device = env
            .service
            .grant_device(3001, &region("nl"), Some(name))
            .await
            .expect("a grant after the import");
        granted.push(device.device.address.to_string());
    }
    assert_eq!(
        granted,
        ["198.19.0.4", "198.19.0.8"],
        "the gap the import left, then the first address above every imported one"
    );
}
