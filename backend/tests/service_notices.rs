//! The notices the bot owes users, at the service layer on a real database: which devices get
//! the never-connected nudge (once, after the delay, only unconnected WireGuard devices, only
//! while an obfuscated region takes devices), what happens to a notice that no longer holds,
//! and how failed sends end.

mod support;

use std::time::Duration;

use pvpn_backend::service::{NoticeBody, NoticeDelivery, NoticeState, Service};
use pvpn_common::obfuscation::AwgProfile;
use support::{Env, env, seed_region, user};

const HOUR: Duration = Duration::from_secs(3600);

async fn make_amneziawg(env: &Env, node: &str) {
    let profile = serde_json::to_value(AwgProfile::generate()).expect("profile");
    sqlx::query("UPDATE nodes SET protocol = 'amneziawg', awg_profile = $2 WHERE name = $1")
        .bind(node)
        .bind(profile)
        .execute(&env.pool)
        .await
        .expect("AmneziaWG node");
}

async fn grant_aged(env: &Env, telegram_id: i64, region: &str, hours: i32) -> i64 {
    let granted = env
        .service
        .grant_device(telegram_id, &support::region(region), None)
        .await
        .expect("grant");
    sqlx::query("UPDATE devices SET created_at = now() - make_interval(hours => $2) WHERE id = $1")
        .bind(granted.device.id)
        .bind(hours)
        .execute(&env.pool)
        .await
        .expect("age");
    granted.device.id
}

async fn states(env: &Env) -> Vec<(i64, String, i32)> {
    sqlx::query_as("SELECT device_id, state, attempts FROM user_notices ORDER BY id")
        .fetch_all(&env.pool)
        .await
        .expect("notices")
}

fn nudged_device(notice: &NoticeBody) -> i64 {
    match notice {
        NoticeBody::BlockedDevice { device, .. } => device.id,
        other => panic!("expected a nudge, got {other:?}"),
    }
}

#[tokio::test]
async fn nudges_are_chosen_once_after_the_delay_and_only_when_they_can_help() {
    let env = env().await;
    let service: &Service = &env.service;
    seed_region(service, "nl", &[("nl-1", "198.18.0.0/24", 50)]).await;
    seed_region(service, "se", &[("se-1", "198.18.2.0/24", 50)]).await;
    for id in 1..=5 {
        user(service, id).await;
    }
    let old = grant_aged(&env, 1, "nl", 7).await;
    let recent = grant_aged(&env, 2, "nl", 5).await;
    let connected = grant_aged(&env, 3, "nl", 7).await;
    sqlx::query("UPDATE devices SET last_handshake_at = now() WHERE id = $1")
        .bind(connected)
        .execute(&env.pool)
        .await
        .expect("handshake");
    let banned_users = grant_aged(&env, 4, "nl", 7).await;
    sqlx::query("UPDATE users SET status = 'banned' WHERE telegram_id = 4")
        .execute(&env.pool)
        .await
        .expect("ban");
    let _ = banned_users;

    // No obfuscated region yet: nothing is chosen.
    assert_eq!(
        service
            .choose_blocked_device_nudges(6 * HOUR)
            .await
            .unwrap(),
        0
    );
    make_amneziawg(&env, "se-1").await;
    // A device already on an obfuscated region is never nudged.
    let obfuscated = grant_aged(&env, 5, "se", 7).await;
    let _ = obfuscated;

    assert_eq!(
        service
            .choose_blocked_device_nudges(6 * HOUR)
            .await
            .unwrap(),
        1
    );
    assert_eq!(states(&env).await, [(old, "due".to_string(), 0)]);
    let due = service.due_notices().await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].telegram_id, 1);
    assert_eq!(nudged_device(&due[0].body), old);
    match &due[0].body {
        NoticeBody::BlockedDevice { regions, .. } => {
            let codes: Vec<&str> = regions.iter().map(|r| r.code.as_str()).collect();
            assert_eq!(codes, ["se"]);
        }
        other => panic!("{other:?}"),
    }
    let state = service
        .close_notice(due[0].id, NoticeDelivery::Sent)
        .await
        .unwrap();
    assert_eq!(state, NoticeState::Sent);

    // Once per device: later passes choose it no more; the recent one comes when it is due.
    assert_eq!(
        service
            .choose_blocked_device_nudges(6 * HOUR)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        service
            .choose_blocked_device_nudges(4 * HOUR)
            .await
            .unwrap(),
        1
    );
    let due = service.due_notices().await.unwrap();
    assert_eq!(nudged_device(&due[0].body), recent);
}

#[tokio::test]
async fn notices_that_no_longer_hold_are_not_sent_and_failed_sends_end() {
    let env = env().await;
    let service: &Service = &env.service;
    seed_region(service, "nl", &[("nl-1", "198.18.0.0/24", 50)]).await;
    seed_region(service, "se", &[("se-1", "198.18.2.0/24", 50)]).await;
    make_amneziawg(&env, "se-1").await;
    for id in 1..=3 {
        user(service, id).await;
    }
    let revoked = grant_aged(&env, 1, "nl", 7).await;
    let connects_later = grant_aged(&env, 2, "nl", 7).await;
    let unlucky = grant_aged(&env, 3, "nl", 7).await;
    assert_eq!(service.choose_blocked_device_nudges(HOUR).await.unwrap(), 3);

    // Between choosing and sending: one is revoked, one connects.
    service.revoke_device(1, revoked).await.expect("revoke");
    sqlx::query("UPDATE devices SET last_handshake_at = now() WHERE id = $1")
        .bind(connects_later)
        .execute(&env.pool)
        .await
        .expect("handshake");
    let due = service.due_notices().await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(nudged_device(&due[0].body), unlucky);

    // Network errors are retried a few times, then given up; nothing is left due.
    for attempt in 1..=5 {
        let state = service
            .close_notice(due[0].id, NoticeDelivery::Failed)
            .await
            .unwrap();
        let expected = if attempt < 5 {
            NoticeState::Due
        } else {
            NoticeState::Failed
        };
        assert_eq!(state, expected, "attempt {attempt}");
    }
    assert_eq!(
        states(&env).await,
        [
            (revoked, "dropped".to_string(), 0),
            (connects_later, "dropped".to_string(), 0),
            (unlucky, "failed".to_string(), 5),
        ]
    );
    assert!(service.due_notices().await.unwrap().is_empty());

    // A nudge chosen while an obfuscated region existed, which is gone when its turn comes, is
    // withdrawn: the device is chosen again once such a region is back.
    user(service, 4).await;
    let waiting = grant_aged(&env, 4, "nl", 7).await;
    assert_eq!(service.choose_blocked_device_nudges(HOUR).await.unwrap(), 1);
    sqlx::query("UPDATE regions SET status = 'draining' WHERE code = 'se'")
        .execute(&env.pool)
        .await
        .expect("drain");
    assert!(service.due_notices().await.unwrap().is_empty());
    assert_eq!(states(&env).await.len(), 3, "withdrawn");
    sqlx::query("UPDATE regions SET status = 'active' WHERE code = 'se'")
        .execute(&env.pool)
        .await
        .expect("enable");
    assert_eq!(service.choose_blocked_device_nudges(HOUR).await.unwrap(), 1);
    let due = service.due_notices().await.unwrap();
    assert_eq!(nudged_device(&due[0].body), waiting);
}
