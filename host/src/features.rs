//! `avsc-host features`: one WAV in, one spectrogram (.npy) out, computed exactly as the
//! device and the training cache compute it.

use anyhow::{bail, Context, Result};
use avsc_shared::dsp::resample::Resampler;
use avsc_shared::dsp::FeatureExtractor;
use avsc_shared::wav::Audio;
use avsc_shared::{npy, Array3, FeatureKind, FeaturePreset};
use std::path::Path;

/// Read an audio file (WAV, FLAC, OGG, MP3, ... or an MP4's audio track: the shared
/// decoder), make it stereo at the preset's rate. Notes go to stderr.
pub fn load_audio(path: &Path, preset: &FeaturePreset) -> Result<Audio> {
    let audio = avsc_shared::decode::decode_audio(path)?;
    let (audio, how) = audio.into_stereo().with_context(|| path.display().to_string())?;
    if let Some(n) = how.note(&path.display().to_string()) {
        eprintln!("note: {n}");
    }
    if audio.sample_rate == preset.sample_rate {
        return Ok(audio);
    }
    eprintln!("note: resampling {} from {} Hz to {} Hz", path.display(), audio.sample_rate, preset.sample_rate);
    let r = Resampler::new(audio.sample_rate, preset.sample_rate, &preset.resample);
    let channels = audio.channels.iter().map(|c| r.process(c)).collect();
    Ok(Audio { sample_rate: preset.sample_rate, channels })
}

/// The spectrogram of `audio` (already stereo at the preset's rate): (2, bins, T) in dB, or
/// the 6-channel stack with deltas.
pub fn compute(audio: &Audio, kind: FeatureKind, preset: &FeaturePreset, deltas: bool) -> Result<Array3> {
    let s = &preset.stft;
    let frames_needed = if deltas && preset.delta_crop() > 0 { preset.deltas.width } else { 1 };
    // Uncentred framing (MEL in `paper`, GAM always: Ellis' specgram) needs whole frames.
    let n_fft = match kind {
        FeatureKind::Gam => Some(preset.gammatone.n_fft),
        FeatureKind::Mel if !s.center => Some(s.n_fft),
        // The centred CQT loses `crop_frames` at each end.
        FeatureKind::Cqt => Some(2 * preset.cqt.crop_frames * s.hop_length),
        FeatureKind::Mel => None,
    };
    let min = n_fft.unwrap_or(1).max(1) + (frames_needed - 1) * s.hop_length;
    if audio.n_samples() < min {
        bail!(
            "too short: {} samples at {} Hz; {kind} in the {} preset needs at least {min}",
            audio.n_samples(),
            preset.sample_rate,
            preset.name
        );
    }
    let mut fx = FeatureExtractor::new(preset);
    let ch = audio.channel_refs();
    Ok(if deltas { fx.stack(kind, &ch) } else { fx.db(kind, &ch) })
}

/// The whole verb: read, compute, write atomically (nothing is written on error).
pub fn run(input: &Path, kind: FeatureKind, preset: &FeaturePreset, deltas: bool, out: &Path) -> Result<[usize; 3]> {
    let audio = load_audio(input, preset)?;
    let spec = compute(&audio, kind, preset, deltas).with_context(|| format!("{}", input.display()))?;
    npy::write_f32(out, &spec.shape, &spec.data)?;
    Ok(spec.shape)
}
