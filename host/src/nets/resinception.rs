//! The residual-inception audio network of Figure 2 (Aud-MEL / Aud-GAM / Aud-CQT): a
//! Residual-Inception block (the CNN backbone) followed by the Dense block.
//!
//! The paper reuses this backbone from the authors' earlier work and its code is not public;
//! this is a design in that spirit, sized to the paper's budget (about 12 M trainable
//! parameters per audio model, 36 M for the three). Input: `[batch, 6, 128, 305]` — the two
//! channels of one spectrogram with their deltas and delta-deltas, 128 bins x 305 frames.
//!
//! | module          | layers                                                  | out (paper) | size (F x T) |
//! |-----------------|---------------------------------------------------------|-------------|--------------|
//! | (input)         | standardise per example (default) or fixed per channel and bin | 6    | 128 x 305    |
//! | `stem`          | conv 3x3 pad 1 → BN → ReLU                              | 32          | 128 x 305    |
//! |                 | max pool 2x2                                            | 32          | 64 x 152     |
//! | `stages.0`      | 2 x residual-inception block                            | 128         | 64 x 152     |
//! |                 | max pool 2x2 → dropout                                  | 128         | 32 x 76      |
//! | `stages.1`      | 2 x residual-inception block                            | 256         | 32 x 76      |
//! |                 | max pool 2x2 → dropout                                  | 256         | 16 x 38      |
//! | `stages.2`      | 3 x residual-inception block                            | 512         | 16 x 38      |
//! |                 | max pool 2x2 → dropout                                  | 512         | 8 x 19       |
//! | `stages.3`      | 3 x residual-inception block                            | 1024        | 8 x 19       |
//! |                 | global average pool → dropout                           | 1024        | 1            |
//! | `head`          | FC(1024) → ReLU → Dropout → FC(10)                      | 10          |              |
//!
//! Residual-inception block (input C_in, output C, branch width b = C / 4; every conv is
//! conv → BN → ReLU):
//!
//! | branch          | layers                                                        |
//! |-----------------|---------------------------------------------------------------|
//! | `branch1x1`     | 1x1 → b                                                       |
//! | `branch3x3`     | 1x1 → b, 3x3 → b                                              |
//! | `branch5x5`     | 1x1 → b, 3x3 → b, 3x3 → b (a 5x5 factorised into two 3x3)     |
//! | `branch_pool`   | avg pool 3x3 / 1 → 1x1 → b                                    |
//! | `shortcut`      | identity if C_in = C, else 1x1 conv → BN (no ReLU)            |
//!
//! output = ReLU(concat(branches) + shortcut). The `tiny` preset divides every width by 8
//! (stem 4, stages 16 / 32 / 64 / 128) and keeps the depths and the FC(1024) embedding.

use super::{global_avg_pool, ConvBn, ConvBnConfig, Embeddings, Head, HeadConfig, SizePreset};
use crate::onnx::graph::{Graph, Value};
use crate::onnx::layers;
use anyhow::Result;
use burn::module::Param;
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;

/// Keras' BatchNormalization epsilon (the authors' framework).
const BN_EPS: f64 = 1e-3;
/// Epsilon of the input standardisation (added to the variance, in dB²).
pub const INPUT_NORM_EPS: f64 = 1e-5;
/// Training with fixed input normalisation: random level changes up to this many dB.
pub const LEVEL_AUGMENT_DB: f64 = 10.0;

/// Per example and channel, `(x − mean) / sqrt(var + ε)` over frequency and time (ONNX
/// InstanceNormalization with unit scale and zero shift). It removes the recording level — a
/// constant offset of a dB spectrogram — and the very different scales of the static, delta
/// and delta-delta channels, so the stem's BatchNorm does not start from a -60 dB mean; the
/// same computation at training and inference, no running statistics. Without it Aud-GAM
/// (whose dB values sit far lower than MEL's) validated at chance on the synthetic set.
pub fn standardise(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let flat = x.reshape([n, c, h * w]);
    let centred = flat.clone() - flat.mean_dim(2);
    let var = centred.clone().square().mean_dim(2);
    (centred / var.add_scalar(INPUT_NORM_EPS).sqrt()).reshape([n, c, h, w])
}

/// How the network normalises its input spectrogram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputNorm {
    /// [`standardise`]: each channel of each example over its whole window (no statistics,
    /// but nothing can be computed before the window's last frame).
    #[default]
    PerExample,
    /// [`FixedNorm`]: `(x − mean) / std` per channel and frequency bin, with statistics of the
    /// training set stored in the model: every output frame depends only on nearby input
    /// frames, so the device can run the network as the window fills.
    Fixed,
}

impl InputNorm {
    pub fn name(self) -> &'static str {
        match self {
            InputNorm::PerExample => "per-example",
            InputNorm::Fixed => "fixed",
        }
    }
}

impl std::str::FromStr for InputNorm {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "per-example" | "per_example" => Ok(InputNorm::PerExample),
            "fixed" => Ok(InputNorm::Fixed),
            _ => anyhow::bail!("unknown input normalisation {s:?} (expected per-example or fixed)"),
        }
    }
}

/// Input normalisation fixed at training time: `(x − mean[c, f]) · inv_std[c, f]`, both
/// `[channels, bins, 1]`, computed on the training set ([`FixedNorm::from_stats`]) and never
/// trained (the forward pass detaches them; they are not counted as trainable parameters).
#[derive(Module, Debug)]
pub struct FixedNorm {
    pub input_mean: Param<Tensor<3>>,
    pub input_inv_std: Param<Tensor<3>>,
}

impl FixedNorm {
    /// Placeholder statistics (mean 0, scale 1) of the right shape; training replaces them,
    /// loading a model overwrites them.
    pub fn identity(channels: usize, bins: usize, device: &Device) -> FixedNorm {
        Self::from_stats(&vec![0.0; channels * bins], &vec![1.0; channels * bins], [channels, bins], device)
    }

    /// `mean` and `std`, channel-major (`[c * bins + f]`); `1 / sqrt(std² + ε)` is stored.
    pub fn from_stats(mean: &[f32], std: &[f32], [c, f]: [usize; 2], device: &Device) -> FixedNorm {
        let inv: Vec<f32> = std.iter().map(|s| 1.0 / (s * s + INPUT_NORM_EPS as f32).sqrt()).collect();
        let t = |v: &[f32]| Tensor::<3>::from_data(TensorData::new(v.to_vec(), [c, f, 1]), device);
        FixedNorm {
            input_mean: Param::from_tensor(t(mean)).set_require_grad(false),
            input_inv_std: Param::from_tensor(t(&inv)).set_require_grad(false),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mean = self.input_mean.val().detach().unsqueeze::<4>();
        let inv = self.input_inv_std.val().detach().unsqueeze::<4>();
        (x - mean) * inv
    }

    /// ONNX of [`Self::forward`]: Sub and Mul by `[1, C, F, 1]` initializers.
    pub fn emit(&self, g: &mut Graph, name: &str, x: &str) -> Value {
        let values = |p: &Param<Tensor<3>>| -> (Vec<usize>, Vec<f32>) {
            let t = p.val();
            let mut dims = vec![1];
            dims.extend(t.dims());
            (dims, t.into_data().try_to_vec().expect("f32 statistics"))
        };
        let (dims, mean) = values(&self.input_mean);
        let (_, inv) = values(&self.input_inv_std);
        let m = g.init_f32(&format!("{name}.mean"), &dims, &mean);
        let s = g.init_f32(&format!("{name}.inv_std"), &dims, &inv);
        let d = g.node("Sub", &format!("{name}.centred"), &[x, &m], vec![]);
        g.node("Mul", name, &[&d, &s], vec![])
    }
}

/// Widths, depths and regularisation of a [`ResInception`].
#[derive(Clone, Debug, PartialEq)]
pub struct ResInceptionConfig {
    /// Input channels: 2 spectrogram channels x (static, delta, delta-delta).
    pub in_channels: usize,
    pub stem_channels: usize,
    /// Output channels of the four stages (multiples of 4: four equal branches).
    pub widths: [usize; 4],
    /// Residual-inception blocks per stage.
    pub depths: [usize; 4],
    /// Dropout after each pooling of the backbone.
    pub stage_dropout: f64,
    pub head_dropout: f64,
    pub input_norm: InputNorm,
    /// Frequency bins of the input (the fixed normalisation's statistics are per bin).
    pub input_bins: usize,
}

impl ResInceptionConfig {
    /// About 12 M trainable parameters.
    pub fn paper() -> Self {
        Self {
            in_channels: 6,
            stem_channels: 32,
            widths: [128, 256, 512, 1024],
            depths: [2, 2, 3, 3],
            stage_dropout: 0.1,
            head_dropout: 0.3,
            input_norm: InputNorm::PerExample,
            input_bins: 128,
        }
    }

    /// Every width / 8, same depths.
    pub fn tiny() -> Self {
        Self { stem_channels: 4, widths: [16, 32, 64, 128], ..Self::paper() }
    }

    pub fn preset(preset: SizePreset) -> Self {
        match preset {
            SizePreset::Paper => Self::paper(),
            SizePreset::Tiny => Self::tiny(),
        }
    }

    /// Width of the pooled features fed to the head.
    pub fn pooled_dim(&self) -> usize {
        self.widths[3]
    }

    pub fn with_input_norm(self, input_norm: InputNorm) -> Self {
        Self { input_norm, ..self }
    }

    pub fn init(&self, device: &Device) -> ResInception {
        let mut c_in = self.stem_channels;
        let mut stages = Vec::new();
        for (&width, &depth) in self.widths.iter().zip(&self.depths) {
            let blocks = (0..depth)
                .map(|_| {
                    let block = ResInceptionBlock::new(c_in, width, device);
                    c_in = width;
                    block
                })
                .collect();
            stages.push(blocks);
        }
        ResInception {
            fixed_norm: (self.input_norm == InputNorm::Fixed)
                .then(|| FixedNorm::identity(self.in_channels, self.input_bins, device)),
            stem: ConvBnConfig::new(self.in_channels, self.stem_channels, 3, BN_EPS).same().init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            stages,
            dropout: DropoutConfig::new(self.stage_dropout).init(),
            head: HeadConfig::new(self.pooled_dim()).with_dropout(self.head_dropout).init(device),
        }
    }
}

/// Residual-inception backbone + Dense block (Figure 2).
#[derive(Module, Debug)]
pub struct ResInception {
    /// `Some`: [`InputNorm::Fixed`]; `None`: [`standardise`] per example.
    pub fixed_norm: Option<FixedNorm>,
    pub stem: ConvBn,
    /// The 2x2 max pooling after the stem and after stages 0-2.
    pub pool: MaxPool2d,
    /// `stages[s][j]`: block j of stage s.
    pub stages: Vec<Vec<ResInceptionBlock>>,
    pub dropout: Dropout,
    pub head: Head,
}

impl ResInception {
    /// Globally pooled backbone features, `[batch, 1024]` (paper preset).
    pub fn input_norm(&self) -> InputNorm {
        if self.fixed_norm.is_some() {
            InputNorm::Fixed
        } else {
            InputNorm::PerExample
        }
    }

    pub fn forward_pooled(&self, x: Tensor<4>) -> Tensor<2> {
        let x = match &self.fixed_norm {
            Some(n) => n.forward(self.level_augment(x)),
            None => standardise(x),
        };
        // On the CPU the stem's convolution of the (untracked) input is a matrix product of its
        // patches (see `matmul`).
        let stem = if super::matmul::on_flex(&x) && !x.is_require_grad() {
            self.stem.after_conv(super::matmul::same_conv_of_input(x, self.stem.conv.weight.val()))
        } else {
            self.stem.forward(x)
        };
        let mut x = self.pool.forward(stem);
        let last = self.stages.len() - 1;
        for (s, blocks) in self.stages.iter().enumerate() {
            for block in blocks {
                x = block.forward(x);
            }
            if s < last {
                x = self.dropout.forward(self.pool.forward(x));
            }
        }
        self.dropout.forward(global_avg_pool(x))
    }

    /// In training with fixed normalisation: each example's recording level moved by a
    /// random gain, uniform in ±[`LEVEL_AUGMENT_DB`] (an offset of its dB statics; the deltas
    /// do not change), so the network learns what per-example standardisation gave for free.
    fn level_augment(&self, x: Tensor<4>) -> Tensor<4> {
        if !self.dropout.training.is_enabled() || !x.device().is_autodiff() {
            return x;
        }
        let [n, c, _, _] = x.dims();
        let device = x.device();
        let gain =
            Tensor::<4>::random([n, 1, 1, 1], Distribution::Uniform(-LEVEL_AUGMENT_DB, LEVEL_AUGMENT_DB), &device);
        // Channels 0 and 1 are the two statics ([S_L, S_R, Δ_L, Δ_R, ΔΔ_L, ΔΔ_R]).
        let statics: Vec<f32> = (0..c).map(|i| if i < 2 { 1.0 } else { 0.0 }).collect();
        let mask = Tensor::<4>::from_data(TensorData::new(statics, [1, c, 1, 1]), &device);
        x + gain * mask
    }

    /// `[batch, 6, 128, 305]` spectrograms → FC(1024) activations and FC(10) logits.
    pub fn forward(&self, x: Tensor<4>) -> Embeddings {
        self.head.forward(self.forward_pooled(x))
    }

    /// ONNX of [`Self::forward`]: `x` `[N, 6, 128, T]` → (fc1024, logits).
    pub fn emit(&self, g: &mut Graph, x: &str) -> Result<(Value, Value)> {
        let x = match &self.fixed_norm {
            Some(n) => n.emit(g, "input_norm", x),
            None => layers::standardise(g, "input_norm", x, INPUT_NORM_EPS as f32),
        };
        let x = self.stem.emit(g, "stem", &x)?;
        let mut x = layers::max_pool2d(g, "pool", &x, &self.pool)?;
        let last = self.stages.len() - 1;
        for (s, blocks) in self.stages.iter().enumerate() {
            for (j, block) in blocks.iter().enumerate() {
                x = block.emit(g, &format!("stages.{s}.{j}"), &x)?;
            }
            if s < last {
                x = layers::max_pool2d(g, "pool", &x, &self.pool)?;
            }
        }
        let pooled = layers::global_avg_pool(g, "avgpool", &x);
        Ok(self.head.emit(g, "head", &pooled))
    }
}

/// Four parallel branches concatenated, plus a residual shortcut.
#[derive(Module, Debug)]
pub struct ResInceptionBlock {
    pub branch1x1: ConvBn,
    pub branch3x3: Vec<ConvBn>,
    pub branch5x5: Vec<ConvBn>,
    pub avg_pool: AvgPool2d,
    pub branch_pool: ConvBn,
    /// `None`: identity (input and output widths equal).
    pub shortcut: Option<ConvBn>,
}

impl ResInceptionBlock {
    pub fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        assert!(c_out.is_multiple_of(4), "block width {c_out} is not a multiple of 4");
        let b = c_out / 4;
        let conv = |a, c, k| ConvBnConfig::new(a, c, k, BN_EPS).same().init(device);
        Self {
            branch1x1: conv(c_in, b, 1),
            branch3x3: vec![conv(c_in, b, 1), conv(b, b, 3)],
            branch5x5: vec![conv(c_in, b, 1), conv(b, b, 3), conv(b, b, 3)],
            avg_pool: AvgPool2dConfig::new([3, 3])
                .with_strides([1, 1])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            branch_pool: conv(c_in, b, 1),
            shortcut: (c_in != c_out).then(|| ConvBnConfig::new(c_in, c_out, 1, BN_EPS).no_relu().init(device)),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let chain = |convs: &[ConvBn], x: Tensor<4>| convs.iter().fold(x, |x, c| c.forward(x));
        // The pointwise layers that read x (each branch's first, and the projection) run as
        // one matrix product.
        let mut pointwise = vec![&self.branch1x1, &self.branch3x3[0], &self.branch5x5[0], &self.branch_pool];
        pointwise.extend(&self.shortcut);
        let mut y = super::matmul::pointwise_siblings(&pointwise, x.clone()).into_iter();
        let mut next = || y.next().expect("one output per pointwise layer");
        let branches = vec![
            self.branch1x1.after_conv(next()),
            chain(&self.branch3x3[1..], self.branch3x3[0].after_conv(next())),
            chain(&self.branch5x5[1..], self.branch5x5[0].after_conv(next())),
            // `avg_pool` (3x3, stride 1, padding 1, padding counted) computed as a box filter
            // on the pointwise conv's b outputs rather than its C_in inputs (they commute: the
            // conv has no bias); the module stays for its configuration (the exporter writes
            // an AveragePool, in the same order).
            self.branch_pool.after_conv(super::box_avg3x3(next())),
        ];
        let shortcut = match &self.shortcut {
            Some(proj) => proj.after_conv(next()),
            None => x,
        };
        burn::tensor::activation::relu(Tensor::cat(branches, 1) + shortcut)
    }

    /// ONNX of [`Self::forward`]. The pointwise layers that read the block input (each
    /// branch's first, and the projection) are one Conv whose output channels are sliced
    /// apart (as the burn forward pass runs them as one matrix product), unless the graph
    /// asks for them separately ([`Graph::merge_pointwise`]).
    pub fn emit(&self, g: &mut Graph, name: &str, x: &str) -> Result<Value> {
        let chain = |g: &mut Graph, branch: &str, first: Value, convs: &[ConvBn]| -> Result<Value> {
            let mut y = first;
            for (i, c) in convs.iter().enumerate() {
                y = c.emit(g, &format!("{name}.{branch}.{}", i + 1), &y)?;
            }
            Ok(y)
        };
        let pool = |g: &mut Graph, n: &str, x: &str| layers::avg_pool2d(g, n, x, &self.avg_pool);
        let (b1, b3, b5, bp, shortcut) = if g.merge_pointwise {
            let mut layers_in: Vec<&ConvBn> =
                vec![&self.branch1x1, &self.branch3x3[0], &self.branch5x5[0], &self.branch_pool];
            layers_in.extend(&self.shortcut);
            let outs = ConvBn::emit_merged(g, &format!("{name}.pointwise"), x, &layers_in, 3)?;
            let mut outs = outs.into_iter();
            let mut next = || outs.next().expect("one output per pointwise layer");
            let b1 = next();
            let b3 = chain(g, "branch3x3", next(), &self.branch3x3[1..])?;
            let b5 = chain(g, "branch5x5", next(), &self.branch5x5[1..])?;
            let bp = self.branch_pool.finish_after_pool(
                g,
                &format!("{name}.avg_pool"),
                &format!("{name}.branch_pool"),
                &next(),
                pool,
            )?;
            let shortcut = if self.shortcut.is_some() { next() } else { x.to_string() };
            (b1, b3, b5, bp, shortcut)
        } else {
            let b1 = self.branch1x1.emit(g, &format!("{name}.branch1x1"), x)?;
            let first = |g: &mut Graph, branch: &str, c: &ConvBn| c.emit(g, &format!("{name}.{branch}.0"), x);
            let f3 = first(g, "branch3x3", &self.branch3x3[0])?;
            let b3 = chain(g, "branch3x3", f3, &self.branch3x3[1..])?;
            let f5 = first(g, "branch5x5", &self.branch5x5[0])?;
            let b5 = chain(g, "branch5x5", f5, &self.branch5x5[1..])?;
            let bp = self.branch_pool.emit_after_pool(
                g,
                &format!("{name}.avg_pool"),
                &format!("{name}.branch_pool"),
                x,
                pool,
            )?;
            let shortcut = match &self.shortcut {
                Some(proj) => proj.emit(g, &format!("{name}.shortcut"), x)?,
                None => x.to_string(),
            };
            (b1, b3, b5, bp, shortcut)
        };
        let cat = layers::concat(g, &format!("{name}.cat"), &[&b1, &b3, &b5, &bp], 1);
        let sum = layers::add(g, &format!("{name}.add"), &cat, &shortcut);
        Ok(layers::relu(g, &format!("{name}.relu"), &sum))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::{trainable_params, EMBED_DIM, NUM_CLASSES};
    use burn::tensor::Distribution;

    #[test]
    fn box_filter_equals_the_average_pool_forward_and_backward() {
        let device = Device::flex().autodiff();
        let block = ResInceptionBlock::new(4, 8, &Device::flex());
        let x0 = Tensor::<4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 1.0), &device);
        let (xa, xb) = (x0.clone().require_grad(), x0.require_grad());
        let (ya, yb) = (block.avg_pool.forward(xa.clone()), crate::nets::box_avg3x3(xb.clone()));
        let weights = Tensor::<4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 1.0), &device);
        let (ga, gb) = ((ya.clone() * weights.clone()).sum().backward(), (yb.clone() * weights).sum().backward());
        let close = |a: Vec<f32>, b: Vec<f32>| a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        let v = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
        assert!(close(v(ya.without_autodiff()), v(yb.without_autodiff())) < 1e-6);
        let (da, db) = (xa.grad(&ga).unwrap(), xb.grad(&gb).unwrap());
        assert!(close(v(da), v(db)) < 1e-6);
    }

    #[test]
    fn pool_after_the_pointwise_conv_is_the_pool_branch() {
        // On the autodiff device BatchNorm uses batch statistics, as in training.
        let device = Device::flex().autodiff();
        let block = ResInceptionBlock::new(6, 8, &device);
        let x0 = Tensor::<4>::random([2, 6, 5, 7], Distribution::Normal(0.0, 1.0), &device);
        let (xa, xb) = (x0.clone().require_grad(), x0.require_grad());
        let reference = block.branch_pool.forward(block.avg_pool.forward(xa.clone()));
        let commuted = block.branch_pool.forward_with(xb.clone(), crate::nets::box_avg3x3);
        let weights = Tensor::<4>::random(reference.dims(), Distribution::Normal(0.0, 1.0), &device);
        let ga = (reference.clone() * weights.clone()).sum().backward();
        let gb = (commuted.clone() * weights).sum().backward();
        let v = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
        let close = |a: Vec<f32>, b: Vec<f32>| a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        let (ya, yb) = (v(reference.without_autodiff()), v(commuted.without_autodiff()));
        assert!(ya.iter().any(|&y| y > 0.1), "the branch output is not all zero");
        assert!(close(ya, yb) < 1e-5);
        assert!(close(v(xa.grad(&ga).unwrap()), v(xb.grad(&gb).unwrap())) < 1e-5);
    }

    fn check(cfg: ResInceptionConfig) -> usize {
        let device = Device::flex();
        let net = cfg.init(&device);
        let x = Tensor::<4>::random([2, 6, 128, 305], Distribution::Default, &device);
        let e = net.forward(x);
        assert_eq!(e.fc1024.dims(), [2, EMBED_DIM]);
        assert_eq!(e.logits.dims(), [2, NUM_CLASSES]);
        let n = trainable_params(&net);
        println!("ResInception {cfg:?}: {n} trainable parameters");
        n
    }

    #[test]
    fn paper_shapes_and_size() {
        let n = check(ResInceptionConfig::paper());
        // Equal to the PyTorch reference (host/benches/reference_torch_step.py --size paper).
        assert_eq!(n, 12_084_106);
    }

    #[test]
    fn tiny_shapes_and_size() {
        let n = check(ResInceptionConfig::tiny());
        assert_eq!(n, 317_274);
    }

    #[test]
    fn standardise_removes_level_and_scale() {
        let device = Device::flex();
        // Channel 0: 2 + the ramp 0..8 scaled by 3; channel 1: the same ramp at -60 dB.
        let ramp: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let data: Vec<f32> = ramp.iter().map(|v| 2.0 + 3.0 * v).chain(ramp.iter().map(|v| v - 60.0)).collect();
        let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(data, [1, 2, 2, 4]), &device);
        let y: Vec<f32> = standardise(x).into_data().try_to_vec().unwrap();
        // The standardised ramp: (i - 3.5) / sqrt(5.25 + eps), in both channels.
        for (k, v) in y.iter().enumerate() {
            let want = (k % 8) as f64 - 3.5;
            let sd = if k < 8 { (9.0 * 5.25 + INPUT_NORM_EPS).sqrt() / 3.0 } else { (5.25 + INPUT_NORM_EPS).sqrt() };
            assert!((*v as f64 - want / sd).abs() < 1e-5, "{k}: {v}");
        }
    }

    #[test]
    fn tiny_backpropagates_in_training_mode() {
        let device = Device::flex().autodiff();
        let net = ResInceptionConfig::tiny().init(&device);
        let x = Tensor::<4>::random([2, 6, 32, 48], Distribution::Default, &device);
        let grads = net.forward(x).logits.mean().backward();
        assert!(net.stem.conv.weight.grad(&grads).is_some());
        assert!(net.head.fc2.weight.grad(&grads).is_some());
    }
}
