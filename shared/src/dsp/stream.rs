//! One window's spectrograms computed while its audio arrives: each piece is resampled to
//! the preset's rate, and every STFT frame whose samples are all in is transformed and
//! filtered (MEL, GAM) at once, so that when the window's last sample comes only the last
//! frames, the CQT, the dB conversion and the deltas are left. The result is
//! [`FeatureExtractor::stacks_all`]'s of the resampled window, bit for bit (the same
//! resampler outputs, the same STFT frame pairs, per-frame filterbank sums), which the tests
//! check. All buffers are allocated with the stream and reused for every window.

use super::extractor::FeatureExtractor;
use super::resample::{ResampleStream, Resampler};
use crate::array::Array3;

/// The state of one window being filled (see [`FeatureExtractor::stream_push`]).
pub struct WindowStream {
    rate: u32,
    channels: usize,
    /// Per output channel (two), when the source rate is not the preset's.
    resamplers: Vec<ResampleStream>,
    /// The window at the preset's rate so far, at most `clip_samples` per channel (the first
    /// only, for mono).
    signal: [Vec<f32>; 2],
    /// One channel of the piece being pushed.
    deinterleaved: Vec<f32>,
    /// Source frames pushed since the window began.
    fed: usize,
    /// STFT frames of a window (MEL STFT, GAM STFT).
    frames: [usize; 2],
    /// Frame pairs done, per STFT.
    pairs: [usize; 2],
    /// (n_bins x frames) planes being filled, per channel.
    mel: [Vec<f32>; 2],
    gam: [Vec<f32>; 2],
    rows: Vec<f32>,
}

impl WindowStream {
    pub fn rate(&self) -> u32 {
        self.rate
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Source frames pushed since the last [`FeatureExtractor::stream_reset`].
    pub fn fed(&self) -> usize {
        self.fed
    }
}

impl FeatureExtractor {
    /// A stream for windows of `channels` (1: the same signal in both, as the networks are
    /// stereo; or 2) at `rate`.
    pub fn window_stream(&self, rate: u32, channels: usize) -> WindowStream {
        assert!(matches!(channels, 1 | 2), "mono or stereo");
        let p = self.preset();
        let n = p.clip_samples();
        let resamplers = if rate == p.sample_rate {
            Vec::new()
        } else {
            let r = Resampler::new(rate, p.sample_rate, &p.resample);
            (0..channels).map(|_| ResampleStream::new(r.clone())).collect()
        };
        let frames = [self.stft.n_frames(n), self.gam_stft.as_ref().map_or(self.stft.n_frames(n), |g| g.n_frames(n))];
        let plane = |t: usize| vec![0.0f32; p.n_bins * t];
        WindowStream {
            rate,
            channels,
            resamplers,
            signal: [Vec::with_capacity(n), Vec::with_capacity(n)],
            deinterleaved: Vec::new(),
            fed: 0,
            frames,
            pairs: [0, 0],
            mel: [plane(frames[0]), plane(frames[0])],
            gam: [plane(frames[1]), plane(frames[1])],
            rows: Vec::new(),
        }
    }

    /// Begin a new window.
    pub fn stream_reset(&self, s: &mut WindowStream) {
        s.resamplers.iter_mut().for_each(ResampleStream::reset);
        s.signal.iter_mut().for_each(Vec::clear);
        (s.fed, s.pairs) = (0, [0, 0]);
    }

    /// The next interleaved source frames of the window.
    pub fn stream_push(&mut self, s: &mut WindowStream, interleaved: &[f32]) {
        let want = self.preset().clip_samples();
        let ch = s.channels;
        // A mono window is computed once and stands for both channels at the end.
        for c in 0..ch {
            s.deinterleaved.clear();
            s.deinterleaved.extend(interleaved.iter().skip(c).step_by(ch));
            let signal = &mut s.signal[c];
            let before = signal.len();
            match s.resamplers.get_mut(c) {
                Some(r) => r.push(&s.deinterleaved, signal),
                None => signal.extend_from_slice(&s.deinterleaved),
            }
            // The trainer's windows are exactly clip_samples long.
            signal.truncate(want.max(before));
        }
        s.fed += interleaved.len() / ch;
        self.stream_frames(s, false);
    }

    /// The window is complete: its three 6-channel stacks, as `stacks_all` computes them
    /// on the resampled window (zero-padded or cut to `clip_samples`).
    pub fn stream_finish(&mut self, s: &mut WindowStream) -> [Array3; 3] {
        let want = self.preset().clip_samples();
        for (c, signal) in s.signal.iter_mut().enumerate().take(s.channels) {
            if let Some(r) = s.resamplers.get_mut(c) {
                r.finish(signal);
            }
            signal.resize(want, 0.0);
        }
        self.stream_frames(s, true);
        let (n_bins, last) = (self.preset().n_bins, s.channels - 1);
        let plane = |p: &[Vec<f32>; 2], t: usize| {
            let data = [&p[0], &p[last]].into_iter().flat_map(|c| c.iter().copied()).collect();
            Array3::from_vec([2, n_bins, t], data)
        };
        let mel = plane(&s.mel, s.frames[0]);
        let gam = plane(&s.gam, s.frames[1]);
        let left = self.cqt_plane(&s.signal[0]);
        let right = if last == 0 { left.clone() } else { self.cqt_plane(&s.signal[1]) };
        self.finish_stacks([mel, gam, self.assemble(vec![left, right])])
    }

    /// Every STFT frame pair whose samples are in (all of them when `done`).
    fn stream_frames(&mut self, s: &mut WindowStream, done: bool) {
        let avail = s.signal[0].len();
        let shared = self.gam_stft.is_none();
        for k in 0..2 {
            if k == 1 && shared {
                s.pairs[1] = s.pairs[0];
                break;
            }
            let n_frames = s.frames[k];
            let stft = if k == 0 { &mut self.stft } else { self.gam_stft.as_mut().expect("own GAM STFT") };
            let ready = if done { n_frames } else { stft.frames_ready(avail).min(n_frames) };
            let pairs = if ready == n_frames { n_frames.div_ceil(2) } else { ready / 2 };
            if pairs <= s.pairs[k] {
                continue;
            }
            let (first, last) = (2 * s.pairs[k], (2 * pairs).min(n_frames));
            let nb = stft.n_bins();
            s.rows.resize((last - first) * nb, 0.0);
            for c in 0..s.channels {
                stft.power_pairs(&s.signal[c], n_frames, s.pairs[k]..pairs, &mut s.rows);
                if k == 0 {
                    self.mel.apply_frames(&s.rows, first, n_frames, &mut s.mel[c]);
                }
                if k == 1 || shared {
                    self.gam.apply_frames(&s.rows, first, n_frames, &mut s.gam[c]);
                }
            }
            s.pairs[k] = pairs;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FeaturePreset;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Noise over a slow tone, at a level that varies along the window.
                let tone = (i as f32 * 0.01).sin() * (1.0 + (i as f32 * 1e-5).sin());
                0.3 * tone + ((state % 2001) as f32 / 1000.0 - 1.0) * 0.1
            })
            .collect()
    }

    /// Pieces of a window at 48 kHz, 44.1 kHz and the preset's own rate, stereo and mono, and
    /// windows short and long of their nominal length: the stream's stacks equal stacks_all of
    /// the resampled, fitted window bit for bit, window after window.
    #[test]
    fn streamed_stacks_equal_whole_window_stacks_bit_for_bit() {
        for preset in [FeaturePreset::paper(), FeaturePreset::hop14()] {
            let preset = FeaturePreset { clip_seconds: 1.0, ..preset };
            let mut fx = FeatureExtractor::new(&preset);
            for (rate, ch) in [(48_000, 2), (44_100, 1), (32_000, 2)] {
                let mut s = fx.window_stream(rate, ch);
                for (window, len) in [rate as usize, rate as usize * 9 / 10, rate as usize + 77].into_iter().enumerate()
                {
                    let x = noise(len * ch, 7 + window as u64);
                    fx.stream_reset(&mut s);
                    let mut at = 0;
                    let mut piece = 1 + window * 997;
                    while at < x.len() {
                        let n = (piece * ch).min(x.len() - at);
                        fx.stream_push(&mut s, &x[at..at + n]);
                        at += n;
                        piece = piece * 7 % 4801 + 1;
                    }
                    let got = fx.stream_finish(&mut s);

                    let r = Resampler::new(rate, preset.sample_rate, &preset.resample);
                    let fit = |c: usize| {
                        let chan: Vec<f32> = x.iter().skip(c.min(ch - 1)).step_by(ch).copied().collect();
                        let mut y = r.process(&chan);
                        y.resize(preset.clip_samples(), 0.0);
                        y
                    };
                    let (l, rr) = (fit(0), fit(1));
                    let want = fx.stacks_all(&[&l, &rr]);
                    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(g.shape, w.shape, "{} {rate} Hz x{ch}: stack {k}", preset.name);
                        let same = g.data.iter().zip(&w.data).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{} {rate} Hz x{ch}, window {window}: stack {k} differs", preset.name);
                    }
                }
            }
        }
    }
}
