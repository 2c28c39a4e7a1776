//! Registration modes, invites, language and admin lookups through the service layer.

mod support;

use pvpn_backend::service::{
    Actor, Language, RegistrationMode, ServiceError, ServiceSettings, UserRef, UserStatus,
};
use support::*;

fn mode(registration: RegistrationMode) -> ServiceSettings {
    ServiceSettings {
        registration,
        admin_ids: vec![7],
        ..Default::default()
    }
}

#[tokio::test]
async fn open_registration_is_idempotent_and_keeps_username() {
    let env = env().await;
    let s = &env.service;
    assert_eq!(
        s.get_user(5).await.unwrap_err(),
        ServiceError::NotRegistered
    );
    let first = s
        .register_user(5, Some("Alice_1"), Language::Ru, None)
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.user.language, Language::Ru);
    assert_eq!(first.user.status, UserStatus::Active);
    assert_eq!(first.user.device_limit, 3);
    let again = s
        .register_user(5, Some("alice_2"), Language::En, None)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.user.username.as_deref(), Some("alice_2"));
    assert_eq!(
        again.user.language,
        Language::Ru,
        "re-registering keeps the language"
    );

    let user = s.set_language(5, Language::En).await.unwrap();
    assert_eq!(user.language, Language::En);
    assert_eq!(
        s.set_language(6, Language::En).await.unwrap_err(),
        ServiceError::NotRegistered
    );

    let found = s.find_user(&"@ALICE_2".parse().unwrap()).await.unwrap();
    assert_eq!(found.telegram_id, 5);
    assert_eq!(
        s.find_user(&UserRef::TelegramId(6)).await.unwrap_err(),
        ServiceError::UserNotFound
    );
    assert!(matches!(
        "@bad name".parse::<UserRef>(),
        Err(ServiceError::InvalidInput(_))
    ));
    assert!(matches!(
        "-5".parse::<UserRef>(),
        Err(ServiceError::InvalidInput(_))
    ));
}

#[tokio::test]
async fn concurrent_registrations_of_one_user_create_one_row() {
    let env = env().await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = env.service.clone();
            tokio::spawn(async move { s.register_user(77, None, Language::En, None).await })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        if t.await.unwrap().unwrap().created {
            created += 1;
        }
    }
    assert_eq!(created, 1);
}

#[tokio::test]
async fn invite_mode_needs_a_valid_unused_invite() {
    let env = env_with(mode(RegistrationMode::Invite)).await;
    let s = &env.service;
    assert_eq!(
        s.register_user(1, None, Language::En, None)
            .await
            .unwrap_err(),
        ServiceError::InviteRequired
    );
    assert_eq!(
        s.register_user(1, None, Language::En, Some("nosuchcode"))
            .await
            .unwrap_err(),
        ServiceError::InvalidInvite
    );
    let invite = s
        .create_invite(&Actor::Telegram(7), 2, Some(chrono::Duration::days(1)))
        .await
        .unwrap();
    assert_eq!(invite.code.len(), 16);
    assert!(
        s.register_user(1, None, Language::En, Some(&invite.code))
            .await
            .unwrap()
            .created
    );
    assert!(
        s.register_user(2, None, Language::En, Some(&invite.code))
            .await
            .unwrap()
            .created
    );
    assert_eq!(
        s.register_user(3, None, Language::En, Some(&invite.code))
            .await
            .unwrap_err(),
        ServiceError::InvalidInvite,
        "used up"
    );
    // Already registered users need no invite; admins always get in.
    assert!(
        !s.register_user(1, None, Language::En, None)
            .await
            .unwrap()
            .created
    );
    assert!(
        s.register_user(7, None, Language::En, None)
            .await
            .unwrap()
            .created
    );
    let audit: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'invite.create' AND actor = 'telegram:7'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(audit, 1);
}

#[tokio::test]
async fn closed_mode_admits_nobody_new() {
    let env = env_with(mode(RegistrationMode::Closed)).await;
    let s = &env.service;
    assert_eq!(
        s.register_user(1, None, Language::En, None)
            .await
            .unwrap_err(),
        ServiceError::RegistrationClosed
    );
    assert!(
        s.register_user(7, None, Language::En, None)
            .await
            .unwrap()
            .created
    );
    assert!(
        s.list_users()
            .await
            .unwrap()
            .iter()
            .all(|u| u.telegram_id == 7)
    );
}
