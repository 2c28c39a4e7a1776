//! A private Redis server per test.
//!
//! Each [`RedisServer`] is its own `redis-server` process on a free loopback port, without
//! persistence, killed when dropped. Tests can stop it (Redis down), start it again empty (Redis
//! restarted without persistence) or flush it, without touching other tests or the machine's Redis.
//!
//! [`RedisServer::start_in_netns`] runs it inside a network namespace instead, listening on an
//! address there (for QEMU guests on a [`crate::vm::GuestNetwork`] bridge) and on a Unix socket,
//! which the test process reaches from its own namespace.
//!
//! [`RedisServer::start_tls`] serves TLS only (`port 0`, `tls-port`), with a certificate for
//! `127.0.0.1` from a CA of its own ([`crate::tls_ca`]): [`RedisServer::url`] is then
//! `rediss://…` and [`RedisServer::ca_file`] the certificate clients must trust.
//!
//! A test can also keep a copy of the data ([`RedisServer::save_copy`]) and later restart from
//! it ([`RedisServer::restart_from`]): Redis coming back from an older RDB, as AOF `everysec` or
//! a replica failover can leave it.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::tls_ca::TlsFiles;

pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// Set for a server inside a namespace: (namespace, address it listens on, Unix socket).
    netns: Option<(String, Ipv4Addr, PathBuf)>,
    /// The server's own directory: `dump.rdb` (only written by [`RedisServer::save_copy`]) and
    /// the saved copies.
    dir: PathBuf,
    /// Set for a TLS-only server: its CA and certificate (in `dir/tls`).
    tls: Option<TlsFiles>,
}

/// A copy of a server's data at one moment, to restart from later.
#[derive(Debug, Clone)]
pub struct SavedData(PathBuf);

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Result<Self> {
        let port = Self::free_port()?;
        let mut server = Self {
            port,
            child: None,
            netns: None,
            dir: Self::data_dir(port)?,
            tls: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// Starts a server that speaks TLS only, on a free port, with a certificate for `127.0.0.1`
    /// and `localhost` signed by a CA made for it ([`RedisServer::ca_file`]).
    pub fn start_tls() -> Result<Self> {
        let port = Self::free_port()?;
        let dir = Self::data_dir(port)?;
        let mut server = Self {
            port,
            child: None,
            netns: None,
            tls: Some(TlsFiles::generate(&dir.join("tls"), &[])?),
            dir,
        };
        server.spawn()?;
        Ok(server)
    }

    fn free_port() -> Result<u16> {
        Ok(TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port())
    }

    /// A directory of the server's own for `dump.rdb` and saved copies.
    fn data_dir(port: u16) -> Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!(
            "pvpn-redis-{}-{port}-{}",
            std::process::id(),
            crate::unique_suffix()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Starts a server inside `netns` listening on `addr:6379` (the namespace is the test's own,
    /// so the port is free) and on a Unix socket that [`RedisServer::url`] names.
    pub fn start_in_netns(netns: &crate::netns::Netns, addr: Ipv4Addr) -> Result<Self> {
        Self::start_in_netns_with(netns, addr, false)
    }

    /// [`RedisServer::start_in_netns`] serving TLS only on `addr:6379`, with a certificate for
    /// `addr` ([`RedisServer::network_url`] is `rediss://…`, [`RedisServer::ca_file`] its CA);
    /// the test process still uses the plain Unix socket, which never leaves the host.
    pub fn start_in_netns_tls(netns: &crate::netns::Netns, addr: Ipv4Addr) -> Result<Self> {
        Self::start_in_netns_with(netns, addr, true)
    }

    fn start_in_netns_with(netns: &crate::netns::Netns, addr: Ipv4Addr, tls: bool) -> Result<Self> {
        let socket =
            std::env::temp_dir().join(format!("pvpn-redis-{}.sock", crate::unique_suffix()));
        let dir = Self::data_dir(6379)?;
        let tls = match tls {
            true => Some(TlsFiles::generate(&dir.join("tls"), &[addr])?),
            false => None,
        };
        let mut server = Self {
            port: 6379,
            child: None,
            netns: Some((netns.name().to_string(), addr, socket)),
            dir,
            tls,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = match &self.netns {
            Some((netns, addr, socket)) => {
                let mut cmd = Command::new("ip");
                // `ip netns exec` execs redis-server: the child's pid is the server's.
                cmd.args(["netns", "exec", netns, "redis-server", "--bind"])
                    .arg(addr.to_string())
                    .arg("--unixsocket")
                    .arg(socket)
                    .args(["--unixsocketperm", "700"]);
                cmd
            }
            None => {
                let mut cmd = Command::new("redis-server");
                cmd.args(["--bind", "127.0.0.1"]);
                cmd
            }
        };
        match &self.tls {
            // No plain port at all: the TLS port is the only way in.
            Some(tls) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.server_cert)
                .arg("--tls-key-file")
                .arg(&tls.server_key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca_cert)
                // Clients authenticate with ACL passwords, as in production, not certificates.
                .args(["--tls-auth-clients", "no"]),
            None => cmd.args(["--port", &self.port.to_string()]),
        };
        let child = cmd
            .args([
                "--save",
                "",
                "--dir",
                &self.dir.to_string_lossy(),
                "--dbfilename",
                "dump.rdb",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server: is it installed? (scripts/setup.sh installs it)")?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = self.client()
                && let Ok(mut conn) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "redis-server on port {} did not answer within 10 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where the test process connects: `redis://127.0.0.1:<port>/` (`rediss://` for a TLS
    /// server), or for a server in a namespace its Unix socket (`redis+unix:///tmp/….sock`).
    pub fn url(&self) -> String {
        match (&self.netns, &self.tls) {
            (Some((_, _, socket)), _) => format!("redis+unix://{}", socket.display()),
            (None, Some(_)) => format!("rediss://127.0.0.1:{}/", self.port),
            (None, None) => self.plain_url(),
        }
    }

    /// `redis://127.0.0.1:<port>/`: for a TLS server, the plain-TCP attempt it must refuse.
    pub fn plain_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The CA certificate a client must trust to reach a TLS server.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().map(|t| t.ca_cert.as_path())
    }

    /// A client for [`RedisServer::url`], trusting the server's CA when it speaks TLS.
    pub fn client(&self) -> Result<redis::Client> {
        // A server in a namespace is reached through its (plain, local) Unix socket.
        let (Some(tls), None) = (&self.tls, &self.netns) else {
            return Ok(redis::Client::open(self.url())?);
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let root_cert = std::fs::read(&tls.ca_cert).context("reading the test CA")?;
        Ok(redis::Client::build_with_tls(
            self.url(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            },
        )?)
    }

    /// Where processes inside the namespace (guests on its bridge) connect:
    /// `redis://<addr>:6379/` (`rediss://` for a TLS server); the same as [`RedisServer::url`]
    /// for a loopback server.
    pub fn network_url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.netns {
            Some((_, addr, _)) => format!("{scheme}://{addr}:{}/", self.port),
            None => self.url(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server: clients see connection errors until [`RedisServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty, as a Redis without persistence would be
    /// after a restart.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.remove_dump()?;
        self.spawn()
    }

    fn dump_path(&self) -> PathBuf {
        self.dir.join("dump.rdb")
    }

    fn remove_dump(&self) -> Result<()> {
        match std::fs::remove_file(self.dump_path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).context("removing the old dump.rdb")
            }
            _ => Ok(()),
        }
    }

    /// `SAVE`s the data now and keeps a copy of the RDB file under `name`.
    pub fn save_copy(&self, name: &str) -> Result<SavedData> {
        let mut conn = self.connection()?;
        redis::cmd("SAVE").query::<()>(&mut conn).context("SAVE")?;
        let copy = self.dir.join(format!("{name}.rdb"));
        std::fs::copy(self.dump_path(), &copy)
            .with_context(|| format!("copying dump.rdb to {}", copy.display()))?;
        Ok(SavedData(copy))
    }

    /// Kills the server and starts it again on the same port with the data of `saved` (and
    /// nothing written since), as Redis restarted from an older RDB file would be.
    pub fn restart_from(&mut self, saved: &SavedData) -> Result<()> {
        self.stop();
        std::fs::copy(&saved.0, self.dump_path())
            .with_context(|| format!("restoring {}", saved.0.display()))?;
        self.spawn()?;
        // Later restarts start empty again unless a test saves once more.
        self.remove_dump()
    }

    /// A blocking connection, for test assertions.
    pub fn connection(&self) -> Result<redis::Connection> {
        Ok(self.client()?.get_connection()?)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some((_, _, socket)) = &self.netns {
            let _ = std::fs::remove_file(socket);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
