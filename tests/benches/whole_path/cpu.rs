//! Where the machine's CPU went during a stretch of the bench: the processor time of every
//! process, summed by program (`/proc/<pid>/stat`, user + system), so a rate that stops growing
//! can be told apart as CPU-bound (and bound by whom) or waiting on something.

use std::collections::BTreeMap;
use std::time::Instant;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Every process's name and processor ticks at one moment, and when.
pub struct Snapshot {
    ticks: BTreeMap<u32, (String, u64)>,
    at: Instant,
}

impl Snapshot {
    pub fn take() -> Self {
        let mut ticks = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                if let Some(process) = process_ticks(&entry.path().join("stat")) {
                    ticks.insert(pid, process);
                }
            }
        }
        Self {
            ticks,
            at: Instant::now(),
        }
    }

    /// Each program's share of the machine since `earlier` (100 % = every core busy), the
    /// biggest first, programs under 1 % left out; and the machine's total busy share.
    /// Processes are matched by pid (kernel workers rename themselves as they go); one that
    /// started in between counts whole, one that ended in between is not counted.
    fn shares_since(&self, earlier: &Snapshot) -> (Vec<(String, f64)>, f64) {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let seconds = self.at.duration_since(earlier.at).as_secs_f64().max(1e-3);
        let mut by_program: BTreeMap<&str, u64> = BTreeMap::new();
        for (pid, (comm, now)) in &self.ticks {
            let before = earlier.ticks.get(pid).map_or(0, |(_, t)| *t);
            *by_program.entry(program(comm)).or_insert(0) += now.saturating_sub(before);
        }
        let mut shares: Vec<(String, f64)> = by_program
            .into_iter()
            .map(|(program, used)| {
                let used = used as f64 / TICKS_PER_SECOND;
                (program.to_string(), 100.0 * used / (seconds * cores))
            })
            .collect();
        let total = shares.iter().map(|(_, s)| s).sum();
        shares.retain(|(_, s)| *s >= 1.0);
        shares.sort_by(|a, b| b.1.total_cmp(&a.1));
        (shares, total)
    }

    /// "94 % of the machine busy: postgres 61 %, wireguard-go 12 %, …" since `earlier`, for a
    /// figure.
    pub fn usage_since(&self, earlier: &Snapshot) -> String {
        let (shares, total) = self.shares_since(earlier);
        let parts: Vec<String> = shares
            .iter()
            .map(|(comm, share)| format!("{comm} {share:.0} %"))
            .collect();
        format!("{total:.0} % of the machine busy: {}", parts.join(", "))
    }
}

/// A process name without what varies between instances: every kernel worker is `kworker`,
/// the bench binary is `whole_path` (its name carries a hash).
fn program(comm: &str) -> &str {
    if comm.starts_with("kworker") {
        "kworker"
    } else if comm.starts_with("whole_path") {
        "whole_path (this bench, the grants' client)"
    } else {
        comm
    }
}

/// `(comm, utime + stime)` of one `/proc/<pid>/stat`; `None` if it vanished or is unreadable.
fn process_ticks(path: &std::path::Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // After the state (field 3), utime and stime are fields 14 and 15 of the line.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}
