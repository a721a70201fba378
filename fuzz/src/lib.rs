//! avsc-fuzz: a stable-Rust mutation fuzzer for the readers of untrusted files (issue #15):
//! the MP4/MOV demuxer, the WAV reader, the TAU CSV reader and the bundle manifest reader.
//!
//! No coverage instrumentation (that needs nightly and cargo-fuzz): inputs are the seed
//! corpora under `fuzz/corpus/<target>/`, mutated by format-aware operators ([`mutate`]);
//! mutants a reader accepts join the pool and are mutated further, which reaches past the
//! first checks. Every input runs under `catch_unwind`; a watchdog thread reports inputs
//! that take longer than the timeout, and a counting global allocator ([`alloc`]) reports an
//! input whose allocations outgrow a cap proportional to its length. See [`engine`].
//!
//! The binary (`cargo run -p avsc-fuzz --release -- mp4 --execs 1000000`) runs one target or
//! all; `tests/smoke.rs` runs a few thousand inputs per target in `cargo test`.

pub mod alloc;
pub mod engine;
pub mod minimize;
pub mod mutate;
pub mod targets;

pub use engine::{fuzz, Finding, Options, Report};
pub use targets::Target;
