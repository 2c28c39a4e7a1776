//! One Debian guest: QEMU (TCG) on a qcow2 overlay of the cached image, reached over SSH.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::command::{Finished, GuestOutput, run_with_timeout};
use super::{GuestImage, GuestNetwork};

/// How a guest is booted.
#[derive(Debug, Clone)]
pub struct GuestOptions {
    pub memory_mib: u32,
    pub cpus: u32,
    /// From starting QEMU until SSH answers; generous, TCG on a busy machine is slow.
    pub boot_timeout: Duration,
}

impl Default for GuestOptions {
    fn default() -> Self {
        Self {
            memory_mib: 1024,
            cpus: 1,
            boot_timeout: Duration::from_secs(240),
        }
    }
}

/// A running guest; it keeps its network alive. Dropping it stops QEMU by its pid, closes the SSH master, removes the tap
/// and the work directory (overlay, key, console log).
pub struct DebianGuest {
    net: Arc<GuestNetwork>,
    addr: Ipv4Addr,
    tap: String,
    dir: PathBuf,
    qemu: Option<Child>,
    ssh_master: Option<Child>,
}

impl DebianGuest {
    /// Boots a guest on `net` with default options.
    pub fn boot(net: &Arc<GuestNetwork>) -> Result<Self> {
        Self::boot_with(net, &GuestOptions::default())
    }

    pub fn boot_with(net: &Arc<GuestNetwork>, options: &GuestOptions) -> Result<Self> {
        let image = GuestImage::ensure()?;
        let (addr, tap) = net.add_tap()?;
        let dir = std::env::temp_dir().join(format!("pvpn-guest-{}", crate::unique_suffix()));
        let mut guest = Self {
            net: Arc::clone(net),
            addr,
            tap,
            dir,
            qemu: None,
            ssh_master: None,
        };
        std::fs::create_dir_all(&guest.dir)?;
        guest.prepare_disk_and_key(&image)?;
        guest.start_qemu(&image, options)?;
        guest
            .wait_for_ssh(options.boot_timeout)
            .map_err(|e| guest.with_console(e))?;
        Ok(guest)
    }

    fn prepare_disk_and_key(&self, image: &GuestImage) -> Result<()> {
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(image.rootfs())
            .arg(self.overlay())
            .output()
            .context("qemu-img (scripts/setup.sh installs qemu-utils)")?;
        if !out.status.success() {
            bail!(
                "qemu-img create: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(self.key())
            .output()
            .context("ssh-keygen (scripts/setup.sh installs openssh-client)")?;
        if !out.status.success() {
            bail!(
                "ssh-keygen: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn start_qemu(&mut self, image: &GuestImage, options: &GuestOptions) -> Result<()> {
        use base64::Engine;
        use std::fmt::Write;
        let public_key = std::fs::read(self.key().with_extension("pub"))?;
        // `no_timer_check`: under TCG on a loaded host the kernel's IO-APIC timer check can miss
        // its ticks and panic ("IO-APIC + timer doesn't work"); seen once, the rerun passed.
        let mut append = String::from(
            "root=/dev/vda rw console=ttyS0 panic=-1 net.ifnames=0 quiet \
             cryptomgr.notests fsck.mode=skip no_timer_check",
        );
        let _ = write!(
            append,
            " pvpn.addr={}/24 pvpn.gw={} pvpn.ssh_key={}",
            self.addr,
            self.net.host_addr(),
            base64::engine::general_purpose::STANDARD.encode(public_key.trim_ascii_end())
        );
        let [_, _, third, fourth] = self.addr.octets();
        let mac = format!("52:54:00:12:{third:02x}:{fourth:02x}");
        let console = format!("file:{}", self.console_path().display());
        // The overlay is thrown away with the guest: its flushes need not reach the host's disk
        // (a clean QEMU exit, as at a reboot, still writes everything out).
        let drive = format!(
            "file={},format=qcow2,if=virtio,cache=unsafe",
            self.overlay().display()
        );
        let netdev = format!("tap,id=n0,ifname={},script=no,downscript=no", self.tap);
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            self.net.netns().name(),
            "qemu-system-x86_64",
        ])
        .args([
            "-accel",
            "tcg",
            "-cpu",
            "qemu64",
            "-nodefaults",
            "-no-reboot",
        ])
        .args(["-m", &options.memory_mib.to_string()])
        .args(["-smp", &options.cpus.to_string()])
        .args(["-display", "none", "-monitor", "none", "-serial", &console])
        .arg("-kernel")
        .arg(image.kernel())
        .arg("-initrd")
        .arg(image.initrd())
        .args(["-append", &append, "-drive", &drive, "-netdev", &netdev])
        .args([
            "-device",
            &format!("virtio-net-pci,netdev=n0,mac={mac},romfile="),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(self.dir.join("qemu.stderr"))?);
        // `ip netns exec` execs QEMU, so this pid is QEMU's own.
        let child = cmd
            .spawn()
            .context("starting qemu-system-x86_64 (scripts/setup.sh installs qemu-system-x86)")?;
        self.qemu = Some(child);
        Ok(())
    }

    /// Starts the SSH master connection (every later command multiplexes over it: a new SSH
    /// handshake costs about a second of TCG) once the guest's sshd answers.
    fn wait_for_ssh(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            self.check_qemu_alive()?;
            let mut master = Command::new("ip")
                .args(["netns", "exec", self.net.netns().name(), "ssh", "-M", "-N"])
                .args(self.ssh_options())
                .args(["-o", "ConnectTimeout=2", "-o", "ServerAliveInterval=5"])
                .arg(format!("root@{}", self.addr))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting ssh (scripts/setup.sh installs openssh-client)")?;
            let attempt_end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < attempt_end {
                if master.try_wait()?.is_some() {
                    break;
                }
                if self.control_path().exists() && self.ssh_check() {
                    self.ssh_master = Some(master);
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = master.kill();
            let _ = master.wait();
            std::thread::sleep(Duration::from_millis(300));
        }
        bail!(
            "the guest at {} did not answer SSH within {timeout:?}",
            self.addr
        )
    }

    fn ssh_check(&self) -> bool {
        Command::new("ssh")
            .args(["-O", "check"])
            .args(self.ssh_options())
            .arg(format!("root@{}", self.addr))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn check_qemu_alive(&mut self) -> Result<()> {
        if let Some(qemu) = self.qemu.as_mut()
            && let Some(status) = qemu.try_wait()?
        {
            let stderr = std::fs::read_to_string(self.dir.join("qemu.stderr")).unwrap_or_default();
            bail!("QEMU exited ({status}): {}", stderr.trim());
        }
        Ok(())
    }

    fn ssh_options(&self) -> Vec<String> {
        let control = format!("ControlPath={}", self.control_path().display());
        let mut options = vec!["-i".to_string(), self.key().display().to_string()];
        for option in [
            "BatchMode=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
            control.as_str(),
        ] {
            options.push("-o".into());
            options.push(option.into());
        }
        options
    }

    /// The guest's address on the bridge.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn network(&self) -> &GuestNetwork {
        &self.net
    }

    /// Runs `script` with the guest's root shell; fails only if it could not be run or did not
    /// finish within `timeout` (with the console's tail in the error).
    pub fn run(&self, script: &str, timeout: Duration) -> Result<GuestOutput> {
        self.run_with_input(script, None, timeout)
    }

    /// Runs `script` and fails unless it exits 0; returns its stdout.
    pub fn run_ok(&self, script: &str, timeout: Duration) -> Result<String> {
        let out = self.run(script, timeout)?;
        if !out.success() {
            bail!(
                "in the guest, `{script}` exited {:?}\nstdout: {}\nstderr: {}",
                out.code,
                out.stdout.trim(),
                out.stderr.trim()
            );
        }
        Ok(out.stdout)
    }

    fn run_with_input(
        &self,
        script: &str,
        input: Option<Box<dyn std::io::Read + Send>>,
        timeout: Duration,
    ) -> Result<GuestOutput> {
        let mut cmd = Command::new("ssh");
        cmd.args(["-o", "ControlMaster=no"])
            .args(self.ssh_options())
            .arg(format!("root@{}", self.addr))
            .arg("--")
            .arg(script);
        match run_with_timeout(cmd, input, timeout)? {
            Finished::Exited(out) if out.code == Some(255) && self.ssh_master_gone() => Err(self
                .with_console(anyhow::anyhow!(
                    "lost the SSH connection running `{script}`: {}",
                    out.stderr.trim()
                ))),
            Finished::Exited(out) => Ok(out),
            Finished::TimedOut(out) => Err(self.with_console(anyhow::anyhow!(
                "`{script}` did not finish within {timeout:?} in the guest\nstdout: {}\nstderr: {}",
                out.stdout.trim(),
                out.stderr.trim()
            ))),
        }
    }

    fn ssh_master_gone(&self) -> bool {
        !self.ssh_check()
    }

    /// Copies a host file to `guest_path` with permissions `mode` (e.g. `0o755`).
    pub fn copy_in(&self, host: &Path, guest_path: &str, mode: u32) -> Result<()> {
        let file = File::open(host).with_context(|| format!("opening {}", host.display()))?;
        self.write_from(Box::new(file), guest_path, mode)
    }

    /// Writes `contents` to `guest_path` with permissions `mode`.
    pub fn write_file(&self, guest_path: &str, contents: &[u8], mode: u32) -> Result<()> {
        self.write_from(
            Box::new(std::io::Cursor::new(contents.to_vec())),
            guest_path,
            mode,
        )
    }

    fn write_from(
        &self,
        input: Box<dyn std::io::Read + Send>,
        path: &str,
        mode: u32,
    ) -> Result<()> {
        let script = format!(
            "cat > '{path}.part' && chmod {mode:o} '{path}.part' && mv '{path}.part' '{path}'"
        );
        let out = self.run_with_input(&script, Some(input), Duration::from_secs(120))?;
        if !out.success() {
            bail!("writing {path} in the guest: {}", out.stderr.trim());
        }
        Ok(())
    }

    /// Reboots the guest the way an operator does (`systemctl reboot`: units stop, file systems
    /// are synced and unmounted). QEMU runs with `-no-reboot`, so it exits at the reset and is
    /// started again on the same disk, address and SSH key; returns once SSH answers again.
    pub fn reboot(&mut self, options: &GuestOptions) -> Result<()> {
        // The connection may drop before the command returns: its outcome says nothing.
        let _ = self.run("systemctl reboot", Duration::from_secs(60));
        let deadline = Instant::now() + options.boot_timeout;
        loop {
            let exited = match self.qemu.as_mut() {
                Some(qemu) => qemu.try_wait()?.is_some(),
                None => true,
            };
            if exited {
                break;
            }
            if Instant::now() > deadline {
                return Err(self.with_console(anyhow::anyhow!(
                    "the guest at {} did not shut down within {:?} of `systemctl reboot`",
                    self.addr,
                    options.boot_timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.qemu = None;
        if let Some(mut master) = self.ssh_master.take() {
            let _ = master.kill();
            let _ = master.wait();
        }
        let _ = std::fs::remove_file(self.control_path());
        let image = GuestImage::ensure()?;
        self.start_qemu(&image, options)?;
        self.wait_for_ssh(options.boot_timeout)
            .map_err(|e| self.with_console(e))
    }

    /// The private key of the guest's root login, for other SSH clients (Ansible).
    pub fn ssh_key(&self) -> PathBuf {
        self.key()
    }

    /// The control socket of the open SSH master connection: other SSH clients that name it
    /// (`-o ControlPath=…`) multiplex over it instead of paying a new handshake under TCG.
    pub fn ssh_control_path(&self) -> PathBuf {
        self.control_path()
    }

    fn console_path(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// The last `lines` lines of the serial console.
    pub fn console_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.console_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn with_console(&self, error: anyhow::Error) -> anyhow::Error {
        error.context(format!(
            "guest {} (serial console, last 40 lines):\n{}",
            self.addr,
            self.console_tail(40)
        ))
    }

    fn overlay(&self) -> PathBuf {
        self.dir.join("overlay.qcow2")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    fn control_path(&self) -> PathBuf {
        self.dir.join("ssh.ctl")
    }

    /// QEMU's process id.
    pub fn pid(&self) -> Option<u32> {
        self.qemu.as_ref().map(Child::id)
    }
}

impl Drop for DebianGuest {
    fn drop(&mut self) {
        if let Some(mut master) = self.ssh_master.take() {
            let _ = master.kill();
            let _ = master.wait();
        }
        if let Some(mut qemu) = self.qemu.take() {
            // QEMU exits on SIGTERM at once; the overlay is thrown away, so no clean shutdown.
            crate::terminate(&mut qemu, Duration::from_secs(5));
        }
        self.net.remove_tap(&self.tap);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
