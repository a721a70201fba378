//! host -> bundle -> device: untrained `tiny` networks saved as Phase-I runs and Phase-II
//! heads, exported by `avsc_host::export::export_bundle`, then run by the `avsc-device`
//! binary on a tau-mini clip. Checks that the device accepts the exporter's manifest
//! (symbolic T, tiny embedding widths, the three heads) and returns one valid line per
//! window with the right head for the modalities present.
//!
//! The device binary is spawned, so it must be built: `cargo test --workspace` builds it
//! (avsc-device's own integration tests need it); alone, run `cargo build -p avsc-device`
//! first.

use avsc_host::export::{export_bundle, Backbone, ExportArgs};
use avsc_host::fusion::{FusionKind, FusionSpec, Modalities};
use avsc_host::nets::{save_module, SizePreset};
use avsc_shared::bundle::{Precision, Role};
use avsc_shared::{reference_dir, FeaturePreset, FramePreset, LABELS};
use std::path::{Path, PathBuf};
use std::process::Command;

fn device_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/device_export-HASH -> target/<profile>/avsc-device
    let bin = exe.parent().and_then(Path::parent).unwrap().join(format!("avsc-device{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p avsc-device` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// Untrained tiny runs and heads in the layout `export_bundle` reads, then the bundle.
fn untrained_bundle(dir: &Path) -> PathBuf {
    untrained_bundle_sized(dir, SizePreset::Tiny)
}

fn untrained_bundle_sized(dir: &Path, size: SizePreset) -> PathBuf {
    untrained_bundle_with(dir, size, vec![Precision::F32], None)
}

/// `calibration`: a feature cache, for int8.
fn untrained_bundle_with(
    dir: &Path,
    size: SizePreset,
    precisions: Vec<Precision>,
    calibration: Option<PathBuf>,
) -> PathBuf {
    let device = Default::default();
    let runs = dir.join("runs");
    for role in Role::BACKBONES {
        let path = avsc_host::embed::model_path(&runs, role);
        match Backbone::init(role, size, &device).unwrap() {
            Backbone::Audio(n) => save_module(n, &path),
            Backbone::Inception(n) => save_module(n, &path),
            Backbone::ConvNext(n) => save_module(n, &path),
        }
        .unwrap();
    }
    let heads = dir.join("heads");
    for modalities in [Modalities::Av, Modalities::Audio, Modalities::Visual] {
        let spec = FusionSpec::new(FusionKind::F4, modalities).unwrap();
        let d = avsc_host::pipeline::head_dir(&heads, &spec);
        save_module(spec.init(&device), &d.join("best.bpk")).unwrap();
        let json = format!("{{\"kind\": \"{}\", \"modalities\": \"{}\"}}", spec.kind, modalities.name());
        std::fs::write(d.join(avsc_host::fusion::SPEC_FILE), json).unwrap();
    }
    let out = dir.join("bundle");
    export_bundle(&ExportArgs {
        runs,
        heads,
        fusion: FusionKind::F4,
        size,
        precisions,
        feature_preset: FeaturePreset::paper(),
        frame_preset: FramePreset::default(),
        calibration_clips: if calibration.is_some() { 8 } else { 0 },
        cache: calibration,
        calibration_split: None,
        weight_scales: Default::default(),
        out: out.clone(),
    })
    .unwrap();
    out
}

fn lines(o: &std::process::Output) -> Vec<String> {
    assert!(o.status.success(), "exit {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()
}

/// `"key":value` of a flat JSON line (avsc-e2e has no JSON parser; the device's lines are
/// serde_json output without spaces).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let k = format!("\"{key}\":");
    let at = line.find(&k).unwrap_or_else(|| panic!("no {key} in {line}")) + k.len();
    let rest = &line[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn exported_tiny_bundle_runs_on_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = untrained_bundle(dir.path());
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

/// The benchmark: the `paper` networks with random weights, f32 and int8 (calibrated
/// on tau-mini), on tau-mini clips (MP4: audio + 20 frames per window). Prints per-stage
/// milliseconds per window, the CPU time and the device's peak RSS per precision. Ignored by
/// default (minutes); run with
/// `cargo test -p avsc-e2e --test device_export -- --ignored --nocapture paper_bundle`.
#[test]
#[ignore = "exports the paper-size networks and runs them: minutes"]
fn paper_bundle_benchmark() {
    // AVSC_BENCH_DIR keeps the bundle (e.g. for host/benches/reference_onnxruntime_latency.py).
    let tmp = tempfile::tempdir().unwrap();
    let root = std::env::var_os("AVSC_BENCH_DIR").map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    let t = std::time::Instant::now();
    let cache = root.join("cache");
    avsc_host::prepare::run(&avsc_host::prepare::PrepareArgs {
        dataset: reference_dir().join("media/tau-mini"),
        out: cache.clone(),
        preset: FeaturePreset::paper(),
        frames: FramePreset::default(),
        split: avsc_host::dataset::Split::All,
        jobs: 2,
        progress: false,
    })
    .unwrap();
    let bundle = untrained_bundle_with(&root, SizePreset::Paper, vec![Precision::F32, Precision::Int8], Some(cache));
    eprintln!("bench: prepare + export {:.1} s", t.elapsed().as_secs_f64());
    let media = reference_dir().join("media/tau-mini/video");
    let mut clips: Vec<PathBuf> = std::fs::read_dir(media).unwrap().map(|e| e.unwrap().path()).collect();
    clips.sort();
    clips.truncate(3);
    for (precision, visual_fps) in [("f32", "2"), ("int8", "2"), ("int8", "1")] {
        // /usr/bin/time for the CPU time of the whole process (plan building included).
        let t = std::time::Instant::now();
        let o = Command::new("/usr/bin/time")
            .args(["-f", "cpu_s %U %S"])
            .arg(device_binary())
            .args(["classify", "--precision", precision, "--visual-fps", visual_fps, "--bundle"])
            .arg(&bundle)
            .args(&clips)
            .output()
            .unwrap();
        let wall = t.elapsed().as_secs_f64();
        let out = lines(&o);
        let stderr = String::from_utf8_lossy(&o.stderr);
        let stages = ["resample", "features", "audio_nets", "visual_nets", "fusion", "end_of_window"];
        for line in &out {
            let ms: Vec<String> = stages.iter().map(|s| format!("{s} {}", field(line, s))).collect();
            eprintln!("bench {precision} {visual_fps} fps: window: {}", ms.join(", "));
        }
        let built = stderr.lines().find(|l| l.contains("plans built")).unwrap_or("");
        eprintln!("bench {precision} {visual_fps} fps: {built}");
        let peak = stderr.lines().rev().find(|l| l.contains("peak_rss_kib")).unwrap_or("");
        let cpu = stderr.lines().rev().find(|l| l.starts_with("cpu_s")).unwrap_or("");
        eprintln!(
            "bench {precision} {visual_fps} fps: {} windows, wall {wall:.1} s (with plan building); {cpu}; {peak}",
            out.len()
        );
    }
}
