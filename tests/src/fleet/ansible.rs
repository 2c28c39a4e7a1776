//! `ansible-playbook` as an operator runs it: the repository's playbooks over Ansible's normal
//! SSH connection (from inside the guests' namespace, the only place the guests are reachable),
//! against an inventory the test writes, with each run's output kept and its PLAY RECAP read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pvpn_testkit::netns::Netns;

/// One host's line of the PLAY RECAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostRecap {
    pub ok: u32,
    pub changed: u32,
    pub unreachable: u32,
    pub failed: u32,
}

/// What one `ansible-playbook` run did.
#[derive(Debug, Clone)]
pub struct PlaybookRun {
    pub recap: BTreeMap<String, HostRecap>,
    pub log: PathBuf,
    /// How long `ansible-playbook` ran.
    pub took: Duration,
    /// The slowest tasks, as `profile_tasks` lists them at the end of the run.
    pub slowest: Vec<String>,
    /// `TASK [...]` headers followed by a `changed:` line, with the host: what changed.
    pub changed_tasks: Vec<String>,
}

impl PlaybookRun {
    /// Fails unless every host in the recap reports `changed=0`, naming the tasks that changed.
    pub fn expect_unchanged(&self) -> Result<()> {
        if self.recap.values().any(|h| h.changed > 0) {
            bail!(
                "the run changed something: {:?}\n  {}",
                self.recap,
                self.changed_tasks.join("\n  ")
            );
        }
        Ok(())
    }
}

/// Where and how the playbooks run.
pub struct Ansible {
    pub dir: PathBuf,
    pub inventory: PathBuf,
    pub work: PathBuf,
    runs: u32,
}

/// Generous: the first run installs PostgreSQL on a TCG guest of a busy 2-core machine.
const PLAYBOOK_DEADLINE: Duration = Duration::from_secs(25 * 60);

impl Ansible {
    pub fn new(work: &Path) -> Self {
        Self {
            dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../ansible"),
            inventory: work.join("inventory.yml"),
            work: work.to_path_buf(),
            runs: 0,
        }
    }

    /// Writes the inventory (JSON is YAML, so `inventory.yml` holds the value as JSON).
    pub fn write_inventory(&self, inventory: &serde_json::Value) -> Result<()> {
        std::fs::write(&self.inventory, serde_json::to_vec_pretty(inventory)?)?;
        Ok(())
    }

    /// Runs `ansible-playbook <playbook> <args>` in `netns`; fails when it fails (with the
    /// end of its output) or a host is unreachable.
    pub fn run(&mut self, netns: &Netns, playbook: &str, args: &[&str]) -> Result<PlaybookRun> {
        self.runs += 1;
        let log = self.work.join(format!(
            "ansible-{}-{}.log",
            self.runs,
            playbook.trim_end_matches(".yml")
        ));
        let out = std::fs::File::create(&log)?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns.name(), "ansible-playbook", "-i"])
            .arg(&self.inventory)
            .arg(playbook)
            .args(args)
            .current_dir(&self.dir)
            .env("ANSIBLE_CONFIG", self.dir.join("ansible.cfg"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_LOCAL_TEMP", self.work.join("ansible-tmp"))
            // Each task's time, and the slowest ones at the end: where a run's minutes go.
            .env("ANSIBLE_CALLBACKS_ENABLED", "profile_tasks")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("running ansible-playbook (scripts/setup.sh installs ansible)")?;
        let started = Instant::now();
        let deadline = started + PLAYBOOK_DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "ansible-playbook {playbook} did not finish within {PLAYBOOK_DEADLINE:?}:\n{}",
                    tail(&log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let text = std::fs::read_to_string(&log)?;
        if !status.success() {
            bail!(
                "ansible-playbook {playbook} {args:?} failed ({status}):\n{}",
                tail(&log, 60)
            );
        }
        let run = PlaybookRun {
            recap: parse_recap(&text)?,
            log,
            took: started.elapsed(),
            slowest: slowest_tasks(&text),
            changed_tasks: changed_tasks(&text),
        };
        if let Some((host, _)) = run.recap.iter().find(|(_, h)| h.unreachable > 0) {
            bail!(
                "{host} was unreachable in {playbook}:\n{}",
                tail(&run.log, 40)
            );
        }
        Ok(run)
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `host : ok=25 changed=0 unreachable=0 failed=0 skipped=3 rescued=0 ignored=0` lines (not
/// the `role : task ---- 1.23s` lines of `profile_tasks` after them).
fn parse_recap(text: &str) -> Result<BTreeMap<String, HostRecap>> {
    let recap = text
        .split("PLAY RECAP")
        .nth(1)
        .context("ansible-playbook printed no PLAY RECAP")?;
    let mut hosts = BTreeMap::new();
    for line in recap.lines() {
        let Some((host, counts)) = line.split_once(" : ") else {
            continue;
        };
        if !counts.trim_start().starts_with("ok=") {
            continue;
        }
        let mut entry = HostRecap::default();
        for pair in counts.split_whitespace() {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let value: u32 = value
                .parse()
                .with_context(|| format!("recap line {line:?}"))?;
            match key {
                "ok" => entry.ok = value,
                "changed" => entry.changed = value,
                "unreachable" => entry.unreachable = value,
                "failed" => entry.failed = value,
                _ => {}
            }
        }
        hosts.insert(host.trim().to_string(), entry);
    }
    if hosts.is_empty() {
        bail!("the PLAY RECAP names no host");
    }
    Ok(hosts)
}

/// The `profile_tasks` summary: the lines after the `=====` rule that follows the recap.
fn slowest_tasks(text: &str) -> Vec<String> {
    let Some(recap) = text.split("PLAY RECAP").nth(1) else {
        return Vec::new();
    };
    recap
        .lines()
        .skip_while(|l| !l.starts_with("====="))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            // `role : task ------------ 12.34s`: the dashes only pad.
            let (name, time) = l.rsplit_once(' ').unwrap_or((l, ""));
            format!("{time:>9} {}", name.trim_end_matches(['-', ' ']))
        })
        .collect()
}

fn changed_tasks(text: &str) -> Vec<String> {
    let mut task = "";
    let mut found = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("TASK [") {
            task = rest.split(']').next().unwrap_or_default();
        } else if line.starts_with("changed: [") {
            found.push(format!("{task}: {line}"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recap_and_the_changed_tasks_are_read() {
        let text = "TASK [agent : Install pvpn-agent] ***\n\
                    Saturday 05 December 2026  17:07:05 +0000 (0:00:00.592)       0:00:00.624 ***\n\
                    changed: [aa-1]\nok: [bb-1]\n\
                    PLAY RECAP ***\n\
                    aa-1                       : ok=25   changed=1    unreachable=0    failed=0    skipped=3\n\
                    backend                    : ok=40   changed=0    unreachable=0    failed=0\n\
                    \n\
                    Saturday 05 December 2026  17:07:05 +0000 (0:00:00.592)       0:00:00.624 ***\n\
                    ===============================================================================\n\
                    postgres : Install PostgreSQL ---------------------------------------- 212.50s\n\
                    agent : Install pvpn-agent -------------------------------------------- 3.01s\n";
        let recap = parse_recap(text).unwrap();
        assert_eq!(recap.len(), 2, "{recap:?}");
        assert_eq!(recap["aa-1"].changed, 1);
        assert_eq!(recap["backend"].ok, 40);
        assert_eq!(
            slowest_tasks(text),
            vec![
                "  212.50s postgres : Install PostgreSQL",
                "    3.01s agent : Install pvpn-agent"
            ]
        );
        assert_eq!(
            changed_tasks(text),
            vec!["agent : Install pvpn-agent: changed: [aa-1]"]
        );
        assert!(parse_recap("no recap").is_err());
    }
}
