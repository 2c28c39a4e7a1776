//! Messages to users outside a conversation, on a timer: expiry notices, the nudge for devices
//! that never connected (suggesting an obfuscated region), and the notices `pvpnctl node
//! notify-reissue` recorded.
//!
//! Order, for the last two: the service records a notice in PostgreSQL when it is chosen (the
//! nudge pass here, or the operator's command); this loop sends it and then closes it. So a
//! crash before sending loses nothing (it is still due and is sent after the restart), and a
//! shutdown never repeats one: shutdown is checked between notices, never between sending one
//! and closing it. The one window left is a crash (or a database outage) right after Telegram
//! accepted a message and before it was closed: that notice is sent again (at least once,
//! rather than at most once, because a lost nudge is worse than a repeated one). A refusal by
//! Telegram (the user blocked the bot) closes it as failed; a network error is retried on later
//! ticks, a few times, then given up.

use std::time::Duration;

use teloxide::prelude::*;
use tokio_util::sync::CancellationToken;

use super::texts::Texts;
use super::{TgBot, keyboards};
use crate::service::{NoticeBody, NoticeDelivery, NoticeState, PendingNotice, Service};

/// When and how often.
#[derive(Debug, Clone, Copy)]
pub struct NoticeSettings {
    /// How often to look for notices to send.
    pub interval: Duration,
    /// How long after it was issued a device that never completed a handshake gets the nudge.
    pub blocked_after: Duration,
}

/// Until `shutdown`: every `interval`, sends what is due.
pub(super) async fn run(
    bot: TgBot,
    service: Service,
    settings: NoticeSettings,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        expiry_notices(&bot, &service).await;
        if let Err(e) = service
            .choose_blocked_device_nudges(settings.blocked_after)
            .await
        {
            tracing::debug!(error = %e, "cannot choose nudges now");
        }
        let due = match service.due_notices().await {
            Ok(due) => due,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read due notices now");
                continue;
            }
        };
        for notice in due {
            if shutdown.is_cancelled() {
                return;
            }
            send(&bot, &service, notice).await;
        }
    }
}

/// Users whose access the expiry scheduler revoked. A notice is taken from the database once; if
/// sending fails it is logged, not retried.
async fn expiry_notices(bot: &TgBot, service: &Service) {
    let notices = match service.take_expiry_notices().await {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read expiry notices now");
            return;
        }
    };
    for notice in notices {
        let t = Texts::new(notice.language);
        if let Err(e) = bot
            .send_message(ChatId(notice.telegram_id), t.expired_notice())
            .await
        {
            tracing::warn!(telegram_id = notice.telegram_id, error = %e, "expiry notice not delivered");
        }
    }
}

/// Sends one notice and records how it went.
async fn send(bot: &TgBot, service: &Service, notice: PendingNotice) {
    let t = Texts::new(notice.language);
    let chat = ChatId(notice.telegram_id);
    let request = match &notice.body {
        NoticeBody::BlockedDevice { device, regions } => bot
            .send_message(chat, t.blocked_device_nudge(device))
            .reply_markup(keyboards::blocked_device(t, device, regions)),
        NoticeBody::NodeChanged { devices, .. } => bot
            .send_message(chat, t.node_changed_notice(devices))
            .reply_markup(keyboards::reissue_changed(t, devices)),
    };
    let delivery = match request.await {
        Ok(_) => NoticeDelivery::Sent,
        // Telegram answered and said no: the same request would be refused again.
        Err(teloxide::RequestError::Api(e)) => {
            tracing::info!(telegram_id = notice.telegram_id, error = %e, "notice refused by Telegram");
            NoticeDelivery::Refused
        }
        Err(e) => {
            tracing::warn!(telegram_id = notice.telegram_id, error = %e, "notice not delivered; retrying later");
            NoticeDelivery::Failed
        }
    };
    match service.close_notice(notice.id, delivery).await {
        Ok(NoticeState::Failed) if delivery == NoticeDelivery::Failed => {
            tracing::warn!(
                telegram_id = notice.telegram_id,
                "notice given up after repeated failures"
            );
        }
        Ok(_) => {}
        // It stays due and is sent again on a later tick: at least once.
        Err(e) => tracing::warn!(notice = notice.id, error = %e, "cannot record a sent notice"),
    }
}
