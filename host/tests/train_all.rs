//! `avsc-host train-all` on the real-codec TAU sample (../shared/media/tau-mini: MP4 with
//! H.264 and AAC, 48 kHz WAV, the official CSVs): the whole chain finishes with the report's
//! keys, no fold1_evaluate clip reaches Phase I, a second run redoes nothing, and a changed
//! recording re-prepares that clip alone and retrains everything downstream of it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tau_mini() -> PathBuf {
    let shared = std::env::var("AVSC_SHARED_DIR").unwrap_or_else(|_| "../../shared".into());
    Path::new(&shared).join("media/tau-mini")
}

fn train_all(data: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_avsc-host"))
        .args(["train-all", "--dataset", data.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--size", "tiny", "--audio-epochs", "1", "--visual-epochs", "1", "--fusion-epochs", "2"])
        .args(["--batch-size", "4", "--frames-per-clip", "2", "--eval-frames", "4", "--calibration-clips", "4"])
        .output()
        .expect("spawn avsc-host")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
            let mut perm = std::fs::metadata(&dst).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&dst, perm).unwrap();
        }
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn column(csv: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(csv).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let audio = l.split('\t').next().unwrap();
            Path::new(audio).file_stem().unwrap().to_string_lossy().into_owned()
        })
        .collect()
}

#[test]
fn the_chain_runs_skips_and_redoes_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tau");
    copy_dir(&tau_mini(), &data);
    let out = tmp.path().join("run");

    let o = train_all(&data, &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let report = json(&out.join("report.json"));
    // Every key the demo's report.json has always had, and the stages.
    for key in [
        "accuracy_audio",
        "accuracy_visual",
        "accuracy_av",
        "log_loss_av",
        "macro_log_loss_av",
        "table1",
        "phase1_val_accuracy",
        "minutes",
        "eval_clips",
        "plots",
        "bundle",
        "config",
        "stages",
    ] {
        assert!(!report[key].is_null(), "report.json lacks {key}");
    }
    let evaluate = column(&data.join("evaluation_setup/fold1_evaluate.csv"));
    assert_eq!(report["eval_clips"].as_u64().unwrap() as usize, evaluate.len());
    assert!(report["stages"].as_object().unwrap().values().all(|v| v == "ran"), "{}", report["stages"]);
    // No fold1_evaluate clip was trained or validated on by any backbone, nor by the heads.
    let train = column(&data.join("evaluation_setup/fold1_train.csv"));
    for role in ["aud_mel", "aud_gam", "aud_cqt", "vis_inc", "vis_conv"] {
        let split = json(&out.join("runs").join(role).join("split.json"));
        let mut seen: Vec<String> = ["train", "validation"]
            .iter()
            .flat_map(|k| split[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()))
            .collect();
        seen.sort();
        let mut want = train.clone();
        want.sort();
        assert_eq!(seen, want, "{role} used exactly fold1_train");
    }
    let bundle = json(&out.join("bundle/manifest.json"));
    assert!(bundle.to_string().contains("int8"), "int8 files in the bundle");
    let head_of = |o: &Path| std::fs::read_to_string(o.join("heads/av_f4/embeddings.sha256")).unwrap();
    let heads_before = head_of(&out);

    // Nothing changed: nothing is redone.
    let o = train_all(&data, &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let again = json(&out.join("report.json"));
    assert!(again["stages"].as_object().unwrap().values().all(|v| v == "up_to_date"), "{}", again["stages"]);
    assert!(!stderr.contains("epoch 1/1"), "{stderr}");
    assert_eq!(again["accuracy_av"], report["accuracy_av"]);
    assert_eq!(again["table1"], report["table1"]);

    // One training recording changes (same length, other content): that clip alone is
    // prepared again, and everything reading the cache is redone; the heads see new
    // embeddings.
    let wav = data.join("audio").join(format!("{}.wav", train[0]));
    let mut audio = avsc_shared::wav::decode(&std::fs::read(&wav).unwrap()).unwrap();
    for ch in &mut audio.channels {
        for x in ch.iter_mut() {
            *x *= 0.25;
        }
    }
    std::fs::write(&wav, avsc_shared::wav::encode(&audio, false)).unwrap();
    let o = train_all(&data, &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("prepare: 1 prepared, 19 cached"), "{stderr}");
    let third = json(&out.join("report.json"));
    assert!(third["stages"].as_object().unwrap().values().all(|v| v == "ran"), "{}", third["stages"]);
    assert_ne!(head_of(&out), heads_before, "the heads were retrained on the new embeddings");
}
