//! The device lifecycle through the service layer against a real PostgreSQL: grant, list,
//! revoke, re-issue, and the refusals users must be told about.

mod support;

use pvpn_backend::service::{Actor, DeviceStatus, RegionStatus, ServiceError, UserRef};
use pvpn_common::client_config::ParsedConfig;
use support::*;

#[tokio::test]
async fn grant_places_lowest_address_and_renders_config() {
    let env = env().await;
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    user(&env.service, 100).await;

    let granted = env
        .service
        .grant_device(100, &region("nl"), Some("phone"))
        .await
        .unwrap();
    assert_eq!(granted.device.address.to_string(), "198.18.0.2");
    assert_eq!(granted.device.name, "phone");
    assert_eq!(granted.device.node.as_str(), "nl-1");
    let parsed = ParsedConfig::parse(granted.config.expose()).unwrap();
    assert_eq!(parsed.interface_value("Address"), Some("198.18.0.2/32"));
    assert_eq!(
        parsed.peer_value("Endpoint"),
        Some("nl-1.example.net:51820")
    );
    let private: pvpn_common::PrivateKey = parsed
        .interface_value("PrivateKey")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(private.public_key(), granted.device.public_key);

    let second = env
        .service
        .grant_device(100, &region("nl"), None)
        .await
        .unwrap();
    assert_eq!(second.device.address.to_string(), "198.18.0.3");
    assert_eq!(second.device.name, "device-2");

    let devices = env.service.list_devices(100).await.unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices.iter().all(|d| d.status == DeviceStatus::Active));
    let regions = env.service.list_regions().await.unwrap();
    assert_eq!(regions[0].devices, 2);
    assert_eq!(regions[0].capacity, 10);
}

#[tokio::test]
async fn revoking_someone_elses_device_changes_nothing() {
    let env = env().await;
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    user(&env.service, 1).await;
    user(&env.service, 2).await;
    let mine = env
        .service
        .grant_device(1, &region("nl"), None)
        .await
        .unwrap()
        .device;
    let outbox_before: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&env.pool)
        .await
        .unwrap();

    assert_eq!(
        env.service.revoke_device(2, mine.id).await.unwrap_err(),
        ServiceError::DeviceNotFound
    );
    assert_eq!(
        env.service.reissue_device(2, mine.id).await.unwrap_err(),
        ServiceError::DeviceNotFound
    );
    assert_eq!(
        env.service.get_device(2, mine.id).await.unwrap_err(),
        ServiceError::DeviceNotFound
    );
    let outbox_after: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(outbox_before, outbox_after);
    assert_eq!(env.service.list_devices(1).await.unwrap().len(), 1);

    let revoked = env.service.revoke_device(1, mine.id).await.unwrap();
    assert_eq!(revoked.status, DeviceStatus::Revoked);
    assert_eq!(
        revoked.revoke_reason,
        Some(pvpn_backend::service::RevokeReason::User)
    );
    assert!(env.service.list_devices(1).await.unwrap().is_empty());
    assert_eq!(
        env.service.revoke_device(1, mine.id).await.unwrap_err(),
        ServiceError::DeviceNotFound
    );
    // The address is free again.
    let again = env
        .service
        .grant_device(1, &region("nl"), None)
        .await
        .unwrap();
    assert_eq!(again.device.address, mine.address);
}

#[tokio::test]
async fn reissue_keeps_address_and_changes_key() {
    let env = env().await;
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    user(&env.service, 1).await;
    let first = env
        .service
        .grant_device(1, &region("nl"), None)
        .await
        .unwrap();
    let second = env
        .service
        .reissue_device(1, first.device.id)
        .await
        .unwrap();
    assert_eq!(second.device.id, first.device.id);
    assert_eq!(second.device.address, first.device.address);
    assert_ne!(second.device.public_key, first.device.public_key);
    assert_ne!(second.config.expose(), first.config.expose());
    let kinds: Vec<(String, i64)> = sqlx::query_as("SELECT kind, revision FROM outbox ORDER BY id")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        kinds,
        [
            ("peer_upsert".into(), 1),
            ("peer_remove".into(), 2),
            ("peer_upsert".into(), 3)
        ]
    );
}

#[tokio::test]
async fn refusals_have_distinct_errors() {
    let env = env().await;
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/30", 5)]).await;
    seed_region(&env.service, "de", &[("de-1", "198.18.1.0/24", 5)]).await;
    seed_region(&env.service, "empty", &[]).await;
    let s = &env.service;
    assert_eq!(
        s.grant_device(1, &region("nl"), None).await.unwrap_err(),
        ServiceError::NotRegistered
    );
    user(s, 1).await;
    user(s, 2).await;
    assert_eq!(
        s.grant_device(1, &region("xx"), None).await.unwrap_err(),
        ServiceError::RegionNotFound
    );
    // A malformed code never reaches the service: callers parse it at their edge.
    assert!("NOT VALID".parse::<pvpn_common::RegionCode>().is_err());
    assert_eq!(
        s.grant_device(1, &region("empty"), None).await.unwrap_err(),
        ServiceError::RegionUnavailable
    );
    assert!(matches!(
        s.grant_device(1, &region("nl"), Some(""))
            .await
            .unwrap_err(),
        ServiceError::InvalidInput(_)
    ));
    // Names that would show something else than they are: refused with the reason, no device.
    for (name, says) in [
        ("phone\u{202E}gpj.exe", "direction"),
        ("ad\u{200B}min", "invisible"),
        ("two\nlines", "control"),
    ] {
        match s.grant_device(1, &"nl".parse().unwrap(), Some(name)).await {
            Err(ServiceError::InvalidInput(why)) => assert!(why.contains(says), "{why}"),
            other => panic!("{name:?} was not refused: {other:?}"),
        }
    }
    assert!(s.list_devices(1).await.unwrap().is_empty());
    // A /30 holds exactly one client, whatever the configured capacity says.
    s.grant_device(1, &region("nl"), None).await.unwrap();
    assert_eq!(
        s.grant_device(2, &region("nl"), None).await.unwrap_err(),
        ServiceError::RegionFull
    );

    s.set_region_status(&OPERATOR, &region("de"), RegionStatus::Draining)
        .await
        .unwrap();
    assert_eq!(
        s.grant_device(2, &region("de"), None).await.unwrap_err(),
        ServiceError::RegionUnavailable
    );
    assert!(
        s.list_regions()
            .await
            .unwrap()
            .iter()
            .any(|r| r.code.as_str() == "de" && !r.accepts_new_devices())
    );
    s.set_region_status(&OPERATOR, &region("de"), RegionStatus::Disabled)
        .await
        .unwrap();
    assert_eq!(
        s.grant_device(2, &region("de"), None).await.unwrap_err(),
        ServiceError::RegionNotFound
    );
    assert!(
        !s.list_regions()
            .await
            .unwrap()
            .iter()
            .any(|r| r.code.as_str() == "de")
    );
    s.set_region_status(&OPERATOR, &region("de"), RegionStatus::Active)
        .await
        .unwrap();

    let admin = Actor::Telegram(999);
    s.set_device_limit(&admin, &UserRef::TelegramId(2), 1)
        .await
        .unwrap();
    s.grant_device(2, &region("de"), None).await.unwrap();
    assert_eq!(
        s.grant_device(2, &region("de"), None).await.unwrap_err(),
        ServiceError::DeviceLimitReached { limit: 1 }
    );

    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    s.set_access_expiry(&admin, &UserRef::TelegramId(2), Some(past))
        .await
        .unwrap();
    s.set_device_limit(&admin, &UserRef::TelegramId(2), 5)
        .await
        .unwrap();
    assert_eq!(
        s.grant_device(2, &region("de"), None).await.unwrap_err(),
        ServiceError::AccessExpired
    );

    let banned = s.ban_user(&admin, &UserRef::TelegramId(1)).await.unwrap();
    assert_eq!(banned.revoked_devices, 1);
    assert_eq!(
        s.grant_device(1, &region("de"), None).await.unwrap_err(),
        ServiceError::Banned
    );
    assert!(s.list_devices(1).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_freed_address_in_the_middle_is_reused_first() {
    let env = env().await;
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/29", 10)]).await;
    user(&env.service, 1).await;
    env.service
        .set_device_limit(&OPERATOR, &UserRef::TelegramId(1), 10)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for expected in [2, 3, 4] {
        let device = env
            .service
            .grant_device(1, &region("nl"), None)
            .await
            .unwrap()
            .device;
        assert_eq!(device.address.octets()[3], expected);
        ids.push(device.id);
    }
    env.service.revoke_device(1, ids[1]).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            env.service
                .grant_device(1, &region("nl"), None)
                .await
                .unwrap()
                .device
                .address
                .octets()[3],
        );
    }
    // .3 was freed; .5 and .6 are next; a /29 has no .7 for clients (broadcast).
    assert_eq!(got, [3, 5, 6]);
    assert_eq!(
        env.service
            .grant_device(1, &region("nl"), None)
            .await
            .unwrap_err(),
        ServiceError::RegionFull
    );
}
