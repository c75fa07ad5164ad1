//! The only module that reads the configuration input from the filesystem:
//! one consistent snapshot of a directory tree ([`read_snapshot`]) and a
//! watcher that says when to take the next one ([`Watcher`]).
//!
//! Kubernetes-style directories publish updates by swapping a symlink: the
//! kubelet's ConfigMap volumes swap `DIR/..data` (the visible files are
//! symlinks through it), git-sync swaps its `--link`. Both are handled by
//! resolving the link once and reading every file through the resolved path,
//! so a swap in the middle of a read cannot mix two versions.

mod watch;

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::diag::{Diagnostic, Span};

pub use watch::{WatchEvent, Watcher};

/// Bounds for one load. The defaults suit a node with a few hundred MB to spare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadLimits {
    /// Larger files are reported and not read (setting `max-file-size`).
    pub max_file_size: u64,
    /// Valid nodePort values (setting `node-port-range`), checked by the model.
    pub node_port_range: (u16, u16),
    /// Deepest YAML nesting accepted (default 128).
    pub max_depth: usize,
    /// Most YAML nodes one document may build, alias copies included (default 2,000,000).
    pub max_nodes: usize,
    /// Parser threads; 0 = one per available core, at most 4 (default 0).
    pub threads: usize,
    /// When set, every directory and file read (and the directories above the
    /// configured one) must be owned by this user or root and not writable by
    /// group or others: whoever can write the input controls the node's
    /// traffic. Default: root when running as root, else no check.
    pub trusted_owner: Option<u32>,
    /// Follow symlinks that resolve outside the configured directory
    /// (default false: they are reported and never read).
    pub allow_external_symlinks: bool,
    /// Report `trusted_owner` violations as warnings and read the input anyway
    /// (`check`: it validates content and applies nothing).
    pub untrusted_warns: bool,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            max_file_size: crate::config::DEFAULT_MAX_FILE_SIZE,
            node_port_range: crate::config::DEFAULT_NODE_PORT_RANGE,
            max_depth: 128,
            max_nodes: 2_000_000,
            threads: 0,
            // SAFETY: geteuid has no preconditions and cannot fail.
            trusted_owner: (unsafe { libc::geteuid() } == 0).then_some(0),
            allow_external_symlinks: false,
            untrusted_warns: false,
        }
    }
}

/// One input file, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path as shown in diagnostics: the directory as given, joined with
    /// the path inside it (through `..data` the visible name is kept).
    pub path: Arc<str>,
    pub text: String,
}

/// Everything read from the configured directories at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Sorted by path within each directory, directories in the order given.
    pub files: Vec<SourceFile>,
    /// Files that could not be used (unreadable, too big, not UTF-8, binary,
    /// symlink loops, vanished while reading): one error each.
    pub problems: Vec<Diagnostic>,
    /// Hash of every path, text and problem: equal hashes mean nothing changed.
    pub content_hash: u64,
    /// The basename of the `..data` or git-sync link target (a timestamped
    /// directory name or a commit hash), when the input is published that way.
    pub version: Option<String>,
    /// The latest modification time of any file or directory read: input
    /// younger than the settle window may still be being written.
    pub newest_mtime: Option<SystemTime>,
}

/// The input cannot be read at all (exit code 2 for `check`).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: no such file or directory")]
    Missing { path: String },
    #[error("{path}: not a directory or regular file")]
    NotADirectory { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("file watcher: {0}")]
    Watch(String),
    #[error("{path}: refused: {why}; only root may write the settings (fix: chown root {path}; chmod go-w {path})")]
    Untrusted { path: String, why: String },
}

/// Reads the daemon's own settings file (`--config`). As root, a regular file
/// that another user owns or that group or others can write is refused: it
/// names the interfaces and the state directory.
pub fn read_settings_file(path: &Path) -> Result<String, SourceError> {
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => SourceError::Missing { path: path.display().to_string() },
        _ => SourceError::Io { path: path.display().to_string(), source },
    };
    let mut file = fs::File::open(path).map_err(io_error)?;
    let meta = file.metadata().map_err(io_error)?;
    if let Some(owner) = LoadLimits::default().trusted_owner
        && meta.is_file()
        && ownership_problem(&meta, owner, false).is_some()
    {
        return Err(SourceError::Untrusted {
            path: path.display().to_string(),
            why: format!("owned by uid {} with mode {:04o}", meta.uid(), meta.mode() & 0o7777),
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io_error)?;
    Ok(text)
}

/// Why someone other than `owner` (or root) could change what `meta`
/// describes: another owner, or group/other write permission (which a sticky
/// directory's neighbours cannot use on entries they do not own).
fn ownership_problem(meta: &fs::Metadata, owner: u32, sticky_ok: bool) -> Option<String> {
    let sticky = sticky_ok && meta.mode() & 0o1000 != 0;
    if meta.uid() != owner && meta.uid() != 0 {
        Some(format!("owned by uid {}, not root", meta.uid()))
    } else if meta.mode() & 0o022 != 0 && !sticky {
        Some(format!("writable by group or others (mode {:04o})", meta.mode() & 0o7777))
    } else {
        None
    }
}

/// Reads every `*.yaml`, `*.yml` and `*.json` below each of `dirs`
/// (recursively, hidden names skipped). A path in `dirs` may also name one
/// file, which is read whatever its extension.
pub fn read_snapshot(dirs: &[PathBuf], limits: &LoadLimits) -> Result<Snapshot, SourceError> {
    let mut reader =
        Reader { limits, snapshot: Snapshot::default(), visited: HashSet::new(), boundary: PathBuf::new() };
    for dir in dirs {
        reader.read_root(dir)?;
    }
    let mut hasher = Hasher::new();
    for f in &reader.snapshot.files {
        hasher.write(f.path.as_bytes());
        hasher.write(&[0xff]);
        hasher.write(f.text.as_bytes());
        hasher.write(&[0xfe]);
    }
    for p in &reader.snapshot.problems {
        hasher.write(p.to_string().as_bytes());
    }
    reader.snapshot.content_hash = hasher.finish();
    Ok(reader.snapshot)
}

struct Reader<'a> {
    limits: &'a LoadLimits,
    snapshot: Snapshot,
    /// (device, inode) of directories already read: symlink cycles end here.
    visited: HashSet<(u64, u64)>,
    /// The resolved configured directory: symlinks must stay below it.
    boundary: PathBuf,
}

fn display(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn whole_file(path: &str) -> Span {
    Span { file: Arc::from(path), line: 1, col: 1 }
}

impl Reader<'_> {
    fn problem(&mut self, shown: &str, message: impl Into<String>) {
        self.snapshot.problems.push(Diagnostic::error(whole_file(shown), None, "", message));
    }

    fn read_root(&mut self, dir: &Path) -> Result<(), SourceError> {
        let shown = display(dir);
        let io_error = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => SourceError::Missing { path: shown.clone() },
            _ => SourceError::Io { path: shown.clone(), source: e },
        };
        let meta = fs::metadata(dir).map_err(io_error)?;
        // Resolves a git-sync style root (the configured path itself is a
        // swapped symlink) and symlinked parents alike.
        let real = fs::canonicalize(dir).map_err(io_error)?;
        self.check_parents(&real, &shown);
        if meta.is_file() {
            self.boundary = real.clone();
            self.read_file(&real, &shown);
            return Ok(());
        }
        if !meta.is_dir() {
            return Err(SourceError::NotADirectory { path: shown });
        }
        let is_link = fs::symlink_metadata(dir).map(|m| m.file_type().is_symlink()).unwrap_or(false);
        if is_link {
            self.set_version(&real);
        }
        // Fail early (exit 2) when the root itself cannot be listed.
        fs::read_dir(&real).map_err(|e| SourceError::Io { path: shown.clone(), source: e })?;
        self.boundary = real.clone();
        self.walk(&real, Path::new(&shown), 0);
        Ok(())
    }

    /// Whoever can replace a directory above the configured one can replace
    /// the input: those must be trusted too (sticky ones like /tmp are fine,
    /// others cannot rename what they do not own there).
    fn check_parents(&mut self, real: &Path, shown: &str) {
        let Some(owner) = self.limits.trusted_owner else { return };
        for parent in real.ancestors().skip(1) {
            let Ok(meta) = fs::metadata(parent) else { continue };
            if let Some(why) = ownership_problem(&meta, owner, true) {
                let parent = display(parent);
                self.untrusted(
                    shown,
                    format!(
                        "the directory {parent} above the config directory is {why}; whoever can write it can \
                         replace this node's configuration (fix: chown root {parent}; chmod go-w {parent})"
                    ),
                );
            }
        }
    }

    /// Refuses a directory or file that someone other than the trusted owner
    /// could write (true when refused).
    fn refuse_untrusted(&mut self, meta: &fs::Metadata, shown: &str, kind: &str) -> bool {
        let Some(owner) = self.limits.trusted_owner else { return false };
        let Some(why) = ownership_problem(meta, owner, false) else { return false };
        self.untrusted(
            shown,
            format!(
                "this {kind} is {why}; whoever can write the configuration controls this node's traffic \
                 (fix: chown root {shown}; chmod go-w {shown})"
            ),
        )
    }

    /// Reports an ownership or mode problem: an error that refuses the input,
    /// or for `check` a warning (true when refused).
    fn untrusted(&mut self, shown: &str, message: String) -> bool {
        if self.limits.untrusted_warns {
            self.snapshot.problems.push(Diagnostic::warning(
                whole_file(shown),
                None,
                "",
                format!("apply and run as root refuse this input: {message}"),
            ));
            return false;
        }
        self.problem(shown, format!("refused: {message}"));
        true
    }

    /// A symlink must resolve below the configured directory unless allowed:
    /// its target when it may be followed, None when refused (reported).
    fn follow_link(&mut self, path: &Path, shown: &str) -> io::Result<Option<PathBuf>> {
        let target = fs::canonicalize(path)?;
        if self.limits.allow_external_symlinks || target.starts_with(&self.boundary) {
            return Ok(Some(target));
        }
        self.problem(
            shown,
            "refused: symlink leads outside the config directory, not read (set \
             allow-external-symlinks: true in the settings to follow such links)",
        );
        Ok(None)
    }

    fn note_mtime(&mut self, meta: &fs::Metadata) {
        if let Ok(m) = meta.modified() {
            let newest = self.snapshot.newest_mtime.get_or_insert(m);
            *newest = (*newest).max(m);
        }
    }

    fn set_version(&mut self, target: &Path) {
        if let Some(name) = target.file_name() {
            self.snapshot.version = Some(name.to_string_lossy().into_owned());
        }
    }

    /// Reads `real` (a resolved directory) and shows its entries under `shown`.
    fn walk(&mut self, real: &Path, shown: &Path, depth: usize) {
        let shown_str = display(shown);
        if depth > 64 {
            self.problem(&shown_str, "directory tree deeper than 64 levels (symlink loop?)");
            return;
        }
        match fs::metadata(real) {
            Ok(m) => {
                if !self.visited.insert((m.dev(), m.ino())) {
                    self.problem(&shown_str, "directory already read through another path (symlink loop)");
                    return;
                }
                if self.refuse_untrusted(&m, &shown_str, "directory") {
                    return;
                }
                self.note_mtime(&m);
            }
            Err(e) => {
                self.problem(&shown_str, format!("cannot read directory: {e}"));
                return;
            }
        }
        // kubelet ConfigMap layout: read through `..data`, resolved once.
        let data_link = real.join("..data");
        let mut real = real.to_path_buf();
        if fs::symlink_metadata(&data_link).is_ok() {
            match self.follow_link(&data_link, &shown_str) {
                Ok(Some(target)) => {
                    match fs::metadata(&target) {
                        Ok(m) if self.refuse_untrusted(&m, &shown_str, "..data directory") => return,
                        Ok(m) => self.note_mtime(&m),
                        Err(e) => {
                            self.problem(&shown_str, format!("cannot resolve ..data: {e}"));
                            return;
                        }
                    }
                    self.set_version(&target);
                    real = target;
                }
                Ok(None) => return,
                Err(e) => {
                    self.problem(&shown_str, format!("cannot resolve ..data: {e}"));
                    return;
                }
            }
        }
        let entries = match fs::read_dir(&real) {
            Ok(rd) => rd,
            Err(e) => {
                self.problem(&shown_str, format!("cannot read directory: {e}"));
                return;
            }
        };
        let mut names: Vec<std::ffi::OsString> = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => names.push(e.file_name()),
                Err(e) => {
                    self.problem(&shown_str, format!("cannot read directory: {e}"));
                    return;
                }
            }
        }
        names.sort();
        for name in names {
            if name.as_encoded_bytes().first() == Some(&b'.') {
                continue;
            }
            let path = real.join(&name);
            let shown_child = shown.join(&name);
            let child = display(&shown_child);
            let lmeta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Removed between listing and now: it is simply not part of this snapshot.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.problem(&child, format!("cannot read: {e}"));
                    continue;
                }
            };
            let (path, meta) = if lmeta.file_type().is_symlink() {
                let resolved = self
                    .follow_link(&path, &child)
                    .and_then(|t| t.map(|t| fs::metadata(&t).map(|m| (t, m))).transpose());
                match resolved {
                    Ok(Some(found)) => found,
                    Ok(None) => continue,
                    Err(e) => {
                        if has_config_extension(&name) || e.raw_os_error() == Some(libc::ELOOP) {
                            let why = if e.raw_os_error() == Some(libc::ELOOP) {
                                "symlink loop".to_string()
                            } else {
                                format!("broken symlink: {e}")
                            };
                            self.problem(&child, format!("cannot read: {why}"));
                        }
                        continue;
                    }
                }
            } else {
                (path, lmeta)
            };
            if meta.is_dir() {
                self.walk(&path, &shown_child, depth + 1);
            } else if meta.is_file() && has_config_extension(&name) {
                self.read_file(&path, &child);
            }
        }
    }

    fn read_file(&mut self, path: &Path, shown: &str) {
        match read_stable(path, self.limits.max_file_size) {
            Ok((bytes, meta)) => {
                if self.refuse_untrusted(&meta, shown, "file") {
                    return;
                }
                self.note_mtime(&meta);
                match check_text(bytes) {
                    Ok(text) => self.snapshot.files.push(SourceFile { path: Arc::from(shown), text }),
                    Err((line, col, message)) => self.snapshot.problems.push(Diagnostic::error(
                        Span { file: Arc::from(shown), line, col },
                        None,
                        "",
                        message,
                    )),
                }
            }
            Err(message) => self.problem(shown, message),
        }
    }
}

fn has_config_extension(name: &std::ffi::OsStr) -> bool {
    let b = name.as_encoded_bytes();
    b.ends_with(b".yaml") || b.ends_with(b".yml") || b.ends_with(b".json")
}

/// Size, modification time and identity: equal before and after a read means
/// no write or replacement happened during it.
fn file_state(m: &fs::Metadata) -> (u64, i64, i64, u64, u64) {
    (m.len(), m.mtime(), m.mtime_nsec(), m.dev(), m.ino())
}

/// Reads a whole file that nobody writes or replaces meanwhile: if it changed
/// during the read, it is read again (a few times, then reported).
fn read_stable(path: &Path, max: u64) -> Result<(Vec<u8>, fs::Metadata), String> {
    const ATTEMPTS: usize = 3;
    for _ in 0..ATTEMPTS {
        let (bytes, before) = read_limited(path, max)?;
        let now = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err("cannot read: file vanished while being read".to_string());
            }
            Err(e) => return Err(format!("cannot read: {e}")),
        };
        if file_state(&before) == file_state(&now) && bytes.len() as u64 == now.len() {
            return Ok((bytes, now));
        }
    }
    Err(format!(
        "file kept changing while being read ({ATTEMPTS} attempts); not used in this pass, read again \
         when it is stable"
    ))
}

/// How a user raises the file size limit, appended to its errors.
const RAISE_MAX_FILE_SIZE: &str =
    " (setting `max-file-size`: raise it in the settings file, `max-file-size: BYTES`, or with --max-file-size BYTES)";

fn read_limited(path: &Path, max: u64) -> Result<(Vec<u8>, fs::Metadata), String> {
    let file = fs::File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => "cannot read: file vanished while reading the directory".to_string(),
        _ => format!("cannot read: {e}"),
    })?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    let size = meta.len();
    if size > max {
        return Err(format!("file is {size} bytes, over the limit of {max} bytes{RAISE_MAX_FILE_SIZE}"));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // take(): a file that grows while being read still stops at the limit.
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("file grew over the limit of {max} bytes while being read{RAISE_MAX_FILE_SIZE}"));
    }
    Ok((bytes, meta))
}

/// UTF-8 text without NUL bytes, or (line, column, message) of the first bad byte.
fn check_text(bytes: Vec<u8>) -> Result<String, (u32, u32, String)> {
    if let Some(pos) = bytes.iter().position(|&b| b == 0) {
        let (line, col) = line_col(&bytes, pos);
        return Err((line, col, "binary file (NUL byte); expected UTF-8 YAML or JSON text".to_string()));
    }
    String::from_utf8(bytes).map_err(|e| {
        let pos = e.utf8_error().valid_up_to();
        let (line, col) = line_col(e.as_bytes(), pos);
        let byte = e.as_bytes().get(pos).copied().unwrap_or(0);
        (line, col, format!("invalid UTF-8 (byte 0x{byte:02x}); expected UTF-8 YAML or JSON text"))
    })
}

fn line_col(bytes: &[u8], pos: usize) -> (u32, u32) {
    let before = &bytes[..pos.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(col).unwrap_or(u32::MAX))
}

/// A small stable 64-bit hash (not cryptographic): the same input gives the
/// same value across runs and Rust versions, unlike `DefaultHasher`.
struct Hasher {
    h: u64,
}

impl Hasher {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    fn new() -> Self {
        Hasher { h: 0xcbf2_9ce4_8422_2325 }
    }
    fn mix(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(Self::K).rotate_left(29);
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        self.mix(bytes.len() as u64);
    }
    fn finish(&self) -> u64 {
        let mut h = self.h;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(p: &Path, text: &[u8]) {
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(p, text).expect("write");
    }

    fn rel(snap: &Snapshot, base: &Path) -> Vec<String> {
        let base = display(base);
        snap.files.iter().map(|f| f.path.strip_prefix(base.as_str()).unwrap_or(&f.path).to_string()).collect()
    }

    #[test]
    fn reads_recursively_sorted_and_skips_hidden() {
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path();
        write(&root.join("b.yaml"), b"b: 1\n");
        write(&root.join("a.json"), b"{}");
        write(&root.join("sub/c.yml"), b"c: 1\n");
        write(&root.join(".hidden.yaml"), b"x: 1\n");
        write(&root.join(".git/d.yaml"), b"x: 1\n");
        write(&root.join("notes.txt"), b"x");
        let snap = read_snapshot(&[root.to_path_buf()], &LoadLimits::default()).expect("reads");
        assert_eq!(rel(&snap, root), ["/a.json", "/b.yaml", "/sub/c.yml"]);
        assert!(snap.problems.is_empty());
        assert_eq!(snap.version, None);
        let again = read_snapshot(&[root.to_path_buf()], &LoadLimits::default()).expect("reads");
        assert_eq!(snap.content_hash, again.content_hash);
        write(&root.join("b.yaml"), b"b: 2\n");
        let changed = read_snapshot(&[root.to_path_buf()], &LoadLimits::default()).expect("reads");
        assert_ne!(snap.content_hash, changed.content_hash);
    }

    #[test]
    fn bad_files_are_problems_naming_the_file() {
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path();
        write(&root.join("big.yaml"), &[b'#'; 200]);
        write(&root.join("bin.yaml"), b"a: 1\n\0\0");
        write(&root.join("latin1.yaml"), b"a: 1\nb: caf\xe9\n");
        symlink(root.join("loop1.yaml"), root.join("loop2.yaml")).expect("symlink");
        symlink(root.join("loop2.yaml"), root.join("loop1.yaml")).expect("symlink");
        symlink(root, root.join("cycle")).expect("symlink");
        let limits = LoadLimits { max_file_size: 100, ..LoadLimits::default() };
        let snap = read_snapshot(&[root.to_path_buf()], &limits).expect("reads");
        let base = display(root);
        let got: Vec<String> = snap.problems.iter().map(|p| p.to_string().replacen(base.as_str(), "", 1)).collect();
        assert_eq!(
            got,
            [
                "/big.yaml:1:1: file is 200 bytes, over the limit of 100 bytes (setting `max-file-size`: raise it \
                 in the settings file, `max-file-size: BYTES`, or with --max-file-size BYTES)",
                "/bin.yaml:2:1: binary file (NUL byte); expected UTF-8 YAML or JSON text",
                "/cycle:1:1: directory already read through another path (symlink loop)",
                "/latin1.yaml:2:7: invalid UTF-8 (byte 0xe9); expected UTF-8 YAML or JSON text",
                "/loop1.yaml:1:1: cannot read: symlink loop",
                "/loop2.yaml:1:1: cannot read: symlink loop",
            ]
        );
        assert!(snap.files.is_empty());
    }

    #[test]
    fn root_errors() {
        let d = tempfile::tempdir().expect("tmp");
        let missing = d.path().join("nope");
        assert!(matches!(read_snapshot(&[missing], &LoadLimits::default()), Err(SourceError::Missing { .. })));
        let file = d.path().join("one.yaml");
        write(&file, b"a: 1\n");
        let snap = read_snapshot(&[file], &LoadLimits::default()).expect("a file is accepted");
        assert_eq!(snap.files.len(), 1);
    }

    #[test]
    fn configmap_data_layout_reads_one_version() {
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path();
        write(&root.join("..2026_11_25_12_00_00.1/svc.yaml"), b"v: 1\n");
        write(&root.join("..2026_11_25_12_00_01.2/svc.yaml"), b"v: 2\n");
        symlink("..2026_11_25_12_00_01.2", root.join("..data")).expect("symlink");
        symlink("..data/svc.yaml", root.join("svc.yaml")).expect("symlink");
        let snap = read_snapshot(&[root.to_path_buf()], &LoadLimits::default()).expect("reads");
        assert_eq!(rel(&snap, root), ["/svc.yaml"]);
        assert_eq!(snap.files[0].text, "v: 2\n");
        assert_eq!(snap.version.as_deref(), Some("..2026_11_25_12_00_01.2"));
    }

    fn problems(snap: &Snapshot, base: &Path) -> Vec<String> {
        let base = display(base);
        snap.problems.iter().map(|p| p.to_string().replace(base.as_str(), "")).collect()
    }

    #[test]
    fn symlinks_leaving_the_directory_are_refused_unread() {
        let d = tempfile::tempdir().expect("tmp");
        let outside = d.path().join("outside");
        write(&outside.join("secret.yaml"), b"password: hunter2\n");
        write(&outside.join("sub/x.yaml"), b"password: hunter2\n");
        let root = d.path().join("cfg");
        write(&root.join("ok.yaml"), b"a: 1\n");
        write(&root.join("real/in.yaml"), b"b: 1\n");
        symlink(outside.join("secret.yaml"), root.join("leak.yaml")).expect("symlink");
        symlink(&outside, root.join("usr")).expect("symlink");
        symlink("real/in.yaml", root.join("inside.yaml")).expect("symlink");
        let snap = read_snapshot(std::slice::from_ref(&root), &LoadLimits::default()).expect("reads");
        assert_eq!(rel(&snap, &root), ["/inside.yaml", "/ok.yaml", "/real/in.yaml"]);
        let got = problems(&snap, &root);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("/leak.yaml:1:1: refused: symlink leads outside"), "{got:?}");
        assert!(got[1].starts_with("/usr:1:1: refused: symlink leads outside"), "{got:?}");
        assert!(got.iter().all(|p| !p.contains("hunter2") && p.contains("allow-external-symlinks")));

        let allowed = LoadLimits { allow_external_symlinks: true, ..LoadLimits::default() };
        let snap = read_snapshot(std::slice::from_ref(&root), &allowed).expect("reads");
        assert!(snap.problems.is_empty(), "{:?}", snap.problems);
        assert_eq!(snap.files.len(), 6);
    }

    #[test]
    fn files_and_directories_others_can_write_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path().join("cfg");
        write(&root.join("ok.yaml"), b"a: 1\n");
        write(&root.join("group.yaml"), b"a: 1\n");
        write(&root.join("open/x.yaml"), b"a: 1\n");
        fs::set_permissions(root.join("group.yaml"), fs::Permissions::from_mode(0o664)).expect("chmod");
        fs::set_permissions(root.join("open"), fs::Permissions::from_mode(0o777)).expect("chmod");
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        let limits = LoadLimits { trusted_owner: Some(me), ..LoadLimits::default() };
        let snap = read_snapshot(std::slice::from_ref(&root), &limits).expect("reads");
        assert_eq!(rel(&snap, &root), ["/ok.yaml"]);
        let got = problems(&snap, &root);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("/group.yaml:1:1: refused: this file is writable by group or others (mode 0664)"));
        assert!(got[0].contains("chmod go-w"), "{got:?}");
        assert!(got[1].starts_with("/open:1:1: refused: this directory is writable by group or others (mode 0777)"));

        // Owned by someone else (needs root to give a file away).
        if me == 0 {
            fs::set_permissions(root.join("group.yaml"), fs::Permissions::from_mode(0o644)).expect("chmod");
            fs::set_permissions(root.join("open"), fs::Permissions::from_mode(0o755)).expect("chmod");
            std::os::unix::fs::chown(root.join("ok.yaml"), Some(65534), None).expect("chown");
            let snap = read_snapshot(std::slice::from_ref(&root), &limits).expect("reads");
            let got = problems(&snap, &root);
            assert_eq!(got.len(), 1, "{got:?}");
            assert!(got[0].starts_with("/ok.yaml:1:1: refused: this file is owned by uid 65534, not root"));
            assert!(got[0].contains("chown root"), "{got:?}");
        }
        // Without an owner to trust (not root), nothing is refused.
        let lax = LoadLimits { trusted_owner: None, ..LoadLimits::default() };
        assert!(read_snapshot(std::slice::from_ref(&root), &lax).expect("reads").problems.is_empty());
    }

    #[test]
    fn a_parent_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tmp");
        let parent = d.path().join("shared");
        let root = parent.join("cfg");
        write(&root.join("ok.yaml"), b"a: 1\n");
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o777)).expect("chmod");
        // SAFETY: geteuid cannot fail.
        let limits = LoadLimits { trusted_owner: Some(unsafe { libc::geteuid() }), ..LoadLimits::default() };
        let snap = read_snapshot(std::slice::from_ref(&root), &limits).expect("reads");
        let got = problems(&snap, &root);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("above the config directory is writable by group or others (mode 0777)"), "{got:?}");
        // Sticky like /tmp: others cannot replace what they do not own.
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o1777)).expect("chmod");
        let snap = read_snapshot(std::slice::from_ref(&root), &limits).expect("reads");
        assert!(snap.problems.is_empty(), "{:?}", snap.problems);
    }

    #[test]
    fn newest_mtime_covers_files_and_directories() {
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path();
        write(&root.join("a.yaml"), b"a: 1\n");
        let snap = read_snapshot(&[root.to_path_buf()], &LoadLimits::default()).expect("reads");
        let file_mtime = fs::metadata(root.join("a.yaml")).and_then(|m| m.modified()).expect("mtime");
        assert!(snap.newest_mtime.expect("set") >= file_mtime);
        // A deletion shows as a younger directory.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&root.join("b.yaml"), b"b: 1\n");
        fs::remove_file(root.join("b.yaml")).expect("rm");
        let later = read_snapshot(&[root.to_path_buf()], &LoadLimits::default()).expect("reads");
        assert!(later.newest_mtime > snap.newest_mtime);
        assert_eq!(later.content_hash, snap.content_hash);
    }

    #[test]
    fn git_sync_link_gives_version() {
        let d = tempfile::tempdir().expect("tmp");
        write(&d.path().join(".worktrees/abc123/x.yaml"), b"v: 1\n");
        symlink(".worktrees/abc123", d.path().join("current")).expect("symlink");
        let link = d.path().join("current");
        let snap = read_snapshot(std::slice::from_ref(&link), &LoadLimits::default()).expect("reads");
        assert_eq!(snap.version.as_deref(), Some("abc123"));
        assert_eq!(&*snap.files[0].path, display(&link.join("x.yaml")));
    }
}
