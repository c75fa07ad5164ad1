//! `edgeplane run`'s Prometheus metrics and health endpoints (`metrics-address`).
//!
//! The daemon records into a shared [`Metrics`] (pass outcomes and stage
//! times, the file-change → maps latency, errors, the loaded objects); the
//! data plane's own counters (map fill, drops, conntrack, events) are read
//! from the pinned maps at scrape time with the read-only `status` code, so a
//! scrape never touches the daemon's state. One thread serves HTTP/1.1 on a
//! std listener bound in the daemon's network namespace: a request is
//! bounded in size and time, and answered with `Connection: close`.
//!
//! Docs: docs/METRICS.md (names, labels, health rules).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::config::Settings;
use crate::datapath;
use crate::model::Cluster;

/// One static label, e.g. `[("stage", "load")]`.
type Label = [(&'static str, &'static str); 1];
/// One label with a value known only at run time (a map name).
type DynLabel = [(&'static str, String); 1];
type HistogramFamily = Family<Label, Histogram, fn() -> Histogram>;

/// How a pass ended (the daemon's `Pass`, as the metrics see it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Unchanged,
    Refused,
    Held,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Refused => "refused",
            Outcome::Held => "held",
        }
    }
}

/// What went wrong (`edgeplane_errors_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The directory did not validate (or could not be read).
    InvalidInput,
    /// Valid, but more entries than the maps hold.
    Capacity,
    /// Reading or writing the live maps failed.
    ApplyFailed,
    /// An interface or the cgroup could not be attached.
    AttachFailed,
}

impl ErrorKind {
    fn label(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::Capacity => "capacity",
            ErrorKind::ApplyFailed => "apply-failed",
            ErrorKind::AttachFailed => "attach-failed",
        }
    }
}

/// What `/healthz` and `/livez` judge, with the instants they compare.
#[derive(Debug, Default)]
struct Health {
    /// End of the last pass and how it ended (with the error of a refused one).
    last_pass: Option<(Instant, Outcome, Option<ErrorKind>)>,
    /// The error recorded during the pass in progress.
    pass_error: Option<ErrorKind>,
    /// The first file change not yet taken by a pass.
    pending_change: Option<Instant>,
    /// The watcher thread's last turn (it turns at least once a second).
    watcher_beat: Option<Instant>,
    /// The event loop's last turn.
    loop_beat: Option<Instant>,
}

/// The daemon's metrics and health, shared (`Arc`) between the event loop,
/// the watcher thread and the HTTP thread.
pub struct Metrics {
    stage_seconds: HistogramFamily,
    pass_seconds: Histogram,
    passes: Family<Label, Counter>,
    programming_seconds: Histogram,
    last_success: Gauge<f64, AtomicU64>,
    objects: Family<Label, Gauge>,
    held: Gauge,
    errors: Family<Label, Counter>,
    health: Mutex<Health>,
    watcher_stopped: AtomicBool,
    /// A pass must end within this of the previous one (resync interval + margin).
    pass_deadline: Duration,
    /// The event loop must turn within this (its longest wait + a pass).
    loop_deadline: Duration,
}

fn stage_histogram() -> Histogram {
    // 0.5 ms … 16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub fn new(settings: &Settings) -> Metrics {
        // A pass that waits for a writer gives up after 10 settle windows + 5 s (read_settled).
        let longest_settle = settings.settle * 10 + Duration::from_secs(5);
        let pass_margin = settings.resync_interval.max(Duration::from_secs(30)) + longest_settle;
        let longest_wait = settings.resync_interval.min(settings.conntrack_gc_interval);
        let objects = Family::default();
        for kind in OBJECT_KINDS {
            let _ = objects.get_or_create(&[("kind", kind)]);
        }
        let errors = Family::default();
        for kind in [ErrorKind::InvalidInput, ErrorKind::Capacity, ErrorKind::ApplyFailed, ErrorKind::AttachFailed] {
            let _ = errors.get_or_create(&[("kind", kind.label())]);
        }
        let passes = Family::default();
        for o in [Outcome::Applied, Outcome::Unchanged, Outcome::Refused, Outcome::Held] {
            let _ = passes.get_or_create(&[("outcome", o.label())]);
        }
        Metrics {
            stage_seconds: Family::new_with_constructor(stage_histogram),
            pass_seconds: stage_histogram(),
            passes,
            // 50 ms … 205 s (the settle window alone is 1 s by default)
            programming_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 13)),
            last_success: Gauge::default(),
            objects,
            held: Gauge::default(),
            errors,
            health: Mutex::default(),
            watcher_stopped: AtomicBool::new(false),
            pass_deadline: settings.resync_interval + pass_margin,
            loop_deadline: longest_wait + longest_settle + Duration::from_secs(60),
        }
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        // A panic elsewhere while holding the lock leaves plain data: keep using it.
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One pipeline stage took `d`.
    pub fn observe_stage(&self, stage: &'static str, d: Duration) {
        self.stage_seconds.get_or_create(&[("stage", stage)]).observe(d.as_secs_f64());
    }

    /// The objects of the input just loaded.
    pub fn set_objects(&self, cluster: &Cluster) {
        self.set_object_counts([
            cluster.services.len(),
            cluster.endpoint_slices.len(),
            cluster.pods.len(),
            cluster.namespaces.len(),
            cluster.policies.len(),
        ]);
    }

    /// Counts in OBJECT_KINDS order.
    fn set_object_counts(&self, counts: [usize; 5]) {
        for (kind, n) in OBJECT_KINDS.iter().zip(counts) {
            self.objects.get_or_create(&[("kind", kind)]).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Counts an error; one recorded during a pass is the reason `/healthz` gives.
    pub fn error(&self, kind: ErrorKind) {
        self.errors.get_or_create(&[("kind", kind.label())]).inc();
        if kind != ErrorKind::AttachFailed {
            self.health().pass_error = Some(kind);
        }
    }

    /// The watcher saw the directory change, first `at` (the start of the
    /// programming latency; now if unknown).
    pub fn files_changed(&self, at: Option<Instant>) {
        self.health().pending_change.get_or_insert_with(|| at.unwrap_or_else(Instant::now));
    }

    /// A pass starts: it takes the pending file change, if any.
    pub fn pass_started(&self) -> Option<Instant> {
        let mut h = self.health();
        h.pass_error = None;
        h.pending_change.take()
    }

    /// A pass ended. `change`: what `pass_started` returned; `held`: whether
    /// the daemon now holds an input.
    pub fn pass_done(&self, outcome: Outcome, started: Instant, change: Option<Instant>, held: bool) {
        let now = Instant::now();
        self.pass_seconds.observe((now - started).as_secs_f64());
        self.passes.get_or_create(&[("outcome", outcome.label())]).inc();
        self.held.set(i64::from(held));
        if matches!(outcome, Outcome::Applied | Outcome::Unchanged) {
            let unix = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            self.last_success.set(unix.as_secs_f64());
        }
        if outcome == Outcome::Applied
            && let Some(at) = change
        {
            self.programming_seconds.observe((now - at).as_secs_f64());
        }
        let mut h = self.health();
        let error = match outcome {
            Outcome::Refused => Some(h.pass_error.unwrap_or(ErrorKind::ApplyFailed)),
            _ => None,
        };
        h.last_pass = Some((now, outcome, error));
    }

    /// The watcher thread turned.
    pub fn watcher_beat(&self) {
        self.health().watcher_beat = Some(Instant::now());
    }

    /// The watcher thread ended (it never should).
    pub fn watcher_stopped(&self) {
        self.watcher_stopped.store(true, Ordering::Relaxed);
    }

    /// The event loop turned.
    pub fn loop_beat(&self) {
        self.health().loop_beat = Some(Instant::now());
    }

    /// `/healthz`: Ok, or why not.
    fn healthz(&self, now: Instant) -> Result<String, String> {
        let h = self.health();
        let Some((at, outcome, error)) = h.last_pass else {
            return Err("no pass has completed yet".into());
        };
        match outcome {
            Outcome::Refused => {
                let kind = error.map_or("refused", ErrorKind::label);
                return Err(format!("the last pass failed ({kind}): the last good state keeps forwarding"));
            }
            Outcome::Held => {
                return Err("input held: it would remove most of the live state (see `edgeplane status`)".into());
            }
            Outcome::Applied | Outcome::Unchanged => {}
        }
        if self.watcher_stopped.load(Ordering::Relaxed) {
            return Err("the directory watcher stopped".into());
        }
        // The watcher turns every second; 30 s without a turn is a hang.
        if h.watcher_beat.is_none_or(|b| now.saturating_duration_since(b) > Duration::from_secs(30)) {
            return Err("the directory watcher is not running".into());
        }
        let age = now.saturating_duration_since(at);
        if age > self.pass_deadline {
            return Err(format!(
                "no pass for {} s (expected within {} s)",
                age.as_secs(),
                self.pass_deadline.as_secs()
            ));
        }
        Ok(format!(
            "{{\"status\":\"ok\",\"last_pass\":\"{}\",\"seconds_since_last_pass\":{}}}",
            outcome.label(),
            age.as_secs()
        ))
    }

    /// `/livez`: Ok while the event loop turns.
    fn livez(&self, now: Instant) -> Result<String, String> {
        let h = self.health();
        match h.loop_beat {
            Some(b) if now.saturating_duration_since(b) > self.loop_deadline => {
                Err(format!("the event loop has not turned for {} s", now.saturating_duration_since(b).as_secs()))
            }
            // Before the loop's first turn the first pass is running.
            _ => Ok("{\"status\":\"ok\"}".into()),
        }
    }

    /// The Prometheus text exposition: the recorded metrics and, read now, the
    /// pinned data plane under `state_dir`.
    pub fn render(&self, state_dir: &Path) -> String {
        let mut r = Registry::with_prefix("edgeplane");
        r.register(
            "pass_stage_duration_seconds",
            "Wall time of each pipeline stage of a pass (load, routes, dump, compile, plan, apply)",
            self.stage_seconds.clone(),
        );
        r.register(
            "pass_duration_seconds",
            "Wall time of a whole pass, whatever its outcome",
            self.pass_seconds.clone(),
        );
        r.register(
            "passes",
            "Passes by outcome: applied, unchanged, refused (invalid input or failure), held (mass-deletion guard)",
            self.passes.clone(),
        );
        r.register(
            "network_programming_duration_seconds",
            "From a change seen in the config directory to the end of the apply that programmed it into the maps \
             (includes the settle window)",
            self.programming_seconds.clone(),
        );
        r.register(
            "last_successful_pass_timestamp_seconds",
            "Unix time of the last pass that left the maps matching the input (applied or unchanged)",
            self.last_success.clone(),
        );
        r.register("objects", "Objects in the last loaded valid input, by kind", self.objects.clone());
        r.register(
            "input_held",
            "1 while the latest input is held by the mass-deletion guard (not applied), else 0",
            self.held.clone(),
        );
        r.register(
            "errors",
            "Errors by kind: invalid-input, capacity, apply-failed, attach-failed",
            self.errors.clone(),
        );
        register_datapath(&mut r, state_dir);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &r);
        out
    }
}

const OBJECT_KINDS: [&str; 5] = ["Service", "EndpointSlice", "Pod", "Namespace", "NetworkPolicy"];

/// The pinned data plane's numbers, read now (as `edgeplane status`).
fn register_datapath(r: &mut Registry, state_dir: &Path) {
    let readable = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
    r.register(
        "datapath_readable",
        "1 when the pinned maps could be read for this scrape (the datapath metrics below are present), else 0",
        readable.clone(),
    );
    let status = match datapath::read_status(state_dir) {
        Ok(s) => s,
        Err(e) => {
            log::debug!("metrics: {e:#}");
            return;
        }
    };
    readable.set(1);
    let entries: Family<DynLabel, Gauge> = Family::default();
    let capacity: Family<DynLabel, Gauge> = Family::default();
    for m in &status.maps {
        let label = [("map", m.name.clone())];
        if let Some(n) = m.entries {
            entries.get_or_create(&label).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        capacity.get_or_create(&label).set(i64::from(m.capacity));
    }
    r.register("map_entries", "Live entries per pinned map (hash, LRU and LPM maps)", entries);
    r.register("map_capacity", "Capacity (max_entries) per pinned map", capacity);
    let drops: Family<Label, Counter> = Family::default();
    for d in &status.drops {
        drops.get_or_create(&[("reason", d.reason.label())]).inc_by(d.count);
    }
    r.register("drops", "Packets dropped by the data plane, by reason (see `edgeplane drops`)", drops);
    let events: Family<Label, Counter> = Family::default();
    for s in &status.stats {
        events.get_or_create(&[("event", s.name)]).inc_by(s.value);
    }
    r.register(
        "datapath_events",
        "Data plane event counters (new flows, socket-LB translations, reverse translations, conntrack GC, …)",
        events,
    );
    if let Some(ct) = &status.conntrack {
        let flows = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        flows.set(i64::try_from(ct.entries).unwrap_or(i64::MAX));
        r.register("conntrack_entries", "Tracked flows (each holds a forward and a reply entry)", flows);
        let cap = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        cap.set(i64::from(ct.capacity));
        r.register("conntrack_capacity", "Flows the conntrack table holds", cap);
        let failed = Counter::<u64>::default();
        failed.inc_by(ct.insert_failed);
        r.register("conntrack_insert_failed", "New flows refused because the conntrack table was full", failed);
    }
}

/// Longest request head read.
const MAX_REQUEST: usize = 8192;

/// A parsed request line: GET or HEAD, and the path without its query.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    head: bool,
    path: String,
}

/// Parses a request head (up to the blank line). Err: the status to answer.
fn parse_request(head: &[u8]) -> Result<Request, u16> {
    let text = std::str::from_utf8(head).map_err(|_| 400u16)?;
    let line = text.split("\r\n").next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(400);
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(405),
    };
    let path = target.split('?').next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(400);
    }
    Ok(Request { head, path: path.to_string() })
}

/// Reads a request head: up to the blank line, at most MAX_REQUEST bytes,
/// none read after `deadline` (a client sending a byte at a time cannot
/// hold the only serving thread longer than that and one read timeout).
pub(crate) fn read_head(stream: &mut impl Read, deadline: Instant) -> Result<Vec<u8>, u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end + 4);
            return Ok(buf);
        }
        if buf.len() >= MAX_REQUEST {
            return Err(431);
        }
        if Instant::now() >= deadline {
            return Err(0);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(0),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn json_error(reason: &str) -> String {
    serde_json::json!({ "status": "unhealthy", "reason": reason }).to_string()
}

fn route(metrics: &Metrics, state_dir: &Path, path: &str) -> Response {
    const JSON: &str = "application/json";
    const TEXT: &str = "text/plain; charset=utf-8";
    let now = Instant::now();
    let health = |r: Result<String, String>| match r {
        Ok(body) => Response { status: 200, content_type: JSON, body: body + "\n" },
        Err(why) => Response { status: 503, content_type: JSON, body: json_error(&why) + "\n" },
    };
    match path {
        "/metrics" => {
            Response { status: 200, content_type: prometheus_text::CONTENT_TYPE, body: metrics.render(state_dir) }
        }
        "/healthz" => health(metrics.healthz(now)),
        "/livez" => health(metrics.livez(now)),
        _ => Response { status: 404, content_type: TEXT, body: "not found: try /metrics, /healthz or /livez\n".into() },
    }
}

fn handle(metrics: &Metrics, state_dir: &Path, stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let deadline = Instant::now() + Duration::from_secs(10);
    let (head, response) = match read_head(stream, deadline).and_then(|h| parse_request(&h)) {
        Ok(req) => (req.head, route(metrics, state_dir, &req.path)),
        Err(0) => return, // closed or timed out before a whole head
        Err(status) => (false, Response { status, content_type: "text/plain; charset=utf-8", body: String::new() }),
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(response.body.as_bytes());
    }
    let _ = stream.write_all(&out);
}

/// Serves /metrics, /healthz and /livez on `addr` from a thread of the
/// caller's network namespace. A failed bind (address in use, not yet
/// configured) is logged and retried every 10 s: forwarding does not depend
/// on it.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>, state_dir: PathBuf) {
    let spawned = std::thread::Builder::new().name("metrics".into()).spawn(move || {
        let mut warned = false;
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if !warned => {
                    log::error!("metrics-address {addr}: {e}; retrying every 10 s (metrics-address: \"\" disables)");
                    warned = true;
                }
                Err(e) => log::debug!("metrics-address {addr}: {e}"),
            }
            std::thread::sleep(Duration::from_secs(10));
        };
        log::info!("serving /metrics, /healthz and /livez on http://{addr}");
        for stream in listener.incoming() {
            match stream {
                Ok(mut s) => handle(&metrics, &state_dir, &mut s),
                Err(e) => {
                    log::debug!("metrics: accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("metrics: starting the HTTP thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(&Settings::default())
    }

    #[test]
    fn request_lines() {
        let get = parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(get, Ok(Request { head: false, path: "/metrics".into() }));
        assert_eq!(
            parse_request(b"HEAD /healthz HTTP/1.0\r\n\r\n"),
            Ok(Request { head: true, path: "/healthz".into() })
        );
        assert_eq!(parse_request(b"POST /metrics HTTP/1.1\r\n\r\n"), Err(405));
        assert_eq!(parse_request(b"GET /metrics\r\n\r\n"), Err(400));
        assert_eq!(parse_request(b"GET metrics HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(parse_request(b"GET /metrics SPDY/3\r\n\r\n"), Err(400));
        assert_eq!(parse_request(b"GET /a b HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(parse_request(b"GET /\xff HTTP/1.1\r\n\r\n"), Err(400));
    }

    #[test]
    fn request_head_is_bounded() {
        let later = Instant::now() + Duration::from_secs(60);
        let mut ok: &[u8] = b"GET / HTTP/1.1\r\n\r\nbody";
        assert_eq!(read_head(&mut ok, later).as_deref(), Ok(&b"GET / HTTP/1.1\r\n\r\n"[..]));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_REQUEST * 4));
        assert_eq!(read_head(&mut big.as_bytes(), later), Err(431));
        let mut cut: &[u8] = b"GET / HTTP/1.1\r\n";
        assert_eq!(read_head(&mut cut, later), Err(0));
        // Past the deadline nothing more is read (a slow client is dropped).
        let mut slow = std::io::Read::chain(&b"GET / HT"[..], &b"TP/1.1\r\n\r\n"[..]);
        assert_eq!(read_head(&mut slow, Instant::now()), Err(0));
    }

    #[test]
    fn rendering_has_help_and_prefixed_names() {
        let m = metrics();
        m.set_object_counts([3, 3, 0, 1, 0]);
        m.observe_stage("load", Duration::from_millis(3));
        let t0 = Instant::now();
        m.pass_done(Outcome::Applied, t0, Some(t0), false);
        m.error(ErrorKind::InvalidInput);
        let text = m.render(Path::new("/nonexistent/edgeplane-state"));
        for needle in [
            "# HELP edgeplane_pass_stage_duration_seconds ",
            "# TYPE edgeplane_pass_stage_duration_seconds histogram",
            "edgeplane_pass_stage_duration_seconds_count{stage=\"load\"} 1",
            "edgeplane_passes_total{outcome=\"applied\"} 1",
            "edgeplane_passes_total{outcome=\"held\"} 0",
            "edgeplane_network_programming_duration_seconds_count 1",
            "edgeplane_objects{kind=\"Service\"} 3",
            "edgeplane_objects{kind=\"NetworkPolicy\"} 0",
            "edgeplane_input_held 0",
            "edgeplane_errors_total{kind=\"invalid-input\"} 1",
            "edgeplane_errors_total{kind=\"attach-failed\"} 0",
            "edgeplane_datapath_readable 0",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("edgeplane_"), "{line}");
        }
        let ts: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("edgeplane_last_successful_pass_timestamp_seconds "))
            .and_then(|v| v.parse().ok())
            .expect("timestamp");
        assert!(ts > 1.0e9, "{ts}");
    }

    #[test]
    fn programming_latency_counts_applied_changes_only() {
        let m = metrics();
        m.files_changed(None);
        let change = m.pass_started();
        assert!(change.is_some());
        m.pass_done(Outcome::Unchanged, Instant::now(), change, false);
        assert!(m.pass_started().is_none(), "taken by the first pass");
        m.files_changed(None);
        let change = m.pass_started();
        m.pass_done(Outcome::Applied, Instant::now(), change, false);
        assert!(m.render(Path::new("/nonexistent")).contains("edgeplane_network_programming_duration_seconds_count 1"));
    }

    #[test]
    fn health_follows_passes_watcher_and_time() {
        let m = metrics();
        let now = Instant::now();
        assert_eq!(m.healthz(now), Err("no pass has completed yet".into()));
        assert!(m.livez(now).is_ok());
        m.watcher_beat();
        m.loop_beat();
        m.pass_started();
        m.pass_done(Outcome::Applied, now, None, false);
        let now = Instant::now();
        assert!(m.healthz(now).is_ok_and(|b| b.contains("\"last_pass\":\"applied\"")), "{:?}", m.healthz(now));
        // Stale: no pass within the resync interval and margin; the watcher silent.
        let later = now + m.pass_deadline + Duration::from_secs(1);
        assert!(m.healthz(later).is_err());
        assert!(m.livez(now + m.loop_deadline + Duration::from_secs(1)).is_err());
        // A refused pass names its error; a held input says so.
        m.pass_started();
        m.error(ErrorKind::InvalidInput);
        m.pass_done(Outcome::Refused, now, None, false);
        let why = m.healthz(Instant::now()).expect_err("refused");
        assert!(why.contains("invalid-input"), "{why}");
        m.pass_started();
        m.pass_done(Outcome::Held, now, None, true);
        assert!(m.healthz(Instant::now()).expect_err("held").contains("held"));
        assert!(m.render(Path::new("/nonexistent")).contains("edgeplane_input_held 1"));
        // Back to applied, but the watcher thread ended.
        m.pass_started();
        m.pass_done(Outcome::Unchanged, now, None, false);
        assert!(m.healthz(Instant::now()).is_ok());
        m.watcher_stopped();
        assert!(m.healthz(Instant::now()).expect_err("watcher").contains("watcher"));
    }

    #[test]
    fn http_round_trip() {
        let m = Arc::new(metrics());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let (mut s, _) = listener.accept().expect("accept");
                    handle(&m, Path::new("/nonexistent"), &mut s);
                }
            })
        };
        let ask = |req: &str| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(req.as_bytes()).expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).expect("read");
            out
        };
        let metrics = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("Content-Type: text/plain; version=0.0.4"), "{metrics}");
        assert!(metrics.contains("# HELP edgeplane_passes_total"), "{metrics}");
        let health = ask("GET /healthz HTTP/1.1\r\n\r\n");
        assert!(health.starts_with("HTTP/1.1 503 "), "{health}");
        let body = health.split("\r\n\r\n").nth(1).expect("body");
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON reason");
        assert_eq!(v["reason"], "no pass has completed yet");
        let missing = ask("HEAD /nope HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404 ") && missing.ends_with("\r\n\r\n"), "{missing}");
        server.join().expect("server");
    }
}
