//! Renders test model objects (Namespaces, Pods, NetworkPolicies) as the
//! Kubernetes YAML a user would write, for tests that drive the loader and
//! the binary.
#![allow(dead_code)]

use std::fmt::Write;

use edgeplane::model::{
    Cluster, LabelSelector, NetworkPolicy, PolicyPeer, PolicyPort, PolicyRule, PortRef, SelectorOp,
};

fn q(s: &str) -> String {
    format!("{s:?}")
}

fn labels_flow(l: &edgeplane::model::Labels) -> String {
    let items: Vec<String> = l.iter().map(|(k, v)| format!("{}: {}", q(k), q(v))).collect();
    format!("{{{}}}", items.join(", "))
}

fn selector(s: &LabelSelector) -> String {
    let mut parts = Vec::new();
    if !s.match_labels.is_empty() {
        parts.push(format!("matchLabels: {}", labels_flow(&s.match_labels)));
    }
    if !s.match_expressions.is_empty() {
        let exprs: Vec<String> = s
            .match_expressions
            .iter()
            .map(|r| {
                let op = match r.op {
                    SelectorOp::In => "In",
                    SelectorOp::NotIn => "NotIn",
                    SelectorOp::Exists => "Exists",
                    SelectorOp::DoesNotExist => "DoesNotExist",
                };
                let values: Vec<String> = r.values.iter().map(|v| q(v)).collect();
                if values.is_empty() {
                    format!("{{key: {}, operator: {op}}}", q(&r.key))
                } else {
                    format!("{{key: {}, operator: {op}, values: [{}]}}", q(&r.key), values.join(", "))
                }
            })
            .collect();
        parts.push(format!("matchExpressions: [{}]", exprs.join(", ")));
    }
    format!("{{{}}}", parts.join(", "))
}

fn peer(p: &PolicyPeer) -> String {
    match p {
        PolicyPeer::Pods { pod_selector, namespace_selector } => {
            let mut parts = Vec::new();
            if let Some(s) = pod_selector {
                parts.push(format!("podSelector: {}", selector(s)));
            }
            if let Some(s) = namespace_selector {
                parts.push(format!("namespaceSelector: {}", selector(s)));
            }
            format!("{{{}}}", parts.join(", "))
        }
        PolicyPeer::IpBlock { cidr, except } => {
            let ex: Vec<String> = except.iter().map(|e| q(&format!("{}/{}", e.addr, e.prefix))).collect();
            let ex = if ex.is_empty() { String::new() } else { format!(", except: [{}]", ex.join(", ")) };
            format!("{{ipBlock: {{cidr: {}{ex}}}}}", q(&format!("{}/{}", cidr.addr, cidr.prefix)))
        }
    }
}

fn port(p: &PolicyPort) -> String {
    let mut s = format!("{{protocol: {}", p.protocol.as_str());
    match &p.port {
        Some(PortRef::Number(n)) => write!(s, ", port: {n}").unwrap_or(()),
        Some(PortRef::Name(n)) => write!(s, ", port: {}", q(n)).unwrap_or(()),
        None => {}
    }
    if let Some(e) = p.end_port {
        write!(s, ", endPort: {e}").unwrap_or(());
    }
    s.push('}');
    s
}

fn rules(out: &mut String, key: &str, peer_key: &str, rs: &[PolicyRule]) {
    writeln!(out, "  {key}:").unwrap_or(());
    for r in rs {
        let peers: Vec<String> = r.peers.iter().map(peer).collect();
        let ports: Vec<String> = r.ports.iter().map(port).collect();
        writeln!(out, "  - {peer_key}: [{}]", peers.join(", ")).unwrap_or(());
        writeln!(out, "    ports: [{}]", ports.join(", ")).unwrap_or(());
    }
}

pub fn policy(p: &NetworkPolicy) -> String {
    let mut s = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  podSelector: {}\n",
        p.meta.name,
        p.meta.namespace,
        selector(&p.pod_selector)
    );
    let mut types = Vec::new();
    if p.ingress_isolation {
        types.push("Ingress");
    }
    if p.egress_isolation {
        types.push("Egress");
    }
    writeln!(s, "  policyTypes: [{}]", types.join(", ")).unwrap_or(());
    if !p.ingress.is_empty() {
        rules(&mut s, "ingress", "from", &p.ingress);
    }
    if !p.egress.is_empty() {
        rules(&mut s, "egress", "to", &p.egress);
    }
    s
}

/// Every Namespace, Pod and NetworkPolicy of `c` as one multi-document file.
pub fn cluster(c: &Cluster) -> String {
    let mut docs = Vec::new();
    for n in &c.namespaces {
        let mut l = n.labels.clone();
        l.remove("kubernetes.io/metadata.name");
        docs.push(format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n  labels: {}\n",
            n.name,
            labels_flow(&l)
        ));
    }
    for p in &c.pods {
        let mut s = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {}\n  namespace: {}\n  labels: {}\nspec:\n",
            p.meta.name,
            p.meta.namespace,
            labels_flow(&p.meta.labels)
        );
        if let Some(n) = &p.node_name {
            writeln!(s, "  nodeName: {n}").unwrap_or(());
        }
        s.push_str("  containers:\n  - name: server\n    image: registry.k8s.io/e2e-test-images/agnhost:2.47\n");
        if !p.container_ports.is_empty() {
            s.push_str("    ports:\n");
            for cp in &p.container_ports {
                if let Some(n) = &cp.name {
                    writeln!(s, "    - name: {n}").unwrap_or(());
                    writeln!(s, "      containerPort: {}", cp.port).unwrap_or(());
                } else {
                    writeln!(s, "    - containerPort: {}", cp.port).unwrap_or(());
                }
                writeln!(s, "      protocol: {}", cp.protocol.as_str()).unwrap_or(());
            }
        }
        if let Some(ip) = p.ips.first() {
            writeln!(s, "status:\n  podIP: {ip}\n  podIPs:\n  - ip: {ip}").unwrap_or(());
        }
        docs.push(s);
    }
    for np in &c.policies {
        docs.push(policy(np));
    }
    docs.join("---\n")
}
