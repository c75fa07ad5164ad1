//! Raw map I/O with precise errors: batch dumps (falling back to key
//! iteration), updates and deletes that report the errno by name, per-CPU
//! sums, and the `MapBackend` over the two planned maps.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::maps::{Entries, MapBackend, MapError, MapId, render_key};

/// `E2BIG`-style name of an errno, for messages that say what happened.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EBADF => "EBADF",
        libc::E2BIG => "E2BIG",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOTSUP => "ENOTSUP",
        libc::ENOLINK => "ENOLINK",
        _ => return format!("errno {errno} ({})", io::Error::from_raw_os_error(errno)),
    };
    name.to_string()
}

fn last_errno(ret: i32) -> i32 {
    // libbpf returns -errno (and sets errno); prefer the return value.
    if ret < 0 { -ret } else { io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) }
}

/// Every (key, value) of a non-per-CPU map. Uses BPF_MAP_LOOKUP_BATCH, which
/// is one syscall per few thousand entries, and falls back to
/// get_next_key + lookup where batching is unsupported.
pub fn dump(fd: BorrowedFd<'_>, key_size: usize, value_size: usize) -> io::Result<Entries> {
    let mut out = Entries::new();
    for_each(fd, key_size, value_size, |k, v| {
        out.insert(k.to_vec(), v.to_vec());
    })?;
    Ok(out)
}

/// Calls `f` for every entry, without keeping them (for counting 1M-entry maps).
pub fn for_each(
    fd: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    mut f: impl FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    match for_each_batch(fd, key_size, value_size, &mut f) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOTSUP) | Some(524)) => {
            for_each_iter(fd, key_size, value_size, &mut f)
        }
        Err(e) => Err(e),
    }
}

fn for_each_batch(
    fd: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    f: &mut impl FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    let mut batch: u32 = 4096;
    // Hash maps use a u32 bucket cursor, arrays a key: size for both.
    let token = key_size.max(8);
    let mut in_batch: Option<Vec<u8>> = None;
    let mut out_batch = vec![0u8; token];
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    loop {
        let mut keys = vec![0u8; key_size * batch as usize];
        let mut values = vec![0u8; value_size * batch as usize];
        let mut count = batch;
        let in_ptr = in_batch.as_mut().map_or(std::ptr::null_mut(), |b| b.as_mut_ptr());
        // SAFETY: buffers are sized for `count` keys/values and a batch token.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd.as_raw_fd(),
                in_ptr.cast(),
                out_batch.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let errno = if ret < 0 { last_errno(ret) } else { 0 };
        match errno {
            0 | libc::ENOENT => {
                for i in 0..count as usize {
                    f(&keys[i * key_size..(i + 1) * key_size], &values[i * value_size..(i + 1) * value_size]);
                }
                if errno == libc::ENOENT {
                    return Ok(());
                }
                in_batch = Some(out_batch.clone());
            }
            // One hash bucket holds more entries than the batch: grow and retry.
            libc::ENOSPC if batch < 1 << 20 => batch *= 2,
            libc::EINTR => {}
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

fn for_each_iter(
    fd: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    f: &mut impl FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    let mut prev: Option<Vec<u8>> = None;
    let mut next = vec![0u8; key_size];
    let mut value = vec![0u8; value_size];
    loop {
        let prev_ptr = prev.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
        // SAFETY: key buffers have key_size bytes.
        let ret =
            unsafe { libbpf_sys::bpf_map_get_next_key(fd.as_raw_fd(), prev_ptr.cast(), next.as_mut_ptr().cast()) };
        if ret < 0 {
            let e = last_errno(ret);
            return if e == libc::ENOENT { Ok(()) } else { Err(io::Error::from_raw_os_error(e)) };
        }
        // SAFETY: value buffer has value_size bytes.
        let ret =
            unsafe { libbpf_sys::bpf_map_lookup_elem(fd.as_raw_fd(), next.as_ptr().cast(), value.as_mut_ptr().cast()) };
        if ret == 0 {
            f(&next, &value);
        }
        prev = Some(next.clone());
    }
}

/// Update one entry; Err(errno).
pub fn update(fd: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> Result<(), i32> {
    // SAFETY: the kernel reads key_size/value_size bytes; callers pass exact sizes.
    let ret = unsafe {
        libbpf_sys::bpf_map_update_elem(
            fd.as_raw_fd(),
            key.as_ptr().cast(),
            value.as_ptr().cast(),
            libbpf_sys::BPF_ANY as u64,
        )
    };
    if ret < 0 { Err(last_errno(ret)) } else { Ok(()) }
}

pub fn delete(fd: BorrowedFd<'_>, key: &[u8]) -> Result<(), i32> {
    // SAFETY: as in update.
    let ret = unsafe { libbpf_sys::bpf_map_delete_elem(fd.as_raw_fd(), key.as_ptr().cast()) };
    if ret < 0 { Err(last_errno(ret)) } else { Ok(()) }
}

/// Delete `keys` (concatenated, `key_size` bytes each) with BPF_MAP_DELETE_BATCH,
/// skipping keys that are already gone; falls back to one delete per key
/// where batching is unsupported. Returns how many were deleted.
pub fn delete_many(fd: BorrowedFd<'_>, key_size: usize, keys: &[u8]) -> io::Result<u64> {
    let total = keys.len() / key_size;
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    let (mut at, mut deleted) = (0usize, 0u64);
    while at < total {
        let mut count = u32::try_from(total - at).unwrap_or(u32::MAX);
        // SAFETY: `keys` holds `total` keys of key_size bytes; count <= total - at.
        let ret = unsafe {
            libbpf_sys::bpf_map_delete_batch(fd.as_raw_fd(), keys[at * key_size..].as_ptr().cast(), &mut count, &opts)
        };
        deleted += u64::from(count);
        at += count as usize;
        if ret >= 0 {
            continue;
        }
        match last_errno(ret) {
            // The key at `at` is gone already (the datapath removed it): skip it.
            libc::ENOENT => at += 1,
            libc::EINVAL | libc::ENOTSUP | 524 => {
                for k in keys[at * key_size..].chunks_exact(key_size) {
                    if delete(fd, k).is_ok() {
                        deleted += 1;
                    }
                }
                return Ok(deleted);
            }
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
    Ok(deleted)
}

/// Sum of a per-CPU u64 array slot over all CPUs.
pub fn percpu_sum(map: &MapHandle, index: u32) -> Result<u64> {
    let vals = map
        .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)
        .with_context(|| format!("reading {} slot {index}", map.name().to_string_lossy()))?
        .unwrap_or_default();
    Ok(vals.iter().filter_map(|v| v.get(..8)).filter_map(|b| b.try_into().ok()).map(u64::from_ne_bytes).sum())
}

/// The maps the plan engine writes (every `MapId`), opened from pins or
/// taken from a loaded object.
#[derive(Debug)]
pub struct PinnedMaps {
    handles: BTreeMap<MapId, MapHandle>,
}

impl PinnedMaps {
    pub fn new(handles: BTreeMap<MapId, MapHandle>) -> Self {
        PinnedMaps { handles }
    }

    pub fn open(state_dir: &Path) -> Result<PinnedMaps> {
        let mut handles = BTreeMap::new();
        for id in MapId::ALL {
            let p = state_dir.join(id.pin_name());
            let h = MapHandle::from_pinned_path(&p).with_context(|| format!("opening pinned map {}", p.display()))?;
            handles.insert(id, h);
        }
        Ok(PinnedMaps { handles })
    }

    fn handle(&self, map: MapId) -> Result<&MapHandle, MapError> {
        self.handles.get(&map).ok_or_else(|| MapError::Dump { map, reason: "map not loaded".into() })
    }

    fn check_sizes(&self, op: &'static str, map: MapId, key: &[u8], value: Option<&[u8]>) -> Result<(), MapError> {
        let h = self.handle(map)?;
        let bad_key = key.len() != h.key_size() as usize;
        let bad_value = value.is_some_and(|v| v.len() != h.value_size() as usize);
        if bad_key || bad_value {
            return Err(MapError::Op {
                op,
                map,
                key: render_key(map, key),
                reason: format!(
                    "size mismatch: key {} (map {}), value {:?} (map {})",
                    key.len(),
                    h.key_size(),
                    value.map(<[u8]>::len),
                    h.value_size()
                ),
            });
        }
        Ok(())
    }
}

impl MapBackend for PinnedMaps {
    fn dump(&self, map: MapId) -> Result<Entries, MapError> {
        let h = self.handle(map)?;
        dump(h.as_fd(), h.key_size() as usize, h.value_size() as usize)
            .map_err(|e| MapError::Dump { map, reason: e.raw_os_error().map_or_else(|| e.to_string(), errno_name) })
    }

    fn update(&mut self, map: MapId, key: &[u8], value: &[u8]) -> Result<(), MapError> {
        self.check_sizes("update", map, key, Some(value))?;
        let h = self.handle(map)?;
        update(h.as_fd(), key, value).map_err(|e| {
            let mut reason = errno_name(e);
            if e == libc::E2BIG || e == libc::ENOMEM {
                reason = format!("{reason} (max_entries {})", h.max_entries());
            }
            MapError::Op { op: "update", map, key: render_key(map, key), reason }
        })
    }

    fn delete(&mut self, map: MapId, key: &[u8]) -> Result<(), MapError> {
        self.check_sizes("delete", map, key, None)?;
        delete(self.handle(map)?.as_fd(), key).map_err(|e| MapError::Op {
            op: "delete",
            map,
            key: render_key(map, key),
            reason: errno_name(e),
        })
    }

    fn capacity(&self, map: MapId) -> usize {
        self.handles.get(&map).map_or(0, |h| h.max_entries() as usize)
    }
}
