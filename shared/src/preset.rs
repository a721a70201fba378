//! Feature and frame presets: plain serde data, written into every model bundle so the
//! device computes exactly what the trainer saw. This is the only file that spells the
//! DSP constants; everything else reads them from a preset.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which spectrogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    Mel,
    Gam,
    Cqt,
}

impl FeatureKind {
    pub const ALL: [FeatureKind; 3] = [FeatureKind::Mel, FeatureKind::Gam, FeatureKind::Cqt];
    pub fn name(self) -> &'static str {
        match self {
            FeatureKind::Mel => "mel",
            FeatureKind::Gam => "gam",
            FeatureKind::Cqt => "cqt",
        }
    }
}

impl fmt::Display for FeatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FeatureKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "mel" => Ok(FeatureKind::Mel),
            "gam" => Ok(FeatureKind::Gam),
            "cqt" => Ok(FeatureKind::Cqt),
            _ => anyhow::bail!("unknown feature kind {s:?} (expected mel, gam or cqt)"),
        }
    }
}

/// The short-time Fourier transform shared by MEL (and by GAM when its FFT size matches).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StftParams {
    pub n_fft: usize,
    /// Periodic Hann of this length, zero-padded to the centre of the `n_fft` frame.
    pub win_length: usize,
    pub hop_length: usize,
    /// librosa `center=True` (zero padding of n_fft/2 each side) or uncentred frames.
    pub center: bool,
}

/// Gammatone: Ellis' FFT-weight approximation (gammatone 1.0.3 `fft_weights` on an
/// uncentred `specgram`), magnitude domain, divided by `n_fft`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GammatoneParams {
    /// FFT size of the gammatone's own STFT (same window and hop as [`StftParams`]).
    pub n_fft: usize,
    /// Filter bandwidth multiplier (`width` in fft_weights).
    pub width: f64,
}

/// librosa 0.11 `cqt` (recursive octave decimation, Schörkhuber & Klapuri 2010).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CqtParams {
    pub bins_per_octave: usize,
    pub filter_scale: f64,
    /// Fraction of each kernel's L1 mass that may be dropped when sparsifying.
    pub sparsity: f64,
    /// Frames dropped at each end of the (always centred) CQT so it aligns with the STFT.
    pub crop_frames: usize,
    /// The octave recursion's decimator: soxr "HQ"-like, as librosa's default `res_type`.
    pub decimator: ResampleParams,
}

/// `power_to_db` applied per channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DbParams {
    pub reference: f64,
    /// Powers below this are raised to it: the fixed floor, 10·log10(amin) dB.
    pub amin: f64,
    /// librosa's `top_db`: values more than this below the channel's maximum over the window
    /// are raised to that level. `None` (JSON null): only the fixed floor, so a frame's dB
    /// values are final as soon as its samples are in (the `stream` preset).
    pub top_db: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeltaMode {
    /// librosa `feature.delta(mode='interp')`: T frames kept.
    Interp,
    /// Fully supported frames only: T - 2*(width/2) frames, statics cropped to match.
    Valid,
}

/// Savitzky–Golay deltas on the dB spectrogram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeltaParams {
    pub width: usize,
    pub mode: DeltaMode,
}

/// A linear-phase Kaiser-windowed-sinc low-pass for resampling and decimation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResampleParams {
    /// Passband edge as a fraction of the lower Nyquist frequency.
    pub passband: f64,
    /// Stopband attenuation in dB, reached at the lower Nyquist frequency.
    pub stopband_db: f64,
}

/// Everything needed to turn a waveform into the networks' input tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeaturePreset {
    pub name: String,
    pub sample_rate: u32,
    pub channels: usize,
    pub n_bins: usize,
    pub fmin: f64,
    pub fmax: f64,
    /// Length of one classification window in seconds (the TAU clips are 10 s).
    pub clip_seconds: f64,
    pub stft: StftParams,
    pub gammatone: GammatoneParams,
    pub cqt: CqtParams,
    pub db: DbParams,
    pub deltas: DeltaParams,
    pub resample: ResampleParams,
}

impl FeaturePreset {
    pub const NAMES: [&'static str; 3] = ["paper", "hop14", "stream"];

    /// Golden "PB": reproduces the paper's 128x309 (2 ch) and 128x305x6 tensors for 10 s.
    pub fn paper() -> FeaturePreset {
        FeaturePreset {
            name: "paper".into(),
            sample_rate: 32_000,
            channels: 2,
            n_bins: 128,
            fmin: 10.0,
            fmax: 16_000.0,
            clip_seconds: 10.0,
            stft: StftParams { n_fft: 4096, win_length: 2560, hop_length: 1024, center: false },
            gammatone: GammatoneParams { n_fft: 4096, width: 1.0 },
            cqt: CqtParams {
                bins_per_octave: 24,
                filter_scale: 1.0,
                sparsity: 0.01,
                crop_frames: 2,
                // Measured on soxr 1.1 HQ's /2 filter: flat to 0.913 of the output Nyquist,
                // >= 120 dB from Nyquist on. A wider passband makes the CQT match worse.
                decimator: ResampleParams { passband: 0.913, stopband_db: 120.0 },
            },
            db: DbParams { reference: 1.0, amin: 1e-10, top_db: Some(80.0) },
            deltas: DeltaParams { width: 5, mode: DeltaMode::Valid },
            resample: Self::resampler(),
        }
    }

    /// Golden "PA": the paper's text taken literally (80 ms window, 14 ms hop, centred).
    pub fn hop14() -> FeaturePreset {
        FeaturePreset {
            name: "hop14".into(),
            stft: StftParams { n_fft: 4096, win_length: 2560, hop_length: 448, center: true },
            // gammatone's fft_gtgram: next power of two of twice the window.
            gammatone: GammatoneParams { n_fft: 8192, width: 1.0 },
            cqt: CqtParams { crop_frames: 0, ..Self::paper().cqt },
            deltas: DeltaParams { width: 9, mode: DeltaMode::Interp },
            ..Self::paper()
        }
    }

    /// `paper` with the fixed dB floor only (no window-relative `top_db`): every value of a
    /// frame depends on that frame's samples alone, so the device can compute the
    /// spectrograms, and the networks' first layers, while the window fills.
    pub fn stream() -> FeaturePreset {
        FeaturePreset { name: "stream".into(), db: DbParams { top_db: None, ..Self::paper().db }, ..Self::paper() }
    }

    fn resampler() -> ResampleParams {
        // Ingest (e.g. 48 kHz recordings): flat to 95 % of the 16-kHz Nyquist so a 15 kHz
        // tone keeps its level, >= 120 dB rejection of what would alias.
        ResampleParams { passband: 0.95, stopband_db: 120.0 }
    }

    pub fn by_name(name: &str) -> anyhow::Result<FeaturePreset> {
        match name {
            "paper" => Ok(Self::paper()),
            "hop14" => Ok(Self::hop14()),
            "stream" => Ok(Self::stream()),
            _ => anyhow::bail!("unknown feature preset {name:?} (expected one of {})", Self::NAMES.join(", ")),
        }
    }

    /// Samples per channel in one classification window.
    pub fn clip_samples(&self) -> usize {
        (self.clip_seconds * self.sample_rate as f64).round() as usize
    }

    /// Frames lost at each end by the delta filter in `Valid` mode.
    pub fn delta_crop(&self) -> usize {
        match self.deltas.mode {
            DeltaMode::Valid => self.deltas.width / 2,
            DeltaMode::Interp => 0,
        }
    }
}

/// Per-backbone pixel normalisation, applied after the resize.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Normalisation {
    /// (x/255 - mean) / std per channel (torchvision's ImageNet statistics).
    MeanStd { mean: [f32; 3], std: [f32; 3] },
    /// x/127.5 - 1 (Inception's [-1, 1] scaling).
    MinusOneOne,
}

impl Normalisation {
    pub fn imagenet() -> Normalisation {
        Normalisation::MeanStd { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }
    }
}

/// How video frames become network inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FramePreset {
    /// Frames kept per second, chosen by presentation timestamp.
    pub fps: f64,
    /// Square output side (Pillow BILINEAR resize).
    pub size: usize,
}

impl Default for FramePreset {
    fn default() -> Self {
        FramePreset { fps: 2.0, size: 224 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_round_trip_through_json() {
        for name in FeaturePreset::NAMES {
            let p = FeaturePreset::by_name(name).unwrap();
            let json = serde_json::to_string_pretty(&p).unwrap();
            let back: FeaturePreset = serde_json::from_str(&json).unwrap();
            assert_eq!(p, back);
        }
        let n = Normalisation::imagenet();
        let back: Normalisation = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert_eq!(n, back);
        assert!(FeaturePreset::by_name("hop15").is_err());
        // A manifest written before `top_db` could be null still reads.
        let old = serde_json::to_string(&FeaturePreset::paper()).unwrap().replace("80.0", "80");
        assert_eq!(serde_json::from_str::<FeaturePreset>(&old).unwrap(), FeaturePreset::paper());
        let stream = serde_json::to_string(&FeaturePreset::stream()).unwrap();
        assert!(stream.contains(r#""top_db":null"#), "{stream}");
    }

    #[test]
    fn paper_preset_gives_the_papers_frame_count() {
        let p = FeaturePreset::paper();
        let n = p.clip_samples();
        let frames = 1 + (n - p.stft.n_fft) / p.stft.hop_length;
        assert_eq!(frames, 309);
        assert_eq!(frames - 2 * p.delta_crop(), 305);
    }
}
