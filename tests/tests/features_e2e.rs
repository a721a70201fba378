//! Host `features` end to end against the librosa/gammatone goldens: the golden input is
//! written as a 32-bit float WAV, run through the same code path as `avsc-host features`,
//! and the .npy read back must match the reference stack.

use avsc_shared::wav::{self, Audio};
use avsc_shared::{npy, reference_dir, FeatureKind, FeaturePreset};

#[test]
fn wav_to_npy_matches_the_paper_preset_goldens() {
    let golden = reference_dir().join("golden");
    let input = npy::read(&golden.join("input_scene_10s.npy")).unwrap();
    let n = input.shape[1];
    let audio = Audio { sample_rate: 32_000, channels: input.data.chunks_exact(n).map(<[f32]>::to_vec).collect() };
    let dir = tempfile::tempdir().unwrap();
    let wav_path = dir.path().join("scene.wav");
    std::fs::write(&wav_path, wav::encode(&audio, true)).unwrap();
    let preset = FeaturePreset::paper();
    for kind in FeatureKind::ALL {
        let out = dir.path().join(format!("{kind}.npy"));
        let shape = avsc_host::features::run(&wav_path, kind, &preset, true, &out).unwrap();
        assert_eq!(shape, [6, 128, 305]);
        let ours = npy::read(&out).unwrap();
        let statics = npy::read(&golden.join(format!("PB_scene_10s_{kind}_db.npy"))).unwrap();
        let deltas = npy::read(&golden.join(format!("PB_scene_10s_{kind}_deltas4_valid5.npy"))).unwrap();
        // Reassemble the reference stack: statics cropped [2:-2], then the four delta planes.
        let t = statics.shape[2];
        let mut reference: Vec<f32> = statics.data.chunks_exact(t).flat_map(|row| row[2..t - 2].to_vec()).collect();
        reference.extend_from_slice(&deltas.data);
        let (max_db, tol) = (
            ours.data.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max),
            if kind == FeatureKind::Cqt { 1.0 } else { 0.02 },
        );
        eprintln!("{kind}: max |diff| = {max_db:.5} dB");
        if kind == FeatureKind::Cqt {
            // The CQT's decimator is not soxr: bound the median tightly, the tail loosely.
            let mut d: Vec<f32> = ours.data.iter().zip(&reference).map(|(a, b)| (a - b).abs()).collect();
            d.sort_by(f32::total_cmp);
            assert!(d[d.len() / 2] <= 0.05, "cqt median {}", d[d.len() / 2]);
            assert!(d[d.len() * 99 / 100] <= tol, "cqt p99 {}", d[d.len() * 99 / 100]);
        } else {
            assert!(max_db <= tol, "{kind}: {max_db} dB");
        }
    }
}
