//! Shared fixtures of the bot's tests: the real bot (`pvpn_backend::bot::run`, the entry point
//! the binary uses) against the local Bot API server, on a migrated per-test PostgreSQL database
//! reached through a TCP proxy the test can cut (the database "goes down"), with the outbox relay
//! publishing to a private Redis.
#![allow(dead_code)]

pub mod client_check;
pub mod obfuscated;
pub mod pg_proxy;

use std::time::Duration;

use pvpn_backend::bot::{self, BotSettings, rate_limit::RateLimit};
use pvpn_backend::relay::{self, RelaySettings};
use pvpn_backend::service::{
    Actor, NodeDeclaration, RegionStatus, RegistrationMode, Service, ServiceSettings,
};
use pvpn_backend::{db, metrics::Metrics};
use pvpn_common::keys::KeyPair;
use pvpn_common::{NodeName, PublicKey, RegionCode};
use pvpn_testkit::botapi::{BotApiServer, BotMessage, TgUser};
use pvpn_testkit::postgres::TestDatabase;
use pvpn_testkit::redis_server::RedisServer;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use teloxide::adaptors::throttle::Limits;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use pg_proxy::PgProxy;

/// How long a test waits for the bot to do something.
pub const WAIT: Duration = Duration::from_secs(10);

pub const OPERATOR: Actor = Actor::System("test");

/// The region users can pick, its node, and a draining region they must not see.
pub const REGION: &str = "nl";
pub const REGION_NAME: &str = "Netherlands";
pub const NODE: &str = "nl-1";
pub const NODE_ENDPOINT: &str = "198.18.0.1:51820";
pub const DRAINING_REGION_NAME: &str = "Germany";

pub struct Options {
    pub registration: RegistrationMode,
    pub admins: Vec<i64>,
    pub rate_limit: RateLimit,
    /// `true`: Telegram's real limits (one message per second per chat); `false`: loose limits so
    /// long conversations stay fast. The adaptor is in the path either way.
    pub telegram_throttle: bool,
    pub node_capacity: u32,
    /// How often the bot looks for notices to send.
    pub notice_interval: Duration,
    /// [`BotSettings::blocked_nudge_after`].
    pub blocked_nudge_after: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            registration: RegistrationMode::Open,
            admins: Vec::new(),
            rate_limit: RateLimit::default(),
            telegram_throttle: false,
            node_capacity: 50,
            notice_interval: Duration::from_secs(60),
            blocked_nudge_after: bot::DEFAULT_BLOCKED_NUDGE_AFTER,
        }
    }
}

pub struct BotEnv {
    pub api: BotApiServer,
    /// The bot's database connections go through this proxy.
    pub proxy: PgProxy,
    /// A direct pool, for the test's own checks.
    pub pool: PgPool,
    pub redis: RedisServer,
    pub node_public_key: PublicKey,
    stop_bot: CancellationToken,
    bot: Option<JoinHandle<anyhow::Result<()>>>,
    stop_relay: CancellationToken,
    relay: Option<JoinHandle<()>>,
    // Dropped last: the database outlives every pool on it.
    pub database: TestDatabase,
}

pub fn region_code(code: &str) -> RegionCode {
    code.parse().expect("region code")
}

pub fn node(
    name: &str,
    region: &str,
    endpoint: &str,
    subnet: &str,
    capacity: u32,
) -> NodeDeclaration {
    NodeDeclaration {
        name: NodeName::new(name).expect("node name"),
        region: region_code(region),
        endpoint: endpoint.parse().expect("endpoint"),
        public_key: KeyPair::generate().public,
        listen_port: 51820,
        subnet: pvpn_common::addressing::ClientSubnet::new(subnet.parse().expect("subnet"))
            .expect("client subnet"),
        dns: vec!["198.18.0.1".parse().expect("dns")],
        capacity,
        protocol: pvpn_common::obfuscation::Protocol::WireGuard,
    }
}

impl BotEnv {
    pub async fn start(options: Options) -> Self {
        let database = TestDatabase::create().await.expect("test database");
        let pool = database.pool().await.expect("pool");
        db::migrate(&pool).await.expect("migrations");

        let proxy = PgProxy::start(database.url())
            .await
            .expect("database proxy");
        let bot_pool = PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(3))
            .connect(&proxy.url())
            .await
            .expect("pool through the proxy");
        let service = Service::new(
            bot_pool,
            ServiceSettings {
                registration: options.registration,
                admin_ids: options.admins.clone(),
                ..ServiceSettings::default()
            },
        );

        let nl = node(
            NODE,
            REGION,
            NODE_ENDPOINT,
            "198.18.0.0/24",
            options.node_capacity,
        );
        let node_public_key = nl.public_key;
        service
            .declare_region(&OPERATOR, &region_code(REGION), REGION_NAME)
            .await
            .expect("region");
        service.declare_node(&OPERATOR, &nl).await.expect("node");
        service
            .declare_region(&OPERATOR, &region_code("de"), DRAINING_REGION_NAME)
            .await
            .expect("region");
        let de = node("de-1", "de", "198.18.1.1:51820", "198.18.1.0/24", 50);
        service.declare_node(&OPERATOR, &de).await.expect("node");
        service
            .set_region_status(&OPERATOR, &region_code("de"), RegionStatus::Draining)
            .await
            .expect("drain");

        let redis = RedisServer::start().expect("redis-server");
        let stop_relay = CancellationToken::new();
        let relay = tokio::spawn(relay::run(
            pool.clone(),
            redis::Client::open(redis.url()).expect("redis url"),
            std::sync::Arc::new(Metrics::default()),
            RelaySettings::default(),
            stop_relay.clone(),
        ));

        let api = BotApiServer::start().await.expect("Bot API test server");
        let mut settings = BotSettings::new(
            api.token().to_string(),
            Some(api.url().parse().expect("api url")),
        );
        settings.rate_limit = options.rate_limit;
        settings.notice_interval = options.notice_interval;
        settings.blocked_nudge_after = options.blocked_nudge_after;
        if !options.telegram_throttle {
            settings.throttle = Limits {
                messages_per_sec_chat: 100,
                messages_per_min_chat: 6000,
                messages_per_min_channel_or_supergroup: 6000,
                messages_per_sec_overall: 1000,
            };
        }
        let stop_bot = CancellationToken::new();
        let bot = tokio::spawn(bot::run(settings, service, stop_bot.clone()));
        api.wait_for_calls("getUpdates", 1, WAIT)
            .await
            .expect("the bot starts polling");
        Self {
            api,
            proxy,
            pool,
            redis,
            node_public_key,
            stop_bot,
            bot: Some(bot),
            stop_relay,
            relay: Some(relay),
            database,
        }
    }

    /// Stops the bot the way the binary does and checks it ended cleanly and that every
    /// exchange with the Bot API was well-formed.
    pub async fn stop(mut self) {
        self.stop_bot.cancel();
        if let Some(bot) = self.bot.take() {
            let result = tokio::time::timeout(WAIT, bot)
                .await
                .expect("the bot stops within 10 s");
            result.expect("bot task").expect("bot::run returns Ok");
        }
        self.stop_relay.cancel();
        if let Some(relay) = self.relay.take() {
            let _ = tokio::time::timeout(WAIT, relay).await;
        }
        self.api.assert_clean().expect("clean Bot API exchange");
    }

    /// `user` sends `text` and the bot answers with one new message, returned.
    pub async fn say(&self, user: &TgUser, text: &str) -> BotMessage {
        self.api.send_text(user, text).expect("inject message");
        self.api
            .next_message(user.id, WAIT)
            .await
            .unwrap_or_else(|e| panic!("reply to {text:?}: {e:#}"))
    }

    /// `user` presses the button with `data` under `message`; the bot must answer the press
    /// (without an alert) and show its reply by editing that message. Returns the edited message.
    pub async fn press_edit(&self, user: &TgUser, message: &BotMessage, data: &str) -> BotMessage {
        let id = self
            .api
            .press_button(user, message, data)
            .expect("inject press");
        let event = self
            .api
            .next_event(user.id, WAIT)
            .await
            .expect("bot reacts");
        assert_eq!(
            event.kind,
            pvpn_testkit::botapi::ChatEventKind::Edited,
            "pressing {data}: expected an edit, got {event:?}"
        );
        assert_eq!(event.message.message_id, message.message_id);
        let answer = self.api.callback_answer(&id, WAIT).await.expect("answered");
        assert_eq!(answer.text, None, "pressing {data}");
        event.message
    }

    /// Active devices of a Telegram user, straight from the database: (id, public key).
    pub async fn active_devices(&self, telegram_id: i64) -> Vec<(i64, String)> {
        sqlx::query_as(
            "SELECT d.id, d.public_key FROM devices d JOIN users u ON u.id = d.user_id \
             WHERE u.telegram_id = $1 AND d.status = 'active' ORDER BY d.id",
        )
        .bind(telegram_id)
        .fetch_all(&self.pool)
        .await
        .expect("devices query")
    }

    /// The node's desired-state snapshot in Redis: the public keys it holds, waiting up to
    /// [`WAIT`] for the relay to publish until `ready` accepts it.
    pub async fn wait_snapshot(&self, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
        let key = pvpn_common::redis_keys::RegionKeys::new(&region_code(REGION))
            .node_peers(&NodeName::new(NODE).expect("node"));
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut conn = self.redis.connection().expect("redis connection");
            let keys: Vec<String> = redis::cmd("HKEYS")
                .arg(&key)
                .query(&mut conn)
                .expect("HKEYS");
            if ready(&keys) || tokio::time::Instant::now() > deadline {
                return keys;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for BotEnv {
    fn drop(&mut self) {
        if let Some(bot) = self.bot.take() {
            bot.abort();
        }
        self.stop_relay.cancel();
        if let Some(relay) = self.relay.take() {
            relay.abort();
        }
    }
}

pub fn user(id: i64, lang: &str) -> TgUser {
    TgUser::new(id, "Ann", Some(&format!("user{id}")), Some(lang))
}

/// What the bot sends for a new or re-issued device.
pub struct Delivered {
    pub document: BotMessage,
    pub photo: BotMessage,
    pub instructions: BotMessage,
}

impl Delivered {
    pub fn config_text(&self) -> String {
        let file = self.document.document().expect("a document");
        String::from_utf8(file.bytes.clone()).expect("UTF-8 config")
    }
}

impl BotEnv {
    /// The three messages that deliver a config.
    pub async fn delivered(&self, user: &TgUser) -> Delivered {
        let document = self
            .api
            .next_message(user.id, WAIT)
            .await
            .expect("document");
        assert!(
            document.document().is_some(),
            "expected the .conf: {document:?}"
        );
        let photo = self.api.next_message(user.id, WAIT).await.expect("QR");
        assert!(photo.photo().is_some(), "expected the QR code: {photo:?}");
        let instructions = self
            .api
            .next_message(user.id, WAIT)
            .await
            .expect("instructions");
        Delivered {
            document,
            photo,
            instructions,
        }
    }

    /// A registered user adds a device through the menu (`name: None` presses "Skip").
    pub async fn new_device(&self, user: &TgUser, name: Option<&str>) -> Delivered {
        let menu = self.say(user, "/menu").await;
        let regions = self.press_edit(user, &menu, "new").await;
        let region = regions.button_data(REGION_NAME).expect("region button");
        let ask = self.press_edit(user, &regions, &region).await;
        match name {
            Some(name) => {
                self.api.send_text(user, name).expect("name");
            }
            None => {
                let skip = ask.button_data("Skip").expect("Skip button");
                self.api.press_button(user, &ask, &skip).expect("press");
            }
        }
        self.delivered(user).await
    }

    /// Presses a button and returns the alert the bot answered with (no message may change).
    pub async fn press_alert(&self, user: &TgUser, message: &BotMessage, data: &str) -> String {
        let id = self.api.press_button(user, message, data).expect("press");
        let answer = self.api.callback_answer(&id, WAIT).await.expect("answered");
        assert!(answer.show_alert, "pressing {data}: {answer:?}");
        answer.text.unwrap_or_default()
    }

    /// Sets a user's device limit directly in the database (test setup).
    pub async fn set_device_limit(&self, telegram_id: i64, limit: i32) {
        sqlx::query("UPDATE users SET device_limit = $2 WHERE telegram_id = $1")
            .bind(telegram_id)
            .bind(limit)
            .execute(&self.pool)
            .await
            .expect("set limit");
    }
}
