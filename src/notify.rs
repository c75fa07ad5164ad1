//! systemd's readiness protocol (sd_notify(3)) in a few lines of std: READY=1,
//! STATUS= and WATCHDOG=1 as datagrams to $NOTIFY_SOCKET. Without that
//! variable (not started by systemd with Type=notify) every call does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From $NOTIFY_SOCKET (a path, or `@name` for the abstract namespace) and
    /// $WATCHDOG_USEC / $WATCHDOG_PID.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|p| {
            let bytes = p.as_bytes();
            let addr = match bytes.strip_prefix(b"@") {
                Some(name) => SocketAddr::from_abstract_name(name),
                None => SocketAddr::from_pathname(&p),
            };
            match (addr, UnixDatagram::unbound()) {
                (Ok(addr), Ok(sock)) => Some((sock, addr)),
                (Err(e), _) | (_, Err(e)) => {
                    log::warn!("NOTIFY_SOCKET {}: {e}; systemd will not hear from this daemon", p.to_string_lossy());
                    None
                }
            }
        });
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        let watchdog = kick_interval(usec.as_deref(), pid.as_deref(), std::process::id());
        Notifier { socket, watchdog }
    }

    /// How often to send WATCHDOG=1 (half of systemd's WatchdogSec), if asked to.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// Before re-reading settings and input on SIGHUP; READY=1 follows.
    pub fn send_reloading(&self) {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.socket
            && let Err(e) = sock.send_to_addr(msg.as_bytes(), addr)
        {
            log::debug!("sd_notify {msg:?}: {e}");
        }
    }
}

/// Pure: the WATCHDOG=1 period for $WATCHDOG_USEC and $WATCHDOG_PID (when set,
/// the watchdog is meant for that process only), as sd_watchdog_enabled(3):
/// half the timeout, so that one late kick is not fatal.
pub fn kick_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(my_pid)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_the_timeout_and_only_for_this_process() {
        assert_eq!(kick_interval(Some("2000000"), None, 7), Some(Duration::from_secs(1)));
        assert_eq!(kick_interval(Some("2000000"), Some("7"), 7), Some(Duration::from_secs(1)));
        assert_eq!(kick_interval(Some("2000000"), Some("8"), 7), None);
        assert_eq!(kick_interval(Some("0"), None, 7), None);
        assert_eq!(kick_interval(Some("x"), None, 7), None);
        assert_eq!(kick_interval(None, Some("7"), 7), None);
    }
}
