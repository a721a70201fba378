//! `avsc-host demo` as a newcomer runs it, shrunk to a few clips and one epoch: every stage
//! runs, report.json carries the promised keys, the evaluation files agree with each other,
//! and a second run resumes instead of starting over.

use std::path::Path;
use std::process::{Command, Output};

fn demo(out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_avsc-host"))
        .args(["demo", "--out", out.to_str().unwrap()])
        .args(["--clips-per-class", "2", "--audio-epochs", "1", "--visual-epochs", "1", "--fusion-epochs", "2"])
        .output()
        .expect("spawn avsc-host")
}

fn fraction(v: &serde_json::Value, key: &str) -> f64 {
    let x = v[key].as_f64().unwrap_or_else(|| panic!("report.json: {key} missing or not a number"));
    assert!((0.0..=1.0).contains(&x), "{key} = {x}");
    x
}

#[test]
fn demo_runs_every_stage_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = demo(&out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    for stage in ["1/7", "2/7", "3/7", "4/7", "5/7", "7/7"] {
        assert!(stderr.contains("== demo [") && stderr.contains(stage), "stage {stage} not announced");
    }

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let av = fraction(&report, "accuracy_av");
    fraction(&report, "accuracy_audio");
    fraction(&report, "accuracy_visual");
    assert!(report["log_loss_av"].as_f64().unwrap() > 0.0);
    assert!(report["minutes"].as_f64().unwrap() > 0.0);
    let table1 = report["table1"].as_object().expect("table1");
    let names: Vec<&str> = table1.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["f1", "f2", "f3", "f4", "f5", "f6"]);
    assert_eq!(table1["f4"].as_f64().unwrap(), av, "table1's f4 is the audio-visual system");

    // One evaluation clip per class (half of 2): the confusion matrix counts 10 clips, the
    // submission has a row for each, its probabilities sum to 1.
    let eval = out.join("eval");
    let csv = std::fs::read_to_string(eval.join("confusion_av_f4.csv")).unwrap();
    let counted: usize =
        csv.lines().skip(1).flat_map(|l| l.split(',').skip(1).map(|c| c.parse::<usize>().unwrap())).sum();
    assert_eq!(counted, 10);
    let sub = std::fs::read_to_string(eval.join("submission.csv")).unwrap();
    let rows: Vec<&str> = sub.lines().collect();
    assert!(rows[0].starts_with("filename\tscene_label\tairport\t"), "{}", rows[0]);
    assert_eq!(rows.len(), 11);
    for r in &rows[1..] {
        let p: f32 = r.split('\t').skip(2).map(|v| v.parse::<f32>().unwrap()).sum();
        assert!((p - 1.0).abs() < 1e-3, "{r}");
    }
    for png in ["eval/confusion_av_f4.png", "eval/confusion_audio_f4.png", "runs/aud_mel/curves.png"] {
        let bytes = std::fs::read(out.join(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
    }

    // A second run finds every stage done and gives the same numbers.
    let o = demo(&out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("already complete"), "{stderr}");
    assert!(!stderr.contains("epoch 1/1"), "Phase I retrained on resume: {stderr}");
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(again["accuracy_av"], report["accuracy_av"]);
}
