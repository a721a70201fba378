//! avsc-host: the training side of avsc. One module per verb of the CLI; each stage of the
//! data path (ingest, features, training, evaluation, export) lives in its own module.

pub mod alloc;
pub mod bench;
pub mod cache;
pub mod compute;
pub mod dataset;
pub mod embed;
pub mod evaluate;
pub mod export;
pub mod features;
pub mod fusion;
pub mod nets;
pub mod onnx;
pub mod pipeline;
pub mod plot;
pub mod prepare;
pub mod progress;
pub mod rng;
pub mod synth;
pub mod train;
