//! Rows are typed where they are read: a value the schema should have prevented (here let in by
//! dropping its check) is a clear error naming the column, not a string the service compares.

mod support;

use pvpn_backend::db;
use pvpn_backend::service::ServiceError;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_in_the_database_is_an_error_naming_its_column() {
    let env = env().await;
    user(&env.service, 1).await;
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    let granted = env
        .service
        .grant_device(1, &region("nl"), None)
        .await
        .unwrap();

    let raw = |sql: &'static str| {
        let pool = env.pool.clone();
        async move { sqlx::query(sql).execute(&pool).await.unwrap() }
    };
    raw("ALTER TABLE users DROP CONSTRAINT users_status_check").await;
    raw("UPDATE users SET status = 'Banned' WHERE telegram_id = 1").await;
    match env.service.get_user(1).await {
        Err(ServiceError::Internal(message)) => {
            assert!(message.contains("status"), "{message}");
            assert!(message.contains("\"Banned\""), "{message}");
        }
        other => panic!("expected an internal error naming the column, got {other:?}"),
    }

    raw("UPDATE users SET status = 'active' WHERE telegram_id = 1").await;
    raw("ALTER TABLE users ADD CONSTRAINT users_status_check CHECK (status IN ('active', 'banned'))")
        .await;
    raw("ALTER TABLE devices DROP CONSTRAINT devices_preshared_key_check").await;
    raw("UPDATE devices SET preshared_key = 'not a key at all'").await;
    // The relay's snapshot read: the error names the column but never repeats a secret.
    let mut conn = env.pool.acquire().await.unwrap();
    let err = db::devices::peers_of_node(&mut conn, "nl-1")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("preshared_key"), "{err}");
    assert!(!err.contains("not a key at all"), "{err}");
    // Reads that do not include the bad column still work.
    assert_eq!(
        env.service.list_devices(1).await.unwrap()[0].id,
        granted.device.id
    );
}
