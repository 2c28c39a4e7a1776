//! A user whose device was imported from the old server (`pvpnctl import`) finds it in "My
//! devices" under their Telegram account, is told their existing config keeps working (there is
//! no config to show), and can revoke it: the peer leaves the node's snapshot.

mod bot_support;

use bot_support::{BotEnv, NODE, Options, user};
use pvpn_backend::service::import::{ImportRequest, UnmappedPeers, parse_mapping, parse_peers};
use pvpn_backend::service::{Actor, Language};
use pvpn_common::PresharedKey;
use pvpn_common::keys::KeyPair;

async fn import_one(env: &BotEnv, telegram_id: i64, name: &str, address: &str) -> String {
    let key = KeyPair::generate().public.to_base64();
    let dump = format!(
        "{key}\t{}\t(none)\t{address}/32\t0\t0\t0\toff\n",
        PresharedKey::generate().to_base64()
    );
    let mapping = format!("{key},{telegram_id},{name}\n");
    let request = ImportRequest {
        node: NODE.parse().expect("node"),
        peers_source: "dump".into(),
        peers: parse_peers("dump", &dump).expect("peers"),
        mapping_source: "map".into(),
        mapping: parse_mapping("map", &mapping).expect("mapping"),
        unmapped: UnmappedPeers::Unassigned,
        confirm_removal: false,
        dry_run: false,
    };
    let service = pvpn_backend::service::Service::new(env.pool.clone(), Default::default());
    let report = service
        .import_peers(&Actor::System("test"), &request)
        .await
        .expect("import");
    assert_eq!(report.created_devices, 1);
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_device_is_listed_explained_and_revocable() {
    let env = BotEnv::start(Options::default()).await;
    let ann = user(2101, "en");
    let key = import_one(&env, ann.id, "old phone", "198.18.0.77").await;
    env.wait_snapshot(|k| k.contains(&key)).await;

    let menu = env.say(&ann, "/start").await;
    let list = env.press_edit(&ann, &menu, "devices").await;
    assert!(
        list.text().contains("• old phone — Netherlands"),
        "{}",
        list.text()
    );
    assert!(
        list.text()
            .contains("your existing config keeps working, there is nothing to install"),
        "{}",
        list.text()
    );
    let reissue = list
        .button_data("Re-issue old phone")
        .expect("re-issue button");
    let ask = env.press_edit(&ann, &list, &reissue).await;
    assert!(
        ask.text()
            .starts_with("This device still uses the config from the previous server"),
        "{}",
        ask.text()
    );
    let cancel = ask.button_data("Cancel").expect("cancel");
    let list = env.press_edit(&ann, &ask, &cancel).await;

    let revoke = list.button_data("Revoke old phone").expect("revoke button");
    let confirm = env.press_edit(&ann, &list, &revoke).await;
    let yes = confirm.button_data("Yes, revoke").expect("yes");
    let done = env.press_edit(&ann, &confirm, &yes).await;
    assert_eq!(done.text(), "“old phone” is revoked.");
    assert!(env.active_devices(ann.id).await.is_empty());
    let snapshot = env.wait_snapshot(|k| !k.contains(&key)).await;
    assert!(
        !snapshot.contains(&key),
        "the peer leaves the node: {snapshot:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_note_speaks_russian_too() {
    let env = BotEnv::start(Options::default()).await;
    let ivan = user(2102, "ru");
    import_one(&env, ivan.id, "ноутбук", "198.18.0.78").await;
    let service = pvpn_backend::service::Service::new(env.pool.clone(), Default::default());
    service
        .set_language(ivan.id, Language::Ru)
        .await
        .expect("language");
    let menu = env.say(&ivan, "/start").await;
    let list = env.press_edit(&ivan, &menu, "devices").await;
    assert!(list.text().contains("• ноутбук"), "{}", list.text());
    assert!(
        list.text()
            .contains("ваша прежняя конфигурация продолжает работать"),
        "{}",
        list.text()
    );
    env.stop().await;
}
