//! systemd's notify protocol (`Type=notify`): `READY=1` once the leases are
//! held and the first passes are done, `STOPPING=1`, `STATUS=…`, and
//! `WATCHDOG=1` pings when the unit sets `WatchdogSec=`.
//!
//! A few lines over a std `UnixDatagram`, so no extra crate. Without
//! `$NOTIFY_SOCKET` (not under systemd) every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Send `state` (newline-separated `KEY=VALUE`s) to systemd, if it listens.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // Abstract socket namespace.
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// How often to ping the watchdog: half of `$WATCHDOG_USEC`, when it is set
/// for this process.
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;
    use std::process::Command;

    use super::*;

    /// Where the child test finds the state to send.
    const CHILD_STATE: &str = "COLTEC_TEST_SDNOTIFY_STATE";

    /// Run [`notify_child`] in a child process of this test binary with
    /// `NOTIFY_SOCKET=socket`. The variable is never set in this process:
    /// tests run in parallel threads, and changing the environment under
    /// them is unsound.
    fn notify_in_child(socket: &str, state: &str) {
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, m)| m);
        let name = format!("{module}::notify_child");
        let out = Command::new(std::env::current_exe().unwrap())
            .args([name.as_str(), "--exact", "--include-ignored"])
            .args(["--test-threads=1", "--quiet"])
            .env("NOTIFY_SOCKET", socket)
            .env(CHILD_STATE, state)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("1 passed"),
            "the child test did not run: {text}"
        );
    }

    #[test]
    #[ignore = "run in a child process by the notify_sends_* tests"]
    fn notify_child() {
        let state = std::env::var(CHILD_STATE).expect("run by the notify_sends_* tests");
        notify(&state);
    }

    fn receive(server: &UnixDatagram) -> String {
        // Only a guard against hanging; the datagram is queued before the
        // child exits.
        server
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn notify_sends_the_state_to_the_socket_path_in_notify_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        notify_in_child(path.to_str().unwrap(), "READY=1\nSTATUS=syncing");
        assert_eq!(receive(&server), "READY=1\nSTATUS=syncing");
    }

    #[test]
    fn notify_sends_the_state_to_an_abstract_notify_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("coltecd-test-sdnotify-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        notify_in_child(&format!("@{name}"), "STOPPING=1");
        assert_eq!(receive(&server), "STOPPING=1");
    }
}
