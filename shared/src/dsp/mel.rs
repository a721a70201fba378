//! Slaney mel filterbank (librosa `filters.mel`, htk=False, norm='slaney').

/// Slaney's scale is linear below this frequency and logarithmic above it.
const SLANEY_BREAK_HZ: f64 = 1000.0;
/// Hz per mel on the linear part.
const SLANEY_HZ_PER_MEL: f64 = 200.0 / 3.0;
/// ln(6.4) / 27: the log part spans 27 mels per factor 6.4 in frequency.
fn slaney_log_step() -> f64 {
    6.4f64.ln() / 27.0
}

pub fn hz_to_mel(f: f64) -> f64 {
    if f >= SLANEY_BREAK_HZ {
        SLANEY_BREAK_HZ / SLANEY_HZ_PER_MEL + (f / SLANEY_BREAK_HZ).ln() / slaney_log_step()
    } else {
        f / SLANEY_HZ_PER_MEL
    }
}

pub fn mel_to_hz(m: f64) -> f64 {
    let break_mel = SLANEY_BREAK_HZ / SLANEY_HZ_PER_MEL;
    if m >= break_mel {
        SLANEY_BREAK_HZ * (slaney_log_step() * (m - break_mel)).exp()
    } else {
        SLANEY_HZ_PER_MEL * m
    }
}

/// numpy `linspace(a, b, n)`: i*step + a, with the last point set to b exactly.
fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    let step = (b - a) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + a).collect();
    v[n - 1] = b;
    v
}

/// Partial sums per dot product (one AVX register of f32).
const LANES: usize = 8;

/// One triangular filter: its nonzero weights start at FFT bin `start`.
struct Filter {
    start: usize,
    weights: Vec<f32>,
}

pub struct MelFilterbank {
    n_fft_bins: usize,
    filters: Vec<Filter>,
    /// The n_mels + 2 band edges in Hz (librosa `mel_frequencies`).
    pub edges_hz: Vec<f64>,
}

impl MelFilterbank {
    pub fn new(sample_rate: u32, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> MelFilterbank {
        let sr = sample_rate as f64;
        let nb = n_fft / 2 + 1;
        let edges = linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2);
        let edges_hz: Vec<f64> = edges.into_iter().map(mel_to_hz).collect();
        let filters = (0..n_mels)
            .map(|i| {
                let (lo, mid, hi) = (edges_hz[i], edges_hz[i + 1], edges_hz[i + 2]);
                let enorm = 2.0 / (hi - lo);
                let w: Vec<f64> = (0..nb)
                    .map(|k| {
                        let f = k as f64 * sr / n_fft as f64;
                        let lower = (f - lo) / (mid - lo);
                        let upper = (hi - f) / (hi - mid);
                        lower.min(upper).max(0.0)
                    })
                    .collect();
                let first = w.iter().position(|&v| v > 0.0);
                let last = w.iter().rposition(|&v| v > 0.0);
                match (first, last) {
                    // librosa stores the triangle in f32, then scales it by the f64 norm.
                    (Some(a), Some(b)) => {
                        // Zero-pad to whole SIMD chunks (extending to the left at the top
                        // edge) so `dot` never runs a scalar tail.
                        let len = (b + 1 - a).div_ceil(LANES) * LANES;
                        let len = len.min(nb);
                        let start = a.min(nb - len);
                        let mut weights = vec![0.0f32; len];
                        for (k, &v) in w.iter().enumerate().take(b + 1).skip(a) {
                            weights[k - start] = ((v as f32) as f64 * enorm) as f32;
                        }
                        Filter { start, weights }
                    }
                    // A band narrower than the bin spacing gets no bins (librosa warns).
                    _ => Filter { start: 0, weights: Vec::new() },
                }
            })
            .collect();
        MelFilterbank { n_fft_bins: nb, filters, edges_hz }
    }

    pub fn n_mels(&self) -> usize {
        self.filters.len()
    }

    /// Number of stored weights (each filter's nonzero range, padded to whole SIMD chunks).
    pub fn stored_weights(&self) -> usize {
        self.filters.iter().map(|f| f.weights.len()).sum()
    }

    /// Dense (n_mels x n_fft/2+1) weights, for inspection and tests.
    pub fn dense(&self) -> Vec<f32> {
        let mut d = vec![0.0; self.filters.len() * self.n_fft_bins];
        for (row, f) in d.chunks_exact_mut(self.n_fft_bins).zip(&self.filters) {
            row[f.start..f.start + f.weights.len()].copy_from_slice(&f.weights);
        }
        d
    }

    /// `power`: frame-major (n_frames x n_fft/2+1) power spectrum. `out`: (n_mels x n_frames).
    pub fn apply(&self, power: &[f32], n_frames: usize, out: &mut [f32]) {
        self.apply_frames(power, 0, n_frames, out);
    }

    /// [`Self::apply`] for the frames from `t0` on that `power` holds (frame-major rows),
    /// into their columns of `out` (n_mels x n_frames): each frame's values are the same
    /// whichever call computes them.
    pub fn apply_frames(&self, power: &[f32], t0: usize, n_frames: usize, out: &mut [f32]) {
        let nb = self.n_fft_bins;
        assert!(power.len().is_multiple_of(nb) && t0 + power.len() / nb <= n_frames, "power spectrum size");
        assert_eq!(out.len(), self.filters.len() * n_frames, "mel output size");
        // Frame-outer: one spectrum row (a few KB) stays in L1 while every filter reads it.
        for (t, row) in power.chunks_exact(nb).enumerate() {
            for (i, f) in self.filters.iter().enumerate() {
                let seg = &row[f.start..f.start + f.weights.len()];
                out[i * n_frames + t0 + t] = dot(&f.weights, seg);
            }
        }
    }
}

/// Dot product with LANES independent partial sums, so it vectorises without fast-math.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ac, ar) = a.split_at(a.len() / LANES * LANES);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_round_trips_and_breaks_at_1khz() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        for f in [10.0, 440.0, 999.0, 1000.0, 5000.0, 16000.0] {
            assert!((mel_to_hz(hz_to_mel(f)) - f).abs() < 1e-9 * f);
        }
    }

    #[test]
    fn edges_match_librosa() {
        let m = MelFilterbank::new(32_000, 4096, 128, 10.0, 16_000.0);
        let e = &m.edges_hz;
        assert_eq!(e.len(), 130);
        assert!((e[0] - 10.0).abs() < 1e-9);
        assert!((e[1] - 38.52).abs() < 5e-3, "{}", e[1]);
        assert!((e[2] - 67.03).abs() < 5e-3, "{}", e[2]);
        assert!((e[128] - 15536.3).abs() < 5e-2, "{}", e[128]);
        assert!((e[129] - 16000.0).abs() < 1e-9);
    }

    #[test]
    fn filter_peaks_ascend_and_areas_are_normalised() {
        let (sr, n_fft) = (32_000u32, 4096usize);
        let m = MelFilterbank::new(sr, n_fft, 128, 10.0, 16_000.0);
        let nb = n_fft / 2 + 1;
        let dense = m.dense();
        let mut last_peak = 0;
        for (i, row) in dense.chunks_exact(nb).enumerate() {
            let peak = (0..nb).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            assert!(peak >= last_peak, "filter {i} peaks at {peak} below {last_peak}");
            last_peak = peak;
            // Slaney norm: each triangle has unit area in Hz once its peak is resolved.
            if i > 40 {
                let area: f64 = row.iter().map(|&w| w as f64).sum::<f64>() * sr as f64 / n_fft as f64;
                assert!((area - 1.0).abs() < 2e-2, "filter {i} area {area}");
            }
        }
        assert!(last_peak > 1900);
        // Sparse storage: each FFT bin feeds at most two triangles (plus chunk padding).
        assert!(m.stored_weights() <= 2 * nb + 128 * LANES);
    }

    #[test]
    fn apply_matches_dense_product() {
        let m = MelFilterbank::new(32_000, 256, 16, 10.0, 16_000.0);
        let nb = 129;
        let frames = 3;
        let power: Vec<f32> = (0..frames * nb).map(|i| ((i * 7919) % 101) as f32 / 101.0).collect();
        let mut out = vec![0.0; 16 * frames];
        m.apply(&power, frames, &mut out);
        let d = m.dense();
        for i in 0..16 {
            for t in 0..frames {
                let want: f32 = (0..nb).map(|k| d[i * nb + k] * power[t * nb + k]).sum();
                assert!((out[i * frames + t] - want).abs() < 1e-5 * want.abs().max(1.0));
            }
        }
    }
}
