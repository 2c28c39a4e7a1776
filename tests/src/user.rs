//! A Telegram user talking to the bot through the local Bot API server, the way a person does:
//! typing commands and pressing buttons found by their labels, never by forging payloads.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use pvpn_testkit::botapi::{BotApiServer, BotMessage, TgUser};

/// How long the user waits for the bot to react to one action.
pub const REPLY_WAIT: Duration = Duration::from_secs(20);

/// A config the bot sent: the `.conf` document and the text of the file.
#[derive(Debug, Clone)]
pub struct ReceivedConfig {
    pub file_name: String,
    pub text: String,
}

pub struct BotUser<'a> {
    pub api: &'a BotApiServer,
    pub tg: TgUser,
}

impl<'a> BotUser<'a> {
    pub fn new(api: &'a BotApiServer, id: i64, first_name: &str) -> Self {
        Self {
            api,
            tg: TgUser::new(id, first_name, None, Some("en")),
        }
    }

    /// Sends `text` and returns the bot's reply.
    pub async fn say(&self, text: &str) -> Result<BotMessage> {
        self.api.send_text(&self.tg, text)?;
        self.api
            .next_message(self.tg.id, REPLY_WAIT)
            .await
            .with_context(|| format!("the bot's reply to {text:?}"))
    }

    /// Presses the button whose label contains `label` under `message`; returns what the bot
    /// showed next (the edited message or a new one).
    pub async fn press(&self, message: &BotMessage, label: &str) -> Result<BotMessage> {
        let data = message.button_data(label).with_context(|| {
            format!(
                "no button {label:?} under {:?}; buttons: {:?}",
                message.text(),
                message.buttons()
            )
        })?;
        self.api.press_button(&self.tg, message, &data)?;
        let event = self.api.next_event(self.tg.id, REPLY_WAIT).await?;
        Ok(event.message)
    }

    /// Takes the document, the QR photo and the instructions the bot sends with a config.
    async fn receive_config(&self) -> Result<ReceivedConfig> {
        let doc = self.api.next_message(self.tg.id, REPLY_WAIT).await?;
        let Some(file) = doc.document() else {
            bail!("expected the config document, got {:?}", doc.text());
        };
        let photo = self.api.next_message(self.tg.id, REPLY_WAIT).await?;
        if photo.photo().is_none() {
            bail!("expected the QR code photo, got {:?}", photo.text());
        }
        let _instructions = self.api.next_message(self.tg.id, REPLY_WAIT).await?;
        Ok(ReceivedConfig {
            file_name: file.file_name.clone().unwrap_or_default(),
            text: String::from_utf8(file.bytes.clone()).context("the config is not UTF-8")?,
        })
    }

    /// `/start` → New device → the region → a device name → the config.
    pub async fn new_device(&self, region_name: &str, device_name: &str) -> Result<ReceivedConfig> {
        let menu = self.say("/start").await?;
        let regions = self.press(&menu, "New device").await?;
        let ask_name = self.press(&regions, region_name).await?;
        if ask_name.button_data("Skip").is_none() {
            bail!(
                "expected to be asked for a device name, got {:?}",
                ask_name.text()
            );
        }
        self.api.send_text(&self.tg, device_name)?;
        self.receive_config().await
    }

    /// My devices → the device's button with `action_label` (Revoke / Re-issue) → confirm.
    async fn device_action(&self, device_name: &str, action: &str, confirm: &str) -> Result<()> {
        let menu = self.say("/start").await?;
        let devices = self.press(&menu, "My devices").await?;
        let ask = self
            .press(&devices, &format!("{action} {device_name}"))
            .await?;
        self.press(&ask, confirm).await?;
        Ok(())
    }

    /// Revokes the device named `device_name`, confirming when asked.
    pub async fn revoke(&self, device_name: &str) -> Result<()> {
        self.device_action(device_name, "Revoke", "Yes, revoke")
            .await
    }

    /// Re-issues the device named `device_name` and returns its new config.
    pub async fn reissue(&self, device_name: &str) -> Result<ReceivedConfig> {
        self.device_action(device_name, "Re-issue", "Yes, re-issue")
            .await?;
        self.receive_config().await
    }
}
