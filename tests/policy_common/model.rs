//! Builders for validated model objects, and the NetworkPolicy semantics
//! stated directly on the model (the oracle the compiled maps are checked
//! against). Shared by the policy test suites.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU16;

use edgeplane::compile_policy::PolicyNode;
use edgeplane::compile_policy::sim::Flow;
use edgeplane::diag::Span;
use edgeplane::model::{
    Cluster, ContainerPort, IpNet, LabelSelector, Labels, Namespace, NetworkPolicy, ObjectMeta, Pod, PolicyPeer,
    PolicyPort, PolicyRule, PortRef, Protocol, SelectorOp, SelectorRequirement,
};

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn meta(ns: &str, name: &str, l: Labels) -> ObjectMeta {
    ObjectMeta { namespace: ns.into(), name: name.into(), labels: l, origin: Span::default() }
}

pub fn namespace(name: &str, extra: &[(&str, &str)]) -> Namespace {
    let mut l = labels(extra);
    l.insert("kubernetes.io/metadata.name".into(), name.into());
    Namespace { name: name.into(), labels: l, origin: Span::default() }
}

pub fn port(name: Option<&str>, number: u16, protocol: Protocol) -> ContainerPort {
    ContainerPort { name: name.map(str::to_string), port: NonZeroU16::new(number).expect("non-zero"), protocol }
}

pub fn pod(ns: &str, name: &str, l: &[(&str, &str)], ip: &str, node: &str, ports: Vec<ContainerPort>) -> Pod {
    Pod {
        meta: meta(ns, name, labels(l)),
        node_name: Some(node.into()),
        ips: vec![ip.parse().expect("ip")],
        host_network: false,
        container_ports: ports,
    }
}

pub fn sel(l: &[(&str, &str)]) -> LabelSelector {
    LabelSelector { match_labels: labels(l), match_expressions: vec![] }
}

pub fn expr(key: &str, op: SelectorOp, values: &[&str]) -> LabelSelector {
    LabelSelector {
        match_labels: Labels::new(),
        match_expressions: vec![SelectorRequirement {
            key: key.into(),
            op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }],
    }
}

pub fn net(s: &str) -> IpNet {
    let (a, p) = s.split_once('/').expect("cidr");
    IpNet { addr: a.parse().expect("addr"), prefix: p.parse().expect("prefix") }
}

pub fn pods_peer(pod: Option<LabelSelector>, ns: Option<LabelSelector>) -> PolicyPeer {
    PolicyPeer::Pods { pod_selector: pod, namespace_selector: ns }
}

pub fn ipblock(cidr: &str, except: &[&str]) -> PolicyPeer {
    PolicyPeer::IpBlock { cidr: net(cidr), except: except.iter().map(|e| net(e)).collect() }
}

pub fn tcp(n: u16) -> PolicyPort {
    PolicyPort {
        protocol: Protocol::Tcp,
        port: Some(PortRef::Number(NonZeroU16::new(n).expect("port"))),
        end_port: None,
    }
}

pub fn udp(n: u16) -> PolicyPort {
    PolicyPort {
        protocol: Protocol::Udp,
        port: Some(PortRef::Number(NonZeroU16::new(n).expect("port"))),
        end_port: None,
    }
}

pub fn range(protocol: Protocol, lo: u16, hi: u16) -> PolicyPort {
    PolicyPort {
        protocol,
        port: Some(PortRef::Number(NonZeroU16::new(lo).expect("port"))),
        end_port: Some(NonZeroU16::new(hi).expect("port")),
    }
}

pub fn named(protocol: Protocol, name: &str) -> PolicyPort {
    PolicyPort { protocol, port: Some(PortRef::Name(name.into())), end_port: None }
}

pub fn rule(peers: Vec<PolicyPeer>, ports: Vec<PolicyPort>) -> PolicyRule {
    PolicyRule { peers, ports }
}

/// A policy with upstream policyTypes defaulting: ingress isolation unless
/// `egress_only`, egress isolation when egress rules are given or `egress_deny`.
pub struct Pol {
    pub p: NetworkPolicy,
}

impl Pol {
    pub fn new(ns: &str, name: &str, selector: LabelSelector) -> Self {
        Pol {
            p: NetworkPolicy {
                meta: meta(ns, name, Labels::new()),
                pod_selector: selector,
                ingress_isolation: true,
                egress_isolation: false,
                ingress: vec![],
                egress: vec![],
            },
        }
    }
    pub fn ingress(mut self, r: PolicyRule) -> Self {
        self.p.ingress.push(r);
        self
    }
    pub fn egress(mut self, r: PolicyRule) -> Self {
        self.p.egress.push(r);
        self.p.egress_isolation = true;
        self
    }
    /// policyTypes: [Egress] only.
    pub fn egress_only(mut self) -> Self {
        self.p.ingress_isolation = false;
        self.p.egress_isolation = true;
        self
    }
    pub fn types(mut self, ingress: bool, egress: bool) -> Self {
        self.p.ingress_isolation = ingress;
        self.p.egress_isolation = egress;
        self
    }
    pub fn build(self) -> NetworkPolicy {
        self.p
    }
}

pub const NODE: &str = "node-1";

/// The upstream e2e model: namespaces x, y, z (label ns), pods a, b, c
/// (label pod), all on NODE, IPs 198.18.0.{1..9}; each pod names its
/// container ports serve-80-tcp, serve-81-udp, etc. as upstream does.
pub fn xyz_cluster() -> Cluster {
    let mut c = Cluster::default();
    let mut i = 0;
    for ns in ["x", "y", "z"] {
        c.namespaces.push(namespace(ns, &[("ns", ns)]));
        for p in ["a", "b", "c"] {
            i += 1;
            let ports = vec![
                port(Some("serve-80-tcp"), 80, Protocol::Tcp),
                port(Some("serve-80-udp"), 80, Protocol::Udp),
                port(Some("serve-81-tcp"), 81, Protocol::Tcp),
                port(Some("serve-81-udp"), 81, Protocol::Udp),
            ];
            c.pods.push(pod(ns, p, &[("pod", p)], &format!("198.18.0.{i}"), NODE, ports));
        }
    }
    c
}

pub fn xyz_ip(ns: &str, p: &str) -> Ipv4Addr {
    let n = ["x", "y", "z"].iter().position(|x| *x == ns).expect("ns") * 3
        + ["a", "b", "c"].iter().position(|x| *x == p).expect("pod")
        + 1;
    Ipv4Addr::new(198, 18, 0, n as u8)
}

pub fn node_for(c: &Cluster) -> PolicyNode {
    let _ = c;
    PolicyNode { node_name: Some(NODE.into()), ..PolicyNode::default() }
}

fn v4(ip: &IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    }
}

fn in_net(n: &IpNet, ip: Ipv4Addr) -> bool {
    let Some(a) = v4(&n.addr) else { return false };
    let m = if n.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(n.prefix)) };
    u32::from(a) & m == u32::from(ip) & m
}

/// NetworkPolicy semantics, read straight off the model.
pub struct Oracle<'a> {
    c: &'a Cluster,
    node: &'a PolicyNode,
    by_ip: BTreeMap<Ipv4Addr, &'a Pod>,
    ns_labels: BTreeMap<&'a str, &'a Labels>,
}

impl<'a> Oracle<'a> {
    pub fn new(c: &'a Cluster, node: &'a PolicyNode) -> Self {
        let mut by_ip = BTreeMap::new();
        for p in &c.pods {
            if p.host_network {
                continue;
            }
            if let Some(ip) = p.ips.iter().find_map(v4) {
                by_ip.entry(ip).or_insert(p);
            }
        }
        let ns_labels = c.namespaces.iter().map(|n| (n.name.as_str(), &n.labels)).collect();
        Oracle { c, node, by_ip, ns_labels }
    }

    fn local(&self, p: &Pod) -> bool {
        self.node.node_name.as_ref().is_some_and(|n| p.node_name.as_ref() == Some(n))
            || p.ips.iter().any(|ip| self.node.local_pod_ips.contains(ip))
    }

    fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.node.host_ips.contains(&IpAddr::V4(ip))
    }

    fn selecting(&self, p: &Pod) -> Vec<&'a NetworkPolicy> {
        self.c
            .policies
            .iter()
            .filter(|np| np.meta.namespace == p.meta.namespace && np.pod_selector.matches(&p.meta.labels))
            .collect()
    }

    fn peer_ok(&self, np: &NetworkPolicy, r: &PolicyRule, ip: Ipv4Addr) -> bool {
        r.peers.is_empty()
            || r.peers.iter().any(|peer| match peer {
                PolicyPeer::Pods { pod_selector, namespace_selector } => {
                    let Some(p) = self.by_ip.get(&ip).filter(|_| !self.is_host(ip)) else { return false };
                    let ns_ok = match namespace_selector {
                        None => p.meta.namespace == np.meta.namespace,
                        Some(s) => self.ns_labels.get(p.meta.namespace.as_str()).is_some_and(|l| s.matches(l)),
                    };
                    ns_ok && pod_selector.as_ref().is_none_or(|s| s.matches(&p.meta.labels))
                }
                PolicyPeer::IpBlock { cidr, except } => in_net(cidr, ip) && !except.iter().any(|e| in_net(e, ip)),
            })
    }

    fn port_ok(&self, r: &PolicyRule, f: &Flow, dest: Option<&Pod>) -> bool {
        r.ports.is_empty()
            || r.ports.iter().any(|pp| {
                pp.protocol.number() == f.proto
                    && match &pp.port {
                        None => true,
                        Some(PortRef::Number(n)) => {
                            let hi = pp.end_port.map_or(n.get(), |e| e.get());
                            f.dport.is_some_and(|d| d >= n.get() && d <= hi)
                        }
                        Some(PortRef::Name(name)) => f.dport.is_some_and(|d| {
                            dest.is_some_and(|p| {
                                p.container_ports.iter().any(|cp| {
                                    cp.name.as_deref() == Some(name.as_str())
                                        && cp.protocol == pp.protocol
                                        && cp.port.get() == d
                                })
                            })
                        }),
                    }
            })
    }

    /// Whether this node lets the new flow through.
    pub fn allows(&self, f: &Flow) -> bool {
        if f.saddr == f.daddr {
            return true;
        }
        let src = self.by_ip.get(&f.saddr).copied().filter(|p| self.local(p) && !self.is_host(f.saddr));
        let dst = self.by_ip.get(&f.daddr).copied().filter(|_| !self.is_host(f.daddr));
        if let Some(s) = src {
            let pols: Vec<_> = self.selecting(s).into_iter().filter(|np| np.egress_isolation).collect();
            if !pols.is_empty()
                && !self.is_host(f.daddr)
                && !pols
                    .iter()
                    .any(|np| np.egress.iter().any(|r| self.peer_ok(np, r, f.daddr) && self.port_ok(r, f, dst)))
            {
                return false;
            }
        }
        if let Some(d) = dst.filter(|p| self.local(p)) {
            let pols: Vec<_> = self.selecting(d).into_iter().filter(|np| np.ingress_isolation).collect();
            if !pols.is_empty()
                && !self.is_host(f.saddr)
                && !pols
                    .iter()
                    .any(|np| np.ingress.iter().any(|r| self.peer_ok(np, r, f.saddr) && self.port_ok(r, f, Some(d))))
            {
                return false;
            }
        }
        true
    }
}
