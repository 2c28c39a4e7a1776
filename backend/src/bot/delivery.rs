//! Sending things to users: a fresh config (document + QR code + instructions, for the app its
//! node's protocol needs) and "screens" that replace the message a button was pressed on.

use pvpn_common::obfuscation::Protocol;
use teloxide::ApiError;
use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardMarkup, InputFile, MessageId};

use super::config_file::{NamedDevice, config_file_name, qr_png};
use super::texts::Texts;
use super::{HandlerResult, TgBot, keyboards};
use crate::service::{DeviceView, GrantedDevice, Service};

/// Sends a just granted or re-issued config: the `.conf` document, the same text as a QR code,
/// and how to import it. The config exists only in this function's memory and the uploads.
pub(super) async fn send_config(
    bot: &TgBot,
    chat: ChatId,
    t: Texts,
    service: &Service,
    granted: GrantedDevice,
) -> HandlerResult {
    let file_name = file_name_among_siblings(service, chat, &granted.device).await;
    let GrantedDevice { device, config } = granted;
    // An AmneziaWG config opens only in the AmneziaVPN and AmneziaWG apps: say so, with links.
    let (caption, qr_caption, instructions) = match device.protocol {
        Protocol::WireGuard => (t.config_caption(&device), t.qr_caption(), t.instructions()),
        Protocol::AmneziaWg => (
            t.awg_config_caption(&device),
            t.awg_qr_caption(),
            t.awg_instructions(),
        ),
    };
    let text = config.expose();
    let file = InputFile::memory(text.as_bytes().to_vec()).file_name(file_name);
    bot.send_document(chat, file).caption(caption).await?;
    match qr_png(text) {
        Ok(png) => {
            bot.send_photo(chat, InputFile::memory(png).file_name("config-qr.png"))
                .caption(qr_caption)
                .await?;
        }
        Err(e) => {
            tracing::warn!(device_id = device.id, error = %e, "no QR code for a config");
            bot.send_message(chat, t.qr_failed()).await?;
        }
    }
    bot.send_message(chat, instructions)
        .reply_markup(keyboards::main_menu(t))
        .await?;
    Ok(())
}

/// The `.conf` name of `device`, unique among its owner's active devices (the chat is the
/// owner's private chat). If they cannot be listed, the id makes the name unique on its own.
async fn file_name_among_siblings(service: &Service, chat: ChatId, device: &DeviceView) -> String {
    let this = NamedDevice {
        id: device.id,
        region: &device.region,
        name: &device.name,
    };
    match service.list_devices(chat.0).await {
        Ok(devices) => {
            let named: Vec<NamedDevice<'_>> = devices
                .iter()
                .map(|d| NamedDevice {
                    id: d.id,
                    region: &d.region,
                    name: &d.name,
                })
                .collect();
            config_file_name(this, &named)
        }
        Err(e) => {
            tracing::warn!(device_id = device.id, error = %e, "cannot list the user's devices; naming the file by id");
            let twin = NamedDevice {
                id: i64::MIN,
                ..this
            };
            config_file_name(this, &[twin])
        }
    }
}

/// Shows `text` with `keyboard` in place of the message a button was pressed on (`at`), or as a
/// new message when that one cannot be edited (too old, or not available in the update).
pub(super) async fn show(
    bot: &TgBot,
    chat: ChatId,
    at: Option<MessageId>,
    text: String,
    keyboard: InlineKeyboardMarkup,
) -> HandlerResult {
    if let Some(message_id) = at {
        match bot
            .edit_message_text(chat, message_id, text.clone())
            .reply_markup(keyboard.clone())
            .await
        {
            Ok(_) => return Ok(()),
            // Pressing the same button twice: the screen is already right.
            Err(teloxide::RequestError::Api(ApiError::MessageNotModified)) => return Ok(()),
            Err(e) => tracing::debug!(error = %e, "cannot edit, sending a new message"),
        }
    }
    bot.send_message(chat, text).reply_markup(keyboard).await?;
    Ok(())
}
