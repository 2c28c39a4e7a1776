//! Button presses: the payload is parsed strictly, then one small function per action. A payload
//! that does not parse, or names a device that is not the presser's, changes nothing and the
//! press is answered with an alert saying so.

use std::sync::Arc;
use std::time::Instant;

use teloxide::prelude::*;
use teloxide::types::MessageId;

use super::callback::CallbackAction;
use super::delivery::{send_config, show};
use super::device_flow::{grant, pick_region, refuse, show_regions};
use super::texts::Texts;
use super::user::{language_of, telegram_id};
use super::{BotContext, ChatDialogue, HandlerResult, TgBot, keyboards};
use crate::service::ServiceError;

/// Telegram's limit on a message text, in characters.
const MAX_TEXT: usize = 4096;

/// Where the pressed button is: the chat, and the message if it can still be edited.
struct Place {
    chat: ChatId,
    message: Option<MessageId>,
}

pub(super) async fn handle(
    bot: TgBot,
    q: CallbackQuery,
    ctx: Arc<BotContext>,
    dialogue: ChatDialogue,
) -> HandlerResult {
    let user_id = telegram_id(&q.from);
    let t = Texts::new(language_of(&ctx, Some(&q.from)).await);
    let action = match q.data.as_deref().unwrap_or("").parse::<CallbackAction>() {
        Ok(action) => action,
        Err(e) => {
            tracing::info!(user_id, error = %e, "refused a button payload");
            bot.answer_callback_query(q.id.clone())
                .text(t.invalid_button())
                .show_alert(true)
                .await?;
            return Ok(());
        }
    };
    let place = Place {
        chat: q.message.as_ref().map_or(ChatId(user_id), |m| m.chat().id),
        message: q.regular_message().map(|m| m.id),
    };
    let alert = act(&bot, &ctx, &dialogue, &place, user_id, t, action).await?;
    let mut answer = bot.answer_callback_query(q.id.clone());
    if let Some(text) = alert {
        answer = answer.text(text).show_alert(true);
    }
    answer.await?;
    Ok(())
}

/// Does what the button asks. Returns an alert text for the press, if any.
async fn act(
    bot: &TgBot,
    ctx: &BotContext,
    dialogue: &ChatDialogue,
    place: &Place,
    user_id: i64,
    t: Texts,
    action: CallbackAction,
) -> Result<Option<String>, super::BotError> {
    let (chat, at) = (place.chat, place.message);
    // Only the region button opens the device-name question; any other press closes it, so a
    // later text is not taken for a name.
    if !matches!(action, CallbackAction::PickRegion(_)) {
        super::close_dialogue(dialogue).await;
    }
    match action {
        CallbackAction::Menu => {
            show(bot, chat, at, t.menu(), keyboards::main_menu(t)).await?;
        }
        CallbackAction::Help => {
            show(bot, chat, at, t.help(), keyboards::back_to_menu(t)).await?;
        }
        CallbackAction::LanguageMenu => {
            show(bot, chat, at, t.choose_language(), keyboards::languages()).await?;
        }
        CallbackAction::SetLanguage(lang) => match ctx.service.set_language(user_id, lang).await {
            Ok(_) => {
                let t = Texts::new(lang);
                let text = format!("{}\n{}", t.language_set(), t.menu());
                show(bot, chat, at, text, keyboards::main_menu(t)).await?;
            }
            Err(e) => refuse(bot, chat, t, &e).await?,
        },
        CallbackAction::NewDevice => show_regions(bot, ctx, chat, at, user_id, t).await?,
        CallbackAction::PickRegion(code) => {
            pick_region(bot, ctx, dialogue, chat, at, t, code).await?;
        }
        CallbackAction::SkipName(code) => {
            grant(bot, ctx, dialogue, chat, user_id, t, code, None).await?;
        }
        CallbackAction::Devices => list_devices(bot, ctx, chat, at, user_id, t).await?,
        CallbackAction::AskRevoke(id) | CallbackAction::AskReissue(id) => {
            let device = match ctx.service.get_device(user_id, id).await {
                Ok(d) => d,
                Err(e) => return stale_or_refuse(bot, chat, t, e).await,
            };
            let (text, keyboard) = if matches!(action, CallbackAction::AskRevoke(_)) {
                (t.confirm_revoke(&device), keyboards::confirm_revoke(t, id))
            } else {
                (
                    t.confirm_reissue(&device),
                    keyboards::confirm_reissue(t, id),
                )
            };
            show(bot, chat, at, text, keyboard).await?;
        }
        CallbackAction::ConfirmRevoke(id) => match ctx.service.revoke_device(user_id, id).await {
            Ok(device) => {
                show(
                    bot,
                    chat,
                    at,
                    t.revoked(&device),
                    keyboards::back_to_menu(t),
                )
                .await?;
            }
            Err(e) => return stale_or_refuse(bot, chat, t, e).await,
        },
        CallbackAction::ConfirmReissue(id) => {
            if let Err(wait) = ctx.limiter.try_acquire(user_id, Instant::now()) {
                tracing::info!(user_id, "re-issue refused by the rate limit");
                return Ok(Some(t.rate_limited(wait)));
            }
            match ctx.service.reissue_device(user_id, id).await {
                Ok(granted) => {
                    let text = t.reissued(&granted.device);
                    show(bot, chat, at, text, keyboards::back_to_menu(t)).await?;
                    send_config(bot, chat, t, &ctx.service, granted).await?;
                }
                Err(e) => return stale_or_refuse(bot, chat, t, e).await,
            }
        }
    }
    Ok(None)
}

/// A device that is not (or no longer) the presser's is an alert on the press; anything else is
/// a message like every other refusal.
async fn stale_or_refuse(
    bot: &TgBot,
    chat: ChatId,
    t: Texts,
    err: ServiceError,
) -> Result<Option<String>, super::BotError> {
    if err == ServiceError::DeviceNotFound {
        return Ok(Some(t.stale_button()));
    }
    refuse(bot, chat, t, &err).await?;
    Ok(None)
}

async fn list_devices(
    bot: &TgBot,
    ctx: &BotContext,
    chat: ChatId,
    at: Option<MessageId>,
    user_id: i64,
    t: Texts,
) -> HandlerResult {
    let (user, devices) = match (
        ctx.service.get_user(user_id).await,
        ctx.service.list_devices(user_id).await,
    ) {
        (Ok(u), Ok(d)) => (u, d),
        (Err(e), _) | (_, Err(e)) => return refuse(bot, chat, t, &e).await,
    };
    if devices.is_empty() {
        return show(bot, chat, at, t.no_devices(), keyboards::main_menu(t)).await;
    }
    let now = chrono::Utc::now();
    let mut text = t.devices_header(devices.len(), user.device_limit);
    for device in &devices {
        let line = t.device_line(device, now);
        // Telegram refuses texts over 4096 characters; the buttons still list every device.
        if text.chars().count() + line.chars().count() + 4 > MAX_TEXT {
            text.push_str("\n\n…");
            break;
        }
        text.push_str("\n\n");
        text.push_str(&line);
    }
    show(bot, chat, at, text, keyboards::devices(t, &devices)).await
}
