//! "My devices" through the real bot: the device limit, revoking and re-issuing with a
//! confirmation step, forged and garbled buttons (another user's device, nonsense payloads),
//! and the per-user rate limit on creating things.

mod bot_support;

use std::time::Duration;

use bot_support::{BotEnv, Options, WAIT, user};
use pvpn_backend::bot::rate_limit::RateLimit;
use pvpn_common::client_config::ParsedConfig;

const STALE: &str = "This button is outdated or not yours: nothing was changed.";
const INVALID: &str = "This button is not valid: nothing was changed.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_limit_is_explained() {
    let env = BotEnv::start(Options::default()).await;
    let ann = user(2001, "en");
    env.say(&ann, "/start").await;
    env.set_device_limit(ann.id, 1).await;
    env.new_device(&ann, Some("phone")).await;

    // The menu refuses up front...
    let menu = env.say(&ann, "/menu").await;
    env.api.press_button(&ann, &menu, "new").expect("press");
    let refusal = env.api.next_message(ann.id, WAIT).await.expect("refusal");
    assert_eq!(
        refusal.text(),
        "You already have the maximum of 1 devices. Revoke one in “My devices” to add another."
    );
    // ...and so does the service behind an old "Skip" button that skips the menu.
    env.api
        .press_button(&ann, &menu, "noname:nl")
        .expect("press");
    let refusal = env.api.next_message(ann.id, WAIT).await.expect("refusal");
    assert!(
        refusal
            .text()
            .starts_with("You already have the maximum of 1")
    );
    assert_eq!(env.active_devices(ann.id).await.len(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_asks_first_then_revokes() {
    let env = BotEnv::start(Options::default()).await;
    let ann = user(2002, "en");
    env.say(&ann, "/start").await;
    env.new_device(&ann, Some("phone")).await;
    let devices = env.active_devices(ann.id).await;
    let (id, key) = devices[0].clone();
    env.wait_snapshot(|k| k.contains(&key)).await;

    let menu = env.say(&ann, "/menu").await;
    let list = env.press_edit(&ann, &menu, "devices").await;
    assert!(
        list.text().starts_with("Your devices (1 of 3):"),
        "{}",
        list.text()
    );
    assert!(list.text().contains("• phone — Netherlands"));
    assert!(list.text().contains("never connected"));
    assert!(list.text().contains("traffic: ↑ 0 B ↓ 0 B"));

    // What the node reported (as the feedback consumer stores it) shows up in the list.
    sqlx::query(
        "UPDATE devices SET last_handshake_at = now(), rx_bytes = 1234567, tx_bytes = 89000000 \
         WHERE id = $1",
    )
    .bind(id)
    .execute(&env.pool)
    .await
    .expect("stats");
    let menu = env.say(&ann, "/menu").await;
    let list = env.press_edit(&ann, &menu, "devices").await;
    assert!(list.text().contains("🟢 connected"), "{}", list.text());
    assert!(
        list.text().contains("traffic: ↑ 1.2 MB ↓ 89.0 MB"),
        "{}",
        list.text()
    );
    let revoke = list.button_data("Revoke phone").expect("revoke button");
    assert_eq!(revoke, format!("revoke:{id}"));

    let confirm = env.press_edit(&ann, &list, &revoke).await;
    assert_eq!(
        confirm.text(),
        "Revoke “phone” (Netherlands)? Its config stops working at once. This cannot be undone."
    );
    assert_eq!(
        env.active_devices(ann.id).await.len(),
        1,
        "asking changes nothing"
    );
    let cancel = confirm.button_data("Cancel").expect("cancel");
    let list = env.press_edit(&ann, &confirm, &cancel).await;
    assert!(list.text().starts_with("Your devices (1 of 3):"));
    assert_eq!(env.active_devices(ann.id).await.len(), 1);

    let confirm = env.press_edit(&ann, &list, &revoke).await;
    let yes = confirm.button_data("Yes, revoke").expect("yes");
    let done = env.press_edit(&ann, &confirm, &yes).await;
    assert_eq!(done.text(), "“phone” is revoked.");
    assert!(env.active_devices(ann.id).await.is_empty());
    let snapshot = env.wait_snapshot(|k| k.is_empty()).await;
    assert!(
        snapshot.is_empty(),
        "the peer leaves the node: {snapshot:?}"
    );

    // The same confirmation again: the device is gone, nothing happens.
    assert_eq!(env.press_alert(&ann, &done, &yes).await, STALE);
    env.api
        .expect_silence(ann.id, Duration::from_millis(300))
        .await
        .expect("no message");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reissue_replaces_the_key_at_the_same_address() {
    let env = BotEnv::start(Options::default()).await;
    let ann = user(2003, "en");
    env.say(&ann, "/start").await;
    let first = env.new_device(&ann, Some("laptop")).await;
    let old = ParsedConfig::parse(&first.config_text()).expect("config");
    let (id, old_key) = env.active_devices(ann.id).await[0].clone();

    let menu = env.say(&ann, "/menu").await;
    let list = env.press_edit(&ann, &menu, "devices").await;
    let reissue = list
        .button_data("Re-issue laptop")
        .expect("re-issue button");
    let confirm = env.press_edit(&ann, &list, &reissue).await;
    assert!(
        confirm
            .text()
            .starts_with("Re-issue “laptop” (Netherlands)?")
    );
    assert_eq!(
        env.active_devices(ann.id).await[0].1,
        old_key,
        "asking changes nothing"
    );

    let yes = confirm.button_data("Yes, re-issue").expect("yes");
    let done = env.press_edit(&ann, &confirm, &yes).await;
    assert!(done.text().starts_with("“laptop” has a new key."));
    let second = env.delivered(&ann).await;
    let new = ParsedConfig::parse(&second.config_text()).expect("config");
    assert_ne!(
        new.interface_value("PrivateKey"),
        old.interface_value("PrivateKey")
    );
    assert_eq!(
        new.interface_value("Address"),
        old.interface_value("Address")
    );
    assert_eq!(
        second.document.document().unwrap().file_name.as_deref(),
        Some("nl-laptop.conf")
    );

    let devices = env.active_devices(ann.id).await;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].0, id);
    assert_ne!(devices[0].1, old_key);
    let snapshot = env.wait_snapshot(|k| k == [devices[0].1.clone()]).await;
    assert_eq!(snapshot, vec![devices[0].1.clone()], "old peer replaced");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_garbled_buttons_change_nothing() {
    let env = BotEnv::start(Options::default()).await;
    let ann = user(2004, "en");
    let mallory = user(2005, "en");
    env.say(&ann, "/start").await;
    env.new_device(&ann, Some("phone")).await;
    let (id, key) = env.active_devices(ann.id).await[0].clone();
    let welcome = env.say(&mallory, "/start").await;

    for forged in [
        format!("revoke-yes:{id}"),
        format!("reissue-yes:{id}"),
        format!("revoke:{id}"),
        format!("reissue:{id}"),
    ] {
        assert_eq!(
            env.press_alert(&mallory, &welcome, &forged).await,
            STALE,
            "{forged}"
        );
    }
    for garbled in [
        "revoke-yes:abc",
        "revoke-yes:-1",
        "revoke-yes:0x1",
        &format!("revoke-yes:{id}:1"),
        "region:../etc",
        "lang:xx",
        "drop table devices",
        "",
    ] {
        assert_eq!(
            env.press_alert(&mallory, &welcome, garbled).await,
            INVALID,
            "{garbled:?}"
        );
    }
    assert_eq!(
        env.active_devices(ann.id).await,
        vec![(id, key)],
        "Ann's device untouched"
    );
    assert!(env.active_devices(mallory.id).await.is_empty());
    env.api
        .expect_silence(mallory.id, Duration::from_millis(300))
        .await
        .expect("no message to mallory");
    env.api
        .expect_silence(ann.id, Duration::from_millis(1))
        .await
        .expect("no message to ann");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_too_fast_is_refused_politely() {
    let env = BotEnv::start(Options {
        rate_limit: RateLimit {
            burst: 2,
            refill_every: Duration::from_secs(3600),
        },
        ..Options::default()
    })
    .await;
    let ann = user(2006, "en");
    env.say(&ann, "/start").await;
    env.new_device(&ann, None).await;
    env.new_device(&ann, None).await;

    let menu = env.say(&ann, "/menu").await;
    env.api
        .press_button(&ann, &menu, "noname:nl")
        .expect("press");
    let refusal = env.api.next_message(ann.id, WAIT).await.expect("refusal");
    assert!(
        refusal
            .text()
            .starts_with("You are doing that too often. Please wait"),
        "{}",
        refusal.text()
    );
    assert_eq!(env.active_devices(ann.id).await.len(), 2);
    env.stop().await;
}
