//! What the bot process logs while a user gets a config: never the config or its private key
//! (even at TRACE, teloxide and HTTP client included), and never teloxide's "Cannot parse an
//! update" (the test server's updates and answers are exactly what teloxide expects).
//!
//! One test per binary: it installs the process-wide log subscriber.

mod bot_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use bot_support::{BotEnv, Options, user};
use pvpn_common::client_config::ParsedConfig;

/// Collects every formatted log line in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let env = BotEnv::start(Options::default()).await;
    let ann = user(6001, "en");
    env.say(&ann, "/start").await;
    let first = env.new_device(&ann, Some("phone")).await;
    let menu = env.say(&ann, "/menu").await;
    let list = env.press_edit(&ann, &menu, "devices").await;
    let confirm = env
        .press_edit(&ann, &list, &list.button_data("Re-issue").expect("button"))
        .await;
    env.press_edit(&ann, &confirm, &confirm.button_data("Yes").expect("yes"))
        .await;
    let second = env.delivered(&ann).await;
    env.stop().await;

    let logs = captured.text();
    assert!(
        logs.contains("teloxide"),
        "teloxide's `log` records are captured too"
    );
    assert!(
        logs.contains("device granted"),
        "the capture works: the service's own log line is there"
    );
    assert!(!logs.contains("Cannot parse an update"), "{logs}");
    for delivered in [first, second] {
        let config = delivered.config_text();
        let parsed = ParsedConfig::parse(&config).expect("config");
        let private_key = parsed.interface_value("PrivateKey").expect("key");
        assert!(!logs.contains(private_key), "a private key was logged");
        let preshared = parsed.peer_value("PresharedKey").expect("psk");
        assert!(!logs.contains(preshared), "a preshared key was logged");
        assert!(!logs.contains("[Interface]"), "a config was logged");
    }
}
