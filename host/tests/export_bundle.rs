//! `avsc-host export` end to end on tiny-preset runs: the bundle verifies, every file loads
//! in tract with the shapes the manifest promises, and a tampered file is refused.

use avsc_host::embed::model_path;
use avsc_host::export::verify::{Array, Plan};
use avsc_host::export::Backbone;
use avsc_host::fusion::{FusionKind, FusionSpec, Modalities, SPEC_FILE};
use avsc_host::nets::{save_module, SizePreset};
use avsc_host::pipeline::head_dir;
use avsc_shared::bundle::{Bundle, Dim, Precision, Role};
use burn::prelude::*;
use std::path::Path;
use std::process::Command;

/// RUNS/<role>/best.bpk for the five backbones and HEADS/{av,audio,visual}_f4, untrained.
fn fake_runs(root: &Path) {
    let device = Device::flex();
    for role in Role::BACKBONES {
        let path = model_path(&root.join("runs"), role);
        match Backbone::init(role, SizePreset::Tiny, &device).unwrap() {
            Backbone::Audio(n) => save_module(n, &path).unwrap(),
            Backbone::Inception(n) => save_module(n, &path).unwrap(),
            Backbone::ConvNext(n) => save_module(n, &path).unwrap(),
        }
    }
    for m in [Modalities::Av, Modalities::Audio, Modalities::Visual] {
        let spec = FusionSpec::new(FusionKind::F4, m).unwrap();
        let dir = head_dir(&root.join("heads"), &spec);
        save_module(spec.init(&device), &dir.join("best.bpk")).unwrap();
        std::fs::write(dir.join(SPEC_FILE), serde_json::to_string(&spec).unwrap()).unwrap();
    }
}

fn concrete(shape: &[Dim], n: usize, t: usize) -> Vec<usize> {
    shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(k) => *k,
            Dim::Symbol(s) if s == "N" => n,
            Dim::Symbol(_) => t,
        })
        .collect()
}

#[test]
fn cli_export_writes_a_bundle_the_device_can_verify() {
    let tmp = tempfile::tempdir().unwrap();
    fake_runs(tmp.path());
    let out = tmp.path().join("bundle");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_avsc-host"))
        .args(["export", "--runs", &s(&tmp.path().join("runs")), "--heads", &s(&tmp.path().join("heads"))])
        .args(["--size", "tiny", "--out", &s(&out)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    println!("{stdout}");

    let bundle = Bundle::open(&out).unwrap();
    let m = &bundle.manifest;
    assert_eq!(m.files.len(), 8);
    assert_eq!(m.feature_preset.name, "paper");
    for f in &m.files {
        assert_eq!(f.precision, Precision::F32);
        assert!(stdout.contains(&f.path), "{} not reported", f.path);
        let plan = Plan::open(&bundle.path(f)).unwrap();
        let shape = concrete(&f.inputs[0].shape, 2, 40);
        let x = Array::new(&shape, vec![0.1; shape.iter().product()]);
        let y = plan.run(&[x]).unwrap();
        assert_eq!(y.len(), f.outputs.len(), "{}", f.path);
        for (got, spec) in y.iter().zip(&f.outputs) {
            assert_eq!(got.shape, concrete(&spec.shape, 2, 40), "{} {}", f.path, spec.name);
        }
        println!("{}: {} bytes", f.path, std::fs::metadata(bundle.path(f)).unwrap().len());
    }
    let fusion = m.file(Role::Fusion, Precision::F32).unwrap();
    assert_eq!(fusion.sources, Role::BACKBONES.to_vec());
    assert_eq!(fusion.fusion.as_deref(), Some("f4"));
    assert!(m.file(Role::VisInc, Precision::F32).unwrap().normalisation.is_some());

    // A file changed after export is refused, by name.
    let target = out.join("vis_conv.onnx");
    let mut bytes = std::fs::read(&target).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&target, bytes).unwrap();
    let e = format!("{:#}", Bundle::open(&out).unwrap_err());
    assert!(e.contains("vis_conv.onnx") && e.contains("sha256"), "{e}");
}

#[test]
fn missing_run_and_int8_without_cache_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_avsc-host"))
            .args(["export", "--runs", tmp.path().join("runs").to_str().unwrap()])
            .args(["--heads", tmp.path().join("heads").to_str().unwrap(), "--size", "tiny"])
            .args(["--out", tmp.path().join("b").to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let e = run(&[]);
    assert!(e.contains("aud_mel") && e.contains("best.bpk"), "{e}");
    let e = run(&["--precision", "int8"]);
    assert!(e.contains("--cache"), "{e}");
    let e = run(&["--precision", "int4"]);
    assert!(e.contains("int4"), "{e}");
}

#[test]
fn both_precisions_calibrated_on_a_cache() {
    let tmp = tempfile::tempdir().unwrap();
    fake_runs(tmp.path());
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let host = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_avsc-host")).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    host(&["synth", "--out", &p("data"), "--clips-per-class", "1"]);
    host(&["prepare", "--dataset", &p("data"), "--out", &p("cache"), "--jobs", "2"]);
    host(&["export", "--runs", &p("runs"), "--heads", &p("heads"), "--size", "tiny", "--out", &p("bundle")]);
    let (runs, heads, cache, both) = (p("runs"), p("heads"), p("cache"), p("both"));
    let mut args = vec!["export", "--runs", &runs, "--heads", &heads, "--size", "tiny", "--out", &both];
    args.extend(["--precision", "both", "--cache", &cache, "--calibration-clips", "3"]);
    host(&args);

    let bundle = Bundle::open(Path::new(&p("both"))).unwrap();
    let m = &bundle.manifest;
    assert_eq!(m.files.len(), 16);
    for role in Role::BACKBONES {
        let (f, q) = (m.file(role, Precision::F32).unwrap(), m.file(role, Precision::Int8).unwrap());
        assert_eq!(q.path, format!("{}.int8.onnx", role.name()));
        assert_eq!((&f.inputs, &f.outputs), (&q.inputs, &q.outputs));
        let (fb, qb) =
            (std::fs::metadata(bundle.path(f)).unwrap().len(), std::fs::metadata(bundle.path(q)).unwrap().len());
        println!("{}: f32 {fb} B, int8 {qb} B ({:.2}x)", role.name(), fb as f64 / qb as f64);
        // Tiny widths: biases and the float first / last layers weigh more than at paper
        // widths (where the ratio is close to 4).
        assert!(qb * 5 < fb * 2, "{}: int8 file not 2.5x smaller", role.name());
        Plan::open(&bundle.path(q)).unwrap();
    }
    // The f32 files do not depend on the precision asked for.
    let single = Bundle::open(Path::new(&p("bundle"))).unwrap();
    for f in &single.manifest.files {
        assert_eq!(m.file(f.role, Precision::F32).unwrap().sha256, f.sha256, "{}", f.path);
    }
}
