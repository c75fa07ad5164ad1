//! Parsed documents → validated model, collecting every diagnostic.
//!
//! [`load_snapshot`] is pure (the snapshot comes from `source`): it cuts big
//! multi-document files at column-0 `---` lines, parses and converts the
//! pieces on a few threads (each YAML tree is dropped as soon as its objects
//! are built, so memory stays bounded), then runs the cross-object rules.
//!
//! Bounds (docs/ARCHITECTURE.md, "Memory and time"): the parser's byte
//! budgets ([`yaml::Budget`]), at most [`MAX_DIAGNOSTICS`] diagnostics kept,
//! and a cancel flag looked at while parsing.

mod check;
mod convert;
mod cross;
mod types;

use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub use types::*;

use crate::diag::{self, Diagnostic, Span};
use crate::parse::yaml::{self, Node};
use crate::source::{self, LoadLimits, Snapshot, SourceError};
use convert::{Objects, Path};

/// A validated directory and everything found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// What loaded. Only meaningful as a whole when `!has_errors()`.
    pub cluster: Cluster,
    /// Errors and warnings, sorted by file, line and column.
    pub diagnostics: Vec<Diagnostic>,
    /// Number of files read.
    pub files: usize,
    pub content_hash: u64,
    pub version: Option<String>,
    /// The load was cancelled ([`load_dirs_cancellable`]): what it holds is
    /// partial (and carries an error, so it is never applied).
    pub cancelled: bool,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Most diagnostics one load keeps; the rest are counted in a last one.
pub const MAX_DIAGNOSTICS: usize = 10_000;

/// Reads `dirs` and validates everything in them.
pub fn load_dirs(dirs: &[PathBuf], limits: &LoadLimits) -> Result<Loaded, SourceError> {
    load_dirs_cancellable(dirs, limits, &Arc::default())
}

/// [`load_dirs`] that stops soon (within milliseconds) once `cancel` is set;
/// the result then has `cancelled` set.
pub fn load_dirs_cancellable(
    dirs: &[PathBuf],
    limits: &LoadLimits,
    cancel: &Arc<AtomicBool>,
) -> Result<Loaded, SourceError> {
    let snapshot = source::read_snapshot(dirs, limits)?;
    Ok(load_snapshot_cancellable(snapshot, limits, cancel))
}

/// Parses and validates an already-read snapshot.
pub fn load_snapshot(snapshot: Snapshot, limits: &LoadLimits) -> Loaded {
    load_snapshot_cancellable(snapshot, limits, &Arc::default())
}

/// [`load_snapshot`] that stops soon once `cancel` is set.
pub fn load_snapshot_cancellable(snapshot: Snapshot, limits: &LoadLimits, cancel: &Arc<AtomicBool>) -> Loaded {
    let Snapshot { files, problems, content_hash, version, .. } = snapshot;
    let mut diagnostics = problems;
    let yaml_limits = yaml::Limits { max_depth: limits.max_depth, max_nodes: limits.max_nodes };
    let input_bytes: usize = files.iter().map(|f| f.text.len()).sum();
    let budget = yaml::Budget::new(input_bytes, cancel.clone());
    let kept = AtomicUsize::new(0);
    let file_count = files.len();
    // Each unit holds its file's text through an Arc: the text is freed as
    // soon as the last piece of that file is parsed, not at the end.
    let mut units: Vec<Unit> = Vec::new();
    for f in files {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let path = f.path;
        let text = Arc::new(f.text);
        for (range, first_line) in split_text(&text) {
            units.push(Unit { path: path.clone(), text: text.clone(), range, first_line });
        }
    }
    let threads = match limits.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()).min(4),
        n => n,
    }
    .min(units.len())
    .max(1);
    let slots: Vec<Mutex<Option<Unit>>> = units.into_iter().map(|u| Mutex::new(Some(u))).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(i) else { break };
            if budget.cancelled() {
                break;
            }
            let unit = slot.lock().ok().and_then(|mut u| u.take());
            if let Some(unit) = unit {
                done.push((i, run_unit(&unit, &yaml_limits, &budget, &kept)));
            }
        }
        done
    };
    let mut results: Vec<(usize, UnitOutput)> = if threads == 1 {
        work()
    } else {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
            let mut all = Vec::new();
            for w in workers {
                match w.join() {
                    Ok(done) => all.extend(done),
                    // A worker cannot panic on input (the parser and converter
                    // return errors), but do not lose the report if one did.
                    Err(_) => diagnostics.push(Diagnostic::error(
                        Span::default(),
                        None,
                        "",
                        "internal error: a loader thread panicked",
                    )),
                }
            }
            all
        })
    };
    results.sort_by_key(|(i, _)| *i);
    let mut objects = Objects::default();
    let mut not_kept = (0, false);
    for (_, out) in results {
        objects.append(out.objects);
        diagnostics.extend(out.diags);
        not_kept.0 += out.not_kept;
        not_kept.1 |= out.not_kept_error;
    }
    let cancelled = cancel.load(Ordering::Relaxed);
    let cluster = if cancelled {
        diagnostics.push(Diagnostic::error(
            Span::default(),
            None,
            "",
            "loading was cancelled (stopping): nothing of it is used",
        ));
        Cluster::default()
    } else {
        cross::assemble(objects, limits.node_port_range, &mut diagnostics)
    };
    diag::sort(&mut diagnostics);
    cap_diagnostics(&mut diagnostics, not_kept);
    Loaded { cluster, diagnostics, files: file_count, content_hash, version, cancelled }
}

/// Keeps the first [`MAX_DIAGNOSTICS`] of sorted `diags` and says how many
/// more there were (`not_kept.0` were counted but never stored, errors among
/// them if `not_kept.1`). The last one is an error if any left out was, so
/// the load's verdict never changes.
fn cap_diagnostics(diags: &mut Vec<Diagnostic>, not_kept: (usize, bool)) {
    if diags.len() <= MAX_DIAGNOSTICS && not_kept.0 == 0 {
        return;
    }
    let cut = diags.len().min(MAX_DIAGNOSTICS);
    let more = diags.len() - cut + not_kept.0;
    let any_error = not_kept.1 || diags[cut..].iter().any(Diagnostic::is_error);
    diags.truncate(cut);
    diags.shrink_to_fit();
    let span = diags.last().map(|d| d.span.clone()).unwrap_or_default();
    let message = format!("{more} more diagnostic(s) not shown (at most {MAX_DIAGNOSTICS} are kept)");
    diags.push(if any_error {
        Diagnostic::error(span, None, "", message)
    } else {
        Diagnostic::warning(span, None, "", message)
    });
}

/// One line: what the cluster holds.
pub fn summary(c: &Cluster) -> String {
    let ports: usize = c.services.iter().map(|s| s.ports.len()).sum();
    let endpoints: usize = c.endpoint_slices.iter().map(|s| s.endpoints.len()).sum();
    let mut out = String::new();
    let _ = write!(
        out,
        "{} services ({} ports), {} endpoint slices ({} endpoints), {} pods, {} namespaces, {} network policies",
        c.services.len(),
        ports,
        c.endpoint_slices.len(),
        endpoints,
        c.pods.len(),
        c.namespaces.len(),
        c.policies.len()
    );
    out
}

/// A piece of a file that parses on its own.
struct Unit {
    path: Arc<str>,
    text: Arc<String>,
    range: Range<usize>,
    first_line: u32,
}

/// Pieces bigger than this are cut at the next document start.
const CHUNK: usize = 1 << 20;

/// Cuts a big multi-document YAML text before column-0 `---` lines. Such a
/// line always starts a new document (YAML forbids it inside any scalar), so
/// each piece parses exactly as it would in the whole file. Texts with
/// directives (`%YAML`) are left whole. Returns (byte range, lines before it).
fn split_text(text: &str) -> Vec<(Range<usize>, u32)> {
    if text.len() <= CHUNK || text.starts_with('%') || text.contains("\n%") {
        return vec![(0..text.len(), 0)];
    }
    let bytes = text.as_bytes();
    let mut cuts: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    let mut search = CHUNK;
    while search < bytes.len() {
        match find_doc_start(bytes, search) {
            Some(at) => {
                cuts.push(start..at);
                start = at;
                search = at + CHUNK;
            }
            None => break,
        }
    }
    cuts.push(start..bytes.len());
    let mut line = 0u32;
    let mut out = Vec::with_capacity(cuts.len());
    for r in cuts {
        let newlines = bytes[r.clone()].iter().filter(|&&b| b == b'\n').count();
        out.push((r, line));
        line = line.saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
    }
    out
}

/// Index of the first `---` at a line start at or after `from`, followed by
/// whitespace or the end of the text.
fn find_doc_start(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < bytes.len() {
        let nl = bytes[i..].iter().position(|&b| b == b'\n')? + i;
        let at = nl + 1;
        if bytes[at..].starts_with(b"---") {
            match bytes.get(at + 3) {
                None | Some(b' ' | b'\t' | b'\r' | b'\n') => return Some(at),
                _ => {}
            }
        }
        i = at;
    }
    None
}

#[derive(Default)]
struct UnitOutput {
    objects: Objects,
    diags: Vec<Diagnostic>,
    /// Diagnostics counted but not stored (the load's limit was reached),
    /// and whether any of them was an error.
    not_kept: usize,
    not_kept_error: bool,
}

fn run_unit(unit: &Unit, limits: &yaml::Limits, budget: &yaml::Budget, kept: &AtomicUsize) -> UnitOutput {
    // A private copy of the name: threads sharing one Arc would contend on its
    // reference count for every node.
    let file: Arc<str> = Arc::from(&*unit.path);
    let mut sink = LoadSink { out: UnitOutput::default(), pending: UnitOutput::default(), kept };
    let text = unit.text.get(unit.range.clone()).unwrap_or_default();
    yaml::parse_stream(&file, text, unit.first_line, limits, budget, &mut sink);
    sink.out
}

/// Diagnostics stored in a whole load, over all threads, before the rest are
/// only counted (the first [`MAX_DIAGNOSTICS`] by position are shown; a
/// margin keeps that choice independent of thread timing in most floods).
const STORED_DIAGNOSTICS: usize = 4 * MAX_DIAGNOSTICS;

/// Converts documents as the parser finishes them. `List` items are converted
/// one by one and kept aside until the document turns out to be a List.
struct LoadSink<'k> {
    out: UnitOutput,
    pending: UnitOutput,
    /// Diagnostics stored by every unit of the load.
    kept: &'k AtomicUsize,
}

impl LoadSink<'_> {
    /// Stores the diagnostics `out` gained from `from` on while the load's
    /// limit allows; counts the rest.
    fn limit(kept: &AtomicUsize, out: &mut UnitOutput, from: usize) {
        let new = out.diags.len().saturating_sub(from);
        if new == 0 {
            return;
        }
        let before = kept.fetch_add(new, Ordering::Relaxed);
        let room = STORED_DIAGNOSTICS.saturating_sub(before).min(new);
        if room < new {
            out.not_kept_error |= out.diags[from + room..].iter().any(Diagnostic::is_error);
            out.diags.truncate(from + room);
            out.not_kept += new - room;
        }
    }
}

impl yaml::Sink for LoadSink<'_> {
    fn list_item(&mut self, index: usize, item: Node) -> Option<Node> {
        let base = Path::Root;
        let items = base.f("items");
        let from = self.pending.diags.len();
        convert::convert(&item, &items.i(index), &mut self.pending.objects, &mut self.pending.diags, 1);
        Self::limit(self.kept, &mut self.pending, from);
        None
    }

    fn document(&mut self, root: Option<Node>, _start: Span) {
        let pending = std::mem::take(&mut self.pending);
        // An empty document (`---` with only comments) is not an error.
        let Some(root) = root.filter(|r| !r.is_null()) else {
            return;
        };
        if convert::is_list(&root) {
            self.out.objects.append(pending.objects);
            self.out.diags.extend(pending.diags);
            self.out.not_kept += pending.not_kept;
            self.out.not_kept_error |= pending.not_kept_error;
        }
        let from = self.out.diags.len();
        convert::convert(&root, &Path::Root, &mut self.out.objects, &mut self.out.diags, 0);
        Self::limit(self.kept, &mut self.out, from);
    }

    fn error(&mut self, diag: Diagnostic) {
        let from = self.out.diags.len();
        self.out.diags.push(diag);
        Self::limit(self.kept, &mut self.out, from);
    }

    fn abandon(&mut self) {
        self.pending = UnitOutput::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    fn load(text: &str) -> Loaded {
        let snapshot = Snapshot {
            files: vec![SourceFile { path: Arc::from("t.yaml"), text: text.to_string() }],
            ..Snapshot::default()
        };
        load_snapshot(snapshot, &LoadLimits::default())
    }

    fn rendered(text: &str) -> Vec<String> {
        load(text).diagnostics.iter().map(ToString::to_string).collect()
    }

    /// The document's diagnostics are exactly `want`.
    #[track_caller]
    fn exactly(text: &str, want: &[&str]) {
        assert_eq!(rendered(text), want, "for:\n{text}");
    }

    const SVC: &str =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: demo\nspec:\n  clusterIP: 198.19.0.10\n";

    fn svc(rest: &str) -> String {
        format!("{SVC}{rest}")
    }

    #[test]
    fn load_balancer_fields_load() {
        let lb = "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 32000\n  \
                  loadBalancerSourceRanges: [198.19.250.0/24, 10.1.2.3/8, 192.0.2.7, '2001:db8::/32']\n  \
                  ports: [{port: 80, nodePort: 30080}]\nstatus:\n  loadBalancer:\n    ingress:\n    \
                  - {ip: 198.19.100.10}\n    - {ip: 198.19.100.12, ipMode: Proxy}\n    - {hostname: lb.example}\n";
        let l = load(&svc(lb));
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        let s = &l.cluster.services[0];
        assert_eq!(s.lb_ingress_ips, ["198.19.100.10".parse::<IpAddr>().expect("ip")]);
        let v4 = |a: &str| a.parse::<std::net::Ipv4Addr>().expect("ip");
        assert_eq!(s.lb_source_ranges, [(v4("198.19.250.0"), 24), (v4("10.0.0.0"), 8), (v4("192.0.2.7"), 32)]);
        assert_eq!(s.health_check_node_port.map(|p| p.get()), Some(32000));
        assert!(l.diagnostics.iter().any(|d| d.to_string().contains("IPv6 range")), "{:?}", l.diagnostics);
    }

    #[test]
    fn load_balancer_field_errors() {
        let text = svc(
            "  type: LoadBalancer\n  healthCheckNodePort: 32000\n  loadBalancerSourceRanges: [nonsense]\n  \
             ports: [{port: 80, nodePort: 30080}]\nstatus:\n  loadBalancer:\n    ingress: [{ip: 300.1.1.1}, {ip: 198.19.0.1, ipMode: Fast}]\n",
        );
        let got = rendered(&text);
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(
            got[0].contains("t.yaml:9:24: Service demo/web: spec.healthCheckNodePort: may only be set"),
            "{got:#?}"
        );
        assert!(
            got[1].contains("t.yaml:10:30: Service demo/web: spec.loadBalancerSourceRanges[0]: expected a CIDR"),
            "{got:#?}"
        );
        assert!(got[2].contains("status.loadBalancer.ingress[0].ip: expected"), "{got:#?}");
        assert!(got[3].contains("status.loadBalancer.ingress[1].ipMode: expected VIP or Proxy"), "{got:#?}");
    }

    #[test]
    fn valid_service_loads() {
        let l = load(&svc("  ports:\n  - port: 80\n    targetPort: http\n"));
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let s = &l.cluster.services[0];
        assert_eq!(s.ports[0].target_port, PortRef::Name("http".into()));
        assert_eq!(s.cluster_ips, ["198.19.0.10".parse::<IpAddr>().expect("ip")]);
        assert_eq!(s.meta.origin.line, 1);
        assert_eq!(l.cluster.namespaces[0].name, "demo");
    }

    use std::net::IpAddr;

    #[test]
    fn port_range() {
        exactly(
            &svc("  ports:\n  - port: 99999\n"),
            &["t.yaml:9:11: Service demo/web: spec.ports[0].port: expected a port number 1-65535, found integer 99999"],
        );
    }

    #[test]
    fn port_is_required() {
        exactly(
            &svc("  ports:\n  - name: a\n"),
            &["t.yaml:9:5: Service demo/web: spec.ports[0].port: expected a port number 1-65535, the field is missing"],
        );
    }

    #[test]
    fn protocol_values() {
        exactly(
            &svc("  ports:\n  - port: 80\n    protocol: ICMP\n"),
            &[
                "t.yaml:10:15: Service demo/web: spec.ports[0].protocol: expected TCP, UDP or SCTP, found string \"ICMP\"",
            ],
        );
    }

    #[test]
    fn target_port_name_syntax() {
        exactly(
            &svc("  ports:\n  - port: 80\n    targetPort: Web--Port\n"),
            &[
                "t.yaml:10:17: Service demo/web: spec.ports[0].targetPort: expected a port number 1-65535 or a port name (1-15 lowercase letters, digits or '-', with at least one letter), found string \"Web--Port\"",
            ],
        );
    }

    #[test]
    fn several_ports_need_names() {
        exactly(
            &svc("  ports:\n  - port: 80\n  - port: 81\n    name: b\n"),
            &[
                "t.yaml:9:5: Service demo/web: spec.ports[0].name: expected a port name: every port needs one when a service has several",
            ],
        );
    }

    #[test]
    fn duplicate_port_and_protocol() {
        exactly(
            &svc("  ports:\n  - {name: a, port: 80}\n  - {name: b, port: 80}\n"),
            &["t.yaml:10:21: Service demo/web: spec.ports[1].port: duplicate port 80/TCP (also spec.ports[0])"],
        );
    }

    #[test]
    fn node_port_range_and_type() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: np}\nspec:\n  type: NodePort\n  clusterIP: 198.19.0.5\n  ports: [{port: 80, nodePort: 32768}]\n";
        exactly(
            text,
            &[
                "t.yaml:7:32: Service default/np: spec.ports[0].nodePort: node port 32768 is outside node-port-range 30000-32767",
            ],
        );
        exactly(
            &svc("  ports: [{port: 80, nodePort: 30080}]\n"),
            &[
                "t.yaml:8:32: Service demo/web: spec.ports[0].nodePort: may not be set when type is ClusterIP (use NodePort or LoadBalancer)",
            ],
        );
    }

    #[test]
    fn cluster_ip_syntax_and_headless() {
        let text = SVC.replace("198.19.0.10", "198.19.0.256") + "  ports: [{port: 80}]\n";
        exactly(
            &text,
            &["t.yaml:7:14: Service demo/web: spec.clusterIP: expected an IP address, found string \"198.19.0.256\""],
        );
        let l = load(&SVC.replace("198.19.0.10", "None"));
        assert!(l.diagnostics.is_empty(), "headless needs no ports: {:?}", l.diagnostics);
        assert!(l.cluster.services[0].cluster_ips.is_empty());
    }

    #[test]
    fn cluster_ips_family_and_order() {
        exactly(
            &svc("  clusterIPs: [198.19.0.10, 198.19.0.11]\n  ports: [{port: 80}]\n"),
            &[
                "t.yaml:8:29: Service demo/web: spec.clusterIPs[1]: expected at most one address per IP family, found string \"198.19.0.11\"",
            ],
        );
        let l = load(&svc(
            "  clusterIPs: [198.19.0.10, \"2001:db8::10\"]\n  ipFamilies: [IPv4, IPv6]\n  ports: [{port: 80}]\n",
        ));
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        assert_eq!(l.cluster.services[0].cluster_ips.len(), 2);
        exactly(
            &svc("  ipFamilies: [IPv6]\n  ports: [{port: 80}]\n"),
            &[
                "t.yaml:8:16: Service demo/web: spec.ipFamilies[0]: expected the family of clusterIPs[0] (198.19.0.10), found string \"IPv6\"",
            ],
        );
    }

    #[test]
    fn session_affinity_timeout_bounds() {
        let base = "  ports: [{port: 80}]\n  sessionAffinity: ClientIP\n";
        let l = load(&svc(base));
        assert_eq!(l.cluster.services[0].affinity_timeout, Some(10800));
        let l = load(&svc(&format!("{base}  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 86400}}}}\n")));
        assert_eq!(l.cluster.services[0].affinity_timeout, Some(86400));
        exactly(
            &svc(&format!("{base}  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 86401}}}}\n")),
            &[
                "t.yaml:10:54: Service demo/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: expected a timeout of 1-86400 seconds, found integer 86401",
            ],
        );
        exactly(
            &svc("  ports: [{port: 80}]\n  sessionAffinity: Sticky\n"),
            &[
                "t.yaml:9:20: Service demo/web: spec.sessionAffinity: expected None or ClientIP, found string \"Sticky\"",
            ],
        );
    }

    #[test]
    fn service_name_is_dns1035_label() {
        let text = SVC.replace("name: web", "name: 1web") + "  ports: [{port: 80}]\n";
        exactly(
            &text,
            &[
                "t.yaml:4:9: Service demo/1web: metadata.name: expected a DNS-1035 label (at most 63 lowercase letters, digits or '-', starting with a letter and ending with a letter or digit), found string \"1web\"",
            ],
        );
    }

    #[test]
    fn other_names_are_dns1123_subdomains() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a..b}\n";
        exactly(
            text,
            &[
                "t.yaml:3:18: Pod default/a..b: metadata.name: expected a DNS-1123 subdomain (at most 253 characters: lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit), found string \"a..b\"",
            ],
        );
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: web.v1, namespace: Demo}\n";
        exactly(
            text,
            &[
                "t.yaml:3:37: Pod Demo/web.v1: metadata.namespace: expected a DNS-1123 label (at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit), found string \"Demo\"",
            ],
        );
    }

    #[test]
    fn label_key_and_value_syntax() {
        let text =
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    example.com/app: \"-x\"\n    a/b/c: y\n";
        exactly(
            text,
            &[
                "t.yaml:6:22: Pod default/p: metadata.labels[\"example.com/app\"]: expected a label value (empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit), found \"-x\"",
                "t.yaml:7:5: Pod default/p: metadata.labels[\"a/b/c\"]: expected a label key (an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit), found \"a/b/c\"",
            ],
        );
    }

    #[test]
    fn selector_operators() {
        let pol = |expr: &str| {
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p}}\nspec:\n  podSelector:\n    matchExpressions:\n    - {expr}\n"
            )
        };
        exactly(
            &pol("{key: a, operator: NotIn, values: []}"),
            &[
                "t.yaml:7:41: NetworkPolicy default/p: spec.podSelector.matchExpressions[0].values: expected at least one value for operator In or NotIn",
            ],
        );
        exactly(
            &pol("{key: a, operator: DoesNotExist, values: [x]}"),
            &[
                "t.yaml:7:48: NetworkPolicy default/p: spec.podSelector.matchExpressions[0].values: expected no values for operator Exists or DoesNotExist",
            ],
        );
        exactly(
            &pol("{key: a, operator: in, values: [x]}"),
            &[
                "t.yaml:7:26: NetworkPolicy default/p: spec.podSelector.matchExpressions[0].operator: expected In, NotIn, Exists or DoesNotExist, found string \"in\"",
            ],
        );
        let l = load(&pol("{key: a, operator: In, values: [x, y]}"));
        assert!(l.diagnostics.is_empty());
        let req = &l.cluster.policies[0].pod_selector.match_expressions[0];
        assert_eq!((req.op, req.values.clone()), (SelectorOp::In, vec!["x".to_string(), "y".to_string()]));
    }

    fn policy(spec: &str) -> String {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: demo}}\nspec:\n  podSelector: {{}}\n{spec}"
        )
    }

    #[test]
    fn policy_types_values_and_defaulting() {
        exactly(
            &policy("  policyTypes: [Ingress, Ingress]\n"),
            &["t.yaml:6:26: NetworkPolicy demo/p: spec.policyTypes[1]: duplicate policy type string \"Ingress\""],
        );
        exactly(
            &policy("  policyTypes: [ingress]\n"),
            &[
                "t.yaml:6:17: NetworkPolicy demo/p: spec.policyTypes[0]: expected Ingress or Egress, found string \"ingress\"",
            ],
        );
        let p = &load(&policy("  egress: [{}]\n")).cluster.policies[0];
        assert!(p.ingress_isolation && p.egress_isolation, "egress rules imply Egress");
        let p = &load(&policy("")).cluster.policies[0];
        assert!(p.ingress_isolation && !p.egress_isolation);
        let p = &load(&policy("  policyTypes: [Egress]\n")).cluster.policies[0];
        assert!(!p.ingress_isolation && p.egress_isolation);
    }

    #[test]
    fn ip_block_except_inside_cidr() {
        exactly(
            &policy("  ingress:\n  - from:\n    - ipBlock: {cidr: 198.18.0.0/16, except: [198.0.0.0/8]}\n"),
            &[
                "t.yaml:8:47: NetworkPolicy demo/p: spec.ingress[0].from[0].ipBlock.except[0]: expected a CIDR strictly inside cidr 198.18.0.0/16, found string \"198.0.0.0/8\"",
            ],
        );
        exactly(
            &policy("  ingress:\n  - from:\n    - ipBlock: {cidr: \"2001:db8::/129\"}\n"),
            &[
                "t.yaml:8:23: NetworkPolicy demo/p: spec.ingress[0].from[0].ipBlock.cidr: expected a CIDR (ADDRESS/PREFIX-LENGTH), found string \"2001:db8::/129\"",
            ],
        );
        let l = load(&policy("  ingress:\n  - from:\n    - ipBlock: {cidr: 198.18.0.0/16, except: [198.18.1.0/24]}\n"));
        assert!(l.diagnostics.is_empty());
        assert!(
            matches!(&l.cluster.policies[0].ingress[0].peers[0], PolicyPeer::IpBlock { except, .. } if except.len() == 1)
        );
    }

    #[test]
    fn cidr_with_host_bits_warns() {
        exactly(
            &policy("  ingress:\n  - from:\n    - ipBlock: {cidr: 198.18.1.7/24}\n"),
            &[
                "t.yaml:8:23: warning: NetworkPolicy demo/p: spec.ingress[0].from[0].ipBlock.cidr: \"198.18.1.7/24\" has host bits set; it means 198.18.1.0/24",
            ],
        );
    }

    #[test]
    fn end_port_rules() {
        exactly(
            &policy("  ingress:\n  - ports: [{port: 100, endPort: 99}]\n"),
            &[
                "t.yaml:7:34: NetworkPolicy demo/p: spec.ingress[0].ports[0].endPort: expected an end port >= port (100), found integer 99",
            ],
        );
        exactly(
            &policy("  ingress:\n  - ports: [{endPort: 99}]\n"),
            &[
                "t.yaml:7:23: NetworkPolicy demo/p: spec.ingress[0].ports[0].endPort: may not be set without a numeric port",
            ],
        );
        let l = load(&policy("  ingress:\n  - ports: [{port: 100, endPort: 200, protocol: UDP}]\n"));
        let port = &l.cluster.policies[0].ingress[0].ports[0];
        assert_eq!((port.protocol, port.end_port.map(|p| p.get())), (Protocol::Udp, Some(200)));
    }

    #[test]
    fn peers_must_have_one_kind() {
        exactly(
            &policy("  egress:\n  - to:\n    - {}\n"),
            &[
                "t.yaml:8:7: NetworkPolicy demo/p: spec.egress[0].to[0]: expected a peer: podSelector, namespaceSelector or ipBlock (an empty peer is not allowed)",
            ],
        );
        let l = load(&policy(
            "  ingress:\n  - from:\n    - podSelector: {matchLabels: {a: b}}\n      namespaceSelector: {}\n",
        ));
        assert!(l.diagnostics.is_empty());
        assert!(matches!(
            &l.cluster.policies[0].ingress[0].peers[0],
            PolicyPeer::Pods { pod_selector: Some(_), namespace_selector: Some(ns) } if ns.is_empty()
        ));
    }

    const SLICE: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: demo\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\n";

    #[test]
    fn slice_addresses_match_family() {
        let text = format!(
            "{SVC}  ports: [{{port: 80}}]\n---\n{SLICE}endpoints:\n- addresses: [\"2001:db8::1\"]\nports: [{{port: 8080}}]\n"
        );
        exactly(
            &text,
            &[
                "t.yaml:18:15: EndpointSlice demo/web-1: endpoints[0].addresses[0]: expected an IPv4 address, found string \"2001:db8::1\"",
            ],
        );
    }

    #[test]
    fn slice_conditions_default() {
        let text = format!(
            "{SVC}  ports: [{{port: 80}}]\n---\n{SLICE}endpoints:\n- addresses: [198.18.1.1]\n- addresses: [198.18.1.2]\n  conditions: {{ready: false, terminating: true}}\nports: [{{port: 8080}}]\n"
        );
        let l = load(&text);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let eps = &l.cluster.endpoint_slices[0].endpoints;
        assert!(eps[0].ready && eps[0].serving && !eps[0].terminating);
        assert!(!eps[1].ready && !eps[1].serving && eps[1].terminating);
    }

    #[test]
    fn slice_without_service_warns() {
        let text = format!("{SLICE}endpoints: []\n");
        exactly(
            &text,
            &[
                "t.yaml:6:40: warning: EndpointSlice demo/web-1: metadata.labels[\"kubernetes.io/service-name\"]: no Service demo/web is defined; these endpoints are unused",
            ],
        );
    }

    #[test]
    fn service_port_without_slice_port_warns() {
        let text = format!(
            "{SVC}  ports: [{{name: http, port: 80}}]\n---\n{SLICE}endpoints: []\nports: [{{name: https, port: 8443}}]\n"
        );
        exactly(
            &text,
            &[
                "t.yaml:8:30: warning: Service demo/web: spec.ports[0]: no EndpointSlice of this service has a port named \"http\" with protocol TCP, so this port has no backends",
            ],
        );
    }

    #[test]
    fn duplicate_objects_name_both_places() {
        let text = format!("{SVC}  ports: [{{port: 80}}]\n---\n{SVC}  ports: [{{port: 81}}]\n");
        exactly(&text, &["t.yaml:10:1: Service demo/web: defined twice (first at t.yaml:1:1)"]);
    }

    #[test]
    fn shared_cluster_ip_names_both_services() {
        // Kubernetes allocates a cluster IP to one service: sharing it is an
        // error even on another port.
        let other = SVC.replace("name: web", "name: web2");
        let text = format!("{SVC}  ports: [{{port: 80}}]\n---\n{other}  ports: [{{port: 443, name: https}}]\n");
        exactly(
            &text,
            &[
                "t.yaml:16:14: Service demo/web2: spec.clusterIP: cluster IP 198.19.0.10 is already Service demo/web's (at t.yaml:7:14); a cluster IP belongs to one service",
            ],
        );
    }

    #[test]
    fn node_port_collision() {
        let a = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  type: NodePort\n  clusterIP: 198.19.0.1\n  ports: [{port: 80, nodePort: 30080}]\n";
        let text = format!("{a}---\n{}", a.replace("name: a", "name: b").replace("198.19.0.1", "198.19.0.2"));
        exactly(
            &text,
            &[
                "t.yaml:15:32: Service default/b: spec.ports[0].nodePort: node port 30080/TCP is already used by Service default/a at t.yaml:7:32",
            ],
        );
    }

    #[test]
    fn named_target_port_checked_against_pods() {
        let text = format!(
            "{SVC}  selector: {{app: web}}\n  ports: [{{port: 80, targetPort: http}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: demo, labels: {{app: web}}}}\nspec:\n  containers: [{{name: c, ports: [{{name: https, containerPort: 443}}]}}]\n"
        );
        exactly(
            &text,
            &[
                "t.yaml:9:34: warning: Service demo/web: spec.ports[0].targetPort: no pod this service selects (1 found) has a TCP container port named \"http\"",
            ],
        );
    }

    #[test]
    fn pod_fields() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: demo}\nspec:\n  nodeName: node-1\n  hostNetwork: true\n  containers: [{name: c, ports: [{name: http, containerPort: 8080, protocol: UDP}]}]\nstatus:\n  podIP: 198.18.1.5\n  podIPs: [{ip: 198.18.1.5}, {ip: \"2001:db8::5\"}]\n";
        let l = load(text);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let p = &l.cluster.pods[0];
        assert_eq!(p.node_name.as_deref(), Some("node-1"));
        assert!(p.host_network);
        assert_eq!(p.ips.len(), 2);
        assert_eq!(
            p.container_ports[0],
            ContainerPort {
                name: Some("http".into()),
                port: NonZeroU16::MIN.saturating_add(8079),
                protocol: Protocol::Udp
            }
        );
        exactly(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: 198.18.1}\n",
            &["t.yaml:4:17: Pod default/p: status.podIP: expected an IP address, found string \"198.18.1\""],
        );
    }

    use std::num::NonZeroU16;

    #[test]
    fn namespaces_get_the_name_label_and_referenced_ones_exist() {
        let text = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: demo, labels: {{team: a}}}}\n---\n{SVC}  ports: [{{port: 80}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: other}}\n"
        );
        let l = load(&text);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let ns: Vec<(&str, Vec<(&str, &str)>)> = l
            .cluster
            .namespaces
            .iter()
            .map(|n| (n.name.as_str(), n.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()))
            .collect();
        assert_eq!(
            ns,
            [
                ("demo", vec![("kubernetes.io/metadata.name", "demo"), ("team", "a")]),
                ("other", vec![("kubernetes.io/metadata.name", "other")]),
            ]
        );
    }

    #[test]
    fn kinds_dispatch() {
        exactly(
            "apiVersion: v1\nkind: Endpoints\nmetadata: {name: e}\n",
            &[
                "t.yaml:1:1: warning: Endpoints default/e: v1 Endpoints objects are ignored: kube-proxy and edgeplane read only discovery.k8s.io/v1 EndpointSlice (write an EndpointSlice labelled kubernetes.io/service-name instead)",
            ],
        );
        // Other kinds, and another group's "Service", are ignored silently.
        exactly(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: k}\n",
            &[],
        );
        exactly("kind: Pod\n", &["t.yaml:1:1: apiVersion: expected an apiVersion, the field is missing"]);
        exactly(
            "- a\n",
            &["t.yaml:1:1: expected a Kubernetes object (a mapping with apiVersion and kind), found a list"],
        );
        exactly(
            "apiVersion: v1\nkind: Pod\n",
            &["t.yaml:1:1: Pod: metadata: expected a mapping with name (and namespace), the field is missing"],
        );
    }

    #[test]
    fn list_wrapper_items_are_loaded_with_item_spans() {
        let text = format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}\n- apiVersion: v1\n  kind: Pod\n  metadata: {{name: Bad}}\n",
            "{apiVersion: v1, kind: Pod, metadata: {name: a}}"
        );
        let l = load(&text);
        assert_eq!(l.cluster.pods.len(), 2);
        let a = l.cluster.pods.iter().find(|p| p.meta.name == "a").expect("pod a");
        assert_eq!(a.meta.origin.line, 4);
        assert_eq!(
            l.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "t.yaml:7:20: Pod default/Bad: metadata.name: expected a DNS-1123 subdomain (at most 253 characters: lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit), found string \"Bad\""
            ]
        );
        // An object that merely has an `items` field is not a List.
        exactly("apiVersion: v1\nkind: ConfigMap\nitems: [{kind: Pod}]\n", &[]);
    }

    #[test]
    fn diagnostics_are_capped_without_changing_the_verdict() {
        // 12,000 warnings: still valid, 10,000 shown and a warning counting the rest.
        let peers = "    - ipBlock: {cidr: 198.18.1.7/24}\n".repeat(12_000);
        let l = load(&policy(&format!("  ingress:\n  - from:\n{peers}")));
        assert!(!l.has_errors(), "{:?}", l.diagnostics.last());
        assert_eq!(l.diagnostics.len(), MAX_DIAGNOSTICS + 1);
        let last = l.diagnostics.last().expect("summary");
        assert!(!last.is_error());
        assert_eq!(last.message, "2000 more diagnostic(s) not shown (at most 10000 are kept)");
        // 50,000 errors (more than are ever stored): the summary is an error.
        let items = "- {kind: Foo}\n".repeat(50_000);
        let l = load(&format!("apiVersion: v1\nkind: List\nitems:\n{items}"));
        assert_eq!(l.diagnostics.len(), MAX_DIAGNOSTICS + 1);
        let last = l.diagnostics.last().expect("summary");
        assert!(last.is_error());
        assert_eq!(last.message, "40000 more diagnostic(s) not shown (at most 10000 are kept)");
        assert_eq!(
            l.diagnostics[0].to_string(),
            "t.yaml:4:3: items[0].apiVersion: expected an apiVersion, the field is missing"
        );
    }

    #[test]
    fn cancelled_load_is_an_error_and_empty() {
        let snapshot = Snapshot {
            files: vec![SourceFile { path: Arc::from("t.yaml"), text: svc("  ports: [{port: 80}]\n") }],
            ..Snapshot::default()
        };
        let cancel = Arc::new(AtomicBool::new(true));
        let l = load_snapshot_cancellable(snapshot, &LoadLimits::default(), &cancel);
        assert!(l.cancelled && l.has_errors());
        assert!(l.cluster.services.is_empty());
    }

    #[test]
    fn big_files_are_split_without_changing_results() {
        let mut text = String::new();
        for i in 0..12_000 {
            text.push_str(&format!("---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\n  labels: {{a: \"{i}\"}}\nstatus: {{podIP: 198.18.{}.{}}}\n", i / 250, i % 250 + 1));
        }
        text.push_str("---\napiVersion: v1\nkind: Pod\nmetadata: {name: BAD}\n");
        assert!(text.len() > CHUNK);
        let file = SourceFile { path: Arc::from("t.yaml"), text: text.clone() };
        assert!(split_text(&file.text).len() > 1);
        for threads in [1, 2, 3] {
            let snapshot = Snapshot { files: vec![file.clone()], ..Snapshot::default() };
            let l = load_snapshot(snapshot, &LoadLimits { threads, ..LoadLimits::default() });
            assert_eq!(l.cluster.pods.len(), 12_001);
            let d: Vec<String> = l.diagnostics.iter().map(ToString::to_string).collect();
            assert_eq!(d.len(), 1);
            assert!(
                d[0].starts_with(&format!("t.yaml:{}:18: Pod default/BAD: metadata.name:", 12_000 * 7 + 4)),
                "{d:?}"
            );
        }
    }

    #[test]
    fn summary_counts() {
        let l = load(&svc("  ports: [{port: 80}]\n"));
        assert_eq!(
            summary(&l.cluster),
            "1 services (1 ports), 0 endpoint slices (0 endpoints), 0 pods, 1 namespaces, 0 network policies"
        );
    }
}
