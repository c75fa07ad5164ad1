//! One YAML document → zero or more model objects, with a diagnostic (field
//! path and span) for every problem found. Per-object rules only; the rules
//! that look at several objects are in `cross.rs`.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU16;

use super::check;
use super::types::*;
use crate::diag::{Diagnostic, Span};
use crate::parse::yaml::{Node, Value};

/// A field path, built on the stack and only rendered for a diagnostic.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    pub(crate) fn f(&'a self, name: &'a str) -> Path<'a> {
        Path::Field(self, name)
    }
    pub(crate) fn i(&'a self, index: usize) -> Path<'a> {
        Path::Index(self, index)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut segs: Vec<&Path<'_>> = Vec::new();
        let mut cur = self;
        loop {
            match cur {
                Path::Root => break,
                Path::Field(parent, _) | Path::Index(parent, _) => {
                    segs.push(cur);
                    cur = parent;
                }
            }
        }
        let mut first = true;
        for seg in segs.iter().rev() {
            match seg {
                Path::Field(_, name) => {
                    let plain = name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
                    if !plain {
                        write!(f, "[{name:?}]")?;
                    } else if first {
                        write!(f, "{name}")?;
                    } else {
                        write!(f, ".{name}")?;
                    }
                }
                Path::Index(_, i) => write!(f, "[{i}]")?,
                Path::Root => {}
            }
            first = false;
        }
        Ok(())
    }
}

/// Extra facts about an object that the model types do not hold but the
/// cross-object checks need (spans of individual values, the selector).
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    /// Per service port (same order as `Service::ports`).
    pub ports: Vec<PortSpans>,
    /// Service `spec.selector`, kept only when a port has a named targetPort
    /// (the one rule that needs it).
    pub selector: Option<Labels>,
    /// Span of the EndpointSlice's service-name label value.
    pub service_label_span: Option<Span>,
    /// Service `spec.clusterIP` (or else `spec.clusterIPs`): its field name and span.
    pub cluster_ip: Option<(&'static str, Span)>,
}

#[derive(Debug, Clone)]
pub(crate) struct PortSpans {
    /// Index in the input's `spec.ports` (ports that failed to convert are
    /// left out of `Service::ports`, so its indexes can differ).
    pub index: usize,
    pub port: Span,
    pub node_port: Option<Span>,
    pub target_port: Option<Span>,
}

/// Converted objects by kind, in file order. Kept apart from the start (no
/// enum to unpack later) so that 200,000 objects are never moved one by one.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    pub services: Vec<(Service, Extra)>,
    pub slices: Vec<(EndpointSlice, Extra)>,
    pub pods: Vec<Pod>,
    pub namespaces: Vec<Namespace>,
    pub policies: Vec<NetworkPolicy>,
}

impl Objects {
    pub(crate) fn append(&mut self, mut other: Objects) {
        self.services.append(&mut other.services);
        self.slices.append(&mut other.slices);
        self.pods.append(&mut other.pods);
        self.namespaces.append(&mut other.namespaces);
        self.policies.append(&mut other.policies);
    }
}

/// Collects diagnostics for one object.
pub(crate) struct Ctx<'d> {
    pub object: Option<String>,
    pub diags: &'d mut Vec<Diagnostic>,
}

fn get<'n>(map: &'n Node, key: &str) -> Option<&'n Node> {
    map.get(key).filter(|n| !n.is_null())
}

impl Ctx<'_> {
    pub(crate) fn error(&mut self, span: &Span, path: &Path<'_>, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(span.clone(), self.object.clone(), path.to_string(), message));
    }
    pub(crate) fn warning(&mut self, span: &Span, path: &Path<'_>, message: impl Into<String>) {
        self.diags.push(Diagnostic::warning(span.clone(), self.object.clone(), path.to_string(), message));
    }
    fn expected(&mut self, node: &Node, path: &Path<'_>, what: &str) {
        self.error(&node.span, path, format!("expected {what}, found {}", node.describe()));
    }
    fn missing(&mut self, parent: &Node, path: &Path<'_>, what: &str) {
        self.error(&parent.span, path, format!("expected {what}, the field is missing"));
    }

    fn string<'n>(&mut self, node: &'n Node, path: &Path<'_>) -> Option<&'n str> {
        match &node.value {
            Value::Str(s) => Some(s),
            _ => {
                self.expected(node, path, "a string");
                None
            }
        }
    }
    fn str_field<'n>(&mut self, map: &'n Node, key: &str, path: &Path<'_>) -> Option<(&'n str, &'n Node)> {
        let node = get(map, key)?;
        self.string(node, &path.f(key)).map(|s| (s, node))
    }
    fn bool_field(&mut self, map: &Node, key: &str, path: &Path<'_>) -> Option<bool> {
        let node = get(map, key)?;
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.expected(node, &path.f(key), "true or false");
                None
            }
        }
    }
    fn map<'n>(&mut self, map: &'n Node, key: &str, path: &Path<'_>) -> Option<&'n Node> {
        let node = get(map, key)?;
        if node.as_map().is_some() {
            Some(node)
        } else {
            self.expected(node, &path.f(key), "a mapping");
            None
        }
    }
    fn seq<'n>(&mut self, map: &'n Node, key: &str, path: &Path<'_>) -> &'n [Node] {
        match get(map, key) {
            None => &[],
            Some(node) => match node.as_seq() {
                Some(items) => items,
                None => {
                    self.expected(node, &path.f(key), "a list");
                    &[]
                }
            },
        }
    }
    /// Warns about keys outside `known` (typos in the small structures where
    /// a misspelt field silently changes meaning).
    fn known_fields(&mut self, node: &Node, path: &Path<'_>, known: &[&str]) {
        for (k, _) in node.as_map().unwrap_or_default() {
            let name = k.as_str().unwrap_or_default();
            if !known.contains(&name) {
                self.warning(
                    &k.span,
                    &path.f(name),
                    format!("unknown field {name:?} is ignored (expected one of: {})", known.join(", ")),
                );
            }
        }
    }

    fn port_number(&mut self, node: &Node, path: &Path<'_>) -> Option<NonZeroU16> {
        match node.value {
            Value::Int(i) if (1..=65535).contains(&i) => NonZeroU16::new(i as u16),
            _ => {
                self.expected(node, path, "a port number 1-65535");
                None
            }
        }
    }
    fn required_port(&mut self, map: &Node, key: &str, path: &Path<'_>) -> Option<NonZeroU16> {
        match get(map, key) {
            Some(node) => self.port_number(node, &path.f(key)),
            None => {
                self.missing(map, &path.f(key), "a port number 1-65535");
                None
            }
        }
    }
    fn protocol(&mut self, map: &Node, path: &Path<'_>) -> Protocol {
        match self.str_field(map, "protocol", path) {
            None => Protocol::Tcp,
            Some(("TCP", _)) => Protocol::Tcp,
            Some(("UDP", _)) => Protocol::Udp,
            Some(("SCTP", _)) => Protocol::Sctp,
            Some((_, node)) => {
                self.expected(node, &path.f("protocol"), "TCP, UDP or SCTP");
                Protocol::Tcp
            }
        }
    }
    /// An IntOrString port: a number 1-65535 or a port name.
    fn port_ref(&mut self, node: &Node, path: &Path<'_>) -> Option<PortRef> {
        match &node.value {
            Value::Int(_) => self.port_number(node, path).map(PortRef::Number),
            Value::Str(s) if check::port_name(s).is_ok() => Some(PortRef::Name(s.clone())),
            _ => {
                self.expected(node, path, "a port number 1-65535 or a port name (1-15 lowercase letters, digits or '-', with at least one letter)");
                None
            }
        }
    }
    fn check_name(&mut self, node: &Node, path: &Path<'_>, rule: fn(&str) -> Result<(), &'static str>) -> bool {
        match node.as_str() {
            Some(s) => match rule(s) {
                Ok(()) => true,
                Err(what) => {
                    self.expected(node, path, what);
                    false
                }
            },
            None => {
                self.expected(node, path, "a string");
                false
            }
        }
    }
    fn ip_field(&mut self, node: &Node, path: &Path<'_>) -> Option<IpAddr> {
        let s = self.string(node, path)?;
        match check::ip(s) {
            Ok(ip) => Some(ip),
            Err(what) => {
                self.expected(node, path, what);
                None
            }
        }
    }

    pub(crate) fn labels(&mut self, node: &Node, path: &Path<'_>) -> Labels {
        let mut labels = Labels::new();
        let Some(entries) = node.as_map() else {
            self.expected(node, path, "a mapping of label keys to values");
            return labels;
        };
        for (k, v) in entries {
            let Some(key) = k.as_str() else {
                self.expected(k, path, "a label key (a string)");
                continue;
            };
            let p = path.f(key);
            let mut ok = true;
            if let Err(what) = check::label_key(key) {
                self.error(&k.span, &p, format!("expected {what}, found {key:?}"));
                ok = false;
            }
            let value = match &v.value {
                Value::Str(s) => s.as_str(),
                // An empty value (`key:`) is the empty string in Kubernetes JSON.
                Value::Null => "",
                _ => {
                    self.expected(v, &p, "a string (quote numbers and booleans used as label values)");
                    continue;
                }
            };
            if let Err(what) = check::label_value(value) {
                self.error(&v.span, &p, format!("expected {what}, found {value:?}"));
                ok = false;
            }
            if ok {
                labels.insert(key.to_string(), value.to_string());
            }
        }
        labels
    }

    pub(crate) fn selector(&mut self, node: &Node, path: &Path<'_>) -> LabelSelector {
        let mut sel = LabelSelector::default();
        if node.as_map().is_none() {
            self.expected(node, path, "a label selector (a mapping with matchLabels and/or matchExpressions)");
            return sel;
        }
        self.known_fields(node, path, &["matchLabels", "matchExpressions"]);
        if let Some(ml) = get(node, "matchLabels") {
            sel.match_labels = self.labels(ml, &path.f("matchLabels"));
        }
        let exprs_path = path.f("matchExpressions");
        for (i, e) in self.seq(node, "matchExpressions", path).iter().enumerate() {
            let p = exprs_path.i(i);
            if e.as_map().is_none() {
                self.expected(e, &p, "a mapping with key, operator and values");
                continue;
            }
            self.known_fields(e, &p, &["key", "operator", "values"]);
            let key = match self.str_field(e, "key", &p) {
                Some((k, kn)) => {
                    if let Err(what) = check::label_key(k) {
                        self.expected(kn, &p.f("key"), what);
                    }
                    Some(k)
                }
                None => {
                    if get(e, "key").is_none() {
                        self.missing(e, &p.f("key"), "a label key");
                    }
                    None
                }
            };
            let op = match self.str_field(e, "operator", &p) {
                Some(("In", _)) => Some(SelectorOp::In),
                Some(("NotIn", _)) => Some(SelectorOp::NotIn),
                Some(("Exists", _)) => Some(SelectorOp::Exists),
                Some(("DoesNotExist", _)) => Some(SelectorOp::DoesNotExist),
                Some((_, on)) => {
                    self.expected(on, &p.f("operator"), "In, NotIn, Exists or DoesNotExist");
                    None
                }
                None => {
                    if get(e, "operator").is_none() {
                        self.missing(e, &p.f("operator"), "In, NotIn, Exists or DoesNotExist");
                    }
                    None
                }
            };
            let values_node = get(e, "values");
            let vp = p.f("values");
            let mut values = Vec::new();
            for (j, v) in self.seq(e, "values", &p).iter().enumerate() {
                let Some(s) = self.string(v, &vp.i(j)) else {
                    continue;
                };
                if let Err(what) = check::label_value(s) {
                    self.expected(v, &vp.i(j), what);
                }
                values.push(s.to_string());
            }
            match op {
                Some(SelectorOp::In | SelectorOp::NotIn)
                    if values.is_empty() && values_node.is_none_or(|v| v.as_seq().is_some()) =>
                {
                    let at = values_node.unwrap_or(e);
                    self.error(&at.span, &vp, "expected at least one value for operator In or NotIn");
                }
                Some(SelectorOp::Exists | SelectorOp::DoesNotExist)
                    if values_node.and_then(Node::as_seq).is_some_and(|v| !v.is_empty()) =>
                {
                    let at = values_node.unwrap_or(e);
                    self.error(&at.span, &vp, "expected no values for operator Exists or DoesNotExist");
                }
                _ => {}
            }
            if let (Some(key), Some(op)) = (key, op) {
                sel.match_expressions.push(SelectorRequirement { key: key.to_string(), op, values });
            }
        }
        sel
    }
}

/// The identifying part of any object.
struct Head<'n> {
    kind: &'n str,
    name: &'n str,
}

/// The kinds edgeplane reads, with their API group.
const READ_KINDS: [(&str, &str); 5] = [
    ("Service", ""),
    ("Pod", ""),
    ("Namespace", ""),
    ("EndpointSlice", "discovery.k8s.io"),
    ("NetworkPolicy", "networking.k8s.io"),
];

/// Kubernetes kinds a directory commonly holds besides those: never typos.
const OTHER_KINDS: [&str; 24] = [
    "Node",
    "ConfigMap",
    "Secret",
    "Deployment",
    "DaemonSet",
    "StatefulSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Ingress",
    "IngressClass",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "StorageClass",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "LimitRange",
    "ResourceQuota",
    "CustomResourceDefinition",
];

/// "did you mean …?" for an ignored kind that is probably a typo of a kind
/// edgeplane reads (or one of those under the wrong API group). Other
/// projects reuse these names in their own groups (Knative's Service): only
/// Kubernetes' own groups suggest a slip.
fn near_miss_kind(api_version: &str, kind: &str) -> Option<String> {
    if OTHER_KINDS.contains(&kind) || kind.ends_with("List") {
        return None;
    }
    let group = group_of(api_version);
    if !(["", "apps", "batch", "policy", "autoscaling"].contains(&group) || group.ends_with("k8s.io")) {
        return None;
    }
    if let Some((read, group)) = READ_KINDS.iter().find(|(k, _)| *k == kind) {
        let want = if group.is_empty() { "v1".to_string() } else { format!("{group}/v1") };
        return Some(format!("did you mean apiVersion {want} for {read}?"));
    }
    let lower = kind.to_ascii_lowercase();
    // Plurals (resource names, as in `kubectl get networkpolicies`) count as typos too.
    let singular = match lower.strip_suffix("ies") {
        Some(stem) => format!("{stem}y"),
        None => lower.strip_suffix('s').unwrap_or(&lower).to_string(),
    };
    READ_KINDS
        .iter()
        .map(|(k, _)| {
            let k_lower = k.to_ascii_lowercase();
            (k, edit_distance(&lower, &k_lower).min(edit_distance(&singular, &k_lower)))
        })
        // Short names are close to many words: allow less there.
        .filter(|(k, d)| *d <= if k.len() >= 6 { 2 } else { 1 })
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| format!("did you mean kind {k}?"))
}

/// Levenshtein distance (inputs are short kind names).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev_diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev_diag + usize::from(ca != *cb);
            prev_diag = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

fn object_label(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Groups that own the kinds we read; another group's kind of the same name
/// (a Knative `Service`) is a different thing and is ignored.
fn group_of(api_version: &str) -> &str {
    match api_version.rsplit_once('/') {
        Some((group, _)) => group,
        None => "",
    }
}

/// Converts one document (or one `List` item) into objects. `base` is the
/// path prefix (`items[3]` inside a List) used for problems found before the
/// object's identity is known.
pub(crate) fn convert(root: &Node, base: &Path<'_>, out: &mut Objects, diags: &mut Vec<Diagnostic>, depth: usize) {
    let mut ctx = Ctx { object: None, diags };
    if root.as_map().is_none() {
        ctx.expected(root, base, "a Kubernetes object (a mapping with apiVersion and kind)");
        return;
    }
    let api_version = match get(root, "apiVersion") {
        None => {
            ctx.missing(root, &base.f("apiVersion"), "an apiVersion");
            return;
        }
        Some(n) => match ctx.string(n, &base.f("apiVersion")) {
            Some(s) => s,
            None => return,
        },
    };
    let kind = match get(root, "kind") {
        None => {
            ctx.missing(root, &base.f("kind"), "a kind");
            return;
        }
        Some(n) => match ctx.string(n, &base.f("kind")) {
            Some(s) => s,
            None => return,
        },
    };
    let (expected_version, namespaced) = match (group_of(api_version), kind) {
        ("", "Service") => ("v1", true),
        ("", "Pod") => ("v1", true),
        ("", "Namespace") => ("v1", false),
        ("discovery.k8s.io", "EndpointSlice") => ("discovery.k8s.io/v1", true),
        ("networking.k8s.io", "NetworkPolicy") => ("networking.k8s.io/v1", true),
        ("", "Endpoints") => {
            let (name, ns) = quick_identity(root);
            ctx.object = Some(object_label(kind, Some(ns), name));
            ctx.warning(
                &root.span,
                &Path::Root,
                "v1 Endpoints objects are ignored: kube-proxy and edgeplane read only discovery.k8s.io/v1 EndpointSlice (write an EndpointSlice labelled kubernetes.io/service-name instead)",
            );
            return;
        }
        ("", k) if k.ends_with("List") => {
            list(root, base, out, ctx.diags, depth);
            return;
        }
        _ => {
            // Other kinds are ignored by design (a directory may hold a whole
            // application), but a near-miss of one we read is likely a typo.
            if let Some(hint) = near_miss_kind(api_version, kind) {
                let (name, ns) = quick_identity(root);
                ctx.object = Some(object_label(kind, Some(ns), name));
                let node = get(root, "kind").unwrap_or(root);
                ctx.warning(
                    &node.span,
                    &base.f("kind"),
                    format!("{api_version} {kind} is not a kind edgeplane reads, so this object is ignored; {hint}"),
                );
            } else {
                log::debug!("{}:{}: ignoring {api_version} {kind}", root.span.file, root.span.line);
            }
            return;
        }
    };
    if api_version != expected_version {
        let (name, ns) = quick_identity(root);
        ctx.object = Some(object_label(kind, namespaced.then_some(ns), name));
        let node = get(root, "apiVersion").unwrap_or(root);
        ctx.expected(node, &Path::Root.f("apiVersion"), &format!("{expected_version:?} for {kind}"));
        return;
    }
    // Identity first: every later diagnostic names the object.
    let meta_path = Path::Root.f("metadata");
    let Some(metadata) = get(root, "metadata").filter(|m| m.as_map().is_some()) else {
        ctx.object = Some(kind.to_string());
        match get(root, "metadata") {
            Some(m) => ctx.expected(m, &meta_path, "a mapping with name (and namespace)"),
            None => ctx.missing(root, &meta_path, "a mapping with name (and namespace)"),
        }
        return;
    };
    let name = match get(metadata, "name") {
        Some(n) => match n.as_str() {
            Some(s) => s,
            None => {
                ctx.object = Some(kind.to_string());
                ctx.expected(n, &meta_path.f("name"), "a name (a string)");
                return;
            }
        },
        None => {
            ctx.object = Some(kind.to_string());
            let why = if get(metadata, "generateName").is_some() {
                "a name (generateName needs the API server; write the generated name)"
            } else {
                "a name"
            };
            ctx.missing(metadata, &meta_path.f("name"), why);
            return;
        }
    };
    let namespace = match get(metadata, "namespace") {
        Some(n) if namespaced => match n.as_str() {
            Some(s) => s,
            None => {
                ctx.object = Some(object_label(kind, None, name));
                ctx.expected(n, &meta_path.f("namespace"), "a namespace name (a string)");
                return;
            }
        },
        _ => "default",
    };
    ctx.object = Some(object_label(kind, namespaced.then_some(namespace), name));
    let name_node = get(metadata, "name").unwrap_or(metadata);
    let name_rule: fn(&str) -> Result<(), &'static str> = match kind {
        "Service" => check::dns1035_label,
        "Namespace" => check::dns1123_label,
        _ => check::dns1123_subdomain,
    };
    ctx.check_name(name_node, &meta_path.f("name"), name_rule);
    if namespaced && let Some(ns_node) = get(metadata, "namespace") {
        ctx.check_name(ns_node, &meta_path.f("namespace"), check::dns1123_label);
    }
    let labels = match get(metadata, "labels") {
        Some(l) => ctx.labels(l, &meta_path.f("labels")),
        None => Labels::new(),
    };
    let head = Head { kind, name };
    let meta = ObjectMeta {
        namespace: if namespaced { namespace.to_string() } else { String::new() },
        name: name.to_string(),
        labels,
        origin: root.span.clone(),
    };
    match head.kind {
        "Service" => {
            let (svc, extra) = service(root, meta, &mut ctx);
            out.services.push((svc, extra));
        }
        "EndpointSlice" => {
            if let Some((mut slice, extra)) = endpoint_slice(root, metadata, meta, &mut ctx) {
                slice.meta.labels = Labels::new();
                out.slices.push((slice, extra));
            }
        }
        "Pod" => out.pods.push(pod(root, meta, &mut ctx)),
        "Namespace" => {
            let mut labels = meta.labels;
            let key = "kubernetes.io/metadata.name";
            if let Some(v) = labels.get(key).filter(|v| v.as_str() != head.name) {
                let span = get(metadata, "labels").and_then(|l| l.get(key)).map_or(&root.span, |n| &n.span).clone();
                ctx.warning(
                    &span,
                    &meta_path.f("labels").f(key),
                    format!("the API server sets this label to the namespace name {:?}, not {v:?}", head.name),
                );
            }
            labels.insert(key.to_string(), head.name.to_string());
            out.namespaces.push(Namespace { name: meta.name, labels, origin: meta.origin });
        }
        "NetworkPolicy" => out.policies.push(network_policy(root, meta, &mut ctx)),
        _ => {}
    }
}

/// Name and namespace for messages about objects we do not convert.
fn quick_identity(root: &Node) -> (&str, &str) {
    let meta = root.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Node::as_str).unwrap_or("?");
    let ns = meta.and_then(|m| m.get("namespace")).and_then(Node::as_str).unwrap_or("default");
    (name, ns)
}

/// A `List` kept as a tree (a small one, or items the parser did not stream).
fn list(root: &Node, base: &Path<'_>, out: &mut Objects, diags: &mut Vec<Diagnostic>, depth: usize) {
    let items = {
        let mut ctx = Ctx { object: None, diags: &mut *diags };
        if depth > 4 {
            ctx.error(&root.span, base, "Lists nested more than 4 deep");
            return;
        }
        ctx.seq(root, "items", base)
    };
    let items_path = base.f("items");
    for (i, item) in items.iter().enumerate() {
        convert(item, &items_path.i(i), out, diags, depth + 1);
    }
}

/// True for a `List` wrapper document (`v1 List`, `ServiceList`, ...).
pub(crate) fn is_list(root: &Node) -> bool {
    let api = root.get("apiVersion").and_then(Node::as_str).unwrap_or_default();
    let kind = root.get("kind").and_then(Node::as_str).unwrap_or_default();
    group_of(api).is_empty() && kind.ends_with("List")
}

fn service(root: &Node, meta: ObjectMeta, ctx: &mut Ctx<'_>) -> (Service, Extra) {
    let root_path = Path::Root;
    let sp = root_path.f("spec");
    let empty = Node { span: root.span.clone(), value: Value::Map(Vec::new()) };
    let spec = ctx.map(root, "spec", &root_path).unwrap_or(&empty);
    let mut extra = Extra::default();

    let service_type = match ctx.str_field(spec, "type", &sp) {
        None | Some(("ClusterIP", _)) => ServiceType::ClusterIp,
        Some(("NodePort", _)) => ServiceType::NodePort,
        Some(("LoadBalancer", _)) => ServiceType::LoadBalancer,
        Some(("ExternalName", _)) => ServiceType::ExternalName,
        Some((_, n)) => {
            ctx.expected(n, &sp.f("type"), "ClusterIP, NodePort, LoadBalancer or ExternalName");
            ServiceType::ClusterIp
        }
    };
    let type_name = match service_type {
        ServiceType::ClusterIp => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
        ServiceType::ExternalName => "ExternalName",
    };

    // clusterIP / clusterIPs
    let mut headless = false;
    let mut cluster_ips: Vec<IpAddr> = Vec::new();
    let cluster_ip = ctx.str_field(spec, "clusterIP", &sp);
    match cluster_ip {
        None | Some(("", _)) => {}
        Some(("None", _)) => headless = true,
        Some((_, n)) => {
            if let Some(ip) = ctx.ip_field(n, &sp.f("clusterIP")) {
                cluster_ips.push(ip);
            } else {
                // ip_field reported "expected an IP address"; None is also allowed.
            }
        }
    }
    let ips_path = sp.f("clusterIPs");
    let ips_nodes = ctx.seq(spec, "clusterIPs", &sp);
    if !ips_nodes.is_empty() {
        let mut from_list: Vec<IpAddr> = Vec::new();
        for (i, n) in ips_nodes.iter().enumerate() {
            let p = ips_path.i(i);
            match n.as_str() {
                Some("None") if ips_nodes.len() == 1 => headless = true,
                Some("None") => ctx.error(&n.span, &p, "\"None\" may only be the only entry of clusterIPs"),
                _ => {
                    if let Some(ip) = ctx.ip_field(n, &p) {
                        if from_list.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
                            ctx.expected(n, &p, "at most one address per IP family");
                        } else {
                            from_list.push(ip);
                        }
                    }
                }
            }
        }
        if ips_nodes.len() > 2 {
            ctx.error(&ips_nodes[2].span, &ips_path, format!("expected at most 2 entries, found {}", ips_nodes.len()));
        }
        if let (Some((first_text, _)), Some(first)) = (cluster_ip, ips_nodes.first())
            && !first_text.is_empty()
            && first.as_str().is_some_and(|s| s != first_text)
        {
            ctx.error(
                &first.span,
                &ips_path.i(0),
                format!("expected the same address as spec.clusterIP ({first_text}), found {}", first.describe()),
            );
        }
        if cluster_ip.is_none_or(|(s, _)| s.is_empty()) || !from_list.is_empty() {
            cluster_ips = from_list;
        }
    }
    if service_type == ServiceType::ExternalName {
        if let Some((s, n)) = cluster_ip.filter(|(s, _)| !s.is_empty()) {
            let _ = s;
            ctx.error(&n.span, &sp.f("clusterIP"), "may not be set for ExternalName services");
        }
        cluster_ips.clear();
        match ctx.str_field(spec, "externalName", &sp) {
            Some((_, n)) => {
                ctx.check_name(n, &sp.f("externalName"), check::dns1123_subdomain);
            }
            None => {
                if get(spec, "externalName").is_none() {
                    ctx.missing(spec, &sp.f("externalName"), "a DNS name for an ExternalName service");
                }
            }
        }
    } else if headless && service_type != ServiceType::ClusterIp {
        let n = get(spec, "clusterIP").unwrap_or(spec);
        ctx.error(&n.span, &sp.f("clusterIP"), format!("may not be \"None\" (headless) for {type_name} services"));
    } else if !headless
        && cluster_ips.is_empty()
        && cluster_ip.is_none_or(|(s, _)| s.is_empty())
        && ips_nodes.is_empty()
    {
        ctx.warning(
            &spec.span,
            &sp.f("clusterIP"),
            "no clusterIP: the API server would allocate one, edgeplane does not, so this service has no virtual IP (set spec.clusterIP)",
        );
    }

    // ipFamilies must match the addresses, in order.
    let fam_path = sp.f("ipFamilies");
    for (i, n) in ctx.seq(spec, "ipFamilies", &sp).iter().enumerate() {
        let p = fam_path.i(i);
        let want_v4 = match n.as_str() {
            Some("IPv4") => true,
            Some("IPv6") => false,
            _ => {
                ctx.expected(n, &p, "IPv4 or IPv6");
                continue;
            }
        };
        if let Some(ip) = cluster_ips.get(i)
            && ip.is_ipv4() != want_v4
        {
            ctx.error(&n.span, &p, format!("expected the family of clusterIPs[{i}] ({ip}), found {}", n.describe()));
        }
    }

    let mut external_ips = Vec::new();
    let ext_path = sp.f("externalIPs");
    for (i, n) in ctx.seq(spec, "externalIPs", &sp).iter().enumerate() {
        if let Some(ip) = ctx.ip_field(n, &ext_path.i(i)) {
            if ip.is_unspecified() || ip.is_loopback() {
                ctx.expected(n, &ext_path.i(i), "a routable IP address");
            } else {
                external_ips.push(ip);
            }
        }
    }

    // ports
    let ports_path = sp.f("ports");
    let port_nodes = ctx.seq(spec, "ports", &sp);
    let mut ports = Vec::new();
    let mut seen_names: HashMap<&str, usize> = HashMap::new();
    let mut seen_ports: HashMap<(u16, Protocol), usize> = HashMap::new();
    let mut seen_node_ports: HashMap<(u16, Protocol), usize> = HashMap::new();
    for (i, pn) in port_nodes.iter().enumerate() {
        let p = ports_path.i(i);
        if pn.as_map().is_none() {
            ctx.expected(pn, &p, "a mapping with port, protocol and targetPort");
            continue;
        }
        ctx.known_fields(pn, &p, &["name", "protocol", "appProtocol", "port", "targetPort", "nodePort"]);
        let name = match ctx.str_field(pn, "name", &p) {
            Some((s, n)) => {
                if !s.is_empty() {
                    ctx.check_name(n, &p.f("name"), check::dns1123_label);
                    if let Some(first) = seen_names.insert(s, i) {
                        ctx.error(
                            &n.span,
                            &p.f("name"),
                            format!("duplicate port name {s:?} (also spec.ports[{first}])"),
                        );
                    }
                }
                s
            }
            None => "",
        };
        if name.is_empty() && port_nodes.len() > 1 {
            let at = get(pn, "name").unwrap_or(pn);
            ctx.error(&at.span, &p.f("name"), "expected a port name: every port needs one when a service has several");
        }
        let protocol = ctx.protocol(pn, &p);
        let port = ctx.required_port(pn, "port", &p);
        let target_node = get(pn, "targetPort");
        let target = match target_node {
            None => port.map(PortRef::Number),
            Some(n) if matches!(&n.value, Value::Int(0)) => port.map(PortRef::Number),
            Some(n) if matches!(&n.value, Value::Str(s) if s.is_empty()) => port.map(PortRef::Number),
            Some(n) => ctx.port_ref(n, &p.f("targetPort")),
        };
        let mut node_port = None;
        let np_node = get(pn, "nodePort");
        if let Some(n) = np_node {
            let np_path = p.f("nodePort");
            match n.value {
                Value::Int(0) => {}
                Value::Int(v) if matches!(service_type, ServiceType::ClusterIp | ServiceType::ExternalName) => {
                    let _ = v;
                    ctx.error(
                        &n.span,
                        &np_path,
                        format!("may not be set when type is {type_name} (use NodePort or LoadBalancer)"),
                    );
                }
                // The range is a setting (node-port-range), checked with the other services.
                Value::Int(v) if (1..=65535).contains(&v) => {
                    node_port = NonZeroU16::new(v as u16);
                }
                _ => ctx.expected(n, &np_path, "a node port 1-65535"),
            }
        }
        if let Some(port) = port
            && let Some(first) = seen_ports.insert((port.get(), protocol), i)
        {
            let at = get(pn, "port").unwrap_or(pn);
            ctx.error(
                &at.span,
                &p.f("port"),
                format!("duplicate port {}/{} (also spec.ports[{first}])", port, protocol.as_str()),
            );
        }
        if let (Some(np), Some(n)) = (node_port, np_node)
            && let Some(first) = seen_node_ports.insert((np.get(), protocol), i)
        {
            ctx.error(
                &n.span,
                &p.f("nodePort"),
                format!("duplicate nodePort {}/{} (also spec.ports[{first}])", np, protocol.as_str()),
            );
        }
        if let (Some(port), Some(target_port)) = (port, target) {
            extra.ports.push(PortSpans {
                index: i,
                port: get(pn, "port").map_or(&pn.span, |n| &n.span).clone(),
                node_port: np_node.filter(|_| node_port.is_some()).map(|n| n.span.clone()),
                target_port: target_node.map(|n| n.span.clone()),
            });
            ports.push(ServicePort { name: name.to_string(), protocol, port, target_port, node_port });
        }
    }
    if port_nodes.is_empty() && !headless && service_type != ServiceType::ExternalName {
        let at = get(spec, "ports").unwrap_or(spec);
        ctx.error(
            &at.span,
            &ports_path,
            "expected at least one port (only headless and ExternalName services may have none)",
        );
    }

    // session affinity
    let affinity = ctx.str_field(spec, "sessionAffinity", &sp);
    let config = ctx.map(spec, "sessionAffinityConfig", &sp);
    let cfg_path = sp.f("sessionAffinityConfig");
    let affinity_timeout = match affinity {
        None | Some(("None", _)) => {
            if let Some(c) = config {
                ctx.error(&c.span, &cfg_path, "may not be set when spec.sessionAffinity is None");
            }
            None
        }
        Some(("ClientIP", _)) => {
            let client_path = cfg_path.f("clientIP");
            let timeout_node =
                config.and_then(|c| ctx.map(c, "clientIP", &cfg_path)).and_then(|c| get(c, "timeoutSeconds"));
            match timeout_node {
                None => Some(10800),
                Some(n) => match n.value {
                    Value::Int(t) if (1..=86400).contains(&t) => Some(t as u32),
                    _ => {
                        ctx.expected(n, &client_path.f("timeoutSeconds"), "a timeout of 1-86400 seconds");
                        Some(10800)
                    }
                },
            }
        }
        Some((_, n)) => {
            ctx.expected(n, &sp.f("sessionAffinity"), "None or ClientIP");
            None
        }
    };

    let traffic = |ctx: &mut Ctx<'_>, key: &str| match ctx.str_field(spec, key, &sp) {
        None | Some(("Cluster", _)) => (TrafficPolicy::Cluster, None),
        Some(("Local", n)) => (TrafficPolicy::Local, Some(n)),
        Some((_, n)) => {
            ctx.expected(n, &sp.f(key), "Cluster or Local");
            (TrafficPolicy::Cluster, None)
        }
    };
    let (internal_traffic_policy, _) = traffic(ctx, "internalTrafficPolicy");
    let (external_traffic_policy, _) = traffic(ctx, "externalTrafficPolicy");
    if let Some(n) = get(spec, "externalTrafficPolicy")
        && matches!(service_type, ServiceType::ClusterIp | ServiceType::ExternalName)
    {
        ctx.error(
            &n.span,
            &sp.f("externalTrafficPolicy"),
            format!("may only be set when type is NodePort or LoadBalancer, not {type_name}"),
        );
    }

    if let Some(sel) = get(spec, "selector") {
        let selector = ctx.labels(sel, &sp.f("selector"));
        if ports.iter().any(|p| matches!(p.target_port, PortRef::Name(_))) {
            extra.selector = Some(selector);
        }
    }

    // LoadBalancer: ingress IPs the load balancer delivers to this node as
    // themselves (ipMode Proxy: it proxies to node ports itself, so skip them),
    // the allowed client ranges, the health-check node port.
    let mut lb_ingress_ips = Vec::new();
    let status_path = root_path.f("status");
    if let Some(status) = ctx.map(root, "status", &root_path) {
        let lb_path = status_path.f("loadBalancer");
        if let Some(lb) = ctx.map(status, "loadBalancer", &status_path) {
            let ing_path = lb_path.f("ingress");
            for (i, ing) in ctx.seq(lb, "ingress", &lb_path).iter().enumerate() {
                let ip_mode = match ctx.str_field(ing, "ipMode", &ing_path.i(i)) {
                    None | Some(("VIP", _)) => "VIP",
                    Some(("Proxy", _)) => "Proxy",
                    Some((_, n)) => {
                        ctx.expected(n, &ing_path.i(i).f("ipMode"), "VIP or Proxy");
                        "VIP"
                    }
                };
                if let Some(n) = get(ing, "ip")
                    && let Some(ip) = ctx.ip_field(n, &ing_path.i(i).f("ip"))
                    && ip_mode == "VIP"
                {
                    lb_ingress_ips.push(ip);
                }
            }
        }
    }
    let mut lb_source_ranges = Vec::new();
    let ranges_path = sp.f("loadBalancerSourceRanges");
    // The API server forbids source ranges on other types rather than
    // ignoring them, so a file that sets them is not one it would accept.
    if let Some(n) = get(spec, "loadBalancerSourceRanges")
        && service_type != ServiceType::LoadBalancer
        && matches!(&n.value, Value::Seq(items) if !items.is_empty())
    {
        ctx.error(&n.span, &ranges_path, format!("may only be set when type is LoadBalancer, not {type_name}"));
    }
    for (i, n) in ctx.seq(spec, "loadBalancerSourceRanges", &sp).iter().enumerate() {
        let Some(text) = ctx.string(n, &ranges_path.i(i)) else { continue };
        match source_range(text.trim()) {
            Ok(Some(range)) => lb_source_ranges.push(range),
            Ok(None) => ctx.warning(
                &n.span,
                &ranges_path.i(i),
                format!("IPv6 range {text} is not enforced: this data plane handles IPv4 only"),
            ),
            Err(()) => ctx.expected(n, &ranges_path.i(i), "a CIDR such as 198.51.100.0/24"),
        }
    }
    let mut health_check_node_port = None;
    if let Some(n) = get(spec, "healthCheckNodePort") {
        let path = sp.f("healthCheckNodePort");
        match n.value {
            Value::Int(0) => {}
            Value::Int(v) if (1..=65535).contains(&v) => {
                if service_type != ServiceType::LoadBalancer || external_traffic_policy != TrafficPolicy::Local {
                    ctx.error(
                        &n.span,
                        &path,
                        "may only be set for type LoadBalancer with externalTrafficPolicy: Local",
                    );
                } else if ports.iter().any(|p: &ServicePort| p.node_port.is_some_and(|np| i64::from(np.get()) == v)) {
                    ctx.error(&n.span, &path, format!("{v} is also a nodePort of this service"));
                } else {
                    health_check_node_port = NonZeroU16::new(v as u16);
                }
            }
            _ => ctx.expected(n, &path, "a port 1-65535"),
        }
    }

    extra.cluster_ip =
        ["clusterIP", "clusterIPs"].into_iter().find_map(|field| get(spec, field).map(|n| (field, n.span.clone())));
    let svc = Service {
        meta,
        service_type,
        cluster_ips: if headless { Vec::new() } else { cluster_ips },
        external_ips,
        ports,
        affinity_timeout,
        internal_traffic_policy,
        external_traffic_policy,
        lb_ingress_ips,
        lb_source_ranges,
        health_check_node_port,
    };
    (svc, extra)
}

/// A loadBalancerSourceRanges entry: `a.b.c.d/n` (host bits allowed and
/// cleared, as the API server's sloppy CIDR parsing) or a bare address.
/// Ok(None): an IPv6 range.
fn source_range(text: &str) -> Result<Option<(std::net::Ipv4Addr, u8)>, ()> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    match addr.parse::<IpAddr>().map_err(|_| ())? {
        IpAddr::V6(_) => {
            let len: u8 = len.map_or(Ok(128), |l| l.parse().map_err(|_| ()))?;
            if len > 128 { Err(()) } else { Ok(None) }
        }
        IpAddr::V4(v4) => {
            let len: u8 = len.map_or(Ok(32), |l| l.parse().map_err(|_| ()))?;
            if len > 32 {
                return Err(());
            }
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            Ok(Some((std::net::Ipv4Addr::from(u32::from(v4) & mask), len)))
        }
    }
}

pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn endpoint_slice(root: &Node, metadata: &Node, meta: ObjectMeta, ctx: &mut Ctx<'_>) -> Option<(EndpointSlice, Extra)> {
    let rp = Path::Root;
    let mut extra = Extra::default();
    let address_type = match ctx.str_field(root, "addressType", &rp) {
        Some(("IPv4", _)) => Some(AddressType::IPv4),
        Some(("IPv6", _)) => Some(AddressType::IPv6),
        Some(("FQDN", _)) => Some(AddressType::Fqdn),
        Some((_, n)) => {
            ctx.expected(n, &rp.f("addressType"), "IPv4, IPv6 or FQDN");
            None
        }
        None => {
            if get(root, "addressType").is_none() {
                ctx.missing(root, &rp.f("addressType"), "IPv4, IPv6 or FQDN");
            }
            None
        }
    };
    let eps_path = rp.f("endpoints");
    let ep_nodes = ctx.seq(root, "endpoints", &rp);
    if ep_nodes.len() > 1000 {
        ctx.error(
            &ep_nodes[1000].span,
            &eps_path,
            format!("expected at most 1000 endpoints, found {}", ep_nodes.len()),
        );
    }
    let mut endpoints = Vec::with_capacity(ep_nodes.len());
    for (i, en) in ep_nodes.iter().enumerate() {
        let p = eps_path.i(i);
        if en.as_map().is_none() {
            ctx.expected(en, &p, "a mapping with addresses and conditions");
            continue;
        }
        ctx.known_fields(
            en,
            &p,
            &["addresses", "conditions", "hostname", "targetRef", "nodeName", "zone", "hints", "deprecatedTopology"],
        );
        let ap = p.f("addresses");
        let addr_nodes = ctx.seq(en, "addresses", &p);
        if addr_nodes.is_empty() {
            let at = get(en, "addresses").unwrap_or(en);
            ctx.error(&at.span, &ap, "expected at least one address");
        } else if addr_nodes.len() > 100 {
            ctx.error(
                &addr_nodes[100].span,
                &ap,
                format!("expected at most 100 addresses, found {}", addr_nodes.len()),
            );
        }
        let mut addresses = Vec::with_capacity(addr_nodes.len());
        for (j, an) in addr_nodes.iter().enumerate() {
            let Some(s) = ctx.string(an, &ap.i(j)) else {
                continue;
            };
            let parsed = match address_type {
                Some(AddressType::IPv4) => check::ipv4(s).map(IpAddr::V4).map(Some),
                Some(AddressType::IPv6) => check::ipv6(s).map(IpAddr::V6).map(Some),
                Some(AddressType::Fqdn) => check::dns1123_subdomain(s).map(|()| None),
                None => check::ip(s).map(Some),
            };
            match parsed {
                Ok(Some(ip)) => match check::endpoint_ip_problem(ip) {
                    Some(why) => ctx.error(&an.span, &ap.i(j), format!("{s} {why}")),
                    None => addresses.push(ip),
                },
                Ok(None) => {}
                Err(what) => ctx.expected(an, &ap.i(j), what),
            }
        }
        let cp = p.f("conditions");
        let (ready, serving, terminating) = match ctx.map(en, "conditions", &p) {
            Some(c) => {
                ctx.known_fields(c, &cp, &["ready", "serving", "terminating"]);
                let ready = ctx.bool_field(c, "ready", &cp);
                let serving = ctx.bool_field(c, "serving", &cp);
                let terminating = ctx.bool_field(c, "terminating", &cp);
                (ready, serving, terminating)
            }
            None => (None, None, None),
        };
        let ready = ready.unwrap_or(true);
        let node_name = match ctx.str_field(en, "nodeName", &p) {
            Some((s, n)) => {
                ctx.check_name(n, &p.f("nodeName"), check::dns1123_subdomain);
                Some(s.to_string())
            }
            None => None,
        };
        endpoints.push(Endpoint {
            addresses,
            ready,
            serving: serving.unwrap_or(ready),
            terminating: terminating.unwrap_or(false),
            node_name,
        });
    }
    let ports_path = rp.f("ports");
    let port_nodes = ctx.seq(root, "ports", &rp);
    if port_nodes.len() > 100 {
        ctx.error(
            &port_nodes[100].span,
            &ports_path,
            format!("expected at most 100 ports, found {}", port_nodes.len()),
        );
    }
    let mut ports = Vec::with_capacity(port_nodes.len());
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, pn) in port_nodes.iter().enumerate() {
        let p = ports_path.i(i);
        if pn.as_map().is_none() {
            ctx.expected(pn, &p, "a mapping with name, protocol and port");
            continue;
        }
        ctx.known_fields(pn, &p, &["name", "protocol", "port", "appProtocol"]);
        let name = match ctx.str_field(pn, "name", &p) {
            Some((s, n)) => {
                if !s.is_empty() {
                    ctx.check_name(n, &p.f("name"), check::dns1123_label);
                }
                if let Some(first) = seen.insert(s, i) {
                    ctx.error(&n.span, &p.f("name"), format!("duplicate port name {s:?} (also ports[{first}])"));
                }
                s
            }
            None => {
                if let Some(first) = seen.insert("", i) {
                    ctx.error(&pn.span, &p.f("name"), format!("duplicate unnamed port (also ports[{first}])"));
                }
                ""
            }
        };
        let protocol = ctx.protocol(pn, &p);
        let port = get(pn, "port").and_then(|n| ctx.port_number(n, &p.f("port")));
        ports.push(EndpointPort { name: name.to_string(), protocol, port });
    }
    let label_node = get(metadata, "labels").and_then(|l| get(l, SERVICE_NAME_LABEL));
    let service_name = meta.labels.get(SERVICE_NAME_LABEL).cloned();
    let Some(service_name) = service_name else {
        if label_node.is_none() {
            ctx.warning(
                &meta.origin,
                &Path::Root.f("metadata").f("labels").f(SERVICE_NAME_LABEL),
                "missing: this EndpointSlice belongs to no service and is ignored (label it kubernetes.io/service-name: SERVICE)",
            );
        }
        return None;
    };
    extra.service_label_span = label_node.map(|n| n.span.clone());
    let address_type = address_type?;
    Some((EndpointSlice { meta, service_name, address_type, endpoints, ports }, extra))
}

fn pod(root: &Node, meta: ObjectMeta, ctx: &mut Ctx<'_>) -> Pod {
    let rp = Path::Root;
    let sp = rp.f("spec");
    let empty = Node { span: root.span.clone(), value: Value::Map(Vec::new()) };
    let spec = ctx.map(root, "spec", &rp).unwrap_or(&empty);
    let node_name = match ctx.str_field(spec, "nodeName", &sp) {
        Some((s, n)) => {
            ctx.check_name(n, &sp.f("nodeName"), check::dns1123_subdomain);
            Some(s.to_string())
        }
        None => None,
    };
    let host_network = ctx.bool_field(spec, "hostNetwork", &sp).unwrap_or(false);
    let mut container_ports = Vec::new();
    let mut names: HashMap<&str, (usize, usize)> = HashMap::new();
    let cp = sp.f("containers");
    for (ci, c) in ctx.seq(spec, "containers", &sp).iter().enumerate() {
        let p = cp.i(ci);
        if c.as_map().is_none() {
            ctx.expected(c, &p, "a container (a mapping)");
            continue;
        }
        let pp = p.f("ports");
        for (pi, port) in ctx.seq(c, "ports", &p).iter().enumerate() {
            let p = pp.i(pi);
            if port.as_map().is_none() {
                ctx.expected(port, &p, "a mapping with containerPort, name and protocol");
                continue;
            }
            ctx.known_fields(port, &p, &["name", "containerPort", "protocol", "hostPort", "hostIP"]);
            let name = match ctx.str_field(port, "name", &p) {
                Some((s, n)) => {
                    if ctx.check_name(n, &p.f("name"), check::port_name)
                        && let Some((fc, fp)) = names.insert(s, (ci, pi))
                    {
                        ctx.error(
                            &n.span,
                            &p.f("name"),
                            format!("duplicate port name {s:?} (also spec.containers[{fc}].ports[{fp}])"),
                        );
                    }
                    Some(s.to_string())
                }
                None => None,
            };
            let protocol = ctx.protocol(port, &p);
            if let Some(number) = ctx.required_port(port, "containerPort", &p) {
                container_ports.push(ContainerPort { name, port: number, protocol });
            }
        }
    }
    let st = rp.f("status");
    let mut ips = Vec::new();
    if let Some(status) = ctx.map(root, "status", &rp) {
        let pod_ip = match get(status, "podIP") {
            Some(n) => ctx.ip_field(n, &st.f("podIP")),
            None => None,
        };
        let ips_path = st.f("podIPs");
        let ip_nodes = ctx.seq(status, "podIPs", &st);
        for (i, n) in ip_nodes.iter().enumerate() {
            let p = ips_path.i(i);
            let Some(ipn) = (if n.as_map().is_some() { get(n, "ip") } else { None }) else {
                ctx.expected(n, &p, "a mapping with ip");
                continue;
            };
            if let Some(ip) = ctx.ip_field(ipn, &p.f("ip")) {
                if ips.iter().any(|o: &IpAddr| o.is_ipv4() == ip.is_ipv4()) {
                    ctx.expected(ipn, &p.f("ip"), "at most one address per IP family");
                } else {
                    ips.push(ip);
                }
            }
        }
        if let (Some(pod_ip), Some(first)) = (pod_ip, ips.first())
            && *first != pod_ip
        {
            let n = ip_nodes.first().and_then(|n| get(n, "ip")).unwrap_or(status);
            ctx.error(
                &n.span,
                &ips_path.i(0).f("ip"),
                format!("expected the same address as status.podIP ({pod_ip}), found {first}"),
            );
        }
        if ips.is_empty() {
            ips.extend(pod_ip);
        }
    }
    Pod { meta, node_name, ips, host_network, container_ports }
}

fn network_policy(root: &Node, meta: ObjectMeta, ctx: &mut Ctx<'_>) -> NetworkPolicy {
    let rp = Path::Root;
    let sp = rp.f("spec");
    let empty = Node { span: root.span.clone(), value: Value::Map(Vec::new()) };
    let spec = ctx.map(root, "spec", &rp).unwrap_or(&empty);
    ctx.known_fields(spec, &sp, &["podSelector", "policyTypes", "ingress", "egress"]);
    let pod_selector = match get(spec, "podSelector") {
        Some(n) => ctx.selector(n, &sp.f("podSelector")),
        None => LabelSelector::default(),
    };
    let ingress = rules(ctx, spec, "ingress", "from", &sp);
    let egress = rules(ctx, spec, "egress", "to", &sp);
    let types_path = sp.f("policyTypes");
    let type_nodes = ctx.seq(spec, "policyTypes", &sp);
    let (mut has_ingress, mut has_egress) = (false, false);
    for (i, n) in type_nodes.iter().enumerate() {
        let p = types_path.i(i);
        let slot = match n.as_str() {
            Some("Ingress") => &mut has_ingress,
            Some("Egress") => &mut has_egress,
            _ => {
                ctx.expected(n, &p, "Ingress or Egress");
                continue;
            }
        };
        if *slot {
            ctx.error(&n.span, &p, format!("duplicate policy type {}", n.describe()));
        }
        *slot = true;
    }
    let (ingress_isolation, egress_isolation) = if type_nodes.is_empty() {
        // Upstream defaulting: Ingress always, Egress when egress rules exist.
        (true, !egress.is_empty())
    } else {
        (has_ingress, has_egress)
    };
    NetworkPolicy { meta, pod_selector, ingress_isolation, egress_isolation, ingress, egress }
}

fn rules(ctx: &mut Ctx<'_>, spec: &Node, key: &str, peers_key: &str, sp: &Path<'_>) -> Vec<PolicyRule> {
    let rules_path = sp.f(key);
    let mut out = Vec::new();
    for (i, rn) in ctx.seq(spec, key, sp).iter().enumerate() {
        let p = rules_path.i(i);
        if rn.as_map().is_none() {
            ctx.expected(rn, &p, &format!("a rule (a mapping with {peers_key} and ports)"));
            continue;
        }
        ctx.known_fields(rn, &p, &[peers_key, "ports"]);
        let mut rule = PolicyRule::default();
        let peers_path = p.f(peers_key);
        for (j, peer) in ctx.seq(rn, peers_key, &p).iter().enumerate() {
            if let Some(peer) = policy_peer(ctx, peer, &peers_path.i(j)) {
                rule.peers.push(peer);
            }
        }
        let ports_path = p.f("ports");
        for (j, port) in ctx.seq(rn, "ports", &p).iter().enumerate() {
            if let Some(port) = policy_port(ctx, port, &ports_path.i(j)) {
                rule.ports.push(port);
            }
        }
        out.push(rule);
    }
    out
}

fn policy_peer(ctx: &mut Ctx<'_>, node: &Node, p: &Path<'_>) -> Option<PolicyPeer> {
    if node.as_map().is_none() {
        ctx.expected(node, p, "a peer (a mapping with podSelector, namespaceSelector or ipBlock)");
        return None;
    }
    ctx.known_fields(node, p, &["podSelector", "namespaceSelector", "ipBlock"]);
    let pod_sel = get(node, "podSelector");
    let ns_sel = get(node, "namespaceSelector");
    if let Some(block) = get(node, "ipBlock") {
        let peer = ip_block(ctx, block, &p.f("ipBlock"));
        if pod_sel.is_some() || ns_sel.is_some() {
            ctx.error(
                &block.span,
                &p.f("ipBlock"),
                "may not be combined with podSelector or namespaceSelector in one peer",
            );
            return None;
        }
        return peer;
    }
    if pod_sel.is_none() && ns_sel.is_none() {
        ctx.error(
            &node.span,
            p,
            "expected a peer: podSelector, namespaceSelector or ipBlock (an empty peer is not allowed)",
        );
        return None;
    }
    let pod_selector = pod_sel.map(|n| ctx.selector(n, &p.f("podSelector")));
    let namespace_selector = ns_sel.map(|n| ctx.selector(n, &p.f("namespaceSelector")));
    Some(PolicyPeer::Pods { pod_selector, namespace_selector })
}

fn ip_block(ctx: &mut Ctx<'_>, block: &Node, p: &Path<'_>) -> Option<PolicyPeer> {
    if block.as_map().is_none() {
        ctx.expected(block, p, "a mapping with cidr and except");
        return None;
    }
    ctx.known_fields(block, p, &["cidr", "except"]);
    let cidr = match ctx.str_field(block, "cidr", p) {
        Some((s, n)) => parse_cidr(ctx, s, n, &p.f("cidr")),
        None => {
            if get(block, "cidr").is_none() {
                ctx.missing(block, &p.f("cidr"), "a CIDR");
            }
            None
        }
    };
    let ep = p.f("except");
    let mut except = Vec::new();
    for (i, n) in ctx.seq(block, "except", p).iter().enumerate() {
        let Some(s) = ctx.string(n, &ep.i(i)) else {
            continue;
        };
        let Some(net) = parse_cidr(ctx, s, n, &ep.i(i)) else {
            continue;
        };
        if let Some(outer) = cidr
            && !check::strictly_inside(&net, &outer)
        {
            ctx.expected(n, &ep.i(i), &format!("a CIDR strictly inside cidr {}/{}", outer.addr, outer.prefix));
            continue;
        }
        except.push(net);
    }
    cidr.map(|cidr| PolicyPeer::IpBlock { cidr, except })
}

fn parse_cidr(ctx: &mut Ctx<'_>, s: &str, node: &Node, p: &Path<'_>) -> Option<IpNet> {
    match check::cidr(s) {
        Ok((net, host_bits)) => {
            if host_bits {
                ctx.warning(&node.span, p, format!("{s:?} has host bits set; it means {}/{}", net.addr, net.prefix));
            }
            Some(net)
        }
        Err(what) => {
            ctx.expected(node, p, what);
            None
        }
    }
}

fn policy_port(ctx: &mut Ctx<'_>, node: &Node, p: &Path<'_>) -> Option<PolicyPort> {
    if node.as_map().is_none() {
        ctx.expected(node, p, "a mapping with protocol, port and endPort");
        return None;
    }
    ctx.known_fields(node, p, &["protocol", "port", "endPort"]);
    let protocol = ctx.protocol(node, p);
    let port_node = get(node, "port");
    let port = match port_node {
        Some(n) => Some(ctx.port_ref(n, &p.f("port"))?),
        None => None,
    };
    let mut end_port = None;
    if let Some(en) = get(node, "endPort") {
        let ep = p.f("endPort");
        let end = ctx.port_number(en, &ep)?;
        match &port {
            None => ctx.error(&en.span, &ep, "may not be set without a numeric port"),
            Some(PortRef::Name(name)) => {
                ctx.error(&en.span, &ep, format!("may not be set with a named port ({name:?}); use a number"))
            }
            Some(PortRef::Number(start)) if end < *start => {
                ctx.expected(en, &ep, &format!("an end port >= port ({start})"));
            }
            Some(PortRef::Number(_)) => end_port = Some(end),
        }
    }
    Some(PolicyPort { protocol, port, end_port })
}

#[cfg(test)]
mod near_miss_tests {
    use super::{edit_distance, near_miss_kind};

    #[test]
    fn typos_of_read_kinds_get_a_hint_and_other_kinds_do_not() {
        assert_eq!(edit_distance("serivce", "service"), 2);
        assert_eq!(edit_distance("", "pod"), 3);
        let hint = |v: &str, k: &str| near_miss_kind(v, k);
        assert_eq!(hint("v1", "Serivce").as_deref(), Some("did you mean kind Service?"));
        assert_eq!(hint("v1", "service").as_deref(), Some("did you mean kind Service?"));
        assert_eq!(hint("v1", "Pods").as_deref(), Some("did you mean kind Pod?"));
        assert_eq!(hint("discovery.k8s.io/v1", "EndpointSlices").as_deref(), Some("did you mean kind EndpointSlice?"));
        assert_eq!(
            hint("networking.k8s.io/v1", "NetworkPolicies").as_deref(),
            Some("did you mean kind NetworkPolicy?")
        );
        assert_eq!(
            hint("v1", "EndpointSlice").as_deref(),
            Some("did you mean apiVersion discovery.k8s.io/v1 for EndpointSlice?")
        );
        for (v, k) in [
            ("v1", "Node"),
            ("batch/v1", "Job"),
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("apps/v1", "Deployment"),
            ("serving.knative.dev/v1", "Service"),
            ("example.com/v1", "Pods"),
            ("v1", "PodList"),
            ("v1", "Widget"),
        ] {
            assert_eq!(hint(v, k), None, "{v} {k}");
        }
    }
}
