//! A TCP proxy in front of the test's PostgreSQL database that the test can cut: while cut, open
//! connections are dropped and new ones are closed at once, as when the database host goes
//! away; restored, connections pass again. The database behind it is the real one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

pub struct PgProxy {
    addr: SocketAddr,
    database_url: url::Url,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    task: JoinHandle<()>,
}

impl PgProxy {
    /// Starts a proxy for the server of `database_url`.
    pub async fn start(database_url: &str) -> Result<Self> {
        let database_url = url::Url::parse(database_url).context("database url")?;
        let host = database_url
            .host_str()
            .context("database host")?
            .to_string();
        let port = database_url.port().unwrap_or(5432);
        let upstream = format!("{host}:{port}");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::<AbortHandle>::new()));
        let (accept_up, accept_connections) = (up.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let forward = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut open = accept_connections.lock().unwrap_or_else(|p| p.into_inner());
                open.retain(|h| !h.is_finished());
                open.push(forward.abort_handle());
            }
        });
        Ok(Self {
            addr,
            database_url,
            up,
            connections,
            task,
        })
    }

    /// The database URL with the proxy in place of the server.
    pub fn url(&self) -> String {
        let mut url = self.database_url.clone();
        let _ = url.set_host(Some(&self.addr.ip().to_string()));
        let _ = url.set_port(Some(self.addr.port()));
        url.to_string()
    }

    /// The database is gone: every open connection drops, new ones are closed.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for handle in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            handle.abort();
        }
    }

    /// The database is back.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
