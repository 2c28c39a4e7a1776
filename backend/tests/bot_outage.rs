//! The database goes away in the middle of a conversation: the bot says "temporarily
//! unavailable" (not silence, not a crash), and once the database is back the same conversation
//! goes on to a config.

mod bot_support;

use bot_support::{BotEnv, Options, REGION_NAME, WAIT, user};

const UNAVAILABLE: &str = "The service is temporarily unavailable. Please try again in a minute.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_mid_conversation_then_recovery() {
    let env = BotEnv::start(Options::default()).await;
    let ann = user(3001, "en");
    env.say(&ann, "/start").await;
    let menu = env.say(&ann, "/menu").await;
    let regions = env.press_edit(&ann, &menu, "new").await;
    let region = regions.button_data(REGION_NAME).expect("region");
    env.press_edit(&ann, &regions, &region).await;

    // The bot asked for the device name; now the database is gone.
    env.proxy.cut();
    let reply = env.say(&ann, "phone").await;
    assert_eq!(reply.text(), UNAVAILABLE);
    assert!(
        reply.button_data("New device").is_some(),
        "the menu stays at hand"
    );

    // Commands and buttons get the same answer, for as long as it lasts.
    let other = user(3002, "en");
    let refused = env.say(&other, "/start").await;
    assert_eq!(refused.text(), UNAVAILABLE);
    env.api
        .press_button(&other, &refused, "devices")
        .expect("press");
    let reply = env.api.next_message(other.id, WAIT).await.expect("reply");
    assert_eq!(reply.text(), UNAVAILABLE);
    assert!(env.active_devices(ann.id).await.is_empty());

    // Back: the question is still open, the same answer now gets the config.
    env.proxy.restore();
    env.api.send_text(&ann, "phone").expect("name again");
    let delivered = env.delivered(&ann).await;
    assert_eq!(
        delivered.document.document().unwrap().file_name.as_deref(),
        Some("nl-phone.conf")
    );
    assert_eq!(env.active_devices(ann.id).await.len(), 1);
    assert!(
        env.say(&other, "/start")
            .await
            .text()
            .starts_with("Hello, Ann!")
    );
    env.stop().await;
}
