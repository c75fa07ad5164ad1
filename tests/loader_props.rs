//! Property test of the loader against hostile input: random and mutated
//! YAML (byte flips, truncation, deep nesting, aliases, random bytes) never
//! panics, never hangs, and every diagnostic names a file and a line >= 1.
//! Bounded: a fixed number of cases, each on a small input.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use edgeplane::model::{self, Loaded};
use edgeplane::source::{self, LoadLimits, Snapshot, SourceFile};
use proptest::prelude::*;

fn seeds() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["examples-config", "tests/invalid"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "yaml" || e == "json")
                && let Ok(text) = std::fs::read_to_string(&p)
            {
                out.push(text);
            }
        }
    }
    assert!(!out.is_empty(), "no seed files found");
    out
}

fn check(loaded: &Loaded) -> Result<(), TestCaseError> {
    for d in &loaded.diagnostics {
        prop_assert!(!d.span.file.is_empty(), "diagnostic without a file: {d}");
        prop_assert!(d.span.line >= 1 && d.span.col >= 1, "diagnostic without a position: {d}");
        prop_assert!(!d.message.is_empty(), "empty message: {d}");
    }
    Ok(())
}

/// Small limits, so that budget errors are reached by small inputs too.
fn limits() -> LoadLimits {
    LoadLimits { max_depth: 64, max_nodes: 20_000, threads: 1, ..LoadLimits::default() }
}

fn load_text(text: String) -> Loaded {
    let snapshot = Snapshot { files: vec![SourceFile { path: Arc::from("fuzz.yaml"), text }], ..Snapshot::default() };
    model::load_snapshot(snapshot, &limits())
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipByte { at: usize, value: u8 },
    Truncate { at: usize },
    Nest { at: usize, depth: usize, flow: bool },
    Alias { at: usize, fanout: usize },
    Duplicate { at: usize, len: usize },
    Insert { at: usize, text: String },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::FlipByte { at, value }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 1usize..400, any::<bool>()).prop_map(|(at, depth, flow)| Mutation::Nest { at, depth, flow }),
        (any::<usize>(), 1usize..12).prop_map(|(at, fanout)| Mutation::Alias { at, fanout }),
        (any::<usize>(), 1usize..200).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "\n---\n",
                ": ",
                "- ",
                "{",
                "}",
                "[",
                "]",
                "\"",
                "'",
                "&x ",
                "*x",
                "!!int ",
                "!!str ",
                "? ",
                "|\n",
                ">-\n",
                "\t",
                "#",
                "%YAML 1.2\n",
                "...\n",
                "\u{feff}",
                "kind: List\nitems:\n",
                "\n  ",
                "99999",
                "null",
                "~",
            ])
        )
            .prop_map(|(at, t)| Mutation::Insert { at, text: t.to_string() }),
    ]
}

/// Applies a mutation to bytes; positions are taken modulo the length.
fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % (len + 1) };
    match m {
        Mutation::FlipByte { at, value } => {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = *value;
            }
        }
        Mutation::Truncate { at } => {
            let i = pos(*at, bytes.len());
            bytes.truncate(i);
        }
        Mutation::Nest { at, depth, flow } => {
            let i = pos(*at, bytes.len());
            let nest = if *flow { "[".repeat(*depth) + "x" + &"]".repeat(*depth) } else { "- ".repeat(*depth) + "x\n" };
            bytes.splice(i..i, nest.into_bytes());
        }
        Mutation::Alias { at, fanout } => {
            let i = pos(*at, bytes.len());
            let mut bomb = String::from("\nz0: &z0 [a, b]\n");
            for level in 1..6 {
                let refs = vec![format!("*z{}", level - 1); *fanout].join(", ");
                bomb.push_str(&format!("z{level}: &z{level} [{refs}]\n"));
            }
            bytes.splice(i..i, bomb.into_bytes());
        }
        Mutation::Duplicate { at, len } => {
            if !bytes.is_empty() {
                let start = at % bytes.len();
                let end = (start + len).min(bytes.len());
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
        Mutation::Insert { at, text } => {
            let i = pos(*at, bytes.len());
            bytes.splice(i..i, text.bytes());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_examples_never_panic(seed in any::<prop::sample::Index>(), muts in prop::collection::vec(mutation(), 1..6)) {
        let seeds = seeds();
        let mut bytes = seeds[seed.index(seeds.len())].clone().into_bytes();
        for m in &muts {
            apply(&mut bytes, m);
        }
        // The source layer refuses invalid UTF-8 (tested below); the parser
        // gets the lossy text so that mutations still reach it.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        check(&load_text(text))?;
    }

    #[test]
    fn random_yaml_like_text_never_panics(parts in prop::collection::vec(prop::sample::select(vec![
        "apiVersion: v1\n", "kind: Service\n", "kind: Pod\n", "kind: NetworkPolicy\n", "kind: List\n", "items:\n",
        "metadata:\n", "  name: x\n", "spec:\n", "  ports:\n", "  - port: 80\n", "    targetPort: http\n", "- ", "  ",
        "{", "}", "[", "]", ",", ": ", "&a ", "*a ", "---\n", "\n", "\"q\"", "'s'", "1", "-1", "0x", "null", "true",
        "198.18.0.1", "198.18.0.0/33", "ports", "selector", "matchExpressions", "operator: In", "\t", "é",
    ]), 0..80)) {
        check(&load_text(parts.concat()))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// Raw bytes through the filesystem layer: invalid UTF-8 and binary data
    /// are reported by file, never passed on, never a panic.
    #[test]
    fn raw_bytes_from_disk(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        std::fs::write(dir.path().join("x.yaml"), &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let snapshot = source::read_snapshot(&[dir.path().to_path_buf()], &limits())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(snapshot.files.len() + snapshot.problems.len(), 1);
        let loaded = model::load_snapshot(snapshot, &limits());
        check(&loaded)?;
    }
}

#[test]
fn deep_nesting_and_alias_bombs_are_errors_at_default_limits() {
    let cases = ["- ".repeat(20_000) + "x\n", "[".repeat(20_000), "{a: ".repeat(20_000), {
        let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (prev, cur) in ('a'..='k').zip('b'..='l') {
            s.push_str(&format!("{cur}: &{cur} [{}]\n", vec![format!("*{prev}"); 10].join(", ")));
        }
        s
    }];
    for text in cases {
        let snapshot =
            Snapshot { files: vec![SourceFile { path: Arc::from("bomb.yaml"), text }], ..Snapshot::default() };
        let loaded = model::load_snapshot(snapshot, &LoadLimits::default());
        assert!(loaded.has_errors());
        assert!(loaded.diagnostics.iter().all(|d| &*d.span.file == "bomb.yaml" && d.span.line >= 1));
    }
}
