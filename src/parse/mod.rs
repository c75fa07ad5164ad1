//! YAML text → span-carrying [`yaml::Node`] trees. No semantic checks here.
//!
//! Design choice: the tree is built by our own code from the events of
//! `unsafe-libyaml` (the libyaml port that serde_yaml used; events carry
//! line/column marks), not by a serde YAML crate. libyaml-safer (the same
//! port in safe Rust) is as fast but panics on some input, so it is not used
//! (docs/BENCHMARKS.md, "YAML layer"):
//! - every node keeps a span, so every later check can point at the exact
//!   value (serde-based `Spanned<T>` only covers fields declared as such, and
//!   serde stops at the first type error in a document, while we must report
//!   every problem);
//! - libyaml is about 3x faster than serde-saphyr here (measured in
//!   shared/research/dependencies.md), which the 100k-Services benchmark needs;
//! - the builder is iterative with a depth bound, a per-document node limit
//!   and byte budgets (per document, and for alias copies per load; see
//!   [`yaml::Budget`]), so deep nesting and alias bombs are errors, never a
//!   stack overflow or an OOM (the saphyr / yaml-rust2 tree builders recurse
//!   and abort on deep input);
//! - the `items` of a `List` can be handed out one at a time
//!   ([`yaml::Sink::list_item`]), so a huge `kubectl get -o yaml` List never
//!   exists as one tree.
//!
//! - speed: libyaml parses 14-26 MB/s here, too slow for 100,000 Services and
//!   EndpointSlices (97 MB) in 1 s. `fast.rs` produces the same events for
//!   the plain subset that tools emit, 1.8-3.3x faster (docs/BENCHMARKS.md,
//!   "YAML layer"), and hands every other document (anchors, block scalars,
//!   escapes, errors, ...) to libyaml; differential tests check that both
//!   agree event for event, marks included, on everything the fast path
//!   accepts, and that it accepts what it is meant for.
//!
//! JSON files go through the same parser (JSON is YAML's flow style).
mod fast;
pub mod yaml;
