//! librosa `power_to_db`, applied per channel.

use crate::preset::DbParams;

/// In place: power -> dB with amin, reference and top_db clipping against this slice's max.
pub fn power_to_db(_power: &mut [f32], _p: &DbParams) {
    todo!("power_to_db")
}
