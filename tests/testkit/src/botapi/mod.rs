//! A local Telegram Bot API server for tests: the real bot (teloxide) talks HTTP to it exactly as
//! it would to api.telegram.org, through `TELEGRAM_API_URL`.
//!
//! The server answers the methods a polling bot uses (`getMe`, `getWebhookInfo`, `deleteWebhook`,
//! `getUpdates` long poll, `sendMessage`, `sendDocument`, `sendPhoto` with multipart uploads,
//! `editMessageText`, `editMessageReplyMarkup`, `answerCallbackQuery`, `setMyCommands`,
//! `deleteMessage`), method names case-insensitive. It records every request, keeps the messages
//! the bot sent (with later edits) per chat, and lets a test inject messages and button presses
//! and await what the bot does next.
//!
//! Protocol mistakes fail tests instead of passing silently: an injected update that teloxide
//! would not parse (it would drop it with "Cannot parse an update") is refused at injection; a
//! response the server builds that teloxide would not parse, an unsupported method, or an update
//! kind the bot did not ask for is recorded in [`BotApiServer::protocol_errors`], which
//! [`BotApiServer::assert_clean`] checks.

mod http;
mod model;
#[cfg(test)]
mod selftest;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use model::{
    Attachment, BotMessage, CallbackAnswer, ChatEvent, ChatEventKind, RecordedRequest, TgUser,
    UploadedFile,
};

/// The bot's own Telegram user id on the test server.
pub const BOT_USER_ID: i64 = 7_000_000_001;
/// The bot's username on the test server (deep links are `https://t.me/<this>?start=...`).
pub const BOT_USERNAME: &str = "pvpn_test_bot";

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(1)
        .max(1)
}

#[derive(Default)]
struct Inner {
    next_update_id: i64,
    next_message_id: i64,
    next_callback_id: u64,
    /// Updates not yet confirmed by the bot (a `getUpdates` offset above their id).
    pending: VecDeque<Value>,
    messages: HashMap<(i64, i64), BotMessage>,
    events: HashMap<i64, Vec<ChatEvent>>,
    /// How many events of each chat a test already took.
    cursors: HashMap<i64, usize>,
    requests: Vec<RecordedRequest>,
    callback_answers: HashMap<String, CallbackAnswer>,
    protocol_errors: Vec<String>,
}

impl Inner {
    fn next_message_id(&mut self) -> i64 {
        self.next_message_id += 1;
        self.next_message_id
    }

    fn push_event(&mut self, kind: ChatEventKind, message: BotMessage) {
        self.messages
            .insert((message.chat_id, message.message_id), message.clone());
        self.events
            .entry(message.chat_id)
            .or_default()
            .push(ChatEvent { kind, message });
    }
}

struct Shared {
    token: String,
    inner: Mutex<Inner>,
    /// Woken on every change: a new update, a message sent or edited, a callback answered.
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state half-written in a way that matters
        // to a test that is already failing: keep going with the data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, request: RecordedRequest) {
        self.lock().requests.push(request);
        self.changed.notify_waiters();
    }

    fn protocol_error(&self, error: String) {
        self.lock().protocol_errors.push(error);
    }

    fn bot_user() -> Value {
        json!({ "id": BOT_USER_ID, "is_bot": true, "first_name": "PVPN", "username": BOT_USERNAME })
    }

    fn get_me(&self) -> Value {
        let mut me = Self::bot_user();
        for flag in [
            "can_join_groups",
            "can_read_all_group_messages",
            "supports_inline_queries",
            "can_connect_to_business",
            "has_main_web_app",
        ] {
            me[flag] = json!(false);
        }
        me
    }

    /// The `Message` object for `message`, checked against teloxide's own type.
    fn message_json(&self, message: &BotMessage) -> Value {
        let value = message.to_json(&Self::bot_user());
        if let Err(e) = serde_json::from_str::<teloxide::types::Message>(&value.to_string()) {
            self.protocol_error(format!("server built a Message teloxide cannot parse: {e}"));
        }
        value
    }

    /// Runs `check` under the lock until it returns `Some`, waking on every change, for at most
    /// `timeout`.
    async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&mut Inner) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = check(&mut self.lock()) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return check(&mut self.lock());
            }
        }
    }
}

/// The running server; stops when dropped.
pub struct BotApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl BotApiServer {
    /// Starts the server on a free loopback port.
    pub async fn start() -> Result<Self> {
        let token = format!("{BOT_USER_ID}:TEST-{}", crate::unique_suffix());
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), &token).await
    }

    /// Starts the server on `addr` accepting `token`: for a bot that was started before its Bot
    /// API server was reachable.
    pub async fn start_on(addr: SocketAddr, token: &str) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the Bot API test server to {addr}"))?;
        Self::serve(listener, token)
    }

    /// Starts the server on `addr` inside `netns` (e.g. a QEMU guests' bridge address), with a
    /// fresh token: for a bot that runs inside a guest.
    pub fn start_in_netns(netns: &crate::netns::Netns, addr: SocketAddr) -> Result<Self> {
        let token = format!("{BOT_USER_ID}:TEST-{}", crate::unique_suffix());
        let listener = crate::netns_listener::bind_tcp_in(netns, addr)?;
        listener.set_nonblocking(true)?;
        Self::serve(tokio::net::TcpListener::from_std(listener)?, &token)
    }

    fn serve(listener: tokio::net::TcpListener, token: &str) -> Result<Self> {
        let shared = Arc::new(Shared {
            token: token.to_string(),
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
        });
        let addr = listener.local_addr()?;
        let app = http::router(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("Bot API test server stopped: {e}");
            }
        });
        Ok(Self { shared, addr, task })
    }

    /// The base URL to give the bot (`TELEGRAM_API_URL`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The bot token this server accepts (`TELEGRAM_BOT_TOKEN`); other tokens get 401.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Injects an update after checking that teloxide parses it.
    fn inject(&self, kind: &str, payload: Value) -> Result<()> {
        let mut inner = self.shared.lock();
        inner.next_update_id += 1;
        let update = json!({ "update_id": inner.next_update_id, kind: payload });
        // From text, as teloxide reads it (its parser needs borrowed strings).
        let parsed: teloxide::types::Update = serde_json::from_str(&update.to_string())
            .with_context(|| format!("teloxide cannot parse the injected update {update}"))?;
        if let teloxide::types::UpdateKind::Error(_) = parsed.kind {
            // Say why: the part itself, parsed as the type teloxide expects, gives the reason.
            let why = match kind {
                "message" => serde_json::from_value::<teloxide::types::Message>(payload).err(),
                "callback_query" => {
                    serde_json::from_value::<teloxide::types::CallbackQuery>(payload).err()
                }
                _ => None,
            };
            bail!("teloxide would drop the injected {kind} (Cannot parse an update): {why:?}");
        }
        inner.pending.push_back(update);
        drop(inner);
        self.shared.changed.notify_waiters();
        Ok(())
    }

    /// `user` sends `text` in their private chat with the bot. A leading `/command` gets a
    /// `bot_command` entity as Telegram adds. Returns the message id.
    pub fn send_text(&self, user: &TgUser, text: &str) -> Result<i64> {
        let message_id = self.shared.lock().next_message_id();
        let mut message = json!({
            "message_id": message_id,
            "date": now_unix(),
            "chat": user.private_chat_json(),
            "from": user.to_json(),
            "text": text,
        });
        if text.starts_with('/') {
            let command = text.split_whitespace().next().unwrap_or(text);
            message["entities"] = json!([{
                "type": "bot_command", "offset": 0, "length": command.encode_utf16().count()
            }]);
        }
        self.inject("message", message)?;
        Ok(message_id)
    }

    /// `user` presses a button with callback `data` under `message` (the server's current version
    /// of it is attached, as Telegram does). `data` may be anything, to play a forged button.
    /// Returns the callback query id, for [`BotApiServer::callback_answer`].
    pub fn press_button(&self, user: &TgUser, message: &BotMessage, data: &str) -> Result<String> {
        let (current, id) = {
            let mut inner = self.shared.lock();
            inner.next_callback_id += 1;
            let current = inner
                .messages
                .get(&(message.chat_id, message.message_id))
                .cloned()
                .context("pressing a button under a message the bot never sent")?;
            (current, format!("cb{}", inner.next_callback_id))
        };
        let query = json!({
            "id": id,
            "from": user.to_json(),
            "message": current.to_json(&Shared::bot_user()),
            "chat_instance": format!("ci{}", message.chat_id),
            "data": data,
        });
        self.inject("callback_query", query)?;
        Ok(id)
    }

    /// The next thing the bot did in `chat` that this test has not taken yet.
    pub async fn next_event(&self, chat: i64, timeout: Duration) -> Result<ChatEvent> {
        let event = self
            .shared
            .wait_for(timeout, |inner| {
                let taken = inner.cursors.get(&chat).copied().unwrap_or(0);
                let event = inner.events.get(&chat)?.get(taken)?.clone();
                inner.cursors.insert(chat, taken + 1);
                Some(event)
            })
            .await;
        event.with_context(|| format!("the bot did nothing in chat {chat} within {timeout:?}"))
    }

    /// Like [`BotApiServer::next_event`], but the event must be a new message.
    pub async fn next_message(&self, chat: i64, timeout: Duration) -> Result<BotMessage> {
        let event = self.next_event(chat, timeout).await?;
        match event.kind {
            ChatEventKind::Sent => Ok(event.message),
            ChatEventKind::Edited => bail!(
                "expected a new message in chat {chat}, the bot edited message {}: {:?}",
                event.message.message_id,
                event.message.text
            ),
        }
    }

    /// Fails if the bot does anything in `chat` within `quiet`.
    pub async fn expect_silence(&self, chat: i64, quiet: Duration) -> Result<()> {
        match self.next_event(chat, quiet).await {
            Ok(event) => bail!("expected no reply in chat {chat}, got {event:?}"),
            Err(_) => Ok(()),
        }
    }

    /// How the bot answered the button press `callback_id`.
    pub async fn callback_answer(
        &self,
        callback_id: &str,
        timeout: Duration,
    ) -> Result<CallbackAnswer> {
        self.shared
            .wait_for(timeout, |inner| {
                inner.callback_answers.get(callback_id).cloned()
            })
            .await
            .with_context(|| format!("callback query {callback_id} not answered in {timeout:?}"))
    }

    /// Waits until the bot has called `method` (any case) at least `count` times in total.
    pub async fn wait_for_calls(
        &self,
        method: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<()> {
        let method = method.to_ascii_lowercase();
        self.shared
            .wait_for(timeout, |inner| {
                (inner.requests.iter().filter(|r| r.method == method).count() >= count)
                    .then_some(())
            })
            .await
            .with_context(|| format!("the bot did not call {method} {count} times in {timeout:?}"))
    }

    /// Every request the bot made, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Protocol mistakes seen so far (see the module docs).
    pub fn protocol_errors(&self) -> Vec<String> {
        self.shared.lock().protocol_errors.clone()
    }

    /// Fails with the list of protocol mistakes, if any.
    pub fn assert_clean(&self) -> Result<()> {
        let errors = self.protocol_errors();
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("Bot API protocol errors: {errors:#?}")
        }
    }
}

impl Drop for BotApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
