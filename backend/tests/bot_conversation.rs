//! The whole user path through the real bot: `/start` → New device → region → name → a config
//! that the real `wg` accepts, a QR code that decodes to exactly the same bytes, instructions,
//! and the device's peer in the node's snapshot in Redis.

mod bot_support;

use bot_support::client_check::{apply_with_real_wg, decode_qr};
use bot_support::{BotEnv, NODE_ENDPOINT, Options, WAIT, user};
use pvpn_common::client_config::ParsedConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_to_config_in_one_conversation() {
    let env = BotEnv::start(Options::default()).await;
    let ann = user(1001, "en");

    let welcome = env.say(&ann, "/start").await;
    assert!(
        welcome.text().starts_with("Hello, Ann!"),
        "{}",
        welcome.text()
    );
    let new_device = welcome
        .button_data("New device")
        .expect("New device button");

    let regions = env.press_edit(&ann, &welcome, &new_device).await;
    assert_eq!(regions.text(), "Choose a region for the new device:");
    let labels: Vec<String> = regions.buttons().into_iter().map(|(l, _)| l).collect();
    assert!(
        labels.iter().any(|l| l == "Netherlands · load 0%"),
        "{labels:?}"
    );
    assert!(
        !labels.iter().any(|l| l.contains("Germany")),
        "a draining region is hidden: {labels:?}"
    );

    let nl = regions.button_data("Netherlands").expect("region button");
    let ask_name = env.press_edit(&ann, &regions, &nl).await;
    assert!(ask_name.text().starts_with("Region: Netherlands."));
    assert!(ask_name.button_data("Skip").is_some());

    // A name that would display reversed is refused with the reason; the prompt stays open.
    env.api
        .send_text(&ann, "My Phone\u{202E}gpj.exe")
        .expect("name");
    let refused = env.api.next_message(ann.id, WAIT).await.expect("refusal");
    assert_eq!(
        refused.text(),
        "A device name cannot contain characters that change the text direction. Send another name, or press “Skip”."
    );
    env.api.send_text(&ann, "My Phone").expect("name");
    let doc = env.api.next_message(ann.id, WAIT).await.expect("document");
    let file = doc.document().expect("a .conf document").clone();
    assert_eq!(file.file_name.as_deref(), Some("nl-My_Phone.conf"));
    assert!(doc.text().contains("shown only once"), "{}", doc.text());
    assert!(doc.text().contains("Re-issuing"), "{}", doc.text());

    let photo = env.api.next_message(ann.id, WAIT).await.expect("QR photo");
    let png = &photo.photo().expect("a photo").bytes;
    assert_eq!(
        decode_qr(png),
        file.bytes,
        "the QR code holds exactly the document"
    );

    let instructions = env
        .api
        .next_message(ann.id, WAIT)
        .await
        .expect("instructions");
    assert!(instructions.text().contains("Scan from QR code"));
    assert!(
        instructions.button_data("My devices").is_some(),
        "menu follows"
    );

    // The document is a config the real tools accept, for this device on this node.
    let text = String::from_utf8(file.bytes.clone()).expect("UTF-8 config");
    let parsed = ParsedConfig::parse(&text).expect("config parses");
    let address = parsed.interface_value("Address").expect("Address");
    assert!(address.starts_with("198.18.0."), "{address}");
    let devices = env.active_devices(ann.id).await;
    assert_eq!(devices.len(), 1);
    let applied = apply_with_real_wg("nl-My_Phone.conf", &file.bytes);
    assert_eq!(
        applied.public_key, devices[0].1,
        "the config's key is the device's"
    );
    assert_eq!(applied.peers.len(), 1);
    assert_eq!(applied.peers[0].public_key, env.node_public_key);
    assert_eq!(applied.peers[0].endpoint.as_deref(), Some(NODE_ENDPOINT));
    assert!(
        applied.peers[0]
            .allowed_ips
            .contains(&"0.0.0.0/0".to_string()),
        "{:?}",
        applied.peers[0].allowed_ips
    );

    // The relay told the node about the new peer.
    let snapshot = env.wait_snapshot(|keys| keys.contains(&devices[0].1)).await;
    assert_eq!(snapshot, vec![devices[0].1.clone()]);

    // Long polling started only after deleteWebhook, and the command list was set.
    let methods: Vec<String> = env.api.requests().into_iter().map(|r| r.method).collect();
    let delete = methods.iter().position(|m| m == "deletewebhook");
    let poll = methods.iter().position(|m| m == "getupdates");
    assert!(delete.is_some() && delete < poll, "{methods:?}");
    assert!(methods.contains(&"setmycommands".to_string()));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_name_and_unknown_text() {
    let env = BotEnv::start(Options::default()).await;
    let bob = user(1002, "en");

    // Before /start, plain text still gets an answer: the menu.
    let unknown = env.say(&bob, "hello?").await;
    assert_eq!(
        unknown.text(),
        "I did not understand that. Here is what I can do:"
    );
    assert!(unknown.button_data("New device").is_some());

    env.say(&bob, "/start").await;
    let regions = env.press_edit(&bob, &unknown, "new").await;
    let ask = env
        .press_edit(&bob, &regions, &regions.button_data("Netherlands").unwrap())
        .await;
    let skip = ask.button_data("Skip").expect("skip");
    env.api.press_button(&bob, &ask, &skip).expect("press");
    let doc = env.api.next_message(bob.id, WAIT).await.expect("document");
    let name = doc.document().expect("document").file_name.clone();
    assert_eq!(name.as_deref(), Some("nl-device-1.conf"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_region_is_marked_and_explained() {
    let env = BotEnv::start(Options {
        node_capacity: 1,
        ..Options::default()
    })
    .await;
    let first = user(1003, "en");
    env.say(&first, "/start").await;
    env.new_device(&first, None).await;

    let second = user(1004, "en");
    let welcome = env.say(&second, "/start").await;
    let regions = env.press_edit(&second, &welcome, "new").await;
    let full = regions
        .button_data("Netherlands · full")
        .expect("a full region is listed as full");
    env.api
        .press_button(&second, &regions, &full)
        .expect("press");
    let refusal = env.api.next_message(second.id, WAIT).await.expect("reply");
    assert_eq!(
        refusal.text(),
        "This region is full. Choose another one or try again later."
    );
    assert!(env.active_devices(second.id).await.is_empty());
    env.stop().await;
}
