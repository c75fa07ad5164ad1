//! NetworkPolicy semantics read straight off the model, with the reasons:
//! which policies select a pod, what each rule allows, and which rules let a
//! flow through (or that none does). Behind `edgeplane policy` and the
//! policy part of `edgeplane trace`; the compile tests use it as the oracle
//! that the compiled maps must agree with. Pure.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use crate::compile_policy::PolicyNode;
use crate::model::{
    Cluster, IpNet, LabelSelector, Labels, NetworkPolicy, Pod, PolicyPeer, PolicyPort, PolicyRule, PortRef, SelectorOp,
};

pub use crate::compile_policy::sim::Flow;

/// One side's (egress of the source, ingress of the destination) answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideVerdict {
    /// The local pod whose policies decide this side; None: no local pod,
    /// so this node does not judge this side.
    pub pod: Option<String>,
    /// Policies isolating the pod in this direction (`namespace/name`).
    pub isolated_by: Vec<String>,
    /// Rules that admit the flow, as `namespace/name ingress[i]`.
    pub allowed_by: Vec<String>,
    /// `not-isolated`, `allowed`, `denied`, or `exempt` (this node's own
    /// address: kube-proxy and Cilium let the node reach its pods).
    pub verdict: &'static str,
}

impl SideVerdict {
    fn open(pod: Option<String>) -> SideVerdict {
        SideVerdict { pod, isolated_by: Vec::new(), allowed_by: Vec::new(), verdict: "not-isolated" }
    }

    pub fn denied(&self) -> bool {
        self.verdict == "denied"
    }
}

/// Both sides of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub egress: SideVerdict,
    pub ingress: SideVerdict,
}

impl Explanation {
    pub fn allowed(&self) -> bool {
        !self.egress.denied() && !self.ingress.denied()
    }
}

fn v4(ip: &IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    }
}

fn in_net(n: &IpNet, ip: Ipv4Addr) -> bool {
    let Some(a) = v4(&n.addr) else { return false };
    let m = if n.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(n.prefix.min(32))) };
    u32::from(a) & m == u32::from(ip) & m
}

/// The model indexed for policy questions.
pub struct PolicyView<'a> {
    cluster: &'a Cluster,
    node: &'a PolicyNode,
    by_ip: BTreeMap<Ipv4Addr, &'a Pod>,
    ns_labels: BTreeMap<&'a str, &'a Labels>,
}

pub fn pod_name(p: &Pod) -> String {
    format!("{}/{}", p.meta.namespace, p.meta.name)
}

pub fn policy_name(np: &NetworkPolicy) -> String {
    format!("{}/{}", np.meta.namespace, np.meta.name)
}

impl<'a> PolicyView<'a> {
    pub fn new(cluster: &'a Cluster, node: &'a PolicyNode) -> Self {
        let mut by_ip = BTreeMap::new();
        for p in cluster.pods.iter().filter(|p| !p.host_network) {
            if let Some(ip) = p.ips.iter().find_map(v4) {
                by_ip.entry(ip).or_insert(p);
            }
        }
        let ns_labels = cluster.namespaces.iter().map(|n| (n.name.as_str(), &n.labels)).collect();
        PolicyView { cluster, node, by_ip, ns_labels }
    }

    pub fn pod_at(&self, ip: Ipv4Addr) -> Option<&'a Pod> {
        self.by_ip.get(&ip).copied()
    }

    pub fn pod_named(&self, namespace: &str, name: &str) -> Option<&'a Pod> {
        self.cluster.pods.iter().find(|p| p.meta.namespace == namespace && p.meta.name == name)
    }

    /// Whether this node enforces policy for `p` (its own pods only).
    pub fn is_local(&self, p: &Pod) -> bool {
        self.node.node_name.as_ref().is_some_and(|n| p.node_name.as_ref() == Some(n))
            || p.ips.iter().any(|ip| self.node.local_pod_ips.contains(ip))
    }

    fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.node.host_ips.contains(&IpAddr::V4(ip))
    }

    /// Policies of the pod's namespace whose podSelector matches it.
    pub fn selecting(&self, p: &Pod) -> Vec<&'a NetworkPolicy> {
        self.cluster
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

    fn port_ok(r: &PolicyRule, f: &Flow, dest: Option<&Pod>) -> bool {
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

    /// One side: `pod` (local, subject of the policies), `peer` the other end.
    fn side(&self, pod: Option<&Pod>, peer: Ipv4Addr, f: &Flow, egress: bool) -> SideVerdict {
        let mut out = SideVerdict::open(pod.map(pod_name));
        let Some(pod) = pod else { return out };
        let isolating: Vec<&NetworkPolicy> = self
            .selecting(pod)
            .into_iter()
            .filter(|np| if egress { np.egress_isolation } else { np.ingress_isolation })
            .collect();
        if isolating.is_empty() {
            return out;
        }
        out.isolated_by = isolating.iter().map(|np| policy_name(np)).collect();
        if self.is_host(peer) {
            out.verdict = "exempt";
            return out;
        }
        let dest = if egress { self.by_ip.get(&f.daddr).copied() } else { Some(pod) };
        let dir = if egress { "egress" } else { "ingress" };
        for np in &isolating {
            let rules = if egress { &np.egress } else { &np.ingress };
            for (i, r) in rules.iter().enumerate() {
                if self.peer_ok(np, r, peer) && Self::port_ok(r, f, dest) {
                    out.allowed_by.push(format!("{} {dir}[{i}]", policy_name(np)));
                }
            }
        }
        out.verdict = if out.allowed_by.is_empty() { "denied" } else { "allowed" };
        out
    }

    /// What this node's policies say about a new flow, side by side.
    pub fn explain(&self, f: &Flow) -> Explanation {
        if f.saddr == f.daddr {
            // A pod cannot block traffic to itself.
            return Explanation { egress: SideVerdict::open(None), ingress: SideVerdict::open(None) };
        }
        let src = self.pod_at(f.saddr).filter(|p| self.is_local(p) && !self.is_host(f.saddr));
        let dst = self.pod_at(f.daddr).filter(|p| self.is_local(p) && !self.is_host(f.daddr));
        Explanation { egress: self.side(src, f.daddr, f, true), ingress: self.side(dst, f.saddr, f, false) }
    }

    /// Whether this node lets the new flow through.
    pub fn allows(&self, f: &Flow) -> bool {
        self.explain(f).allowed()
    }
}

// ---- describing policies (edgeplane policy) --------------------------------

struct Selector<'a>(&'a LabelSelector);

impl fmt::Display for Selector<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("all");
        }
        let mut parts: Vec<String> = self.0.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for r in &self.0.match_expressions {
            parts.push(match r.op {
                SelectorOp::In => format!("{} in ({})", r.key, r.values.join(",")),
                SelectorOp::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                SelectorOp::Exists => r.key.clone(),
                SelectorOp::DoesNotExist => format!("!{}", r.key),
            });
        }
        write!(f, "{{{}}}", parts.join(", "))
    }
}

fn describe_net(n: &IpNet) -> String {
    format!("{}/{}", n.addr, n.prefix)
}

/// `pods {app=db} in namespaces {team=a}`, `cidr 10.0.0.0/8 except ...`.
pub fn describe_peer(p: &PolicyPeer, own_ns: &str) -> String {
    match p {
        PolicyPeer::Pods { pod_selector, namespace_selector } => {
            let pods = pod_selector.as_ref().map_or("all".to_string(), |s| Selector(s).to_string());
            let ns = namespace_selector
                .as_ref()
                .map_or(format!("namespace {own_ns}"), |s| format!("namespaces {}", Selector(s)));
            format!("pods {pods} in {ns}")
        }
        PolicyPeer::IpBlock { cidr, except } if except.is_empty() => format!("cidr {}", describe_net(cidr)),
        PolicyPeer::IpBlock { cidr, except } => format!(
            "cidr {} except {}",
            describe_net(cidr),
            except.iter().map(describe_net).collect::<Vec<_>>().join(",")
        ),
    }
}

/// `tcp/80`, `tcp/8000-8080`, `udp/dns` (a named port), `sctp/all`.
pub fn describe_port(p: &PolicyPort) -> String {
    let proto = crate::maps::proto_name(p.protocol.number());
    match (&p.port, p.end_port) {
        (None, _) => format!("{proto}/all"),
        (Some(PortRef::Number(n)), Some(end)) => format!("{proto}/{n}-{end}"),
        (Some(PortRef::Number(n)), None) => format!("{proto}/{n}"),
        (Some(PortRef::Name(name)), _) => format!("{proto}/{name}"),
    }
}

/// One rule of a policy, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleView {
    /// `ingress[0]`, `egress[1]`.
    pub rule: String,
    /// Empty: every peer.
    pub peers: Vec<String>,
    /// Empty: every port and protocol.
    pub ports: Vec<String>,
}

/// One policy selecting the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyEntry {
    pub name: String,
    /// file:line:col of the object.
    pub origin: String,
    pub pod_selector: String,
    /// `Ingress`, `Egress`: directions this policy isolates the pod in.
    pub isolates: Vec<&'static str>,
    pub rules: Vec<RuleView>,
}

/// `edgeplane policy NS/POD`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodPolicies {
    pub pod: String,
    pub ips: Vec<IpAddr>,
    pub node: Option<String>,
    /// Whether this node enforces the pod's policies (it is one of its pods).
    pub enforced_here: bool,
    pub ingress_isolated: bool,
    pub egress_isolated: bool,
    pub policies: Vec<PolicyEntry>,
}

impl PolicyView<'_> {
    pub fn pod_policies(&self, p: &Pod) -> PodPolicies {
        let policies: Vec<PolicyEntry> = self
            .selecting(p)
            .into_iter()
            .map(|np| {
                let ns = &np.meta.namespace;
                let rule_views = |dir: &str, rules: &[PolicyRule]| -> Vec<RuleView> {
                    rules
                        .iter()
                        .enumerate()
                        .map(|(i, r)| RuleView {
                            rule: format!("{dir}[{i}]"),
                            peers: r.peers.iter().map(|peer| describe_peer(peer, ns)).collect(),
                            ports: r.ports.iter().map(describe_port).collect(),
                        })
                        .collect()
                };
                let mut rules = rule_views("ingress", &np.ingress);
                rules.extend(rule_views("egress", &np.egress));
                let mut isolates = Vec::new();
                if np.ingress_isolation {
                    isolates.push("Ingress");
                }
                if np.egress_isolation {
                    isolates.push("Egress");
                }
                PolicyEntry {
                    name: policy_name(np),
                    origin: np.meta.origin.to_string(),
                    pod_selector: Selector(&np.pod_selector).to_string(),
                    isolates,
                    rules,
                }
            })
            .collect();
        PodPolicies {
            pod: pod_name(p),
            ips: p.ips.clone(),
            node: p.node_name.clone(),
            enforced_here: self.is_local(p),
            ingress_isolated: policies.iter().any(|e| e.isolates.contains(&"Ingress")),
            egress_isolated: policies.iter().any(|e| e.isolates.contains(&"Egress")),
            policies,
        }
    }
}

impl fmt::Display for PodPolicies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ips: Vec<String> = self.ips.iter().map(ToString::to_string).collect();
        writeln!(
            f,
            "pod {} ({}) on node {}: {}",
            self.pod,
            if ips.is_empty() { "no address".to_string() } else { ips.join(", ") },
            self.node.as_deref().unwrap_or("?"),
            if self.enforced_here { "enforced on this node" } else { "not on this node: enforced where it runs" }
        )?;
        let state = |isolated: bool, dir: &str| {
            if isolated {
                format!("{dir}: isolated (only what a rule below allows)")
            } else {
                format!("{dir}: all allowed")
            }
        };
        writeln!(f, "  {}", state(self.ingress_isolated, "ingress"))?;
        writeln!(f, "  {}", state(self.egress_isolated, "egress"))?;
        if self.policies.is_empty() {
            return writeln!(f, "  no NetworkPolicy selects it");
        }
        for p in &self.policies {
            writeln!(
                f,
                "policy {} ({}), podSelector {}, isolates {}",
                p.name,
                p.origin,
                p.pod_selector,
                p.isolates.join("+")
            )?;
            if p.rules.is_empty() {
                writeln!(f, "  no rules: allows nothing in the directions it isolates")?;
            }
            for r in &p.rules {
                let peers = if r.peers.is_empty() { "every peer".to_string() } else { r.peers.join(" | ") };
                let ports = if r.ports.is_empty() { "every port".to_string() } else { r.ports.join(", ") };
                let dir = if r.rule.starts_with("ingress") { "from" } else { "to" };
                writeln!(f, "  {:<11} {dir} {peers} on {ports}", r.rule)?;
            }
        }
        Ok(())
    }
}

/// `edgeplane policy NAMESPACE/POD`: 0 answered, 1 invalid directory or no
/// such pod, 2 usage error.
pub fn command(settings: &crate::config::Settings, pod: &str, json: bool) -> u8 {
    let Some((namespace, name)) = pod.split_once('/') else {
        eprintln!("error: {pod}: expected NAMESPACE/POD");
        return 2;
    };
    let Some(loaded) = crate::daemon::load_valid(settings, &std::sync::Arc::default()) else { return 1 };
    let node = crate::daemon::policy_node(&loaded, settings);
    let view = PolicyView::new(&loaded.cluster, &node);
    let Some(p) = view.pod_named(namespace, name) else {
        eprintln!("error: no pod {namespace}/{name} in {}", settings.config_dir.display());
        return 1;
    };
    let answer = view.pod_policies(p);
    if json {
        return crate::inspect::print_json(&answer);
    }
    print!("{answer}");
    0
}
