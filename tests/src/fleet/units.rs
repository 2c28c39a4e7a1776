//! What systemd says about a unit in a guest, and what the kernel says about its main process:
//! running, never restarted, and under the hardening its unit file ships.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use pvpn_testkit::vm::DebianGuest;

const COMMAND: Duration = Duration::from_secs(60);

/// One unit, as `systemctl show` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    pub unit: String,
    pub active: String,
    /// Restarts systemd made on its own (`Restart=`), not the ones an operator asked for.
    pub restarts: u32,
    /// Changes with every start, whatever caused it.
    pub invocation: String,
    pub main_pid: u32,
}

pub fn unit_state(guest: &DebianGuest, unit: &str) -> Result<UnitState> {
    let text = guest.run_ok(
        &format!("systemctl show {unit} -p ActiveState -p NRestarts -p InvocationID -p MainPID"),
        COMMAND,
    )?;
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .with_context(|| format!("systemctl show {unit} has no {key}: {text}"))
    };
    Ok(UnitState {
        unit: unit.to_string(),
        active: value("ActiveState")?,
        restarts: value("NRestarts")?.parse().unwrap_or(u32::MAX),
        invocation: value("InvocationID")?,
        main_pid: value("MainPID")?.parse().unwrap_or(0),
    })
}

/// Every unit in `units` is active, and those with a main process never restarted; returns
/// their states.
pub fn expect_running(guest: &DebianGuest, units: &[&str]) -> Result<Vec<UnitState>> {
    let mut states = Vec::new();
    for unit in units {
        let state = unit_state(guest, unit)?;
        if state.active != "active" || state.restarts != 0 {
            let journal = guest
                .run(&format!("journalctl -u {unit} --no-pager -n 40"), COMMAND)
                .map(|o| o.stdout)
                .unwrap_or_default();
            bail!("{unit} on {}: {state:?}\n{journal}", guest.addr());
        }
        states.push(state);
    }
    Ok(states)
}

/// The hardening of a running service as the kernel applies it to its main process: no new
/// privileges, a seccomp filter, and exactly the effective capabilities `cap_eff` (hex, as in
/// `/proc/<pid>/status`).
pub fn expect_hardened(guest: &DebianGuest, unit: &str, cap_eff: u64) -> Result<()> {
    let state = unit_state(guest, unit)?;
    if state.main_pid == 0 {
        bail!("{unit} has no main process: {state:?}");
    }
    let status = guest.run_ok(&format!("cat /proc/{}/status", state.main_pid), COMMAND)?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .map(str::trim)
            .with_context(|| format!("/proc/{}/status has no {key}", state.main_pid))
    };
    let caps = u64::from_str_radix(field("CapEff")?, 16)?;
    let found = (field("NoNewPrivs")?, field("Seccomp")?, caps);
    if found != ("1", "2", cap_eff) {
        bail!(
            "{unit}'s process runs with NoNewPrivs {}, Seccomp {}, CapEff {:#x}; its unit \
             ships 1, 2 (filter) and {cap_eff:#x}",
            found.0,
            found.1,
            found.2
        );
    }
    Ok(())
}
