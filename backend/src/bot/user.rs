//! Endpoints for everyone: `/start` (registration), the menu, `/help`, `/language`, and the
//! answer to anything the bot does not understand.

use std::sync::Arc;

use teloxide::prelude::*;

use super::texts::Texts;
use super::{BotContext, ChatDialogue, HandlerResult, TgBot, keyboards};
use crate::service::Language;

/// A Telegram user id as the service layer takes it. Telegram ids fit in 52 bits.
pub(super) fn telegram_id(user: &teloxide::types::User) -> i64 {
    i64::try_from(user.id.0).unwrap_or(i64::MAX)
}

/// The language to answer `user` in: the stored choice, else their Telegram client's language
/// (also when the database cannot be asked).
pub(super) async fn language_of(
    ctx: &BotContext,
    user: Option<&teloxide::types::User>,
) -> Language {
    let Some(user) = user else {
        return Language::En;
    };
    match ctx.service.get_user(telegram_id(user)).await {
        Ok(u) => u.language,
        Err(_) => Language::from_telegram(user.language_code.as_deref()),
    }
}

pub(super) async fn start(
    bot: TgBot,
    msg: Message,
    ctx: Arc<BotContext>,
    dialogue: ChatDialogue,
    invite: Option<String>,
) -> HandlerResult {
    super::close_dialogue(&dialogue).await;
    let Some(from) = msg.from.as_ref() else {
        return Ok(());
    };
    let telegram_lang = Language::from_telegram(from.language_code.as_deref());
    let result = ctx
        .service
        .register_user(
            telegram_id(from),
            from.username.as_deref(),
            telegram_lang,
            invite.as_deref(),
        )
        .await;
    match result {
        Ok(registration) => {
            let t = Texts::new(registration.user.language);
            bot.send_message(msg.chat.id, t.welcome(&from.first_name))
                .reply_markup(keyboards::main_menu(t))
                .await?;
        }
        Err(e) => {
            bot.send_message(msg.chat.id, Texts::new(telegram_lang).service_error(&e))
                .await?;
        }
    }
    Ok(())
}

pub(super) async fn menu(
    bot: TgBot,
    msg: Message,
    ctx: Arc<BotContext>,
    dialogue: ChatDialogue,
) -> HandlerResult {
    super::close_dialogue(&dialogue).await;
    let t = Texts::new(language_of(&ctx, msg.from.as_ref()).await);
    bot.send_message(msg.chat.id, t.menu())
        .reply_markup(keyboards::main_menu(t))
        .await?;
    Ok(())
}

pub(super) async fn help(bot: TgBot, msg: Message, ctx: Arc<BotContext>) -> HandlerResult {
    let t = Texts::new(language_of(&ctx, msg.from.as_ref()).await);
    bot.send_message(msg.chat.id, t.help())
        .reply_markup(keyboards::back_to_menu(t))
        .await?;
    Ok(())
}

/// Both languages' names are shown in themselves, so the prompt needs no language.
pub(super) async fn language(bot: TgBot, msg: Message) -> HandlerResult {
    let prompt = format!(
        "{} / {}",
        Texts::new(Language::En).choose_language(),
        Texts::new(Language::Ru).choose_language()
    );
    bot.send_message(msg.chat.id, prompt)
        .reply_markup(keyboards::languages())
        .await?;
    Ok(())
}

/// Anything the bot does not understand, including admin commands from non-admins: the menu.
pub(super) async fn unknown(
    bot: TgBot,
    msg: Message,
    ctx: Arc<BotContext>,
    dialogue: ChatDialogue,
) -> HandlerResult {
    super::close_dialogue(&dialogue).await;
    let t = Texts::new(language_of(&ctx, msg.from.as_ref()).await);
    bot.send_message(msg.chat.id, t.unknown())
        .reply_markup(keyboards::main_menu(t))
        .await?;
    Ok(())
}
