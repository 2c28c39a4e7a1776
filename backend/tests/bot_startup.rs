//! Starting the bot when the Bot API is not there yet, or refuses the token.

mod bot_support;

use std::time::Duration;

use bot_support::{WAIT, user};
use pvpn_backend::bot::{self, BotSettings};
use pvpn_backend::service::{Service, ServiceSettings};
use pvpn_testkit::botapi::BotApiServer;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

/// A service whose database is never reached in these tests.
fn service_without_database() -> Service {
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .expect("lazy pool");
    Service::new(pool, ServiceSettings::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stops_the_bot_with_a_clear_error() {
    let api = BotApiServer::start().await.expect("Bot API server");
    let settings = BotSettings::new(
        "1:not-the-token".into(),
        Some(api.url().parse().expect("url")),
    );
    let ran = tokio::time::timeout(
        WAIT,
        bot::run(
            settings,
            service_without_database(),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("run returns");
    let error = format!("{:#}", ran.expect_err("a refused token is an error"));
    assert!(error.contains("TELEGRAM_BOT_TOKEN"), "{error}");
    assert!(
        !error.contains("not-the-token"),
        "the token is not shown: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_waits_for_an_unreachable_bot_api() {
    // A loopback port with nothing behind it (yet).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let token = "7000000001:TEST-late";
    let settings = BotSettings::new(
        token.into(),
        Some(format!("http://{addr}/").parse().expect("url")),
    );
    let stop = CancellationToken::new();
    let bot = tokio::spawn(bot::run(settings, service_without_database(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!bot.is_finished(), "the bot keeps trying");

    let api = BotApiServer::start_on(addr, token)
        .await
        .expect("Bot API server, late");
    api.wait_for_calls("getUpdates", 1, WAIT)
        .await
        .expect("the bot reaches the server once it is up and starts polling");
    // It answers, too (the database is unreachable here, so that is what it says).
    let ann = user(7001, "en");
    api.send_text(&ann, "/start").expect("message");
    let reply = api.next_message(ann.id, WAIT).await.expect("reply");
    assert_eq!(
        reply.text(),
        "The service is temporarily unavailable. Please try again in a minute."
    );
    stop.cancel();
    tokio::time::timeout(WAIT, bot)
        .await
        .expect("stops")
        .expect("task")
        .expect("run returns Ok");
    api.assert_clean().expect("clean exchange");
}
