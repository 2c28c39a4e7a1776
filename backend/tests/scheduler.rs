//! The expiry scheduler: users whose access passed lose their devices (with `PeerRemove`s in the
//! outbox) and are told once; users with time left keep theirs.

mod support;

use std::time::Duration;

use chrono::Utc;
use pvpn_backend::scheduler;
use pvpn_backend::service::{Actor, DeviceStatus, ServiceError, UserRef};
use support::redis_side::wait_for;
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_access_is_revoked_and_notified_once() {
    let env = env().await;
    let s = &env.service;
    seed_region(s, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    user(s, 1).await;
    user(s, 2).await;
    let gone = s.grant_device(1, &region("nl"), None).await.unwrap().device;
    s.grant_device(1, &region("nl"), None).await.unwrap();
    s.grant_device(2, &region("nl"), None).await.unwrap();
    let admin = Actor::Telegram(9);
    s.set_access_expiry(
        &admin,
        &UserRef::TelegramId(1),
        Some(Utc::now() + chrono::Duration::milliseconds(300)),
    )
    .await
    .unwrap();
    s.set_access_expiry(
        &admin,
        &UserRef::TelegramId(2),
        Some(Utc::now() + chrono::Duration::days(1)),
    )
    .await
    .unwrap();

    let stop = CancellationToken::new();
    let task = tokio::spawn(scheduler::run(
        s.clone(),
        Duration::from_millis(100),
        stop.clone(),
    ));
    wait_for(
        "user 1's devices to expire",
        Duration::from_secs(20),
        || async { s.list_devices(1).await.unwrap().is_empty() },
    )
    .await;
    stop.cancel();
    task.await.unwrap();

    let revoked: (String, Option<String>) =
        sqlx::query_as("SELECT status, revoke_reason FROM devices WHERE id = $1")
            .bind(gone.id)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(revoked, ("revoked".into(), Some("expired".into())));
    let removes: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE kind = 'peer_remove'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(removes, 2);
    let others = s.list_devices(2).await.unwrap();
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].status, DeviceStatus::Active);

    let notices = s.take_expiry_notices().await.unwrap();
    assert_eq!(
        notices.iter().map(|n| n.telegram_id).collect::<Vec<_>>(),
        [1]
    );
    assert!(
        s.take_expiry_notices().await.unwrap().is_empty(),
        "told once"
    );
    assert_eq!(
        s.grant_device(1, &region("nl"), None).await.unwrap_err(),
        ServiceError::AccessExpired
    );
    // Nothing left to expire: another pass changes nothing.
    assert_eq!(s.expire_due_access().await.unwrap(), 0);

    // Extending access lets the user back in.
    s.set_access_expiry(&admin, &UserRef::TelegramId(1), None)
        .await
        .unwrap();
    s.grant_device(1, &region("nl"), None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_expires_more_than_one_batch() {
    let env = env().await;
    let s = &env.service;
    seed_region(s, "nl", &[("nl-1", "198.18.0.0/24", 250)]).await;
    for id in 1..=150 {
        user(s, id).await;
        s.grant_device(id, &region("nl"), None).await.unwrap();
    }
    sqlx::query("UPDATE users SET access_expires_at = now() - interval '1 minute'")
        .execute(&env.pool)
        .await
        .unwrap();
    assert_eq!(s.expire_due_access().await.unwrap(), 150);
    assert_eq!(s.take_expiry_notices().await.unwrap().len(), 150);
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE status = 'active'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(live, 0);
}
