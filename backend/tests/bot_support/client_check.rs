//! Checks of what a user received, with real tools: the `.conf` document through `wg-quick
//! strip` (which also checks the file name as a tunnel name) and `wg setconf` on a real
//! `wireguard-go` interface; the QR image through a QR decoder.

use std::process::Command;

use pvpn_testkit::netns::{DumpPeer, Netns, WgInterface};

/// What the real `wg` made of a config.
pub struct AppliedConfig {
    /// `wg show <iface> public-key` after `wg setconf`: the client's public key.
    pub public_key: String,
    pub peers: Vec<DumpPeer>,
}

/// Saves `bytes` as `file_name`, strips it with `wg-quick strip` and applies it with
/// `wg setconf` to a throwaway `wireguard-go` interface in its own namespace.
pub fn apply_with_real_wg(file_name: &str, bytes: &[u8]) -> AppliedConfig {
    let dir = std::env::temp_dir().join(format!("pvpn-bot-{}", pvpn_testkit::unique_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(file_name);
    std::fs::write(&path, bytes).expect("write config");
    let strip = Command::new("wg-quick")
        .arg("strip")
        .arg(&path)
        .output()
        .expect("wg-quick (wireguard-tools) is required: run scripts/setup.sh");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        strip.status.success(),
        "wg-quick strip {file_name}: {}",
        String::from_utf8_lossy(&strip.stderr)
    );

    let ns = Netns::create("botcfg").expect("network namespace");
    let name = WgInterface::unique_name("bot").expect("interface name");
    let throwaway = pvpn_common::keys::KeyPair::generate();
    let iface = WgInterface::start(&ns, &name, &throwaway.private, 51999, "198.19.255.1/32")
        .expect("wireguard-go interface");
    let mut set = Command::new("wg")
        .args(["setconf", &name, "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wg (wireguard-tools) is required: run scripts/setup.sh");
    {
        use std::io::Write;
        let mut stdin = set.stdin.take().expect("stdin");
        stdin.write_all(&strip.stdout).expect("feed wg setconf");
    }
    let out = set.wait_with_output().expect("wg setconf");
    assert!(
        out.status.success(),
        "wg setconf: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public_key = iface
        .wg(&["show", &name, "public-key"])
        .expect("wg show public-key")
        .trim()
        .to_string();
    let peers = iface.peers().expect("wg show dump");
    AppliedConfig { public_key, peers }
}

/// The bytes held by the one QR code in a PNG image.
pub fn decode_qr(png: &[u8]) -> Vec<u8> {
    let image = image::load_from_memory(png).expect("a PNG").to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one QR code in the image");
    let mut bytes = Vec::new();
    grids[0].decode_to(&mut bytes).expect("QR decodes");
    bytes
}
