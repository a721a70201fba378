//! `avsc-host prepare` on real codecs (../shared/media/tau-mini) and on broken copies of
//! them: every bad input is reported with the file and reason, the rest still prepared,
//! and nothing already cached is lost.

use avsc_host::cache::Cache;
use avsc_host::dataset::Split;
use avsc_host::prepare::{run, PrepareArgs, Report};
use avsc_shared::wav::{self, Audio};
use avsc_shared::{reference_dir, FeaturePreset, FramePreset};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tau_mini() -> PathBuf {
    reference_dir().join("media/tau-mini")
}

fn args(dataset: &Path, out: &Path) -> PrepareArgs {
    PrepareArgs {
        dataset: dataset.to_path_buf(),
        out: out.to_path_buf(),
        preset: FeaturePreset::paper(),
        frames: FramePreset::default(),
        split: Split::All,
        jobs: 2,
        progress: false,
    }
}

/// A TAU-layout dataset in `dir` with the given tau-mini clips (stem, label) copied in.
fn make_tau(dir: &Path, clips: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("audio")).unwrap();
    std::fs::create_dir_all(dir.join("video")).unwrap();
    std::fs::create_dir_all(dir.join("evaluation_setup")).unwrap();
    let mut meta = String::from("filename_audio\tfilename_video\tscene_label\tidentifier\n");
    for (stem, label) in clips {
        for (sub, ext) in [("audio", "wav"), ("video", "mp4")] {
            let src = tau_mini().join(sub).join(format!("{stem}.{ext}"));
            if src.exists() {
                std::fs::copy(&src, dir.join(sub).join(format!("{stem}.{ext}"))).unwrap();
            }
        }
        let loc = stem.split_once('-').unwrap().1.rsplit_once('-').unwrap().0;
        meta.push_str(&format!("audio/{stem}.wav\tvideo/{stem}.mp4\t{label}\t{loc}\n"));
    }
    std::fs::write(dir.join("meta.csv"), meta).unwrap();
}

const GOOD: (&str, &str) = ("park-lisbon-1141-40029", "park");
const OTHER: (&str, &str) = ("tram-lyon-1190-40063", "tram");

/// GOOD and OTHER in a TAU layout, `breakage` applied, prepared into a fresh cache: GOOD
/// must still be prepared, and the report is returned.
fn prepare_with(breakage: impl FnOnce(&Path)) -> Report {
    let ds = tempfile::tempdir().unwrap();
    make_tau(ds.path(), &[GOOD, OTHER]);
    breakage(ds.path());
    let out = tempfile::tempdir().unwrap();
    let r = run(&args(ds.path(), out.path())).unwrap();
    assert_eq!(r.prepared, 1, "the good clip is still prepared: {:?}", r.failed);
    assert!(Cache::item_path(out.path(), GOOD.0).exists());
    r
}

/// `avsc-host prepare` as a user runs it.
fn prepare_cli(dataset: &Path, out: &Path) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_avsc-host"));
    c.args(["prepare", "--dataset"]).arg(dataset).arg("--out").arg(out).output().unwrap()
}

fn remove_clip(ds: &Path, stem: &str) {
    std::fs::remove_file(ds.join(format!("audio/{stem}.wav"))).unwrap();
    std::fs::remove_file(ds.join(format!("video/{stem}.mp4"))).unwrap();
}

fn failure_for<'a>(r: &'a Report, needle: &str) -> &'a str {
    let f = r.failed.iter().find(|f| f.error.contains(needle));
    &f.unwrap_or_else(|| panic!("no failure mentioning {needle:?}: {:?}", r.failed)).error
}

#[test]
fn tau_mini_prepares_resumes_and_round_trips() {
    let out = tempfile::tempdir().unwrap();
    let r = run(&args(&tau_mini(), out.path())).unwrap();
    assert_eq!((r.prepared, r.skipped, r.failed.len()), (20, 0, 0), "{:?}", r.failed);
    let again = run(&args(&tau_mini(), out.path())).unwrap();
    assert_eq!((again.prepared, again.skipped), (0, 20), "a second run does nothing");

    let cache = Cache::open(out.path()).unwrap();
    assert_eq!(cache.items("all").len(), 20);
    let clip = cache.read("park-lisbon-1141-40029").unwrap();
    for s in &clip.specs {
        assert_eq!(s.shape, [2, 128, 309]);
        assert!(s.data.iter().all(|v| v.is_finite()));
    }
    let stack = clip.stack(avsc_shared::FeatureKind::Mel, &cache.manifest.feature_preset);
    assert_eq!(stack.shape, [6, 128, 305]);
    assert_eq!(clip.frames.len(), 20);
    assert!(clip.frames.iter().all(|f| f.width == 224 && f.height == 224));
    let size = std::fs::metadata(Cache::item_path(out.path(), "park-lisbon-1141-40029")).unwrap().len();
    assert!(size <= 4 << 20, "{size} bytes per clip");

    // A torn item (as a killed writer without the atomic rename would leave) is redone.
    let torn = Cache::item_path(out.path(), "tram-lyon-1190-40063");
    let bytes = std::fs::read(&torn).unwrap();
    std::fs::write(&torn, &bytes[..bytes.len() / 3]).unwrap();
    let r = run(&args(&tau_mini(), out.path())).unwrap();
    assert_eq!((r.prepared, r.skipped), (1, 19));
    assert_eq!(std::fs::read(&torn).unwrap(), bytes, "re-prepared byte for byte");
}

#[test]
fn killed_mid_way_then_rerun_completes_with_no_corrupt_item() {
    let out = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_avsc-host");
    let mut child = Command::new(bin)
        .args(["prepare", "--jobs", "1", "--dataset"])
        .arg(tau_mini())
        .arg("--out")
        .arg(out.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let items = out.path().join("items");
    let count = || std::fs::read_dir(&items).map(|d| d.count()).unwrap_or(0);
    let t0 = std::time::Instant::now();
    while count() < 3 && t0.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let o = prepare_cli(&tau_mini(), out.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cache = Cache::open(out.path()).unwrap();
    assert_eq!(cache.items("all").len(), 20);
    for it in cache.items("all") {
        cache.read(&it.id).unwrap_or_else(|e| panic!("{e:#}"));
    }
}

#[test]
fn truncated_mp4_fails_alone() {
    let r = prepare_with(|ds| {
        let mp4 = ds.join(format!("video/{}.mp4", OTHER.0));
        let bytes = std::fs::read(&mp4).unwrap();
        std::fs::write(&mp4, &bytes[..bytes.len() / 2]).unwrap();
    });
    let e = failure_for(&r, OTHER.0);
    assert!(e.contains(&format!("{}.mp4", OTHER.0)), "{e}");
}

#[test]
fn broken_wav_header_fails_alone() {
    let r = prepare_with(|ds| {
        let w = ds.join(format!("audio/{}.wav", OTHER.0));
        let mut bytes = std::fs::read(&w).unwrap();
        bytes[8..12].copy_from_slice(b"AVI ");
        std::fs::write(&w, bytes).unwrap();
    });
    assert!(failure_for(&r, OTHER.0).contains("not a RIFF/WAVE"));
}

#[test]
fn missing_file_named_in_the_csv_fails_alone() {
    let r = prepare_with(|ds| remove_clip(ds, OTHER.0));
    assert!(failure_for(&r, OTHER.0).contains("cannot read"));
}

fn rewrite_audio(ds: &Path, stem: &str, f: impl FnOnce(&mut Audio)) {
    let p = ds.join(format!("audio/{stem}.wav"));
    let mut a = wav::read(&p).unwrap();
    f(&mut a);
    std::fs::write(&p, wav::encode(&a, true)).unwrap();
}

#[test]
fn short_clips_are_padded_from_nine_seconds_else_rejected() {
    let ds = tempfile::tempdir().unwrap();
    make_tau(ds.path(), &[GOOD, OTHER]);
    rewrite_audio(ds.path(), GOOD.0, |a| a.channels.iter_mut().for_each(|c| c.truncate(48_000 * 95 / 10)));
    rewrite_audio(ds.path(), OTHER.0, |a| a.channels.iter_mut().for_each(|c| c.truncate(48_000 * 5)));
    let out = tempfile::tempdir().unwrap();
    let r = run(&args(ds.path(), out.path())).unwrap();
    assert_eq!(r.prepared, 1);
    assert!(failure_for(&r, OTHER.0).contains("5.00 s long"));
    assert!(r.notes.iter().any(|n| n.contains("zero-padded by 0.50 s")), "{:?}", r.notes);
    let clip = Cache::open(out.path()).unwrap().read(GOOD.0).unwrap();
    assert!((clip.header.padded_seconds - 0.5).abs() < 1e-3);
}

#[test]
fn non_finite_samples_fail_alone() {
    let r = prepare_with(|ds| rewrite_audio(ds, OTHER.0, |a| a.channels[1][1234] = f32::NAN));
    assert!(failure_for(&r, OTHER.0).contains("non-finite"));
}

#[test]
fn unknown_label_is_reported_with_its_csv_line() {
    let ds = tempfile::tempdir().unwrap();
    make_tau(ds.path(), &[GOOD, ("tram-lyon-1190-40063", "hovercraft")]);
    let r = run(&args(ds.path(), tempfile::tempdir().unwrap().path())).unwrap();
    assert_eq!(r.prepared, 1);
    let e = failure_for(&r, "hovercraft");
    assert!(e.contains("meta.csv line 3"), "{e}");
}

#[test]
fn missing_column_is_one_clear_error_and_the_cache_keeps_its_items() {
    let ds = tempfile::tempdir().unwrap();
    make_tau(ds.path(), &[GOOD]);
    let out = tempfile::tempdir().unwrap();
    assert_eq!(run(&args(ds.path(), out.path())).unwrap().prepared, 1);
    let meta = ds.path().join("meta.csv");
    let text = std::fs::read_to_string(&meta).unwrap().replace("filename_video", "video");
    std::fs::write(&meta, text).unwrap();
    let o = prepare_cli(ds.path(), out.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("meta.csv") && err.contains("missing column \"filename_video\""), "{err}");
    let cache = Cache::open(out.path()).unwrap();
    assert_eq!(cache.items("all").len(), 1, "nothing already cached is lost");
    cache.read(GOOD.0).unwrap();
}

#[test]
fn failures_exit_with_code_two_and_a_report() {
    let ds = tempfile::tempdir().unwrap();
    make_tau(ds.path(), &[GOOD, OTHER]);
    remove_clip(ds.path(), OTHER.0);
    let out = tempfile::tempdir().unwrap();
    let o = prepare_cli(ds.path(), out.path());
    assert_eq!(o.status.code(), Some(2));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("prepare-report.json")).unwrap()).unwrap();
    assert_eq!(report["prepared"], 1);
    assert_eq!(report["failed"].as_array().unwrap().len(), 1);
}

/// Every tau-mini clip as (stem, label), from its meta.csv.
fn tau_mini_clips() -> Vec<(String, String)> {
    let meta = std::fs::read_to_string(tau_mini().join("meta.csv")).unwrap();
    meta.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (Path::new(f[0]).file_stem().unwrap().to_string_lossy().into_owned(), f[2].to_string())
        })
        .collect()
}

/// The bar of issue #16: on a TAU-shaped set with folds of its own (not tau-mini's: every
/// Prague clip held out), `prepare` and `train-audio` with their default flags work
/// together, and no fold1_evaluate clip is trained or validated on.
#[test]
fn default_prepare_then_default_training_never_touch_fold1_evaluate() {
    let clips = tau_mini_clips();
    let ds = tempfile::tempdir().unwrap();
    let pairs: Vec<(&str, &str)> = clips.iter().map(|(s, l)| (s.as_str(), l.as_str())).collect();
    make_tau(ds.path(), &pairs);
    let held_out = |stem: &str| stem.contains("-prague-");
    let (mut train, mut eval, mut test) = (
        String::from("filename_audio\tfilename_video\tscene_label\n"),
        String::from("filename_audio\tfilename_video\tscene_label\n"),
        String::from("filename_audio\tfilename_video\n"),
    );
    for (stem, label) in &clips {
        let row = format!("audio/{stem}.wav\tvideo/{stem}.mp4");
        if held_out(stem) {
            eval.push_str(&format!("{row}\t{label}\n"));
            test.push_str(&format!("{row}\n"));
        } else {
            train.push_str(&format!("{row}\t{label}\n"));
        }
    }
    for (name, text) in [("fold1_train", train), ("fold1_evaluate", eval), ("fold1_test", test)] {
        std::fs::write(ds.path().join(format!("evaluation_setup/{name}.csv")), text).unwrap();
    }

    let cache = tempfile::tempdir().unwrap();
    let o = prepare_cli(ds.path(), cache.path());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let n_held = clips.iter().filter(|(s, _)| held_out(s)).count();
    assert!(stderr.contains(&format!("fold1_evaluate {n_held}")), "{stderr}");
    let c = Cache::open(cache.path()).unwrap();
    for it in &c.manifest.items {
        let expected: &[&str] = if held_out(&it.id) { &["fold1_evaluate", "fold1_test"] } else { &["fold1_train"] };
        assert_eq!(it.splits, expected, "{}", it.id);
        assert!(it.label.is_some(), "labels come from meta.csv: {}", it.id);
    }

    let run = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_avsc-host"))
        .args(["train-audio", "--feature", "mel", "--size", "tiny", "--epochs", "1", "--cache"])
        .arg(cache.path())
        .arg("--out")
        .arg(run.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rec = avsc_host::train::data::SplitRecord::read(run.path()).unwrap();
    assert_eq!(rec.split, "fold1_train");
    let mut used: Vec<&String> = rec.train.iter().chain(&rec.validation).collect();
    used.sort();
    let mut expected: Vec<&String> = clips.iter().map(|(s, _)| s).filter(|s| !held_out(s)).collect();
    expected.sort();
    assert_eq!(used, expected, "exactly fold1_train is trained and validated on");
    assert!(!rec.validation.is_empty() && !rec.train.is_empty());
}

/// A folder-layout cache has no folds: training's default split says what to do instead.
#[test]
fn training_a_cache_without_folds_names_the_fix() {
    let ds = tempfile::tempdir().unwrap();
    let dir = ds.path().join("park");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(tau_mini().join("audio").join(format!("{}.wav", GOOD.0)), dir.join("a.wav")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    assert!(prepare_cli(ds.path(), cache.path()).status.success());
    let c = Cache::open(cache.path()).unwrap();
    let err = avsc_host::train::data::split_items(&c, "fold1_train", 0.2, 0).unwrap_err().to_string();
    assert!(err.contains("has no folds") && err.contains("--split all"), "{err}");
    assert_eq!(avsc_host::train::data::split_items(&c, "all", 0.0, 0).unwrap().0.len(), 1);
}
