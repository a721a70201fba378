//! The feature pipeline: waveform (at the preset's rate) -> MEL / GAM / CQT in dB, and the
//! 6-channel stacks with deltas. Every plan, filterbank and kernel is built once in `new`.

use super::cqt::Cqt;
use super::db::power_to_db;
use super::deltas::stack6;
use super::gammatone::GammatoneFilterbank;
use super::mel::MelFilterbank;
use super::stft::Stft;
use crate::array::Array3;
use crate::preset::{FeatureKind, FeaturePreset};

pub struct FeatureExtractor {
    preset: FeaturePreset,
    stft: Stft,
    /// The gammatone's own STFT when its FFT size or framing differs from the MEL one.
    gam_stft: Option<Stft>,
    mel: MelFilterbank,
    gam: GammatoneFilterbank,
    cqt: Cqt,
    power: Vec<f32>,
    gam_power: Vec<f32>,
    cqt_buf: Vec<f32>,
}

impl FeatureExtractor {
    pub fn new(preset: &FeaturePreset) -> FeatureExtractor {
        let p = preset;
        let s = &p.stft;
        let stft = Stft::new(s.n_fft, s.win_length, s.hop_length, s.center);
        // Ellis' specgram is always uncentred; it can share the MEL STFT only when the MEL
        // STFT is uncentred with the same FFT size.
        let gam_stft = (p.gammatone.n_fft != s.n_fft || s.center)
            .then(|| Stft::new(p.gammatone.n_fft, s.win_length, s.hop_length, false));
        FeatureExtractor {
            mel: MelFilterbank::new(p.sample_rate, s.n_fft, p.n_bins, p.fmin, p.fmax),
            gam: GammatoneFilterbank::new(p.sample_rate, p.gammatone.n_fft, p.n_bins, p.gammatone.width, p.fmin, p.fmax),
            cqt: Cqt::new(p.sample_rate, s.hop_length, p.n_bins, p.fmin, &p.cqt, &p.resample),
            stft,
            gam_stft,
            preset: preset.clone(),
            power: Vec::new(),
            gam_power: Vec::new(),
            cqt_buf: Vec::new(),
        }
    }

    pub fn preset(&self) -> &FeaturePreset {
        &self.preset
    }

    /// Linear-domain spectrogram, (channels, n_bins, T): MEL power, GAM magnitude / n_fft,
    /// CQT magnitude (cropped by the preset's `crop_frames`).
    pub fn linear(&mut self, kind: FeatureKind, channels: &[&[f32]]) -> Array3 {
        let nb = self.preset.n_bins;
        let mut planes: Vec<Vec<f32>> = Vec::with_capacity(channels.len());
        let mut frames = 0;
        for x in channels {
            let (plane, t) = self.channel_linear(kind, x);
            debug_assert!(frames == 0 || frames == t);
            frames = t;
            planes.push(plane);
        }
        let data: Vec<f32> = planes.concat();
        Array3::from_vec([channels.len(), nb, frames], data)
    }

    fn channel_linear(&mut self, kind: FeatureKind, x: &[f32]) -> (Vec<f32>, usize) {
        let nb = self.preset.n_bins;
        match kind {
            FeatureKind::Mel => {
                let t = self.stft.power(x, &mut self.power);
                let mut out = vec![0.0; nb * t];
                self.mel.apply(&self.power, t, &mut out);
                (out, t)
            }
            FeatureKind::Gam => {
                let (stft, buf) = match self.gam_stft.as_mut() {
                    Some(g) => (g, &mut self.gam_power),
                    None => (&mut self.stft, &mut self.power),
                };
                let t = stft.power(x, buf);
                let mut out = vec![0.0; nb * t];
                self.gam.apply(buf, t, &mut out);
                (out, t)
            }
            FeatureKind::Cqt => {
                let full = self.cqt.magnitude(x, &mut self.cqt_buf);
                let crop = self.preset.cqt.crop_frames;
                let t = full.saturating_sub(2 * crop);
                let mut out = Vec::with_capacity(nb * t);
                for row in self.cqt_buf.chunks_exact(full) {
                    out.extend_from_slice(&row[crop..crop + t]);
                }
                (out, t)
            }
        }
    }

    /// dB spectrogram (per-channel top_db), (channels, n_bins, T).
    pub fn db(&mut self, kind: FeatureKind, channels: &[&[f32]]) -> Array3 {
        let mut a = self.linear(kind, channels);
        if kind != FeatureKind::Mel {
            // GAM and CQT are magnitudes: librosa's amplitude_to_db == power_to_db(A^2).
            for v in a.data.iter_mut() {
                *v *= *v;
            }
        }
        for c in 0..a.shape[0] {
            power_to_db(a.channel_mut(c), &self.preset.db);
        }
        a
    }

    /// The network input: [S_L, S_R, Δ_L, Δ_R, ΔΔ_L, ΔΔ_R] on the dB spectrogram,
    /// (6, n_bins, T') with T' = T - 4 in the `paper` preset.
    pub fn stack(&mut self, kind: FeatureKind, channels: &[&[f32]]) -> Array3 {
        let db = self.db(kind, channels);
        stack6(&db, &self.preset.deltas)
    }
}
