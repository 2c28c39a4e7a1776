//! The real `pvpnctl` binary against a per-test database: idempotent declarations, listings as
//! JSON, user administration, invites, reconcile requests, status, and clear failures.

mod support;

use std::process::Command;

use pvpn_common::keys::KeyPair;
use serde_json::Value;
use support::pvpnctl_bin::{ctl, fails, ok};
use support::*;

fn json(url: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(url, &all)).expect("--json output parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_says_whether_it_changed_anything() {
    let database = pvpn_testkit::postgres::TestDatabase::create()
        .await
        .expect("test database");
    let url = database.url();
    let migrations = pvpn_backend::db::MIGRATOR.iter().count();
    assert_eq!(
        ok(url, &["migrate"]).trim(),
        format!("applied {migrations} migration(s)")
    );
    assert_eq!(ok(url, &["migrate"]).trim(), "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_and_nodes_are_declared_idempotently() {
    let env = env().await;
    let url = env.database.url();
    // The fixture migrated already.
    assert_eq!(ok(url, &["migrate"]).trim(), "unchanged");
    assert_eq!(
        ok(url, &["region", "add", "nl", "--name", "Netherlands"]).trim(),
        "created"
    );
    assert_eq!(
        ok(url, &["region", "add", "nl", "--name", "Netherlands"]).trim(),
        "unchanged"
    );
    assert_eq!(
        ok(url, &["region", "add", "nl", "--name", "Holland"]).trim(),
        "updated"
    );
    ok(url, &["region", "add", "de", "--name", "Germany"]);
    assert!(fails(url, &["region", "add", "NL!", "--name", "x"]).contains("region code"));

    let key = KeyPair::generate().public.to_base64();
    let node = |capacity: &str, region: &str, subnet: &str| {
        vec![
            "node",
            "add",
            "nl-1",
            "--region",
            region,
            "--endpoint",
            "vpn1.example.net:51820",
            "--public-key",
            &key,
            "--listen-port",
            "51820",
            "--subnet",
            subnet,
            "--dns",
            "198.18.0.1",
            "--capacity",
            capacity,
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| ok(url, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let run_fail =
        |args: Vec<String>| fails(url, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(run(node("100", "nl", "198.18.0.0/24")).trim(), "created");
    assert_eq!(run(node("100", "nl", "198.18.0.0/24")).trim(), "unchanged");
    assert_eq!(run(node("120", "nl", "198.18.0.0/24")).trim(), "updated");
    assert!(run_fail(node("120", "de", "198.18.0.0/24")).contains("region"));
    assert!(run_fail(node("120", "nl", "198.18.4.0/24")).contains("subnet"));
    assert!(run_fail(node("120", "nl", "198.18.0.5/24")).contains("host bits"));
    assert!(run_fail(node("120", "nowhere", "198.18.0.0/24")).contains("no such region"));
    let mut bad_key = node("120", "nl", "198.18.0.0/24");
    bad_key[8] = "not-a-key".into();
    assert!(run_fail(bad_key).contains("44 characters"));

    let nodes = json(url, &["node", "list"]);
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["name"], "nl-1");
    assert_eq!(nodes[0]["capacity"], 120);
    assert_eq!(nodes[0]["dns"][0], "198.18.0.1");
    assert_eq!(nodes[0]["up"], false);
    assert!(
        json(url, &["node", "list", "--region", "de"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    ok(url, &["region", "drain", "nl"]);
    let regions = json(url, &["region", "list"]);
    let nl = regions
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "nl")
        .unwrap();
    assert_eq!(nl["status"], "draining");
    assert_eq!(nl["display_name"], "Holland");
    assert_eq!(nl["capacity"], 120);
    ok(url, &["region", "enable", "nl"]);
    ok(url, &["node", "disable", "nl-1"]);
    assert_eq!(json(url, &["node", "list"])[0]["status"], "disabled");
    ok(url, &["node", "enable", "nl-1"]);
    assert!(fails(url, &["node", "enable", "nl-9"]).contains("no such node"));
    // Every change above was audited with the CLI user.
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE actor = 'cli:tester'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert!(audited >= 8, "{audited}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_invites_reconcile_and_status() {
    let env = env().await;
    let url = env.database.url();
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    env.service
        .register_user(42, Some("alice"), Default::default(), None)
        .await
        .unwrap();
    user(&env.service, 43).await;
    env.service
        .grant_device(42, &region("nl"), Some("phone"))
        .await
        .unwrap();
    env.service
        .grant_device(42, &region("nl"), Some("laptop"))
        .await
        .unwrap();

    let users = json(url, &["user", "list"]);
    assert_eq!(users.as_array().unwrap().len(), 2);
    let shown = json(url, &["user", "show", "@alice"]);
    assert_eq!(shown["user"]["telegram_id"], 42);
    assert_eq!(shown["devices"].as_array().unwrap().len(), 2);
    assert_eq!(shown["devices"][0]["name"], "phone");
    assert!(ok(url, &["user", "show", "42"]).contains("laptop"));
    assert!(fails(url, &["user", "show", "@nobody"]).contains("no such user"));
    assert!(fails(url, &["user", "show", "alice"]).contains("@username"));

    assert_eq!(
        json(url, &["user", "set-limit", "43", "7"])["device_limit"],
        7
    );
    assert!(fails(url, &["user", "set-limit", "43", "1000"]).contains("device limit"));
    assert_eq!(
        json(url, &["user", "set-expiry", "43", "2030-01-01"])["access_expires_at"],
        "2030-01-01T00:00:00Z"
    );
    assert_eq!(
        json(url, &["user", "set-expiry", "43", "never"])["access_expires_at"],
        Value::Null
    );
    assert!(fails(url, &["user", "set-expiry", "43", "soon"]).contains("never"));

    let banned = json(url, &["user", "ban", "@alice"]);
    assert_eq!(banned["revoked_devices"], 2);
    assert_eq!(banned["user"]["status"], "banned");
    assert_eq!(json(url, &["user", "unban", "42"])["status"], "active");

    let invite = json(
        url,
        &["invite", "create", "--uses", "3", "--expires-in-days", "7"],
    );
    assert_eq!(invite["max_uses"], 3);
    let code = invite["code"].as_str().unwrap();
    let stored: i32 = sqlx::query_scalar("SELECT max_uses FROM invites WHERE code = $1")
        .bind(code)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored, 3);

    let request = json(url, &["reconcile", "--region", "nl"]);
    assert!(
        request["request_id"]
            .as_str()
            .is_some_and(|id| id.len() == 36)
    );
    ok(url, &["reconcile", "--node", "nl-1"]);
    assert!(fails(url, &["reconcile", "--node", "nl-9"]).contains("no such node"));
    assert!(
        !ctl(url, &["reconcile"]).status.success(),
        "a target is required"
    );
    let reconciles: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE kind = 'reconcile'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(reconciles, 2);

    let drift = json(url, &["drift"]);
    assert_eq!(drift[0]["node"], "nl-1");
    assert_eq!(drift[0]["last_reconcile"], Value::Null);
    let status = json(url, &["status"]);
    assert_eq!(status["users"], 2);
    assert_eq!(status["active_devices"], 0);
    // 2 grants + 2 revocations by the ban + 2 reconcile requests, none published (no relay runs).
    assert_eq!(status["outbox_backlog"], 6);
    assert_eq!(status["nodes"][0]["revision"], 4);
    assert_eq!(status["nodes"][0]["published_revision"], 0);
    assert!(ok(url, &["status"]).contains("outbox backlog: 6"));
}

#[test]
fn help_documents_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_pvpnctl"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for command in [
        "migrate",
        "region",
        "node",
        "user",
        "invite",
        "reconcile",
        "drift",
        "status",
    ] {
        assert!(help.contains(command), "--help lists {command}");
    }
    for sub in [
        &["region", "add"][..],
        &["region", "list"],
        &["region", "drain"],
        &["region", "enable"],
        &["region", "disable"],
        &["node", "add"],
        &["node", "list"],
        &["node", "disable"],
        &["node", "enable"],
        &["user", "list"],
        &["user", "show"],
        &["user", "ban"],
        &["user", "unban"],
        &["user", "set-limit"],
        &["user", "set-expiry"],
        &["invite", "create"],
        &["reconcile"],
        &["drift"],
        &["status"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pvpnctl"))
            .args(sub)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{sub:?} --help");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.lines()
                .next()
                .is_some_and(|l| !l.trim().is_empty() && !l.starts_with("Usage")),
            "{sub:?} has a description:\n{text}"
        );
    }
}

#[test]
fn missing_database_url_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_pvpnctl"))
        .arg("status")
        .env_remove("DATABASE_URL")
        .env_remove("PVPN_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_the_config_file_and_env_overrides_it() {
    let env = env().await;
    let path = std::env::temp_dir().join(format!("pvpnctl-{}.toml", pvpn_testkit::unique_suffix()));
    std::fs::write(
        &path,
        format!("database_url = \"{}\"\n", env.database.url()),
    )
    .unwrap();
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _cleanup = Remove(path.clone());
    let run = |database_url: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pvpnctl"));
        cmd.args(["status", "--json"])
            .env("PVPN_CONFIG", &path)
            .env_remove("DATABASE_URL");
        if let Some(url) = database_url {
            cmd.env("DATABASE_URL", url);
        }
        cmd.output().unwrap()
    };
    let from_file = run(None);
    assert!(
        from_file.status.success(),
        "{}",
        String::from_utf8_lossy(&from_file.stderr)
    );
    let status: Value = serde_json::from_slice(&from_file.stdout).unwrap();
    assert_eq!(status["users"], 0);
    // The environment wins over the file: a wrong URL there makes the same command fail.
    let overridden = run(Some("postgres://nobody:wrong@127.0.0.1:1/none"));
    assert!(!overridden.status.success());
}
