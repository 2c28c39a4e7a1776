//! The schema in `migrations/` applies to a real PostgreSQL and its constraints guard the
//! invariants by themselves, whatever the application code does.

use pvpn_backend::db;
use pvpn_testkit::postgres::TestDatabase;
use sqlx::PgPool;

async fn migrated() -> (TestDatabase, PgPool) {
    let database = TestDatabase::create().await.expect("test database");
    let pool = database.pool().await.expect("pool");
    db::migrate(&pool).await.expect("migrations apply");
    (database, pool)
}

fn is_violation(err: &sqlx::Error, code: &str) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|c| c == code)
}

const UNIQUE: &str = "23505";
const CHECK: &str = "23514";
const FOREIGN_KEY: &str = "23503";

async fn seed(pool: &PgPool) -> i64 {
    sqlx::query("INSERT INTO regions (code, display_name) VALUES ('nl', 'Netherlands')")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO nodes (name, region, endpoint, public_key, listen_port, subnet, capacity)
         VALUES ('nl-1', 'nl', 'vpn.example.net:51820', $1, 51820, '198.18.0.0/24', 100)",
    )
    .bind("A".repeat(43) + "=")
    .execute(pool)
    .await
    .unwrap();
    sqlx::query_scalar("INSERT INTO users (telegram_id) VALUES (42) RETURNING id")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn insert_device(pool: &PgPool, user: i64, key: char, address: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO devices (user_id, node, name, public_key, address)
         VALUES ($1, 'nl-1', 'phone', $2, $3::inet) RETURNING id",
    )
    .bind(user)
    .bind(key.to_string().repeat(43) + "=")
    .bind(address)
    .fetch_one(pool)
    .await
}

#[tokio::test]
async fn migrations_apply_twice_without_change() {
    let (_db, pool) = migrated().await;
    db::migrate(&pool).await.expect("second run is a no-op");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "audit_log",
            "devices",
            "feedback_cursor",
            "free_addresses",
            "invites",
            "nodes",
            "outbox",
            "regions",
            "user_notices",
            "users"
        ]
    );
}

#[tokio::test]
async fn live_addresses_and_keys_are_unique() {
    let (_db, pool) = migrated().await;
    let user = seed(&pool).await;
    let first = insert_device(&pool, user, 'B', "198.18.0.2/32")
        .await
        .unwrap();
    let same_address = insert_device(&pool, user, 'C', "198.18.0.2/32")
        .await
        .unwrap_err();
    assert!(is_violation(&same_address, UNIQUE), "{same_address}");
    let same_key = insert_device(&pool, user, 'B', "198.18.0.3/32")
        .await
        .unwrap_err();
    assert!(is_violation(&same_key, UNIQUE), "{same_key}");

    // A revoked device frees its address for the next one.
    sqlx::query(
        "UPDATE devices SET status = 'revoked', revoked_at = now(), revoke_reason = 'user'
         WHERE id = $1",
    )
    .bind(first)
    .execute(&pool)
    .await
    .unwrap();
    insert_device(&pool, user, 'D', "198.18.0.2/32")
        .await
        .unwrap();
}

#[tokio::test]
async fn checks_reject_invalid_rows() {
    let (_db, pool) = migrated().await;
    let user = seed(&pool).await;

    let bad_region = sqlx::query("INSERT INTO regions (code, display_name) VALUES ('NL!', 'x')")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(is_violation(&bad_region, CHECK), "{bad_region}");

    let bad_status = sqlx::query("UPDATE regions SET status = 'sleeping'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(is_violation(&bad_status, CHECK), "{bad_status}");

    let revoked_without_time =
        sqlx::query("UPDATE devices SET status = 'revoked', revoke_reason = 'user'")
            .execute(&pool)
            .await;
    // No device yet: the update matches nothing. Insert one and try again.
    assert!(revoked_without_time.is_ok());
    insert_device(&pool, user, 'E', "198.18.0.9/32")
        .await
        .unwrap();
    let err = sqlx::query("UPDATE devices SET status = 'revoked', revoke_reason = 'user'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(is_violation(&err, CHECK), "{err}");

    let ipv6 = insert_device(&pool, user, 'F', "fd00::2/128")
        .await
        .unwrap_err();
    assert!(is_violation(&ipv6, CHECK), "{ipv6}");

    let unknown_node = sqlx::query(
        "INSERT INTO outbox (region, node, revision, kind, payload)
         VALUES ('nl', 'nowhere', 1, 'peer_remove', '{}')",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(is_violation(&unknown_node, FOREIGN_KEY), "{unknown_node}");

    let control_with_revision = sqlx::query(
        "INSERT INTO outbox (region, node, revision, kind, payload)
         VALUES ('nl', NULL, 3, 'reconcile', '{}')",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(
        is_violation(&control_with_revision, CHECK),
        "{control_with_revision}"
    );

    let overused_invite = sqlx::query(
        "INSERT INTO invites (code, created_by, max_uses, uses) VALUES ('abcdefgh', 'cli', 1, 2)",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(is_violation(&overused_invite, CHECK), "{overused_invite}");
}

#[tokio::test]
async fn revisions_are_unique_per_node() {
    let (_db, pool) = migrated().await;
    seed(&pool).await;
    let insert = "INSERT INTO outbox (region, node, revision, kind, payload)
                  VALUES ('nl', 'nl-1', 1, 'peer_remove', '{}')";
    sqlx::query(insert).execute(&pool).await.unwrap();
    let err = sqlx::query(insert).execute(&pool).await.unwrap_err();
    assert!(is_violation(&err, UNIQUE), "{err}");
}
