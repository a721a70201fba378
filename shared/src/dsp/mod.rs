//! Spectrogram DSP, bit-for-bit the algorithms of ../shared/golden/SPEC.md (librosa 0.11,
//! gammatone 1.0.3). All constants come from a [`crate::FeaturePreset`].

pub mod cqt;
pub mod db;
pub mod deltas;
mod extractor;
mod fir;
pub mod gammatone;
pub mod mel;
pub mod resample;
pub mod stft;
pub mod stream;

pub use extractor::FeatureExtractor;
