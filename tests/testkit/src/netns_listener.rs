//! A TCP listener opened inside a network namespace by this very process, so that an in-process
//! server (such as [`crate::botapi::BotApiServer`]) serves clients that live in that namespace:
//! QEMU guests on a [`crate::vm::GuestNetwork`] bridge reach no other.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use anyhow::{Context, Result, anyhow, bail};

use crate::netns::Netns;

/// Binds `addr` inside `netns`. A socket stays in the namespace it was created in, so the
/// listener keeps serving that namespace from any thread; only the short-lived thread that
/// creates it enters the namespace (`setns` changes the calling thread alone).
pub fn bind_tcp_in(netns: &Netns, addr: SocketAddr) -> Result<TcpListener> {
    let path = format!("/var/run/netns/{}", netns.name());
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<TcpListener> {
                let ns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
                // SAFETY: `ns` is an open namespace file for the duration of the call, and the
                // namespace switch affects only this thread, which ends right after binding.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    bail!(
                        "entering namespace {}: {}",
                        netns.name(),
                        std::io::Error::last_os_error()
                    );
                }
                TcpListener::bind(addr)
                    .with_context(|| format!("binding {addr} in namespace {}", netns.name()))
            })
            .join()
            .map_err(|_| anyhow!("the thread entering namespace {} panicked", netns.name()))?
    })
}
