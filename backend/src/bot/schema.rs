//! The handler tree: which endpoint answers which update.
//!
//! ```text
//! message (private chats only)
//!          ┬─ /command we know ─────────────── commands (admin ones: admins only, else "unknown")
//!          ├─ other /command ───────────────── unknown
//!          ├─ text while a device name is due ─ device_flow::receive_name
//!          └─ anything else ─────────────────── unknown (menu, never silence)
//! callback ─── buttons::handle (payload parsed strictly first)
//! ```

use std::sync::Arc;

use teloxide::dispatching::dialogue::InMemStorage;
use teloxide::dispatching::{DpHandlerDescription, UpdateFilterExt};
use teloxide::prelude::*;
use teloxide::types::Me;

use super::commands::{self, Command};
use super::{BotContext, BotError, ChatDialogue, State, TgBot, admin, buttons, device_flow, user};

pub type BotHandler = Handler<'static, Result<(), BotError>, DpHandlerDescription>;

pub fn schema() -> BotHandler {
    // The bot serves people one to one; in a group it would answer everyone's chatter.
    let messages = Update::filter_message()
        .filter(|msg: Message| msg.chat.is_private())
        .enter_dialogue::<Message, InMemStorage<State>, State>()
        .branch(dptree::filter_map(parse_command).endpoint(on_command))
        .branch(dptree::filter(is_slash).endpoint(user::unknown))
        .branch(
            dptree::case![State::AwaitingDeviceName { region }].endpoint(device_flow::receive_name),
        )
        .branch(dptree::endpoint(user::unknown));
    let callbacks = Update::filter_callback_query()
        .enter_dialogue::<CallbackQuery, InMemStorage<State>, State>()
        .endpoint(buttons::handle);
    dptree::entry().branch(messages).branch(callbacks)
}

fn parse_command(msg: Message, me: Me) -> Option<Command> {
    commands::parse(msg.text()?, me.username())
}

/// Any text starting with `/` is meant as a command, never as a device name.
fn is_slash(msg: Message) -> bool {
    msg.text().is_some_and(|t| t.trim_start().starts_with('/'))
}

async fn on_command(
    bot: TgBot,
    msg: Message,
    me: Me,
    ctx: Arc<BotContext>,
    dialogue: ChatDialogue,
    command: Command,
) -> Result<(), BotError> {
    let Some(from) = msg.from.clone() else {
        return Ok(());
    };
    match command {
        Command::Admin(admin_command) => {
            // Non-admins get exactly what any unknown command gets.
            let is_admin = i64::try_from(from.id.0).is_ok_and(|id| ctx.service.is_admin(id));
            if is_admin {
                admin::handle(bot, msg, me, ctx, admin_command).await
            } else {
                user::unknown(bot, msg, ctx, dialogue).await
            }
        }
        Command::Start(payload) => user::start(bot, msg, ctx, dialogue, payload).await,
        Command::Help => user::help(bot, msg, ctx).await,
        Command::Language => user::language(bot, msg).await,
        Command::Menu => user::menu(bot, msg, ctx, dialogue).await,
    }
}
