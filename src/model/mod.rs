//! Parsed documents → validated model, collecting every diagnostic.
//!
//! [`load_snapshot`] is pure (the snapshot comes from `source`): it cuts big
//! multi-document files at column-0 `---` lines, parses and converts the
//! pieces on a few threads (each YAML tree is dropped as soon as its objects
//! are built, so memory stays bounded), then runs the cross-object rules.

mod check;
mod convert;
mod cross;
mod types;

use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use types::*;

use crate::diag::{self, Diagnostic, Span};
use crate::parse::yaml::{self, Node};
use crate::source::{self, LoadLimits, Snapshot, SourceError};
use convert::{Object, Path};

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
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Reads `dirs` and validates everything in them.
pub fn load_dirs(dirs: &[PathBuf], limits: &LoadLimits) -> Result<Loaded, SourceError> {
    let snapshot = source::read_snapshot(dirs, limits)?;
    Ok(load_snapshot(snapshot, limits))
}

/// Parses and validates an already-read snapshot.
pub fn load_snapshot(snapshot: Snapshot, limits: &LoadLimits) -> Loaded {
    let Snapshot { files, problems, content_hash, version } = snapshot;
    let mut diagnostics = problems;
    let yaml_limits = yaml::Limits { max_depth: limits.max_depth, max_nodes: limits.max_nodes };
    let units: Vec<Unit<'_>> = files.iter().flat_map(split_file).collect();
    let threads = match limits.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()).min(4),
        n => n,
    }
    .min(units.len())
    .max(1);
    let mut results: Vec<(usize, UnitOutput)> = if threads == 1 {
        units.iter().enumerate().map(|(i, u)| (i, run_unit(u, &yaml_limits))).collect()
    } else {
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(unit) = units.get(i) else { break };
                            done.push((i, run_unit(unit, &yaml_limits)));
                        }
                        done
                    })
                })
                .collect();
            let mut all = Vec::new();
            for w in workers {
                match w.join() {
                    Ok(done) => all.extend(done),
                    // A worker cannot panic on input (the parser and converter
                    // return errors), but do not lose the report if one did.
                    Err(_) => diagnostics.push(Diagnostic::error(Span::default(), None, "", "internal error: a loader thread panicked")),
                }
            }
            all
        })
    };
    drop(units);
    let file_count = files.len();
    drop(files);
    results.sort_by_key(|(i, _)| *i);
    let mut objects = Vec::new();
    for (_, out) in results {
        objects.extend(out.objects);
        diagnostics.extend(out.diags);
    }
    let cluster = cross::assemble(objects, &mut diagnostics);
    diag::sort(&mut diagnostics);
    Loaded { cluster, diagnostics, files: file_count, content_hash, version }
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
struct Unit<'a> {
    path: &'a Arc<str>,
    text: &'a str,
    first_line: u32,
}

/// Pieces bigger than this are cut at the next document start.
const CHUNK: usize = 1 << 20;

/// Cuts a big multi-document YAML file before column-0 `---` lines. Such a
/// line always starts a new document (YAML forbids it inside any scalar), so
/// each piece parses exactly as it would in the whole file. Files with
/// directives (`%YAML`) are left whole.
fn split_file(file: &source::SourceFile) -> Vec<Unit<'_>> {
    let text = file.text.as_str();
    let whole = vec![Unit { path: &file.path, text, first_line: 0 }];
    if text.len() <= CHUNK || text.starts_with('%') || text.contains("\n%") {
        return whole;
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
    let mut units = Vec::with_capacity(cuts.len());
    for r in cuts {
        let piece = &text[r.clone()];
        units.push(Unit { path: &file.path, text: piece, first_line: line });
        let newlines = piece.as_bytes().iter().filter(|&&b| b == b'\n').count();
        line = line.saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
    }
    units
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
    objects: Vec<Object>,
    diags: Vec<Diagnostic>,
}

fn run_unit(unit: &Unit<'_>, limits: &yaml::Limits) -> UnitOutput {
    // A private copy of the name: threads sharing one Arc would contend on its
    // reference count for every node.
    let file: Arc<str> = Arc::from(&**unit.path);
    let mut sink = LoadSink::default();
    yaml::parse_stream(&file, unit.text, unit.first_line, limits, &mut sink);
    sink.out
}

/// Converts documents as the parser finishes them. `List` items are converted
/// one by one and kept aside until the document turns out to be a List.
#[derive(Default)]
struct LoadSink {
    out: UnitOutput,
    pending: UnitOutput,
}

impl yaml::Sink for LoadSink {
    fn list_item(&mut self, index: usize, item: Node) -> Option<Node> {
        let base = Path::Root;
        let items = base.f("items");
        convert::convert(&item, &items.i(index), &mut self.pending.objects, &mut self.pending.diags, 1);
        None
    }

    fn document(&mut self, root: Option<Node>, _start: Span) {
        let pending = std::mem::take(&mut self.pending);
        let Some(root) = root else { return };
        if convert::is_list(&root) {
            self.out.objects.extend(pending.objects);
            self.out.diags.extend(pending.diags);
        }
        convert::convert(&root, &Path::Root, &mut self.out.objects, &mut self.out.diags, 0);
    }

    fn error(&mut self, diag: Diagnostic) {
        self.out.diags.push(diag);
    }

    fn abandon(&mut self) {
        self.pending = UnitOutput::default();
    }
}
