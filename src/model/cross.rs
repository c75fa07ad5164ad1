//! Rules that look at several objects: duplicates, address and node port
//! conflicts, slices without a service, ports without backends; then the
//! sorted [`Cluster`].

use std::collections::{BTreeMap, HashMap};

use std::net::IpAddr;

use super::convert::{Ctx, Extra, Objects, Path};
use super::types::*;
use crate::diag::{Diagnostic, Span};

fn label(kind: &str, ns: &str, name: &str) -> String {
    if ns.is_empty() { format!("{kind} {name}") } else { format!("{kind} {ns}/{name}") }
}

/// `objects` in file order: "first" below means first in that order.
pub(crate) fn assemble(objects: Objects, node_port_range: (u16, u16), diags: &mut Vec<Diagnostic>) -> Cluster {
    let Objects { mut services, mut slices, mut pods, mut namespaces, mut policies } = objects;
    // Stable sorts keep file order among equal names, so the first
    // definition stays and the later ones are reported.
    dedup(&mut services, "Service", |(s, _)| &s.meta, diags);
    dedup(&mut slices, "EndpointSlice", |(s, _)| &s.meta, diags);
    dedup(&mut pods, "Pod", |p| &p.meta, diags);
    dedup(&mut policies, "NetworkPolicy", |p| &p.meta, diags);
    namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    namespaces.dedup_by(|later, first| {
        let dup = later.name == first.name;
        if dup {
            diags.push(Diagnostic::error(
                later.origin.clone(),
                Some(format!("Namespace {}", later.name)),
                "",
                format!("defined twice (first at {})", first.origin),
            ));
        }
        dup
    });

    check_service_conflicts(&services, node_port_range, diags);
    check_slices(&services, &slices, diags);
    check_named_target_ports(&services, &pods, diags);

    // Namespaces that objects name but no Namespace object defines.
    let mut ns_names: BTreeMap<String, Option<Span>> = BTreeMap::new();
    let metas = services
        .iter()
        .map(|(s, _)| &s.meta)
        .chain(slices.iter().map(|(s, _)| &s.meta))
        .chain(pods.iter().map(|p: &Pod| &p.meta))
        .chain(policies.iter().map(|p: &NetworkPolicy| &p.meta));
    for m in metas {
        ns_names.entry(m.namespace.clone()).or_insert_with(|| Some(m.origin.clone()));
    }
    for n in &namespaces {
        ns_names.insert(n.name.clone(), None);
    }
    for (name, origin) in ns_names {
        if let Some(origin) = origin {
            let mut labels = Labels::new();
            labels.insert("kubernetes.io/metadata.name".to_string(), name.clone());
            namespaces.push(Namespace { name, labels, origin });
        }
    }

    let services: Vec<Service> = services.into_iter().map(|(s, _)| s).collect();
    let endpoint_slices: Vec<EndpointSlice> = slices.into_iter().map(|(s, _)| s).collect();
    namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    Cluster { services, endpoint_slices, pods, namespaces, policies }
}

/// Sorts by (namespace, name) and drops later duplicates with an error.
fn dedup<T>(items: &mut Vec<T>, kind: &str, meta: impl Fn(&T) -> &ObjectMeta, diags: &mut Vec<Diagnostic>) {
    items.sort_by(|a, b| {
        let (a, b) = (meta(a), meta(b));
        (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
    });
    items.dedup_by(|later, first| {
        let (l, f) = (meta(later), meta(first));
        let dup = l.namespace == f.namespace && l.name == f.name;
        if dup {
            diags.push(Diagnostic::error(
                l.origin.clone(),
                Some(label(kind, &l.namespace, &l.name)),
                "",
                format!("defined twice (first at {})", f.origin),
            ));
        }
        dup
    });
}

fn ctx_for<'d>(meta: &ObjectMeta, kind: &str, diags: &'d mut Vec<Diagnostic>) -> Ctx<'d> {
    Ctx { object: Some(label(kind, &meta.namespace, &meta.name)), diags }
}

/// `spec.ports[i]` of a service's `pi`-th converted port, as written.
fn port_path(extra: &Extra, pi: usize) -> Path<'static> {
    static SPEC: Path<'static> = Path::Field(&Path::Root, "spec");
    static SPEC_PORTS: Path<'static> = Path::Field(&SPEC, "ports");
    SPEC_PORTS.i(extra.ports.get(pi).map_or(pi, |p| p.index))
}

/// Two services on one cluster IP (Kubernetes allocates each to one service,
/// so no two can clash on a port either), or on one node port/protocol.
/// Also: node ports outside `node-port-range` (the API server's
/// --service-node-port-range, kube-proxy's default 30000-32767).
fn check_service_conflicts(services: &[(Service, Extra)], node_port_range: (u16, u16), diags: &mut Vec<Diagnostic>) {
    let mut owners: HashMap<IpAddr, usize> = HashMap::new();
    for (si, (svc, extra)) in services.iter().enumerate() {
        for ip in &svc.cluster_ips {
            let first = *owners.entry(*ip).or_insert(si);
            if first == si {
                continue;
            }
            let (other, oextra) = &services[first];
            let (field, span) = extra.cluster_ip.as_ref().map_or(("clusterIP", &svc.meta.origin), |(f, s)| (*f, s));
            let other_span = oextra.cluster_ip.as_ref().map_or(&other.meta.origin, |(_, s)| s);
            ctx_for(&svc.meta, "Service", diags).error(
                span,
                &Path::Root.f("spec").f(field),
                format!(
                    "cluster IP {ip} is already Service {}/{}'s (at {other_span}); a cluster IP belongs to \
                     one service",
                    other.meta.namespace, other.meta.name
                ),
            );
        }
    }
    let mut node_ports: HashMap<(u16, Protocol), (usize, usize)> = HashMap::new();
    for (si, (svc, extra)) in services.iter().enumerate() {
        for (pi, port) in svc.ports.iter().enumerate() {
            let this = port_path(extra, pi);
            if let Some(np) = port.node_port {
                if !(node_port_range.0..=node_port_range.1).contains(&np.get()) {
                    let span = extra.ports.get(pi).and_then(|p| p.node_port.as_ref()).unwrap_or(&svc.meta.origin);
                    ctx_for(&svc.meta, "Service", diags).error(
                        span,
                        &this.f("nodePort"),
                        format!(
                            "node port {np} is outside node-port-range {}-{}",
                            node_port_range.0, node_port_range.1
                        ),
                    );
                    continue;
                }
                let key = (np.get(), port.protocol);
                match node_ports.get(&key) {
                    Some(&(fs, fp)) if fs != si => {
                        let (other, oextra) = &services[fs];
                        let mut ctx = ctx_for(&svc.meta, "Service", diags);
                        let span = extra.ports.get(pi).and_then(|p| p.node_port.as_ref()).unwrap_or(&svc.meta.origin);
                        let other_span =
                            oextra.ports.get(fp).and_then(|p| p.node_port.as_ref()).unwrap_or(&other.meta.origin);
                        ctx.error(
                            span,
                            &this.f("nodePort"),
                            format!(
                                "node port {np}/{} is already used by Service {}/{} at {other_span}",
                                port.protocol.as_str(),
                                other.meta.namespace,
                                other.meta.name
                            ),
                        );
                    }
                    Some(_) => {}
                    None => {
                        node_ports.insert(key, (si, pi));
                    }
                }
            }
        }
    }
}

/// Slices whose service does not exist; service ports that no slice serves.
fn check_slices(services: &[(Service, Extra)], slices: &[(EndpointSlice, Extra)], diags: &mut Vec<Diagnostic>) {
    let by_name: HashMap<(&str, &str), usize> =
        services.iter().enumerate().map(|(i, (s, _))| ((s.meta.namespace.as_str(), s.meta.name.as_str()), i)).collect();
    let mut served: HashMap<usize, Vec<(&str, Protocol)>> = HashMap::new();
    for (slice, extra) in slices {
        match by_name.get(&(slice.meta.namespace.as_str(), slice.service_name.as_str())) {
            None => {
                let mut ctx = ctx_for(&slice.meta, "EndpointSlice", diags);
                let span = extra.service_label_span.as_ref().unwrap_or(&slice.meta.origin);
                ctx.warning(
                    span,
                    &Path::Root.f("metadata").f("labels").f(super::convert::SERVICE_NAME_LABEL),
                    format!(
                        "no Service {}/{} is defined; these endpoints are unused",
                        slice.meta.namespace, slice.service_name
                    ),
                );
            }
            Some(&si) => {
                let entry = served.entry(si).or_default();
                entry.extend(slice.ports.iter().map(|p| (p.name.as_str(), p.protocol)));
            }
        }
    }
    for (si, names) in served {
        let (svc, extra) = &services[si];
        for (pi, port) in svc.ports.iter().enumerate() {
            if !names.contains(&(port.name.as_str(), port.protocol)) {
                let mut ctx = ctx_for(&svc.meta, "Service", diags);
                let span = extra.ports.get(pi).map_or(&svc.meta.origin, |p| &p.port);
                let shown = if port.name.is_empty() {
                    "an unnamed port".to_string()
                } else {
                    format!("a port named {:?}", port.name)
                };
                ctx.warning(
                    span,
                    &port_path(extra, pi),
                    format!(
                        "no EndpointSlice of this service has {shown} with protocol {}, so this port has no backends",
                        port.protocol.as_str()
                    ),
                );
            }
        }
    }
}

/// A named targetPort that none of the selected pods declares.
fn check_named_target_ports(services: &[(Service, Extra)], pods: &[Pod], diags: &mut Vec<Diagnostic>) {
    for (svc, extra) in services {
        let Some(selector) = extra.selector.as_ref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let selected: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                p.meta.namespace == svc.meta.namespace && selector.iter().all(|(k, v)| p.meta.labels.get(k) == Some(v))
            })
            .collect();
        if selected.is_empty() {
            continue;
        }
        for (pi, port) in svc.ports.iter().enumerate() {
            let PortRef::Name(name) = &port.target_port else {
                continue;
            };
            let declared = selected.iter().any(|p| {
                p.container_ports
                    .iter()
                    .any(|c| c.name.as_deref() == Some(name.as_str()) && c.protocol == port.protocol)
            });
            if !declared {
                let mut ctx = ctx_for(&svc.meta, "Service", diags);
                let span = extra.ports.get(pi).and_then(|p| p.target_port.as_ref()).unwrap_or(&svc.meta.origin);
                ctx.warning(
                    span,
                    &port_path(extra, pi).f("targetPort"),
                    format!(
                        "no pod this service selects ({} found) has a {} container port named {name:?}",
                        selected.len(),
                        port.protocol.as_str()
                    ),
                );
            }
        }
    }
}
