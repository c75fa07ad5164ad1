//! Conntrack lifetimes end to end (root only), with the built binary as a
//! user runs it: a small conntrack map, 20 idle TCP connections through a
//! ClusterIP, then 1,000 new UDP flows. The map never evicts: the TCP
//! connections all survive, the UDP flows that found no room are dropped and
//! counted (conntrack-full and conntrack-insert-failed, not silent), and once
//! the garbage collector removed the expired UDP flows there is room again.
//! Each scenario runs with veth TX checksum offload on and off.
//! Also: migration of an earlier release's LRU map (ep_ct4_v1), and refusal
//! of one whose layout is unexpected.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use common::topo::*;
use common::*;
use edgeplane::maps::layout::{CT_DIR_FORWARD, CT_DIR_REPLY, CT_F_ESTABLISHED, CT_F_SERVICE, CtKey, CtValue};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

/// 32 flows: 20 idle TCP connections leave room for 12 more.
const CT_ENTRIES: u64 = 64;
const TCP_CONNS: usize = 20;
const UDP_FLOWS: u16 = 1000;
const IDLE_PORT: u16 = 9090;

/// A TCP server that keeps each connection open and answers every line with
/// "NAME LINE", until dropped.
struct LineServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LineServer {
    fn start(ns: &NetNs, name: &str) -> LineServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (s, name) = (stop.clone(), name.to_string());
        let thread = ns.spawn(move || {
            let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, IDLE_PORT)).expect("bind");
            l.set_nonblocking(true).expect("nonblocking");
            tx.send(()).ok();
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((conn, _)) => {
                        let name = name.clone();
                        std::thread::spawn(move || {
                            conn.set_nonblocking(false).ok();
                            let mut w = conn.try_clone().expect("clone");
                            for line in BufReader::new(conn).lines().map_while(Result::ok) {
                                if w.write_all(format!("{name} {line}\n").as_bytes()).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        rx.recv().expect("server started");
        LineServer { stop, thread: Some(thread) }
    }
}

impl Drop for LineServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Service "idle": 81/TCP -> 9090 and 53/UDP -> 5353 on every backend.
fn idle_service(t: &Topo) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: idle\n  namespace: e2e\nspec:\n  clusterIP: {VIP}\n  ports:\n  - name: tcp\n    protocol: TCP\n    port: 81\n    targetPort: {IDLE_PORT}\n  - name: dns\n    protocol: UDP\n    port: 53\n    targetPort: 5353\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: idle-1\n  namespace: e2e\n  labels:\n    kubernetes.io/service-name: idle\naddressType: IPv4\nendpoints:\n"
    );
    for i in 0..t.backends.len() {
        y.push_str(&format!("- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n", backend_ip(i)));
    }
    y.push_str(&format!(
        "ports:\n- name: tcp\n  protocol: TCP\n  port: {IDLE_PORT}\n- name: dns\n  protocol: UDP\n  port: 5353\n"
    ));
    y
}

fn small_conntrack_settings(t: &Topo) {
    std::fs::write(
        t.settings.path.join("edgeplane.yaml"),
        format!(
            "maps:\n  services: 4096\n  backends: 4096\n  conntrack: {CT_ENTRIES}\n  affinity: 4096\n  sknat: 4096\n\
             conntrack-timeouts:\n  udp: 2\n  udp-stream: 2\n"
        ),
    )
    .expect("settings");
}

/// One line through a connection: the answering backend's name.
fn round_trip(c: &mut TcpStream, i: usize) -> std::io::Result<String> {
    c.write_all(format!("hello-{i}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(c.try_clone()?).read_line(&mut line)?;
    let (name, rest) =
        line.trim().split_once(' ').ok_or_else(|| std::io::Error::other(format!("bad answer {line:?}")))?;
    assert_eq!(rest, format!("hello-{i}"), "echo of connection {i}");
    Ok(name.to_string())
}

fn stat(s: &serde_json::Value, key: &str) -> u64 {
    s["conntrack"][key].as_u64().unwrap_or_else(|| panic!("no conntrack.{key} in {s}"))
}

fn small_map_keeps_idle_tcp(tx_offload: bool) {
    let t = Topo::new(3, tx_offload);
    small_conntrack_settings(&t);
    let _servers: Vec<LineServer> =
        t.backends.iter().enumerate().map(|(i, b)| LineServer::start(b, &format!("be{i}"))).collect();
    t.apply(&[idle_service(&t)]);

    // 20 TCP connections through the ClusterIP, each answered once, then idle.
    let to = SocketAddrV4::new(VIP, 81);
    let mut conns: Vec<TcpStream> = t.client.within(move || {
        (0..TCP_CONNS)
            .map(|i| TcpStream::connect_timeout(&to.into(), T).unwrap_or_else(|e| panic!("connect {i}: {e}")))
            .collect()
    });
    let mut backend_of = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        c.set_read_timeout(Some(T)).expect("timeout");
        backend_of.push(round_trip(c, i).unwrap_or_else(|e| panic!("connection {i}: {e}")));
    }
    let s = t.status();
    assert_eq!(stat(&s, "entries"), TCP_CONNS as u64, "{s}");
    assert_eq!(stat(&s, "capacity"), CT_ENTRIES / 2);

    // 1,000 new UDP flows (one datagram each, from distinct ports).
    let full_before = t.drops("conntrack-full");
    let sockets: Vec<UdpSocket> = t.client.within(move || {
        (0..UDP_FLOWS)
            .map(|_| {
                let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
                s.send_to(b"q", SocketAddrV4::new(VIP, 53)).expect("send");
                s
            })
            .collect()
    });
    std::thread::sleep(Duration::from_millis(300));
    let s = t.status();
    let room = CT_ENTRIES / 2 - TCP_CONNS as u64;
    assert_eq!(stat(&s, "entries"), CT_ENTRIES / 2, "the table is full: {s}");
    let refused = stat(&s, "insert_failed");
    assert_eq!(refused, u64::from(UDP_FLOWS) - room, "every flow without room is counted: {s}");
    assert_eq!(t.drops("conntrack-full") - full_before, refused, "and dropped as conntrack-full");
    drop(sockets);

    // No idle TCP connection was evicted or reset: same backend, still answering.
    for (i, c) in conns.iter_mut().enumerate() {
        let be = round_trip(c, 100 + i).unwrap_or_else(|e| panic!("idle connection {i} after the UDP burst: {e}"));
        assert_eq!(be, backend_of[i], "connection {i} kept its backend");
    }

    // The UDP flows expire (udp: 2 s); `apply` runs a GC pass and there is room again.
    std::thread::sleep(Duration::from_millis(2500));
    sh(&mut t.edgeplane("apply"));
    let s = t.status();
    assert!(stat(&s, "gc_runs") >= 1, "{s}");
    assert_eq!(stat(&s, "gc_deleted_expired"), room, "the UDP flows that got in expired: {s}");
    assert_eq!(stat(&s, "entries"), TCP_CONNS as u64, "only the TCP connections remain: {s}");
    let a = t.ask("udp", vip(53)).expect("a new UDP flow finds room after GC");
    assert!(a.server.starts_with("be"), "{a:?}");
    for (i, c) in conns.iter_mut().enumerate() {
        let be = round_trip(c, 200 + i).unwrap_or_else(|e| panic!("idle connection {i} after GC: {e}"));
        assert_eq!(be, backend_of[i]);
    }
    let text = String::from_utf8_lossy(&sh(&mut t.edgeplane("status")).stdout).to_string();
    assert!(text.contains("insert_failed (table full): ") && text.contains("gc: "), "{text}");
    let drops = String::from_utf8_lossy(&sh(&mut t.edgeplane("drops")).stdout).to_string();
    assert!(drops.contains(&format!("conntrack-insert-failed: {refused}")), "{drops}");
}

#[test]
fn small_map_keeps_idle_tcp_and_counts_refused_flows_offload_on() {
    need_root!();
    small_map_keeps_idle_tcp(true);
}

#[test]
fn small_map_keeps_idle_tcp_and_counts_refused_flows_offload_off() {
    need_root!();
    small_map_keeps_idle_tcp(false);
}

// ---- migration from ep_ct4_v1 (LRU) ----------------------------------------

fn pin_v1(t: &Topo, value_size: u32) -> MapHandle {
    std::fs::create_dir_all(&t.state.path).expect("state dir");
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    let mut m =
        MapHandle::create(MapType::LruHash, Some("ep_ct4_v1"), 16, value_size, 65536, &opts).expect("create v1");
    m.pin(t.state.path.join("ep_ct4_v1")).expect("pin v1");
    m
}

fn key(s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16, dir: u8) -> CtKey {
    CtKey {
        saddr: s.octets(),
        daddr: d.octets(),
        sport: sp.to_be_bytes(),
        dport: dp.to_be_bytes(),
        proto: 6,
        dir,
        _pad0: 0,
    }
}

#[test]
fn an_lru_conntrack_map_is_migrated_then_unpinned() {
    need_root!();
    let t = Topo::new(1, true);
    let v1 = pin_v1(&t, 48);
    // A tracked flow client:40000 -> VIP:80 -> backend 0:8080 with an old last_seen.
    let fkey = key(CLIENT_IP, 40000, VIP, 80, CT_DIR_FORWARD);
    let fval = CtValue {
        nat_addr: backend_ip(0).octets(),
        nat_port: 8080u16.to_be_bytes(),
        backend_id: 1,
        flags: CT_F_SERVICE,
        created_ns: 1,
        last_seen_ns: 1,
        ..CtValue::default()
    };
    let rkey = key(backend_ip(0), 8080, CLIENT_IP, 40000, CT_DIR_REPLY);
    let rval = CtValue {
        nat_addr: VIP.octets(),
        nat_port: 80u16.to_be_bytes(),
        hairpin_addr: CLIENT_IP.octets(),
        flags: CT_F_SERVICE,
        last_seen_ns: 1,
        ..CtValue::default()
    };
    v1.update(&fkey.to_bytes(), &fval.to_bytes(), MapFlags::ANY).expect("v1 fwd");
    v1.update(&rkey.to_bytes(), &rval.to_bytes(), MapFlags::ANY).expect("v1 reply");
    drop(v1);
    t.apply(&[service_yaml("web", VIP, &[ready(backend_ip(0))], None)]);
    assert!(!t.state.path.join("ep_ct4_v1").exists(), "v1 unpinned after the migration");
    let v2 = MapHandle::from_pinned_path(t.state.path.join("ep_ct4_v2")).expect("v2 pinned");
    assert_eq!(v2.map_type(), MapType::Hash, "the new map is a plain hash");
    for (k, want) in [(fkey, fval), (rkey, rval)] {
        let got = v2.lookup(&k.to_bytes(), MapFlags::ANY).expect("lookup").expect("migrated entry");
        let got = CtValue::from_bytes(&got).expect("value");
        assert_eq!(
            (got.nat_addr, got.nat_port, got.flags, got.created_ns),
            (want.nat_addr, want.nat_port, want.flags | CT_F_ESTABLISHED, want.created_ns)
        );
        assert!(got.last_seen_ns > 1, "last_seen reset to the migration time, so GC does not remove it at once");
    }
    // The migrated flow survives the GC pass every apply runs.
    sh(&mut t.edgeplane("apply"));
    assert!(v2.lookup(&fkey.to_bytes(), MapFlags::ANY).expect("lookup").is_some(), "kept by GC");
    // And traffic works through the upgraded data plane.
    t.ask("tcp", vip(80)).expect("tcp through the ClusterIP");
}

#[test]
fn an_lru_conntrack_map_with_an_unexpected_layout_is_refused() {
    need_root!();
    let t = Topo::new(1, true);
    let _v1 = pin_v1(&t, 40);
    let text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: e2e\n---\n{}",
        service_yaml("web", VIP, &[ready(backend_ip(0))], None)
    );
    std::fs::write(t.cfg.path.join("services.yaml"), text).expect("yaml");
    let out = t.edgeplane("apply").output().expect("run apply");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "apply must fail: {err}");
    assert!(err.contains("ep_ct4_v1") && err.contains("unexpected layout") && err.contains("value 40 B"), "{err}");
    assert!(t.state.path.join("ep_ct4_v1").exists(), "the old map is left as it was");
    assert!(!t.state.path.join("links").read_dir().is_ok_and(|mut d| d.next().is_some()), "nothing attached");
}

// ---- the daemon's GC timer ---------------------------------------------------

#[test]
fn run_collects_expired_flows_on_its_interval() {
    need_root!();
    let t = Topo::new(1, true);
    std::fs::write(
        t.settings.path.join("edgeplane.yaml"),
        "maps:\n  services: 4096\n  backends: 4096\n  conntrack: 4096\n  affinity: 4096\n  sknat: 4096\n\
         conntrack-timeouts:\n  udp: 1\n  udp-stream: 1\nconntrack-gc-interval-seconds: 1\n",
    )
    .expect("settings");
    let text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: e2e\n---\n{}",
        service_yaml("web", VIP, &[ready(backend_ip(0))], None)
    );
    std::fs::write(t.cfg.path.join("services.yaml"), text).expect("yaml");
    let mut d = Daemon::spawn(t.edgeplane("run"));
    d.wait_for("running:");
    t.ask("udp", vip(53)).expect("udp through the ClusterIP");
    assert_eq!(stat(&t.status(), "entries"), 1, "one UDP flow tracked");
    // No apply, no file change: only the timer can remove it.
    d.wait_for("conntrack gc: 1 flows expired");
    let s = t.status();
    assert_eq!(stat(&s, "entries"), 0, "{s}");
    assert!(stat(&s, "gc_runs") >= 2, "{s}");
    assert_eq!(stat(&s, "gc_deleted_expired"), 1, "{s}");
}
