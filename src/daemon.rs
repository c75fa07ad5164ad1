//! The I/O shell around the pure pipeline: one pass (`apply`), the watch loop
//! (`run`), and the read-only commands. The only place that reads the clock
//! and handles signals.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

use crate::apply;
use crate::compile::{self, NodeContext};
use crate::compile_policy::{self, PolicyCompiled, PolicyNode};
use crate::config::{self, HostRouting, Settings, SocketLb};
use crate::datapath::{self, Datapath, DatapathSettings};
use crate::diag::{self, Diagnostic};
use crate::guard;
use crate::healthcheck::{HealthServers, ServiceHealth};
use crate::maps::fake::FakeMaps;
use crate::maps::layout::CFG_F_INPUT_HELD;
use crate::maps::layout::{
    CFG_F_POLICY, Config, NODE_F_DSR, NODE_F_HOST_ROUTING, NODE_F_SOCKLB_HOST_ONLY, NODE_F_SOCKLB_OFF, NodeConfig,
};
use crate::maps::{Entries, MapBackend, MapId};
use crate::metrics::{self, ErrorKind, Metrics};
use crate::model::{self, Loaded};
use crate::notify::Notifier;
use crate::plan::{self, Plan};
use crate::source::{self, LoadLimits, Snapshot, SourceError, WatchEvent, Watcher};

/// Logs to stderr; under systemd (JOURNAL_STREAM set) with `<N>` priority
/// prefixes that journald turns into log levels. RUST_LOG overrides the level.
pub fn init_logging() {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(move |buf, record| {
            let level = record.level();
            if journald {
                let prio = match level {
                    log::Level::Error => 3,
                    log::Level::Warn => 4,
                    log::Level::Info => 6,
                    log::Level::Debug | log::Level::Trace => 7,
                };
                writeln!(buf, "<{prio}>{}", record.args())
            } else {
                writeln!(buf, "edgeplane {level}: {}", record.args())
            }
        })
        .init();
    datapath::route_libbpf_output();
}

/// setns(2) into /run/netns/NAME for this thread; threads spawned later inherit it.
pub fn enter_netns(name: &str) -> Result<()> {
    if name.contains('/') {
        bail!("expected a network namespace name under /run/netns, found a path");
    }
    let path = PathBuf::from("/run/netns").join(name);
    let file = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a valid, open file descriptor.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setns {}", path.display()));
    }
    Ok(())
}

pub(crate) fn limits(settings: &Settings) -> LoadLimits {
    LoadLimits {
        max_file_size: settings.max_file_size,
        allow_external_symlinks: settings.allow_external_symlinks,
        node_port_range: settings.node_port_range,
        ..LoadLimits::default()
    }
}

/// Reads the config dir once it has stopped changing: input modified within
/// the settle window may be a file still being written (editors, shell
/// redirections and GitOps tools write in pieces), so it is read again after
/// the window and used only if nothing changed meanwhile.
fn read_settled(settings: &Settings, cancel: &AtomicBool) -> Result<Snapshot, SourceError> {
    let dirs = std::slice::from_ref(&settings.config_dir);
    let limits = limits(settings);
    let mut snapshot = source::read_snapshot(dirs, &limits)?;
    // A writer that never pauses is waited for this long, then the pass gives up.
    let deadline = Instant::now() + settings.settle * 10 + Duration::from_secs(5);
    loop {
        // An mtime in the future (clock skew) counts as "just written": one window.
        let age = snapshot
            .newest_mtime
            .map_or(settings.settle, |m| SystemTime::now().duration_since(m).unwrap_or(Duration::ZERO));
        if age >= settings.settle || cancel.load(Ordering::Relaxed) {
            return Ok(snapshot);
        }
        if Instant::now() >= deadline {
            snapshot.problems.push(Diagnostic::error(
                diag::Span { file: Arc::from(settings.config_dir.to_string_lossy().as_ref()), line: 1, col: 1 },
                None,
                "",
                "the input kept changing for longer than the settle window allows; not applied, read again at \
                 the next change",
            ));
            return Ok(snapshot);
        }
        // In short naps: SIGTERM must not wait for the window.
        let until = Instant::now() + (settings.settle - age);
        while Instant::now() < until && !cancel.load(Ordering::Relaxed) {
            std::thread::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
        }
        let again = source::read_snapshot(dirs, &limits)?;
        if again.content_hash == snapshot.content_hash && again.newest_mtime == snapshot.newest_mtime {
            return Ok(again);
        }
        log::info!("input changed within the settle window: waiting for it to be still");
        snapshot = again;
    }
}

fn datapath_settings(settings: &Settings) -> DatapathSettings {
    DatapathSettings {
        state_dir: settings.state_dir.clone(),
        workload_interfaces: settings.workload_interfaces.clone(),
        host_interfaces: settings.host_interfaces.clone(),
        cgroup: settings.cgroup.clone(),
        capacities: settings.maps,
        hairpin_addr: settings.hairpin_address,
    }
}

fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        eprintln!("{d}");
    }
}

/// `edgeplane check DIR…`
pub fn check(dirs: &[PathBuf], settings: &Settings, json: bool) -> u8 {
    // check validates content and applies nothing: ownership problems warn.
    let limits = LoadLimits { untrusted_warns: true, ..limits(settings) };
    let loaded = match model::load_dirs(dirs, &limits) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if json {
        println!("{}", diag::to_json(&loaded.diagnostics));
    } else {
        print_diagnostics(&loaded.diagnostics);
    }
    let mut errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = loaded.diagnostics.len() - errors;
    if errors == 0 {
        errors += check_capacity_offline(&loaded, settings);
    }
    if errors > 0 {
        eprintln!("invalid: {errors} error(s), {warnings} warning(s) in {} file(s)", loaded.files);
        return 1;
    }
    if !json {
        println!("valid: {} file(s): {}", loaded.files, model::summary(&loaded.cluster));
        if warnings > 0 {
            println!("{warnings} warning(s)");
        }
    }
    0
}

/// What `apply` would refuse for want of map space, judged against the
/// configured map sizes (`maps:` in the settings) and empty maps, without
/// touching the node. Prints each problem; returns how many.
fn check_capacity_offline(loaded: &Loaded, settings: &Settings) -> usize {
    // Offline: pods are local by spec.nodeName only (apply also reads routes).
    let node = PolicyNode { node_name: settings.node_name.clone(), ..PolicyNode::default() };
    let empty = BTreeMap::new();
    let desired = desired_state(loaded, settings, &node, &empty, 0);
    match plan::check_capacity(&desired.maps, &empty, |m| settings.maps.of(m)) {
        Ok(()) => 0,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            errors.len()
        }
    }
}

/// The desired contents of every planned map, given what is live.
pub struct Desired {
    pub maps: BTreeMap<MapId, Entries>,
    pub warnings: Vec<Diagnostic>,
    pub services: usize,
    pub backends: usize,
    pub policy: PolicyCompiled,
    /// healthCheckNodePort servers this node must run.
    pub health_checks: Vec<compile::HealthCheck>,
}

/// Pure: the validated directory + this node + the live maps → desired maps.
/// `policy_epoch` is ep_cfg_v1's current epoch (see compile_policy).
pub fn desired_state(
    loaded: &Loaded,
    settings: &Settings,
    node: &PolicyNode,
    live: &BTreeMap<MapId, Entries>,
    policy_epoch: u32,
) -> Desired {
    let lb_node = NodeContext::from_settings(settings);
    let (set, mut warnings) = compile::compile_services(&loaded.cluster, &lb_node);
    let mut maps = compile::resolve(&set, live);
    let policy = compile_policy::compile(&loaded.cluster, node, live, policy_epoch);
    warnings.extend(policy.warnings.iter().cloned());
    maps.extend(policy.maps.iter().map(|(m, e)| (*m, e.clone())));
    Desired {
        services: set.services.len(),
        backends: set.backend_count(),
        health_checks: set.health_checks.clone(),
        maps,
        warnings,
        policy,
    }
}

/// ep_node_v1's contents from the settings: the first IPv4 of node-ips, dsr.
pub fn node_config(settings: &Settings) -> NodeConfig {
    NodeConfig {
        snat_addr: settings.node_ipv4s().first().map(|ip| ip.octets()).unwrap_or_default(),
        flags: if settings.dsr { NODE_F_DSR } else { 0 }
            | if settings.host_routing == HostRouting::Bpf { NODE_F_HOST_ROUTING } else { 0 }
            | match settings.socket_lb {
                SocketLb::All => 0,
                SocketLb::HostOnly => NODE_F_SOCKLB_HOST_ONLY,
                SocketLb::Off => NODE_F_SOCKLB_OFF,
            },
        ..NodeConfig::default()
    }
}

/// What this node's namespace says about pods and itself (I/O: netlink,
/// getifaddrs): pods routed through a workload interface are local.
pub(crate) fn policy_node(loaded: &Loaded, settings: &Settings) -> PolicyNode {
    let pod_ips = loaded.cluster.pods.iter().filter(|p| !p.host_network).flat_map(|p| p.ips.iter().copied());
    let local_pod_ips = datapath::routes::routed_via(pod_ips, &settings.workload_interfaces).unwrap_or_else(|e| {
        log::warn!("reading routes: {e:#}; only pods with spec.nodeName count as local");
        Default::default()
    });
    let host_ips = datapath::routes::host_addresses().unwrap_or_else(|e| {
        log::warn!("reading the node's addresses: {e:#}");
        Default::default()
    });
    PolicyNode { node_name: settings.node_name.clone(), local_pod_ips, host_ips }
}

/// Loads (once settled) and validates the config dir; None (after printing
/// every problem) when it is invalid or unreadable, or when `cancel` is set
/// meanwhile.
pub(crate) fn load_valid(settings: &Settings, cancel: &Arc<AtomicBool>) -> Option<Loaded> {
    let loaded = read_settled(settings, cancel)
        .map(|snapshot| model::load_snapshot_cancellable(snapshot, &limits(settings), cancel));
    match loaded {
        Err(e) => {
            log::error!("{e}");
            None
        }
        Ok(loaded) if loaded.cancelled => {
            log::info!("stopping: loading {} cancelled", settings.config_dir.display());
            None
        }
        Ok(loaded) => {
            for d in &loaded.diagnostics {
                if d.is_error() {
                    log::error!("{d}");
                } else {
                    log::warn!("{d}");
                }
            }
            if loaded.has_errors() {
                log::error!(
                    "{}: invalid, nothing applied; the last good state keeps forwarding",
                    settings.config_dir.display()
                );
                None
            } else {
                Some(loaded)
            }
        }
    }
}

/// `edgeplane plan`: the writes an apply would make, against the pinned maps
/// if a data plane is running here, else against empty maps.
pub fn plan(settings: &Settings) -> u8 {
    let Some(loaded) = load_valid(settings, &Arc::default()) else { return 1 };
    let live_backend: Box<dyn MapBackend> = match datapath::open_pinned_maps(&settings.state_dir) {
        Ok(Some(maps)) => Box::new(maps),
        Ok(None) => {
            log::info!("{}: planning against empty maps", datapath::nothing_pinned(&settings.state_dir));
            Box::new(FakeMaps::new())
        }
        Err(e) => {
            eprintln!("error: {}", datapath::explain(&e));
            return 2;
        }
    };
    let live = match plan::dump_live(live_backend.as_ref(), MapId::ALL) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let epoch = match datapath::read_pinned_config(&settings.state_dir) {
        Ok(cfg) => cfg.map(|c| c.policy_epoch).unwrap_or(0),
        Err(e) => {
            eprintln!("error: {}", datapath::explain(&e));
            return 2;
        }
    };
    let desired = desired_state(&loaded, settings, &policy_node(&loaded, settings), &live, epoch);
    let p = plan::plan(&desired.maps, &live);
    for step in &p.steps {
        println!("{step}");
    }
    println!("plan: {} step(s): {}", p.steps.len(), p.summary());
    0
}

/// One pass of the pipeline against the live data plane.
struct Engine {
    settings: Settings,
    dp: Datapath,
    applied_hash: Option<u64>,
    /// The last pass was held by the mass-deletion guard.
    held: bool,
    /// Set by SIGTERM/SIGINT: a load in progress stops at once.
    cancel: Arc<AtomicBool>,
    /// What `run` serves on metrics-address.
    metrics: Arc<Metrics>,
    /// Services and backends of the last applied (or confirmed) input.
    counts: (usize, usize),
    /// `run` only: the healthCheckNodePort servers of the applied input.
    health: Option<HealthServers>,
}

#[derive(Debug, PartialEq, Eq)]
enum Pass {
    Applied,
    Unchanged,
    Refused,
    /// The input would remove most of the live state: see `guard`.
    Held,
}

impl Engine {
    fn open(settings: &Settings, wait: datapath::LockWait) -> Result<Engine> {
        let dp = Datapath::open_with(&datapath_settings(settings), wait)?;
        let metrics = Arc::new(Metrics::new(settings));
        let mut engine = Engine {
            settings: settings.clone(),
            dp,
            applied_hash: None,
            held: false,
            cancel: Arc::default(),
            metrics,
            counts: (0, 0),
            health: None,
        };
        // Keep the pinned policy epoch and flags (a restart must not reset them).
        let mut cfg = engine.dp.config()?;
        if cfg.hairpin_addr != settings.hairpin_address.octets() {
            cfg.hairpin_addr = settings.hairpin_address.octets();
            engine.dp.set_config(cfg)?;
        }
        Ok(engine)
    }

    /// One conntrack garbage-collection pass; failures are logged (the next pass retries).
    fn gc(&self) {
        match self.dp.gc_conntrack(&self.settings.conntrack_timeouts) {
            Ok(r) if r.deleted_expired + r.deleted_closed > 0 => log::info!(
                "conntrack gc: {} flows expired, {} closed removed ({} entries scanned in {:?})",
                r.deleted_expired,
                r.deleted_closed,
                r.scanned,
                r.elapsed
            ),
            Ok(r) => log::debug!("conntrack gc: nothing to remove ({} entries scanned in {:?})", r.scanned, r.elapsed),
            Err(e) => log::error!("conntrack gc: {e:#}"),
        }
    }

    /// Reads, validates, plans and applies. `force` re-plans even when the
    /// directory is unchanged (periodic resync: repairs drift in the maps).
    fn pass(&mut self, force: bool) -> Pass {
        let (started, change) = (Instant::now(), self.metrics.pass_started());
        let outcome = self.pass_inner(force, false);
        let m = match outcome {
            Pass::Applied => metrics::Outcome::Applied,
            Pass::Unchanged => metrics::Outcome::Unchanged,
            Pass::Refused => metrics::Outcome::Refused,
            Pass::Held => metrics::Outcome::Held,
        };
        self.metrics.pass_done(m, started, change, self.held);
        // A pass builds large transient structures (the parsed directory, live and
        // desired maps); hand the freed memory back so the idle daemon stays small.
        // SAFETY: malloc_trim only releases free heap pages.
        unsafe { libc::malloc_trim(0) };
        outcome
    }

    /// `one_shot`: the `apply` command, which refuses an empty input outright.
    fn pass_inner(&mut self, force: bool, one_shot: bool) -> Pass {
        let started = Instant::now();
        let mut stages = Stages::new(&self.metrics);
        let Some(loaded) = load_valid(&self.settings, &self.cancel) else {
            self.metrics.error(ErrorKind::InvalidInput);
            return Pass::Refused;
        };
        stages.mark("load");
        self.metrics.set_objects(&loaded.cluster);
        // Unchanged since the last apply: nothing to do, unless an input was
        // held since (the held mark must be cleared).
        if !force && !self.held && self.applied_hash == Some(loaded.content_hash) {
            return Pass::Unchanged;
        }
        let node = policy_node(&loaded, &self.settings);
        stages.mark("routes");
        let (live, cfg) = match (plan::dump_live(&self.dp, MapId::ALL), self.dp.config()) {
            (Ok(l), Ok(c)) => (l, c),
            (Err(e), _) => {
                log::error!("reading live maps: {e}; nothing applied");
                return Pass::Refused;
            }
            (_, Err(e)) => {
                log::error!("reading ep_cfg_v1: {e:#}; nothing applied");
                return Pass::Refused;
            }
        };
        stages.mark("dump");
        let objects = guard::object_count(&loaded.cluster);
        if !self.settings.allow_mass_delete {
            let live_entries = [MapId::Services, MapId::Backends, MapId::LocalEndpoints]
                .iter()
                .map(|m| live.get(m).map_or(0, |e| e.len()))
                .sum();
            let input = guard::Input { objects, applied_objects: cfg.applied_objects, live_entries, one_shot };
            if let Some(why) = guard::check(input) {
                log::error!("{}: {why}", self.settings.config_dir.display());
                if cfg.flags & CFG_F_INPUT_HELD == 0
                    && let Err(e) = self.dp.set_config(Config { flags: cfg.flags | CFG_F_INPUT_HELD, ..cfg })
                {
                    log::error!("recording the held input in ep_cfg_v1: {e:#}");
                }
                self.held = true;
                return Pass::Held;
            }
        }
        let desired = desired_state(&loaded, &self.settings, &node, &live, cfg.policy_epoch);
        stages.mark("compile");
        if self.applied_hash != Some(loaded.content_hash) {
            for w in &desired.warnings {
                log::warn!("{w}");
            }
        }
        if let Err(errors) = plan::check_capacity(&desired.maps, &live, |m| self.dp.capacity(m)) {
            for e in errors {
                log::error!("{e}");
            }
            self.metrics.error(ErrorKind::Capacity);
            return Pass::Refused;
        }
        // The node's SNAT address and DSR flag, before any frontend that needs them.
        if let Err(e) = self.dp.set_node(node_config(&self.settings)) {
            log::error!("{e:#}; the next pass retries");
            return Pass::Refused;
        }
        let p: Plan = plan::plan(&desired.maps, &live);
        stages.mark("plan");
        let counts = (desired.services, desired.backends);
        let policy_flag = if desired.policy.enabled { CFG_F_POLICY } else { 0 };
        let flags_stale = cfg.flags & CFG_F_POLICY != policy_flag;
        if p.is_empty() && desired.policy.switch_epoch.is_none() && !flags_stale {
            if let Err(e) = self.record_applied(objects) {
                log::error!("{e:#}; the next pass retries");
                return Pass::Refused;
            }
            self.applied_hash = Some(loaded.content_hash);
            self.counts = counts;
            self.serve_health(&desired.health_checks);
            return Pass::Unchanged;
        }
        let drift = self.applied_hash == Some(loaded.content_hash);
        let mut steps = match apply::apply(&p, &mut self.dp) {
            Ok(steps) => steps,
            Err(e) => {
                log::error!("apply failed: {e}");
                return Pass::Refused;
            }
        };
        // Policy changes take effect at once for every flow: switch the epoch (and
        // the enforcement flag) in one write, then drop what only the old epoch used.
        let epoch = desired.policy.switch_epoch.unwrap_or(cfg.policy_epoch);
        if desired.policy.switch_epoch.is_some() || flags_stale {
            let new_cfg = Config { policy_epoch: epoch, flags: (cfg.flags & !CFG_F_POLICY) | policy_flag, ..cfg };
            if let Err(e) = self.dp.set_config(new_cfg) {
                log::error!("switching policy epoch: {e:#}; the next pass retries");
                return Pass::Refused;
            }
        }
        if desired.policy.switch_epoch.is_some() {
            match self.settle_policy(&loaded, &node, plan::applied(live, &p), epoch) {
                Ok(n) => steps += n,
                Err(e) => {
                    log::error!("removing superseded policy entries: {e:#}; the next pass retries");
                    return Pass::Refused;
                }
            }
        }
        if let Err(e) = self.record_applied(objects) {
            log::error!("{e:#}; the next pass retries");
            return Pass::Refused;
        }
        stages.mark("apply");
        log::debug!("pass stages: {stages}");
        self.applied_hash = Some(loaded.content_hash);
        self.counts = counts;
        self.serve_health(&desired.health_checks);
        let what = if drift { "repaired drift in the live maps" } else { "applied" };
        let version = loaded.version.as_deref().map(|v| format!(" (version {v})")).unwrap_or_default();
        log::info!(
            "{what}{version}: {} services, {} backends, {} policy endpoints; {}; {steps} writes in {:.1} ms",
            desired.services,
            desired.backends,
            desired.policy.endpoints.len(),
            p.summary(),
            started.elapsed().as_secs_f64() * 1000.0
        );
        Pass::Applied
    }

    /// Serve the healthCheckNodePorts of the applied input (`run` only).
    fn serve_health(&mut self, checks: &[compile::HealthCheck]) {
        let Some(servers) = self.health.as_mut() else { return };
        let wanted: BTreeMap<u16, ServiceHealth> = checks
            .iter()
            .map(|c| {
                let health = ServiceHealth {
                    namespace: c.namespace.clone(),
                    name: c.name.clone(),
                    local_endpoints: c.local_endpoints,
                };
                (c.node_port, health)
            })
            .collect();
        for problem in servers.reconcile(&self.settings.node_ips, &wanted) {
            log::warn!("{problem}; retried at the next pass");
        }
    }

    /// Remembers the applied input's size for the mass-deletion guard (across
    /// restarts: it lives in ep_cfg_v1) and clears a held mark.
    fn record_applied(&mut self, objects: u32) -> Result<()> {
        let cfg = self.dp.config()?;
        let was_held = cfg.flags & CFG_F_INPUT_HELD != 0;
        if cfg.applied_objects != objects || was_held {
            let cfg = Config { applied_objects: objects, flags: cfg.flags & !CFG_F_INPUT_HELD, ..cfg };
            self.dp.set_config(cfg).context("recording the applied input in ep_cfg_v1")?;
        }
        if was_held || self.held {
            log::info!("input accepted again ({objects} objects): no longer held");
        }
        self.held = false;
        Ok(())
    }

    /// Second half of a policy switch: with the new epoch live, entries that
    /// only the old epoch used are deleted.
    fn settle_policy(
        &mut self,
        loaded: &Loaded,
        node: &PolicyNode,
        live: BTreeMap<MapId, Entries>,
        epoch: u32,
    ) -> Result<usize> {
        let settled = compile_policy::compile(&loaded.cluster, node, &live, epoch);
        let p = plan::plan(&settled.maps, &live);
        Ok(apply::apply(&p, &mut self.dp)?)
    }
}

/// Wall time per pipeline stage, for the debug log and the metrics.
struct Stages {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
    metrics: Arc<Metrics>,
}

impl Stages {
    fn new(metrics: &Arc<Metrics>) -> Self {
        Stages { last: Instant::now(), done: Vec::new(), metrics: metrics.clone() }
    }
    fn mark(&mut self, stage: &'static str) {
        let now = Instant::now();
        self.metrics.observe_stage(stage, now - self.last);
        self.done.push((stage, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (stage, d)) in self.done.iter().enumerate() {
            write!(f, "{}{stage} {:.1} ms", if i > 0 { ", " } else { "" }, d.as_secs_f64() * 1000.0)?;
        }
        Ok(())
    }
}

/// `edgeplane apply`
pub fn apply(settings: &Settings) -> u8 {
    if let Err(e) = datapath::require_privileges("apply") {
        log::error!("{e:#}");
        return 2;
    }
    // Unlike `run`, which waits for it: a one-shot command fails at once,
    // before touching the node.
    if !settings.config_dir.exists() {
        log::error!("{}: no such directory; nothing applied", settings.config_dir.display());
        return 2;
    }
    let mut engine = match Engine::open(settings, datapath::LockWait::Upto(datapath::DEFAULT_LOCK_WAIT)) {
        Ok(e) => e,
        Err(e) => {
            log::error!("{}", datapath::explain(&e));
            return 2;
        }
    };
    let pass = engine.pass_inner(true, true);
    engine.gc();
    // The maps are applied for the interfaces that are attached; one that could
    // not be (its previous link, if any, keeps forwarding) still fails the command.
    if !engine.dp.failures().is_empty() {
        log::error!(
            "not everything is attached (see above): an interface keeps its previous link, a missing \
             cgroup gets its hooks once it exists (`run`): exit status 1"
        );
        return 1;
    }
    match pass {
        Pass::Applied => 0,
        Pass::Unchanged => {
            log::info!("already up to date: no changes");
            0
        }
        Pass::Refused => 1,
        Pass::Held => 3,
    }
}

enum Event {
    Files,
    Rescan,
    Links,
    Reload,
    Stop,
}

/// `edgeplane run`: apply, then follow the directory, interfaces and signals.
/// SIGTERM/SIGINT exit leaving everything pinned: forwarding never stops.
/// `reload` rebuilds the settings (defaults + file + command line) on SIGHUP.
pub fn run(settings: &Settings, reload: &dyn Fn() -> Result<Settings, String>) -> u8 {
    if let Err(e) = datapath::require_privileges("run") {
        log::error!("{e:#}");
        return 2;
    }
    match run_loop(settings, reload) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{}", datapath::explain(&e));
            1
        }
    }
}

/// The systemd STATUS= line for a pass's outcome.
fn status_line(engine: &Engine, pass: &Pass) -> String {
    let (services, backends) = engine.counts;
    match pass {
        Pass::Applied | Pass::Unchanged => format!("applied: {services} services, {backends} backends"),
        Pass::Refused => "input invalid or not applied (see the log): the last good state keeps forwarding".to_string(),
        Pass::Held => {
            "input held: it would remove most of the live state; the last applied state keeps forwarding".to_string()
        }
    }
}

/// The watched directory does not exist (yet): git-sync may not have cloned.
/// Nothing is applied; the pinned state keeps forwarding until it appears.
fn waiting_line(settings: &Settings) -> String {
    format!("waiting for {} to appear; the pinned state keeps forwarding", settings.config_dir.display())
}

/// One pass, unless the directory is missing; returns the STATUS= line.
fn pass_or_wait(engine: &mut Engine, force: bool) -> String {
    if !engine.settings.config_dir.exists() {
        let line = waiting_line(&engine.settings);
        log::warn!("{line}");
        return line;
    }
    let pass = engine.pass(force);
    status_line(engine, &pass)
}

/// SIGHUP: rebuild the settings; what can change at run time takes effect,
/// what cannot is reported; an invalid file leaves the running settings as they are.
fn reload_settings(engine: &mut Engine, reload: &dyn Fn() -> Result<Settings, String>) {
    let new = match reload() {
        Ok(s) => s,
        Err(e) => {
            log::error!("SIGHUP: settings not re-read, the running settings stay in effect: {e}");
            return;
        }
    };
    let r = config::reload(&engine.settings, new);
    for name in &r.needs_restart {
        log::warn!(
            "SIGHUP: {name} changed, which needs a restart (systemctl restart edgeplane); until then the \
             running value stays in effect"
        );
    }
    let interfaces = r.changed.iter().any(|n| n.ends_with("-interfaces"));
    let hairpin = r.settings.hairpin_address != engine.settings.hairpin_address;
    engine.settings = r.settings;
    if !r.changed.is_empty() {
        // The pass that follows counts as a new input: its warnings (e.g. about
        // node-name) are logged again under the new settings.
        engine.applied_hash = None;
    }
    if hairpin {
        let set = engine.dp.config().and_then(|cfg| {
            engine.dp.set_config(Config { hairpin_addr: engine.settings.hairpin_address.octets(), ..cfg })
        });
        if let Err(e) = set {
            log::error!("SIGHUP: hairpin-address: {e:#}");
        }
    }
    if interfaces {
        let s = &engine.settings;
        engine.dp.set_interfaces(s.workload_interfaces.clone(), s.host_interfaces.clone());
        match engine.dp.sync_interfaces() {
            Ok(attached) if !attached.is_empty() => log::info!("attached to {}", attached.join(", ")),
            Ok(_) => {}
            Err(e) => log::error!("attaching to interfaces: {e:#}"),
        }
    }
    if r.changed.is_empty() {
        log::info!("SIGHUP: settings re-read: nothing changed that applies at run time");
    } else {
        log::info!("SIGHUP: settings re-read: now in effect: {}", r.changed.join(", "));
    }
}

/// The start-up line of `run`: version, input, state, attached interfaces
/// with their tc mode, and the socket-LB cgroup.
pub fn running_line(settings: &Settings, attached: &[(String, datapath::TcMode)]) -> String {
    let ifaces = if attached.is_empty() {
        "none".to_string()
    } else {
        let mode = |m: &datapath::TcMode| match m {
            datapath::TcMode::Tcx => "tcx",
            datapath::TcMode::Clsact => "clsact",
        };
        attached.iter().map(|(n, m)| format!("{n} ({})", mode(m))).collect::<Vec<_>>().join(", ")
    };
    let cgroup = settings.cgroup.as_ref().map_or("none".to_string(), |c| c.display().to_string());
    format!(
        "running: edgeplane {}, watching {}, state in {}, interfaces: {ifaces}, cgroup: {cgroup}",
        env!("CARGO_PKG_VERSION"),
        settings.config_dir.display(),
        settings.state_dir.display()
    )
}

fn run_loop(settings: &Settings, reload: &dyn Fn() -> Result<Settings, String>) -> Result<()> {
    // Signals first: a SIGHUP or SIGTERM during start-up must not kill the daemon
    // with its default action.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("installing signal handlers")?;
    // Each pass allocates and frees hundreds of MB at 100k services. Two arenas
    // (one per loader thread: one arena halves parse speed) and a fixed mmap
    // threshold (glibc otherwise raises it after the first big free) let that
    // memory go back to the kernel: measured 24-34 MB resident between passes
    // at 100k services, against 45-105 MB with glibc's defaults.
    // SAFETY: mallopt only tunes the allocator; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
    let notifier = Notifier::from_env();
    // One daemon per state directory: a second `run` fails here at once.
    let mut engine = Engine::open(settings, datapath::LockWait::Fail)?;
    engine.health = Some(HealthServers::new());
    let (tx, rx) = mpsc::channel::<Event>();

    let sig_tx = tx.clone();
    let cancel = engine.cancel.clone();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let event = if sig == signal_hook::consts::SIGHUP { Event::Reload } else { Event::Stop };
            if matches!(event, Event::Stop) {
                // A pass in progress stops loading at once (within milliseconds).
                cancel.store(true, Ordering::Relaxed);
            }
            if sig_tx.send(event).is_err() {
                break;
            }
        }
    });

    // A directory that does not exist yet (git-sync has not cloned) is waited
    // for: checked every second, then watched; its appearance starts a pass.
    let dir = settings.config_dir.clone();
    let watcher = if dir.exists() {
        Some(Watcher::new(std::slice::from_ref(&dir)).with_context(|| format!("watching {}", dir.display()))?)
    } else {
        None
    };
    let fs_tx = tx.clone();
    let watch_metrics = engine.metrics.clone();
    std::thread::spawn(move || {
        let mut watcher = match watcher {
            Some(w) => w,
            None => loop {
                std::thread::sleep(Duration::from_secs(1));
                if !dir.exists() {
                    continue;
                }
                match Watcher::new(std::slice::from_ref(&dir)) {
                    Ok(w) => {
                        log::info!("{} appeared: reading it", dir.display());
                        if fs_tx.send(Event::Files).is_err() {
                            return;
                        }
                        break w;
                    }
                    Err(e) => log::error!("watching {}: {e}; retrying in a second", dir.display()),
                }
            },
        };
        loop {
            watch_metrics.watcher_beat();
            let event = match watcher.wait_for_change(Duration::from_secs(1)) {
                WatchEvent::Changed => Event::Files,
                WatchEvent::Rescan => Event::Rescan,
                WatchEvent::Timeout => continue,
            };
            watch_metrics.files_changed(watcher.burst_start());
            if fs_tx.send(event).is_err() {
                break;
            }
        }
        watch_metrics.watcher_stopped();
    });

    let mut links = datapath::LinkEvents::new().context("subscribing to netlink link events")?;
    let link_tx = tx;
    std::thread::spawn(move || {
        loop {
            if links.wait(Duration::from_secs(1)) && link_tx.send(Event::Links).is_err() {
                break;
            }
        }
    });

    if !engine.dp.failures().is_empty() {
        engine.metrics.error(ErrorKind::AttachFailed);
    }
    // Bound in the daemon's network namespace: main's --netns setns came first.
    if let Some(addr) = settings.metrics_address {
        metrics::serve(addr, engine.metrics.clone(), settings.state_dir.clone());
    }
    // Ready once the first pass is over, whatever its outcome: the programs are
    // attached and forward the pinned state (just applied, or the last good one
    // when the input is invalid, held or not there yet); STATUS= says which.
    // Waiting for a good input instead would let systemd's start timeout kill
    // a daemon whose data plane works.
    let status = pass_or_wait(&mut engine, true);
    notifier.ready(&status);
    log::info!("{}", running_line(settings, &engine.dp.attached()));
    let mut next_resync = Instant::now() + engine.settings.resync_interval;
    let mut next_gc = Instant::now();
    // Kicked from this loop only: a loop stuck in a pass misses its kicks and
    // systemd restarts the daemon (the pinned state keeps forwarding meanwhile).
    let kick = notifier.watchdog_interval();
    let mut next_kick = Instant::now();
    loop {
        engine.metrics.loop_beat();
        if let Some(every) = kick
            && Instant::now() >= next_kick
        {
            notifier.watchdog();
            next_kick = Instant::now() + every;
        }
        if Instant::now() >= next_gc {
            engine.gc();
            next_gc = Instant::now() + engine.settings.conntrack_gc_interval;
        }
        let mut wake = next_resync.min(next_gc);
        if kick.is_some() {
            wake = wake.min(next_kick);
        }
        let status = match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(Event::Files) => pass_or_wait(&mut engine, false),
            Ok(Event::Rescan) => {
                log::warn!("watch queue overflowed or failed: full rescan");
                pass_or_wait(&mut engine, true)
            }
            Ok(Event::Links) => {
                match engine.dp.sync_interfaces() {
                    Ok(attached) if !attached.is_empty() => log::info!("attached to {}", attached.join(", ")),
                    Ok(_) => {}
                    Err(e) => {
                        log::error!("attaching to new interfaces: {e:#}");
                        engine.metrics.error(ErrorKind::AttachFailed);
                    }
                }
                continue;
            }
            Ok(Event::Reload) => {
                notifier.send_reloading();
                reload_settings(&mut engine, reload);
                next_resync = next_resync.min(Instant::now() + engine.settings.resync_interval);
                next_gc = next_gc.min(Instant::now() + engine.settings.conntrack_gc_interval);
                log::info!("SIGHUP: re-reading {}", engine.settings.config_dir.display());
                let status = pass_or_wait(&mut engine, true);
                notifier.ready(&status);
                continue;
            }
            Ok(Event::Stop) => {
                notifier.stopping();
                log::info!("stopping; programs, links and maps stay pinned and keep forwarding");
                return Ok(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < next_resync => continue, // gc or kick due
            Err(mpsc::RecvTimeoutError::Timeout) => {
                next_resync = Instant::now() + engine.settings.resync_interval;
                if let Err(e) = engine.dp.sync_interfaces() {
                    log::error!("attaching to interfaces: {e:#}");
                    engine.metrics.error(ErrorKind::AttachFailed);
                }
                pass_or_wait(&mut engine, true)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("event sources stopped"),
        };
        notifier.status(&status);
    }
}

/// `edgeplane status`
pub fn status(settings: &Settings, json: bool) -> u8 {
    let status = match datapath::read_status(&settings.state_dir) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("error: {}", datapath::explain(&e));
            return 2;
        }
    };
    let held = match datapath::read_pinned_config(&settings.state_dir) {
        Ok(cfg) => cfg.is_some_and(|c| c.flags & CFG_F_INPUT_HELD != 0),
        Err(e) => {
            eprintln!("error: {}", datapath::explain(&e));
            return 2;
        }
    };
    if json {
        let mut value = match serde_json::to_value(&status) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        if let Some(obj) = value.as_object_mut() {
            obj.insert("input_held".into(), held.into());
        }
        match serde_json::to_string_pretty(&value) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        }
    } else {
        print!("{status}");
        if held {
            println!(
                "\ninput: HELD: the latest input would remove most of the live state and was not applied; \
                 the last applied state keeps forwarding (the log says why; {})",
                guard::HOW_TO_CLEAR
            );
        } else {
            println!("\ninput: applied");
        }
    }
    0
}

/// `edgeplane drops`
pub fn drops(settings: &Settings, json: bool, count: usize) -> u8 {
    match datapath::recent_drops(&settings.state_dir, count) {
        Ok(mut events) => {
            name_endpoints(settings, &mut events);
            if json {
                match serde_json::to_string_pretty(&events) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return 2;
                    }
                }
            } else if events.is_empty() {
                println!("no drops recorded");
            } else {
                for e in &events {
                    println!("{e}");
                }
            }
            if !json && let Ok(n @ 1..) = datapath::conntrack_insert_failed(&settings.state_dir) {
                println!("conntrack-insert-failed: {n} new flows found the conntrack table full (see `status`)");
            }
            0
        }
        Err(e) => {
            eprintln!("error: {}", datapath::explain(&e));
            2
        }
    }
}

/// Names the pods behind policy drops' endpoint ids, from the config dir and
/// the pinned ep_lep_v1, when both are readable (best effort: ids stay).
fn name_endpoints(settings: &Settings, events: &mut [datapath::DropEvent]) {
    if !events.iter().any(|e| e.endpoint != 0) {
        return;
    }
    let Ok(loaded) = model::load_dirs(std::slice::from_ref(&settings.config_dir), &limits(settings)) else { return };
    let Ok(Some(maps)) = datapath::open_pinned_maps(&settings.state_dir) else { return };
    let Ok(lep) = maps.dump(MapId::LocalEndpoints) else { return };
    let names = compile_policy::endpoint_names(&loaded.cluster, &lep);
    for e in events.iter_mut() {
        e.pod = names.get(&e.endpoint).cloned();
    }
}

/// `edgeplane reset`
pub fn reset(settings: &Settings) -> u8 {
    if let Err(e) = datapath::require_privileges("reset") {
        log::error!("{e:#}");
        return 2;
    }
    match datapath::reset(&settings.state_dir) {
        Ok(()) => {
            log::info!("reset: detached and unpinned everything under {}", settings.state_dir.display());
            0
        }
        Err(e) => {
            log::error!("{}", datapath::explain(&e));
            2
        }
    }
}
