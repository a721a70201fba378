//! The `features` verb as a user runs it: real WAV files in, .npy out, errors on stderr.

use avsc_shared::wav::{self, Audio};
use avsc_shared::{npy, reference_dir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn host(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_avsc-host")).args(args).output().expect("spawn avsc-host")
}

fn tone(rate: u32, seconds: f32, channels: usize) -> Audio {
    let n = (rate as f32 * seconds) as usize;
    let ch = (0..channels)
        .map(|c| {
            (0..n)
                .map(|i| 0.3 * (2.0 * std::f32::consts::PI * (440.0 + 220.0 * c as f32) * i as f32 / rate as f32).sin())
                .collect()
        })
        .collect();
    Audio { sample_rate: rate, channels: ch }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn tau_clip_gives_the_papers_network_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = reference_dir().join("media/tau-mini/audio/park-lisbon-1141-40029.wav");
    let out = dir.path().join("park.npy");
    let o = host(&["features", s(&input), "--kind", "cqt", "--deltas", "--out", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("resampling"), "48 kHz input must be reported as resampled");
    let a = npy::read(&out).unwrap();
    assert_eq!(a.shape, vec![6, 128, 305]);
    assert!(a.data.iter().all(|v| v.is_finite()));
}

#[test]
fn mono_is_duplicated_and_said() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "mono.wav", &wav::encode(&tone(32_000, 2.0, 1), false));
    let out = dir.path().join("mono.npy");
    let o = host(&["features", s(&input), "--kind", "mel", "--out", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("mono"));
    let a = npy::read(&out).unwrap();
    // 2 s at 32 kHz, uncentred 4096/1024 frames.
    assert_eq!(a.shape, vec![2, 128, 1 + (64_000 - 4096) / 1024]);
    let plane = 128 * a.shape[2];
    assert_eq!(a.data[..plane], a.data[plane..], "both channels must be the same mono signal");
}

#[test]
fn hop14_preset_without_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "st.wav", &wav::encode(&tone(32_000, 1.0, 2), true));
    let out = dir.path().join("st.npy");
    let o = host(&["features", s(&input), "--kind", "gam", "--preset", "hop14", "--out", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Ellis framing with the gammatone's 8192-point FFT: 1 + (32000 - 8192) / 448.
    assert_eq!(npy::read(&out).unwrap().shape, vec![2, 128, 54]);
}

#[test]
fn bad_inputs_fail_cleanly_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = wav::encode(&tone(48_000, 1.0, 2), false);
    let mut nan = tone(32_000, 1.0, 2);
    nan.channels[0][100] = f32::INFINITY;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("text.wav", b"this is not audio".to_vec(), "not a RIFF/WAVE"),
        ("truncated.wav", good[..good.len() / 2].to_vec(), "truncated"),
        (
            "empty.wav",
            wav::encode(&Audio { sample_rate: 48_000, channels: vec![vec![], vec![]] }, false),
            "no audio samples",
        ),
        ("nan.wav", wav::encode(&nan, true), "non-finite"),
        ("short.wav", wav::encode(&tone(32_000, 0.05, 2), false), "too short"),
    ];
    for (name, bytes, why) in cases {
        let input = write(dir.path(), name, &bytes);
        let out = dir.path().join(format!("{name}.npy"));
        let o = host(&["features", s(&input), "--kind", "mel", "--out", s(&out)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name} must fail");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one-line error, got {err:?}");
        assert!(err.contains(name) && err.contains(why), "{name}: error must name the file and say {why:?}: {err}");
        assert!(!out.exists(), "{name}: no output may be left behind");
    }
    let missing = dir.path().join("missing.wav");
    let o = host(&["features", s(&missing), "--kind", "mel", "--out", s(&dir.path().join("m.npy"))]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("missing.wav"));
    let o = host(&["features", s(&missing), "--kind", "chroma", "--out", "x.npy"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("chroma"));
    // Only the failed outputs' absence was checked above; nothing else may appear either.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x != "wav"))
        .collect();
    assert!(leftovers.is_empty(), "stray files: {leftovers:?}");
}

#[test]
fn training_device_and_config_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, out) = (dir.path().join("cache"), dir.path().join("run"));
    let train = |extra: &[&str]| {
        let mut args =
            vec!["train-audio", "--feature", "mel", "--size", "tiny", "--cache", s(&cache), "--out", s(&out)];
        args.extend_from_slice(extra);
        host(&args)
    };
    for (device, built) in [("cuda", cfg!(feature = "cuda")), ("wgpu", cfg!(feature = "wgpu"))] {
        if built {
            continue;
        }
        let o = train(&["--device", device]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(&format!("--device {device}")) && err.contains(&format!("--features {device}")), "{err}");
    }
    let bad = write(dir.path(), "config.toml", b"[train]\nepochs = \"many\"\n");
    let o = train(&["--config", s(&bad)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("config.toml") && err.contains("invalid run configuration (line 2)"), "{err}");
    // --config carries every hyper-parameter: a flag beside it is refused.
    let o = train(&["--config", s(&bad), "--epochs", "3"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be used with"));
    assert!(!out.exists(), "nothing written on a refused run");
}
