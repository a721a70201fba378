//! avsc-device: runs an exported model bundle on live or recorded audio and video.
//!
//! - [`sources`]: the `AudioSource` / `FrameSource` traits and their ALSA, V4L2 and file
//!   implementations, plus the camera pixel-format conversions;
//! - [`window`]: fixed-capacity rings that cut the audio into windows and hold the frames'
//!   embeddings;
//! - [`infer`]: the bundle's networks as tract plans, built once;
//! - [`pipeline`]: the loop that ties them together and writes one JSON line per window;
//! - [`cli`]: the `avsc-device` verbs.

pub mod cli;
pub mod infer;
pub mod pipeline;
pub mod sources;
pub mod stream;
pub mod window;
