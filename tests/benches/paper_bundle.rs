//! The device on the paper-size bundle, end to end (see `main`).

use avsc_e2e::{device_binary, field, lines, untrained_bundle_with};
use avsc_host::nets::SizePreset;
use avsc_shared::bundle::Precision;
use avsc_shared::{reference_dir, FeaturePreset, FramePreset};
use std::path::PathBuf;
use std::process::Command;

/// The issue's benchmark: the `paper` networks with random weights, f32 and int8 (calibrated
/// on tau-mini), on tau-mini clips (MP4: audio + 20 frames per window). Prints per-stage
/// milliseconds per window, the CPU time and the device's peak RSS per precision (minutes):
///
/// ```sh
/// cargo build --release -p avsc-device && cargo bench -p avsc-e2e --bench paper_bundle
/// ```
fn main() {
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
