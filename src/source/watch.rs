//! "Something changed below these directories": inotify through `notify`,
//! debounced. Events are never interpreted beyond that; the caller reads a
//! fresh snapshot and compares content hashes, so missed or odd event kinds
//! (a `..data` swap arriving as a rename, an editor's rename-over save) cannot
//! lose an update as long as some event arrives at all.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

use super::SourceError;

/// What [`Watcher::wait_for_change`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEvent {
    /// Files changed; the burst has settled for the debounce interval.
    Changed,
    /// Events were lost (inotify queue overflow) or the watcher failed: read
    /// everything again. Watches have been re-installed where possible.
    Rescan,
    /// Nothing happened within the timeout.
    Timeout,
}

/// Watches directories recursively (directories, not files: inotify watches
/// follow inodes, and both editors and the kubelet replace files by rename).
pub struct Watcher {
    watcher: RecommendedWatcher,
    rx: Receiver<notify::Result<notify::Event>>,
    /// (path, mode) pairs to (re-)install.
    targets: Vec<(PathBuf, RecursiveMode)>,
    debounce: Duration,
    /// When the first event of the last reported burst arrived.
    burst_start: Option<Instant>,
}

/// Quiet time that ends a burst of events.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// A burst that never goes quiet is still reported after this long.
const MAX_BURST: Duration = Duration::from_secs(2);

impl Watcher {
    pub fn new(dirs: &[PathBuf]) -> Result<Watcher, SourceError> {
        let (tx, rx) = mpsc::channel();
        let watcher = notify::recommended_watcher(tx).map_err(|e| SourceError::Watch(e.to_string()))?;
        let mut targets = Vec::new();
        for dir in dirs {
            targets.push((dir.clone(), RecursiveMode::Recursive));
            // A symlinked root (git-sync --link) is swapped in its parent;
            // the watch on the old target would go silent.
            let is_link = std::fs::symlink_metadata(dir).map(|m| m.file_type().is_symlink()).unwrap_or(false);
            if is_link {
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    targets.push((parent.to_path_buf(), RecursiveMode::NonRecursive));
                } else {
                    targets.push((PathBuf::from("."), RecursiveMode::NonRecursive));
                }
            }
        }
        let mut w = Watcher { watcher, rx, targets, debounce: DEBOUNCE, burst_start: None };
        for (path, mode) in w.targets.clone() {
            w.watcher.watch(&path, mode).map_err(|e| SourceError::Watch(format!("{}: {e}", path.display())))?;
        }
        Ok(w)
    }

    /// Waits up to `timeout` for a change, then for the burst to settle.
    pub fn wait_for_change(&mut self, timeout: Duration) -> WatchEvent {
        let deadline = Instant::now() + timeout;
        let first = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                // Our own reads of the directory (and anyone else's) are not changes.
                Ok(ev) if is_read_only(&ev) => continue,
                Ok(ev) => break ev,
                Err(RecvTimeoutError::Timeout) => return WatchEvent::Timeout,
                Err(RecvTimeoutError::Disconnected) => {
                    self.rewatch();
                    return WatchEvent::Rescan;
                }
            }
        };
        log::debug!("watch event: {first:?}");
        self.burst_start = Some(Instant::now());
        let mut rescan = self.needs_rescan(&first);
        let start = Instant::now();
        while start.elapsed() < MAX_BURST {
            match self.rx.recv_timeout(self.debounce) {
                Ok(ev) if is_read_only(&ev) => {}
                Ok(ev) => rescan |= self.needs_rescan(&ev),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    rescan = true;
                    break;
                }
            }
        }
        if rescan {
            self.rewatch();
            WatchEvent::Rescan
        } else {
            WatchEvent::Changed
        }
    }

    /// Re-installs every watch: after an overflow or error, or when a watched
    /// root was deleted and created again.
    fn rewatch(&mut self) {
        for (path, mode) in self.targets.clone() {
            let _ = self.watcher.unwatch(&path);
            if let Err(e) = self.watcher.watch(&path, mode) {
                log::warn!("cannot watch {}: {e}", path.display());
            }
        }
    }

    #[cfg(test)]
    fn with_debounce(mut self, d: Duration) -> Self {
        self.debounce = d;
        self
    }
}

/// Opening, reading or closing without writing changes nothing.
fn is_read_only(ev: &notify::Result<notify::Event>) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match ev {
        Ok(ev) => {
            matches!(ev.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write))
        }
        Err(_) => false,
    }
}

impl Watcher {
    /// When the first event of the change last reported arrived (before the
    /// debounce): the start of the file-change → maps latency.
    pub fn burst_start(&self) -> Option<Instant> {
        self.burst_start
    }

    fn needs_rescan(&self, ev: &notify::Result<notify::Event>) -> bool {
        match ev {
            Err(e) => {
                log::warn!("file watcher error: {e}");
                true
            }
            // IN_Q_OVERFLOW, or a watched root removed (its watch is gone).
            // Files and directories removed below a root (the old timestamped
            // directory after a `..data` swap) are ordinary changes.
            Ok(ev) => {
                ev.need_rescan()
                    || (ev.kind.is_remove() && ev.paths.iter().any(|p| self.targets.iter().any(|(t, _)| t == p)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    const LONG: Duration = Duration::from_secs(10);

    #[test]
    fn reports_writes_renames_and_data_swaps() {
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path().to_path_buf();
        fs::create_dir(root.join("sub")).expect("mkdir");
        let mut w = Watcher::new(std::slice::from_ref(&root)).expect("watch").with_debounce(Duration::from_millis(100));
        let _ = env_logger::builder().is_test(true).filter_level(log::LevelFilter::Debug).try_init();
        assert_eq!(w.wait_for_change(Duration::from_millis(50)), WatchEvent::Timeout);

        fs::write(root.join("a.yaml"), "a: 1\n").expect("write");
        assert_eq!(w.wait_for_change(LONG), WatchEvent::Changed);

        // Editor save: write a temp file, rename it over the original.
        fs::write(root.join(".a.yaml.swp"), "a: 2\n").expect("write");
        fs::rename(root.join(".a.yaml.swp"), root.join("a.yaml")).expect("rename");
        assert_eq!(w.wait_for_change(LONG), WatchEvent::Changed);

        // Recursive: a file in a subdirectory.
        fs::write(root.join("sub/b.yaml"), "b: 1\n").expect("write");
        assert_eq!(w.wait_for_change(LONG), WatchEvent::Changed);

        // kubelet-style ..data swap: new dir, temp link, rename over ..data.
        fs::create_dir(root.join("..v2")).expect("mkdir");
        fs::write(root.join("..v2/c.yaml"), "c: 1\n").expect("write");
        symlink("..v2", root.join("..data_tmp")).expect("symlink");
        assert_eq!(w.wait_for_change(LONG), WatchEvent::Changed);
        fs::create_dir(root.join("..v3")).expect("mkdir");
        symlink("..v3", root.join("..data_tmp2")).expect("symlink");
        fs::rename(root.join("..data_tmp2"), root.join("..data_tmp")).expect("rename");
        assert_eq!(w.wait_for_change(LONG), WatchEvent::Changed);
        // The kubelet then removes the old version's directory: a change, not a
        // lost watch (this used to log "watch queue overflowed").
        fs::remove_dir_all(root.join("..v2")).expect("rm old version");
        assert_eq!(w.wait_for_change(LONG), WatchEvent::Changed);

        // A burst is coalesced (how many reports depends on scheduling, but
        // 60 file events do not give 60 reports), and then it goes quiet.
        for i in 0..20 {
            fs::write(root.join(format!("f{i}.yaml")), "x: 1\n").expect("write");
        }
        assert_eq!(w.wait_for_change(LONG), WatchEvent::Changed);
        let mut extra = 0;
        while w.wait_for_change(Duration::from_millis(500)) != WatchEvent::Timeout {
            extra += 1;
            assert!(extra < 20, "burst not coalesced");
        }
    }

    #[test]
    fn removed_root_asks_for_a_rescan() {
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path().join("cfg");
        fs::create_dir(&root).expect("mkdir");
        let mut w = Watcher::new(std::slice::from_ref(&root)).expect("watch").with_debounce(Duration::from_millis(100));
        fs::remove_dir(&root).expect("rmdir");
        assert_eq!(w.wait_for_change(LONG), WatchEvent::Rescan);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let d = tempfile::tempdir().expect("tmp");
        assert!(Watcher::new(&[d.path().join("nope")]).is_err());
    }
}
