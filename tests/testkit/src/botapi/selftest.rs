//! The server against the real teloxide client: every method the bot uses round-trips, uploads
//! arrive byte for byte (from memory and, chunked, from disk), and a polling dispatcher receives
//! injected messages and button presses.

use std::time::Duration;

use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup, InputFile};

use super::*;

const WAIT: Duration = Duration::from_secs(10);

fn bot(server: &BotApiServer) -> Bot {
    Bot::new(server.token()).set_api_url(url::Url::parse(&server.url()).unwrap())
}

#[tokio::test]
async fn methods_round_trip_through_teloxide() {
    let server = BotApiServer::start().await.unwrap();
    let bot = bot(&server);
    let me = bot.get_me().await.unwrap();
    assert_eq!(me.username(), BOT_USERNAME);
    bot.delete_webhook().await.unwrap();

    let keyboard = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Go", "go:1")]]);
    let sent = bot
        .send_message(ChatId(42), "hello")
        .reply_markup(keyboard)
        .await
        .unwrap();
    let seen = server.next_message(42, WAIT).await.unwrap();
    assert_eq!(seen.text(), "hello");
    assert_eq!(seen.message_id, sent.id.0 as i64);
    assert_eq!(seen.buttons(), vec![("Go".to_string(), "go:1".to_string())]);

    bot.edit_message_text(ChatId(42), sent.id, "edited")
        .await
        .unwrap();
    let edit = server.next_event(42, WAIT).await.unwrap();
    assert_eq!(edit.kind, ChatEventKind::Edited);
    assert_eq!(edit.message.text(), "edited");
    assert!(
        edit.message.buttons().is_empty(),
        "edit without markup drops the keyboard"
    );
    // Telegram refuses an edit that changes nothing; so does the server.
    assert!(
        bot.edit_message_text(ChatId(42), sent.id, "edited")
            .await
            .is_err()
    );

    let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    bot.send_document(
        ChatId(42),
        InputFile::memory(bytes.clone()).file_name("a b.conf"),
    )
    .caption("doc")
    .await
    .unwrap();
    let doc = server.next_message(42, WAIT).await.unwrap();
    let file = doc.document().unwrap();
    assert_eq!(file.file_name.as_deref(), Some("a b.conf"));
    assert_eq!(file.bytes, bytes);
    assert_eq!(doc.text(), "doc");

    let dir = std::env::temp_dir().join(format!("pvpn-botapi-{}", crate::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("qr.png");
    std::fs::write(&path, &bytes).unwrap();
    bot.send_photo(ChatId(42), InputFile::file(&path))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let photo = server.next_message(42, WAIT).await.unwrap();
    assert_eq!(photo.photo().unwrap().bytes, bytes);

    let wrong = Bot::new("1:wrong").set_api_url(url::Url::parse(&server.url()).unwrap());
    assert!(wrong.get_me().await.is_err(), "a wrong token is refused");
    server.assert_clean().unwrap();
}

#[tokio::test]
async fn polling_dispatcher_receives_messages_and_presses() {
    let server = BotApiServer::start().await.unwrap();
    let bot = bot(&server);
    let handler = dptree::entry()
        .branch(
            Update::filter_message().endpoint(|bot: Bot, msg: Message| async move {
                let lang = msg
                    .from
                    .as_ref()
                    .and_then(|u| u.language_code.clone())
                    .unwrap_or_default();
                let keyboard =
                    InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Press", "p")]]);
                bot.send_message(
                    msg.chat.id,
                    format!("got {} ({lang})", msg.text().unwrap_or("")),
                )
                .reply_markup(keyboard)
                .await?;
                respond(())
            }),
        )
        .branch(Update::filter_callback_query().endpoint(
            |bot: Bot, q: CallbackQuery| async move {
                bot.answer_callback_query(q.id.clone())
                    .text(q.data.unwrap_or_default())
                    .await?;
                respond(())
            },
        ));
    let mut dispatcher = Dispatcher::builder(bot, handler).build();
    let shutdown = dispatcher.shutdown_token();
    let running = tokio::spawn(async move { dispatcher.dispatch().await });

    let user = TgUser::new(1001, "Ann", Some("ann"), Some("ru"));
    server.send_text(&user, "/start abc").unwrap();
    let reply = server.next_message(1001, WAIT).await.unwrap();
    assert_eq!(reply.text(), "got /start abc (ru)");

    let id = server.press_button(&user, &reply, "forged:1").unwrap();
    let answer = server.callback_answer(&id, WAIT).await.unwrap();
    assert_eq!(answer.text.as_deref(), Some("forged:1"));

    let methods: Vec<String> = server.requests().into_iter().map(|r| r.method).collect();
    assert!(methods.contains(&"getupdates".to_string()), "{methods:?}");
    server.assert_clean().unwrap();
    if let Ok(stopping) = shutdown.shutdown() {
        stopping.await;
    }
    running.await.unwrap();
}

#[tokio::test]
async fn injected_updates_that_teloxide_cannot_parse_are_refused() {
    let server = BotApiServer::start().await.unwrap();
    // A message without a chat would be dropped by teloxide with "Cannot parse an update".
    assert!(
        server
            .inject("message", json!({"message_id": 1, "date": 1, "text": "x"}))
            .is_err()
    );
}
