//! The ONNX writer against burn: every exported graph, run by tract (the device's engine),
//! must give burn's outputs within 1e-4 of their range. Weights are random and the
//! BatchNorm / LayerNorm / layer-scale state is perturbed away from its initial values, so
//! BN folding and every scale are really exercised.

use avsc_host::export::graph::Graph;
use avsc_host::export::verify::{Array, Plan};
use avsc_host::export::{fusion_graph, layers, Backbone};
use avsc_host::fusion::{FusionKind, FusionSpec, Modalities};
use avsc_host::nets::resinception::{InputNorm, ResInceptionConfig};
use avsc_host::nets::{save_module, ConvBnConfig, SizePreset};
use avsc_host::rng::SplitMix64;
use avsc_shared::bundle::{Role, TensorSpec};
use burn::module::{Module, ModuleMapper, Param};
use burn::nn::LinearConfig;
use burn::prelude::*;
use burn::tensor::TensorData;

/// Moves every "constant" parameter (norm scales and shifts, running statistics, layer
/// scales, fusion weights) to random values of the same kind.
struct Perturb {
    rng: SplitMix64,
    field: Vec<String>,
}

impl ModuleMapper for Perturb {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.field.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.field.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (lo, hi) = match self.field.last().map(String::as_str) {
            Some("running_mean" | "beta" | "b") => (-0.5, 0.5),
            Some("running_var" | "input_inv_std") => (0.3, 2.0),
            Some("input_mean") => (-60.0, 0.0),
            Some("gamma" | "layer_scale" | "w" | "w_av") => (0.5, 1.5),
            _ => return param,
        };
        let rng = &mut self.rng;
        param.map(|t| {
            let n = t.shape().num_elements();
            let v: Vec<f32> = (0..n).map(|_| rng.range(lo, hi) as f32).collect();
            Tensor::from_data(TensorData::new(v, t.shape()), &t.device())
        })
    }
}

fn perturb<M: Module>(m: M, seed: u64) -> M {
    m.map(&mut Perturb { rng: SplitMix64::new(seed), field: Vec::new() })
}

fn random(shape: &[usize], seed: u64) -> Array {
    let mut rng = SplitMix64::new(seed);
    Array::new(shape, (0..shape.iter().product()).map(|_| rng.normal() as f32).collect())
}

fn tensor<const D: usize>(a: &Array) -> Tensor<D> {
    Tensor::from_data(TensorData::new(a.data.clone(), a.shape.clone()), &Device::flex())
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

/// max |a − b| ≤ 1e-4 · range(a); returns (max diff, range).
fn assert_close(what: &str, reference: &[f32], got: &Array) -> (f32, f32) {
    assert_eq!(reference.len(), got.data.len(), "{what}: length");
    let max = reference.iter().copied().fold(f32::MIN, f32::max);
    let min = reference.iter().copied().fold(f32::MAX, f32::min);
    let range = (max - min).max(f32::MIN_POSITIVE);
    let diff = reference.iter().zip(&got.data).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    println!("{what}: max |burn - tract| = {diff:.3e}, output range {range:.3e}, ratio {:.2e}", diff / range);
    assert!(diff <= 1e-4 * range, "{what}: max diff {diff} > 1e-4 x range {range}");
    (diff, range)
}

fn spec(name: &str, dims: &[usize]) -> TensorSpec {
    TensorSpec::batched(name, dims)
}

#[test]
fn conv_with_batchnorm_folds_exactly() {
    let device = Device::flex();
    for (i, cfg) in [
        ConvBnConfig::new(3, 8, 3, 1e-3).same(),
        ConvBnConfig::new(4, 6, 1, 1e-3).kernel([1, 7]).same().stride(2).no_relu(),
        ConvBnConfig::new(5, 4, 3, 1e-5).stride(2),
    ]
    .iter()
    .enumerate()
    {
        let m = perturb(cfg.init(&device), 10 + i as u64);
        let x = random(&[2, cfg.c_in, 11, 13], 20 + i as u64);
        let mut g = Graph::new("conv_bn");
        let xi = g.input(&spec("x", &[cfg.c_in, 11, 13]));
        let y = m.emit(&mut g, "block", &xi).unwrap();
        let out = values(m.forward(tensor(&x)));
        let dims = m.forward(tensor::<4>(&x)).dims();
        g.output(&y, &spec("y", &dims[1..]));
        let got = Plan::new(&g.to_bytes()).unwrap().run(&[x]).unwrap();
        assert_eq!(got[0].shape, dims);
        assert_close(&format!("conv+bn {i}"), &out, &got[0]);
    }
}

#[test]
fn linear_and_softmax() {
    let device = Device::flex();
    let lin = LinearConfig::new(7, 5).init(&device);
    let x = random(&[3, 7], 1);
    let mut g = Graph::new("linear");
    let xi = g.input(&spec("x", &[7]));
    let y = layers::linear(&mut g, "fc", &xi, &lin);
    let p = layers::softmax(&mut g, "softmax", &y);
    g.output(&y, &spec("y", &[5]));
    g.output(&p, &spec("p", &[5]));
    let got = Plan::new(&g.to_bytes()).unwrap().run(std::slice::from_ref(&x)).unwrap();
    let logits: Tensor<2> = lin.forward(tensor(&x));
    assert_close("linear", &values(logits.clone()), &got[0]);
    assert_close("softmax", &values(burn::tensor::activation::softmax(logits, 1)), &got[1]);
}

#[test]
fn fusion_heads_f1_to_f6() {
    let device = Device::flex();
    let mut specs: Vec<FusionSpec> =
        FusionKind::ALL.iter().map(|&k| FusionSpec::new(k, Modalities::Av).unwrap()).collect();
    specs.push(FusionSpec::new(FusionKind::F4, Modalities::Audio).unwrap());
    specs.push(FusionSpec::new(FusionKind::F1, Modalities::Visual).unwrap());
    for (i, s) in specs.iter().enumerate() {
        let head = perturb(s.init(&device), 100 + i as u64);
        let x = random(&[4, s.k(), s.d()], 200 + i as u64);
        let bytes = fusion_graph(&head, s, None).to_bytes();
        let got = Plan::new(&bytes).unwrap().run(std::slice::from_ref(&x)).unwrap();
        assert_eq!(got[0].shape, [4, 10]);
        let probs = burn::tensor::activation::softmax(head.forward(tensor(&x)).logits, 1);
        assert_close(&format!("{} {}", s.modalities.name(), s.kind), &values(probs), &got[0]);
    }
}

/// A backbone of `size`, perturbed, against tract on `shape` `[batch, c, h, w]`.
fn backbone_parity(role: Role, size: SizePreset, shape: [usize; 4], seed: u64) {
    let net = Backbone::init(role, size, &Device::flex()).unwrap();
    let net = match net {
        Backbone::Audio(n) => Backbone::Audio(perturb(n, seed)),
        Backbone::Inception(n) => Backbone::Inception(perturb(n, seed)),
        Backbone::ConvNext(n) => Backbone::ConvNext(perturb(n, seed)),
    };
    let input = net.input_spec(shape[2], shape[3]);
    let bytes = net.graph(&input, None).unwrap().to_bytes();
    println!("{}: {} bytes of ONNX", role.name(), bytes.len());
    let x = random(&shape, seed + 1);
    let t0 = std::time::Instant::now();
    let plan = Plan::new(&bytes).unwrap();
    let t1 = std::time::Instant::now();
    let got = plan.run(std::slice::from_ref(&x)).unwrap();
    println!(
        "{}: tract plan {:.2} s, run (batch {}) {:.3} s",
        role.name(),
        (t1 - t0).as_secs_f64(),
        shape[0],
        t1.elapsed().as_secs_f64()
    );
    let e = net.forward(tensor(&x));
    assert_eq!(got[0].shape, e.fc1024.dims());
    assert_close(&format!("{} fc1024", role.name()), &values(e.fc1024), &got[0]);
    assert_close(&format!("{} logits", role.name()), &values(e.logits), &got[1]);
}

/// The fixed input normalisation (training-set statistics per channel and bin) exports as
/// Sub + Mul, and a record that holds the statistics loads back as a fixed-normalisation
/// network while one without them loads as per-example standardisation.
#[test]
fn resinception_with_fixed_normalisation_matches_burn_and_round_trips() {
    let device = Device::flex();
    let cfg = ResInceptionConfig::tiny().with_input_norm(InputNorm::Fixed);
    let net = perturb(cfg.init(&device), 27);
    let stats = net.fixed_norm.as_ref().unwrap().input_mean.val();
    assert!(values(stats).iter().any(|&v| v < -1.0), "the statistics were perturbed");
    let dir = tempfile::tempdir().unwrap();
    let (fixed, per_example) = (dir.path().join("fixed.bpk"), dir.path().join("per_example.bpk"));
    save_module(net, &fixed).unwrap();
    save_module(perturb(ResInceptionConfig::tiny().init(&device), 28), &per_example).unwrap();
    let x = random(&[2, 6, 128, 37], 29);
    for (path, want) in [(&fixed, InputNorm::Fixed), (&per_example, InputNorm::PerExample)] {
        let net = Backbone::load_on(Role::AudMel, SizePreset::Tiny, path, &device).unwrap();
        let Backbone::Audio(n) = &net else { panic!("an audio network") };
        assert_eq!(n.input_norm(), want);
        let bytes = net.graph(&net.input_spec(128, 224), None).unwrap().to_bytes();
        let got = Plan::new(&bytes).unwrap().run(std::slice::from_ref(&x)).unwrap();
        let e = net.forward(tensor(&x));
        assert_close(&format!("{want:?} fc1024"), &values(e.fc1024), &got[0]);
        assert_close(&format!("{want:?} logits"), &values(e.logits), &got[1]);
    }
    // A level change passes through the fixed normalisation (no per-example centring).
    let Backbone::Audio(n) = Backbone::load_on(Role::AudMel, SizePreset::Tiny, &fixed, &device).unwrap() else {
        unreachable!()
    };
    let shifted = Array::new(&x.shape, x.data.iter().map(|v| v + 10.0).collect());
    let (a, b) = (values(n.forward(tensor(&x)).logits), values(n.forward(tensor(&shifted)).logits));
    assert!(a.iter().zip(&b).any(|(p, q)| (p - q).abs() > 1e-3), "a 10-dB level change must reach the logits");
}

#[test]
fn resinception_tiny_matches_burn() {
    // The frame axis is symbolic in the exported graph: any T runs.
    backbone_parity(Role::AudMel, SizePreset::Tiny, [2, 6, 128, 61], 7);
}

/// The block's pointwise layers written one Conv each (the form before they were merged, kept
/// for A/B measurements) give the same outputs as the merged form.
#[test]
fn resinception_with_separate_pointwise_convs_matches_burn() {
    let Backbone::Audio(n) = Backbone::init(Role::AudMel, SizePreset::Tiny, &Device::flex()).unwrap() else {
        unreachable!()
    };
    let net = Backbone::Audio(perturb(n, 37));
    let input = net.input_spec(128, 224);
    let x = random(&[2, 6, 128, 45], 38);
    let e = net.forward(tensor(&x));
    let mut convs = Vec::new();
    for merge in [true, false] {
        let g = net.graph_with(&input, None, merge).unwrap();
        convs.push(g.nodes().iter().filter(|n| n.op_type == "Conv").count());
        let got = Plan::new(&g.to_bytes()).unwrap().run(std::slice::from_ref(&x)).unwrap();
        assert_close(&format!("merge {merge} logits"), &values(e.logits.clone()), &got[1]);
    }
    // 10 blocks of 4 pointwise layers reading the block input, each stage's first with a
    // projection too.
    assert_eq!(convs[1] - convs[0], 10 * 3 + 4, "{convs:?}");
}

// The published widths (12 M, 24 M and 28 M parameters), one input each: the spatial sizes
// stay small (the networks end in global pooling), the layers and channel counts are the
// paper's, so every exported layer is checked at the width the device runs.
#[test]
fn resinception_paper_width_matches_burn() {
    backbone_parity(Role::AudMel, SizePreset::Paper, [1, 6, 128, 61], 17);
}

#[test]
fn inception_v3_paper_width_matches_burn() {
    backbone_parity(Role::VisInc, SizePreset::Paper, [1, 3, 139, 139], 18);
}

#[test]
fn convnext_paper_width_matches_burn() {
    backbone_parity(Role::VisConv, SizePreset::Paper, [1, 3, 64, 64], 19);
}

#[test]
fn inception_v3_tiny_matches_burn() {
    backbone_parity(Role::VisInc, SizePreset::Tiny, [2, 3, 139, 139], 8);
}

#[test]
fn convnext_tiny_matches_burn() {
    backbone_parity(Role::VisConv, SizePreset::Tiny, [2, 3, 64, 64], 9);
}

#[test]
fn corrupted_onnx_is_refused_naming_the_file() {
    let device = Device::flex();
    let head = FusionSpec::new(FusionKind::F4, Modalities::Av).unwrap().init(&device);
    let s = FusionSpec::new(FusionKind::F4, Modalities::Av).unwrap();
    let bytes = fusion_graph(&head, &s, None).to_bytes();
    let dir = tempfile::tempdir().unwrap();

    let good = dir.path().join("fusion.onnx");
    std::fs::write(&good, &bytes).unwrap();
    Plan::open(&good).unwrap();

    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = format!("{:#}", Plan::open(&truncated).err().unwrap());
    assert!(e.contains("truncated.onnx") && e.contains("ONNX"), "{e}");

    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"this is not a model").unwrap();
    let e = format!("{:#}", Plan::open(&garbage).err().unwrap());
    assert!(e.contains("garbage.onnx"), "{e}");
    println!("refused: {e}");
}
