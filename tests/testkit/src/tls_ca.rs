//! A throwaway certificate authority and a Redis server certificate, made with the `openssl` CLI
//! the same way the Ansible `redis` role makes them on the backend host (EC P-256, a CA with
//! `CA:TRUE`, a server certificate for `127.0.0.1` and `localhost` with `serverAuth`).
//!
//! Used by [`crate::redis_server::RedisServer::start_tls`]; a test that needs a CA the server
//! does not use (a client trusting the wrong authority) generates a second one.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The files of one authority and the server certificate it signed, in one directory.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate clients trust (PEM).
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TlsFiles {
    /// Generates a CA and a server certificate for `127.0.0.1`, `localhost` and `addresses`
    /// into `dir`.
    pub fn generate(dir: &Path, addresses: &[Ipv4Addr]) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = Self {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        };
        let ca_key = dir.join("ca.key");
        let csr = dir.join("server.csr");
        let extensions = dir.join("server.ext");
        let names: String = addresses.iter().map(|a| format!(",IP:{a}")).collect();
        std::fs::write(
            &extensions,
            format!(
                "subjectAltName=IP:127.0.0.1,DNS:localhost{names}\n\
                 basicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .context("writing the server certificate's extensions")?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-noenc",
        ];
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-new", "-days", "2"])
                .args(ec)
                .arg("-keyout")
                .arg(&ca_key)
                .arg("-out")
                .arg(&files.ca_cert)
                .args(["-subj", "/CN=PVPN test Redis CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        )?;
        openssl(
            Command::new("openssl")
                .args(["req", "-new"])
                .args(ec)
                .arg("-keyout")
                .arg(&files.server_key)
                .arg("-out")
                .arg(&csr)
                .args(["-subj", "/CN=redis"]),
        )?;
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-set_serial"])
                .arg(format!(
                    "0x{}{}",
                    crate::unique_suffix(),
                    crate::unique_suffix()
                ))
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(&files.ca_cert)
                .arg("-CAkey")
                .arg(&ca_key)
                .arg("-extfile")
                .arg(&extensions)
                .arg("-out")
                .arg(&files.server_cert),
        )?;
        Ok(files)
    }
}

fn openssl(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .context("running openssl: is it installed? (scripts/setup.sh installs it)")?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
