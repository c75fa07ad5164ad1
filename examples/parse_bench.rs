//! Parse-only timing of the YAML layer (docs/BENCHMARKS.md, "YAML layer"):
//! every file given is parsed whole on one thread, as the loader parses one
//! unit, and the trees (and `List` items) are dropped as they come.
//!
//!   cargo run --release --example parse_bench -- FILE... [--runs N]
//!
//! Prints one line per run: file, bytes, documents, list items, ms, MB/s.

use std::sync::Arc;
use std::time::Instant;

use edgeplane::diag::{Diagnostic, Span};
use edgeplane::parse::yaml::{self, Node};

#[derive(Default)]
struct Count {
    documents: usize,
    items: usize,
    errors: usize,
}

impl yaml::Sink for Count {
    fn list_item(&mut self, _index: usize, _item: Node) -> Option<Node> {
        self.items += 1;
        None
    }
    fn document(&mut self, _root: Option<Node>, _start: Span) {
        self.documents += 1;
    }
    fn error(&mut self, _diag: Diagnostic) {
        self.errors += 1;
    }
}

fn main() -> anyhow::Result<()> {
    let mut files = Vec::new();
    let mut runs = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--runs" {
            runs = args.next().and_then(|n| n.parse().ok()).ok_or_else(|| anyhow::anyhow!("--runs N"))?;
        } else {
            files.push(arg);
        }
    }
    for _ in 0..runs {
        for file in &files {
            let text = std::fs::read_to_string(file)?;
            let budget = yaml::Budget::new(text.len(), Arc::default());
            let mut sink = Count::default();
            let start = Instant::now();
            yaml::parse_stream(&Arc::from(file.as_str()), &text, 0, &yaml::Limits::default(), &budget, &mut sink);
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{file} bytes={} documents={} items={} errors={} ms={:.0} MB/s={:.1}",
                text.len(),
                sink.documents,
                sink.items,
                sink.errors,
                secs * 1e3,
                text.len() as f64 / secs / 1e6
            );
        }
    }
    Ok(())
}
