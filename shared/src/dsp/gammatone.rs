//! Ellis / Slaney FFT-weight gammatone filterbank (gammatone 1.0.3 `fft_weights`).

pub struct GammatoneFilterbank {}

impl GammatoneFilterbank {
    pub fn new(_sample_rate: u32, _n_fft: usize, _n_bins: usize, _width: f64, _fmin: f64, _fmax: f64) -> GammatoneFilterbank {
        todo!("gammatone filterbank")
    }

    /// `power`: frame-major (n_frames x n_fft/2+1) power spectrum (|X|^2; magnitudes are
    /// taken here). `out`: (n_bins x n_frames), magnitude-weighted sum divided by n_fft.
    pub fn apply(&self, _power: &[f32], _n_frames: usize, _out: &mut [f32]) {
        todo!("gammatone apply")
    }
}
