//! The device on the paper-size bundle, end to end (see `main`).

use avsc_e2e::{device_binary, field, lines, untrained_bundle_with};
use avsc_host::nets::SizePreset;
use avsc_shared::bundle::Precision;
use avsc_shared::{reference_dir, FeaturePreset, FramePreset};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The issue's benchmark: the `paper` networks with random weights, f32 and int8 (calibrated
/// on tau-mini), on three tau-mini clips (MP4: audio + 20 frames per window), this binary
/// with the features computed as the samples arrive and with `--no-stream-features` (all
/// after the window's last sample), and a binary built from earlier code when
/// `AVSC_BENCH_BEFORE` names one (`AVSC_BENCH_AFTER`: the binary measured, default the
/// one beside the bench); each variant twice, alternating. `AVSC_BENCH_KNOBS` instead A/Bs
/// tract's settings on this binary: `NAME=VAR=VALUE[ VAR=VALUE];...` adds a variant NAME run
/// with those environment variables beside the default one (e.g.
/// `lazy2=TRACT_LAZY_IM2COL_MIN_KERNEL=2;nodirect=TRACT_DISABLE_DIRECT_SPATIAL=1`), and
/// `AVSC_BENCH_CONFIGS=int8:2,f32:2` picks the bundles and frame rates (`AVSC_BENCH_ROUNDS`:
/// how many times each variant runs, default 2). Prints per-stage
/// milliseconds per window and, per run, the CPU time, wall time and peak RSS; then a table of
/// medians (minutes):
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
    let bundle = if root.join("bundle/manifest.json").exists() {
        root.join("bundle")
    } else {
        untrained_bundle_with(&root, SizePreset::Paper, vec![Precision::F32, Precision::Int8], Some(cache))
    };
    eprintln!("bench: prepare + export {:.1} s", t.elapsed().as_secs_f64());
    let media = reference_dir().join("media/tau-mini/video");
    let mut clips: Vec<PathBuf> = std::fs::read_dir(media).unwrap().map(|e| e.unwrap().path()).collect();
    clips.sort();
    clips.truncate(3);
    // AVSC_BENCH_AFTER: the binary to measure (default: the one beside this bench).
    let after = std::env::var_os("AVSC_BENCH_AFTER").map_or_else(device_binary, PathBuf::from);
    let knobs = std::env::var("AVSC_BENCH_KNOBS").unwrap_or_default();
    let mut variants: Vec<Variant> = vec![Variant::new("streamed", after.clone(), &[])];
    if knobs.trim().is_empty() {
        variants.push(Variant::new("whole-window", after.clone(), &["--no-stream-features"]));
    }
    for spec in knobs.split(';').filter(|s| !s.trim().is_empty()) {
        let (name, vars) = spec.split_once('=').expect("AVSC_BENCH_KNOBS: NAME=VAR=VALUE ...");
        let env = vars.split_whitespace().map(|kv| kv.split_once('=').expect("VAR=VALUE")).collect::<Vec<_>>();
        let mut v = Variant::new(name.trim(), after.clone(), &[]);
        v.env = env.iter().map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
        variants.push(v);
    }
    if let Some(before) = std::env::var_os("AVSC_BENCH_BEFORE") {
        variants.push(Variant::new("before", PathBuf::from(before), &[]));
    }
    let configs = std::env::var("AVSC_BENCH_CONFIGS").unwrap_or_else(|_| "f32:2,int8:2,int8:1".into());
    let configs: Vec<(String, String)> = configs
        .split(',')
        .map(|c| c.split_once(':').map(|(p, f)| (p.to_string(), f.to_string())).expect("PRECISION:FPS"))
        .collect();
    let mut table = Vec::new();
    for (precision, visual_fps) in configs.iter().map(|(p, f)| (p.as_str(), f.as_str())) {
        let mut runs: Vec<Vec<Run>> = variants.iter().map(|_| Vec::new()).collect();
        let rounds: usize = std::env::var("AVSC_BENCH_ROUNDS").map_or(2, |r| r.parse().expect("AVSC_BENCH_ROUNDS"));
        for _round in 0..rounds {
            for (v, runs) in variants.iter().zip(&mut runs) {
                let name = &v.name;
                let r = run(v, precision, visual_fps, &bundle, &clips);
                eprintln!(
                    "bench {precision} {visual_fps} fps {name}: {} windows, end_of_window {:?} ms, wall {:.1} s, cpu {:.1} s, peak {} KiB",
                    r.end_of_window.len(),
                    r.end_of_window,
                    r.wall,
                    r.cpu,
                    r.peak_kib
                );
                runs.push(r);
            }
        }
        for (Variant { name, .. }, runs) in variants.iter().zip(&runs) {
            let all = |f: fn(&Run) -> &Vec<f64>| -> Vec<f64> { runs.iter().flat_map(|r| f(r).clone()).collect() };
            let windows: usize = runs.iter().map(|r| r.end_of_window.len()).sum();
            // Seconds of audio per second of processing, from the plans built to the end.
            let speed = 10.0 * windows as f64 / runs.iter().map(|r| r.classifying).sum::<f64>();
            table.push(format!(
                "| {precision} | {visual_fps} | {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {speed:.1}x | {} |",
                median(all(|r| &r.end_of_window)),
                median(all(|r| &r.resample)),
                median(all(|r| &r.features)),
                median(all(|r| &r.fill)),
                median(all(|r| &r.audio_nets)),
                median(all(|r| &r.visual_nets)),
                runs.iter().map(|r| r.peak_kib / 1024).max().unwrap_or(0),
            ));
        }
    }
    println!(
        "| bundle | visual fps | variant | end of window ms (median) | resample | features | fill | audio nets | visual nets (per window, thread time) | real time | peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for row in table {
        println!("{row}");
    }
}

/// A way to run the device: a binary, its extra flags, its extra environment.
struct Variant {
    name: String,
    bin: PathBuf,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Variant {
    fn new(name: &str, bin: PathBuf, extra: &[&str]) -> Variant {
        Variant { name: name.into(), bin, extra: extra.iter().map(|s| s.to_string()).collect(), env: Vec::new() }
    }
}

struct Run {
    end_of_window: Vec<f64>,
    resample: Vec<f64>,
    features: Vec<f64>,
    fill: Vec<f64>,
    audio_nets: Vec<f64>,
    visual_nets: Vec<f64>,
    wall: f64,
    /// From "plans built" to "done" in the log, seconds.
    classifying: f64,
    cpu: f64,
    peak_kib: u64,
}

/// Seconds of the day of a log line's timestamp (`2026-12-06T23:04:36.375289Z ...`).
fn stamp(line: &str) -> Option<f64> {
    let t = line.get(11..26)?;
    let mut parts = t.split(':');
    let (h, m, s) =
        (parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<f64>().ok()?);
    Some(h * 3600.0 + m * 60.0 + s)
}

fn run(v: &Variant, precision: &str, visual_fps: &str, bundle: &Path, clips: &[PathBuf]) -> Run {
    // /usr/bin/time for the CPU time of the whole process (plan building included).
    let t = std::time::Instant::now();
    let o = Command::new("/usr/bin/time")
        .args(["-f", "cpu_s %U %S"])
        .arg(&v.bin)
        .args(["classify", "--precision", precision, "--visual-fps", visual_fps])
        .args(&v.extra)
        .envs(v.env.iter().map(|(k, v)| (k, v)))
        .arg("--bundle")
        .arg(bundle)
        .args(clips)
        .output()
        .unwrap();
    let wall = t.elapsed().as_secs_f64();
    let out = lines(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let ms = |k: &str| -> Vec<f64> {
        out.iter().map(|l| if l.contains(&format!("\"{k}\":")) { field(l, k).parse().unwrap() } else { 0.0 }).collect()
    };
    let cpu = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("cpu_s "))
        .map_or(0.0, |s| s.split(' ').map(|v| v.parse::<f64>().unwrap_or(0.0)).sum());
    let peak_kib = stderr
        .rsplit("peak_rss_kib=")
        .next()
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or(0);
    let built = stderr.lines().find(|l| l.contains("plans built")).and_then(stamp);
    let done = stderr.lines().rev().find(|l| l.contains("peak_rss_kib")).and_then(stamp);
    let classifying = match (built, done) {
        (Some(a), Some(b)) if b >= a => b - a,
        _ => wall,
    };
    Run {
        classifying,
        end_of_window: ms("end_of_window"),
        resample: ms("resample"),
        features: ms("features"),
        fill: ms("fill"),
        audio_nets: ms("audio_nets"),
        visual_nets: ms("visual_nets"),
        wall,
        cpu,
        peak_kib,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
