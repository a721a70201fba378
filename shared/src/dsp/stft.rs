//! Real STFT with a periodic Hann window centred in the FFT frame (librosa / Ellis framing).
//! Plans and scratch buffers are built once in `new` and reused for every frame.

pub struct Stft {
    pub n_fft: usize,
    pub win_length: usize,
    pub hop: usize,
    pub center: bool,
}

impl Stft {
    pub fn new(n_fft: usize, win_length: usize, hop: usize, center: bool) -> Stft {
        Stft { n_fft, win_length, hop, center }
    }

    /// Number of bins per frame (n_fft/2 + 1).
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Number of frames for a signal of `len` samples.
    pub fn n_frames(&self, len: usize) -> usize {
        if self.center {
            1 + len / self.hop
        } else if len < self.n_fft {
            0
        } else {
            1 + (len - self.n_fft) / self.hop
        }
    }

    /// |X|^2, frame-major: `out[t * n_bins + k]`. Returns the frame count.
    pub fn power(&mut self, _x: &[f32], _out: &mut Vec<f32>) -> usize {
        todo!("stft power")
    }
}
