//! Savitzky–Golay deltas (librosa `feature.delta`) and the 6-channel stack.

use crate::array::Array3;
use crate::preset::DeltaParams;

/// (2, F, T) dB spectrogram -> [S_L, S_R, Δ_L, Δ_R, ΔΔ_L, ΔΔ_R]: (6, F, T) in `Interp`
/// mode, (6, F, T - 2*(width/2)) with the statics cropped in `Valid` mode.
pub fn stack6(_db: &Array3, _p: &DeltaParams) -> Array3 {
    todo!("deltas")
}
