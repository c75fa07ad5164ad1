//! Builders for validated model objects, and the NetworkPolicy semantics
//! stated directly on the model (the oracle the compiled maps are checked
//! against). Shared by the policy test suites.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::num::NonZeroU16;

use edgeplane::compile_policy::PolicyNode;
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

/// NetworkPolicy semantics, read straight off the model (the library's
/// policy view: what `edgeplane policy` and `trace` explain with).
#[allow(unused_imports)] // not every suite that includes this module asks the oracle
pub use edgeplane::policy_view::PolicyView as Oracle;
