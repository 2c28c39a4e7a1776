//! Running a host process (here: `ssh` into a guest) with a deadline, capturing its output.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// What a command in the guest did.
#[derive(Debug, Clone)]
pub struct GuestOutput {
    /// The exit code; `None` when it was killed by a signal. `ssh` itself failing is 255.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl GuestOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// How a run ended.
pub(crate) enum Finished {
    Exited(GuestOutput),
    /// Killed at the deadline; what it had printed until then.
    TimedOut(GuestOutput),
}

/// Output read so far from a pipe, by a thread of its own.
struct Drain {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: JoinHandle<()>,
}

impl Drain {
    fn start(mut pipe: impl Read + Send + 'static) -> Self {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]);
            }
        });
        Self { buf, thread }
    }

    /// What was read, after waiting up to `grace` for the end of the output. The write end can
    /// outlive the `ssh` client: the SSH master holds it until the remote command is gone.
    fn text(self, grace: Duration) -> String {
        let deadline = Instant::now() + grace;
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Runs `cmd` with `stdin` as its input, killing it at `timeout`.
pub(crate) fn run_with_timeout(
    mut cmd: Command,
    stdin: Option<Box<dyn Read + Send>>,
    timeout: Duration,
) -> Result<Finished> {
    let shown = format!("{cmd:?}");
    let mut child: Child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    let feeder = match (stdin, child.stdin.take()) {
        (Some(mut input), Some(mut pipe)) => Some(std::thread::spawn(move || {
            let _ = std::io::copy(&mut input, &mut pipe);
            let _ = pipe.flush();
        })),
        _ => None,
    };
    let stdout = Drain::start(child.stdout.take().context("stdout pipe")?);
    let stderr = Drain::start(child.stderr.take().context("stderr pipe")?);
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait()? {
            break (Some(status), false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(feeder) = feeder.filter(|_| !timed_out) {
        let _ = feeder.join();
    }
    let grace = if timed_out {
        Duration::ZERO
    } else {
        Duration::from_secs(5)
    };
    let output = GuestOutput {
        code: status.and_then(|s| s.code()),
        stdout: stdout.text(grace),
        stderr: stderr.text(grace),
    };
    Ok(if timed_out {
        Finished::TimedOut(output)
    } else {
        Finished::Exited(output)
    })
}
