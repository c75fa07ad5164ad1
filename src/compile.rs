//! Validated model → desired service load-balancing state.
//!
//! Two steps, both pure:
//! 1. [`compile_services`]: Services + EndpointSlices → [`ServiceSet`], the
//!    semantic desired state (frontend → ordered backend addresses), following
//!    kube-proxy: endpoints come only from EndpointSlices (a Service's selector
//!    is not evaluated), ready endpoints are used, serving-terminating ones only
//!    when a service has no ready ones, each endpoint's first address is used,
//!    duplicates across slices collapse.
//! 2. [`resolve`]: the semantic state + the live maps → exact map entries.
//!    Backend and service ids and slot positions are taken from the live maps
//!    where they already exist, so re-applying unchanged YAML (also after a
//!    restart) plans zero writes, and one changed endpoint changes only the
//!    entries of that one service.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use crate::diag::Diagnostic;
use crate::maps::layout::{
    BE_F_REMOTE, Backend, LBSRC_PREFIX_FRONTEND, LbsrcKey, LbsrcValue, SCOPE_CLUSTER, SCOPE_EXTERNAL, SVC_F_AFFINITY,
    SVC_F_DROP_EMPTY, SVC_F_DSR_OK, SVC_F_NODE_ADDR, SVC_F_SOURCE_RANGES, SVC_F_TERMINATING, SvcKey, SvcValue,
    backend_id_from_key, backend_id_key,
};
use crate::maps::{Entries, MapId};
use crate::model::{AddressType, Cluster, EndpointSlice, Service, ServiceType, TrafficPolicy};

/// A service frontend: what a client addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frontend {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub proto: u8,
    pub scope: u8,
}

impl Frontend {
    fn key(&self, slot: u16) -> SvcKey {
        SvcKey::new(self.vip, self.port, self.proto, self.scope, slot)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendAddr {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub proto: u8,
}

impl BackendAddr {
    fn to_backend(self, remote: bool) -> Backend {
        let mut b = Backend::new(self.addr, self.port, self.proto);
        if remote {
            b.flags |= BE_F_REMOTE;
        }
        b
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// `namespace/name:port`, for logs.
    pub name: String,
    /// Usable backends, sorted; empty means "reject".
    pub backends: Vec<BackendAddr>,
    /// Endpoints still listed in the slices but not selectable (not ready,
    /// terminating): kept in ep_be_v1 so their established connections drain
    /// gracefully, never given new flows. Endpoints that leave the slices
    /// altogether are removed, and their flows fail fast.
    pub draining: Vec<BackendAddr>,
    pub flags: u16,
    pub affinity_timeout: u32,
}

/// The semantic desired load-balancing state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceSet {
    pub services: BTreeMap<Frontend, ServiceEntry>,
    /// Backends whose endpoint is not known to be on this node (EP_BE_F_REMOTE).
    pub remote: BTreeSet<BackendAddr>,
    /// loadBalancerSourceRanges: (LoadBalancer frontend, allowed IPv4 prefix).
    pub source_ranges: BTreeSet<(Frontend, Ipv4Addr, u8)>,
    /// healthCheckNodePort servers this node must run.
    pub health_checks: Vec<HealthCheck>,
}

/// A LoadBalancer service with externalTrafficPolicy: Local and a
/// healthCheckNodePort: load balancers probe it to find nodes with endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub node_port: u16,
    pub namespace: String,
    pub name: String,
    pub local_endpoints: u32,
}

impl ServiceSet {
    pub fn backend_count(&self) -> usize {
        self.services.values().map(|s| s.backends.len()).sum()
    }
}

/// What compile needs to know about this node.
#[derive(Debug, Clone, Default)]
pub struct NodeContext {
    /// `--node-name`: an endpoint is local when its nodeName equals it.
    pub node_name: Option<String>,
    /// IPv4 addresses of `node-ips`: NodePorts are served on each.
    pub node_ips: Vec<Ipv4Addr>,
}

impl NodeContext {
    pub fn from_settings(settings: &crate::config::Settings) -> NodeContext {
        NodeContext { node_name: settings.node_name.clone(), node_ips: settings.node_ipv4s() }
    }

    fn is_local(&self, endpoint_node: Option<&String>) -> bool {
        self.node_name.is_some() && endpoint_node == self.node_name.as_ref()
    }
}

/// Which endpoints a frontend entry uses (kube-proxy's policy chains).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoints {
    All,
    LocalOnly,
}

/// The kind of address a frontend is, for names and flags.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FrontendKind {
    ExternalIp,
    LoadBalancer,
    NodePort,
}

/// `internalTrafficPolicy: Local` keeps only this node's endpoints, which are
/// known only by `node-name`: without it such services get no backends. One
/// warning naming them all (at the first one's place), not one per service.
fn local_without_node_name(cluster: &Cluster) -> Option<Diagnostic> {
    let local: Vec<&Service> =
        cluster.services.iter().filter(|s| s.internal_traffic_policy == TrafficPolicy::Local).collect();
    let first = local.first()?;
    const SHOWN: usize = 10;
    let mut names: Vec<String> =
        local.iter().take(SHOWN).map(|s| format!("{}/{}", s.meta.namespace, s.meta.name)).collect();
    if local.len() > SHOWN {
        names.push(format!("and {} more", local.len() - SHOWN));
    }
    Some(Diagnostic::warning(
        first.meta.origin.clone(),
        None,
        "spec.internalTrafficPolicy",
        format!(
            "node-name is not set, so the {} service(s) with internalTrafficPolicy: Local get no endpoints \
             here (as services without endpoints): {}; set node-name in the settings file or --node-name",
            local.len(),
            names.join(", ")
        ),
    ))
}

/// Services + EndpointSlices → the frontends and their usable backends.
/// Warnings are for input that is valid Kubernetes but that this data plane
/// does not translate (IPv6 addresses), and `local_without_node_name`'s.
pub fn compile_services(cluster: &Cluster, node: &NodeContext) -> (ServiceSet, Vec<Diagnostic>) {
    let mut warnings = Vec::new();
    let mut slices_by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in &cluster.endpoint_slices {
        slices_by_service.entry((&slice.meta.namespace, &slice.service_name)).or_default().push(slice);
    }
    let mut set = ServiceSet::default();
    let mut nodeport_without_ips = None;
    for svc in &cluster.services {
        if svc.service_type == ServiceType::ExternalName {
            continue;
        }
        let slices = slices_by_service
            .get(&(svc.meta.namespace.as_str(), svc.meta.name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let ipv4 = |field: &str, ips: &[IpAddr], warnings: &mut Vec<Diagnostic>| -> Vec<Ipv4Addr> {
            ips.iter()
                .filter_map(|ip| match ip {
                    IpAddr::V4(v4) => Some(*v4),
                    IpAddr::V6(_) => {
                        warnings.push(Diagnostic::warning(
                            svc.meta.origin.clone(),
                            Some(format!("Service {}/{}", svc.meta.namespace, svc.meta.name)),
                            field,
                            format!("IPv6 address {ip} is not translated: this data plane handles IPv4 only"),
                        ));
                        None
                    }
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        let cluster_ips = ipv4("spec.clusterIPs", &svc.cluster_ips, &mut warnings);
        let mut external: Vec<(Ipv4Addr, FrontendKind)> = Vec::new();
        external.extend(
            ipv4("spec.externalIPs", &svc.external_ips, &mut warnings)
                .into_iter()
                .map(|ip| (ip, FrontendKind::ExternalIp)),
        );
        if svc.service_type == ServiceType::LoadBalancer {
            external.extend(
                ipv4("status.loadBalancer.ingress", &svc.lb_ingress_ips, &mut warnings)
                    .into_iter()
                    .map(|ip| (ip, FrontendKind::LoadBalancer)),
            );
        }
        let node_ports = matches!(svc.service_type, ServiceType::NodePort | ServiceType::LoadBalancer);
        let mut health_local = 0u32;
        for port in &svc.ports {
            let all = usable_backends(port, slices, node, Endpoints::All);
            for ep in slices.iter().flat_map(|s| remote_backends(port, s, node)) {
                set.remote.insert(ep);
            }
            let local = usable_backends(port, slices, node, Endpoints::LocalOnly);
            health_local = health_local.max(u32::try_from(local.backends.len()).unwrap_or(u32::MAX));
            let mut base_flags = 0;
            if svc.affinity_timeout.is_some() {
                base_flags |= SVC_F_AFFINITY;
            }
            let port_name = if port.name.is_empty() { port.port.to_string() } else { port.name.clone() };
            let name = format!("{}/{}:{}", svc.meta.namespace, svc.meta.name, port_name);
            let proto = port.protocol.number();
            let mut add = |vip: Ipv4Addr, port_no: u16, scope: u8, usable: &Usable, flags: u16, what: &str| {
                let frontend = Frontend { vip, port: port_no, proto, scope };
                set.services.insert(
                    frontend,
                    ServiceEntry {
                        name: format!("{name}{what}"),
                        backends: usable.backends.clone(),
                        draining: usable.draining.clone(),
                        flags: base_flags | flags | usable.flags(),
                        affinity_timeout: svc.affinity_timeout.unwrap_or(0),
                    },
                );
            };
            // A Local policy with endpoints only elsewhere drops (kube-proxy); none at all rejects.
            let drop_empty = |policy: TrafficPolicy, usable: &Usable| {
                if policy == TrafficPolicy::Local && usable.backends.is_empty() && !all.backends.is_empty() {
                    SVC_F_DROP_EMPTY
                } else {
                    0
                }
            };
            let internal = if svc.internal_traffic_policy == TrafficPolicy::Local { &local } else { &all };
            for vip in &cluster_ips {
                add(
                    *vip,
                    port.port.get(),
                    SCOPE_CLUSTER,
                    internal,
                    drop_empty(svc.internal_traffic_policy, internal),
                    "",
                );
            }
            let (ext, ext_flags) = if svc.external_traffic_policy == TrafficPolicy::Local {
                (&local, drop_empty(TrafficPolicy::Local, &local))
            } else {
                (&all, SVC_F_DSR_OK)
            };
            let mut frontends: Vec<(Ipv4Addr, u16, FrontendKind)> =
                external.iter().map(|(ip, kind)| (*ip, port.port.get(), *kind)).collect();
            if node_ports && let Some(np) = port.node_port {
                if node.node_ips.is_empty() {
                    nodeport_without_ips.get_or_insert_with(|| svc.meta.origin.clone());
                }
                frontends.extend(node.node_ips.iter().map(|ip| (*ip, np.get(), FrontendKind::NodePort)));
            }
            for (vip, port_no, kind) in frontends {
                let (kind_flags, what) = match kind {
                    FrontendKind::ExternalIp => (0, " (externalIP)".to_string()),
                    FrontendKind::LoadBalancer if !svc.lb_source_ranges.is_empty() => {
                        (SVC_F_SOURCE_RANGES, " (loadBalancer)".to_string())
                    }
                    FrontendKind::LoadBalancer => (0, " (loadBalancer)".to_string()),
                    FrontendKind::NodePort => (SVC_F_NODE_ADDR, format!(" (nodePort {port_no})")),
                };
                // In-cluster callers short-circuit to all endpoints (kube-proxy's
                // "pod traffic for external destinations"); outside traffic gets the eTP's.
                add(vip, port_no, SCOPE_CLUSTER, &all, kind_flags, &what);
                add(vip, port_no, SCOPE_EXTERNAL, ext, kind_flags | ext_flags, &what);
                if kind_flags & SVC_F_SOURCE_RANGES != 0 {
                    for scope in [SCOPE_CLUSTER, SCOPE_EXTERNAL] {
                        let fe = Frontend { vip, port: port_no, proto, scope };
                        for (net, len) in &svc.lb_source_ranges {
                            set.source_ranges.insert((fe, *net, *len));
                        }
                    }
                }
            }
        }
        if svc.service_type == ServiceType::LoadBalancer
            && svc.external_traffic_policy == TrafficPolicy::Local
            && let Some(hc) = svc.health_check_node_port
        {
            set.health_checks.push(HealthCheck {
                node_port: hc.get(),
                namespace: svc.meta.namespace.clone(),
                name: svc.meta.name.clone(),
                local_endpoints: health_local,
            });
        }
    }
    if let Some(origin) = nodeport_without_ips {
        warnings.push(Diagnostic::warning(
            origin,
            None,
            "spec.ports.nodePort",
            "node-ips is not set, so NodePorts are not served on this node; set node-ips in the settings file \
             or --node-ip"
                .to_string(),
        ));
    }
    if node.node_name.is_none()
        && let Some(w) = local_without_node_name(cluster)
    {
        warnings.push(w);
    }
    (set, warnings)
}

/// What one frontend entry of a service port uses.
#[derive(Debug, Clone, Default)]
struct Usable {
    /// Backends new flows go to, sorted.
    backends: Vec<BackendAddr>,
    /// Listed but not selectable (not ready, terminating): kept for draining.
    draining: Vec<BackendAddr>,
    /// `backends` are the serving-terminating fallback.
    terminating: bool,
}

impl Usable {
    fn flags(&self) -> u16 {
        if self.terminating { SVC_F_TERMINATING } else { 0 }
    }
}

/// The endpoint port a slice gives `port` (matched by name and protocol, as kube-proxy does).
fn slice_target(port: &crate::model::ServicePort, slice: &EndpointSlice) -> Option<u16> {
    if slice.address_type != AddressType::IPv4 {
        return None;
    }
    let slice_port = slice.ports.iter().find(|p| p.name == port.name && p.protocol == port.protocol)?;
    slice_port.port.map(|p| p.get())
}

/// Backends of `port` in `slice` that are not known to be on this node.
fn remote_backends<'a>(
    port: &'a crate::model::ServicePort,
    slice: &'a EndpointSlice,
    node: &'a NodeContext,
) -> impl Iterator<Item = BackendAddr> + 'a {
    let target = slice_target(port, slice);
    slice.endpoints.iter().filter(|ep| !node.is_local(ep.node_name.as_ref())).filter_map(move |ep| {
        let Some(IpAddr::V4(addr)) = ep.addresses.first() else { return None };
        Some(BackendAddr { addr: *addr, port: target?, proto: port.protocol.number() })
    })
}

/// The backends a service port sends new flows to, the listed endpoints it
/// does not (draining), and whether the first are the serving-terminating
/// fallback. Mirrors kube-proxy's CategorizeEndpoints: ready endpoints; if
/// none, serving+terminating ones; `LocalOnly` keeps this node's only.
fn usable_backends(
    port: &crate::model::ServicePort,
    slices: &[&EndpointSlice],
    node: &NodeContext,
    which: Endpoints,
) -> Usable {
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    let mut listed = BTreeSet::new();
    for slice in slices {
        let Some(target) = slice_target(port, slice) else { continue };
        for ep in &slice.endpoints {
            if which == Endpoints::LocalOnly && !node.is_local(ep.node_name.as_ref()) {
                continue;
            }
            let Some(IpAddr::V4(addr)) = ep.addresses.first() else { continue };
            let backend = BackendAddr { addr: *addr, port: target, proto: port.protocol.number() };
            listed.insert(backend);
            if ep.ready {
                ready.insert(backend);
            } else if ep.serving && ep.terminating {
                terminating.insert(backend);
            }
        }
    }
    let (used, fallback) = if !ready.is_empty() {
        (ready, false)
    } else {
        let fallback = !terminating.is_empty();
        (terminating, fallback)
    };
    let draining = listed.difference(&used).copied().collect();
    Usable { backends: used.into_iter().collect(), draining, terminating: fallback }
}

/// The live contents of the planned maps.
pub type LiveMaps = BTreeMap<MapId, Entries>;

/// Semantic state + live maps → the exact desired contents of ep_be_v1 and
/// ep_svc_v1, reusing live ids and slot positions.
pub fn resolve(set: &ServiceSet, live: &LiveMaps) -> LiveMaps {
    let empty = Entries::new();
    let live_be = live.get(&MapId::Backends).unwrap_or(&empty);
    let live_svc = live.get(&MapId::Services).unwrap_or(&empty);

    // Backend ids: reuse the live id of an identical backend (lowest id wins
    // when a crash left duplicates), allocate the lowest free id otherwise.
    let mut backend_ids: BTreeMap<BackendAddr, u32> = BTreeMap::new();
    for (k, v) in live_be {
        let (Some(id), Some(b)) = (backend_id_from_key(k), Backend::from_bytes(v)) else { continue };
        let addr = BackendAddr { addr: b.addr(), port: b.port(), proto: b.proto };
        backend_ids.entry(addr).and_modify(|e| *e = (*e).min(id)).or_insert(id);
    }
    let wanted: BTreeSet<BackendAddr> =
        set.services.values().flat_map(|s| s.backends.iter().chain(&s.draining).copied()).collect();
    // Ids still live are not handed out again in this pass: a service slot may
    // point at a removed backend until the plan's deletions run.
    let mut be_alloc = IdAllocator::new(live_be.keys().filter_map(|k| backend_id_from_key(k)).collect());
    backend_ids.retain(|b, _| wanted.contains(b));
    for b in &wanted {
        if !backend_ids.contains_key(b) {
            backend_ids.insert(*b, be_alloc.next());
        }
    }

    // Live service layout: frontend → (svc_id, slot → backend id).
    let mut live_layout: BTreeMap<Frontend, (Option<u32>, BTreeMap<u16, u32>)> = BTreeMap::new();
    for (k, v) in live_svc {
        let (Some(key), Some(val)) = (SvcKey::from_bytes(k), SvcValue::from_bytes(v)) else { continue };
        let fe = Frontend { vip: key.vip(), port: key.port(), proto: key.proto, scope: key.scope };
        let entry = live_layout.entry(fe).or_default();
        if key.slot == 0 {
            entry.0 = Some(val.svc_id);
        } else {
            entry.1.insert(key.slot, val.backend_id);
        }
    }
    let mut svc_ids: BTreeMap<Frontend, u32> = BTreeMap::new();
    for fe in set.services.keys() {
        if let Some((Some(id), _)) = live_layout.get(fe) {
            svc_ids.insert(*fe, *id);
        }
    }
    // A crash can leave two frontends with one id; keep it for the first only.
    let mut seen = BTreeSet::new();
    svc_ids.retain(|_, id| seen.insert(*id));
    let live_svc_ids = live_layout.values().filter_map(|(id, _)| *id);
    let mut svc_alloc = IdAllocator::new(svc_ids.values().copied().chain(live_svc_ids).collect());

    let mut be_entries = Entries::new();
    for (b, id) in &backend_ids {
        be_entries.insert(backend_id_key(*id), b.to_backend(set.remote.contains(b)).to_bytes());
    }
    let mut svc_entries = Entries::new();
    for (fe, entry) in &set.services {
        let svc_id = match svc_ids.get(fe) {
            Some(id) => *id,
            None => svc_alloc.next(),
        };
        let ids: Vec<u32> = entry.backends.iter().filter_map(|b| backend_ids.get(b).copied()).collect();
        let old_slots = live_layout.get(fe).map(|l| l.1.clone()).unwrap_or_default();
        for (slot, backend_id) in assign_slots(&ids, &old_slots) {
            let value = SvcValue { backend_id, ..SvcValue::default() };
            svc_entries.insert(fe.key(slot).to_bytes(), value.to_bytes());
        }
        let head = SvcValue {
            backend_id: 0,
            count: u16::try_from(ids.len()).unwrap_or(u16::MAX),
            flags: entry.flags,
            svc_id,
            affinity_timeout: entry.affinity_timeout,
        };
        svc_entries.insert(fe.key(0).to_bytes(), head.to_bytes());
    }
    let mut range_entries = Entries::new();
    for (fe, net, len) in &set.source_ranges {
        let key = LbsrcKey {
            prefixlen: LBSRC_PREFIX_FRONTEND + u32::from(*len),
            vip: fe.vip.octets(),
            port: fe.port.to_be_bytes(),
            proto: fe.proto,
            _pad0: 0,
            saddr: net.octets(),
        };
        range_entries.insert(key.to_bytes().to_vec(), LbsrcValue { allow: 1 }.to_bytes().to_vec());
    }
    BTreeMap::from([
        (MapId::Backends, be_entries),
        (MapId::SourceRanges, range_entries),
        (MapId::Services, svc_entries),
    ])
}

/// Slots 1..=n for `ids`, keeping each backend at its live slot when that slot
/// is still in range, so unchanged backends are not rewritten.
fn assign_slots(ids: &[u32], old: &BTreeMap<u16, u32>) -> BTreeMap<u16, u32> {
    let n = u16::try_from(ids.len()).unwrap_or(u16::MAX);
    let mut slots = BTreeMap::new();
    let mut placed = BTreeSet::new();
    for (slot, id) in old {
        if *slot >= 1 && *slot <= n && ids.contains(id) && placed.insert(*id) {
            slots.insert(*slot, *id);
        }
    }
    let free_slots: Vec<u16> = (1..=n).filter(|s| !slots.contains_key(s)).collect();
    let mut free = free_slots.into_iter();
    for id in ids {
        if !placed.contains(id)
            && let Some(slot) = free.next()
        {
            slots.insert(slot, *id);
        }
    }
    slots
}

/// Hands out the lowest ids ≥ 1 not already taken.
struct IdAllocator {
    taken: BTreeSet<u32>,
    cursor: u32,
}

impl IdAllocator {
    fn new(taken: BTreeSet<u32>) -> Self {
        IdAllocator { taken, cursor: 1 }
    }
    fn next(&mut self) -> u32 {
        while self.taken.contains(&self.cursor) {
            self.cursor += 1;
        }
        self.taken.insert(self.cursor);
        self.cursor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(last: u8, port: u16) -> BackendAddr {
        BackendAddr { addr: Ipv4Addr::new(198, 18, 1, last), port, proto: 6 }
    }

    fn set_with(backends: Vec<BackendAddr>) -> ServiceSet {
        let fe = Frontend { vip: Ipv4Addr::new(198, 19, 0, 10), port: 80, proto: 6, scope: SCOPE_CLUSTER };
        ServiceSet {
            services: BTreeMap::from([(
                fe,
                ServiceEntry {
                    name: "demo/web:http".into(),
                    backends,
                    draining: vec![],
                    flags: 0,
                    affinity_timeout: 0,
                },
            )]),
            ..ServiceSet::default()
        }
    }

    #[test]
    fn resolve_is_stable_against_its_own_output() {
        let set = set_with(vec![be(10, 8080), be(11, 8080)]);
        let first = resolve(&set, &LiveMaps::new());
        assert_eq!(first[&MapId::Backends].len(), 2);
        assert_eq!(first[&MapId::Services].len(), 3);
        assert_eq!(resolve(&set, &first), first);
    }

    #[test]
    fn removing_one_backend_keeps_the_other_in_place() {
        let live = resolve(&set_with(vec![be(10, 8080), be(11, 8080), be(12, 8080)]), &LiveMaps::new());
        let next = resolve(&set_with(vec![be(10, 8080), be(12, 8080)]), &live);
        let changed: Vec<_> = next[&MapId::Services]
            .iter()
            .filter(|(k, v)| live[&MapId::Services].get(*k) != Some(*v))
            .map(|(k, _)| SvcKey::from_bytes(k).map(|k| k.slot))
            .collect();
        // slot 0 (count 3 → 2) and slot 2 (backend .11 → .12); slot 1 untouched.
        assert_eq!(changed, vec![Some(0), Some(2)]);
        // backend ids are reused, not renumbered
        let ids_before: BTreeSet<_> = live[&MapId::Backends].keys().collect();
        assert!(next[&MapId::Backends].keys().all(|k| ids_before.contains(k)));
    }

    #[test]
    fn assign_slots_fills_holes_with_new_backends() {
        let old = BTreeMap::from([(1, 7), (2, 8), (3, 9)]);
        let slots = assign_slots(&[7, 9, 10], &old);
        assert_eq!(slots, BTreeMap::from([(1, 7), (2, 10), (3, 9)]));
    }

    #[test]
    fn local_traffic_policy_without_node_name_is_one_warning_naming_the_services() {
        let dir = tempfile::tempdir().expect("tempdir");
        let svc = |name: &str, ip: &str, itp: &str| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: demo\nspec:\n  clusterIP: {ip}\n  \
                 internalTrafficPolicy: {itp}\n  ports:\n  - port: 80\n---\n"
            )
        };
        let text = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n---\n{}{}{}",
            svc("a", "198.19.0.1", "Local"),
            svc("b", "198.19.0.2", "Cluster"),
            svc("c", "198.19.0.3", "Local")
        );
        std::fs::write(dir.path().join("s.yaml"), text).expect("write");
        let loaded =
            crate::model::load_dirs(&[dir.path().to_path_buf()], &crate::source::LoadLimits::default()).expect("load");
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let (_, warnings) = compile_services(&loaded.cluster, &NodeContext::default());
        let local: Vec<String> =
            warnings.iter().map(ToString::to_string).filter(|w| w.contains("internalTrafficPolicy")).collect();
        assert_eq!(local.len(), 1, "{local:?}");
        assert!(local[0].contains("demo/a, demo/c") && local[0].contains("node-name"), "{}", local[0]);
        assert!(!local[0].contains("demo/b"), "{}", local[0]);
        let (_, warnings) =
            compile_services(&loaded.cluster, &NodeContext { node_name: Some("n1".into()), ..NodeContext::default() });
        assert!(warnings.iter().all(|w| !w.to_string().contains("internalTrafficPolicy")), "{warnings:?}");
    }

    /// One NodePort/LoadBalancer service `web` (port 80 -> 8080, nodePort
    /// 30080) with ready endpoints (address, nodeName), plus `extra_spec`.
    fn external(extra_spec: &str, status: &str, endpoints: &[(&str, &str)]) -> crate::model::Loaded {
        let dir = tempfile::tempdir().expect("tempdir");
        let eps: String = endpoints
            .iter()
            .map(|(a, n)| format!("- addresses: [{a}]\n  nodeName: {n}\n  conditions: {{ready: true}}\n"))
            .collect();
        let node_port = if extra_spec.contains("type:") { "    nodePort: 30080\n" } else { "" };
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: demo}}\nspec:\n  clusterIP: 198.19.0.10\n\
             {extra_spec}  ports:\n  - port: 80\n    targetPort: 8080\n{node_port}{status}---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: demo\n  \
             labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{{port: 8080}}]\nendpoints:\n{eps}"
        );
        std::fs::write(dir.path().join("s.yaml"), text).expect("write");
        let loaded =
            crate::model::load_dirs(&[dir.path().to_path_buf()], &crate::source::LoadLimits::default()).expect("load");
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        loaded
    }

    fn node1() -> NodeContext {
        NodeContext {
            node_name: Some("node1".into()),
            node_ips: vec![Ipv4Addr::new(198, 18, 200, 11), Ipv4Addr::new(198, 18, 201, 11)],
        }
    }

    fn entry(set: &ServiceSet, vip: [u8; 4], port: u16, scope: u8) -> &ServiceEntry {
        let fe = Frontend { vip: Ipv4Addr::from(vip), port, proto: 6, scope };
        set.services.get(&fe).unwrap_or_else(|| panic!("frontend {fe:?} in {:?}", set.services.keys()))
    }

    fn addrs(e: &ServiceEntry) -> Vec<Ipv4Addr> {
        e.backends.iter().map(|b| b.addr).collect()
    }

    const EPS: [(&str, &str); 2] = [("198.18.1.10", "node1"), ("198.18.2.10", "node2")];

    #[test]
    fn node_ports_are_served_on_each_node_address_in_both_scopes() {
        let loaded = external("  type: NodePort\n", "", &EPS);
        let (set, _) = compile_services(&loaded.cluster, &node1());
        for ip in [[198, 18, 200, 11], [198, 18, 201, 11]] {
            let cluster = entry(&set, ip, 30080, SCOPE_CLUSTER);
            let ext = entry(&set, ip, 30080, SCOPE_EXTERNAL);
            assert_eq!(addrs(cluster).len(), 2);
            assert_eq!(addrs(ext).len(), 2);
            assert_eq!(cluster.flags, SVC_F_NODE_ADDR);
            assert_eq!(ext.flags, SVC_F_NODE_ADDR | SVC_F_DSR_OK, "eTP Cluster allows DSR");
            assert!(ext.name.contains("nodePort 30080"), "{}", ext.name);
        }
        assert_eq!(entry(&set, [198, 19, 0, 10], 80, SCOPE_CLUSTER).flags, 0);
        // Only node2's endpoint is remote.
        let remote: Vec<Ipv4Addr> = set.remote.iter().map(|b| b.addr).collect();
        assert_eq!(remote, vec![Ipv4Addr::new(198, 18, 2, 10)]);
        // Without node-ips no NodePort frontend, and a warning names the setting.
        let (set, warnings) = compile_services(&loaded.cluster, &NodeContext { node_ips: vec![], ..node1() });
        assert!(set.services.keys().all(|f| f.port == 80), "{:?}", set.services.keys());
        assert!(warnings.iter().any(|w| w.to_string().contains("node-ips")), "{warnings:?}");
    }

    #[test]
    fn external_local_policy_uses_local_endpoints_and_drops_when_they_are_elsewhere() {
        let loaded = external("  type: NodePort\n  externalTrafficPolicy: Local\n", "", &EPS);
        let (set, _) = compile_services(&loaded.cluster, &node1());
        let ext = entry(&set, [198, 18, 200, 11], 30080, SCOPE_EXTERNAL);
        assert_eq!(addrs(ext), vec![Ipv4Addr::new(198, 18, 1, 10)]);
        assert_eq!(ext.flags, SVC_F_NODE_ADDR, "no DSR for Local: endpoints are here");
        // In-cluster callers still reach every endpoint.
        assert_eq!(addrs(entry(&set, [198, 18, 200, 11], 30080, SCOPE_CLUSTER)).len(), 2);
        // Endpoints only on node2: node1 drops (not rejects).
        let loaded = external("  type: NodePort\n  externalTrafficPolicy: Local\n", "", &EPS[1..]);
        let (set, _) = compile_services(&loaded.cluster, &node1());
        let ext = entry(&set, [198, 18, 200, 11], 30080, SCOPE_EXTERNAL);
        assert!(ext.backends.is_empty());
        assert_eq!(ext.flags, SVC_F_NODE_ADDR | SVC_F_DROP_EMPTY);
        // No endpoints at all: rejected as any empty service.
        let loaded = external("  type: NodePort\n  externalTrafficPolicy: Local\n", "", &[]);
        let (set, _) = compile_services(&loaded.cluster, &node1());
        assert_eq!(entry(&set, [198, 18, 200, 11], 30080, SCOPE_EXTERNAL).flags, SVC_F_NODE_ADDR);
    }

    #[test]
    fn internal_local_policy_drops_when_endpoints_are_only_elsewhere() {
        let loaded = external("  internalTrafficPolicy: Local\n", "", &EPS[1..]);
        let (set, _) = compile_services(&loaded.cluster, &node1());
        let e = entry(&set, [198, 19, 0, 10], 80, SCOPE_CLUSTER);
        assert!(e.backends.is_empty());
        assert_eq!(e.flags, SVC_F_DROP_EMPTY);
        let loaded = external("  internalTrafficPolicy: Local\n", "", &EPS);
        let (set, _) = compile_services(&loaded.cluster, &node1());
        assert_eq!(addrs(entry(&set, [198, 19, 0, 10], 80, SCOPE_CLUSTER)), vec![Ipv4Addr::new(198, 18, 1, 10)]);
    }

    #[test]
    fn external_ips_get_cluster_and_external_entries() {
        let loaded = external("  externalIPs: [198.19.100.11]\n", "", &EPS);
        let (set, _) = compile_services(&loaded.cluster, &node1());
        assert_eq!(addrs(entry(&set, [198, 19, 100, 11], 80, SCOPE_CLUSTER)).len(), 2);
        let ext = entry(&set, [198, 19, 100, 11], 80, SCOPE_EXTERNAL);
        assert_eq!(ext.flags, SVC_F_DSR_OK);
        assert!(ext.name.contains("externalIP"), "{}", ext.name);
        // A ClusterIP service has no NodePort frontends even with node-ips.
        assert!(set.services.keys().all(|f| f.port == 80));
    }

    #[test]
    fn remote_flag_and_source_ranges_reach_the_maps() {
        let loaded = external("  type: NodePort\n", "", &EPS);
        let mut set = compile_services(&loaded.cluster, &node1()).0;
        let lb = Frontend { vip: Ipv4Addr::new(198, 19, 100, 10), port: 80, proto: 6, scope: SCOPE_EXTERNAL };
        set.source_ranges.insert((lb, Ipv4Addr::new(198, 19, 250, 0), 24));
        let maps = resolve(&set, &LiveMaps::new());
        let flags: BTreeMap<Ipv4Addr, u8> = maps[&MapId::Backends]
            .values()
            .filter_map(|v| Backend::from_bytes(v))
            .map(|b| (b.addr(), b.flags))
            .collect();
        assert_eq!(flags[&Ipv4Addr::new(198, 18, 1, 10)], 0);
        assert_eq!(flags[&Ipv4Addr::new(198, 18, 2, 10)], BE_F_REMOTE);
        let ranges = &maps[&MapId::SourceRanges];
        assert_eq!(ranges.len(), 1);
        let key = LbsrcKey::from_bytes(ranges.keys().next().expect("one")).expect("key");
        assert_eq!(
            (key.prefixlen, key.vip, key.port, key.saddr),
            (64 + 24, [198, 19, 100, 10], 80u16.to_be_bytes(), [198, 19, 250, 0])
        );
        // Unchanged input over its own result plans nothing; a node-name change flips flags only.
        assert_eq!(resolve(&set, &maps), maps);
        let other = compile_services(&loaded.cluster, &NodeContext { node_name: Some("node2".into()), ..node1() }).0;
        let maps2 = resolve(&other, &maps);
        assert_eq!(
            maps2[&MapId::Backends].keys().collect::<Vec<_>>(),
            maps[&MapId::Backends].keys().collect::<Vec<_>>()
        );
        assert_ne!(maps2[&MapId::Backends], maps[&MapId::Backends]);
    }
}
