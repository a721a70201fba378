//! A Phase-I run killed mid-epoch (SIGKILL: no chance to clean up) continues with `--resume`
//! from its last checkpoint and ends with the configured number of epochs.

use avsc_host::dataset::Split;
use avsc_host::prepare::{run, PrepareArgs};
use avsc_host::synth::{self, SynthConfig};
use avsc_shared::{FeaturePreset, FramePreset};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn killed_training_resumes_to_the_same_epoch_count() {
    let dir = tempfile::tempdir().unwrap();
    let (data, cache, out) = (dir.path().join("data"), dir.path().join("cache"), dir.path().join("run"));
    synth::write(&data, &SynthConfig { clips_per_class: 2, ..SynthConfig::default() }, |_, _| {}).unwrap();
    run(&PrepareArgs {
        dataset: data,
        out: cache.clone(),
        preset: FeaturePreset::paper(),
        frames: FramePreset::default(),
        split: Split::All,
        jobs: 2,
        progress: false,
    })
    .unwrap();
    let train = |resume: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_avsc-host"));
        c.args(["train-audio", "--feature", "mel", "--size", "tiny", "--split", "all", "--epochs", "3"])
            .args(["--batch-size", "2", "--val-fraction", "0.3", "--cache"])
            .arg(&cache)
            .arg("--out")
            .arg(&out);
        if resume {
            c.arg("--resume");
        }
        c
    };
    let state = out.join("checkpoint/state.json");
    let mut child = train(false).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while !state.exists() && t0.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Epoch 1 is checkpointed; epoch 2 is under way.
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    let done: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let killed_after = done["epoch"].as_u64().unwrap();
    assert!((1..3).contains(&killed_after), "killed after epoch {killed_after}");

    let o = train(true).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("resuming after epoch {killed_after} of 3")), "{err}");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let epochs: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(epochs, ["1", "2", "3"]);
    assert!(out.join("best.bpk").exists() && out.join("config.toml").exists());
}
