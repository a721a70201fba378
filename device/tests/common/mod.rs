//! Test helpers: a small but real model bundle (ONNX files written with tract-onnx's prost
//! types, manifest per avsc_shared::bundle) whose networks are global pooling + random
//! linear layers — the shapes, roles and manifest of a real export, so the device's whole
//! path (verification, tract plans, features, fusion) runs, in milliseconds per window.
//!
//! The real exporter (avsc_host::export) replaces this in tests/tests once it lands.
#![allow(dead_code)]

use avsc_shared::bundle::{
    sha256_hex, Dim, EmbeddingKind, FileEntry, Manifest, Precision, Role, TensorSpec, SCHEMA_VERSION,
};
use avsc_shared::{FeaturePreset, FramePreset, Normalisation, NUM_CLASSES};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};

/// The device binary; under `AVSC_TEST_RUNNER` (e.g. `qemu-aarch64-static` in
/// device/ci-aarch64.sh, where no binfmt_misc handler may exist) run through it.
pub fn bin() -> Command {
    let exe = env!("CARGO_BIN_EXE_avsc-device");
    match std::env::var("AVSC_TEST_RUNNER").ok().filter(|r| !r.trim().is_empty()) {
        Some(runner) => {
            let mut parts = runner.split_whitespace();
            let mut c = Command::new(parts.next().expect("non-empty"));
            c.args(parts).arg(exe);
            c
        }
        None => Command::new(exe),
    }
}

pub fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("spawn avsc-device");
    eprintln!("stderr: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// Deterministic weights in [-scale, scale).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, scale: f32) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next(scale)).collect()
    }
}

/// `[N, dims...]`; a 0 in `dims` is the symbolic frame count `T` (as the exporter writes
/// spectrogram inputs).
fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    let sym = |s: &str| Dimension { value: Some(dimension::Value::DimParam(s.into())), ..Default::default() };
    let mut dim = vec![sym("N")];
    dim.extend(dims.iter().map(|&d| match d {
        0 => sym("T"),
        d => Dimension { value: Some(dimension::Value::DimValue(d as i64)), ..Default::default() },
    }));
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[usize], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: 1,
        float_data: data,
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: format!("{op}_{}", outputs[0]),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: 2, i: v, ..Default::default() }
}

fn model(graph: GraphProto) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        producer_name: "avsc-device tests".into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// (N, C, H, W) -> global average pool -> FC(1024) (tanh) -> FC(10).
fn backbone(input: &str, dims: &[usize], rng: &mut Lcg) -> Vec<u8> {
    let c = dims[0];
    let graph = GraphProto {
        name: "backbone".into(),
        node: vec![
            node("GlobalAveragePool", &[input], &["pooled"], vec![]),
            node("Flatten", &["pooled"], &["flat"], vec![int_attr("axis", 1)]),
            node("Gemm", &["flat", "w1", "b1"], &["h"], vec![]),
            node("Tanh", &["h"], &["fc1024"], vec![]),
            node("Gemm", &["fc1024", "w2", "b2"], &["logits"], vec![]),
        ],
        initializer: vec![
            tensor("w1", &[c, 1024], rng.vec(c * 1024, 0.05)),
            tensor("b1", &[1024], rng.vec(1024, 0.5)),
            tensor("w2", &[1024, NUM_CLASSES], rng.vec(1024 * NUM_CLASSES, 0.1)),
            tensor("b2", &[NUM_CLASSES], rng.vec(NUM_CLASSES, 0.1)),
        ],
        input: vec![value_info(input, dims)],
        output: vec![value_info("fc1024", &[1024]), value_info("logits", &[NUM_CLASSES])],
        ..Default::default()
    };
    model(graph)
}

/// (N, k, d) -> flatten -> FC(10) -> softmax.
fn fusion(k: usize, d: usize, rng: &mut Lcg) -> Vec<u8> {
    let graph = GraphProto {
        name: "fusion".into(),
        node: vec![
            node("Flatten", &["embeddings"], &["flat"], vec![int_attr("axis", 1)]),
            node("Gemm", &["flat", "w", "b"], &["logits"], vec![]),
            node("Softmax", &["logits"], &["probabilities"], vec![int_attr("axis", 1)]),
        ],
        initializer: vec![
            tensor("w", &[k * d, NUM_CLASSES], rng.vec(k * d * NUM_CLASSES, 0.5)),
            tensor("b", &[NUM_CLASSES], vec![0.0; NUM_CLASSES]),
        ],
        input: vec![value_info("embeddings", &[k, d])],
        output: vec![value_info("probabilities", &[NUM_CLASSES])],
        ..Default::default()
    };
    model(graph)
}

/// Which heads a test bundle gets.
#[derive(Clone, Copy)]
pub struct BundleSpec {
    pub visual: bool,
    pub fusion: bool,
    pub audio_head: bool,
    pub visual_head: bool,
}

impl Default for BundleSpec {
    fn default() -> Self {
        BundleSpec { visual: true, fusion: true, audio_head: true, visual_head: true }
    }
}

pub fn write_bundle(dir: &Path, spec: BundleSpec) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let preset = FeaturePreset::paper();
    let frames = FramePreset::default();
    let mut rng = Lcg(0xA5C0);
    let mut files = Vec::new();
    let mut add = |path: &str, bytes: Vec<u8>, entry: FileEntry| {
        std::fs::write(dir.join(path), &bytes).unwrap();
        files.push(FileEntry { path: path.into(), sha256: sha256_hex(&bytes), ..entry });
    };
    let base = |role: Role, inputs: Vec<TensorSpec>, outputs: Vec<TensorSpec>| FileEntry {
        path: String::new(),
        role,
        precision: Precision::F32,
        inputs,
        outputs,
        embedding: None,
        normalisation: None,
        fusion: None,
        sources: vec![],
        sha256: String::new(),
    };
    let outs = || vec![TensorSpec::batched("fc1024", &[1024]), TensorSpec::batched("logits", &[NUM_CLASSES])];
    // The frame count is symbolic, as in the exporter's files: the device fixes it.
    let spec_dims = [6, preset.n_bins, 0];
    let mut spectrogram = TensorSpec::batched("spectrogram", &spec_dims);
    spectrogram.shape[3] = Dim::Symbol("T".into());
    for role in [Role::AudMel, Role::AudGam, Role::AudCqt] {
        let bytes = backbone("spectrogram", &spec_dims, &mut rng);
        add(&format!("{}.onnx", role.name()), bytes, base(role, vec![spectrogram.clone()], outs()));
    }
    let img = [3, frames.size, frames.size];
    if spec.visual {
        for (role, n) in [(Role::VisInc, Normalisation::MinusOneOne), (Role::VisConv, Normalisation::imagenet())] {
            let bytes = backbone("image", &img, &mut rng);
            let e =
                FileEntry { normalisation: Some(n), ..base(role, vec![TensorSpec::batched("image", &img)], outs()) };
            add(&format!("{}.onnx", role.name()), bytes, e);
        }
    }
    let heads = [
        (Role::Fusion, spec.fusion && spec.visual, &Role::BACKBONES[..], "f4"),
        (Role::FusionAudio, spec.audio_head, &Role::BACKBONES[..3], "f4"),
        (Role::FusionVisual, spec.visual_head && spec.visual, &Role::BACKBONES[3..], "f4"),
    ];
    for (role, want, sources, kind) in heads {
        if !want {
            continue;
        }
        let d = NUM_CLASSES;
        let bytes = fusion(sources.len(), d, &mut rng);
        let e = FileEntry {
            embedding: Some(EmbeddingKind::Fc10),
            fusion: Some(kind.into()),
            sources: sources.to_vec(),
            ..base(
                role,
                vec![TensorSpec::batched("embeddings", &[sources.len(), d])],
                vec![TensorSpec::batched("probabilities", &[NUM_CLASSES])],
            )
        };
        add(&format!("{}.onnx", role.name()), bytes, e);
    }
    let m = Manifest {
        schema_version: SCHEMA_VERSION,
        feature_preset: preset,
        frame_preset: frames,
        labels: avsc_shared::LABELS.iter().map(|s| s.to_string()).collect(),
        files,
    };
    m.write(dir).unwrap();
    dir.to_path_buf()
}

/// A deterministic stereo test signal: two tones and a chirp, with a little noise.
pub fn test_signal(rate: u32, seconds: f64) -> Vec<[f32; 2]> {
    let n = (rate as f64 * seconds) as usize;
    let mut rng = Lcg(7);
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            let a = 0.3 * (2.0 * std::f64::consts::PI * 440.0 * t).sin();
            let b = 0.2 * (2.0 * std::f64::consts::PI * (200.0 + 300.0 * t) * t).sin();
            [(a + b) as f32 + rng.next(0.01), (a - b) as f32 + rng.next(0.01)]
        })
        .collect()
}

/// Quantise to S16 as a capture device would deliver it.
pub fn to_s16(x: &[[f32; 2]]) -> Vec<i16> {
    x.iter().flat_map(|f| f.map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)).collect()
}

/// A 16-bit stereo WAV of exactly these samples.
pub fn write_wav_s16(path: &Path, rate: u32, samples: &[i16]) {
    let channels = vec![
        samples.iter().step_by(2).map(|&s| s as f32 / 32768.0).collect(),
        samples.iter().skip(1).step_by(2).map(|&s| s as f32 / 32768.0).collect(),
    ];
    let audio = avsc_shared::wav::Audio { sample_rate: rate, channels };
    std::fs::write(path, avsc_shared::wav::encode(&audio, false)).unwrap();
}

/// An ALSA configuration whose `ci_mic` PCM captures `fixture` (raw S16_LE stereo at
/// `rate`) through the `file` plugin; returns the config path for ALSA_CONFIG_PATH.
pub fn alsa_config(dir: &Path, fixture: &Path, rate: u32) -> PathBuf {
    let conf = format!(
        "pcm.ci_raw {{ type file; slave.pcm {{ type null }}; file \"/dev/null\"; infile \"{}\"; format \"raw\" }}\n\
         pcm.ci_mic {{ type plug; slave {{ pcm \"ci_raw\"; format S16_LE; rate {rate}; channels 2 }} }}\n",
        fixture.display()
    );
    let p = dir.join("asound.conf");
    std::fs::write(&p, conf).unwrap();
    p
}

/// The JSON lines of a successful run.
pub fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    assert!(o.status.success(), "exit {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}
