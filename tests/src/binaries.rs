//! Where the built `pvpn-backend`, `pvpnctl` and `pvpn-agent` binaries are.
//!
//! The end-to-end test runs the real binaries as separate processes. `cargo test --workspace`
//! builds them before any test runs (the backend's and agent's own integration tests need them);
//! this module only finds them next to the running executable and says what to do if they are
//! missing, rather than starting a nested cargo build that would wait on the outer one's lock.

use std::path::PathBuf;

use std::process::Command;

use anyhow::{Context, Result, bail};

/// The three PVPN programs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub backend: PathBuf,
    pub ctl: PathBuf,
    pub agent: PathBuf,
}

impl Binaries {
    /// Finds the binaries in the target profile directory of the running executable (a test in
    /// `target/debug/deps/`, or a binary in `target/<profile>/`).
    pub fn locate() -> Result<Self> {
        let exe = std::env::current_exe().context("locating the running executable")?;
        let mut dir = exe
            .parent()
            .context("the running executable has no directory")?
            .to_path_buf();
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir.pop();
        }
        let find = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            if !path.is_file() {
                bail!(
                    "{} is missing: build it first with `cargo build --bins -p pvpn-backend -p pvpn-agent` \
                     (cargo test --workspace does)",
                    path.display()
                );
            }
            Ok(path)
        };
        Ok(Self {
            backend: find("pvpn-backend")?,
            ctl: find("pvpnctl")?,
            agent: find("pvpn-agent")?,
        })
    }

    /// Runs `pvpnctl <args>` with `env` (at least `DATABASE_URL`) and no `PVPN_CONFIG` file, so it
    /// acts on exactly the database given; returns stdout, or an error with what it printed.
    pub fn pvpnctl(&self, env: &[(&str, &str)], args: &[&str]) -> Result<String> {
        let out = Command::new(&self.ctl)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("PVPN_CONFIG")
            .output()
            .context("running pvpnctl")?;
        if !out.status.success() {
            bail!(
                "pvpnctl {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
