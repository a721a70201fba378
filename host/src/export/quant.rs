//! int8 export. Only convolutions (but not depthwise ones) and dense layers are quantized;
//! everything between them (ReLU, GELU, pooling, LayerNorm, concat, softmax) stays float,
//! because tract runs QuantizeLinear/DequantizeLinear chains around other ops as float anyway
//! and folds a quantized Softmax into a wrong lookup table (measured with tract 0.23.9, #6).
//!
//! Activations are uint8 (per tensor, asymmetric, min/max from calibration), weights int8
//! (symmetric, zero point 0; one scale per output channel, or per tensor for ConvNeXt: see
//! [`WeightScales`]). A conv becomes QuantizeLinear → ConvInteger → Cast → Mul (per-channel
//! scale) → Add (float bias), or per tensor QuantizeLinear → QLinearConv (int32
//! bias) → DequantizeLinear; a dense layer becomes QuantizeLinear → MatMulInteger → Cast →
//! Mul → Add (float bias), so the embeddings and logits keep full resolution. An activation
//! read by several convs (inception branches) is quantized once. QLinearConv measured
//! slightly ahead of ConvInteger + float rescaling in tract on x86 (ConvNeXt: int8/f32
//! latency 1.14 against 1.54); depthwise convs stay float because tract's fast depthwise
//! kernels are float only, and so do the first layer and the logits layer (see
//! `calibrated_values`).

use super::graph::{attr_int, Graph, Value};
use super::layers::{conv_attrs, ConvWeights};
use super::verify::{Array, Plan};
use crate::cache::Cache;
use anyhow::{ensure, Context, Result};
use avsc_shared::bundle::Role;
use std::collections::HashMap;
use std::path::Path;
use tract_onnx::pb::tensor_proto::DataType;

/// Activation ranges seen on calibration inputs, by value name of the f32 graph.
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    pub ranges: HashMap<String, (f32, f32)>,
    /// How weights get their scales.
    pub weights: WeightScales,
    /// Value → its uint8 form, once emitted.
    quantized: HashMap<String, Quantized>,
}

impl Calibration {
    pub fn new(ranges: HashMap<String, (f32, f32)>) -> Calibration {
        Calibration { ranges, weights: WeightScales::default(), quantized: HashMap::new() }
    }

    pub fn with_weights(self, weights: WeightScales) -> Calibration {
        Calibration { weights, ..self }
    }
}

/// Weight scales of the int8 convs and dense layers: one per tensor, or one per output channel
/// (BN folding leaves channels with very different ranges; a per-tensor scale spends few of
/// the 8 bits on the small ones). Per channel, convs become ConvInteger + a float rescale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightScales {
    /// QLinearConv with one weight scale: the fastest form in tract 0.23.9.
    PerTensor,
    /// ConvInteger + a per-channel float rescale: int8 keeps the f32 top-1 on the trained
    /// networks (80/80 clips each, where per-tensor flips near-ties), at 3-50 % more latency
    /// than per-tensor at the paper widths.
    PerChannel,
    /// Per network: per channel where BatchNorm was folded into the convs (the audio networks
    /// and InceptionV3), per tensor for ConvNeXt (LayerNorm, nothing folded: per-tensor kept
    /// its top-1 on every clip measured, and per-channel would cost it 50 % latency).
    #[default]
    Auto,
}

impl WeightScales {
    /// The granularity used for `role`'s network.
    pub fn for_role(self, role: Role) -> WeightScales {
        match (self, role) {
            (WeightScales::Auto, Role::VisConv) => WeightScales::PerTensor,
            (WeightScales::Auto, _) => WeightScales::PerChannel,
            (s, _) => s,
        }
    }
}

impl std::str::FromStr for WeightScales {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "per-tensor" => Ok(WeightScales::PerTensor),
            "per-channel" => Ok(WeightScales::PerChannel),
            "auto" => Ok(WeightScales::Auto),
            _ => anyhow::bail!("unknown weight scales {s:?} (expected auto, per-tensor or per-channel)"),
        }
    }
}

/// uint8 quantization of a calibrated range (widened to hold 0): (scale, zero point).
fn uint8_params((lo, hi): (f32, f32)) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = ((hi - lo) / 255.0).max(1e-12);
    (scale, (-lo / scale).round().clamp(0.0, 255.0) as u8)
}

/// A quantized activation: its uint8 value, scale (number and initializer), zero point.
#[derive(Clone, Debug)]
struct Quantized {
    q: Value,
    scale: f32,
    scale_v: Value,
    zero_v: Value,
}

/// The uint8 form of `x`, if the graph is being quantized and `x` was calibrated.
fn quantize_input(g: &mut Graph, x: &str) -> Option<Quantized> {
    let cal = g.calibration.as_ref()?;
    if let Some(q) = cal.quantized.get(x) {
        return Some(q.clone());
    }
    let (scale, zp) = uint8_params(*cal.ranges.get(x)?);
    let scale_v = g.scalar(&format!("{x}.q_scale"), scale);
    let zero_v = g.init_8bit(&format!("{x}.q_zero"), &[], &[zp], false);
    let q = g.node("QuantizeLinear", &format!("{x}.q"), &[x, &scale_v, &zero_v], vec![]);
    let q = Quantized { q, scale, scale_v, zero_v };
    g.calibration.as_mut().expect("checked").quantized.insert(x.to_string(), q.clone());
    Some(q)
}

/// Per-tensor symmetric int8 weights (as bytes) and their scale.
fn quantize_weights(w: &[f32]) -> (Vec<u8>, f32) {
    let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    (w.iter().map(|&v| quantize_weight(v, scale)).collect(), scale)
}

fn quantize_weight(v: f32, scale: f32) -> u8 {
    (v / scale).round().clamp(-127.0, 127.0) as i8 as u8
}

/// Symmetric int8 weights with one scale per output channel (of `channels`), element `i`
/// belonging to channel `channel(i)`.
fn quantize_weights_per_channel(w: &[f32], channels: usize, channel: impl Fn(usize) -> usize) -> (Vec<u8>, Vec<f32>) {
    let mut max = vec![0.0f32; channels];
    for (i, v) in w.iter().enumerate() {
        let m = &mut max[channel(i)];
        *m = m.max(v.abs());
    }
    let scales: Vec<f32> = max.iter().map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 }).collect();
    (w.iter().enumerate().map(|(i, &v)| quantize_weight(v, scales[channel(i)])).collect(), scales)
}

/// The int8 weights of a layer with `channels` outputs, per the calibration's [`WeightScales`]:
/// the bytes, and one scale (per tensor) or one per channel.
fn layer_weights(g: &Graph, w: &[f32], channels: usize, channel: impl Fn(usize) -> usize) -> (Vec<u8>, Vec<f32>) {
    match g.calibration.as_ref().map(|c| c.weights).unwrap_or_default() {
        WeightScales::PerTensor => {
            let (q, s) = quantize_weights(w);
            (q, vec![s])
        }
        WeightScales::PerChannel | WeightScales::Auto => quantize_weights_per_channel(w, channels, channel),
    }
}

/// A scale initializer: a scalar when there is one, else a vector.
fn scales_init(g: &mut Graph, name: &str, scales: &[f32]) -> Value {
    match scales {
        [s] => g.scalar(name, *s),
        _ => g.init_f32(name, &[scales.len()], scales),
    }
}

/// The quantized form of a conv, if the graph is being quantized and both its input and its
/// output were calibrated. Per-tensor weights: QLinearConv (int32 bias), then
/// DequantizeLinear. Per-channel weights: ConvInteger into int32, then `acc · x_scale ·
/// w_scale[c] + bias[c]` in float — tract's QLinearConv with per-channel scales runs 2-2.6x
/// slower than per-tensor, while ConvInteger's kernel never sees the scales.
pub fn conv(g: &mut Graph, name: &str, x: &str, cw: &ConvWeights) -> Option<Value> {
    if cw.groups > 1 {
        // Depthwise: tract's fast depthwise kernels are float only, and the weights are few.
        return None;
    }
    // Quantized only where the output was calibrated too (its range sets QLinearConv's output
    // scale; ConvInteger's float output does not need it).
    let y_range = *g.calibration.as_ref()?.ranges.get(name)?;
    let xq = quantize_input(g, x)?;
    // OIHW: output channel o holds elements [o·per, (o+1)·per).
    let out_ch = cw.dims[0];
    let per = cw.w.len() / out_ch;
    let (wq, ws) = layer_weights(g, &cw.w, out_ch, |i| i / per);
    let w = g.init_8bit(&format!("{name}.weight_q"), &cw.dims, &wq, true);
    let wz = g.init_8bit(&format!("{name}.weight_zero"), &[], &[0], true);
    if ws.len() > 1 {
        let acc = g.node("ConvInteger", &format!("{name}.int"), &[&xq.q, &w, &xq.zero_v, &wz], conv_attrs(cw));
        let f = g.node("Cast", &format!("{name}.acc"), &[&acc], vec![attr_int("to", DataType::Float as i64)]);
        let rescale: Vec<f32> = ws.iter().map(|w| xq.scale * w).collect();
        let sv = g.init_f32(&format!("{name}.scale"), &[out_ch, 1, 1], &rescale);
        let y = g.node("Mul", &format!("{name}.scaled"), &[&f, &sv], vec![]);
        let bv = g.init_f32(&format!("{name}.bias"), &[out_ch, 1, 1], &cw.b);
        return Some(g.node("Add", name, &[&y, &bv], vec![]));
    }
    let (ys, yzp) = uint8_params(y_range);
    let wsv = g.scalar(&format!("{name}.weight_scale"), ws[0]);
    let ysv = g.scalar(&format!("{name}.y_scale"), ys);
    let yzv = g.init_8bit(&format!("{name}.y_zero"), &[], &[yzp], false);
    let acc_scale = xq.scale as f64 * ws[0] as f64;
    let bq: Vec<i32> = cw.b.iter().map(|&b| (b as f64 / acc_scale).round() as i32).collect();
    let bv = g.init_i32(&format!("{name}.bias_q"), &[out_ch], &bq);
    let inputs = [&xq.q, &xq.scale_v, &xq.zero_v, &w, &wsv, &wz, &ysv, &yzv, &bv].map(String::as_str);
    let yq = g.node("QLinearConv", &format!("{name}.q"), &inputs, conv_attrs(cw));
    Some(g.node("DequantizeLinear", name, &[&yq, &ysv, &yzv], vec![]))
}

/// The quantized form of a dense layer `[N, d_in] x [d_in, d_out]`: MatMulInteger into int32,
/// then `acc · x_scale · w_scale + bias` in float (the outputs are embeddings and logits:
/// kept at full resolution).
pub fn dense(g: &mut Graph, name: &str, x: &str, w: &[f32], dims: [usize; 2], b: Option<&[f32]>) -> Option<Value> {
    let xq = quantize_input(g, x)?;
    // [d_in, d_out]: output column j holds the elements i with i % d_out == j. MatMulInteger's
    // weight zero point stays 0 for every column; the per-column scales go into the rescale.
    let (wq, ws) = layer_weights(g, w, dims[1], |i| i % dims[1]);
    let wv = g.init_8bit(&format!("{name}.weight_q"), &dims, &wq, true);
    let wz = g.init_8bit(&format!("{name}.weight_zero"), &[], &[0], true);
    let acc = g.node("MatMulInteger", &format!("{name}.int"), &[&xq.q, &wv, &xq.zero_v, &wz], vec![]);
    let f = g.node("Cast", &format!("{name}.acc"), &[&acc], vec![attr_int("to", DataType::Float as i64)]);
    let rescale: Vec<f32> = ws.iter().map(|w| xq.scale * w).collect();
    let s = scales_init(g, &format!("{name}.scale"), &rescale);
    match b {
        Some(b) => {
            let y = g.node("Mul", &format!("{name}.scaled"), &[&f, &s], vec![]);
            let bv = g.init_f32(&format!("{name}.bias"), &[dims[1]], b);
            Some(g.node("Add", name, &[&y, &bv], vec![]))
        }
        None => Some(g.node("Mul", name, &[&f, &s], vec![])),
    }
}

/// The values an int8 pass calibrates: the input and output of every Conv, Gemm and MatMul,
/// except the first layer (it reads the graph input: a dB spectrogram or normalised pixels,
/// whose 8-bit steps cost the most accuracy for the fewest operations) and the layers that
/// write a graph output (the logits). Without a range, a layer stays float.
fn calibrated_values(bytes: &[u8]) -> Result<Vec<String>> {
    let g = super::graph::decode(bytes)?.graph.expect("decode checks the graph");
    let outputs: Vec<&String> = g.output.iter().map(|o| &o.name).collect();
    let identity_of_output: Vec<&String> = g
        .node
        .iter()
        .filter(|n| n.op_type == "Identity" && outputs.contains(&&n.output[0]))
        .map(|n| &n.input[0])
        .collect();
    // The first layer reads the graph input, directly or through ops that only reshape or
    // normalise it (the audio network's per-example standardisation): every value computed
    // from the input and initializers alone, before any conv or dense layer, stays float.
    let initializers: Vec<&String> = g.initializer.iter().map(|t| &t.name).collect();
    let mut float_inputs: Vec<&String> = g.input.iter().map(|i| &i.name).collect();
    for n in &g.node {
        let layer = matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul");
        let from_input = n.input.iter().any(|i| float_inputs.contains(&i))
            && n.input.iter().all(|i| float_inputs.contains(&i) || initializers.contains(&i));
        if !layer && from_input {
            float_inputs.push(&n.output[0]);
        }
    }
    for n in &g.node {
        let out = &n.output[0];
        if outputs.contains(&out) || identity_of_output.contains(&out) {
            float_inputs.push(&n.input[0]);
        }
    }
    let mut names: Vec<String> = Vec::new();
    for n in &g.node {
        if matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul") && !float_inputs.contains(&&n.input[0]) {
            for v in [&n.input[0], &n.output[0]] {
                if !names.contains(v) {
                    names.push(v.clone());
                }
            }
        }
    }
    Ok(names)
}

/// Activation ranges of the f32 model `bytes` at the conv / dense layers to quantize, over
/// `inputs` (each a batch).
pub fn calibrate(bytes: &[u8], inputs: &[Array]) -> Result<Calibration> {
    ensure!(!inputs.is_empty(), "no calibration inputs");
    let names = calibrated_values(bytes)?;
    let plan = Plan::with_outputs(bytes, &names)?;
    let mut ranges: HashMap<String, (f32, f32)> = HashMap::new();
    for x in inputs {
        for (name, a) in names.iter().zip(plan.run(std::slice::from_ref(x))?) {
            let r = ranges.entry(name.clone()).or_insert((f32::MAX, f32::MIN));
            for &v in &a.data {
                r.0 = r.0.min(v);
                r.1 = r.1.max(v);
            }
        }
    }
    Ok(Calibration::new(ranges))
}

/// Calibration inputs drawn from a feature cache: evenly spaced clips, the spectrogram stack
/// of an audio network, the middle frame of a clip for a visual one.
/// Folds kept for evaluation: never calibrated on by default.
pub const HELD_OUT: [&str; 2] = ["fold1_evaluate", "fold1_test"];

pub struct CalibrationSource {
    cache: Cache,
    clips: Vec<usize>,
}

impl CalibrationSource {
    /// `clips` evenly spaced clips of the cache: of `split` only, when given; else of every
    /// clip outside the held-out folds ([`HELD_OUT`]), so calibration never sees a clip the
    /// evaluation scores.
    pub fn open(cache: &Path, split: Option<&str>, clips: usize) -> Result<CalibrationSource> {
        let cache = Cache::open(cache)?;
        let tags = |i: usize| &cache.manifest.items[i].splits;
        let pool: Vec<usize> = (0..cache.manifest.items.len())
            .filter(|&i| match split {
                Some(s) => tags(i).iter().any(|x| x == s),
                None => !tags(i).iter().any(|x| HELD_OUT.contains(&x.as_str())),
            })
            .collect();
        let n = pool.len();
        ensure!(n > 0, "{}: no clips to calibrate on", cache.root.display());
        let k = clips.clamp(1, n);
        let clips = (0..k).map(|j| pool[(2 * j + 1) * n / (2 * k)]).collect();
        Ok(CalibrationSource { cache, clips })
    }

    /// Labels of the chosen clips.
    pub fn labels(&self) -> Vec<Option<usize>> {
        self.clips.iter().map(|&i| self.cache.manifest.items[i].label().map(|l| l.index())).collect()
    }

    /// Network inputs of `role` for the calibration clips, one batch of 1 each.
    pub fn inputs(&self, role: Role) -> Result<Vec<Array>> {
        let m = &self.cache.manifest;
        self.clips
            .iter()
            .map(|&i| {
                let item = &m.items[i];
                if let Some(kind) = crate::embed::feature_kind(role) {
                    let clip = self.cache.read(&item.id)?;
                    let s = avsc_shared::dsp::deltas::stack6(clip.spec(kind), &m.feature_preset.deltas);
                    let [c, f, t] = s.shape;
                    return Ok(Array::new(&[1, c, f, t], s.data));
                }
                let path = Cache::item_path(&self.cache.root, &item.id);
                let (h, _) = crate::cache::ClipData::read_frames(&path, &[])?;
                ensure!(h.n_frames > 0, "{}: no frames", path.display());
                let (_, imgs) = crate::cache::ClipData::read_frames(&path, &[h.n_frames / 2])?;
                let x = avsc_shared::image::normalise(&imgs[0], &crate::embed::normalisation(role));
                let s = m.frame_preset.size;
                Ok(Array::new(&[1, 3, s, s], x))
            })
            .collect::<Result<_>>()
            .with_context(|| format!("calibration inputs for {}", role.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_by_default_never_takes_a_held_out_clip() {
        use crate::cache::{write_manifest, CacheItem, Manifest, SCHEMA_VERSION};
        let dir = tempfile::tempdir().unwrap();
        let item = |k: usize, splits: &[&str]| CacheItem {
            id: format!("c{k}"),
            label: Some("park".into()),
            location: format!("l{k}"),
            splits: splits.iter().map(|s| s.to_string()).collect(),
        };
        let items: Vec<CacheItem> = (0..12)
            .map(|k| match k % 3 {
                0 => item(k, &["fold1_train"]),
                1 => item(k, &["fold1_evaluate", "fold1_test"]),
                _ => item(k, &["all"]),
            })
            .collect();
        let m = Manifest {
            schema_version: SCHEMA_VERSION,
            feature_preset: avsc_shared::FeaturePreset::paper(),
            frame_preset: avsc_shared::FramePreset::default(),
            labels: avsc_shared::LABELS.iter().map(|s| s.to_string()).collect(),
            dataset: "test".into(),
            items,
        };
        write_manifest(dir.path(), &m).unwrap();
        let ids = |c: &CalibrationSource| -> Vec<usize> { c.clips.iter().map(|&i| i % 3).collect() };
        let all = CalibrationSource::open(dir.path(), None, 100).unwrap();
        assert_eq!(all.clips.len(), 8, "every clip outside fold1_evaluate/fold1_test");
        assert!(ids(&all).iter().all(|&r| r != 1));
        let eval = CalibrationSource::open(dir.path(), Some("fold1_evaluate"), 100).unwrap();
        assert_eq!(ids(&eval), [1, 1, 1, 1], "an explicit split is taken as asked");
    }

    #[test]
    fn zero_is_exact_and_weights_round_to_half_a_step() {
        for range in [(-1.5, 3.0), (0.0, 6.0), (0.2, 0.9), (-4.0, -1.0)] {
            let (scale, zp) = uint8_params(range);
            // Real 0 (ReLU output, padding) maps to an integer exactly.
            assert_eq!((0.0 / scale + zp as f32).fract(), 0.0);
            assert!(scale * 255.0 >= range.1 - range.0.min(0.0) - 1e-6);
        }
        let w = [0.5, -1.27, 0.003, 1.0];
        let (q, s) = quantize_weights(&w);
        assert_eq!(q[1] as i8, -127);
        for (v, q) in w.iter().zip(&q) {
            assert!((*q as i8 as f32 * s - v).abs() <= s / 2.0 + 1e-7);
        }
    }

    #[test]
    fn auto_scales_per_channel_except_convnext() {
        use WeightScales::*;
        assert_eq!(Auto.for_role(Role::AudMel), PerChannel);
        assert_eq!(Auto.for_role(Role::VisInc), PerChannel);
        assert_eq!(Auto.for_role(Role::VisConv), PerTensor);
        assert_eq!(PerTensor.for_role(Role::AudCqt), PerTensor);
        assert_eq!(PerChannel.for_role(Role::VisConv), PerChannel);
        assert_eq!("auto".parse::<WeightScales>().unwrap(), Auto);
        assert!("per-layer".parse::<WeightScales>().is_err());
    }

    #[test]
    fn per_channel_weights_use_each_channels_range() {
        // Two output channels of 3 weights, ranges 100x apart (as after folding a BN).
        let w = [0.01, -0.02, 0.005, 1.0, -2.0, 0.5];
        let (q, s) = quantize_weights_per_channel(&w, 2, |i| i / 3);
        assert_eq!(s, vec![0.02 / 127.0, 2.0 / 127.0]);
        assert_eq!((q[1] as i8, q[4] as i8), (-127, -127));
        for (i, (v, q)) in w.iter().zip(&q).enumerate() {
            assert!((*q as i8 as f32 * s[i / 3] - v).abs() <= s[i / 3] / 2.0 + 1e-9);
        }
        // Per tensor, the small channel keeps about one step of the 255.
        let (qt, _) = quantize_weights(&w);
        assert!((qt[0] as i8).abs() <= 1 && (qt[1] as i8).abs() <= 1);
        // Columns of a [d_in, d_out] matrix.
        let (_, s) = quantize_weights_per_channel(&[1.0, 0.1, -2.0, 0.2], 2, |i| i % 2);
        assert_eq!(s, vec![2.0 / 127.0, 0.2 / 127.0]);
    }
}
