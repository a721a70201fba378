//! Band-limited resampling (any rate -> the preset's rate) and the power-of-two decimator
//! the CQT's octave recursion uses (librosa `resample(..., res_type='soxr_hq', scale=True)`).

use super::fir::{design_halfband, design_lowpass, kaiser_at, kaiser_beta, kaiser_len, windowed_sinc, Stage};
use crate::preset::ResampleParams;

/// Above this many polyphase branches the taps are interpolated from an oversampled
/// prototype instead of tabulated exactly (odd rates such as 47999 Hz would need tens of
/// megabytes of exact taps).
const MAX_EXACT_PHASES: usize = 4096;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

enum Taps {
    Identity,
    /// `up` phases of `width` taps each: phase φ, tap d holds K(φ/up + span - d).
    Exact(Vec<f32>),
    /// K(|τ|) sampled every 1/`over` input samples, linearly interpolated per output.
    Interpolated {
        table: Vec<f32>,
        over: usize,
    },
}

/// Rational-ratio resampler: a linear-phase Kaiser-windowed sinc evaluated as a polyphase
/// FIR. Output sample m sits at input time m·from/to (the filter delay is compensated) and
/// the signal is taken as zero outside its ends.
pub struct Resampler {
    pub from: u32,
    pub to: u32,
    up: u64,
    down: u64,
    /// Input samples reached on each side of the output instant (taps per output = 2·span+2).
    span: usize,
    taps: Taps,
}

impl Resampler {
    pub fn new(from: u32, to: u32, p: &ResampleParams) -> Resampler {
        assert!(from > 0 && to > 0, "sample rates must be positive");
        let g = gcd(from as u64, to as u64);
        let (up, down) = (to as u64 / g, from as u64 / g);
        if up == down {
            return Resampler { from, to, up, down, span: 0, taps: Taps::Identity };
        }
        // Everything in input samples: the band edge is the lower of the two Nyquists.
        let nyq = from.min(to) as f64 / 2.0 / from as f64;
        let (pass, stop) = (p.passband * nyq, nyq);
        let cutoff = 0.5 * (pass + stop);
        let beta = kaiser_beta(p.stopband_db);
        let half = (kaiser_len(p.stopband_db, stop - pass) - 1) as f64 / 2.0;
        let kernel = |tau: f64| {
            let x = 2.0 * cutoff * tau;
            let s = if x == 0.0 { 1.0 } else { (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x) };
            2.0 * cutoff * s * kaiser_at(tau, half, beta)
        };
        let span = half.ceil() as usize;
        let width = 2 * span + 2;
        let taps = if up as usize <= MAX_EXACT_PHASES {
            let mut t = vec![0.0f32; up as usize * width];
            for (phi, row) in t.chunks_exact_mut(width).enumerate() {
                let frac = phi as f64 / up as f64;
                let k: Vec<f64> = (0..width).map(|d| kernel(frac + span as f64 - d as f64)).collect();
                // Unit DC gain per phase: no residual ripple at the image frequencies.
                let s: f64 = k.iter().sum();
                row.iter_mut().zip(&k).for_each(|(r, v)| *r = (v / s) as f32);
            }
            Taps::Exact(t)
        } else {
            let over = MAX_EXACT_PHASES;
            let table = (0..=(span + 2) * over).map(|i| kernel(i as f64 / over as f64) as f32).collect();
            Taps::Interpolated { table, over }
        };
        Resampler { from, to, up, down, span, taps }
    }

    /// Output length is ceil(len * to / from); the output is time-aligned with the input
    /// (linear phase, delay compensated).
    pub fn process(&self, x: &[f32]) -> Vec<f32> {
        let n_out = ((x.len() as u64 * self.up).div_ceil(self.down)) as usize;
        if let Taps::Identity = self.taps {
            return x.to_vec();
        }
        let span = self.span;
        let width = 2 * span + 2;
        // x[i] lives at padded[i + span]; the window for output m starts at i0 - span.
        let mut padded = vec![0.0f32; span];
        padded.extend_from_slice(x);
        padded.resize(x.len() + 2 * span + 2, 0.0);
        let mut out = Vec::with_capacity(n_out);
        let mut k = vec![0.0f32; width];
        for m in 0..n_out as u64 {
            let pos = m * self.down;
            let (i0, phi) = ((pos / self.up) as usize, (pos % self.up) as usize);
            let win = &padded[i0..i0 + width];
            let y = match &self.taps {
                Taps::Exact(t) => super::fir::dot(&t[phi * width..(phi + 1) * width], win),
                Taps::Interpolated { table, over } => {
                    let frac = phi as f64 / self.up as f64;
                    let mut sum = 0.0f32;
                    for (d, kd) in k.iter_mut().enumerate() {
                        let f = (frac + span as f64 - d as f64).abs() * *over as f64;
                        let (j, w) = (f as usize, (f - f.floor()) as f32);
                        *kd = if j + 1 < table.len() { table[j] + w * (table[j + 1] - table[j]) } else { 0.0 };
                        sum += *kd;
                    }
                    super::fir::dot(&k, win) / sum
                }
                Taps::Identity => unreachable!(),
            };
            out.push(y);
        }
        out
    }
}

/// Which filter the power-of-two decimator reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecimatorKind {
    /// soxr "HQ" (librosa's default `res_type`): flat to the preset's passband, the
    /// preset's stopband from the output Nyquist on, linear phase.
    SoxrHq,
    /// scipy `resample_poly(y, 1, F)`: Kaiser β = 5, 20·F + 1 taps (librosa 'polyphase').
    ScipyPolyphase,
}

/// librosa `resample(y, orig_sr=F, target_sr=1, scale=True)` for F = 2^k: output length
/// ceil(len / F), multiplied by sqrt(F).
pub struct Decimator {
    factor: usize,
    kind: DecimatorKind,
    stages: Vec<Stage>,
    tmp: Vec<f32>,
}

impl Decimator {
    pub fn new(kind: DecimatorKind, log2_factor: u32, p: &ResampleParams) -> Decimator {
        let factor = 1usize << log2_factor;
        let gain = (factor as f64).sqrt();
        let mut stages = Vec::new();
        match kind {
            DecimatorKind::SoxrHq if log2_factor > 0 => {
                // Halving stages; only aliases that land below the *final* Nyquist matter, so
                // every stage but the last is a cheap half-band whose stopband starts where
                // such aliases come from. The last stage carries soxr's sharp edge.
                for j in 0..log2_factor {
                    let r = (1u64 << (log2_factor - 1 - j)) as f64; // final Nyquist multiples
                    let g = if j + 1 == log2_factor { gain } else { 1.0 };
                    if r == 1.0 {
                        let h = design_lowpass(0.25 * p.passband, 0.25, p.stopband_db);
                        stages.push(Stage::fft(&h, g));
                    } else {
                        let h = design_halfband(0.25 * p.passband / r, p.stopband_db);
                        stages.push(Stage::halfband(&h, g));
                    }
                }
            }
            DecimatorKind::ScipyPolyphase if log2_factor > 0 => {
                let half_len = 10 * factor;
                let h = windowed_sinc(2 * half_len + 1, 0.5 / factor as f64, 5.0);
                stages.push(Stage::direct(&h, factor, gain));
            }
            _ => {}
        }
        Decimator { factor, kind, stages, tmp: Vec::new() }
    }

    pub fn factor(&self) -> usize {
        self.factor
    }

    pub fn process(&mut self, x: &[f32], out: &mut Vec<f32>) {
        let Some((first, rest)) = self.stages.split_first_mut() else {
            out.clear();
            out.extend_from_slice(x);
            return;
        };
        first.run(x, out);
        for st in rest {
            std::mem::swap(out, &mut self.tmp);
            st.run(&self.tmp, out);
        }
        if self.kind == DecimatorKind::SoxrHq && self.factor > 2 {
            // soxr returns round(len / F) samples and librosa pads that to ceil(len / F)
            // with zeros.
            let n_soxr = (2 * x.len() + self.factor) / (2 * self.factor);
            out[n_soxr..].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_follow_the_conventions() {
        let p = ResampleParams { passband: 0.913, stopband_db: 120.0 };
        let r = Resampler::new(48_000, 32_000, &p);
        for n in [0, 1, 2, 3, 4, 1000, 1001] {
            assert_eq!(r.process(&vec![0.5; n]).len(), (n * 2).div_ceil(3));
        }
        let mut d = Decimator::new(DecimatorKind::SoxrHq, 4, &p);
        let mut out = Vec::new();
        for n in [0, 1, 7, 8, 9, 24, 4097] {
            d.process(&vec![1.0; n], &mut out);
            assert_eq!(out.len(), n.div_ceil(16));
        }
        // 4097 / 16: soxr gives 256 samples, librosa pads a zero.
        assert_eq!(out[256], 0.0);
        assert!((out[100] - 4.0).abs() < 1e-4, "DC gain sqrt(16): {}", out[100]);
    }
}
