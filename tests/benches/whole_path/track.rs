//! When a granted peer reached its interface, without polling the interface.
//!
//! An agent acknowledges a stream entry only after the interface holds its effect (the agent's
//! invariant), so the moment of its node group's `XACK` is an upper bound of "the peer is on the
//! interface" (one Redis round trip late). Two readers record it:
//! - `redis-cli MONITOR`: every `XACK` with Redis's own clock (microseconds, the same system clock
//!   the bench reads), by consumer group and entry id;
//! - an `XREAD` of the regions' event streams: which entry id carries which peer (by public key).
//!
//! Reading the interface instead (`wg show dump`) takes tens of milliseconds at 10,000 peers, more
//! than the latency measured. MONITOR costs Redis some throughput; the figures include that.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use pvpn_common::redis_keys::agent_group;
use pvpn_common::wire::StreamEvent;
use pvpn_common::{NodeName, PublicKey};
use pvpn_testkit::redis_server::RedisServer;

/// Seconds since the Unix epoch, as Redis's MONITOR prints them.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[derive(Default)]
struct Seen {
    /// (group, entry id) → Unix time of the `XACK`.
    acks: HashMap<(String, String), f64>,
    /// public key (base64) → entry id of its `PeerUpsert`.
    entries: HashMap<String, String>,
}

/// Records acknowledgements and entries until dropped.
pub struct Tracker {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    monitor: Child,
    threads: Vec<JoinHandle<()>>,
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|e| e.into_inner())
}

/// `1764950000.123456 [0 127.0.0.1:5000] "XACK" "stream" "group" "id" …` → (time, args).
fn parse_monitor(line: &str) -> Option<(f64, Vec<&str>)> {
    let (time, rest) = line.split_once(' ')?;
    let (_, args) = rest.split_once("] ")?;
    let args = args
        .split(' ')
        .map(|a| a.trim_matches('"'))
        .collect::<Vec<_>>();
    Some((time.parse().ok()?, args))
}

impl Tracker {
    /// Starts both readers on `redis` for the event streams `streams`.
    pub fn start(redis: &RedisServer, streams: Vec<String>) -> Result<Self> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut monitor = Command::new("redis-cli")
            .args(["-p", &redis.port().to_string(), "monitor"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-cli monitor")?;
        let out = monitor.stdout.take().context("monitor's stdout")?;
        let acks = {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let Some((time, args)) = parse_monitor(&line) else {
                        continue;
                    };
                    if args.len() >= 4 && args[0].eq_ignore_ascii_case("XACK") {
                        let mut seen = lock(&seen);
                        for id in &args[3..] {
                            seen.acks
                                .entry((args[2].to_string(), id.to_string()))
                                .or_insert(time);
                        }
                    }
                }
            })
        };
        let mut conn = redis.connection()?;
        let entries = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut last: Vec<String> = streams.iter().map(|_| "0".to_string()).collect();
                while !stop.load(Ordering::SeqCst) {
                    let reply: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
                        redis::cmd("XREAD")
                            .arg("COUNT")
                            .arg(10_000)
                            .arg("BLOCK")
                            .arg(200)
                            .arg("STREAMS")
                            .arg(&streams)
                            .arg(&last)
                            .query(&mut conn);
                    let Ok(Some(reply)) = reply else { continue };
                    let mut seen = lock(&seen);
                    for key in reply.keys {
                        let Some(i) = streams.iter().position(|s| *s == key.key) else {
                            continue;
                        };
                        for entry in key.ids {
                            last[i] = entry.id.clone();
                            for value in entry.map.into_values() {
                                let Ok(bytes) = redis::from_redis_value::<Vec<u8>>(value) else {
                                    continue;
                                };
                                if let Ok(StreamEvent::PeerUpsert { peer, .. }) =
                                    StreamEvent::decode(&bytes)
                                {
                                    seen.entries
                                        .insert(peer.public_key.to_base64(), entry.id.clone());
                                }
                            }
                        }
                    }
                }
            })
        };
        Ok(Self {
            seen,
            stop,
            monitor,
            threads: vec![acks, entries],
        })
    }

    /// When the peer `key` granted on `node` was acknowledged by that node's agent.
    pub fn on_interface(&self, key: &PublicKey, node: &NodeName) -> Option<f64> {
        let seen = lock(&self.seen);
        let id = seen.entries.get(&key.to_base64())?;
        seen.acks.get(&(agent_group(node), id.clone())).copied()
    }

    /// Waits until every `(key, node)` is on its interface or `timeout` passed; the times.
    pub async fn wait_all(
        &self,
        peers: &[(PublicKey, NodeName)],
        timeout: Duration,
    ) -> Vec<Option<f64>> {
        let deadline = Instant::now() + timeout;
        loop {
            let times: Vec<Option<f64>> = peers
                .iter()
                .map(|(key, node)| self.on_interface(key, node))
                .collect();
            if times.iter().all(Option::is_some) || Instant::now() >= deadline {
                return times;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = pvpn_testkit::terminate(&mut self.monitor, Duration::from_secs(2));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
