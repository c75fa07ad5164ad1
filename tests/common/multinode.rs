//! Two-node topology for NodePort/LoadBalancer tests (root only): a router
//! namespace bridging the nodes' L2 segment 198.18.200.0/24 (router .1,
//! node1 .11, node2 .12), pods behind each node (node1 198.18.1.0/24, node2
//! 198.18.2.0/24), and an outside client 198.19.250.2 one routed hop away.
//! The router has NO route to pod CIDRs, so a pod is reachable from outside
//! only through a node. Per-wire counters are nftables rules in the ROUTER
//! namespace (bridge family, so iifname is the node's port, not the bridge).
//! Every name is per-namespace, and every namespace is dropped with the topology.

use std::net::Ipv4Addr;

use std::process::Command;

use super::{Cgroup, EchoServer, NetNs, StateDir, TempDir, sh};

pub const ROUTER_LAN: &str = "198.18.200.1";
pub const NODE_IPS: [&str; 2] = ["198.18.200.11", "198.18.200.12"];
pub const CLIENT_IP: &str = "198.19.250.2";
/// The router's port on the bridge facing node N (1-based), in the router namespace.
pub fn router_port(node: usize) -> String {
    format!("rn{node}")
}
/// The uplink of every node namespace (faces the router's bridge).
pub const UPLINK: &str = "up0";

pub fn pod_ip(node: usize, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, node as u8, 10 + i as u8)
}

pub struct Pod {
    pub name: String,
    pub ip: Ipv4Addr,
    /// The veth's host side in the node namespace (for `workload-interfaces`).
    pub host_if: String,
    // Server before namespace: its threads must end before the namespace goes.
    _server: EchoServer,
    pub ns: NetNs,
}

pub struct MultiNode {
    // Declaration order is drop order: edgeplane state (detach) before the namespaces.
    pub agents: Vec<NodeAgent>,
    pub pods: Vec<Vec<Pod>>,
    pub client: NetNs,
    pub nodes: Vec<NetNs>,
    pub router: NetNs,
}

impl MultiNode {
    /// `pods_per_node[n]` pods behind node n+1, each serving TCP and UDP on `port`.
    pub fn new(pods_per_node: [usize; 2], port: u16, tx_offload: bool) -> MultiNode {
        let router = NetNs::new("rt");
        router.sysctl("net.ipv4.ip_forward", "1");
        router.ip(&["link", "add", "br0", "type", "bridge"]);
        router.ip(&["link", "set", "br0", "up"]);
        router.addr("br0", &format!("{ROUTER_LAN}/24"));

        let client = NetNs::new("cl");
        router.veth("rc", &client, "eth0");
        router.addr("rc", "198.19.250.1/24");
        client.addr("eth0", &format!("{CLIENT_IP}/24"));
        client.route(&["default", "via", "198.19.250.1"]);

        let mut nodes = Vec::new();
        let mut pods = Vec::new();
        for (n, &count) in pods_per_node.iter().enumerate() {
            let node_no = n + 1;
            let node = NetNs::new(&format!("n{node_no}"));
            for key in ["net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"] {
                node.sysctl(key, if key.ends_with("forward") { "1" } else { "0" });
            }
            let port_if = router_port(node_no);
            node.veth(UPLINK, &router, &port_if);
            router.ip(&["link", "set", &port_if, "master", "br0"]);
            node.addr(UPLINK, &format!("{}/24", NODE_IPS[n]));
            node.route(&["default", "via", ROUTER_LAN]);
            let other = 3 - node_no;
            node.route(&[&format!("198.18.{other}.0/24"), "via", NODE_IPS[other - 1]]);
            if !tx_offload {
                node.tx_csum_off(UPLINK);
            }
            let mut node_pods = Vec::new();
            for i in 0..count {
                let ip = pod_ip(node_no, i);
                let ns = NetNs::new(&format!("p{node_no}"));
                let host_if = format!("pv{i}");
                node.veth(&host_if, &ns, "eth0");
                ns.addr("eth0", &format!("{ip}/32"));
                ns.route(&["169.254.1.1", "dev", "eth0", "scope", "link"]);
                ns.route(&["default", "via", "169.254.1.1", "dev", "eth0"]);
                node.addr(&host_if, "169.254.1.1/32");
                node.route(&[&format!("{ip}/32"), "dev", &host_if]);
                node.sysctl(&format!("net.ipv4.conf.{host_if}.proxy_arp"), "1");
                node.sysctl(&format!("net.ipv4.conf.{host_if}.rp_filter"), "0");
                let name = format!("node{node_no}-pod{i}");
                let server = EchoServer::start(&ns, &name, ip, Some(port), Some(port));
                node_pods.push(Pod { name, ip, host_if, _server: server, ns });
            }
            nodes.push(node);
            pods.push(node_pods);
        }
        router.run("nft", &["add table bridge epwire"]);
        router.run("nft", &["add chain bridge epwire pre { type filter hook prerouting priority 0; policy accept; }"]);
        MultiNode { agents: Vec::new(), pods, client, nodes, router }
    }

    /// Counts, in the router, packets entering from node `node`'s wire with
    /// this IPv4 source address and L4 source port, under `label`.
    pub fn watch_wire(&self, label: &str, node: usize, saddr: &str, sport: u16) {
        let rule = format!(
            "add rule bridge epwire pre iifname \"{}\" ether type ip ip saddr {saddr} th sport {sport} counter comment \"{label}\"",
            router_port(node)
        );
        self.router.run("nft", &[&rule]);
    }

    /// Packets counted so far by the `watch_wire` rule named `label`.
    pub fn wire_count(&self, label: &str) -> u64 {
        let out = self.router.run("nft", &["list", "chain", "bridge", "epwire", "pre"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains(&format!("comment \"{label}\"")))
            .unwrap_or_else(|| panic!("no wire counter {label} in:\n{text}"));
        let after = line.split("packets ").nth(1).unwrap_or_else(|| panic!("no packets in {line}"));
        after.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("bad count in {line}"))
    }
}

/// One node's edgeplane: its settings file, YAML directory, pinned state and cgroup.
pub struct NodeAgent {
    pub state: StateDir,
    pub cfg: TempDir,
    pub settings: TempDir,
    pub cgroup: Cgroup,
    pub netns: String,
    pub node_name: String,
}

impl NodeAgent {
    pub fn edgeplane(&self, sub: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_edgeplane"));
        c.arg(sub)
            .arg("--config-dir")
            .arg(&self.cfg.path)
            .arg("--config")
            .arg(self.settings.path.join("edgeplane.yaml"))
            .args(["--netns", &self.netns, "--node-name", &self.node_name])
            .arg("--state-dir")
            .arg(&self.state.path)
            .arg("--cgroup")
            .arg(&self.cgroup.path);
        c
    }

    /// `edgeplane drops` output of this node (text, for loose matching).
    pub fn drops_text(&self) -> String {
        String::from_utf8_lossy(&sh(&mut self.edgeplane("drops")).stdout).into_owned()
    }
}

impl MultiNode {
    /// Writes settings (`node-ips`, `dsr`, `host-interfaces: [up0]`,
    /// `workload-interfaces: ["pv*"]`) and the YAML `docs` for every node,
    /// then applies them with `edgeplane apply` on each node.
    pub fn apply(&mut self, dsr: bool, docs: &[String]) {
        if self.agents.is_empty() {
            for (n, node) in self.nodes.iter().enumerate() {
                self.agents.push(NodeAgent {
                    state: StateDir::new(node),
                    cfg: TempDir::new("cfg"),
                    settings: TempDir::new("settings"),
                    cgroup: Cgroup::new(),
                    netns: node.name.clone(),
                    node_name: format!("node{}", n + 1),
                });
            }
        }
        // Written at every apply: `dsr` may change between two.
        for (n, a) in self.agents.iter().enumerate() {
            std::fs::write(
                a.settings.path.join("edgeplane.yaml"),
                format!(
                    "maps:\n  services: 4096\n  backends: 4096\n  conntrack: 65536\n  affinity: 4096\n  sknat: 4096\nnode-ips: [\"{}\"]\ndsr: {dsr}\nhost-interfaces: [\"{UPLINK}\"]\nworkload-interfaces: [\"pv*\"]\n",
                    NODE_IPS[n]
                ),
            )
            .expect("settings");
        }
        let mut text = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: e2e\n");
        for d in docs {
            text.push_str("---\n");
            text.push_str(d);
        }
        for a in &self.agents {
            std::fs::write(a.cfg.path.join("services.yaml"), &text).expect("write yaml");
            sh(&mut a.edgeplane("apply"));
        }
    }
}

/// Service `name` of `kind` (NodePort or LoadBalancer) on ClusterIP
/// `cluster_ip`: 80/TCP nodePort 30080 and 80/UDP nodePort 30081 to pod port
/// 8080, `extra` appended to the spec (indented two spaces), and one
/// EndpointSlice whose endpoints carry their nodeName.
pub fn node_port_yaml(name: &str, kind: &str, cluster_ip: &str, extra: &str, eps: &[(Ipv4Addr, &str)]) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: e2e\nspec:\n  type: {kind}\n  clusterIP: {cluster_ip}\n{extra}  ports:\n  - name: http\n    protocol: TCP\n    port: 80\n    targetPort: 8080\n    nodePort: 30080\n  - name: udp\n    protocol: UDP\n    port: 80\n    targetPort: 8080\n    nodePort: 30081\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: e2e\n  labels:\n    kubernetes.io/service-name: {name}\naddressType: IPv4\nendpoints:\n"
    );
    for (ip, node) in eps {
        y.push_str(&format!("- addresses: [\"{ip}\"]\n  nodeName: {node}\n  conditions: {{ready: true, serving: true, terminating: false}}\n"));
    }
    y.push_str("ports:\n- name: http\n  protocol: TCP\n  port: 8080\n- name: udp\n  protocol: UDP\n  port: 8080\n");
    y
}
