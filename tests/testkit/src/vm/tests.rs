//! The guest fixture itself: boots, runs commands with their exit codes and deadlines, copies
//! files in, reaches a service on the bridge, has kernel WireGuard, and leaves nothing behind when
//! a test panics.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use crate::redis_server::RedisServer;

const T: Duration = Duration::from_secs(60);

fn netns_exists(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn a_guest_boots_runs_commands_reaches_the_bridge_and_is_cleaned_up_on_panic() {
    let net = GuestNetwork::create().unwrap();
    let redis = RedisServer::start_in_netns(net.netns(), net.host_addr()).unwrap();
    let guest = DebianGuest::boot(&net).unwrap();

    // Exit codes and output come back; a command past its deadline is an error.
    let out = guest.run("echo out; echo err >&2; exit 3", T).unwrap();
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(3), "out\n", "err\n")
    );
    let late = guest.run("sleep 30", Duration::from_secs(1)).unwrap_err();
    assert!(format!("{late:#}").contains("did not finish"), "{late:#}");
    assert!(guest.run_ok("false", T).is_err());

    // Files go in byte for byte, with their mode.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let host_file = std::env::temp_dir().join(format!("pvpn-vm-test-{}", crate::unique_suffix()));
    std::fs::File::create(&host_file)
        .unwrap()
        .write_all(&data)
        .unwrap();
    guest.copy_in(&host_file, "/root/data", 0o750).unwrap();
    std::fs::remove_file(&host_file).unwrap();
    let sum = guest
        .run_ok("stat -c %a /root/data; cksum < /root/data", T)
        .unwrap();
    let expected = Command::new("cksum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(&data)?;
            let mut s = String::new();
            c.stdout.take().unwrap().read_to_string(&mut s)?;
            c.wait()?;
            Ok(s)
        })
        .unwrap();
    assert_eq!(sum, format!("750\n{expected}"));

    // The guest reaches a service on the bridge address; the host side reaches the guest.
    // (root's shell in the guest is bash, which has /dev/tcp.)
    let ping = format!(
        "exec 3<>/dev/tcp/{}/6379 && printf 'PING\\r\\n' >&3 && head -c 7 <&3",
        net.host_addr()
    );
    assert_eq!(guest.run_ok(&ping, T).unwrap(), "+PONG\r\n");
    net.netns().ping(guest.addr()).unwrap();
    assert!(
        guest.addr().octets()[..2] == [198, 18] && guest.addr() != Ipv4Addr::new(198, 18, 0, 1)
    );

    // Real kernel WireGuard.
    guest
        .run_ok("ip link add wg0 type wireguard && wg show wg0", T)
        .unwrap();

    // A panicking test still stops QEMU and removes the namespace.
    let pid = guest.pid().unwrap();
    let ns = net.netns().name().to_string();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _guest = guest;
        let _redis = redis;
        let _net = net;
        panic!("a failing test");
    }));
    assert!(unwound.is_err());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} still runs"
    );
    assert!(!netns_exists(&ns), "namespace {ns} left behind");
}
