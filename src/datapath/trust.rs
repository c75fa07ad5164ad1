//! Trust nothing found on disk: the state directory is walked from `/` one
//! component at a time without following symlinks (`openat(O_NOFOLLOW)` on
//! the parent's fd, then `fstat` compared with the `lstat` that was checked),
//! created 0700 when missing, and refused when it is a symlink, belongs to
//! another user or is writable by group/others. Pins found in it must be ours.
//!
//! One writer per state directory: a `flock` on the directory's own fd. `run`
//! holds it for its lifetime and fails at once when another instance holds
//! it; `apply` and `reset` wait (naming the holder, from /proc/locks), then
//! fail.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// How long `apply` and `reset` wait for another instance to finish.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// What to do when another process holds the state directory's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Fail at once (`run`: two daemons on one state directory are a mistake).
    Fail,
    /// Wait up to this long, then fail (`apply`, `reset`).
    Upto(Duration),
}

/// What `lstat` says about one path component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub uid: u32,
    /// Permission bits, including setuid/setgid/sticky (st_mode & 0o7777).
    pub mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Symlink,
    Other,
}

impl Entry {
    fn from_stat(st: &libc::stat) -> Entry {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        };
        Entry { kind, uid: st.st_uid, mode: st.st_mode & 0o7777 }
    }
}

/// The state directory's own entry: fine, or ours but readable by others
/// (an older edgeplane made it 0755): tighten it to 0700.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirVerdict {
    Ok,
    Tighten,
}

/// A directory on the way to the state directory (`/`, `/sys`, `/sys/fs/bpf`):
/// a real directory, owned by root or by us, and writable by nobody else,
/// unless the sticky bit keeps others from renaming or removing our entries
/// (bpffs mounted without `mode=`, like /tmp).
pub fn check_parent(path: &Path, e: &Entry, euid: u32) -> Result<()> {
    match e.kind {
        Kind::Dir => {}
        Kind::Symlink => bail!(
            "{} is a symlink: the state directory must be reached without symlinks; give its real path",
            path.display()
        ),
        Kind::Other => bail!("{} is not a directory", path.display()),
    }
    if e.uid != 0 && e.uid != euid {
        bail!(
            "{} belongs to uid {}: a directory above the state directory must belong to root{}",
            path.display(),
            e.uid,
            if euid == 0 { String::new() } else { format!(" or to uid {euid}") }
        );
    }
    if e.mode & 0o022 != 0 && e.mode & libc::S_ISVTX == 0 {
        bail!(
            "{} is writable by group or others (mode {:04o}): anyone could replace the state directory; \
             chmod go-w {} (or mount bpffs with -o mode=0700)",
            path.display(),
            e.mode,
            path.display()
        );
    }
    Ok(())
}

/// The state directory itself (or its `links/`).
pub fn check_state_dir(path: &Path, e: &Entry, euid: u32) -> Result<DirVerdict> {
    match e.kind {
        Kind::Dir => {}
        Kind::Symlink => bail!(
            "state directory {} is a symlink: refusing to follow it (it could lead to another instance's \
             pins); give the real path of a directory edgeplane owns",
            path.display()
        ),
        Kind::Other => bail!("state directory {} is not a directory", path.display()),
    }
    if e.uid != euid {
        bail!(
            "state directory {} belongs to uid {}, not to uid {euid} that runs edgeplane: another user \
             created it and could unpin the links. Check what it holds (ls -la {}), remove it \
             (rm -r {}) and run edgeplane again; it creates the directory itself, mode 0700",
            path.display(),
            e.uid,
            path.display(),
            path.display()
        );
    }
    if e.mode & 0o022 != 0 {
        bail!(
            "state directory {} is writable by group or others (mode {:04o}): others could have replaced \
             pins in it. Check what it holds (ls -la {}), then chmod 0700 {} (or remove it with \
             `edgeplane reset`)",
            path.display(),
            e.mode,
            path.display(),
            path.display()
        );
    }
    if e.mode & 0o077 != 0 { Ok(DirVerdict::Tighten) } else { Ok(DirVerdict::Ok) }
}

/// A pin found in the state directory: ours, and not a symlink.
pub fn check_pin(path: &Path, e: &Entry, euid: u32) -> Result<()> {
    if e.kind == Kind::Symlink {
        bail!("{} is a symlink, not a pin: refusing to follow it; remove it", path.display());
    }
    if e.uid != euid {
        bail!(
            "pin {} belongs to uid {}, not to uid {euid} that runs edgeplane: refusing to use it; \
             remove it (or run `edgeplane reset`) if it is not meant to be there",
            path.display(),
            e.uid
        );
    }
    Ok(())
}

/// The absolute path's components below `/`; `..` is refused (it would make
/// the checks walk a different path than the one used later).
pub fn components(path: &Path) -> Result<Vec<OsString>> {
    if !path.is_absolute() {
        bail!("state directory {} must be an absolute path", path.display());
    }
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => bail!("state directory {} must not contain `..`", path.display()),
            Component::Prefix(_) => bail!("state directory {}: unsupported path", path.display()),
        }
    }
    if out.is_empty() {
        bail!("state directory must not be `/`");
    }
    Ok(out)
}

/// The pid holding a flock on device `dev` (major, minor), inode `ino`,
/// according to /proc/locks; waiters (`->` lines) are skipped.
pub fn lock_holder(proc_locks: &str, dev: (u32, u32), ino: u64) -> Option<u32> {
    let want = format!("{:02x}:{:02x}:{ino}", dev.0, dev.1);
    proc_locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1) != Some(&"FLOCK") || f.get(5) != Some(&want.as_str()) {
            return None;
        }
        f.get(4)?.parse().ok()
    })
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn cstr(s: &[u8]) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("path contains NUL"))
}

fn fstatat(dir: &OwnedFd, name: &CString) -> std::io::Result<libc::stat> {
    // SAFETY: valid fd, NUL-terminated name, zeroed out-struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if rc == 0 { Ok(st) } else { Err(std::io::Error::last_os_error()) }
}

fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    // SAFETY: valid fd, zeroed out-struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
    if rc == 0 { Ok(st) } else { Err(std::io::Error::last_os_error()) }
}

fn open_dir_at(dir: Option<&OwnedFd>, name: &CString) -> std::io::Result<OwnedFd> {
    let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid fd (or AT_FDCWD with an absolute name), NUL-terminated name.
    let fd = unsafe { libc::openat(at, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Walks `path` from `/` without following symlinks, checking every parent
/// and the directory itself; creates missing components with mode 0700 when
/// `create`. Returns the directory's fd, or None when it is missing and not
/// created.
pub fn open_checked_dir(path: &Path, create: bool) -> Result<Option<OwnedFd>> {
    let names = components(path)?;
    let me = euid();
    let mut cur = open_dir_at(None, &cstr(b"/")?).context("opening /")?;
    check_parent(Path::new("/"), &Entry::from_stat(&fstat(&cur).context("stat /")?), me)?;
    let mut shown = PathBuf::from("/");
    for (i, name) in names.iter().enumerate() {
        shown.push(name);
        let last = i + 1 == names.len();
        let c = cstr(name.as_bytes())?;
        let st = match fstatat(&cur, &c) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if !create {
                    return Ok(None);
                }
                // SAFETY: valid fd and NUL-terminated name.
                let rc = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o700) };
                let err = std::io::Error::last_os_error();
                if rc != 0 && err.raw_os_error() != Some(libc::EEXIST) {
                    return Err(err).with_context(|| format!("creating {}", shown.display()));
                }
                fstatat(&cur, &c).with_context(|| format!("stat {}", shown.display()))?
            }
            Err(e) => return Err(e).with_context(|| format!("stat {}", shown.display())),
        };
        let entry = Entry::from_stat(&st);
        let verdict = if last {
            check_state_dir(&shown, &entry, me)?
        } else {
            check_parent(&shown, &entry, me).map(|()| DirVerdict::Ok)?
        };
        let fd = open_dir_at(Some(&cur), &c).with_context(|| format!("opening {}", shown.display()))?;
        let now = fstat(&fd).with_context(|| format!("stat {}", shown.display()))?;
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
            bail!("{} was replaced while being checked; try again", shown.display());
        }
        if verdict == DirVerdict::Tighten {
            // SAFETY: valid fd.
            if unsafe { libc::fchmod(fd.as_raw_fd(), 0o700) } != 0 {
                return Err(std::io::Error::last_os_error()).with_context(|| format!("chmod 0700 {}", shown.display()));
            }
            log::info!("{}: mode {:04o} tightened to 0700", shown.display(), entry.mode);
        }
        cur = fd;
    }
    Ok(Some(cur))
}

/// `lstat` of a pin path: None when absent, refused when it is not ours or a
/// symlink.
pub fn pin_present(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(md) => {
            use std::os::unix::fs::MetadataExt;
            let ft = md.file_type();
            let kind = if ft.is_symlink() {
                Kind::Symlink
            } else if ft.is_dir() {
                Kind::Dir
            } else {
                Kind::Other
            };
            check_pin(path, &Entry { kind, uid: md.uid(), mode: md.mode() & 0o7777 }, euid())?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("stat {}", path.display())),
    }
}

/// A checked state directory, locked for this process until dropped.
#[derive(Debug)]
pub struct StateDir {
    _fd: OwnedFd,
}

fn flock_nb(fd: &OwnedFd) -> std::io::Result<bool> {
    // SAFETY: valid fd.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) { Ok(false) } else { Err(e) }
}

fn holder_of(fd: &OwnedFd) -> Option<u32> {
    let st = fstat(fd).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    lock_holder(&locks, (libc::major(st.st_dev), libc::minor(st.st_dev)), st.st_ino)
}

/// Check (creating it when `create`) and lock the state directory. None when
/// it is missing and not created.
pub fn lock_state_dir(path: &Path, create: bool, wait: LockWait) -> Result<Option<StateDir>> {
    // A directory removed (`reset`) while we waited for its lock: start over
    // on whatever the path names now.
    for _ in 0..5 {
        let Some(fd) = open_checked_dir(path, create)? else { return Ok(None) };
        let started = Instant::now();
        let mut told = false;
        while !flock_nb(&fd).with_context(|| format!("locking {}", path.display()))? {
            let limit = match wait {
                LockWait::Fail => Duration::ZERO,
                LockWait::Upto(d) => d,
            };
            let timed_out = started.elapsed() >= limit;
            if told && !timed_out {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            // /proc/locks is read only to name the holder: once, and at the end.
            let holder = holder_of(&fd).map_or_else(|| "another process".to_string(), |p| format!("pid {p}"));
            if timed_out {
                let waited = if limit.is_zero() { String::new() } else { format!(" (waited {} s)", limit.as_secs()) };
                bail!(
                    "state directory {} is in use by {holder}{waited}: one edgeplane writes it at a time. \
                     `edgeplane run` holds it while it runs and applies changes itself; stop it first \
                     (systemctl stop edgeplane) to apply or reset by hand",
                    path.display()
                );
            }
            log::warn!("state directory {} is in use by {holder}: waiting up to {} s", path.display(), limit.as_secs());
            told = true;
        }
        let st = fstat(&fd).with_context(|| format!("stat {}", path.display()))?;
        let same = std::fs::symlink_metadata(path).ok().is_some_and(|md| {
            use std::os::unix::fs::MetadataExt;
            (md.dev(), md.ino()) == (st.st_dev, st.st_ino)
        });
        if st.st_nlink > 0 && same {
            return Ok(Some(StateDir { _fd: fd }));
        }
    }
    bail!("state directory {} keeps being removed and re-created; try again", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(uid: u32, mode: u32) -> Entry {
        Entry { kind: Kind::Dir, uid, mode }
    }

    #[test]
    fn parents_must_be_real_trusted_directories() {
        let p = Path::new("/sys/fs/bpf");
        assert!(check_parent(p, &dir(0, 0o755), 0).is_ok());
        assert!(check_parent(p, &dir(0, 0o700), 0).is_ok());
        // bpffs mounted without mode=: world-writable but sticky, like /tmp.
        assert!(check_parent(p, &dir(0, 0o1777), 0).is_ok());
        let e = check_parent(p, &dir(0, 0o777), 0).unwrap_err().to_string();
        assert!(e.contains("writable by group or others") && e.contains("chmod go-w /sys/fs/bpf"), "{e}");
        let e = check_parent(p, &dir(1000, 0o755), 0).unwrap_err().to_string();
        assert!(e.contains("belongs to uid 1000"), "{e}");
        assert!(check_parent(p, &dir(1000, 0o755), 1000).is_ok(), "our own parent");
        let e = check_parent(p, &Entry { kind: Kind::Symlink, uid: 0, mode: 0o777 }, 0).unwrap_err().to_string();
        assert!(e.contains("is a symlink"), "{e}");
    }

    #[test]
    fn state_dir_must_be_ours_and_private() {
        let p = Path::new("/sys/fs/bpf/edgeplane");
        assert_eq!(check_state_dir(p, &dir(0, 0o700), 0).unwrap(), DirVerdict::Ok);
        assert_eq!(check_state_dir(p, &dir(0, 0o755), 0).unwrap(), DirVerdict::Tighten);
        assert_eq!(check_state_dir(p, &dir(0, 0o750), 0).unwrap(), DirVerdict::Tighten);
        let e = check_state_dir(p, &dir(65534, 0o700), 0).unwrap_err().to_string();
        assert!(e.contains("belongs to uid 65534") && e.contains("rm -r /sys/fs/bpf/edgeplane"), "{e}");
        let e = check_state_dir(p, &dir(0, 0o777), 0).unwrap_err().to_string();
        assert!(e.contains("writable by group or others (mode 0777)") && e.contains("chmod 0700"), "{e}");
        let e = check_state_dir(p, &dir(0, 0o1777), 0).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "sticky does not help here: {e}");
        let e = check_state_dir(p, &Entry { kind: Kind::Symlink, uid: 0, mode: 0o777 }, 0).unwrap_err().to_string();
        assert!(e.contains("is a symlink"), "{e}");
        let e = check_state_dir(p, &Entry { kind: Kind::Other, uid: 0, mode: 0o600 }, 0).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn pins_must_be_ours() {
        let p = Path::new("/sys/fs/bpf/edgeplane/ep_svc_v1");
        let pin = |uid| Entry { kind: Kind::Other, uid, mode: 0o600 };
        assert!(check_pin(p, &pin(0), 0).is_ok());
        let e = check_pin(p, &pin(65534), 0).unwrap_err().to_string();
        assert!(e.contains("belongs to uid 65534"), "{e}");
        assert!(check_pin(p, &Entry { kind: Kind::Symlink, uid: 0, mode: 0o777 }, 0).is_err());
    }

    #[test]
    fn paths_are_absolute_without_dotdot() {
        assert_eq!(components(Path::new("/sys/fs/bpf/ep/")).unwrap(), vec!["sys", "fs", "bpf", "ep"]);
        assert_eq!(components(Path::new("/sys/./fs")).unwrap(), vec!["sys", "fs"]);
        assert!(components(Path::new("sys/fs/bpf")).is_err());
        assert!(components(Path::new("/sys/fs/bpf/../../etc")).is_err());
        assert!(components(Path::new("/")).is_err());
    }

    #[test]
    fn lock_holder_from_proc_locks() {
        let locks = "1: POSIX  ADVISORY  WRITE 77 00:1a:42 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 5526 00:1a:5309245 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 6000 00:1a:5309245 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 1234 fe:00:42 0 EOF\n";
        assert_eq!(lock_holder(locks, (0, 0x1a), 5309245), Some(5526));
        assert_eq!(lock_holder(locks, (0xfe, 0), 42), Some(1234));
        assert_eq!(lock_holder(locks, (0, 0x1a), 42), None, "a POSIX lock is not ours");
        assert_eq!(lock_holder(locks, (0, 0x1b), 5309245), None);
    }
}
