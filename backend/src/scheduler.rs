//! The expiry scheduler: every tick, revokes the devices of users whose access has expired
//! ([`Service::expire_due_access`]). The bot picks up the resulting notices with
//! [`Service::take_expiry_notices`].

use std::time::Duration;

use pvpn_common::backoff::FailureStreak;
use tokio_util::sync::CancellationToken;

use crate::service::Service;

/// Runs until `shutdown` is cancelled, one pass per `interval`.
pub async fn run(service: Service, interval: Duration, shutdown: CancellationToken) {
    let mut streak = FailureStreak::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        match service.expire_due_access().await {
            Ok(_) => {
                if streak.succeed().is_some() {
                    tracing::info!("expiry scheduler recovered");
                }
            }
            Err(e) => {
                service.metrics().error("scheduler");
                if streak.fail("expiry pass failed").is_news() {
                    tracing::warn!(error = %e, "expiry scheduler failed; retrying next tick");
                }
            }
        }
    }
    tracing::info!("expiry scheduler stopped");
}
