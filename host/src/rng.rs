//! The generator lives in avsc-shared (one definition for the host and the fuzzer).

pub use avsc_shared::rng::SplitMix64;
