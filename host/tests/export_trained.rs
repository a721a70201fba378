//! The parity bar of the export on trained networks, for a finished `avsc-host demo` folder:
//!
//! ```text
//! AVSC_DEMO=demo cargo test -p avsc-host --test export_trained -- --ignored --nocapture
//! ```
//!
//! exports both precisions (calibrated on the cache's training clips), then on every clip of
//! the evaluation split: burn and tract f32 agree within 1e-4 of the output range, and the
//! int8 network's top-1 equals the f32 one's on ≥ 99 % of the clips. Ignored by default: it
//! needs the trained runs.

use avsc_host::embed::model_path;
use avsc_host::export::quant::CalibrationSource;
use avsc_host::export::verify::{Array, Plan};
use avsc_host::export::{export_bundle, Backbone, ExportArgs};
use avsc_host::fusion::FusionKind;
use avsc_host::nets::SizePreset;
use avsc_shared::bundle::{Bundle, Precision, Role};
use burn::prelude::*;
use burn::tensor::TensorData;
use std::path::PathBuf;

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
}

#[test]
#[ignore]
fn trained_demo_bundle_meets_the_parity_bar() {
    let Ok(demo) = std::env::var("AVSC_DEMO").map(PathBuf::from) else {
        println!("set AVSC_DEMO to a finished demo folder");
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let cache = demo.join("cache");
    let (feature_preset, frame_preset) =
        avsc_host::export::presets(Some(&cache), avsc_shared::FeaturePreset::paper()).unwrap();
    let args = ExportArgs {
        runs: demo.join("runs"),
        heads: demo.join("heads"),
        fusion: FusionKind::F4,
        size: SizePreset::Tiny,
        precisions: vec![Precision::F32, Precision::Int8],
        feature_preset,
        frame_preset,
        cache: Some(cache.clone()),
        calibration_clips: 64,
        calibration_split: None,
        weight_scales: std::env::var("AVSC_WEIGHT_SCALES").map_or(Default::default(), |s| s.parse().unwrap()),
        out: out.path().to_path_buf(),
    };
    let report = export_bundle(&args).unwrap();
    println!(
        "bundle: f32 {} B, int8 {} B ({:.2}x)",
        report.bytes(Precision::F32),
        report.bytes(Precision::Int8),
        report.bytes(Precision::F32) as f64 / report.bytes(Precision::Int8) as f64
    );
    let bundle = Bundle::open(out.path()).unwrap();
    let eval = CalibrationSource::open(&cache, Some("fold1_evaluate"), usize::MAX).unwrap();
    let labels = eval.labels();
    let mut failures = Vec::new();
    for role in Role::BACKBONES {
        let net = Backbone::load(role, SizePreset::Tiny, &model_path(&args.runs, role)).unwrap();
        let inputs = eval.inputs(role).unwrap();
        let plan = |p| {
            Plan::fixed(
                &std::fs::read(bundle.path(bundle.manifest.file(role, p).unwrap())).unwrap(),
                &[&inputs[0].shape],
            )
            .unwrap()
        };
        let (pf, pq) = (plan(Precision::F32), plan(Precision::Int8));
        let (mut worst, mut same, mut right_f, mut right_q) = (0.0f32, 0, 0, 0);
        let mut q_err = 0.0f64;
        for (x, label) in inputs.iter().zip(&labels) {
            let e = net.forward(Tensor::from_data(TensorData::new(x.data.clone(), x.shape.clone()), &Device::flex()));
            let reference: Vec<f32> = e.logits.into_data().try_into_vec().unwrap();
            let (f, q): (Vec<Array>, Vec<Array>) =
                (pf.run(std::slice::from_ref(x)).unwrap(), pq.run(std::slice::from_ref(x)).unwrap());
            let range =
                reference.iter().copied().fold(f32::MIN, f32::max) - reference.iter().copied().fold(f32::MAX, f32::min);
            let diff = reference.iter().zip(&f[1].data).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            worst = worst.max(diff / range);
            let qd = f[1].data.iter().zip(&q[1].data).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            q_err += (qd / range) as f64;
            let (tf, tq) = (argmax(&f[1].data), argmax(&q[1].data));
            same += (tf == tq) as usize;
            if tf != tq {
                let l = &f[1].data;
                println!(
                    "  {}: flip {tf} -> {tq}; f32 logits {:.3} vs {:.3} (range {range:.3})",
                    role.name(),
                    l[tf],
                    l[tq]
                );
            }
            right_f += (Some(tf) == *label) as usize;
            right_q += (Some(tq) == *label) as usize;
        }
        let n = inputs.len();
        println!(
            "{}: {n} eval clips; burn vs tract f32 worst {worst:.2e} of range; int8 top-1 = f32 on {same}/{n}; \
             accuracy f32 {right_f}/{n}, int8 {right_q}/{n}; int8 logit error {:.2e} of range (mean of max)",
            role.name(),
            q_err / n as f64
        );
        if worst > 1e-4 {
            failures.push(format!("{}: f32 parity {worst}", role.name()));
        }
        if (same as f64) < 0.99 * n as f64 {
            failures.push(format!("{}: int8 top-1 agreement {same}/{n}", role.name()));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
