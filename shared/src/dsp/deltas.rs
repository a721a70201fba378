//! Savitzky–Golay deltas (librosa `feature.delta`) and the 6-channel stack.
//!
//! librosa's `delta(width, order, mode='interp')` is `savgol_filter(polyorder=order,
//! deriv=order)`. With polyorder == deriv the edge fit's derivative is constant, so the
//! `interp` edges are exactly the nearest fully supported value repeated (SPEC §8).

use crate::array::Array3;
use crate::preset::{DeltaMode, DeltaParams};

/// First-derivative Savitzky–Golay kernel (linear fit): c_k = k / Σk², k = -N..N.
pub fn delta_kernel(width: usize) -> Vec<f64> {
    let n = half_width(width) as i64;
    let s2: i64 = (-n..=n).map(|k| k * k).sum();
    (-n..=n).map(|k| k as f64 / s2 as f64).collect()
}

/// Second-derivative Savitzky–Golay kernel (quadratic fit). On the symmetric grid
/// k = -N..N the least-squares quadratic coefficient is Σ(k² - S2/n)·y / (S4 - S2²/n), and
/// the second derivative is twice it.
pub fn delta2_kernel(width: usize) -> Vec<f64> {
    let n = half_width(width) as i64;
    let count = width as f64;
    let s2 = (-n..=n).map(|k| (k * k) as f64).sum::<f64>();
    let s4 = (-n..=n).map(|k| (k * k * k * k) as f64).sum::<f64>();
    let denom = s4 - s2 * s2 / count;
    (-n..=n).map(|k| 2.0 * ((k * k) as f64 - s2 / count) / denom).collect()
}

fn half_width(width: usize) -> usize {
    assert!(width >= 3 && width % 2 == 1, "delta width must be odd and >= 3, got {width}");
    width / 2
}

/// Correlate each row of `plane` (rows of length `t`) with `kernel`, keeping the fully
/// supported part and writing `t - 2N` values per row into `out` (rows of `out_t`), at
/// column offset `at`.
fn filter_valid(plane: &[f32], t: usize, kernel: &[f32], out: &mut [f32], out_t: usize, at: usize) {
    let w = kernel.len();
    let valid = t + 1 - w;
    for (row, dst) in plane.chunks_exact(t).zip(out.chunks_exact_mut(out_t)) {
        let dst = &mut dst[at..at + valid];
        dst.fill(0.0);
        // Tap-outer: each pass is a contiguous axpy, which vectorises.
        for (j, &c) in kernel.iter().enumerate() {
            for (d, s) in dst.iter_mut().zip(&row[j..j + valid]) {
                *d += c * s;
            }
        }
    }
}

/// (C, F, T) dB spectrogram -> [S_0..S_C-1, Δ_0..Δ_C-1, ΔΔ_0..ΔΔ_C-1]. For stereo that is
/// [S_L, S_R, Δ_L, Δ_R, ΔΔ_L, ΔΔ_R]: (6, F, T) in `Interp` mode, (6, F, T - 2*(width/2))
/// with the statics cropped in `Valid` mode.
pub fn stack6(db: &Array3, p: &DeltaParams) -> Array3 {
    let [c, f, t] = db.shape;
    let n = half_width(p.width);
    let kernels: [Vec<f32>; 2] =
        [delta_kernel(p.width), delta2_kernel(p.width)].map(|k| k.into_iter().map(|v| v as f32).collect());
    let out_t = match p.mode {
        DeltaMode::Interp => t,
        DeltaMode::Valid => t.saturating_sub(2 * n),
    };
    let plane = f * out_t;
    let mut out = Array3::zeros([3 * c, f, out_t]);
    if out_t == 0 {
        return out;
    }
    for ch in 0..c {
        let src = db.channel(ch);
        let crop = match p.mode {
            DeltaMode::Interp => 0,
            DeltaMode::Valid => n,
        };
        for (dst, row) in out.data[ch * plane..(ch + 1) * plane].chunks_exact_mut(out_t).zip(src.chunks_exact(t)) {
            dst.copy_from_slice(&row[crop..crop + out_t]);
        }
        for (order, kernel) in kernels.iter().enumerate() {
            let o = (1 + order) * c + ch;
            let dst = &mut out.data[o * plane..(o + 1) * plane];
            if t < p.width {
                // No fully supported frame (librosa refuses this input); deltas stay 0.
                continue;
            }
            match p.mode {
                DeltaMode::Valid => filter_valid(src, t, kernel, dst, out_t, 0),
                DeltaMode::Interp => {
                    filter_valid(src, t, kernel, dst, out_t, n);
                    for row in dst.chunks_exact_mut(out_t) {
                        let (first, last) = (row[n], row[t - 1 - n]);
                        row[..n].fill(first);
                        row[t - n..].fill(last);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_kernel(got: &[f64], num: &[i64], den: f64) {
        assert_eq!(got.len(), num.len());
        for (g, n) in got.iter().zip(num) {
            assert!((g - *n as f64 / den).abs() < 1e-15, "{got:?}");
        }
    }

    #[test]
    fn savitzky_golay_kernels() {
        assert_kernel(&delta_kernel(5), &[-2, -1, 0, 1, 2], 10.0);
        assert_kernel(&delta_kernel(9), &[-4, -3, -2, -1, 0, 1, 2, 3, 4], 60.0);
        assert_kernel(&delta2_kernel(5), &[2, -1, -2, -1, 2], 7.0);
        assert_kernel(&delta2_kernel(9), &[28, 7, -8, -17, -20, -17, -8, 7, 28], 462.0);
        assert_kernel(&delta2_kernel(3), &[1, -2, 1], 1.0);
    }

    #[test]
    fn ramp_and_parabola() {
        // S = t² + 3t: Δ = 2t + 3 in the interior, ΔΔ = 2 everywhere.
        let t = 12;
        let data: Vec<f32> = (0..t).map(|i| (i * i + 3 * i) as f32).collect();
        let db = Array3::from_vec([1, 1, t], data);
        let s = stack6(&db, &DeltaParams { width: 5, mode: DeltaMode::Valid });
        assert_eq!(s.shape, [3, 1, t - 4]);
        for j in 0..t - 4 {
            let i = (j + 2) as f32;
            assert_eq!(s.get(0, 0, j), i * i + 3.0 * i);
            assert!((s.get(1, 0, j) - (2.0 * i + 3.0)).abs() < 1e-4);
            assert!((s.get(2, 0, j) - 2.0).abs() < 1e-4);
        }
        let s = stack6(&db, &DeltaParams { width: 9, mode: DeltaMode::Interp });
        assert_eq!(s.shape, [3, 1, t]);
        // Edges replicate the nearest valid value (frames 4 and t-5).
        for j in 0..t {
            let i = j.clamp(4, t - 5) as f32;
            assert!((s.get(1, 0, j) - (2.0 * i + 3.0)).abs() < 1e-4, "{j}");
            assert!((s.get(2, 0, j) - 2.0).abs() < 1e-4);
        }
    }

    #[test]
    fn channel_order_is_statics_then_deltas() {
        let t = 9;
        let mut data = vec![0.0f32; 2 * 2 * t];
        for (i, v) in data.iter_mut().enumerate() {
            // Channel 1 rises twice as fast as channel 0.
            *v = (i % t) as f32 * (1 + i / (2 * t)) as f32;
        }
        let db = Array3::from_vec([2, 2, t], data);
        let s = stack6(&db, &DeltaParams { width: 5, mode: DeltaMode::Valid });
        assert_eq!(s.shape, [6, 2, 5]);
        assert!((s.get(2, 1, 0) - 1.0).abs() < 1e-6);
        assert!((s.get(3, 1, 0) - 2.0).abs() < 1e-6);
        assert!(s.get(4, 0, 0).abs() < 1e-6 && s.get(5, 0, 0).abs() < 1e-6);
    }

    #[test]
    fn too_short_input_gives_empty_or_zero_deltas() {
        let db = Array3::from_vec([1, 1, 3], vec![1.0, 2.0, 3.0]);
        let v = stack6(&db, &DeltaParams { width: 5, mode: DeltaMode::Valid });
        assert_eq!(v.shape, [3, 1, 0]);
        let i = stack6(&db, &DeltaParams { width: 5, mode: DeltaMode::Interp });
        assert_eq!(i.shape, [3, 1, 3]);
        assert!(i.data[3..].iter().all(|&x| x == 0.0));
    }
}
