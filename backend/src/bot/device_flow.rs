//! "New device": region picker → device name → config. Also the refusal message every flow
//! uses when the service says no.

use std::sync::Arc;
use std::time::Instant;

use pvpn_common::{DeviceName, RegionCode};
use teloxide::prelude::*;
use teloxide::types::MessageId;

use super::delivery::{send_config, show};
use super::texts::Texts;
use super::user::{language_of, telegram_id};
use super::{BotContext, ChatDialogue, HandlerResult, State, TgBot, keyboards};
use crate::service::{RegionStatus, RegionView, ServiceError, UserStatus};

/// Tells the user why the service refused, with the menu to go on from.
pub(super) async fn refuse(
    bot: &TgBot,
    chat: ChatId,
    t: Texts,
    err: &ServiceError,
) -> HandlerResult {
    if matches!(err, ServiceError::Unavailable(_)) {
        tracing::warn!(error = %err, "service unavailable");
    }
    bot.send_message(chat, t.service_error(err))
        .reply_markup(keyboards::main_menu(t))
        .await?;
    Ok(())
}

/// Regions a user may pick: active ones with a node, full ones included (marked).
fn offered(regions: Vec<RegionView>) -> Vec<RegionView> {
    regions
        .into_iter()
        .filter(|r| r.status == RegionStatus::Active && r.active_nodes > 0)
        .collect()
}

/// Shows the region picker, or says right away why no device can be added.
pub(super) async fn show_regions(
    bot: &TgBot,
    ctx: &BotContext,
    chat: ChatId,
    at: Option<MessageId>,
    user_id: i64,
    t: Texts,
) -> HandlerResult {
    let user = match ctx.service.get_user(user_id).await {
        Ok(u) => u,
        Err(e) => return refuse(bot, chat, t, &e).await,
    };
    let early = if user.status == UserStatus::Banned {
        Some(ServiceError::Banned)
    } else if user.is_expired(chrono::Utc::now()) {
        Some(ServiceError::AccessExpired)
    } else if user.active_devices >= user.device_limit {
        Some(ServiceError::DeviceLimitReached {
            limit: user.device_limit,
        })
    } else {
        None
    };
    if let Some(e) = early {
        return refuse(bot, chat, t, &e).await;
    }
    let regions = match ctx.service.list_regions().await {
        Ok(r) => offered(r),
        Err(e) => return refuse(bot, chat, t, &e).await,
    };
    if regions.is_empty() {
        return show(bot, chat, at, t.no_regions(), keyboards::back_to_menu(t)).await;
    }
    let mut text = t.choose_region();
    if regions.iter().any(RegionView::is_obfuscated) {
        text = format!("{text}\n\n{}", t.obfuscated_legend());
    }
    show(bot, chat, at, text, keyboards::regions(t, &regions)).await
}

/// A region button: remember the region and ask for a name.
#[allow(clippy::too_many_arguments)]
pub(super) async fn pick_region(
    bot: &TgBot,
    ctx: &BotContext,
    dialogue: &ChatDialogue,
    chat: ChatId,
    at: Option<MessageId>,
    t: Texts,
    code: RegionCode,
) -> HandlerResult {
    let regions = match ctx.service.list_regions().await {
        Ok(r) => r,
        Err(e) => return refuse(bot, chat, t, &e).await,
    };
    let refusal = match regions.iter().find(|r| r.code == code) {
        None => Some(ServiceError::RegionNotFound),
        Some(r) if r.status != RegionStatus::Active || r.active_nodes == 0 => {
            Some(ServiceError::RegionUnavailable)
        }
        Some(r) if !r.accepts_new_devices() => Some(ServiceError::RegionFull),
        Some(region) => {
            dialogue
                .update(State::AwaitingDeviceName {
                    region: code.clone(),
                })
                .await?;
            let text = t.ask_device_name(&region.display_name);
            return show(bot, chat, at, text, keyboards::skip_name(t, region)).await;
        }
    };
    match refusal {
        Some(e) => refuse(bot, chat, t, &e).await,
        None => Ok(()),
    }
}

/// The text message answering "how should the device be called?".
pub(super) async fn receive_name(
    bot: TgBot,
    msg: Message,
    ctx: Arc<BotContext>,
    dialogue: ChatDialogue,
    region: RegionCode,
) -> HandlerResult {
    let Some(from) = msg.from.as_ref() else {
        return Ok(());
    };
    let t = Texts::new(language_of(&ctx, Some(from)).await);
    let name = match DeviceName::new(msg.text().unwrap_or("")) {
        Ok(name) => name,
        Err(why) => {
            bot.send_message(msg.chat.id, t.bad_device_name(&why))
                .await?;
            return Ok(());
        }
    };
    let name = name.as_str();
    grant(
        &bot,
        &ctx,
        &dialogue,
        msg.chat.id,
        telegram_id(from),
        t,
        region,
        Some(name),
    )
    .await
}

/// Grants the device and sends its config, after the rate limit.
#[allow(clippy::too_many_arguments)]
pub(super) async fn grant(
    bot: &TgBot,
    ctx: &BotContext,
    dialogue: &ChatDialogue,
    chat: ChatId,
    user_id: i64,
    t: Texts,
    region: RegionCode,
    name: Option<&str>,
) -> HandlerResult {
    if let Err(wait) = ctx.limiter.try_acquire(user_id, Instant::now()) {
        tracing::info!(user_id, "grant refused by the rate limit");
        bot.send_message(chat, t.rate_limited(wait)).await?;
        return Ok(());
    }
    match ctx.service.grant_device(user_id, &region, name).await {
        Ok(granted) => {
            super::close_dialogue(dialogue).await;
            send_config(bot, chat, t, &ctx.service, granted).await
        }
        // Keep the question open: once the database is back, sending the name again works.
        Err(e @ ServiceError::Unavailable(_)) => refuse(bot, chat, t, &e).await,
        Err(e) => {
            super::close_dialogue(dialogue).await;
            refuse(bot, chat, t, &e).await
        }
    }
}
