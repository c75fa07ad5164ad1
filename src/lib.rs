//! edgeplane: a directory of Kubernetes YAML in, eBPF maps out.
//!
//! Pipeline (each stage a module, pure unless noted):
//! `source` (filesystem, I/O) → `parse` (YAML → documents with spans) →
//! `model` (validated objects + diagnostics) → `compile` (desired map contents) →
//! `plan` (diff against live maps, make-before-break) → `apply` (runs a plan on a
//! `MapBackend`) → `datapath` (the only module that calls bpf(2), I/O).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod apply;
pub mod compile;
pub mod compile_policy;
pub mod config;
pub mod daemon;
pub mod datapath;
pub mod diag;
pub mod drop_reason;
pub mod guard;
pub mod healthcheck;
pub mod inspect;
pub mod kernel;
pub mod maps;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod notify;
pub mod parse;
pub mod plan;
pub mod policy_view;
pub mod source;
pub mod trace;
