//! FIR building blocks for the resamplers: Kaiser-window design and the three decimating
//! kernels the [`super::resample::Decimator`] chains together. Every filter here is
//! symmetric with an odd length, applied centred (output sample m sits on input sample
//! F·m) with zeros outside the signal, which is how both soxr and scipy's `resample_poly`
//! align their outputs.

use num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::f64::consts::PI;
use std::sync::Arc;

/// Modified Bessel function of the first kind, order 0 (power series; converges for the
/// β ≤ 20 that Kaiser windows use).
pub(crate) fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
    while term > 1e-17 * sum {
        term *= q / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

/// Kaiser's β for a stopband attenuation in dB (Kaiser 1974, as in scipy's `kaiser_beta`).
pub(crate) fn kaiser_beta(att_db: f64) -> f64 {
    if att_db > 50.0 {
        0.1102 * (att_db - 8.7)
    } else if att_db > 21.0 {
        0.5842 * (att_db - 21.0).powf(0.4) + 0.07886 * (att_db - 21.0)
    } else {
        0.0
    }
}

/// Kaiser's length estimate for `att_db` over a transition of `width` cycles/sample.
pub(crate) fn kaiser_len(att_db: f64, width: f64) -> usize {
    ((att_db - 7.95) / (2.285 * 2.0 * PI * width)).ceil().max(1.0) as usize + 1
}

/// The Kaiser window at offset `t` from the centre of a window of half-width `half`
/// (zero outside): I0(β·sqrt(1 - (t/half)²)) / I0(β).
pub(crate) fn kaiser_at(t: f64, half: f64, beta: f64) -> f64 {
    let r = t / half;
    if r.abs() > 1.0 {
        return 0.0;
    }
    bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(beta)
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        (PI * x).sin() / (PI * x)
    }
}

/// Odd-length Kaiser-windowed sinc low-pass with its -6 dB point at `cutoff` cycles/sample,
/// scaled to unit DC gain (scipy `firwin(n, 2*cutoff, window=('kaiser', beta))`).
pub(crate) fn windowed_sinc(n: usize, cutoff: f64, beta: f64) -> Vec<f64> {
    assert!(n % 2 == 1, "linear-phase filters here have an odd length");
    let c = (n - 1) as f64 / 2.0;
    let mut h: Vec<f64> = (0..n)
        .map(|i| {
            let t = i as f64 - c;
            let w = if n == 1 { 1.0 } else { kaiser_at(t, c, beta) };
            2.0 * cutoff * sinc(2.0 * cutoff * t) * w
        })
        .collect();
    let s: f64 = h.iter().sum();
    h.iter_mut().for_each(|v| *v /= s);
    h
}

/// Largest gain (dB) of the centred symmetric filter `h` over [stop, 0.5] cycles/sample.
fn stopband_peak_db(h: &[f64], stop: f64) -> f64 {
    let c = (h.len() - 1) / 2;
    let n_grid = (4 * h.len()).max(256);
    let mut peak = 0.0f64;
    for g in 0..=n_grid {
        let f = stop + (0.5 - stop) * g as f64 / n_grid as f64;
        // Zero-phase response of a symmetric filter: h[c] + 2 Σ h[c+k] cos(2πfk), with the
        // cosines from a running rotation (k·1e-16 error, far below the dB we check).
        let (step, mut rot) = (Complex::from_polar(1.0, 2.0 * PI * f), Complex::new(1.0, 0.0));
        let mut a = h[c];
        for k in 1..=c {
            rot *= step;
            a += 2.0 * h[c + k] * rot.re;
        }
        peak = peak.max(a.abs());
    }
    20.0 * peak.max(1e-300).log10()
}

/// Low-pass flat to `pass` and at least `att_db` down from `stop` (both cycles/sample).
/// Kaiser's length formula is a few dB optimistic for short filters, so the design grows
/// until a dense check of the stopband confirms the attenuation.
pub(crate) fn design_lowpass(pass: f64, stop: f64, att_db: f64) -> Vec<f64> {
    let beta = kaiser_beta(att_db);
    let mut n = kaiser_len(att_db, stop - pass) | 1;
    loop {
        let h = windowed_sinc(n, 0.5 * (pass + stop), beta);
        if stopband_peak_db(&h, stop) <= -att_db || n > 64 * kaiser_len(att_db, stop - pass) {
            return h;
        }
        n += 2;
    }
}

/// Half-band low-pass (cutoff at a quarter of the rate, every other tap zero) flat to
/// `pass` cycles/sample and `att_db` down from 0.5 - `pass`. These filters are short, where
/// Kaiser's β formula undershoots, so each length tries a range of β.
pub(crate) fn design_halfband(pass: f64, att_db: f64) -> Vec<f64> {
    let stop = 0.5 - pass;
    // n = 4j + 3 keeps the outermost taps on odd offsets, where a half-band is non-zero.
    let mut j = kaiser_len(att_db, stop - pass).saturating_sub(3).div_ceil(4).saturating_sub(1);
    loop {
        let n = 4 * j + 3;
        let mut best: Option<(f64, Vec<f64>)> = None;
        for step in 0..20 {
            let h = halfband(n, kaiser_beta(att_db) - 1.0 + 0.5 * step as f64);
            let peak = stopband_peak_db(&h, stop);
            if best.as_ref().is_none_or(|(b, _)| peak < *b) {
                best = Some((peak, h));
            }
        }
        let (peak, h) = best.expect("tried at least one beta");
        if peak <= -att_db || j > 64 {
            return h;
        }
        j += 1;
    }
}

fn halfband(n: usize, beta: f64) -> Vec<f64> {
    let mut h = windowed_sinc(n, 0.25, beta);
    // Exact half-band: centre 1/2, even offsets 0, the odd taps sum to 1/2 (unit DC gain).
    let c = (n - 1) / 2;
    for (i, v) in h.iter_mut().enumerate() {
        if (i as isize - c as isize) % 2 == 0 {
            *v = 0.0;
        }
    }
    let odd: f64 = h.iter().sum();
    h.iter_mut().for_each(|v| *v *= 0.5 / odd);
    h[c] = 0.5;
    h
}

/// One decimation stage: output length ceil(len / factor), output m centred on input
/// factor·m.
pub(crate) enum Stage {
    /// Halving with a half-band filter: only the centre and the odd taps multiply.
    Halfband(Halfband),
    /// Halving with a long filter through overlap-save FFT convolution.
    Fft(FftHalver),
    /// Any factor, plain dot products (the short scipy polyphase filter).
    Direct { factor: usize, taps: Vec<f32>, padded: Vec<f32> },
}

impl Stage {
    /// `h`: the designed filter (odd length, symmetric); `gain` is folded into the taps.
    pub(crate) fn halfband(h: &[f64], gain: f64) -> Stage {
        let c = (h.len() - 1) / 2;
        Stage::Halfband(Halfband {
            centre: (h[c] * gain) as f32,
            odd: (0..c.div_ceil(2)).map(|j| (h[c + 2 * j + 1] * gain) as f32).collect(),
            even: Vec::new(),
            phase: Vec::new(),
        })
    }

    pub(crate) fn fft(h: &[f64], gain: f64) -> Stage {
        Stage::Fft(FftHalver::new(h, gain))
    }

    pub(crate) fn direct(h: &[f64], factor: usize, gain: f64) -> Stage {
        Stage::Direct { factor, taps: h.iter().map(|v| (v * gain) as f32).collect(), padded: Vec::new() }
    }

    pub(crate) fn factor(&self) -> usize {
        match self {
            Stage::Halfband(_) | Stage::Fft(_) => 2,
            Stage::Direct { factor, .. } => *factor,
        }
    }

    /// Writes ceil(x.len() / factor) samples into `out`.
    pub(crate) fn run(&mut self, x: &[f32], out: &mut Vec<f32>) {
        let m = x.len().div_ceil(self.factor());
        out.clear();
        out.resize(m, 0.0);
        if m == 0 {
            return;
        }
        match self {
            Stage::Halfband(hb) => hb.run(x, out),
            Stage::Fft(f) => f.run(x, out),
            Stage::Direct { factor, taps, padded } => {
                let c = (taps.len() - 1) / 2;
                padded.clear();
                padded.resize(c, 0.0);
                padded.extend_from_slice(x);
                padded.resize(factor.saturating_mul(m) + taps.len(), 0.0);
                // The taps are symmetric, so correlation with the padded input is the
                // centred convolution.
                for (i, y) in out.iter_mut().enumerate() {
                    *y = dot(taps, &padded[*factor * i..*factor * i + taps.len()]);
                }
            }
        }
    }
}

/// Dot product with eight independent partial sums, so it vectorises without -ffast-math.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

pub(crate) struct Halfband {
    centre: f32,
    /// h[c + 2j + 1], j = 0..J.
    odd: Vec<f32>,
    /// The even-indexed input samples.
    even: Vec<f32>,
    /// The odd-indexed input samples with J zeros on each side.
    phase: Vec<f32>,
}

impl Halfband {
    fn run(&mut self, x: &[f32], out: &mut [f32]) {
        // y[m] = h_c·x[2m] + Σ_j g_j·(x[2m+2j+1] + x[2m-2j-1]); with o[i] = x[2i+1] the two
        // arms are o[m+j] and o[m-1-j]: contiguous in m, so the loop over m vectorises.
        let (jn, m) = (self.odd.len(), out.len());
        // Split into phases without zero-filling first: these buffers are the stage's
        // biggest memory traffic.
        self.even.clear();
        self.even.extend(x.chunks_exact(2).map(|p| p[0]));
        self.even.extend(x.chunks_exact(2).remainder());
        self.phase.clear();
        self.phase.resize(jn, 0.0);
        self.phase.extend(x.chunks_exact(2).map(|p| p[1]));
        self.phase.resize(m + 2 * jn, 0.0);
        // Sixteen outputs at a time stay in registers across all taps.
        const W: usize = 16;
        let full = m / W * W;
        for m0 in (0..full).step_by(W) {
            let e: &[f32; W] = self.even[m0..][..W].try_into().expect("W");
            let mut acc = e.map(|v| self.centre * v);
            for (j, &g) in self.odd.iter().enumerate() {
                let hi: &[f32; W] = self.phase[m0 + jn + j..][..W].try_into().expect("W");
                let lo: &[f32; W] = self.phase[m0 + jn - 1 - j..][..W].try_into().expect("W");
                for l in 0..W {
                    acc[l] += g * (hi[l] + lo[l]);
                }
            }
            out[m0..m0 + W].copy_from_slice(&acc);
        }
        for (i, y) in out.iter_mut().enumerate().skip(full) {
            *y = self.centre * self.even[i];
            for (j, &g) in self.odd.iter().enumerate() {
                *y += g * (self.phase[i + jn + j] + self.phase[i + jn - 1 - j]);
            }
        }
    }
}

/// Halving through overlap-save: each block filters B input samples with one real FFT and
/// takes every other output by folding the spectrum onto B/2 bins before a half-size
/// inverse FFT: w[u] = z[2u] has DFT (Z[k] + Z[k + B/2]) / 2.
pub(crate) struct FftHalver {
    n_taps: usize,
    block: usize,
    /// FFT of the zero-padded taps, with the gain and the inverse FFT's 1/B folded in.
    h_spec: Vec<Complex<f32>>,
    fwd: Arc<dyn RealToComplex<f32>>,
    inv: Arc<dyn ComplexToReal<f32>>,
    seg: Vec<f32>,
    spec: Vec<Complex<f32>>,
    fold: Vec<Complex<f32>>,
    half: Vec<f32>,
    scratch: Vec<Complex<f32>>,
}

impl FftHalver {
    fn new(h: &[f64], gain: f64) -> FftHalver {
        let n_taps = h.len();
        let block = (4 * n_taps).next_power_of_two().max(256);
        let mut planner = RealFftPlanner::<f64>::new();
        let mut padded = vec![0.0f64; block];
        padded[..n_taps].copy_from_slice(h);
        let fwd64 = planner.plan_fft_forward(block);
        let mut hs = fwd64.make_output_vec();
        fwd64.process(&mut padded, &mut hs).expect("fft sizes");
        let scale = gain / block as f64;
        let h_spec = hs.iter().map(|v| Complex::new((v.re * scale) as f32, (v.im * scale) as f32)).collect();
        let mut p32 = RealFftPlanner::<f32>::new();
        let fwd = p32.plan_fft_forward(block);
        let inv = p32.plan_fft_inverse(block / 2);
        let scratch = vec![Complex::default(); fwd.get_scratch_len().max(inv.get_scratch_len())];
        FftHalver {
            n_taps,
            block,
            h_spec,
            seg: fwd.make_input_vec(),
            spec: fwd.make_output_vec(),
            fold: inv.make_input_vec(),
            half: inv.make_output_vec(),
            fwd,
            inv,
            scratch,
        }
    }

    fn run(&mut self, x: &[f32], out: &mut [f32]) {
        let (b, n) = (self.block, self.n_taps);
        let c = (n - 1) / 2;
        // Each block yields (B - N + 1)/2 outputs: the circularly wrapped part is dropped.
        let per_block = (b - n).div_ceil(2);
        let mut m0 = 0;
        while m0 < out.len() {
            // The block starts N-1 input samples before its first full output, 2·m0 + c.
            let start = 2 * m0 as isize - c as isize;
            self.seg.fill(0.0);
            let lo = start.max(0) as usize;
            let hi = ((start + b as isize).max(0) as usize).min(x.len());
            if lo < hi {
                let at = (lo as isize - start) as usize;
                self.seg[at..at + hi - lo].copy_from_slice(&x[lo..hi]);
            }
            self.fwd.process_with_scratch(&mut self.seg, &mut self.spec, &mut self.scratch).expect("fft sizes");
            for (s, h) in self.spec.iter_mut().zip(&self.h_spec) {
                *s *= h;
            }
            let q = b / 4;
            for k in 0..=q {
                self.fold[k] = self.spec[k] + self.spec[b / 2 - k].conj();
            }
            // DC and Nyquist of a real signal's spectrum are real; rounding says otherwise.
            self.fold[0].im = 0.0;
            self.fold[q].im = 0.0;
            self.inv.process_with_scratch(&mut self.fold, &mut self.half, &mut self.scratch).expect("fft sizes");
            let take = per_block.min(out.len() - m0);
            out[m0..m0 + take].copy_from_slice(&self.half[c..c + take]);
            m0 += take;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bessel_matches_known_values() {
        assert!((bessel_i0(0.0) - 1.0).abs() < 1e-15);
        assert!((bessel_i0(1.0) - 1.266_065_877_752_008_4).abs() < 1e-14);
        assert!((bessel_i0(5.0) - 27.239_871_823_604_45).abs() < 1e-11);
    }

    #[test]
    fn designs_meet_their_stopband() {
        let h = design_lowpass(0.913 * 0.25, 0.25, 120.0);
        assert!(stopband_peak_db(&h, 0.25) <= -120.0);
        let hb = design_halfband(0.913 / 8.0 * 0.25, 120.0);
        assert!(stopband_peak_db(&hb, 0.5 - 0.913 / 8.0 * 0.25) <= -120.0);
        assert_eq!(hb[(hb.len() - 1) / 2 + 2], 0.0);
    }

    #[test]
    fn fft_halver_equals_direct_convolution() {
        let h = design_lowpass(0.2, 0.25, 100.0);
        let x: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        Stage::fft(&h, 1.5).run(&x, &mut a);
        Stage::direct(&h, 2, 1.5).run(&x, &mut b);
        assert_eq!(a.len(), 2500);
        let err = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
        assert!(err < 1e-5, "{err}");
        let hb = design_halfband(0.1, 100.0);
        Stage::halfband(&hb, 1.0).run(&x[..4999], &mut a);
        Stage::direct(&hb, 2, 1.0).run(&x[..4999], &mut b);
        assert_eq!(a.len(), 2500);
        let err = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
        assert!(err < 1e-5, "{err}");
    }
}
