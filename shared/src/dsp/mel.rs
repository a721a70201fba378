//! Slaney mel filterbank (librosa `filters.mel`, htk=False, norm='slaney').

pub struct MelFilterbank {}

impl MelFilterbank {
    pub fn new(_sample_rate: u32, _n_fft: usize, _n_mels: usize, _fmin: f64, _fmax: f64) -> MelFilterbank {
        todo!("mel filterbank")
    }

    /// `power`: frame-major (n_frames x n_fft/2+1) power spectrum. `out`: (n_mels x n_frames).
    pub fn apply(&self, _power: &[f32], _n_frames: usize, _out: &mut [f32]) {
        todo!("mel apply")
    }
}
