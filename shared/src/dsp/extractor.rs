//! The feature pipeline: waveform (at the preset's rate) -> MEL / GAM / CQT in dB, and the
//! 6-channel stacks with deltas. Every plan, filterbank and kernel is built once: the STFT
//! and filterbanks in `new`, the CQT kernels on the first CQT request (so MEL/GAM-only
//! callers never pay for them).

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
    pub(super) stft: Stft,
    /// The gammatone's own STFT when its FFT size or framing differs from the MEL one.
    pub(super) gam_stft: Option<Stft>,
    pub(super) mel: MelFilterbank,
    pub(super) gam: GammatoneFilterbank,
    cqt: Option<Cqt>,
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
        //
        // Deliberate divergence from gammatone 1.0.3 (SPEC §5.4): its `specgram` allocates
        // 1 + (len - n_fft) / hop columns but its loop `range(0, len - n_fft, hop)` leaves the
        // last one all zero when (len - n_fft) is a multiple of hop (PA, 10 s). That column
        // is an artefact (-100 dB, then the top_db floor); we compute the real last frame.
        let gam_stft = (p.gammatone.n_fft != s.n_fft || s.center)
            .then(|| Stft::new(p.gammatone.n_fft, s.win_length, s.hop_length, false));
        FeatureExtractor {
            mel: MelFilterbank::new(p.sample_rate, s.n_fft, p.n_bins, p.fmin, p.fmax),
            gam: GammatoneFilterbank::new(
                p.sample_rate,
                p.gammatone.n_fft,
                p.n_bins,
                p.gammatone.width,
                p.fmin,
                p.fmax,
            ),
            cqt: None,
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
        let planes: Vec<(Vec<f32>, usize)> = channels.iter().map(|x| self.channel_linear(kind, x)).collect();
        self.assemble(planes)
    }

    /// Channel planes of equal frame counts -> (channels, n_bins, T).
    pub(super) fn assemble(&self, planes: Vec<(Vec<f32>, usize)>) -> Array3 {
        let frames = planes.first().map_or(0, |p| p.1);
        assert!(planes.iter().all(|p| p.1 == frames), "all channels must have the same length");
        let shape = [planes.len(), self.preset.n_bins, frames];
        Array3::from_vec(shape, planes.into_iter().flat_map(|p| p.0).collect())
    }

    fn channel_linear(&mut self, kind: FeatureKind, x: &[f32]) -> (Vec<f32>, usize) {
        match kind {
            FeatureKind::Mel => {
                let t = self.stft.power(x, &mut self.power);
                self.mel_plane(t)
            }
            FeatureKind::Gam => self.gam_plane(x, false),
            FeatureKind::Cqt => self.cqt_plane(x),
        }
    }

    /// MEL from the STFT power currently in `self.power`.
    fn mel_plane(&self, t: usize) -> (Vec<f32>, usize) {
        let mut out = vec![0.0; self.preset.n_bins * t];
        self.mel.apply(&self.power, t, &mut out);
        (out, t)
    }

    /// GAM of `x`. With `power_ready`, `self.power` already holds the STFT power of `x`
    /// and is reused when the gammatone shares the MEL STFT.
    fn gam_plane(&mut self, x: &[f32], power_ready: bool) -> (Vec<f32>, usize) {
        let (t, power) = match self.gam_stft.as_mut() {
            Some(g) => (g.power(x, &mut self.gam_power), &self.gam_power),
            None if power_ready => (self.stft.n_frames(x.len()), &self.power),
            None => (self.stft.power(x, &mut self.power), &self.power),
        };
        let mut out = vec![0.0; self.preset.n_bins * t];
        self.gam.apply(power, t, &mut out);
        (out, t)
    }

    pub(super) fn cqt_plane(&mut self, x: &[f32]) -> (Vec<f32>, usize) {
        let p = &self.preset;
        let cqt = self.cqt.get_or_insert_with(|| Cqt::new(p.sample_rate, p.stft.hop_length, p.n_bins, p.fmin, &p.cqt));
        let full = cqt.magnitude(x, &mut self.cqt_buf);
        let crop = self.preset.cqt.crop_frames;
        let t = full.saturating_sub(2 * crop);
        let mut out = Vec::with_capacity(self.preset.n_bins * t);
        for row in self.cqt_buf.chunks_exact(full) {
            out.extend_from_slice(&row[crop..crop + t]);
        }
        (out, t)
    }

    /// Linear -> dB in place, each channel against its own maximum.
    fn to_db(&self, kind: FeatureKind, a: &mut Array3) {
        if kind != FeatureKind::Mel {
            // GAM and CQT are magnitudes: librosa's amplitude_to_db == power_to_db(A^2).
            for v in a.data.iter_mut() {
                *v *= *v;
            }
        }
        for c in 0..a.shape[0] {
            power_to_db(a.channel_mut(c), &self.preset.db);
        }
    }

    /// dB spectrogram (per-channel top_db), (channels, n_bins, T).
    pub fn db(&mut self, kind: FeatureKind, channels: &[&[f32]]) -> Array3 {
        let mut a = self.linear(kind, channels);
        self.to_db(kind, &mut a);
        a
    }

    /// The network input: [S_L, S_R, Δ_L, Δ_R, ΔΔ_L, ΔΔ_R] on the dB spectrogram,
    /// (6, n_bins, T') with T' = T - 4 in the `paper` preset.
    pub fn stack(&mut self, kind: FeatureKind, channels: &[&[f32]]) -> Array3 {
        let db = self.db(kind, channels);
        stack6(&db, &self.preset.deltas)
    }

    /// The MEL, GAM and CQT stacks (in [`FeatureKind::ALL`] order), equal to three
    /// [`Self::stack`] calls but faster: each channel's STFT power is computed once and
    /// feeds both MEL and GAM when the preset lets them share it (`paper`).
    pub fn stacks_all(&mut self, channels: &[&[f32]]) -> [Array3; 3] {
        let mut mel = Vec::with_capacity(channels.len());
        let mut gam = Vec::with_capacity(channels.len());
        let mut cqt = Vec::with_capacity(channels.len());
        for x in channels {
            let t = self.stft.power(x, &mut self.power);
            mel.push(self.mel_plane(t));
            gam.push(self.gam_plane(x, true));
            cqt.push(self.cqt_plane(x));
        }
        let out = [mel, gam, cqt].map(|planes| self.assemble(planes));
        self.finish_stacks(out)
    }

    /// Linear MEL, GAM and CQT planes -> dB -> the three 6-channel stacks.
    pub(super) fn finish_stacks(&self, mut planes: [Array3; 3]) -> [Array3; 3] {
        for (kind, a) in FeatureKind::ALL.into_iter().zip(planes.iter_mut()) {
            self.to_db(kind, a);
        }
        planes.map(|db| stack6(&db, &self.preset.deltas))
    }
}
