//! Features computed as the samples arrive give the very numbers of the whole-window path:
//! `classify` with and without `--no-stream-features` on recordings at 48 kHz stereo and
//! 44.1 kHz mono, with windows that overlap (the next window's frames handed on again from
//! the ring), that leave gaps between them, and a short recording (its window filled by
//! repetition, which takes the whole-window path).

mod common;

use common::*;

fn lines(bundle: &std::path::Path, input: &std::path::Path, hop: &str, stream: bool) -> Vec<serde_json::Value> {
    let mut cmd = bin();
    cmd.args(["classify", "--hop", hop, "--bundle"]).arg(bundle).arg(input);
    if !stream {
        cmd.arg("--no-stream-features");
    }
    json_lines(&run(&mut cmd))
}

#[test]
fn streamed_features_classify_exactly_as_whole_windows() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&dir.path().join("b"), BundleSpec { visual: false, ..BundleSpec::default() });
    let stereo = dir.path().join("stereo48k.wav");
    write_wav_s16(&stereo, 48_000, &to_s16(&test_signal(48_000, 23.0)));
    let mono = dir.path().join("mono44k.wav");
    let x = test_signal(44_100, 21.0);
    let audio = avsc_shared::wav::Audio { sample_rate: 44_100, channels: vec![x.iter().map(|f| f[0]).collect()] };
    std::fs::write(&mono, avsc_shared::wav::encode(&audio, false)).unwrap();
    let short = dir.path().join("short.wav");
    write_wav_s16(&short, 48_000, &to_s16(&test_signal(48_000, 6.0)));

    for (input, hop, windows) in [(&stereo, "4", 4), (&stereo, "12", 2), (&mono, "10", 2), (&short, "10", 1)] {
        let (a, b) = (lines(&bundle, input, hop, true), lines(&bundle, input, hop, false));
        assert_eq!((a.len(), b.len()), (windows, windows), "{} hop {hop}", input.display());
        for (s, w) in a.iter().zip(&b) {
            assert_eq!(s["start_s"], w["start_s"]);
            assert_eq!(s["probabilities"], w["probabilities"], "{} hop {hop} at {}", input.display(), s["start_s"]);
            let fill = s["latency_ms"]["fill"].as_f64().unwrap();
            let padded = s.get("padded_s").is_some();
            // Streamed windows did their resampling while they filled; a padded one could not.
            assert_eq!(fill > 0.0, !padded, "{s}");
            assert_eq!(s["latency_ms"]["resample"].as_f64().unwrap() == 0.0, !padded, "{s}");
            assert_eq!(w["latency_ms"]["fill"].as_f64().unwrap(), 0.0);
            assert!(w["latency_ms"]["resample"].as_f64().unwrap() > 0.0);
        }
    }
}
