//! Constant-Q transform as librosa 0.11 computes it (recursive octave decimation).

use crate::preset::{CqtParams, ResampleParams};

pub struct Cqt {}

impl Cqt {
    /// `hop` at `sample_rate`; `n_bins` bins from `fmin`. Kernels are built here, once.
    pub fn new(
        _sample_rate: u32,
        _hop: usize,
        _n_bins: usize,
        _fmin: f64,
        _p: &CqtParams,
        _resample: &ResampleParams,
    ) -> Cqt {
        todo!("cqt")
    }

    /// Number of (centred, uncropped) frames for `len` samples: 1 + len / hop.
    pub fn n_frames(&self, _len: usize) -> usize {
        todo!("cqt frames")
    }

    /// |C|, (n_bins x n_frames) with bin 0 lowest, uncropped. Returns n_frames.
    pub fn magnitude(&mut self, _x: &[f32], _out: &mut Vec<f32>) -> usize {
        todo!("cqt magnitude")
    }
}
