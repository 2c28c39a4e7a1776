//! Both languages render: a Russian-speaking user is greeted and served in Russian, switches to
//! English with /language, and the choice sticks. This test keeps Telegram's real throttling
//! limits (one message per second per chat), as production does.

mod bot_support;

use bot_support::{BotEnv, Options, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn russian_then_english() {
    let env = BotEnv::start(Options {
        telegram_throttle: true,
        ..Options::default()
    })
    .await;
    let ivan = user(4001, "ru");

    let welcome = env.say(&ivan, "/start").await;
    assert!(
        welcome.text().starts_with("Здравствуйте, Ann! Это PVPN"),
        "{}",
        welcome.text()
    );
    let labels: Vec<String> = welcome.buttons().into_iter().map(|(l, _)| l).collect();
    assert_eq!(
        labels,
        [
            "➕ Новое устройство",
            "📱 Мои устройства",
            "🌐 Язык",
            "❓ Помощь"
        ]
    );
    let regions = env.press_edit(&ivan, &welcome, "new").await;
    assert_eq!(regions.text(), "Выберите регион для нового устройства:");
    assert!(regions.button_data("Netherlands · загрузка 0%").is_some());
    let help = env.say(&ivan, "/help").await;
    assert!(
        help.text()
            .starts_with("PVPN выдаёт конфигурации WireGuard.")
    );

    let picker = env.say(&ivan, "/language").await;
    assert_eq!(picker.text(), "Choose a language: / Выберите язык:");
    let english = picker.button_data("English").expect("English button");
    let switched = env.press_edit(&ivan, &picker, &english).await;
    assert_eq!(switched.text(), "Language: English.\nMain menu:");
    assert!(switched.button_data("New device").is_some());

    // Telegram still says "ru"; the stored choice wins from now on.
    let help = env.say(&ivan, "/help").await;
    assert!(help.text().starts_with("PVPN gives you WireGuard configs."));
    let russian = picker.button_data("Русский").expect("Russian button");
    let back = env.press_edit(&ivan, &switched, &russian).await;
    assert_eq!(back.text(), "Язык: русский.\nГлавное меню:");
    env.stop().await;
}
