//! Real Debian 12 guests under QEMU, for what this machine's kernel cannot do itself: kernel
//! WireGuard (and later systemd units and AmneziaWG) driven through real netlink.
//!
//! - [`GuestImage`]: the cached image (`scripts/build-guest-image.sh` builds it once per set of
//!   inputs under `/var/cache/pvpn-test/`).
//! - [`GuestNetwork`]: a network namespace with a bridge on a random /24 of 198.18.128.0/17; the
//!   bridge address is the host side guests reach (services a test starts there, such as
//!   [`crate::redis_server::RedisServer::start_in_netns`]).
//! - [`cached_build`]: the other things built once per machine for the guests, such as
//!   AmneziaWG ([`amneziawg_build`], put into a guest by [`install_amneziawg`]) and the fleet
//!   test's apt repository.
//! - [`DebianGuest`]: one QEMU (TCG) process booting the image through a per-test qcow2 overlay,
//!   on a tap device of the bridge, reached over SSH with a per-run key; commands run with
//!   timeouts and exit codes, files are copied in, and the serial console log is kept and shown
//!   when a boot or a command fails.
//!
//! Everything is torn down on drop (QEMU stopped by its pid, the SSH master, the overlay, the tap,
//! the namespace), also when a test panics.

mod command;
mod guest;
mod network;

pub use command::GuestOutput;
pub use guest::{DebianGuest, GuestOptions};
pub use network::GuestNetwork;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};

/// The programs the fixture runs on the host.
const HOST_TOOLS: [&str; 5] = ["qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen", "ip"];

/// The built guest image: kernel, initramfs and a raw ext4 root file system used read-only as the
/// backing file of every guest's overlay.
#[derive(Debug, Clone)]
pub struct GuestImage {
    dir: PathBuf,
}

impl GuestImage {
    /// Builds the image if the cache has none for the current inputs (minutes, once per machine),
    /// else returns the cached one. Built at most once per test process.
    pub fn ensure() -> Result<Self> {
        static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        let dir = IMAGE
            .get_or_init(|| build().map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(|e| anyhow!(e))?;
        Ok(Self { dir })
    }

    pub fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }

    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.img")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs.img")
    }
}

fn build() -> Result<PathBuf> {
    for tool in HOST_TOOLS {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !found {
            bail!("{tool} is missing: the QEMU guest fixture needs it (run scripts/setup.sh)");
        }
    }
    cached_build(
        "build-guest-image.sh",
        &["vmlinuz", "initrd.img", "rootfs.img"],
    )
}

/// AmneziaWG for the guests (`scripts/build-awg.sh`): the directory holding `amneziawg.ko` for
/// the guest image's kernel, `awg` and `awg-quick`.
pub fn amneziawg_build() -> Result<PathBuf> {
    cached_build("build-awg.sh", &["amneziawg.ko", "awg", "awg-quick"])
}

/// Loads the `amneziawg` module into `guest` and installs `awg` and `awg-quick`, from
/// [`amneziawg_build`] (built for the guest image's kernel); does nothing where the module is
/// loaded already.
pub fn install_amneziawg(guest: &DebianGuest) -> Result<()> {
    const COMMAND: std::time::Duration = std::time::Duration::from_secs(120);
    if guest
        .run("test -d /sys/module/amneziawg", COMMAND)?
        .success()
    {
        return Ok(());
    }
    let build = amneziawg_build()?;
    for (file, dest, mode) in [
        ("amneziawg.ko", "/lib/modules/amneziawg.ko", 0o644),
        ("awg", "/usr/local/bin/awg", 0o755),
        ("awg-quick", "/usr/local/bin/awg-quick", 0o755),
    ] {
        guest.copy_in(&build.join(file), dest, mode)?;
    }
    // Its dependencies (udp_tunnel, the crypto) are the in-tree WireGuard module's.
    guest
        .run_ok(
            "modprobe wireguard && insmod /lib/modules/amneziawg.ko",
            COMMAND,
        )
        .context("loading the amneziawg module in the guest")?;
    Ok(())
}

/// Runs `scripts/<script>`, one of the scripts that build something once per machine and set of
/// inputs under `/var/cache/pvpn-test/` and print its directory last, and returns that
/// directory, checked to hold `expected`. The script's progress goes to our stderr (shown for a
/// failing test).
pub fn cached_build(script: &str, expected: &[&str]) -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(script);
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| anyhow!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}); its messages are above",
            script.display(),
            out.status
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    for file in expected {
        if !dir.join(file).exists() {
            bail!(
                "{} printed {:?}, which has no {file}",
                script.display(),
                dir.display()
            );
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests;
