//! The real ALSA capture path, with no sound card: alsa-lib's `file` PCM plugin reads a raw
//! fixture as a capture device (config in ../shared/DESIGN.md). ALSA_CONFIG_PATH must be set
//! before alsa-lib initialises, so each test spawns the avsc-device binary with it.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

const RATE: u32 = 48_000;

/// 12.5 s of S16_LE stereo (longer than a window: the file plugin returns stale data past
/// the end of its file instead of an error).
fn fixture(dir: &std::path::Path) -> (std::path::PathBuf, Vec<i16>) {
    let s16 = to_s16(&test_signal(RATE, 12.5));
    let raw: Vec<u8> = s16.iter().flat_map(|s| s.to_le_bytes()).collect();
    let p = dir.join("fixture.raw");
    std::fs::write(&p, raw).unwrap();
    (p, s16)
}

#[test]
fn capture_is_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, _) = fixture(dir.path());
    let conf = alsa_config(dir.path(), &raw, RATE);
    let out = dir.path().join("captured.raw");
    let frames = 10 * RATE as usize + 123;
    let o = run(bin()
        .env("ALSA_CONFIG_PATH", &conf)
        .args(["capture", "--mic", "ci_mic", "--rate", "48000", "--channels", "2", "--format", "s16"])
        .args(["--frames", &frames.to_string(), "--out"])
        .arg(&out));
    assert!(o.status.success());
    let got = std::fs::read(&out).unwrap();
    let want = std::fs::read(&raw).unwrap();
    assert_eq!(got.len(), frames * 4);
    assert!(got == want[..frames * 4], "captured bytes differ from the fixture");
}

#[test]
fn live_window_equals_classify_of_the_same_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, s16) = fixture(dir.path());
    let conf = alsa_config(dir.path(), &raw, RATE);
    let bundle = write_bundle(&dir.path().join("bundle"), BundleSpec::default());
    let wav = dir.path().join("fixture.wav");
    write_wav_s16(&wav, RATE, &s16);

    // Live: the camera does not exist, so the run goes on audio-only.
    let live = run(bin().env("ALSA_CONFIG_PATH", &conf).args(["run", "--bundle"]).arg(&bundle).args([
        "--mic",
        "ci_mic",
        "--camera",
        "/dev/video-avsc-missing",
        "--windows",
        "1",
    ]));
    let live = json_lines(&live);
    let file = json_lines(&run(bin().args(["classify", "--bundle"]).arg(&bundle).arg(&wav)));
    assert_eq!((live.len(), file.len()), (1, 1));
    let (l, f) = (&live[0], &file[0]);
    assert_eq!(l["modalities"], serde_json::json!(["audio"]));
    assert_eq!(l["head"], "fusion_audio");
    assert_eq!(f["head"], "fusion_audio");
    assert_eq!(l["top"], f["top"]);
    for label in avsc_shared::LABELS {
        let (a, b) = (l["probabilities"][label].as_f64().unwrap(), f["probabilities"][label].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-5, "{label}: live {a} vs file {b}");
    }
    let sum: f64 = avsc_shared::LABELS.iter().map(|k| l["probabilities"][k].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
}

#[test]
fn missing_camera_is_reported_and_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, _) = fixture(dir.path());
    let conf = alsa_config(dir.path(), &raw, RATE);
    let bundle = write_bundle(&dir.path().join("bundle"), BundleSpec::default());
    let o = run(bin().env("ALSA_CONFIG_PATH", &conf).args(["run", "--bundle"]).arg(&bundle).args([
        "--mic",
        "ci_mic",
        "--camera",
        "/dev/video-avsc-missing",
        "--windows",
        "1",
        "--hop",
        "1",
    ]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("camera /dev/video-avsc-missing: cannot open"), "{err}");
    assert!(err.contains("audio-only"), "{err}");
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1);
    assert!(lines[0]["note"].as_str().unwrap().contains("fusion_audio"), "{}", lines[0]);
}

#[test]
fn sigterm_stops_cleanly_after_flushing() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, _) = fixture(dir.path());
    let conf = alsa_config(dir.path(), &raw, RATE);
    let bundle = write_bundle(&dir.path().join("bundle"), BundleSpec { visual: false, ..BundleSpec::default() });
    let out = dir.path().join("lines.jsonl");
    // A 1-s hop: a window per second of fixture (the file PCM is not paced, so many).
    let mut child = bin()
        .env("ALSA_CONFIG_PATH", &conf)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .args(["--mic", "ci_mic", "--hop", "1", "--out"])
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a window was written, then SIGTERM.
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&out).map_or(true, |s| s.is_empty()) {
        assert!(start.elapsed().as_secs() < 120, "no window within 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let log: Vec<String> = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok).collect();
    assert!(status.success(), "exit {status:?}: {log:?}");
    assert!(log.iter().any(|l| l.contains("stopped")), "{log:?}");
    // Every line is whole.
    for l in std::fs::read_to_string(&out).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["top"].is_string());
    }
}
