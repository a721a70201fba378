//! The int8 export against the f32 one, both run by tract: calibrated on some inputs, the
//! int8 network must pick the f32 network's top-1 class on other inputs, and its file must
//! be about 4x smaller. tract's batch-1 latency of both precisions is a bench:
//! `cargo bench -p avsc-host --bench export_latency`.

#[path = "common/int8.rs"]
mod int8;

use avsc_host::export::quant::WeightScales;
use avsc_host::export::verify::{Array, Plan};
use avsc_host::export::Backbone;
use avsc_host::nets::SizePreset;
use avsc_host::rng::SplitMix64;
use avsc_shared::bundle::Role;
use burn::prelude::*;
use int8::{export_both, random};

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
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
