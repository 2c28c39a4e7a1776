//! The Telegram bot: how users and admins reach the service layer.
//!
//! [`run`] starts it: a teloxide `Bot` pointed at `TELEGRAM_API_URL`, wrapped in the `Throttle`
//! adaptor so Telegram's rate limits queue messages instead of failing them, `deleteWebhook`,
//! then long polling until the shutdown token is cancelled. Everything the handlers need arrives as
//! dptree dependencies ([`BotContext`], the dialogue storage); there are no globals.
//!
//! # Layout
//!
//! - [`schema`]: the handler tree (which update goes to which endpoint).
//! - `user`, `device_flow`, `buttons`, `admin`: the endpoints, thin: parse, call the service,
//!   answer with a text.
//! - [`texts`]: every text the bot sends, in English and Russian.
//! - [`keyboards`], [`callback`]: inline keyboards and their strictly parsed payloads.
//! - [`commands`]: slash-command parsing.
//! - [`rate_limit`]: the per-user limit on actions that create things.
//! - [`config_file`]: the `.conf` file name and the QR code image.
//! - [`notices`]: messages outside a conversation (expiry, never-connected devices, changed
//!   nodes), on a timer.
//!
//! The bot never logs a config or a private key: they exist only inside the
//! [`GrantedDevice`](crate::service::GrantedDevice) on its way into the upload.

mod admin;
mod buttons;
pub mod callback;
pub mod commands;
pub mod config_file;
mod delivery;
mod device_flow;
pub mod keyboards;
pub mod notices;
pub mod rate_limit;
pub mod schema;
pub mod texts;
mod user;

use std::sync::Arc;
use std::time::Duration;

use pvpn_common::RegionCode;
use pvpn_common::backoff::Backoff;
use teloxide::adaptors::Throttle;
use teloxide::adaptors::throttle::Limits;
use teloxide::dispatching::dialogue::{InMemStorage, InMemStorageError};
use teloxide::prelude::*;
use teloxide::types::BotCommand;
use teloxide::update_listeners::Polling;
use tokio_util::sync::CancellationToken;

use crate::service::Service;
use rate_limit::{RateLimit, RateLimiter};

/// The bot as handlers use it: every request goes through the throttling queue.
pub type TgBot = Throttle<Bot>;

/// Where a user is in a conversation. Only the device-name question needs memory; everything
/// else is carried by button payloads, so a restart loses nothing that matters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum State {
    #[default]
    Idle,
    /// The user picked a region and the next text message is the device's name.
    AwaitingDeviceName { region: RegionCode },
}

pub type ChatDialogue = Dialogue<State, InMemStorage<State>>;

/// Back to [`State::Idle`], storing nothing for the chat (so memory does not grow with every
/// user who ever wrote). Closing a dialogue that is already closed is fine.
pub(crate) async fn close_dialogue(dialogue: &ChatDialogue) {
    // In-memory storage fails only with "no dialogue stored", which is the goal here.
    let _ = dialogue.exit().await;
}

/// What can fail in a handler after the service answered: talking to Telegram, or the dialogue
/// storage. Service errors never get here: handlers turn them into messages.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("Telegram request failed: {0}")]
    Telegram(#[from] teloxide::RequestError),
    #[error("dialogue storage: {0}")]
    Dialogue(#[from] InMemStorageError),
}

pub type HandlerResult = Result<(), BotError>;

/// Telegram's limits for a bot that talks only in private chats: about one message per second per
/// chat and 30 per second overall. teloxide's default also caps every non-supergroup chat at 20
/// messages a minute, which is Telegram's limit for *groups*; in a private chat it would make a
/// user who adds a few devices in a row wait half a minute for a config.
pub fn telegram_private_chat_limits() -> Limits {
    Limits {
        messages_per_min_chat: 60,
        ..Limits::default()
    }
}

/// The default of [`BotSettings::blocked_nudge_after`]: long enough that a user who got a config
/// and installs the app later is not told it is blocked.
pub const DEFAULT_BLOCKED_NUDGE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// The bot's settings, from [`crate::config::Config`] (`TELEGRAM_BOT_TOKEN`,
/// `TELEGRAM_API_URL`). Admins and registration mode live in the service settings.
#[derive(Clone)]
pub struct BotSettings {
    pub token: String,
    /// A Bot API server other than api.telegram.org (self-hosted, or a test server).
    pub api_url: Option<url::Url>,
    pub rate_limit: RateLimit,
    /// Telegram's limits by default; tests may loosen them.
    pub throttle: Limits,
    /// How often to look for messages owed outside a conversation: expired access, devices
    /// that never connected, nodes whose configuration changed.
    pub notice_interval: Duration,
    /// How long after it was issued a device that never completed a handshake gets one message
    /// suggesting an obfuscated region (`PVPN_BLOCKED_NUDGE_AFTER_HOURS`, 6 h).
    pub blocked_nudge_after: Duration,
}

impl BotSettings {
    pub fn new(token: String, api_url: Option<url::Url>) -> Self {
        Self {
            token,
            api_url,
            rate_limit: RateLimit::default(),
            throttle: telegram_private_chat_limits(),
            notice_interval: Duration::from_secs(60),
            blocked_nudge_after: DEFAULT_BLOCKED_NUDGE_AFTER,
        }
    }
}

impl std::fmt::Debug for BotSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotSettings")
            .field("token", &"[redacted]")
            .field("api_url", &self.api_url.as_ref().map(url::Url::as_str))
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

/// Shared by every handler (a dptree dependency).
pub struct BotContext {
    pub service: Service,
    pub limiter: RateLimiter,
}

/// Runs the bot until `shutdown` is cancelled. A Telegram or database outage, at start or while
/// running, is logged and retried; the only error is a token the Bot API refuses.
pub async fn run(
    settings: BotSettings,
    service: Service,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut raw = Bot::new(settings.token.clone());
    if let Some(url) = settings.api_url.clone() {
        raw = raw.set_api_url(url);
    }
    let bot = raw.throttle(settings.throttle);
    let context = Arc::new(BotContext {
        service: service.clone(),
        limiter: RateLimiter::new(settings.rate_limit),
    });

    // Until Telegram answers, nothing else can work: wait for it (or for shutdown).
    tokio::select! {
        prepared = prepare(&bot) => prepared?,
        () = shutdown.cancelled() => return Ok(()),
    }

    let mut dispatcher = Dispatcher::builder(bot.clone(), schema::schema())
        .dependencies(dptree::deps![context, InMemStorage::<State>::new()])
        .default_handler(|update| async move {
            tracing::debug!(update_id = update.id.0, "update with no handler");
        })
        .error_handler(LoggingErrorHandler::with_custom_text("bot handler failed"))
        .build();
    let token = dispatcher.shutdown_token();
    // Its own task, stopped between two notices (never between sending one and recording it).
    let stop_notices = shutdown.child_token();
    let notice_settings = notices::NoticeSettings {
        interval: settings.notice_interval,
        blocked_after: settings.blocked_nudge_after,
    };
    let notices = tokio::spawn(notices::run(
        bot.clone(),
        service,
        notice_settings,
        stop_notices.clone(),
    ));
    let dispatch = dispatch_until_stopped(&mut dispatcher, &bot);
    tokio::pin!(dispatch);
    tokio::select! {
        () = &mut dispatch => {}
        () = shutdown.cancelled() => {
            // The dispatcher stops taking updates and finishes the ones in flight. If it was not
            // running (waiting for getMe), dropping the future is the whole shutdown.
            if token.shutdown().is_ok() {
                dispatch.await;
            }
        }
    }
    stop_notices.cancel();
    if let Err(e) = notices.await {
        tracing::error!(error = %e, "the notice task failed");
    }
    tracing::info!("bot stopped");
    Ok(())
}

/// Long polling until the dispatcher is shut down. The dispatcher starts with `getMe`; while the
/// Bot API does not answer it, wait and try again rather than end the bot (and the backend).
async fn dispatch_until_stopped(
    dispatcher: &mut Dispatcher<TgBot, BotError, teloxide::dispatching::DefaultKey>,
    bot: &TgBot,
) {
    let mut backoff = api_backoff();
    loop {
        let listener = Polling::builder(bot.clone())
            .timeout(Duration::from_secs(10))
            .build();
        let result = dispatcher
            .try_dispatch_with_listener(
                listener,
                LoggingErrorHandler::with_custom_text("getting updates failed"),
            )
            .await;
        match result {
            Ok(()) => return,
            Err(e) => {
                let retry = backoff.fail("getMe failed");
                if retry.is_news() {
                    tracing::warn!(error = %e, "getMe failed; retrying with backoff");
                } else {
                    tracing::debug!(error = %e, retry_in = ?retry.delay, "getMe failed again");
                }
                tokio::time::sleep(retry.delay).await;
            }
        }
    }
}

/// `deleteWebhook` (updates come by long polling) and the command list, retried with backoff
/// until the Bot API answers. A refused token is the one error retrying cannot fix.
async fn prepare(bot: &TgBot) -> anyhow::Result<()> {
    let mut backoff = api_backoff();
    loop {
        match bot.delete_webhook().await {
            Ok(_) => {
                if backoff.succeed().is_some() {
                    tracing::info!("the Bot API answers again");
                }
                break;
            }
            Err(teloxide::RequestError::Api(teloxide::ApiError::InvalidToken)) => {
                anyhow::bail!("the Bot API refused TELEGRAM_BOT_TOKEN (Unauthorized)");
            }
            Err(e) => {
                let retry = backoff.fail("deleteWebhook failed");
                if retry.is_news() {
                    tracing::warn!(error = %e, "deleteWebhook failed; retrying with backoff");
                } else {
                    tracing::debug!(error = %e, retry_in = ?retry.delay, "deleteWebhook failed again");
                }
                tokio::time::sleep(retry.delay).await;
            }
        }
    }
    let commands = [
        BotCommand::new("start", "Menu / Меню"),
        BotCommand::new("help", "Help / Помощь"),
        BotCommand::new("language", "Language / Язык"),
    ];
    if let Err(e) = bot.set_my_commands(commands).await {
        tracing::warn!(error = %e, "setMyCommands failed; the command list stays as it was");
    }
    Ok(())
}

/// Retries against the Bot API: from half a second up to 30 s.
fn api_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
}
