//! host -> bundle -> device: untrained `tiny` networks saved as Phase-I runs and Phase-II
//! heads, exported by `avsc_host::export::export_bundle`, then run by the `avsc-device`
//! binary on a tau-mini clip. Checks that the device accepts the exporter's manifest
//! (symbolic T, tiny embedding widths, the three heads) and returns one valid line per
//! window with the right head for the modalities present.
//!
//! The device binary is spawned, so it must be built: `cargo test --workspace` builds it
//! (avsc-device's own integration tests need it); alone, run `cargo build -p avsc-device`
//! first.

use avsc_e2e::{device_binary, field, lines, untrained_bundle_sized};
use avsc_host::nets::SizePreset;
use avsc_shared::{reference_dir, LABELS};
use std::path::PathBuf;
use std::process::Command;

#[test]
fn exported_tiny_bundle_runs_on_the_device() {
    bundle_runs_on_the_device(SizePreset::Tiny);
}

/// The published widths (12 M + 24 M + 28 M parameters in f32) load and run on the device.
#[test]
fn exported_paper_bundle_runs_on_the_device() {
    bundle_runs_on_the_device(SizePreset::Paper);
}

fn bundle_runs_on_the_device(size: SizePreset) {
    let dir = tempfile::tempdir().unwrap();
    let bundle = untrained_bundle_sized(dir.path(), size);
    let media = reference_dir().join("media/tau-mini");
    let mut clips: Vec<PathBuf> = std::fs::read_dir(media.join("video")).unwrap().map(|e| e.unwrap().path()).collect();
    clips.sort();
    let wav = media.join("audio").join(clips[0].with_extension("wav").file_name().unwrap());

    let o = Command::new(device_binary())
        .args(["classify", "--bundle"])
        .arg(&bundle)
        .arg(&clips[0])
        .arg(&wav)
        .output()
        .unwrap();
    let out = lines(&o);
    assert_eq!(out.len(), 2, "{out:?}");
    // The MP4: audio and frames -> the audio-visual head.
    assert_eq!(field(&out[0], "head"), "\"fusion\"");
    assert!(out[0].contains("\"modalities\":[\"audio\",\"visual\"]"), "{}", out[0]);
    // The WAV alone -> the audio-only head.
    assert_eq!(field(&out[1], "head"), "\"fusion_audio\"");
    for line in &out {
        let top = field(line, "top").trim_matches('"');
        assert!(LABELS.contains(&top), "{line}");
        let sum: f64 = LABELS.iter().map(|l| field(line, l).parse::<f64>().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}: {line}");
    }
}
