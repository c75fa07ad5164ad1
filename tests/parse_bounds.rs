//! Memory and time bounded by input (docs/ARCHITECTURE.md, "Memory and
//! time"): hostile inputs run through `edgeplane check` in a child process
//! under a 2 GiB address-space cap and a CPU-time cap, and the child must
//! finish normally with a peak RSS (wait4's ru_maxrss) within the documented
//! worst case of 8 x input bytes + 256 MiB. No privileges needed.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Address-space cap of the child: an input that needs more aborts.
const ADDRESS_SPACE: u64 = 2 << 30;
/// CPU-time cap of the child: generous (every case takes seconds at most in
/// a debug build); before the fix, 200k unclosed `[` took 169 s.
const CPU_SECONDS: u64 = 120;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ep-bounds-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cfg")).expect("mkdir");
        TempDir(dir)
    }
    fn cfg(&self) -> PathBuf {
        self.0.join("cfg")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    /// Exit code; None when killed by a signal.
    code: Option<i32>,
    signal: Option<i32>,
    max_rss: u64,
    input: u64,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The documented worst case for this input.
    fn bound(&self) -> u64 {
        8 * self.input + (256 << 20)
    }
    #[track_caller]
    fn assert_bounded(&self, code: i32) {
        let tail: String = self.stderr.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
        assert_eq!(
            (self.code, self.signal),
            (Some(code), None),
            "check must finish normally (exit {code}):\n...{tail}\n{}",
            self.stdout
        );
        eprintln!("input {} bytes, peak RSS {} bytes, bound {} bytes", self.input, self.max_rss, self.bound());
        assert!(
            self.max_rss <= self.bound(),
            "peak RSS {} bytes over 8 x {} input bytes + 256 MiB",
            self.max_rss,
            self.input
        );
    }
}

/// `edgeplane check DIR` under the caps; peak RSS from wait4.
// The child is reaped with wait4 (for its rusage), not Child::wait.
#[allow(clippy::zombie_processes)]
fn check(dir: &TempDir) -> Run {
    let input: u64 = std::fs::read_dir(dir.cfg())
        .expect("read dir")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    let out = dir.0.join("stdout");
    let err = dir.0.join("stderr");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeplane"));
    cmd.arg("check")
        .arg(dir.cfg())
        .args(["--config", "/dev/null"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    // SAFETY: only async-signal-safe setrlimit calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let cap = |resource, limit: u64| {
                let rl = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                if libc::setrlimit(resource, &rl) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            cap(libc::RLIMIT_AS, ADDRESS_SPACE)?;
            cap(libc::RLIMIT_CPU, CPU_SECONDS)
        });
    }
    let child = cmd.spawn().expect("spawn edgeplane check");
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, by pid (std's Child is never waited).
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(rc, child.id() as i32, "wait4: {}", std::io::Error::last_os_error());
    Run {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        // ru_maxrss is in KiB on Linux.
        max_rss: usage.ru_maxrss as u64 * 1024,
        input,
        stdout: std::fs::read_to_string(out).unwrap_or_default(),
        stderr: std::fs::read_to_string(err).unwrap_or_default(),
    }
}

fn write(dir: &TempDir, name: &str, text: &str) {
    std::fs::write(dir.cfg().join(name), text).expect("write input");
}

fn one_line_diagnostics(stderr: &str, path: &Path) -> usize {
    let prefix = path.to_string_lossy().into_owned();
    stderr.lines().filter(|l| l.starts_with(&prefix)).count()
}

#[test]
fn alias_bomb_of_a_big_string_is_refused_within_the_bound() {
    // A 1 MiB string and 6,000 aliases of it: 6 GB expanded. Before the byte
    // budget this used 1 GB per 1,000 aliases and aborted at 6,000.
    let dir = TempDir::new("alias");
    let big = "x".repeat(1 << 20);
    let aliases = vec!["*s"; 6000].join(", ");
    write(
        &dir,
        "bomb.yaml",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\ndata:\n  a: &s {big}\n  b: [{aliases}]\n"),
    );
    let run = check(&dir);
    run.assert_bounded(1);
    assert!(run.stderr.contains("bomb.yaml:6:"), "{}", run.stderr);
    assert!(run.stderr.contains("expands past the budget for aliases"), "{}", run.stderr);
}

#[test]
fn aliases_spread_over_many_documents_share_one_budget() {
    // 200 documents of 50 KiB, each with 200 aliases of its own string: 2 GB
    // expanded in all, while no single document is big.
    let dir = TempDir::new("alias-docs");
    let big = "y".repeat(50 << 10);
    let aliases = vec!["*s"; 200].join(", ");
    let doc = format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\ndata:\n  a: &s {big}\n  b: [{aliases}]\n"
    );
    write(&dir, "bombs.yaml", &doc.repeat(200));
    let run = check(&dir);
    run.assert_bounded(1);
    assert!(run.stderr.contains("expands past the budget for aliases"), "{}", run.stderr);
}

/// A `kind: List` of `n` items, about 30 bytes each (as `kubectl get -o yaml`
/// writes, in flow style).
fn list(n: usize, item: impl Fn(usize) -> String) -> String {
    let mut text = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..n {
        text.push_str("- ");
        text.push_str(&item(i));
        text.push('\n');
    }
    text
}

#[test]
fn million_item_list_stays_within_the_bound() {
    // Before: 926 MB peak for 32 MB. Items of an unknown kind are ignored.
    let dir = TempDir::new("list");
    write(&dir, "list.yaml", &list(1_000_000, |i| format!("{{apiVersion: v1, kind: Foo{}}}", i % 10)));
    let run = check(&dir);
    run.assert_bounded(0);
    assert!(run.stdout.starts_with("valid: 1 file(s)"), "{}", run.stdout);
}

#[test]
fn million_errors_are_capped_at_ten_thousand_diagnostics() {
    // Every item lacks its apiVersion: a million errors, 10,000 shown.
    let dir = TempDir::new("list-errors");
    write(&dir, "list.yaml", &list(1_000_000, |i| format!("{{kind: Foo, name: i{i:07}}}")));
    let run = check(&dir);
    run.assert_bounded(1);
    assert_eq!(one_line_diagnostics(&run.stderr, &dir.cfg()), 10_001, "10,000 and the count of the rest");
    assert!(run.stderr.contains(": 990000 more diagnostic(s) not shown (at most 10000 are kept)"), "{}", run.stderr);
}

#[test]
fn million_item_plain_sequence_stays_within_the_bound() {
    // Not a List: the whole tree is built, until the node limit stops it.
    let dir = TempDir::new("seq");
    let text: String = (0..1_000_000).map(|i| format!("- {{kind: Foo, name: i{i:07}}}\n")).collect();
    write(&dir, "seq.yaml", &text);
    let run = check(&dir);
    run.assert_bounded(1);
    assert!(run.stderr.contains("seq.yaml:400000:21: document has more than 2000000 nodes"), "{}", run.stderr);
}

fn unclosed_brackets(n: usize) {
    // Before: 25 s for 100k and 169 s for 200k (libyaml's scanner is
    // quadratic in flow depth, and the parse went on after the depth error).
    let dir = TempDir::new(&format!("brackets-{n}"));
    write(&dir, "deep.yaml", &format!("a: {}\n", "[ ".repeat(n)));
    let run = check(&dir);
    run.assert_bounded(1);
    let diagnostics: Vec<&str> = run.stderr.lines().filter(|l| l.contains("deep.yaml")).collect();
    assert_eq!(diagnostics.len(), 1, "{}", run.stderr);
    assert!(diagnostics[0].ends_with("deep.yaml:1:258: nesting deeper than 128 levels"), "{}", run.stderr);
}

#[test]
fn hundred_thousand_unclosed_brackets_stop_at_the_depth_limit() {
    unclosed_brackets(100_000);
}

#[test]
fn two_hundred_thousand_unclosed_brackets_stop_at_the_depth_limit() {
    unclosed_brackets(200_000);
}
