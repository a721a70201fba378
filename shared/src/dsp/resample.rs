//! Band-limited resampling (any rate -> the preset's rate) and the halving decimator the
//! CQT's octave recursion uses.

use crate::preset::ResampleParams;

pub struct Resampler {
    pub from: u32,
    pub to: u32,
}

impl Resampler {
    pub fn new(from: u32, to: u32, _p: &ResampleParams) -> Resampler {
        Resampler { from, to }
    }

    /// Output length is ceil(len * to / from); the output is time-aligned with the input
    /// (linear phase, delay compensated).
    pub fn process(&self, _x: &[f32]) -> Vec<f32> {
        todo!("resample")
    }
}
