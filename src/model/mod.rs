//! Parsed documents → validated model, collecting every diagnostic.
mod types;
pub use types::*;
