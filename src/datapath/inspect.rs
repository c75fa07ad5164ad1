//! Read-only dumps of the pinned maps behind `edgeplane services` and
//! `edgeplane conntrack` (no lock, no programs loaded, like `status`).

use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{Context, Result, bail};
use libbpf_rs::{MapCore, MapHandle};

use super::MAP_CT;
use super::mapio::{dump, for_each};
use crate::maps::layout::{CtKey, CtValue};
use crate::maps::{Entries, MapId};

fn open_ro(state_dir: &Path, name: &str) -> Result<MapHandle> {
    let path = state_dir.join(name);
    if !path.exists() {
        bail!("{name} is not pinned under {} (pinned by another version?)", state_dir.display());
    }
    MapHandle::from_pinned_path_with_file_flags(&path, libbpf_sys::BPF_F_RDONLY)
        .with_context(|| format!("opening {} read-only", path.display()))
}

fn dump_sized(h: &MapHandle, name: &str, key: usize, value: usize) -> Result<Entries> {
    if h.key_size() as usize != key || h.value_size() as usize != value {
        bail!(
            "{name}: key/value sizes {}/{} differ from this build's {key}/{value} (another version pinned it)",
            h.key_size(),
            h.value_size()
        );
    }
    dump(h.as_fd(), key, value).with_context(|| format!("reading {name}"))
}

/// ep_svc_v1 and ep_be_v1 as raw entries.
pub fn read_service_maps(state_dir: &Path) -> Result<(Entries, Entries)> {
    super::ensure_pinned(state_dir)?;
    let mut out = Vec::new();
    for id in [MapId::Services, MapId::Backends] {
        let h = open_ro(state_dir, id.pin_name())?;
        out.push(dump_sized(&h, id.pin_name(), id.key_size(), id.value_size())?);
    }
    let be = out.pop().unwrap_or_default();
    let svc = out.pop().unwrap_or_default();
    Ok((svc, be))
}

/// Every ep_ct4_v2 entry, and CLOCK_MONOTONIC (the clock of last_seen_ns)
/// read just after the dump.
pub fn read_conntrack(state_dir: &Path) -> Result<(Vec<(CtKey, CtValue)>, u64)> {
    super::ensure_pinned(state_dir)?;
    let h = open_ro(state_dir, MAP_CT)?;
    if h.key_size() as usize != CtKey::SIZE || h.value_size() as usize != CtValue::SIZE {
        bail!("{MAP_CT}: key/value sizes {}/{} differ from this build's", h.key_size(), h.value_size());
    }
    let mut entries = Vec::new();
    for_each(h.as_fd(), CtKey::SIZE, CtValue::SIZE, |k, v| {
        if let (Some(k), Some(v)) = (CtKey::from_bytes(k), CtValue::from_bytes(v)) {
            entries.push((k, v));
        }
    })
    .with_context(|| format!("reading {MAP_CT}"))?;
    Ok((entries, super::status::monotonic_ns()))
}
