//! librosa `power_to_db`, applied per channel.

use crate::preset::DbParams;

/// In place: power -> dB with amin, reference and top_db clipping against this slice's max.
///
/// librosa takes the top_db maximum over the whole array it is given; callers pass one
/// channel at a time so that stereo channels are clipped independently (SPEC §6).
pub fn power_to_db(power: &mut [f32], p: &DbParams) {
    let amin = p.amin as f32;
    let offset = (10.0 * p.amin.max(p.reference.abs()).log10()) as f32;
    let mut max = f32::NEG_INFINITY;
    for v in power.iter_mut() {
        *v = 10.0 * v.max(amin).log10() - offset;
        max = max.max(*v);
    }
    if p.top_db.is_finite() && p.top_db >= 0.0 {
        let floor = max - p.top_db as f32;
        for v in power.iter_mut() {
            *v = v.max(floor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> DbParams {
        DbParams { reference: 1.0, amin: 1e-10, top_db: 80.0 }
    }

    #[test]
    fn converts_and_clips_against_the_slice_max() {
        let mut v = vec![1.0, 100.0, 1e-3, 1e-12, 0.0];
        power_to_db(&mut v, &params());
        let want = [0.0, 20.0, -30.0, -60.0, -60.0];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{v:?}");
        }
    }

    #[test]
    fn silent_channel_stays_at_the_amin_floor() {
        let mut v = vec![0.0; 10];
        power_to_db(&mut v, &params());
        assert!(v.iter().all(|&x| (x + 100.0).abs() < 1e-5));
    }

    #[test]
    fn reference_shifts_the_scale() {
        let mut v = vec![10.0];
        power_to_db(&mut v, &DbParams { reference: 10.0, ..params() });
        assert!(v[0].abs() < 1e-6);
    }
}
