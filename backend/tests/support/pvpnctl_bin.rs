//! The real `pvpnctl` binary run against a test database, as an operator runs it.

use std::process::{Command, Output};

/// Runs `pvpnctl` with `args` against the database at `url` (no config file).
pub fn ctl(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pvpnctl"))
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("PVPN_CONFIG")
        .env("USER", "tester")
        .output()
        .expect("pvpnctl runs")
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(url: &str, args: &[&str]) -> String {
    let out = ctl(url, args);
    assert!(
        out.status.success(),
        "pvpnctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs a command that must fail; returns its stderr.
pub fn fails(url: &str, args: &[&str]) -> String {
    let out = ctl(url, args);
    assert!(!out.status.success(), "pvpnctl {args:?} should fail");
    String::from_utf8(out.stderr).expect("utf-8 output")
}
