//! netns test harness (root only): unique names, Drop guards for network
//! namespaces, child cgroups and pinned state, veth pairs created inside the
//! node namespace with the peer moved straight into the other namespace
//! (never the root namespace), commands run with `nsenter --net=` (never
//! `ip netns exec`, which remounts /sys), and small TCP/UDP echo servers and
//! clients that run inside a namespace (setns() in a thread) and report
//! which backend answered and which peer address it saw.
#![allow(dead_code)]

pub mod multinode;
#[allow(unused)]
pub mod packet;
pub mod topo;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Prints the visible skip line and returns from the test when not root.
#[macro_export]
macro_rules! need_root {
    () => {
        if !$crate::common::is_root() {
            eprintln!("skipped: needs root (network namespaces, BPF)");
            return;
        }
    };
}

/// The `#[test]` that `ask_from_cgroup` re-executes as the client process
/// inside a cgroup (every test binary that calls it needs one); in a normal
/// run it only checks that it is not that helper.
#[macro_export]
macro_rules! harness_client_entry {
    () => {
        #[test]
        fn harness_client_entry() {
            if $crate::common::client_main() {
                return;
            }
            assert!(std::env::var($crate::common::CLIENT_ENV).is_err());
        }
    };
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short unique token: pid and a per-process counter (fits interface names).
pub fn unique() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{}{}", std::process::id() % 100_000, n)
}

pub fn sh(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A network namespace, deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(tag: &str) -> NetNs {
        let name = format!("ep{tag}-{}", unique());
        sh(Command::new("ip").args(["netns", "add", &name]));
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// `ip -n NAME ARGS…`
    pub fn ip(&self, args: &[&str]) -> Output {
        sh(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command run inside the namespace (nsenter --net, /sys left alone).
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display())).arg(program);
        c
    }

    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        sh(self.cmd(program).args(args))
    }

    /// Sets a sysctl of this namespace: writes /proc/sys/KEY (dots as
    /// slashes) from a thread that entered it, as sysctl(8) would, without
    /// needing procps (a minimal Debian lacks it).
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        let value = value.to_string();
        self.within(move || {
            std::fs::write(&path, &value).unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()))
        });
    }

    /// Create a veth pair here (`local`) whose peer goes straight into `peer_ns` as `peer`.
    pub fn veth(&self, local: &str, peer_ns: &NetNs, peer: &str) {
        self.ip(&["link", "add", local, "type", "veth", "peer", "name", peer, "netns", &peer_ns.name]);
        self.ip(&["link", "set", local, "up"]);
        peer_ns.ip(&["link", "set", peer, "up"]);
    }

    pub fn addr(&self, dev: &str, cidr: &str) {
        self.ip(&["addr", "add", cidr, "dev", dev]);
    }

    pub fn route(&self, args: &[&str]) {
        let mut a = vec!["route", "add"];
        a.extend_from_slice(args);
        self.ip(&a);
    }

    /// Turn off TX checksum offload on `dev` (checksums then travel complete).
    pub fn tx_csum_off(&self, dev: &str) {
        self.run("ethtool", &["-K", dev, "tx", "off"]);
    }

    /// Run `f` on a new thread that has entered this namespace.
    pub fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
        let path = self.path();
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
    }

    /// Run `f` inside the namespace and wait for it.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("namespace thread panicked")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let out = Command::new("ip").args(["netns", "del", &self.name]).output();
        if let Ok(o) = out
            && !o.status.success()
        {
            eprintln!("cleanup: ip netns del {}: {}", self.name, String::from_utf8_lossy(&o.stderr));
        }
    }
}

/// setns(CLONE_NEWNET) for the calling thread.
pub fn enter(path: &Path) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // SAFETY: plain syscall on an open namespace fd; affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {}: {}", path.display(), io::Error::last_os_error());
}

/// A child cgroup of the cgroup2 mount, removed on drop.
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn new() -> Cgroup {
        let path = PathBuf::from(format!("/sys/fs/cgroup/unified/ep-test-{}", unique()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Cgroup { path }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.path) {
            eprintln!("cleanup: rmdir {}: {e}", self.path.display());
        }
    }
}

/// A pinned-state directory under bpffs; reset (detach + unpin) on drop,
/// from inside the namespace whose interfaces it is attached to.
pub struct StateDir {
    pub path: PathBuf,
    netns: PathBuf,
}

impl StateDir {
    pub fn new(ns: &NetNs) -> StateDir {
        let root = Path::new("/sys/fs/bpf");
        edgeplane::datapath::ensure_bpffs(&root.join("x")).expect("bpffs mounted");
        StateDir { path: root.join(format!("ep-test-{}", unique())), netns: ns.path() }
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let (path, netns) = (self.path.clone(), self.netns.clone());
        let r = std::thread::spawn(move || {
            if netns.exists() {
                enter(&netns);
            }
            edgeplane::datapath::reset(&path)
        })
        .join();
        match r {
            Ok(Err(e)) => eprintln!("cleanup: reset {}: {e:#}", self.path.display()),
            Err(_) => eprintln!("cleanup: reset {} panicked", self.path.display()),
            Ok(Ok(())) => {}
        }
    }
}

/// A server that answers every TCP connection and UDP datagram on `port`
/// with "NAME PEER_ADDR:PEER_PORT", until dropped.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(ns: &NetNs, name: &str, addr: Ipv4Addr, tcp_port: Option<u16>, udp_port: Option<u16>) -> EchoServer {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        if let Some(port) = tcp_port {
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop, name) = (stop.clone(), name.to_string());
            threads.push(ns.spawn(move || {
                let l = TcpListener::bind(SocketAddrV4::new(addr, port)).expect("bind tcp");
                l.set_nonblocking(true).expect("nonblocking");
                tx.send(()).ok();
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut s, peer)) => {
                            s.set_nonblocking(false).ok();
                            let _ = s.write_all(format!("{name} {peer}\n").as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }));
            rx.recv().expect("tcp server started");
        }
        if let Some(port) = udp_port {
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop, name) = (stop.clone(), name.to_string());
            threads.push(ns.spawn(move || {
                let s = UdpSocket::bind(SocketAddrV4::new(addr, port)).expect("bind udp");
                s.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
                tx.send(()).ok();
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((_, peer)) = s.recv_from(&mut buf) {
                        let _ = s.send_to(format!("{name} {peer}\n").as_bytes(), peer);
                    }
                }
            }));
            rx.recv().expect("udp server started");
        }
        EchoServer { stop, threads }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What a client saw: the answering server's name and the peer address the
/// server saw (the client as the backend knows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub server: String,
    pub seen_peer: String,
    /// The address the client's socket believes it talks to.
    pub client_peer: SocketAddr,
}

fn parse_answer(text: &str, client_peer: SocketAddr) -> io::Result<Answer> {
    let mut it = text.split_whitespace();
    match (it.next(), it.next()) {
        (Some(s), Some(p)) => Ok(Answer { server: s.to_string(), seen_peer: p.to_string(), client_peer }),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad answer {text:?}"))),
    }
}

/// TCP connect + read the answer (must run inside the client's namespace).
pub fn tcp_ask(to: SocketAddrV4, timeout: Duration) -> io::Result<Answer> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::V4(to), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let peer = s.peer_addr()?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    parse_answer(&text, peer)
}

/// Connected UDP: send, then wait for the answer (ICMP unreachable -> ECONNREFUSED).
pub fn udp_ask_connected(to: SocketAddrV4, timeout: Duration) -> io::Result<Answer> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.connect(to)?;
    s.set_read_timeout(Some(timeout))?;
    s.send(b"ping")?;
    let mut buf = [0u8; 512];
    let n = s.recv(&mut buf)?;
    parse_answer(&String::from_utf8_lossy(&buf[..n]), s.peer_addr()?)
}

/// Unconnected UDP (`dig`-style sendto/recvfrom): the answer's source is returned as client_peer.
pub fn udp_ask_unconnected(to: SocketAddrV4, timeout: Duration) -> io::Result<Answer> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.set_read_timeout(Some(timeout))?;
    s.send_to(b"ping", to)?;
    let mut buf = [0u8; 512];
    let (n, from) = s.recv_from(&mut buf)?;
    parse_answer(&String::from_utf8_lossy(&buf[..n]), from)
}

/// A temporary directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("ep-{tag}-{}", unique()));
        std::fs::create_dir_all(&path).expect("mkdir temp");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Environment variables of the helper client process (see `client_main`).
pub const CLIENT_ENV: &str = "EP_HARNESS_CLIENT";

/// Run a client as a separate process placed in `cgroup` and `ns` before it
/// starts (cgroup membership is per process, so a thread cannot do this).
/// The process is this test binary re-executed on `entry` (a test function
/// that calls `client_main`). `mode`: tcp | udp | udp-unconnected.
pub fn ask_from_cgroup(ns: &NetNs, cgroup: &Cgroup, entry: &str, mode: &str, to: SocketAddrV4) -> io::Result<Answer> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().expect("current exe");
    let procs = std::ffi::CString::new(cgroup.path.join("cgroup.procs").as_os_str().as_encoded_bytes()).expect("path");
    let netns = std::ffi::CString::new(ns.path().as_os_str().as_encoded_bytes()).expect("path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", entry, "--nocapture", "--test-threads", "1", "-q"]).env(CLIENT_ENV, format!("{mode} {to}"));
    // SAFETY: only async-signal-safe syscalls (open/write/close/setns) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let w = libc::write(fd, b"0\n".as_ptr().cast(), 2);
            libc::close(fd);
            if w != 2 {
                return Err(io::Error::last_os_error());
            }
            let nfd = libc::open(netns.as_ptr(), libc::O_RDONLY);
            if nfd < 0 || libc::setns(nfd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            libc::close(nfd);
            Ok(())
        });
    }
    let out = cmd.output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("EP-ANSWER ") {
            let mut it = rest.split_whitespace();
            let (s, p, c) = (it.next(), it.next(), it.next());
            if let (Some(s), Some(p), Some(c)) = (s, p, c) {
                let client_peer = c.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "peer"))?;
                return Ok(Answer { server: s.into(), seen_peer: p.into(), client_peer });
            }
        }
        if let Some(rest) = line.strip_prefix("EP-ERROR ") {
            let errno: i32 = rest.trim().parse().unwrap_or(libc::EIO);
            return Err(io::Error::from_raw_os_error(errno));
        }
    }
    panic!("helper client printed no result: {text}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Body of the helper process: does the one ask named in CLIENT_ENV and
/// prints `EP-ANSWER server seen_peer client_peer` or `EP-ERROR errno`.
/// Returns false when this process is not a helper (normal test run).
pub fn client_main() -> bool {
    let Ok(spec) = std::env::var(CLIENT_ENV) else { return false };
    let mut it = spec.split_whitespace();
    let mode = it.next().unwrap_or_default().to_string();
    let to: SocketAddrV4 = it.next().and_then(|s| s.parse().ok()).expect("target address");
    let t = Duration::from_secs(5);
    let r = match mode.as_str() {
        "tcp" => tcp_ask(to, t),
        "udp" => udp_ask_connected(to, t),
        _ => udp_ask_unconnected(to, t),
    };
    match r {
        Ok(a) => println!("EP-ANSWER {} {} {}", a.server, a.seen_peer, a.client_peer),
        Err(e) => println!("EP-ERROR {}", e.raw_os_error().unwrap_or(libc::EIO)),
    }
    true
}

/// Connections opened back to back from inside a namespace until stopped;
/// every failure is kept with its error (restart-under-load tests).
pub struct ConnectLoop {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(u64, Vec<String>)>>,
}

impl ConnectLoop {
    pub fn start(ns: &NetNs, to: SocketAddrV4) -> ConnectLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = ns.spawn(move || {
            let (mut ok, mut failures) = (0u64, Vec::new());
            while !s.load(Ordering::Relaxed) {
                match tcp_ask(to, Duration::from_secs(5)) {
                    Ok(_) => ok += 1,
                    Err(e) => failures.push(format!("after {ok} ok: {e}")),
                }
            }
            (ok, failures)
        });
        ConnectLoop { stop, handle: Some(handle) }
    }

    /// Stop and return (successful connections, failures).
    pub fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().map(|h| h.join().expect("connect loop thread")).unwrap_or_default()
    }
}

impl Drop for ConnectLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A running `edgeplane run`, its stderr lines collected; killed on drop.
pub struct Daemon {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl Daemon {
    pub fn spawn(mut cmd: Command) -> Daemon {
        use std::io::BufRead;
        cmd.stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("spawn edgeplane run");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon { child, lines, log: Vec::new() }
    }

    /// Wait until a log line contains `needle` (or the daemon exits: panic with its log).
    pub fn wait_for(&mut self, needle: &str) {
        self.wait_for_any(&[needle]);
    }

    /// Collect log lines until none came for `quiet`.
    pub fn wait_for_quiet(&mut self, quiet: Duration) {
        while let Ok(line) = self.lines.recv_timeout(quiet) {
            self.log.push(line);
        }
    }

    /// Wait until a log line contains one of `needles` (or the daemon exits: panic).
    pub fn wait_for_any(&mut self, needles: &[&str]) {
        loop {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let hit = needles.iter().any(|n| line.contains(n));
                    self.log.push(line);
                    if hit {
                        return;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!("edgeplane exited ({status}) before any of {needles:?}:\n{}", self.log.join("\n"));
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait();
                    panic!("edgeplane closed stderr ({status:?}) before any of {needles:?}:\n{}", self.log.join("\n"));
                }
            }
        }
    }

    pub fn signal(&mut self, sig: i32) {
        // SAFETY: a signal to our own child, by pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: our own child, by pid.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}
