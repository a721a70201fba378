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

#[derive(Clone)]
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
#[derive(Clone)]
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
        let n_out = self.output_len(x.len());
        if let Taps::Identity = self.taps {
            return x.to_vec();
        }
        let span = self.span;
        // x[i] lives at padded[i + span]; the window for output m starts at i0 - span.
        let mut padded = vec![0.0f32; span];
        padded.extend_from_slice(x);
        padded.resize(x.len() + 2 * span + 2, 0.0);
        let mut out = Vec::with_capacity(n_out);
        let mut k = vec![0.0f32; self.width()];
        for m in 0..n_out as u64 {
            let (i0, phi) = self.position(m);
            out.push(self.output(phi, &padded[i0..i0 + self.width()], &mut k));
        }
        out
    }

    /// ceil(len * to / from).
    pub fn output_len(&self, len: usize) -> usize {
        ((len as u64 * self.up).div_ceil(self.down)) as usize
    }

    /// Taps per output.
    fn width(&self) -> usize {
        2 * self.span + 2
    }

    /// Output m reads padded input [i0, i0 + width) (padded: `span` zeros first) at phase phi.
    fn position(&self, m: u64) -> (usize, usize) {
        let pos = m * self.down;
        ((pos / self.up) as usize, (pos % self.up) as usize)
    }

    /// One output from its `width()` input samples (`k`: scratch of `width()`).
    fn output(&self, phi: usize, win: &[f32], k: &mut [f32]) -> f32 {
        let (span, width) = (self.span, self.width());
        match &self.taps {
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
                super::fir::dot(k, win) / sum
            }
            Taps::Identity => win[span],
        }
    }
}

/// [`Resampler::process`] on a signal that arrives in pieces: [`ResampleStream::push`] writes
/// every output whose input is all in, [`ResampleStream::finish`] the rest (the signal taken
/// as zero after its end, as `process` does). The outputs are `process`'s, bit for bit.
/// Memory: the last `2·span + 2` input samples and at most one piece.
pub struct ResampleStream {
    r: Resampler,
    /// Padded input from padded index `base` on (`span` zeros lead the signal).
    buf: Vec<f32>,
    base: usize,
    /// Next output index; input samples pushed.
    m: u64,
    pushed: usize,
    k: Vec<f32>,
}

impl ResampleStream {
    pub fn new(r: Resampler) -> ResampleStream {
        let width = r.width();
        let mut buf = Vec::with_capacity(1 << 16);
        buf.resize(r.span, 0.0);
        ResampleStream { buf, base: 0, m: 0, pushed: 0, k: vec![0.0; width], r }
    }

    pub fn resampler(&self) -> &Resampler {
        &self.r
    }

    /// Start a new signal.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.buf.resize(self.r.span, 0.0);
        (self.base, self.m, self.pushed) = (0, 0, 0);
    }

    /// Input samples pushed since the last reset.
    pub fn pushed(&self) -> usize {
        self.pushed
    }

    /// Append `x`; the outputs it completes go to `out`.
    pub fn push(&mut self, x: &[f32], out: &mut Vec<f32>) {
        if let Taps::Identity = self.r.taps {
            self.pushed += x.len();
            self.m += x.len() as u64;
            out.extend_from_slice(x);
            return;
        }
        // Drop what no later output reads (the buffer keeps its capacity).
        let keep_from = self.r.position(self.m).0.max(self.base);
        self.buf.drain(..keep_from - self.base);
        self.base = keep_from;
        self.buf.extend_from_slice(x);
        self.pushed += x.len();
        self.emit(u64::MAX, out);
    }

    /// The outputs left, the signal being `pushed()` samples long.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        if let Taps::Identity = self.r.taps {
            return;
        }
        let width = self.r.width();
        self.buf.resize(self.buf.len() + width, 0.0);
        self.emit(self.r.output_len(self.pushed) as u64, out);
    }

    /// Outputs m < `limit` whose input window is in the buffer.
    fn emit(&mut self, limit: u64, out: &mut Vec<f32>) {
        let width = self.r.width();
        while self.m < limit {
            let (i0, phi) = self.r.position(self.m);
            if i0 + width > self.base + self.buf.len() {
                return;
            }
            let win = &self.buf[i0 - self.base..i0 - self.base + width];
            out.push(self.r.output(phi, win, &mut self.k));
            self.m += 1;
        }
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

    /// Pieces of any size give `process`'s samples exactly, for exact and interpolated taps.
    #[test]
    fn the_stream_equals_the_whole_signal_bit_for_bit() {
        let p = ResampleParams { passband: 0.95, stopband_db: 120.0 };
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (from, to) in [(48_000, 32_000), (44_100, 32_000), (47_999, 32_000), (32_000, 32_000), (16_000, 32_000)] {
            let r = Resampler::new(from, to, &p);
            for len in [0, 1, 5, 1000, 12_345] {
                let x: Vec<f32> = (0..len).map(|_| (next() % 2001) as f32 / 1000.0 - 1.0).collect();
                let want = r.process(&x);
                let mut s = ResampleStream::new(Resampler::new(from, to, &p));
                let mut got = Vec::new();
                for round in 0..2 {
                    got.clear();
                    s.reset();
                    let mut at = 0;
                    while at < x.len() {
                        let n = ((next() % 700) as usize * (round + 1)).min(x.len() - at);
                        s.push(&x[at..at + n], &mut got);
                        at += n;
                    }
                    s.finish(&mut got);
                    assert_eq!(got.len(), want.len(), "{from} -> {to}, {len} samples");
                    assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{from} -> {to}");
                }
            }
        }
    }

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
