//! Validated NetworkPolicies → desired contents of the three policy maps
//! (`ep_pol_v1`, `ep_ident_v1`, `ep_lep_v1`). Pure: no clock, no I/O. The
//! design is in docs/POLICY.md; in short:
//!
//! - Every IPv4 address the data plane may see resolves, with one LPM lookup
//!   in `ep_ident_v1`, to an *identity*: what every selector and `ipBlock` of
//!   every policy can observe about it. For a pod that is its namespace, the
//!   labels some pod selector mentions, its named container ports, and the
//!   longest `ipBlock` prefix containing its IP. For any other address it is
//!   the longest `ipBlock` prefix containing it (or `world`). The node's own
//!   addresses are the reserved `host` identity.
//! - Each local pod that a policy isolates gets an `ep_lep_v1` entry (its
//!   identity, its isolation flags), and each of those identities (the
//!   *subjects*) gets allow entries `(subject, peer, dir, proto, port prefix)`
//!   in `ep_pol_v1`, with `EP_IDENT_ANY` as peer for rules without peers.
//! - Identity and endpoint numbers are taken from the live maps where they
//!   already exist, and a number still present anywhere in the live maps is
//!   never handed to a different identity in the same pass: unchanged YAML
//!   plans zero writes, and an id is only recycled once nothing refers to it.

mod merge;
mod ports;
pub mod sim;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use crate::diag::Diagnostic;
use crate::maps::layout::{
    DIR_EGRESS, DIR_INGRESS, IDENT_ANY, IDENT_FIRST, IDENT_HOST, LEP_F_EGRESS_ISOLATED, LEP_F_INGRESS_ISOLATED,
    POL_PREFIX_ALL_PORTS, POL_PREFIX_ALL_PROTO, PolKey,
};
use crate::maps::{Entries, MapId};
use crate::model::{Cluster, Labels, NetworkPolicy, Pod, PolicyPeer, PolicyPort, PolicyRule, PortRef, Protocol};

pub use ports::range_prefixes;

/// Which pods this node enforces, and which addresses are the node itself.
///
/// A pod is enforced here when its `spec.nodeName` equals `node_name`, or
/// when one of its IPs is in `local_pod_ips` (the daemon fills this with the
/// addresses routed through workload interfaces, so pods without a
/// `nodeName` are covered too). `host_ips` are the node's own addresses:
/// traffic between them and local pods is always allowed (kubelet probes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyNode {
    pub node_name: Option<String>,
    pub local_pod_ips: BTreeSet<IpAddr>,
    pub host_ips: BTreeSet<IpAddr>,
}

/// The desired policy maps, plus names for rendering drops and map dumps.
#[derive(Debug, Clone, Default)]
pub struct PolicyCompiled {
    /// Always holds all three policy maps (empty when nothing is isolated
    /// and nothing is live), so stale entries are removed.
    pub maps: BTreeMap<MapId, Entries>,
    /// Some local pod is isolated in the new policy: EP_CFG_F_POLICY.
    pub enabled: bool,
    /// `Some(e)`: the maps hold a change that takes effect when
    /// ep_cfg_v1.policy_epoch becomes `e` (= the epoch passed in + 1). After
    /// applying `maps`, write the config with that epoch (and the POLICY flag
    /// from `enabled`) in one update, then compile again with epoch `e` and
    /// apply: that second plan only deletes entries the old policy needed.
    /// `None`: the maps are settled; no epoch change is needed.
    pub switch_epoch: Option<u32>,
    pub warnings: Vec<Diagnostic>,
    /// Endpoint id (as in `ep_lep_v1` and drop events) → `namespace/name`.
    pub endpoints: BTreeMap<u32, String>,
    /// Identity → short description, e.g. `x {pod=a}` or `cidr 10.0.0.0/8`.
    pub identities: BTreeMap<u32, String>,
}

/// An IPv4 prefix with the bits past `len` cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    pub net: u32,
    pub len: u8,
}

fn mask(addr: u32, len: u8) -> u32 {
    if len == 0 { 0 } else { addr & (u32::MAX << (32 - u32::from(len.min(32)))) }
}

impl Prefix {
    pub fn new(addr: Ipv4Addr, len: u8) -> Self {
        let len = len.min(32);
        Prefix { net: mask(u32::from(addr), len), len }
    }
    pub fn host(addr: Ipv4Addr) -> Self {
        Prefix::new(addr, 32)
    }
    /// `other` lies entirely inside `self`.
    pub fn covers(&self, other: &Prefix) -> bool {
        other.len >= self.len && mask(other.net, self.len) == self.net
    }
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.net)
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

/// What any selector can observe about a pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct PodClass {
    ns: String,
    /// Only label keys that some pod selector mentions: two pods differing in
    /// other labels are indistinguishable to every policy.
    labels: Labels,
    /// Named container ports (name, protocol, number), sorted.
    named_ports: Vec<(String, Protocol, u16)>,
}

/// The identity of an address, before numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct IdKey {
    class: Option<usize>,
    /// Longest ipBlock prefix (cidr or except) containing the address: all
    /// ipBlock rules agree on every address with the same longest prefix.
    cidr: Option<Prefix>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Host,
    Key(IdKey),
}

#[derive(Debug, Clone)]
enum PortSpec {
    AllProto,
    Proto(u8),
    Range(u8, u16, u16),
    Named(Protocol, String),
}

fn port_specs(ports: &[PolicyPort]) -> Vec<PortSpec> {
    if ports.is_empty() {
        return vec![PortSpec::AllProto];
    }
    ports
        .iter()
        .map(|p| match &p.port {
            None => PortSpec::Proto(p.protocol.number()),
            Some(PortRef::Number(n)) => {
                let hi = p.end_port.map_or(n.get(), |e| e.get().max(n.get()));
                PortSpec::Range(p.protocol.number(), n.get(), hi)
            }
            Some(PortRef::Name(name)) => PortSpec::Named(p.protocol, name.clone()),
        })
        .collect()
}

fn selector_keys(sel: &crate::model::LabelSelector, keys: &mut BTreeSet<String>) {
    keys.extend(sel.match_labels.keys().cloned());
    keys.extend(sel.match_expressions.iter().map(|r| r.key.clone()));
}

fn rules(p: &NetworkPolicy) -> impl Iterator<Item = &PolicyRule> {
    p.ingress.iter().chain(p.egress.iter())
}

/// Label keys any pod selector (subject or peer) mentions.
fn referenced_label_keys(policies: &[NetworkPolicy]) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for p in policies {
        selector_keys(&p.pod_selector, &mut keys);
        for rule in rules(p) {
            for peer in &rule.peers {
                if let PolicyPeer::Pods { pod_selector: Some(sel), .. } = peer {
                    selector_keys(sel, &mut keys);
                }
            }
        }
    }
    keys
}

fn v4_prefix(net: &crate::model::IpNet) -> Option<Prefix> {
    match net.addr {
        IpAddr::V4(a) => Some(Prefix::new(a, net.prefix)),
        IpAddr::V6(_) => None,
    }
}

/// Every IPv4 prefix named by an ipBlock cidr or except.
fn ipblock_prefixes(policies: &[NetworkPolicy]) -> BTreeSet<Prefix> {
    let mut out = BTreeSet::new();
    for p in policies {
        for rule in rules(p) {
            for peer in &rule.peers {
                if let PolicyPeer::IpBlock { cidr, except } = peer {
                    out.extend(v4_prefix(cidr));
                    out.extend(except.iter().filter_map(v4_prefix));
                }
            }
        }
    }
    out
}

fn longest_block(blocks: &HashSet<Prefix>, ip: Ipv4Addr) -> Option<Prefix> {
    (0..=32u8).rev().map(|len| Prefix::new(ip, len)).find(|p| blocks.contains(p))
}

fn first_v4(pod: &Pod) -> Option<Ipv4Addr> {
    pod.ips.iter().find_map(|ip| match ip {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    })
}

/// Hands out the lowest numbers >= `first` that nothing uses.
struct Allocator {
    used: BTreeSet<u32>,
    next: u32,
}

impl Allocator {
    fn new(first: u32, used: BTreeSet<u32>) -> Self {
        Allocator { used, next: first }
    }
    fn take(&mut self) -> u32 {
        while self.used.contains(&self.next) {
            self.next = self.next.saturating_add(1);
        }
        let id = self.next;
        self.used.insert(id);
        id
    }
}

/// Chooses a number for each key: the live number most of its members
/// already carry (if no other key took it), else a fresh
/// number that appears nowhere in the live maps.
fn assign_ids<K: Ord + Clone>(
    votes: BTreeMap<K, BTreeMap<u32, usize>>,
    all_keys: impl IntoIterator<Item = K>,
    used_live: BTreeSet<u32>,
    first: u32,
) -> BTreeMap<K, u32> {
    let mut candidates: Vec<(std::cmp::Reverse<usize>, K, u32)> = votes
        .into_iter()
        .flat_map(|(k, ids)| ids.into_iter().map(move |(id, n)| (std::cmp::Reverse(n), k.clone(), id)))
        .collect();
    candidates.sort();
    let mut out = BTreeMap::new();
    let mut claimed = BTreeSet::new();
    for (_, k, id) in candidates {
        if !out.contains_key(&k) && claimed.insert(id) {
            out.insert(k, id);
        }
    }
    let mut alloc = Allocator::new(first, used_live.union(&claimed).copied().collect());
    for k in all_keys {
        out.entry(k).or_insert_with(|| alloc.take());
    }
    out
}

struct Ctx<'a> {
    cluster: &'a Cluster,
    ns_labels: HashMap<&'a str, &'a Labels>,
    classes: Vec<PodClass>,
    /// Every numbered identity (pods and CIDRs), in key order.
    idents: Vec<(IdKey, u32)>,
    /// (policy, egress?, rule, peer) → matching identity numbers.
    peer_cache: HashMap<(usize, bool, usize, usize), Vec<u32>>,
}

impl Ctx<'_> {
    fn ns_matches(&self, sel: &crate::model::LabelSelector, ns: &str) -> bool {
        match self.ns_labels.get(ns) {
            Some(labels) => sel.matches(labels),
            // Validation adds a Namespace for every name pods use; be exact anyway.
            None => sel.matches(&Labels::from([("kubernetes.io/metadata.name".to_string(), ns.to_string())])),
        }
    }

    fn peer_matches(&self, policy: &NetworkPolicy, peer: &PolicyPeer, key: &IdKey) -> bool {
        match peer {
            PolicyPeer::Pods { pod_selector, namespace_selector } => {
                let Some(class) = key.class.map(|c| &self.classes[c]) else { return false };
                let ns_ok = match namespace_selector {
                    None => class.ns == policy.meta.namespace,
                    Some(sel) => self.ns_matches(sel, &class.ns),
                };
                ns_ok && pod_selector.as_ref().is_none_or(|sel| sel.matches(&class.labels))
            }
            PolicyPeer::IpBlock { cidr, except } => {
                let (Some(block), Some(p)) = (v4_prefix(cidr), key.cidr) else { return false };
                block.covers(&p) && !except.iter().filter_map(v4_prefix).any(|e| e.covers(&p))
            }
        }
    }

    /// Identity numbers a rule's peers match; `None` = every peer (no `from`/`to`).
    fn rule_peers(&mut self, pi: usize, egress: bool, ri: usize) -> Option<Vec<u32>> {
        let policy = &self.cluster.policies[pi];
        let rule = if egress { &policy.egress[ri] } else { &policy.ingress[ri] };
        if rule.peers.is_empty() {
            return None;
        }
        let mut out = BTreeSet::new();
        for (qi, peer) in rule.peers.iter().enumerate() {
            let cache_key = (pi, egress, ri, qi);
            if !self.peer_cache.contains_key(&cache_key) {
                let ids: Vec<u32> =
                    self.idents.iter().filter(|(k, _)| self.peer_matches(policy, peer, k)).map(|(_, id)| *id).collect();
                self.peer_cache.insert(cache_key, ids);
            }
            if let Some(ids) = self.peer_cache.get(&cache_key) {
                out.extend(ids.iter().copied());
            }
        }
        Some(out.into_iter().collect())
    }
}

fn resolve_named(class: Option<&PodClass>, proto: Protocol, name: &str) -> Vec<u16> {
    class
        .map(|c| c.named_ports.iter().filter(|(n, p, _)| n == name && *p == proto).map(|(_, _, port)| *port).collect())
        .unwrap_or_default()
}

fn put_allow(out: &mut BTreeSet<PolKey>, subject: u32, peer: u32, dir: u8, spec: &PortSpec) {
    let base = PolKey { prefixlen: POL_PREFIX_ALL_PROTO, subject, peer, dir, proto: 0, dport: [0, 0] };
    match spec {
        PortSpec::AllProto => {
            out.insert(base);
        }
        PortSpec::Proto(proto) => {
            out.insert(PolKey { prefixlen: POL_PREFIX_ALL_PORTS, proto: *proto, ..base });
        }
        PortSpec::Range(proto, lo, hi) => {
            for (v, bits) in range_prefixes(*lo, *hi) {
                let key = PolKey {
                    prefixlen: POL_PREFIX_ALL_PORTS + u32::from(bits),
                    proto: *proto,
                    dport: v.to_be_bytes(),
                    ..base
                };
                out.insert(key);
            }
        }
        // Resolved by the caller against the destination pod.
        PortSpec::Named(..) => {}
    }
}

/// Compiles the policy maps for this node. `live` holds the current contents
/// of (at least) the three policy maps; missing maps count as empty.
pub fn compile(cluster: &Cluster, node: &PolicyNode, live: &BTreeMap<MapId, Entries>, epoch: u32) -> PolicyCompiled {
    let live = merge::Live::decode(live, epoch);
    let want = desired(cluster, node, &live);
    let (maps, switch_to) = merge::merge(&live, &want, epoch);
    PolicyCompiled {
        maps,
        enabled: !want.lep.is_empty(),
        switch_epoch: switch_to,
        warnings: want.warnings,
        endpoints: want.endpoints,
        identities: want.identities,
    }
}

/// The policy this node should enforce, numbered against the live maps.
pub(crate) struct Desired {
    pub ident: BTreeMap<Prefix, u32>,
    pub pol: BTreeSet<PolKey>,
    /// Local isolated pod → (endpoint id, identity, isolation flags).
    pub lep: BTreeMap<Ipv4Addr, (u32, u32, u16)>,
    pub warnings: Vec<Diagnostic>,
    pub endpoints: BTreeMap<u32, String>,
    pub identities: BTreeMap<u32, String>,
}

fn desired(cluster: &Cluster, node: &PolicyNode, live: &merge::Live) -> Desired {
    let mut warnings = Vec::new();

    let ns_labels: HashMap<&str, &Labels> = cluster.namespaces.iter().map(|n| (n.name.as_str(), &n.labels)).collect();
    let label_keys = referenced_label_keys(&cluster.policies);
    let blocks_sorted = ipblock_prefixes(&cluster.policies);
    let blocks: HashSet<Prefix> = blocks_sorted.iter().copied().collect();

    // Address → identity slot. The node's addresses win over pods (a pod
    // cannot own a node address), pods win over CIDR prefixes (a pod's
    // identity carries its longest CIDR prefix, so it keeps every ipBlock
    // match the bare prefix would have had).
    let mut trie: BTreeMap<Prefix, Slot> = BTreeMap::new();
    for ip in &node.host_ips {
        if let IpAddr::V4(a) = ip {
            trie.insert(Prefix::host(*a), Slot::Host);
        }
    }
    let mut classes: Vec<PodClass> = Vec::new();
    let mut class_index: HashMap<PodClass, usize> = HashMap::new();
    // (pod, its IPv4, its identity key) for every pod that owns its address.
    let mut pods: Vec<(&Pod, Ipv4Addr, IdKey)> = Vec::new();
    let mut owner: HashMap<Ipv4Addr, &Pod> = HashMap::new();
    for pod in &cluster.pods {
        // hostNetwork pods use the node's addresses: they are the node, not
        // endpoints (NetworkPolicy does not apply to them).
        if pod.host_network {
            continue;
        }
        let Some(ip) = first_v4(pod) else { continue };
        let object = Some(format!("Pod {}/{}", pod.meta.namespace, pod.meta.name));
        if trie.get(&Prefix::host(ip)) == Some(&Slot::Host) {
            warnings.push(Diagnostic::warning(
                pod.meta.origin.clone(),
                object,
                "status.podIP",
                format!("{ip} is an address of this node; the pod is treated as the node (always allowed)"),
            ));
            continue;
        }
        if let Some(first) = owner.get(&ip) {
            warnings.push(Diagnostic::warning(
                pod.meta.origin.clone(),
                object,
                "status.podIP",
                format!(
                    "{ip} is also the IP of Pod {}/{} ({}); policy uses that pod's labels for this address",
                    first.meta.namespace, first.meta.name, first.meta.origin
                ),
            ));
            continue;
        }
        owner.insert(ip, pod);
        let labels: Labels = pod
            .meta
            .labels
            .iter()
            .filter(|(k, _)| label_keys.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut named_ports: Vec<(String, Protocol, u16)> = pod
            .container_ports
            .iter()
            .filter_map(|c| c.name.as_ref().map(|n| (n.clone(), c.protocol, c.port.get())))
            .collect();
        named_ports.sort();
        named_ports.dedup();
        let class = PodClass { ns: pod.meta.namespace.clone(), labels, named_ports };
        let ci = match class_index.get(&class) {
            Some(i) => *i,
            None => {
                classes.push(class.clone());
                class_index.insert(class, classes.len() - 1);
                classes.len() - 1
            }
        };
        let key = IdKey { class: Some(ci), cidr: longest_block(&blocks, ip) };
        trie.insert(Prefix::host(ip), Slot::Key(key));
        pods.push((pod, ip, key));
    }
    for b in &blocks_sorted {
        trie.entry(*b).or_insert(Slot::Key(IdKey { class: None, cidr: Some(*b) }));
    }

    // Numbering: reuse live identity numbers by majority of each key's prefixes.
    let live_by_prefix = &live.ident_now;
    let mut used_live = live.numbers.clone();
    let mut votes: BTreeMap<IdKey, BTreeMap<u32, usize>> = BTreeMap::new();
    for (prefix, slot) in &trie {
        if let (Slot::Key(k), Some(id)) = (slot, live_by_prefix.get(prefix))
            && *id >= IDENT_FIRST
            && *id != IDENT_ANY
        {
            *votes.entry(*k).or_default().entry(*id).or_default() += 1;
        }
    }
    let all_keys: BTreeSet<IdKey> =
        trie.values().filter_map(|s| if let Slot::Key(k) = s { Some(*k) } else { None }).collect();
    used_live.insert(IDENT_ANY);
    // A live number may change meaning: the change is written as the
    // "from the next epoch" half of every entry, so no packet sees a mix.
    let ids = assign_ids(votes, all_keys.iter().copied(), used_live, IDENT_FIRST);

    let mut ident: BTreeMap<Prefix, u32> = BTreeMap::new();
    for (prefix, slot) in &trie {
        let identity = match slot {
            Slot::Host => IDENT_HOST,
            Slot::Key(k) => ids.get(k).copied().unwrap_or(IDENT_HOST),
        };
        ident.insert(*prefix, identity);
    }

    let mut identities = BTreeMap::new();
    identities.insert(IDENT_HOST, "host".to_string());
    for (k, id) in &ids {
        let mut d = String::new();
        if let Some(c) = k.class.map(|c| &classes[c]) {
            let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            d.push_str(&format!("{} {{{}}}", c.ns, labels.join(",")));
        }
        if let Some(p) = k.cidr {
            if !d.is_empty() {
                d.push(' ');
            }
            d.push_str(&format!("cidr {p}"));
        }
        identities.insert(*id, d);
    }

    let mut ctx = Ctx {
        cluster,
        ns_labels,
        classes,
        idents: ids.iter().map(|(k, id)| (*k, *id)).collect(),
        peer_cache: HashMap::new(),
    };

    // Local pods and the isolation of their identities.
    let is_local = |pod: &Pod| {
        node.node_name.as_ref().is_some_and(|n| pod.node_name.as_ref() == Some(n))
            || pod.ips.iter().any(|ip| node.local_pod_ips.contains(ip))
    };
    let mut subjects: BTreeMap<u32, (IdKey, u16)> = BTreeMap::new(); // id → (key, isolation flags)
    let mut local: Vec<(&Pod, Ipv4Addr, u32)> = Vec::new();
    for (pod, ip, key) in &pods {
        if !is_local(pod) {
            continue;
        }
        let Some(id) = ids.get(key).copied() else { continue };
        let flags = match subjects.get(&id) {
            Some((_, f)) => *f,
            None => {
                let class = key.class.map(|c| &ctx.classes[c]);
                let mut f = 0;
                for p in &cluster.policies {
                    if class.is_some_and(|c| c.ns == p.meta.namespace && p.pod_selector.matches(&c.labels)) {
                        if p.ingress_isolation {
                            f |= LEP_F_INGRESS_ISOLATED;
                        }
                        if p.egress_isolation {
                            f |= LEP_F_EGRESS_ISOLATED;
                        }
                    }
                }
                subjects.insert(id, (*key, f));
                f
            }
        };
        if flags != 0 {
            local.push((pod, *ip, id));
            if pod.ips.iter().any(IpAddr::is_ipv6) {
                warnings.push(Diagnostic::warning(
                    pod.meta.origin.clone(),
                    Some(format!("Pod {}/{}", pod.meta.namespace, pod.meta.name)),
                    "status.podIPs",
                    "this pod is isolated by a NetworkPolicy, but its IPv6 traffic is not policed (the data plane is IPv4 only)",
                ));
            }
        }
    }

    // Allow entries per isolated subject identity.
    let mut pol_entries: BTreeSet<PolKey> = BTreeSet::new();
    for (subject, (key, flags)) in &subjects {
        if *flags == 0 {
            continue;
        }
        let class_idx = key.class;
        for (pi, policy) in cluster.policies.iter().enumerate() {
            let selected = class_idx
                .map(|c| &ctx.classes[c])
                .is_some_and(|c| c.ns == policy.meta.namespace && policy.pod_selector.matches(&c.labels));
            if !selected {
                continue;
            }
            if policy.ingress_isolation {
                for (ri, rule) in policy.ingress.iter().enumerate() {
                    let peers = ctx.rule_peers(pi, false, ri);
                    let peer_ids = peers.unwrap_or_else(|| vec![IDENT_ANY]);
                    for spec in port_specs(&rule.ports) {
                        // Ingress: the destination is the subject itself.
                        let resolved: Vec<PortSpec> = match &spec {
                            PortSpec::Named(proto, name) => {
                                resolve_named(class_idx.map(|c| &ctx.classes[c]), *proto, name)
                                    .into_iter()
                                    .map(|p| PortSpec::Range(proto.number(), p, p))
                                    .collect()
                            }
                            other => vec![other.clone()],
                        };
                        for peer in &peer_ids {
                            for s in &resolved {
                                put_allow(&mut pol_entries, *subject, *peer, DIR_INGRESS, s);
                            }
                        }
                    }
                }
            }
            if policy.egress_isolation {
                for (ri, rule) in policy.egress.iter().enumerate() {
                    let peers = ctx.rule_peers(pi, true, ri);
                    for spec in port_specs(&rule.ports) {
                        match &spec {
                            PortSpec::Named(proto, name) => {
                                // Egress: resolved against each destination pod; an
                                // address that is no pod has no named ports.
                                let candidates: Vec<(IdKey, u32)> = match &peers {
                                    None => ctx.idents.iter().filter(|(k, _)| k.class.is_some()).copied().collect(),
                                    Some(list) => {
                                        let set: HashSet<u32> = list.iter().copied().collect();
                                        ctx.idents.iter().filter(|(_, id)| set.contains(id)).copied().collect()
                                    }
                                };
                                for (k, peer) in candidates {
                                    for p in resolve_named(k.class.map(|c| &ctx.classes[c]), *proto, name) {
                                        put_allow(
                                            &mut pol_entries,
                                            *subject,
                                            peer,
                                            DIR_EGRESS,
                                            &PortSpec::Range(proto.number(), p, p),
                                        );
                                    }
                                }
                            }
                            other => {
                                let peer_ids = peers.clone().unwrap_or_else(|| vec![IDENT_ANY]);
                                for peer in &peer_ids {
                                    put_allow(&mut pol_entries, *subject, *peer, DIR_EGRESS, other);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // Endpoint ids: keep the live id of an address, else a number unused live.
    let mut votes: BTreeMap<Ipv4Addr, BTreeMap<u32, usize>> = BTreeMap::new();
    for (_, ip, _) in &local {
        if let Some(id) = live.endpoints.get(ip).filter(|id| **id != 0) {
            votes.entry(*ip).or_default().insert(*id, 1);
        }
    }
    let used_eps: BTreeSet<u32> = live.endpoints.values().copied().collect();
    let ep_ids = assign_ids(votes, local.iter().map(|(_, ip, _)| *ip), used_eps, 1);
    let mut lep = BTreeMap::new();
    let mut endpoints = BTreeMap::new();
    for (pod, ip, identity) in &local {
        let endpoint_id = ep_ids.get(ip).copied().unwrap_or(0);
        let flags = subjects.get(identity).map_or(0, |(_, f)| *f);
        lep.insert(*ip, (endpoint_id, *identity, flags));
        endpoints.insert(endpoint_id, format!("{}/{}", pod.meta.namespace, pod.meta.name));
    }

    // Nothing to enforce: carry no identities either.
    if lep.is_empty() {
        ident.clear();
        identities.clear();
    }
    Desired { ident, pol: pol_entries, lep, warnings, endpoints, identities }
}

/// Endpoint id → `namespace/name`, from a live `ep_lep_v1` and the pods of
/// `cluster` (by address), for rendering drop events (`edgeplane drops`)
/// without recompiling.
pub fn endpoint_names(cluster: &Cluster, lep: &Entries) -> BTreeMap<u32, String> {
    let by_ip: HashMap<Ipv4Addr, &Pod> =
        cluster.pods.iter().filter(|p| !p.host_network).filter_map(|p| first_v4(p).map(|ip| (ip, p))).collect();
    lep.iter()
        .filter_map(|(k, v)| {
            let ip = crate::maps::layout::lep_addr_from_key(k)?;
            let v = crate::maps::layout::LepValue::from_bytes(v)?;
            let name =
                by_ip.get(&ip).map_or_else(|| ip.to_string(), |p| format!("{}/{}", p.meta.namespace, p.meta.name));
            Some((v.endpoint_id, name))
        })
        .collect()
}
