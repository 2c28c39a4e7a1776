//! Admin commands through the real bot: from a non-admin they are indistinguishable from unknown
//! commands and do nothing; from an admin they work, validate their arguments, and every action
//! lands in the audit log. Invite links admit users when registration is by invitation.

mod bot_support;

use bot_support::{BotEnv, Options, user};
use pvpn_backend::service::RegistrationMode;
use pvpn_testkit::botapi::BOT_USERNAME;

const ADMIN: i64 = 9001;

async fn audit_actions(env: &BotEnv, actor: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_log WHERE actor = $1 ORDER BY id")
        .bind(actor)
        .fetch_all(&env.pool)
        .await
        .expect("audit query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_from_others_look_like_unknown_ones() {
    let env = BotEnv::start(Options {
        admins: vec![ADMIN],
        ..Options::default()
    })
    .await;
    let eve = user(3101, "en");
    env.say(&eve, "/start").await;
    let unknown = env.say(&eve, "/frobnicate").await;
    assert_eq!(
        unknown.text(),
        "I did not understand that. Here is what I can do:"
    );
    for command in [
        "/status",
        "/admin",
        "/ban 3101",
        "/unban 3101",
        "/user @user3101",
        "/limit 3101 100",
        "/expire 3101 never",
        "/invite",
        "/reconcile nl",
    ] {
        let reply = env.say(&eve, command).await;
        assert_eq!(reply.text(), unknown.text(), "{command}");
        assert_eq!(reply.buttons(), unknown.buttons(), "{command}");
    }
    assert!(audit_actions(&env, "telegram:3101").await.is_empty());
    let limit: i32 = sqlx::query_scalar("SELECT device_limit FROM users WHERE telegram_id = 3101")
        .fetch_one(&env.pool)
        .await
        .expect("user");
    assert_eq!(limit, 3, "nothing changed");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_work_and_are_audited() {
    let env = BotEnv::start(Options {
        admins: vec![ADMIN],
        ..Options::default()
    })
    .await;
    let admin = user(ADMIN, "en");
    let bob = user(3102, "en");
    env.say(&admin, "/start").await;
    env.say(&bob, "/start").await;

    let status = env.say(&admin, "/status").await;
    assert!(
        status.text().starts_with("Users: 2, active devices: 0"),
        "{}",
        status.text()
    );
    assert!(
        status.text().contains("nl-1 (nl, active) 🔴 down"),
        "{}",
        status.text()
    );
    assert!(status.text().contains("revision: applied 0 / published"));
    assert!(
        status
            .text()
            .contains("last reconcile drift: no reconcile yet")
    );

    // What the node's agent reported (as the feedback consumer stores it) shows up.
    sqlx::query(
        "UPDATE nodes SET last_heartbeat_at = now(), applied_revision = 0, peer_count = 4, \
         last_reconcile = $1 WHERE name = 'nl-1'",
    )
    .bind(serde_json::json!({
        "trigger": "periodic", "finished_at": 1_800_000_000, "snapshot_revision": 0,
        "added": 1, "removed": 2, "updated": 0
    }))
    .execute(&env.pool)
    .await
    .expect("heartbeat");
    let status = env.say(&admin, "/status").await;
    assert!(
        status.text().contains("nl-1 (nl, active) 🟢 up"),
        "{}",
        status.text()
    );
    assert!(
        status.text().contains("peers 4, devices 0/50"),
        "{}",
        status.text()
    );
    assert!(
        status.text().contains("last reconcile drift: +1 −2 ~0"),
        "{}",
        status.text()
    );

    let card = env.say(&admin, "/user @user3102").await;
    assert!(
        card.text().starts_with("User 3102 @user3102: active"),
        "{}",
        card.text()
    );
    let limited = env.say(&admin, "/limit @user3102 5").await;
    assert!(limited.text().contains("devices 0/5"), "{}", limited.text());
    let expiring = env.say(&admin, "/expire 3102 2030-01-01").await;
    assert!(
        expiring
            .text()
            .contains("access expires: 2030-01-01 00:00 UTC")
    );
    let banned = env.say(&admin, "/ban @user3102").await;
    assert!(banned.text().starts_with("Banned. Revoked devices: 0."));

    // Bob is banned now: the bot tells him so when he tries to add a device.
    let menu = env.say(&bob, "/menu").await;
    env.api.press_button(&bob, &menu, "new").expect("press");
    let refusal = env
        .api
        .next_message(bob.id, bot_support::WAIT)
        .await
        .expect("reply");
    assert_eq!(
        refusal.text(),
        "Your access is blocked. Contact the administrator if you think this is a mistake."
    );

    assert!(
        env.say(&admin, "/unban 3102")
            .await
            .text()
            .starts_with("Done.")
    );
    let region = env.say(&admin, "/reconcile nl").await;
    assert!(
        region
            .text()
            .starts_with("Reconcile requested for region nl")
    );
    let node = env.say(&admin, "/reconcile nl-1").await;
    assert!(node.text().starts_with("Reconcile requested for node nl-1"));
    assert_eq!(
        env.say(&admin, "/reconcile zz").await.text(),
        "No region or node is called zz."
    );
    let invite = env.say(&admin, "/invite 2 7").await;
    let link_prefix = format!("https://t.me/{BOT_USERNAME}?start=");
    assert!(invite.text().contains(&link_prefix), "{}", invite.text());

    // Bad arguments get the usage line and change nothing.
    for (command, usage) in [
        ("/limit @user3102 many", "Usage: /limit <id|@name> <0-100>"),
        ("/limit @user3102", "Usage: /limit <id|@name> <0-100>"),
        ("/ban", "Usage: /ban <id|@name>"),
        ("/ban @bad-name!", "Usage: /ban <id|@name>"),
        (
            "/expire 3102 soon",
            "Usage: /expire <id|@name> <YYYY-MM-DD|RFC 3339|never>",
        ),
        ("/invite 0 x", "Usage: /invite [uses] [days]"),
        ("/reconcile ../x", "Usage: /reconcile <region|node>"),
    ] {
        assert_eq!(env.say(&admin, command).await.text(), usage, "{command}");
    }
    assert_eq!(
        env.say(&admin, "/user 424242").await.text(),
        "No such user."
    );

    assert_eq!(
        audit_actions(&env, &format!("telegram:{ADMIN}")).await,
        [
            "bot.status",
            "bot.status",
            "bot.user_lookup",
            "user.set_limit",
            "user.set_expiry",
            "user.ban",
            "user.unban",
            "reconcile.request",
            "reconcile.request",
            "invite.create",
        ]
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_links_admit_users() {
    let env = BotEnv::start(Options {
        admins: vec![ADMIN],
        registration: RegistrationMode::Invite,
        ..Options::default()
    })
    .await;
    let admin = user(ADMIN, "en");
    env.say(&admin, "/start").await;
    let invite = env.say(&admin, "/invite").await;
    let link_prefix = format!("https://t.me/{BOT_USERNAME}?start=");
    let code = invite
        .text()
        .split(&link_prefix)
        .nth(1)
        .expect("a deep link")
        .trim()
        .to_string();

    let carol = user(3103, "en");
    assert_eq!(
        env.say(&carol, "/start").await.text(),
        "Registration is by invitation only. Open the invite link you were given."
    );
    assert_eq!(
        env.say(&carol, "/start wrongcode123").await.text(),
        "This invite link is not valid: it is used up, expired or mistyped."
    );
    let welcome = env.say(&carol, &format!("/start {code}")).await;
    assert!(
        welcome.text().starts_with("Hello, Ann!"),
        "{}",
        welcome.text()
    );
    // One use only: the next person is refused.
    let dave = user(3104, "en");
    assert!(
        env.say(&dave, &format!("/start {code}"))
            .await
            .text()
            .starts_with("This invite link is not valid")
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_registration_admits_only_admins() {
    let env = BotEnv::start(Options {
        admins: vec![ADMIN],
        registration: RegistrationMode::Closed,
        ..Options::default()
    })
    .await;
    let erin = user(3105, "ru");
    assert_eq!(
        env.say(&erin, "/start").await.text(),
        "Регистрация закрыта. Обратитесь к администратору за доступом."
    );
    let admin = user(ADMIN, "en");
    assert!(
        env.say(&admin, "/start")
            .await
            .text()
            .starts_with("Hello, Ann!")
    );
    env.stop().await;
}
