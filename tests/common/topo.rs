//! The standard e2e topology: client pod netns -- node netns (edgeplane) --
//! backend pod netnses (backend 0 behind an "uplink" for --host-interfaces),
//! the Kubernetes YAML writer, and the binary invocation a user would type.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;

use super::*;

pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
pub const VIP_EMPTY: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 11);
pub const VIP_HAIRPIN: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 12);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const HAIRPIN: Ipv4Addr = Ipv4Addr::new(169, 254, 42, 1);
pub const T: Duration = Duration::from_secs(5);

pub fn backend_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 10 + i as u8, 2)
}

/// One endpoint of a slice: address and conditions.
#[derive(Clone, Copy)]
pub struct Ep {
    pub ip: Ipv4Addr,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

pub fn ready(ip: Ipv4Addr) -> Ep {
    Ep { ip, ready: true, serving: true, terminating: false }
}

/// Service `name` at `vip` (80/TCP -> 8080, 53/UDP -> 5353) with one EndpointSlice.
pub fn service_yaml(name: &str, vip: Ipv4Addr, eps: &[Ep], affinity: Option<u32>) -> String {
    let aff = match affinity {
        Some(t) => {
            format!("  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: {t}\n")
        }
        None => String::new(),
    };
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: e2e\nspec:\n  type: ClusterIP\n  clusterIP: {vip}\n{aff}  ports:\n  - name: http\n    protocol: TCP\n    port: 80\n    targetPort: 8080\n  - name: dns\n    protocol: UDP\n    port: 53\n    targetPort: 5353\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: e2e\n  labels:\n    kubernetes.io/service-name: {name}\naddressType: IPv4\n"
    );
    if eps.is_empty() {
        y.push_str("endpoints: []\n");
    } else {
        y.push_str("endpoints:\n");
        for e in eps {
            y.push_str(&format!(
                "- addresses: [\"{}\"]\n  conditions: {{ready: {}, serving: {}, terminating: {}}}\n",
                e.ip, e.ready, e.serving, e.terminating
            ));
        }
    }
    y.push_str("ports:\n- name: http\n  protocol: TCP\n  port: 8080\n- name: dns\n  protocol: UDP\n  port: 5353\n");
    y
}

/// client ns -- node ns -- backend nses (backend 0 behind an uplink-named interface).
pub struct Topo {
    // Declaration order is drop order: state (detach) before the namespaces.
    pub state: StateDir,
    _servers: Vec<EchoServer>,
    pub cfg: TempDir,
    pub settings: TempDir,
    pub cgroup: Cgroup,
    pub client: NetNs,
    pub backends: Vec<NetNs>,
    pub node: NetNs,
    pub tag: String,
}

impl Topo {
    pub fn new(n_backends: usize, tx_offload: bool) -> Topo {
        let node = NetNs::new("n");
        let client = NetNs::new("c");
        let tag = unique();
        node.sysctl("net.ipv4.ip_forward", "1");
        let cl = format!("cl{tag}c");
        node.veth(&cl, &client, "eth0");
        node.addr(&cl, "198.18.0.1/24");
        client.addr("eth0", "198.18.0.2/24");
        client.route(&["default", "via", "198.18.0.1"]);
        let mut backends = Vec::new();
        let mut servers = Vec::new();
        for i in 0..n_backends {
            let b = NetNs::new(&format!("b{i}"));
            // Backend 0 sits behind an "uplink" (a remote node's pod): --host-interfaces.
            let dev = if i == 0 { format!("up{tag}") } else { format!("cl{tag}b{i}") };
            node.veth(&dev, &b, "eth0");
            node.addr(&dev, &format!("198.18.{}.1/24", 10 + i));
            b.addr("eth0", &format!("{}/24", backend_ip(i)));
            b.route(&["default", "via", &format!("198.18.{}.1", 10 + i)]);
            if !tx_offload {
                node.tx_csum_off(&dev);
                b.tx_csum_off("eth0");
            }
            servers.push(EchoServer::start(&b, &format!("be{i}"), Ipv4Addr::UNSPECIFIED, Some(8080), Some(5353)));
            backends.push(b);
        }
        if !tx_offload {
            node.tx_csum_off(&cl);
            client.tx_csum_off("eth0");
        }
        // The client pod serves too (hairpin tests).
        servers.push(EchoServer::start(&client, "client", Ipv4Addr::UNSPECIFIED, Some(8080), Some(5353)));
        let settings = TempDir::new("settings");
        std::fs::write(
            settings.path.join("edgeplane.yaml"),
            "maps:\n  services: 4096\n  backends: 4096\n  conntrack: 65536\n  affinity: 4096\n  sknat: 4096\n",
        )
        .expect("settings");
        Topo {
            state: StateDir::new(&node),
            _servers: servers,
            cfg: TempDir::new("cfg"),
            settings,
            cgroup: Cgroup::new(),
            client,
            backends,
            node,
            tag,
        }
    }

    pub fn edgeplane(&self, sub: &str) -> Command {
        self.edgeplane_with_cgroup(sub, &self.cgroup.path)
    }

    /// As [`Topo::edgeplane`], with another socket-LB cgroup.
    pub fn edgeplane_with_cgroup(&self, sub: &str, cgroup: &std::path::Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_edgeplane"));
        c.arg(sub)
            .arg("--config-dir")
            .arg(&self.cfg.path)
            .arg("--config")
            .arg(self.settings.path.join("edgeplane.yaml"))
            .args(["--netns", &self.node.name])
            .arg("--state-dir")
            .arg(&self.state.path)
            .args(["--workload-interfaces", "cl*", "--host-interfaces", "up*"])
            .arg("--cgroup")
            .arg(cgroup);
        c
    }

    /// Write the YAML directory (a Namespace plus `docs`) without applying it,
    /// write-then-rename as editors and git-sync do.
    pub fn write_dir(&self, docs: &[String]) {
        let tmp = self.cfg.path.join(".services.yaml.tmp");
        std::fs::write(&tmp, dir_text(docs)).expect("write yaml");
        std::fs::rename(&tmp, self.cfg.path.join("services.yaml")).expect("rename yaml");
    }

    /// Write the YAML directory and apply it with the binary.
    pub fn apply(&self, docs: &[String]) {
        std::fs::write(self.cfg.path.join("services.yaml"), dir_text(docs)).expect("write yaml");
        sh(&mut self.edgeplane("apply"));
    }

    pub fn status(&self) -> serde_json::Value {
        let out = sh(self.edgeplane("status").arg("--json"));
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    /// An ep_stats_v1 counter of `status` by label.
    pub fn stat(&self, label: &str) -> u64 {
        let s = self.status();
        s["stats"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == label))
            .and_then(|c| c["value"].as_u64())
            .unwrap_or_else(|| panic!("no counter {label} in {s}"))
    }

    pub fn drops(&self, label: &str) -> u64 {
        let s = self.status();
        s["drops"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["reason"] == label))
            .and_then(|d| d["count"].as_u64())
            .unwrap_or_else(|| panic!("no drop counter {label} in {s}"))
    }

    pub fn ask(&self, mode: &'static str, to: SocketAddrV4) -> std::io::Result<Answer> {
        self.client.within(move || match mode {
            "tcp" => tcp_ask(to, T),
            "udp" => udp_ask_connected(to, T),
            _ => udp_ask_unconnected(to, T),
        })
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        // `edgeplane reset` as a user would; StateDir's guard repeats it if this failed.
        let out = self.edgeplane("reset").output();
        if let Ok(o) = out
            && !o.status.success()
        {
            eprintln!("cleanup: edgeplane reset: {}", String::from_utf8_lossy(&o.stderr));
        }
        let _ = &self.tag;
    }
}

/// The directory's one file: a Namespace plus `docs`.
fn dir_text(docs: &[String]) -> String {
    let mut text = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: e2e\n");
    for d in docs {
        text.push_str("---\n");
        text.push_str(d);
    }
    text
}

pub fn vip(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(VIP, port)
}
