//! Command line: argument parsing and wiring only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use edgeplane::config::{self, Settings};
use edgeplane::{daemon, inspect};

#[derive(Parser)]
#[command(
    name = "edgeplane",
    version,
    about = "eBPF service load balancing and NetworkPolicy from a directory of Kubernetes YAML"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand accepts, before or after its name.
#[derive(Args)]
struct Global {
    /// Enter the network namespace /run/netns/NAME (setns) before anything else.
    #[arg(long, global = true, value_name = "NAME")]
    netns: Option<String>,
    /// bpffs directory holding the pinned maps, programs and links [default: /sys/fs/bpf/edgeplane]
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// This node's name (internalTrafficPolicy: Local, which pods policy enforces here).
    #[arg(long, global = true, value_name = "NAME")]
    node_name: Option<String>,
    /// This node's address (repeatable): NodePorts are served on it; the first
    /// IPv4 one is the source of source-NATed external flows (setting `node-ips`).
    #[arg(long = "node-ip", global = true, value_name = "ADDR")]
    node_ips: Vec<std::net::IpAddr>,
    /// Direct Server Return for external flows to other nodes' endpoints (setting `dsr`).
    #[arg(long, global = true)]
    dsr: bool,
    /// How translated packets leave: bpf (BPF redirects, skipping the IP
    /// stack) or kernel (through it) (setting `host-routing`) [default: bpf]
    #[arg(long, global = true, value_name = "MODE", value_parser = parse_host_routing)]
    host_routing: Option<config::HostRouting>,
    /// Which sockets of --cgroup are translated at connect()/sendmsg(): all,
    /// host-only (the node's namespace; pods are left to tc) or off
    /// (setting `socket-lb`) [default: all]
    #[arg(long, global = true, value_name = "SCOPE", value_parser = parse_socket_lb)]
    socket_lb: Option<config::SocketLb>,
    /// Pod-facing interfaces (glob; comma-separated or repeated) [default: veth*]
    #[arg(long, global = true, value_name = "GLOB", value_delimiter = ',')]
    workload_interfaces: Vec<String>,
    /// Uplink interfaces (glob; comma-separated or repeated); no default.
    #[arg(long, global = true, value_name = "GLOB", value_delimiter = ',')]
    host_interfaces: Vec<String>,
    /// cgroup v2 directory whose processes get socket-level service translation.
    #[arg(long, global = true, value_name = "PATH")]
    cgroup: Option<PathBuf>,
    /// Settings file (YAML) [default: /etc/edgeplane/edgeplane.yaml if present]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of Kubernetes YAML [default: /etc/edgeplane/config.d]
    #[arg(long, global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Largest input file read, in bytes [default: 268435456]
    #[arg(long, global = true, value_name = "BYTES")]
    max_file_size: Option<u64>,
    /// Apply even an input that would remove most of the live state (normally
    /// held as a likely half-written file); same as `allow-mass-delete: true`.
    #[arg(long, global = true)]
    allow_mass_delete: bool,
    /// `run`: serve /metrics, /healthz and /livez on ADDR ("" disables) [default: 127.0.0.1:9964]
    #[arg(long, global = true, value_name = "ADDR")]
    metrics_address: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Validate directories of Kubernetes YAML (exit 0 valid, 1 invalid, 2 usage or I/O error).
    Check {
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        #[command(flatten)]
        output: Output,
    },
    /// Print the map writes that applying --config-dir would make.
    Plan,
    /// Apply --config-dir once and exit (0 applied, 1 invalid or failed, 3 held: the
    /// input would remove most of the live state, see --allow-mass-delete).
    Apply,
    /// Apply --config-dir, then watch it and keep the data plane in step.
    Run,
    /// Show the pinned state: maps and their fill, drops per reason, counters.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Show the most recent drops with their 5-tuple and reason.
    Drops {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        output: Output,
        /// How many of the most recent drops.
        #[arg(long, default_value_t = 50)]
        count: usize,
    },
    /// Detach every program and unpin every map, program and link.
    Reset,
    /// List the service frontends as programmed, with their backends and names.
    Services {
        #[command(flatten)]
        output: Output,
    },
    /// List tracked flows: state, age, translation (at most --limit).
    Conntrack {
        #[command(flatten)]
        output: Output,
        /// Only flows with this address on either side (client, VIP or backend).
        #[arg(long, value_name = "IP")]
        addr: Option<std::net::Ipv4Addr>,
        /// Only flows with this port on either side.
        #[arg(long, value_name = "N")]
        port: Option<u16>,
        /// Most flows printed.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Follow drops live (and with --flows new flows: translation, policy
    /// verdict) from the data plane's event ring, names resolved.
    Monitor {
        #[command(flatten)]
        output: Output,
        /// Also every new flow: its service, chosen backend, translation and policy verdict.
        #[arg(long)]
        flows: bool,
        /// Exit after N events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Exit after SECONDS.
        #[arg(long, value_name = "SECONDS")]
        duration: Option<f64>,
    },
    /// Explain what the data plane does with a new flow's first packet from
    /// SRC to DST (ADDR:PORT[/tcp|udp|sctp]): frontend, backends, translation,
    /// policy verdict and the rules behind it, from the compiled directory.
    Trace {
        #[command(flatten)]
        output: Output,
        #[arg(value_name = "SRC")]
        src: std::net::Ipv4Addr,
        #[arg(value_name = "DST")]
        dst: String,
        /// Interface the packet arrives on: workload (a pod's), host (an
        /// uplink), or auto: workload when SRC is a pod of the directory.
        #[arg(long, value_enum, default_value = "auto")]
        from: TraceFrom,
    },
    /// Show which NetworkPolicies select a pod (NAMESPACE/POD) and what they allow.
    Policy {
        #[command(flatten)]
        output: Output,
        #[arg(value_name = "NAMESPACE/POD")]
        pod: String,
    },
    /// Print the shell completion script for SHELL (the packages install them).
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) generated from this command line definition.
    #[command(hide = true)]
    Man,
}

#[derive(Clone, Copy, ValueEnum)]
enum TraceFrom {
    Auto,
    Workload,
    Host,
}

/// `-o/--output`, the same on every read-only command.
#[derive(Args)]
struct Output {
    /// Output format: text for people, json for scripts.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: Format,
}

impl Output {
    fn json(&self) -> bool {
        matches!(self.output, Format::Json)
    }
}

fn overrides(global: &Global) -> config::Overrides {
    config::Overrides {
        state_dir: global.state_dir.clone(),
        node_name: global.node_name.clone(),
        node_ips: global.node_ips.clone(),
        dsr: global.dsr,
        host_routing: global.host_routing,
        socket_lb: global.socket_lb,
        workload_interfaces: global.workload_interfaces.clone(),
        host_interfaces: global.host_interfaces.clone(),
        cgroup: global.cgroup.clone(),
        config_dir: global.config_dir.clone(),
        max_file_size: global.max_file_size,
        allow_mass_delete: global.allow_mass_delete,
    }
}

fn parse_host_routing(s: &str) -> Result<config::HostRouting, String> {
    config::HostRouting::parse(s)
}

fn parse_socket_lb(s: &str) -> Result<config::SocketLb, String> {
    config::SocketLb::parse(s)
}

/// Defaults + settings file + command-line options; `run` calls it again on SIGHUP.
fn build_settings(global: &Global) -> Result<Settings, String> {
    let file = global.config.clone().or_else(|| {
        let default = PathBuf::from(config::DEFAULT_CONFIG_FILE);
        default.exists().then_some(default)
    });
    let text = match &file {
        Some(path) => Some(edgeplane::source::read_settings_file(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let name = file.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let mut s = config::build(text.as_deref().map(|t| (name.as_str(), t)), &overrides(global))
        .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    if let Some(v) = &global.metrics_address {
        s.metrics_address = config::parse_metrics_address(v).map_err(|e| format!("--metrics-address: {e}"))?;
    }
    Ok(s)
}

/// `completions` and `man`: generated from the clap definition, no settings read.
fn generate(command: &Command) -> Option<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    let written = match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut cmd, "edgeplane", &mut out);
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(cmd).render(&mut out),
        _ => return None,
    };
    Some(match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run) {
        // One-shot commands piped into `head` should end quietly, like other CLI tools.
        // SAFETY: setting a signal disposition before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if let Some(code) = generate(&cli.command) {
        return code;
    }
    daemon::init_logging();
    // setns first: everything after (bpffs, interfaces, netlink) happens in the namespace.
    if let Some(ns) = &cli.global.netns
        && let Err(e) = daemon::enter_netns(ns)
    {
        eprintln!("error: --netns {ns}: {e:#}");
        return ExitCode::from(2);
    }
    let settings = match build_settings(&cli.global) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::Run | Command::Apply)
        && let Err(e) = edgeplane::kernel::check_running(matches!(cli.command, Command::Run))
    {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let code = match cli.command {
        Command::Check { dirs, format, output } => {
            daemon::check(&dirs, &settings, matches!(format, Format::Json) || output.json())
        }
        Command::Plan => daemon::plan(&settings),
        Command::Apply => daemon::apply(&settings),
        Command::Run => daemon::run(&settings, &|| build_settings(&cli.global)),
        Command::Status { json, output } => daemon::status(&settings, json || output.json()),
        Command::Drops { json, output, count } => daemon::drops(&settings, json || output.json(), count),
        Command::Reset => daemon::reset(&settings),
        Command::Services { output } => inspect::services(&settings, output.json()),
        Command::Conntrack { output, addr, port, limit } => {
            inspect::conntrack(&settings, output.json(), &inspect::CtFilter { addr, port }, limit)
        }
        Command::Monitor { output, flows, count, duration } => edgeplane::monitor::monitor(
            &settings,
            edgeplane::monitor::MonitorOptions {
                flows,
                json: output.json(),
                count,
                duration: duration.filter(|d| d.is_finite() && *d >= 0.0).map(std::time::Duration::from_secs_f64),
            },
        ),
        Command::Trace { output, src, dst, from } => {
            let ingress = match from {
                TraceFrom::Auto => edgeplane::trace::Ingress::Auto,
                TraceFrom::Workload => edgeplane::trace::Ingress::Workload,
                TraceFrom::Host => edgeplane::trace::Ingress::Host,
            };
            edgeplane::trace::command(&settings, src, &dst, ingress, output.json())
        }
        Command::Policy { output, pod } => edgeplane::policy_view::command(&settings, &pod, output.json()),
        Command::Completions { .. } | Command::Man => unreachable!("handled by generate()"),
    };
    ExitCode::from(code)
}
