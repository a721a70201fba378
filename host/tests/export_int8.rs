//! The int8 export against the f32 one, both run by tract: calibrated on some inputs, the
//! int8 network must pick the f32 network's top-1 class on other inputs, and its file must
//! be about 4x smaller. `latency` (ignored by default: a measurement, not a check) prints
//! tract's batch-1 latency of both precisions.

use avsc_host::export::quant::{calibrate, WeightScales};
use avsc_host::export::verify::{Array, Plan};
use avsc_host::export::Backbone;
use avsc_host::nets::SizePreset;
use avsc_host::rng::SplitMix64;
use avsc_shared::bundle::Role;
use burn::prelude::*;

fn random(shape: &[usize], rng: &mut SplitMix64) -> Array {
    Array::new(shape, (0..shape.iter().product()).map(|_| rng.normal() as f32).collect())
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
}

/// (f32 bytes, int8 bytes).
fn export_both(net: &Backbone, shape: [usize; 4], calib: &[Array], scales: WeightScales) -> (Vec<u8>, Vec<u8>) {
    let input = net.input_spec(shape[2], shape[3]);
    let f32_bytes = net.graph(&input, None).unwrap().to_bytes();
    let cal = calibrate(&f32_bytes, calib).unwrap().with_weights(scales);
    let int8_bytes = net.graph(&input, Some(cal)).unwrap().to_bytes();
    (f32_bytes, int8_bytes)
}

fn parity(role: Role, shape: [usize; 4]) {
    for scales in [WeightScales::PerChannel, WeightScales::PerTensor] {
        parity_with(role, shape, scales);
    }
}

fn parity_with(role: Role, shape: [usize; 4], scales: WeightScales) {
    let net = Backbone::init(role, SizePreset::Tiny, &Device::flex()).unwrap();
    let mut rng = SplitMix64::new(role as u64 + 1);
    let calib: Vec<Array> = (0..8).map(|_| random(&shape, &mut rng)).collect();
    let (f, q) = export_both(&net, shape, &calib, scales);
    let model = avsc_host::export::graph::decode(&q).unwrap().graph.unwrap();
    // The conv form of each weight granularity (see export::quant).
    let count = |op: &str| model.node.iter().filter(|n| n.op_type == op).count();
    let (conv_integer, qlinear) = (count("ConvInteger"), count("QLinearConv"));
    match scales {
        WeightScales::PerChannel | WeightScales::Auto => {
            assert!(conv_integer > 0 && qlinear == 0, "{}: {conv_integer}/{qlinear}", role.name())
        }
        WeightScales::PerTensor => {
            assert!(conv_integer == 0 && qlinear > 0, "{}: {conv_integer}/{qlinear}", role.name())
        }
    }
    // Float by design: the first conv (reads the input) and FC(10) (writes the logits).
    let float_left: Vec<&str> = model
        .node
        .iter()
        .filter(|n| {
            let depthwise = n.attribute.iter().any(|a| a.name == "group" && a.i > 1);
            matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul") && !depthwise
        })
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(float_left.len(), 2, "{}: float convs or matmuls {float_left:?}", role.name());
    assert_eq!(float_left[1], "head.fc2", "{}", role.name());
    let (pf, pq) = (Plan::new(&f).unwrap(), Plan::new(&q).unwrap());
    let (mut same, mut total, mut worst) = (0, 0, 0.0f32);
    for _ in 0..24 {
        let x = random(&shape, &mut rng);
        let (a, b) = (pf.run(std::slice::from_ref(&x)).unwrap(), pq.run(&[x]).unwrap());
        let (la, lb) = (&a[1], &b[1]);
        let range = la.data.iter().copied().fold(f32::MIN, f32::max) - la.data.iter().copied().fold(f32::MAX, f32::min);
        let diff = la.data.iter().zip(&lb.data).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        worst = worst.max(diff / range);
        for (ra, rb) in la.data.chunks(10).zip(lb.data.chunks(10)) {
            same += (argmax(ra) == argmax(rb)) as usize;
            total += 1;
        }
    }
    let ratio = f.len() as f64 / q.len() as f64;
    println!(
        "{} ({scales:?}): top-1 agreement {same}/{total}, worst logit diff {:.3} of range; f32 {} B, int8 {} B ({ratio:.2}x)",
        role.name(),
        worst,
        f.len(),
        q.len()
    );
    assert!(same as f64 >= 0.9 * total as f64, "{}: top-1 agreement {same}/{total}", role.name());
    assert!(worst < 0.1, "{}: logits off by {worst} of their range", role.name());
}

#[test]
fn resinception_int8_agrees_with_f32() {
    parity(Role::AudMel, [4, 6, 128, 45]);
}

#[test]
fn inception_v3_int8_agrees_with_f32() {
    parity(Role::VisInc, [2, 3, 139, 139]);
}

#[test]
fn convnext_int8_agrees_with_f32() {
    parity(Role::VisConv, [4, 3, 64, 64]);
}

/// `cargo test -p avsc-host --test export_int8 -- --ignored --nocapture latency`
/// (`AVSC_SIZE=paper` for the published widths).
#[test]
#[ignore]
fn latency() {
    let size: SizePreset = std::env::var("AVSC_SIZE").unwrap_or_else(|_| "tiny".into()).parse().unwrap();
    let mut rng = SplitMix64::new(3);
    for (role, shape) in
        [(Role::AudMel, [1, 6, 128, 305]), (Role::VisInc, [1, 3, 224, 224]), (Role::VisConv, [1, 3, 224, 224])]
    {
        let net = Backbone::init(role, size, &Device::flex()).unwrap();
        let calib: Vec<Array> = (0..2).map(|_| random(&shape, &mut rng)).collect();
        let (f, qt) = export_both(&net, shape, &calib, WeightScales::PerTensor);
        let (_, q) = export_both(&net, shape, &calib, WeightScales::PerChannel);
        // AVSC_LATENCY_DUMP=DIR keeps the three files (e.g. for `tract FILE dump --profile`).
        if let Some(dir) = std::env::var_os("AVSC_LATENCY_DUMP").map(std::path::PathBuf::from) {
            std::fs::create_dir_all(&dir).unwrap();
            for (form, bytes) in [("f32", &f), ("per-channel", &q), ("per-tensor", &qt)] {
                std::fs::write(dir.join(format!("{}.{form}.onnx", role.name())), bytes).unwrap();
            }
        }
        let x = random(&shape, &mut rng);
        // Shapes fixed before optimisation, as the device builds its plans.
        let time = |bytes: &[u8]| {
            let p = Plan::fixed(bytes, &[&shape]).unwrap();
            p.run(std::slice::from_ref(&x)).unwrap();
            let t0 = std::time::Instant::now();
            let n = 5;
            for _ in 0..n {
                p.run(std::slice::from_ref(&x)).unwrap();
            }
            t0.elapsed().as_secs_f64() * 1000.0 / n as f64
        };
        println!(
            "{} ({size}): f32 {:.1} ms ({} B), int8 per-channel {:.1} ms ({} B), int8 per-tensor {:.1} ms ({} B), \
             batch 1, one thread",
            role.name(),
            time(&f),
            f.len(),
            time(&q),
            q.len(),
            time(&qt),
            qt.len()
        );
    }
}
