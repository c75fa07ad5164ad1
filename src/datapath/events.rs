//! `edgeplane monitor`'s side of bpf(2): the lease in ep_monitor_v1 that
//! makes the programs emit, and the ep_events_v1 ring buffer they emit into.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use libbpf_rs::{MapCore, MapFlags, MapHandle, RingBufferBuilder};

use crate::maps::layout::{Event, MONITOR_LEASE_NS, Monitor};

pub use crate::maps::layout::{MAP_EVENTS, MAP_MONITOR};

/// Renewed this often, well inside the lease, so events never pause.
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// Longest wait in one poll: how soon `stop` is noticed.
const POLL: Duration = Duration::from_millis(200);

/// A lease on the programs' events; released (events off) when dropped.
pub struct EventSource {
    events: MapHandle,
    monitor: MapHandle,
    flags: u32,
}

impl EventSource {
    /// Opens the pinned ring buffer and lease map; `flags` = MON_F_* wanted.
    pub fn open(state_dir: &Path, flags: u32) -> Result<EventSource> {
        super::ensure_pinned(state_dir)?;
        let open = |name: &str| -> Result<MapHandle> {
            let path = state_dir.join(name);
            if !path.exists() {
                bail!(
                    "{name} is not pinned under {}: the running data plane predates `monitor` \
                     (restart the service or run `edgeplane apply` once)",
                    state_dir.display()
                );
            }
            MapHandle::from_pinned_path(&path).with_context(|| format!("opening {}", path.display()))
        };
        let events = open(MAP_EVENTS)?;
        let monitor = open(MAP_MONITOR)?;
        if monitor.value_size() as usize != Monitor::SIZE {
            bail!("{MAP_MONITOR}: value size {} differs from this build's {}", monitor.value_size(), Monitor::SIZE);
        }
        let source = EventSource { events, monitor, flags };
        source.write_lease(super::status::monotonic_ns() + MONITOR_LEASE_NS)?;
        Ok(source)
    }

    fn write_lease(&self, until_ns: u64) -> Result<()> {
        let value = Monitor { until_ns, flags: if until_ns == 0 { 0 } else { self.flags }, _pad0: 0 };
        self.monitor
            .update(&0u32.to_ne_bytes(), &value.to_bytes(), MapFlags::ANY)
            .with_context(|| format!("writing {MAP_MONITOR}"))
    }

    /// Calls `on_event` for each event until it returns false or `stop()`
    /// is true, renewing the lease meanwhile.
    pub fn follow(&self, stop: &dyn Fn() -> bool, on_event: &mut dyn FnMut(Event) -> bool) -> Result<()> {
        let mut builder = RingBufferBuilder::new();
        let cb = |data: &[u8]| -> i32 {
            // Records are exactly struct ep_event; anything else is skipped.
            let Some(ev) = data.get(..Event::SIZE).and_then(Event::from_bytes) else { return 0 };
            // A negative return ends the poll with it (libbpf): "enough".
            if on_event(ev) { 0 } else { -libc::ECANCELED }
        };
        builder.add(&self.events, cb).with_context(|| format!("opening the ring buffer {MAP_EVENTS}"))?;
        let ring = builder.build().context("mapping the ring buffer")?;
        let mut renewed = Instant::now();
        loop {
            match ring.poll_raw(POLL) {
                rc if rc == -libc::ECANCELED => return Ok(()),
                rc if rc < 0 && rc != -libc::EINTR => {
                    bail!("polling {MAP_EVENTS}: {}", std::io::Error::from_raw_os_error(-rc))
                }
                _ => {}
            }
            if stop() {
                return Ok(());
            }
            if renewed.elapsed() >= RENEW_EVERY {
                self.write_lease(super::status::monotonic_ns() + MONITOR_LEASE_NS)?;
                renewed = Instant::now();
            }
        }
    }
}

impl Drop for EventSource {
    /// Events off at once (a killed monitor's lease runs out by itself).
    fn drop(&mut self) {
        if let Err(e) = self.write_lease(0) {
            log::warn!("{e:#}");
        }
    }
}
