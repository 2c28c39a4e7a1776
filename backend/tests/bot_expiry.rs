//! Access expiry through the real bot: once the expiry scheduler revoked a user's devices, the
//! bot tells them (once, in their language), and adding a device says access expired.

mod bot_support;

use std::time::Duration;

use bot_support::{BotEnv, Options, WAIT, user};
use pvpn_backend::service::{Service, ServiceSettings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_users_are_told_once_and_refused() {
    let env = BotEnv::start(Options {
        notice_interval: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    let olga = user(5001, "ru");
    env.say(&olga, "/start").await;
    env.new_device(&olga, Some("phone")).await;

    sqlx::query(
        "UPDATE users SET access_expires_at = now() - interval '1 minute' WHERE telegram_id = $1",
    )
    .bind(olga.id)
    .execute(&env.pool)
    .await
    .expect("expire");
    // What the backend's expiry scheduler does on its next tick.
    let scheduler = Service::new(env.pool.clone(), ServiceSettings::default());
    assert_eq!(scheduler.expire_due_access().await.expect("expiry pass"), 1);

    let notice = env.api.next_message(olga.id, WAIT).await.expect("notice");
    assert_eq!(
        notice.text(),
        "Срок вашего доступа истёк, устройства отключены. Обратитесь к администратору, чтобы продлить его."
    );
    assert!(env.active_devices(olga.id).await.is_empty());

    let menu = env.say(&olga, "/menu").await;
    env.api.press_button(&olga, &menu, "new").expect("press");
    let refusal = env.api.next_message(olga.id, WAIT).await.expect("refusal");
    assert_eq!(
        refusal.text(),
        "Срок вашего доступа истёк. Обратитесь к администратору, чтобы продлить его."
    );
    // Told once: no second notice on later ticks.
    env.api
        .expect_silence(olga.id, Duration::from_millis(500))
        .await
        .expect("one notice only");
    env.stop().await;
}
