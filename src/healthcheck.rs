//! healthCheckNodePort servers, as kube-proxy's service health server: for
//! each LoadBalancer service with `externalTrafficPolicy: Local` and a
//! `healthCheckNodePort`, `edgeplane run` answers HTTP on that port, on each
//! node address (every address when `node-ips` is empty, as kube-proxy
//! without --nodeport-addresses): 200 while this node has local endpoints,
//! 503 otherwise, with `{"service":{"namespace":..,"name":..},
//! "localEndpoints":N,"serviceProxyHealthy":true}`. Any path gets the answer
//! (kube-proxy does not route by path). Cloud and MetalLB-style load
//! balancers probe it to send traffic only to nodes that have endpoints.
//!
//! One thread per listening socket, accepting without blocking so that it
//! notices being stopped; each connection is answered with short timeouts,
//! so a client that sends nothing holds it at most `IO_TIMEOUT`. Counts are
//! shared state: a changed count is served by the same socket.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a health-check port reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    pub namespace: String,
    pub name: String,
    pub local_endpoints: u32,
}

const IO_TIMEOUT: Duration = Duration::from_secs(2);
const ACCEPT_POLL: Duration = Duration::from_millis(100);

struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The running health-check servers.
#[derive(Default)]
pub struct HealthServers {
    state: Arc<RwLock<BTreeMap<u16, ServiceHealth>>>,
    listeners: BTreeMap<SocketAddr, Listener>,
}

impl HealthServers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve exactly the ports of `wanted` on each of `addrs` (none: every
    /// address). Returns the problems (ports that could not be bound) for the
    /// log; they are retried at the next call.
    pub fn reconcile(&mut self, addrs: &[IpAddr], wanted: &BTreeMap<u16, ServiceHealth>) -> Vec<String> {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = wanted.clone();
        let ips: Vec<IpAddr> = if addrs.is_empty() { vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)] } else { addrs.to_vec() };
        let want: Vec<SocketAddr> =
            wanted.keys().flat_map(|port| ips.iter().map(move |ip| SocketAddr::new(*ip, *port))).collect();
        self.listeners.retain(|addr, _| want.contains(addr));
        let mut problems = Vec::new();
        for addr in want {
            if self.listeners.contains_key(&addr) {
                continue;
            }
            match self.listen(addr) {
                Ok(l) => {
                    self.listeners.insert(addr, l);
                }
                Err(e) => problems.push(format!("healthCheckNodePort {addr}: {e}")),
            }
        }
        problems
    }

    /// The addresses being served.
    pub fn serving(&self) -> Vec<SocketAddr> {
        self.listeners.keys().copied().collect()
    }

    fn listen(&self, addr: SocketAddr) -> std::io::Result<Listener> {
        let socket = TcpListener::bind(addr)?;
        socket.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (state, flag) = (self.state.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("health-{}", addr.port()))
            .spawn(move || accept_loop(&socket, addr.port(), &state, &flag))?;
        Ok(Listener { stop, thread: Some(thread) })
    }
}

fn accept_loop(socket: &TcpListener, port: u16, state: &RwLock<BTreeMap<u16, ServiceHealth>>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match socket.accept() {
            Ok((mut stream, _)) => {
                let health = state.read().unwrap_or_else(|e| e.into_inner()).get(&port).cloned();
                answer(&mut stream, health.as_ref());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

/// Reads the request head (bounded in size and time, as /metrics does), then answers.
fn answer(stream: &mut TcpStream, health: Option<&ServiceHealth>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    if crate::metrics::read_head(stream, Instant::now() + IO_TIMEOUT).is_ok() {
        let _ = stream.write_all(response(health).as_bytes());
    }
}

/// The HTTP response for a port's current state.
fn response(health: Option<&ServiceHealth>) -> String {
    let (status, body) = match health {
        Some(h) => {
            let body = serde_json::json!({
                "service": {"namespace": h.namespace, "name": h.name},
                "localEndpoints": h.local_endpoints,
                "serviceProxyHealthy": true,
            });
            let status = if h.local_endpoints > 0 { "200 OK" } else { "503 Service Unavailable" };
            (status, body.to_string())
        }
        // A port being closed down: no service behind it any more.
        None => ("503 Service Unavailable", "{}".to_string()),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
    }

    fn get(port: u16) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    fn wanted(port: u16, local: u32) -> BTreeMap<u16, ServiceHealth> {
        BTreeMap::from([(port, ServiceHealth { namespace: "demo".into(), name: "web".into(), local_endpoints: local })])
    }

    const LOCALHOST: [IpAddr; 1] = [IpAddr::V4(Ipv4Addr::LOCALHOST)];

    #[test]
    fn answers_200_then_503_on_the_same_socket_then_closes() {
        let port = free_port();
        let mut hs = HealthServers::new();
        assert!(hs.reconcile(&LOCALHOST, &wanted(port, 2)).is_empty());
        let r = get(port).expect("served");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: application/json") && r.contains("X-Content-Type-Options: nosniff"), "{r}");
        let body: serde_json::Value = serde_json::from_str(r.split("\r\n\r\n").nth(1).expect("body")).expect("json");
        assert_eq!(body["service"]["namespace"], "demo");
        assert_eq!(body["service"]["name"], "web");
        assert_eq!(body["localEndpoints"], 2);
        let before = hs.serving();
        assert!(hs.reconcile(&LOCALHOST, &wanted(port, 0)).is_empty());
        assert_eq!(hs.serving(), before, "same listener");
        assert!(get(port).expect("served").starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        hs.reconcile(&LOCALHOST, &BTreeMap::new());
        assert!(hs.serving().is_empty());
        assert!(get(port).is_err(), "closed once no longer wanted");
    }

    #[test]
    fn a_taken_port_is_reported_and_retried() {
        let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = busy.local_addr().expect("addr").port();
        let mut hs = HealthServers::new();
        let problems = hs.reconcile(&LOCALHOST, &wanted(port, 1));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains(&port.to_string()), "{problems:?}");
        drop(busy);
        assert!(hs.reconcile(&LOCALHOST, &wanted(port, 1)).is_empty());
        assert!(get(port).expect("served").starts_with("HTTP/1.1 200 OK"));
    }

    #[test]
    fn a_silent_client_does_not_block_the_next_one_for_long() {
        let port = free_port();
        let mut hs = HealthServers::new();
        hs.reconcile(&LOCALHOST, &wanted(port, 1));
        let _silent = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        // The silent client is dropped after IO_TIMEOUT; the next one is then served.
        assert!(get(port).expect("served after the silent one times out").starts_with("HTTP/1.1 200"));
    }
}
