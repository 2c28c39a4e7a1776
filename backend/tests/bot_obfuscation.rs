//! Obfuscated (AmneziaWG) regions through the real bot: the region picker marks them (a mixed
//! region is not marked), an AmneziaWG config comes with the apps that open it, a device that
//! never connected gets one nudge toward an obfuscated region whose button grants a device
//! there, and `pvpnctl node notify-reissue` tells each user with a device on the node once, with
//! buttons that re-issue.

mod bot_support;
#[path = "support/pvpnctl_bin.rs"]
mod pvpnctl_bin;

use std::time::Duration;

use bot_support::obfuscated::TestNode;
use bot_support::{BotEnv, NODE, Options, WAIT, user};
use pvpn_backend::service::{Service, ServiceSettings};

const AWG_REGION: &str = "se";
const AWG_REGION_NAME: &str = "Sweden";
const AWG_NODE: &str = "se-1";
const AMNEZIAWG_GOOGLE_PLAY: &str = "https://play.google.com/store/apps/details?id=org.amnezia.awg";

async fn add_obfuscated_region(env: &BotEnv) {
    env.add_region(
        AWG_REGION,
        AWG_REGION_NAME,
        &[TestNode {
            name: AWG_NODE,
            endpoint: "198.18.2.1:51820",
            subnet: "198.18.2.0/24",
            amneziawg: true,
        }],
    )
    .await;
}

/// (device id, node) of the user's active devices, from the database.
async fn devices_with_nodes(env: &BotEnv, telegram_id: i64) -> Vec<(i64, String)> {
    sqlx::query_as(
        "SELECT d.id, d.node FROM devices d JOIN users u ON u.id = d.user_id \
         WHERE u.telegram_id = $1 AND d.status = 'active' ORDER BY d.id",
    )
    .bind(telegram_id)
    .fetch_all(&env.pool)
    .await
    .expect("devices")
}

/// (device id, kind, state) of every notice.
async fn notices(env: &BotEnv) -> Vec<(Option<i64>, String, String)> {
    sqlx::query_as("SELECT device_id, kind, state FROM user_notices ORDER BY id")
        .fetch_all(&env.pool)
        .await
        .expect("notices")
}

/// Makes a device look issued `hours` ago.
async fn age_device(env: &BotEnv, device_id: i64, hours: i32) {
    sqlx::query("UPDATE devices SET created_at = now() - make_interval(hours => $2) WHERE id = $1")
        .bind(device_id)
        .bind(hours)
        .execute(&env.pool)
        .await
        .expect("age the device");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obfuscated_regions_are_marked_and_their_configs_name_the_app() {
    let env = BotEnv::start(Options::default()).await;
    add_obfuscated_region(&env).await;
    // Mixed: one node of each protocol. A grant may land on either, so it is not marked.
    env.add_region(
        "fi",
        "Finland",
        &[
            TestNode {
                name: "fi-1",
                endpoint: "198.18.3.1:51820",
                subnet: "198.18.3.0/24",
                amneziawg: false,
            },
            TestNode {
                name: "fi-2",
                endpoint: "198.18.4.1:51820",
                subnet: "198.18.4.0/24",
                amneziawg: true,
            },
        ],
    )
    .await;

    for (id, lang, legend, caption, instructions) in [
        (
            7001,
            "en",
            "🛡 — obfuscated (AmneziaWG)",
            "AmneziaWG config for “device-1” (Sweden)",
            "install AmneziaVPN or AmneziaWG",
        ),
        (
            7002,
            "ru",
            "🛡 — с маскировкой (AmneziaWG)",
            "Конфигурация AmneziaWG для «device-1» (Sweden)",
            "установите AmneziaVPN или AmneziaWG",
        ),
    ] {
        let ann = user(id, lang);
        env.say(&ann, "/start").await;
        let menu = env.say(&ann, "/menu").await;
        let regions = env.press_edit(&ann, &menu, "new").await;
        assert!(regions.text().contains(legend), "{}", regions.text());
        let labels: Vec<String> = regions.buttons().into_iter().map(|(l, _)| l).collect();
        assert!(
            labels.iter().any(|l| l.starts_with("🛡 Sweden · ")),
            "{labels:?}"
        );
        assert!(
            labels.iter().any(|l| l.starts_with("Finland · ")),
            "{labels:?}"
        );
        assert!(
            labels.iter().any(|l| l.starts_with("Netherlands · ")),
            "{labels:?}"
        );

        let sweden = regions.button_data("Sweden").expect("Sweden button");
        let ask = env.press_edit(&ann, &regions, &sweden).await;
        let skip = ask.button_data(if lang == "en" {
            "Skip"
        } else {
            "Пропустить"
        });
        env.api
            .press_button(&ann, &ask, &skip.expect("skip"))
            .expect("press");
        let delivered = env.delivered(&ann).await;
        assert!(
            delivered.document.text().starts_with(caption),
            "{}",
            delivered.document.text()
        );
        let how = delivered.instructions.text();
        assert!(how.contains(instructions), "{how}");
        assert!(how.contains(AMNEZIAWG_GOOGLE_PLAY), "{how}");
        assert!(how.contains("https://amnezia.org/downloads"), "{how}");
        assert_eq!(
            devices_with_nodes(&env, ann.id).await[0].1,
            AWG_NODE,
            "granted in the obfuscated region"
        );
    }
    // A plain region's config still points to WireGuard.
    let bob = user(7003, "en");
    env.say(&bob, "/start").await;
    let plain = env.new_device(&bob, None).await;
    assert!(plain.document.text().starts_with("WireGuard config"));
    assert!(!plain.instructions.text().contains("Amnezia"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_connected_is_nudged_once_toward_an_obfuscated_region() {
    let env = BotEnv::start(Options {
        notice_interval: Duration::from_millis(100),
        blocked_nudge_after: Duration::from_secs(3600),
        ..Options::default()
    })
    .await;
    let (ann, bob, carl) = (user(7101, "ru"), user(7102, "en"), user(7103, "en"));
    for u in [&ann, &bob, &carl] {
        env.say(u, "/start").await;
        env.new_device(u, Some("phone")).await;
    }
    let ann_phone = devices_with_nodes(&env, ann.id).await[0].0;
    let bob_phone = devices_with_nodes(&env, bob.id).await[0].0;
    // Ann's and Bob's phones were issued 2 h ago; Bob's connected once. Carl's is new.
    age_device(&env, ann_phone, 2).await;
    age_device(&env, bob_phone, 2).await;
    sqlx::query(
        "UPDATE devices SET last_handshake_at = now() - interval '90 minutes' WHERE id = $1",
    )
    .bind(bob_phone)
    .execute(&env.pool)
    .await
    .expect("handshake");

    // No obfuscated region: nothing is chosen (the bot's pass runs this same call).
    let service = Service::new(env.pool.clone(), ServiceSettings::default());
    let none = service
        .choose_blocked_device_nudges(Duration::from_secs(3600))
        .await
        .expect("nudge pass");
    assert_eq!(none, 0);
    env.api
        .expect_silence(ann.id, Duration::from_millis(400))
        .await
        .expect("no nudge without an obfuscated region");
    assert!(notices(&env).await.is_empty());

    add_obfuscated_region(&env).await;
    let nudge = env.api.next_message(ann.id, WAIT).await.expect("the nudge");
    assert!(
        nudge
            .text()
            .starts_with("«phone» (Netherlands) ни разу не подключилось"),
        "{}",
        nudge.text()
    );
    let grant = nudge
        .button_data("🛡 Sweden")
        .expect("a button for the obfuscated region");
    assert_eq!(grant, format!("noname:{AWG_REGION}"));
    assert!(
        nudge.button_data("Отозвать phone").is_some(),
        "{:?}",
        nudge.buttons()
    );

    // Chosen in the same pass as Ann's: Bob (connected) and Carl (too recent) were not.
    let deadline = tokio::time::Instant::now() + WAIT;
    let sent = vec![(
        Some(ann_phone),
        String::from("blocked_device"),
        String::from("sent"),
    )];
    while notices(&env).await != sent {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            notices(&env).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for u in [&bob, &carl] {
        env.api
            .expect_silence(u.id, Duration::from_millis(300))
            .await
            .expect("no nudge");
    }

    // The button grants a device in the obfuscated region, through the usual grant.
    let press = env.api.press_button(&ann, &nudge, &grant).expect("press");
    let delivered = env.delivered(&ann).await;
    env.api
        .callback_answer(&press, WAIT)
        .await
        .expect("answered");
    assert!(
        delivered
            .instructions
            .text()
            .contains(AMNEZIAWG_GOOGLE_PLAY)
    );
    let nodes: Vec<String> = devices_with_nodes(&env, ann.id)
        .await
        .into_iter()
        .map(|(_, node)| node)
        .collect();
    assert_eq!(nodes, [NODE, AWG_NODE]);

    // Once: many passes later, no second nudge for the same device.
    env.api
        .expect_silence(ann.id, Duration::from_millis(600))
        .await
        .expect("one nudge only");
    assert_eq!(notices(&env).await.len(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_reissue_tells_each_user_once_with_reissue_buttons() {
    let env = BotEnv::start(Options {
        notice_interval: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    let (ann, bob, carl) = (user(7201, "en"), user(7202, "ru"), user(7203, "en"));
    for u in [&ann, &bob, &carl] {
        env.say(u, "/start").await;
    }
    env.new_device(&ann, Some("phone")).await;
    env.new_device(&ann, Some("laptop")).await;
    env.new_device(&bob, Some("tablet")).await;

    let url = env.database.url();
    let refused = pvpnctl_bin::fails(url, &["node", "notify-reissue", "nowhere"]);
    assert!(refused.contains("no such node"), "{refused}");
    let out = pvpnctl_bin::ok(url, &["node", "notify-reissue", NODE]);
    assert_eq!(
        out.trim(),
        "2 user(s) will be told by the bot to re-issue their devices on nl-1"
    );

    let notice = env
        .api
        .next_message(ann.id, WAIT)
        .await
        .expect("Ann is told");
    assert!(
        notice.text().starts_with(
            "The server of “phone” (Netherlands), “laptop” (Netherlands) changed its settings"
        ),
        "{}",
        notice.text()
    );
    let told_bob = env
        .api
        .next_message(bob.id, WAIT)
        .await
        .expect("Bob is told");
    assert!(
        told_bob
            .text()
            .starts_with("Сервер для «tablet» (Netherlands) сменил настройки"),
        "{}",
        told_bob.text()
    );
    assert!(told_bob.button_data("Перевыпустить tablet").is_some());

    // The button re-issues through the bot's re-issue path: a new key, a new config.
    let before = env.active_devices(ann.id).await;
    let reissue = notice
        .button_data("Re-issue laptop")
        .expect("re-issue button");
    assert_eq!(reissue, format!("reissue-yes:{}", before[1].0));
    let edited = env.press_edit(&ann, &notice, &reissue).await;
    assert!(
        edited.text().contains("“laptop” has a new key"),
        "{}",
        edited.text()
    );
    env.delivered(&ann).await;
    let after = env.active_devices(ann.id).await;
    assert_eq!(after[0], before[0], "the phone is untouched");
    assert_ne!(after[1].1, before[1].1, "the laptop has a new key");

    // Once each; Carl, with no device on the node, hears nothing.
    for u in [&ann, &bob, &carl] {
        env.api
            .expect_silence(u.id, Duration::from_millis(500))
            .await
            .expect("told once");
    }
    env.stop().await;
}
