//! PostgreSQL unreachable: every service call says `Unavailable` (the bot shows "temporarily
//! unavailable"), never `Internal`, and works again once the database is back.

mod support;

use pvpn_backend::service::{Language, Service, ServiceError};
use sqlx::postgres::PgPoolOptions;
use support::proxy::TcpProxy;
use support::*;

fn unavailable<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> bool {
    matches!(result, Err(ServiceError::Unavailable(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_unavailable_not_internal() {
    let env = env().await;
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    user(&env.service, 1).await;
    let mut url = url::Url::parse(env.database.url()).unwrap();
    let target = format!("127.0.0.1:{}", url.port().unwrap_or(5432));
    let proxy = TcpProxy::start(target.parse().unwrap()).await;
    url.set_port(Some(proxy.addr().port())).unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect(url.as_str())
        .await
        .unwrap();
    let service = Service::new(pool, Default::default());
    service.get_user(1).await.unwrap();

    proxy.cut();
    assert!(unavailable(service.get_user(1).await));
    assert!(unavailable(
        service.register_user(2, None, Language::En, None).await
    ));
    assert!(unavailable(service.list_regions().await));
    assert!(unavailable(
        service.grant_device(1, &region("nl"), None).await
    ));
    assert!(unavailable(service.list_devices(1).await));

    proxy.restore();
    let granted = service.grant_device(1, &region("nl"), None).await.unwrap();
    assert_eq!(
        service.list_devices(1).await.unwrap()[0].id,
        granted.device.id
    );
}
