//! The running kernel's release and the minimum edgeplane needs.
//!
//! 5.18 is the floor: the socket programs (bpf/sock.bpf.c) call
//! `bpf_set_retval` (5.18) to fail connect()/sendmsg() with ECONNREFUSED, and
//! use cgroup `getpeername4` (5.8) and bpf links (5.7). The tc program attaches
//! through TCX from 6.6 and falls back to clsact + cls_bpf before that. The
//! programs use no CO-RE relocations, so kernel BTF is not required.
//! Distribution kernels may backport these features to an older release:
//! `EDGEPLANE_SKIP_KERNEL_CHECK=1` skips the check (loading then tells).

use std::fmt;

/// Oldest kernel `run` and `apply` accept.
pub const MINIMUM: Release = Release { major: 5, minor: 18, patch: 0 };
/// From this release the tc program is attached with TCX, before with clsact.
pub const TCX: Release = Release { major: 6, minor: 6, patch: 0 };
/// Set to `1` to skip the minimum-version check (backported kernels).
pub const SKIP_ENV: &str = "EDGEPLANE_SKIP_KERNEL_CHECK";

/// A kernel release's numeric part: `6.1.0-18-amd64` is 6.1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Parses the leading `MAJOR.MINOR[.PATCH]` of a `uname -r` string; what
/// follows (`-18-amd64`, `+`, `_rc1`) is ignored. `None` without MAJOR.MINOR.
pub fn parse_release(s: &str) -> Option<Release> {
    let mut parts = s.trim().splitn(3, '.');
    let num = |p: Option<&str>| -> Option<u32> {
        let p = p?;
        let end = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
        p[..end].parse().ok()
    };
    let major_s = parts.next()?;
    // MAJOR must be only digits (MINOR's end is where the suffix may start).
    if major_s.is_empty() || !major_s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let major = num(Some(major_s))?;
    let minor = num(parts.next())?;
    let patch = num(parts.next()).unwrap_or(0);
    Some(Release { major, minor, patch })
}

/// Whether `release` (a `uname -r` string) is new enough: `Ok(Some(r))` yes,
/// `Ok(None)` unparseable (let it try), `Err` with the message to print.
pub fn check_release(release: &str) -> Result<Option<Release>, String> {
    match parse_release(release) {
        None => Ok(None),
        Some(r) if r >= MINIMUM => Ok(Some(r)),
        Some(r) => Err(format!(
            "kernel {release} ({r}) is older than {MINIMUM}, the minimum edgeplane needs \
             (bpf_set_retval in the socket programs; TCX from {TCX}, clsact before). \
             Set {SKIP_ENV}=1 to try anyway on a kernel with these features backported."
        )),
    }
}

/// The running kernel's `uname -r`.
pub fn running_release() -> std::io::Result<String> {
    // SAFETY: utsname is plain old data; uname fills it with NUL-terminated strings.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: release is NUL-terminated (zeroed, and the kernel terminates it).
    let s = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) };
    Ok(s.to_string_lossy().into_owned())
}

/// The start-up check of `run` and `apply`: `Err` with a message when the
/// running kernel is too old (unless [`SKIP_ENV`] is `1`). `announce`: log the
/// kernel and tc mode at info level (the daemon's start-up), else at debug
/// level (a one-shot command stays quiet).
pub fn check_running(announce: bool) -> Result<(), String> {
    let release = match running_release() {
        Ok(r) => r,
        Err(e) => {
            log::warn!("uname: {e}; not checking the kernel version");
            return Ok(());
        }
    };
    let skip = std::env::var_os(SKIP_ENV).is_some_and(|v| v == "1");
    match check_release(&release) {
        Ok(Some(r)) => {
            let tc = if r >= TCX { "TCX" } else { "clsact (no TCX before 6.6)" };
            let level = if announce { log::Level::Info } else { log::Level::Debug };
            log::log!(level, "kernel {release}: tc programs attach with {tc}");
            Ok(())
        }
        Ok(None) => {
            log::warn!("kernel release {release:?} not understood; not checking it against {MINIMUM}");
            Ok(())
        }
        Err(msg) if skip => {
            log::warn!("{msg} ({SKIP_ENV}=1: going on)");
            Ok(())
        }
        Err(msg) => Err(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(major: u32, minor: u32, patch: u32) -> Release {
        Release { major, minor, patch }
    }

    #[test]
    fn parses_distribution_release_strings() {
        assert_eq!(parse_release("6.1.0-18-amd64"), Some(r(6, 1, 0)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some(r(5, 15, 0)));
        assert_eq!(parse_release("6.18.44-fc-v1300"), Some(r(6, 18, 44)));
        assert_eq!(parse_release("4.18.0-513.5.1.el8_9.x86_64"), Some(r(4, 18, 0)));
        assert_eq!(parse_release("5.14.0-362.8.1.el9_3.x86_64"), Some(r(5, 14, 0)));
        assert_eq!(parse_release("6.6.0-rc1+"), Some(r(6, 6, 0)));
        assert_eq!(parse_release("6.8+"), Some(r(6, 8, 0)));
        assert_eq!(parse_release("6.10.3\n"), Some(r(6, 10, 3)));
        assert_eq!(parse_release("6.1-rt"), Some(r(6, 1, 0)));
    }

    #[test]
    fn rejects_what_is_not_a_release() {
        for s in ["", "6", "linux", "v6.1.0", "6.", ".1.0", "x6.1", "6.x"] {
            assert_eq!(parse_release(s), None, "{s:?}");
        }
    }

    #[test]
    fn orders_numerically_not_as_text() {
        assert!(r(5, 18, 0) > r(5, 9, 0));
        assert!(r(6, 1, 0) > r(5, 18, 99));
        assert!(r(6, 6, 0) > r(6, 5, 100));
        assert!(r(6, 10, 0) > r(6, 9, 0));
    }

    #[test]
    fn minimum_is_accepted_and_older_refused_with_a_clear_message() {
        assert_eq!(check_release("5.18.0"), Ok(Some(r(5, 18, 0))));
        assert_eq!(check_release("6.1.0-18-amd64"), Ok(Some(r(6, 1, 0))));
        assert_eq!(check_release("weird"), Ok(None));
        for old in ["5.17.15", "5.15.0-91-generic", "4.18.0-513.el8.x86_64"] {
            let msg = check_release(old).expect_err(old);
            assert!(msg.contains(old) && msg.contains("5.18.0") && msg.contains(SKIP_ENV), "{msg}");
        }
    }

    #[test]
    fn the_running_kernel_has_a_parseable_release() {
        let release = running_release().expect("uname");
        assert!(parse_release(&release).is_some(), "{release:?}");
    }
}
