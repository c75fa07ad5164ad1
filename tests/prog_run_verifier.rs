//! Verifier cost of the tc program (root only): prints the kernel's
//! "processed N insns" statistics, and fails if a change brings the program
//! close to the 1M-instruction verifier limit (where a small addition, e.g.
//! to the policy stage, would stop it from loading at all).

use std::sync::Mutex;

use edgeplane::datapath::TC_OBJECT;
use libbpf_rs::{ObjectBuilder, PrintLevel};

static LOG: Mutex<String> = Mutex::new(String::new());

fn capture(_level: PrintLevel, msg: String) {
    if let Ok(mut l) = LOG.lock() {
        l.push_str(&msg);
    }
}

#[test]
fn tc_program_stays_well_below_the_verifier_limit() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (program load)");
        return;
    }
    libbpf_rs::set_print(Some((PrintLevel::Debug, capture)));
    let mut open = ObjectBuilder::default().open_memory(TC_OBJECT).expect("open");
    for mut p in open.progs_mut() {
        p.set_log_level(4); // BPF_LOG_STATS
    }
    let loaded = open.load();
    libbpf_rs::set_print(None);
    let log = LOG.lock().expect("log").clone();
    if let Err(e) = loaded {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!("load failed: {e}\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    let processed: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("processed ").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect();
    println!("verifier: processed insns per program: {processed:?}");
    assert!(!processed.is_empty(), "no verifier statistics in the libbpf log:\n{log}");
    for n in processed {
        assert!(n < 500_000, "a program needs {n} verifier steps: too close to the 1M limit");
    }
}
