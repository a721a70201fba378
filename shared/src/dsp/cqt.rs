//! Constant-Q transform as librosa 0.11 computes it (recursive octave decimation,
//! Schörkhuber & Klapuri 2010); SPEC §7. Per octave: a centred, zero-padded STFT with a
//! rectangular window, then sparse frequency-domain wavelet kernels.

use super::resample::{Decimator, DecimatorKind};
use crate::preset::CqtParams;
use num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use std::f64::consts::PI;
use std::sync::Arc;

/// librosa `window_bandwidth('hann')`: the Hann window's equivalent noise bandwidth in
/// bins, as librosa tabulates it (estimated with n = 1000, hence not exactly 1.5). Only the
/// early-downsampling decision depends on it.
const HANN_ENBW: f64 = 1.500_183_105_468_75;

/// Frames whose kernel products are computed together (an even number: frames pair up).
const LANES: usize = 8;

struct Octave {
    n_fft: usize,
    hop: usize,
    /// First output bin of this octave's rows (rows are consecutive, ascending).
    bin0: usize,
    /// The FFT bins any kernel uses, ascending.
    bins: Vec<u32>,
    /// CSR rows: entries row_ptr[r]..row_ptr[r+1] of (index into `bins`, val).
    row_ptr: Vec<usize>,
    cols: Vec<u32>,
    /// Kernel values (real and imaginary parts), halved: two real frames share one
    /// complex FFT (see `magnitude`).
    vals_re: Vec<f32>,
    vals_im: Vec<f32>,
    fft: Arc<dyn Fft<f32>>,
    /// Whether the signal is halved before the next octave (librosa: while the hop is even).
    halve_after: bool,
}

pub struct Cqt {
    n_bins: usize,
    early: Decimator,
    halver: Decimator,
    octaves: Vec<Octave>,
    cur: Vec<f32>,
    next: Vec<f32>,
    padded: Vec<f32>,
    frames: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    /// LANES frames' spectra (times 2) at an octave's `bins`, bin-major.
    spec_re: Vec<[f32; LANES]>,
    spec_im: Vec<[f32; LANES]>,
}

impl Cqt {
    /// `hop` at `sample_rate`; `n_bins` bins from `fmin`. Kernels are built here, once.
    pub fn new(sample_rate: u32, hop: usize, n_bins: usize, fmin: f64, p: &CqtParams) -> Cqt {
        Self::with_decimator(sample_rate, hop, n_bins, fmin, p, DecimatorKind::SoxrHq)
    }

    /// As [`Cqt::new`] with a chosen decimator (`ScipyPolyphase` reproduces librosa's
    /// `res_type='polyphase'`).
    pub fn with_decimator(
        sample_rate: u32,
        hop: usize,
        n_bins: usize,
        fmin: f64,
        p: &CqtParams,
        kind: DecimatorKind,
    ) -> Cqt {
        assert!(n_bins >= 2 && hop > 0, "the CQT needs 2+ bins and a positive hop");
        let bpo = p.bins_per_octave;
        let sr = sample_rate as f64;
        let freqs: Vec<f64> = (0..n_bins).map(|k| fmin * 2f64.powf(k as f64 / bpo as f64)).collect();
        let q: Vec<f64> = relative_bandwidth(&freqs).iter().map(|a| p.filter_scale / a).collect();
        let n_octaves = n_bins.div_ceil(bpo);

        // Early downsampling (librosa __early_downsample_count).
        let cutoff = freqs.iter().zip(&q).map(|(f, q)| f * (1.0 + 0.5 * HANN_ENBW / q)).fold(0.0, f64::max);
        assert!(cutoff <= sr / 2.0, "the CQT's top filter exceeds the Nyquist frequency");
        let c1 = ((sr / 2.0 / cutoff).log2().ceil() as i64 - 2).max(0) as u32;
        let c2 = (hop.trailing_zeros() as i64 - n_octaves as i64 + 1).max(0) as u32;
        let count = c1.min(c2);
        let sr_early = sr / (1u64 << count) as f64;
        let mut my_hop = hop >> count;
        let mut my_sr = sr_early;

        let mut planner = FftPlanner::<f32>::new();
        let mut planner64 = FftPlanner::<f64>::new();
        let mut octaves = Vec::with_capacity(n_octaves);
        for i in 0..n_octaves {
            let hi = n_bins - bpo * i;
            let lo = hi.saturating_sub(bpo);
            let mut oct = octave_kernels(&freqs[lo..hi], &q[lo..hi], my_sr, p.sparsity, &mut planner64, &mut planner);
            // librosa: basis · sqrt(sr'/s_i), then the whole row / sqrt(L_k(sr')).
            for r in 0..hi - lo {
                let k = lo + r;
                let s = ((sr_early / my_sr).sqrt() / (q[k] * sr_early / freqs[k]).sqrt()) as f32;
                let span = oct.row_ptr[r]..oct.row_ptr[r + 1];
                oct.vals_re[span.clone()].iter_mut().chain(&mut oct.vals_im[span]).for_each(|v| *v *= s);
            }
            oct.bin0 = lo;
            oct.hop = my_hop;
            oct.halve_after = my_hop.is_multiple_of(2) && i + 1 < n_octaves;
            if my_hop.is_multiple_of(2) {
                my_hop /= 2;
                my_sr /= 2.0;
            }
            octaves.push(oct);
        }
        let max_fft = octaves.iter().map(|o| o.n_fft).max().unwrap_or(2);
        let max_bins = octaves.iter().map(|o| o.bins.len()).max().unwrap_or(0);
        let scratch_len = octaves.iter().map(|o| o.fft.get_inplace_scratch_len()).max().unwrap_or(0);
        Cqt {
            n_bins,
            early: Decimator::new(kind, count, &p.decimator),
            halver: Decimator::new(kind, 1, &p.decimator),
            octaves,
            cur: Vec::new(),
            next: Vec::new(),
            padded: Vec::new(),
            frames: vec![Complex::default(); max_fft],
            scratch: vec![Complex::default(); scratch_len],
            spec_re: vec![[0.0; LANES]; max_bins],
            spec_im: vec![[0.0; LANES]; max_bins],
        }
    }

    /// Signal length entering each octave, for an input of `len` samples.
    fn octave_lengths(&self, len: usize) -> Vec<usize> {
        let mut n = len.div_ceil(self.early.factor());
        self.octaves
            .iter()
            .map(|o| {
                let here = n;
                if o.halve_after {
                    n = n.div_ceil(2);
                }
                here
            })
            .collect()
    }

    /// Number of (centred, uncropped) frames for `len` samples: the fewest any octave has
    /// (librosa trims the stack to it); 1 + len / hop for the usual lengths.
    pub fn n_frames(&self, len: usize) -> usize {
        self.octave_lengths(len).iter().zip(&self.octaves).map(|(n, o)| 1 + n / o.hop).min().unwrap_or(0)
    }

    /// |C|, (n_bins x n_frames) with bin 0 lowest, uncropped. Returns n_frames.
    pub fn magnitude(&mut self, x: &[f32], out: &mut Vec<f32>) -> usize {
        let t_all = self.n_frames(x.len());
        out.clear();
        out.resize(self.n_bins * t_all, 0.0);
        self.early.process(x, &mut self.cur);
        for o in &self.octaves {
            let n = o.n_fft;
            self.padded.clear();
            self.padded.resize(n / 2, 0.0);
            self.padded.extend_from_slice(&self.cur);
            self.padded.resize(self.cur.len() + n, 0.0);
            // Frames t and t+1 go through one complex FFT as z = a + j·b; with
            // Zm[k] = conj(Z[n-k]), A = (Z + Zm)/2 and B = -j·(Z - Zm)/2 (the 1/2 is in the
            // kernel values), and only the kernels' bins are ever separated. LANES frames are
            // gathered per bin so the sparse kernel products run across frames in SIMD.
            let buf = &mut self.frames[..n];
            for t0 in (0..t_all).step_by(LANES) {
                let nf = LANES.min(t_all - t0);
                for p in (0..nf).step_by(2) {
                    let t = t0 + p;
                    let a = &self.padded[t * o.hop..t * o.hop + n];
                    if p + 1 < nf {
                        let b = &self.padded[(t + 1) * o.hop..(t + 1) * o.hop + n];
                        buf.iter_mut().zip(a.iter().zip(b)).for_each(|(z, (a, b))| *z = Complex::new(*a, *b));
                    } else {
                        buf.iter_mut().zip(a).for_each(|(z, a)| *z = Complex::new(*a, 0.0));
                    }
                    o.fft.process_with_scratch(buf, &mut self.scratch);
                    for (i, &k) in o.bins.iter().enumerate() {
                        let z = buf[k as usize];
                        let zm = buf[(n - k as usize) & (n - 1)].conj();
                        let (re, im) = (&mut self.spec_re[i], &mut self.spec_im[i]);
                        (re[p], im[p]) = (z.re + zm.re, z.im + zm.im);
                        // -j·(z - zm)
                        if p + 1 < LANES {
                            (re[p + 1], im[p + 1]) = (z.im - zm.im, zm.re - z.re);
                        }
                    }
                }
                for r in 0..o.row_ptr.len() - 1 {
                    let (lo, hi) = (o.row_ptr[r], o.row_ptr[r + 1]);
                    let (mut acc_re, mut acc_im) = ([0.0f32; LANES], [0.0f32; LANES]);
                    for ((&c, &vr), &vi) in o.cols[lo..hi].iter().zip(&o.vals_re[lo..hi]).zip(&o.vals_im[lo..hi]) {
                        let (sr, si) = (&self.spec_re[c as usize], &self.spec_im[c as usize]);
                        for l in 0..LANES {
                            acc_re[l] += vr * sr[l] - vi * si[l];
                            acc_im[l] += vr * si[l] + vi * sr[l];
                        }
                    }
                    let row = &mut out[(o.bin0 + r) * t_all + t0..(o.bin0 + r) * t_all + t0 + nf];
                    for (l, y) in row.iter_mut().enumerate() {
                        *y = (acc_re[l] * acc_re[l] + acc_im[l] * acc_im[l]).sqrt();
                    }
                }
            }
            if o.halve_after {
                self.halver.process(&self.cur, &mut self.next);
                std::mem::swap(&mut self.cur, &mut self.next);
            }
        }
        t_all
    }
}

/// librosa `filters._relative_bandwidth`: alpha from the local bins-per-octave (centred
/// log2 differences, one-sided at the ends).
fn relative_bandwidth(freqs: &[f64]) -> Vec<f64> {
    let n = freqs.len();
    let lf: Vec<f64> = freqs.iter().map(|f| f.log2()).collect();
    (0..n)
        .map(|k| {
            let bpo = match k {
                0 => 1.0 / (lf[1] - lf[0]),
                k if k == n - 1 => 1.0 / (lf[n - 1] - lf[n - 2]),
                k => 2.0 / (lf[k + 1] - lf[k - 1]),
            };
            let r = 2f64.powf(2.0 / bpo);
            (r - 1.0) / (r + 1.0)
        })
        .collect()
}

/// One octave's sparse kernels at rate `sr` (librosa `__vqt_filter_fft`): Hann-windowed
/// complex exponentials of length L = Q·sr/f, L1-normalised, centred in the next power of
/// two of the longest, scaled by L/n_fft, FFT'd, positive bins kept, then sparsified to
/// drop `sparsity` of each row's L1 mass.
fn octave_kernels(
    freqs: &[f64],
    q: &[f64],
    sr: f64,
    sparsity: f64,
    planner64: &mut FftPlanner<f64>,
    planner: &mut FftPlanner<f32>,
) -> Octave {
    let lengths: Vec<f64> = freqs.iter().zip(q).map(|(f, q)| q * sr / f).collect();
    let max_len = lengths.iter().cloned().fold(0.0, f64::max);
    let n_fft = 2f64.powf(max_len.log2().ceil()) as usize;
    let fft = planner64.plan_fft_forward(n_fft);
    let mut row_ptr = vec![0];
    let (mut cols, mut vals_re, mut vals_im) = (Vec::new(), Vec::new(), Vec::new());
    let mut buf = vec![Complex::<f64>::default(); n_fft];
    for (&f, &len) in freqs.iter().zip(&lengths) {
        // numpy: arange(-len // 2, len // 2) with float floor division.
        let start = (-len / 2.0).floor();
        let m = ((len / 2.0).floor() - start) as usize;
        let lpad = (n_fft - m) / 2;
        buf.iter_mut().for_each(|v| *v = Complex::default());
        for j in 0..m {
            let n = start + j as f64;
            let w = 0.5 - 0.5 * (2.0 * PI * j as f64 / m as f64).cos(); // periodic Hann(m)
            buf[lpad + j] = Complex::from_polar(w, 2.0 * PI * f * n / sr);
        }
        let l1: f64 = buf.iter().map(|v| v.norm()).sum();
        let s = len / n_fft as f64 / l1;
        buf.iter_mut().for_each(|v| *v *= s);
        fft.process(&mut buf);
        let row = &buf[..n_fft / 2 + 1];
        // librosa util.sparsify_rows: keep magnitudes >= the one where the ascending
        // cumulative share first reaches `sparsity`.
        let mags: Vec<f64> = row.iter().map(|v| v.norm()).collect();
        let total: f64 = mags.iter().sum();
        let mut sorted = mags.clone();
        sorted.sort_by(f64::total_cmp);
        // numpy's argmin over an all-False mask is 0: keep everything.
        let mut thr = sorted[0];
        let mut cum = 0.0;
        for &v in &sorted {
            cum += v / total;
            if cum >= sparsity {
                thr = v;
                break;
            }
        }
        for (k, v) in row.iter().enumerate() {
            if mags[k] >= thr {
                cols.push(k as u32);
                vals_re.push(0.5 * v.re as f32);
                vals_im.push(0.5 * v.im as f32);
            }
        }
        row_ptr.push(cols.len());
    }
    let mut bins = cols.clone();
    bins.sort_unstable();
    bins.dedup();
    for c in cols.iter_mut() {
        *c = bins.binary_search(c).expect("bin listed") as u32;
    }
    let fft = planner.plan_fft_forward(n_fft);
    Octave { n_fft, hop: 0, bin0: 0, bins, row_ptr, cols, vals_re, vals_im, fft, halve_after: false }
}
