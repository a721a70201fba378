//! ConvNeXt-Tiny backbone exactly as torchvision defines it (`convnext_tiny()`), followed by
//! the Dense block of Figure 3.
//!
//! | module             | torchvision           | layers                                   | out (paper) | size |
//! |--------------------|-----------------------|------------------------------------------|-------------|------|
//! | `stem`             | `features.0`          | conv 4x4 / 4 (bias) → LayerNorm2d        | 96          | 56   |
//! | `stages.0`         | `features.1`          | 3 x CNBlock                              | 96          | 56   |
//! | `downsample.0`     | `features.2`          | LayerNorm2d → conv 2x2 / 2 (bias)        | 192         | 28   |
//! | `stages.1`         | `features.3`          | 3 x CNBlock                              | 192         | 28   |
//! | `downsample.1`     | `features.4`          | LayerNorm2d → conv 2x2 / 2               | 384         | 14   |
//! | `stages.2`         | `features.5`          | 9 x CNBlock                              | 384         | 14   |
//! | `downsample.2`     | `features.6`          | LayerNorm2d → conv 2x2 / 2               | 768         | 7    |
//! | `stages.3`         | `features.7`          | 3 x CNBlock                              | 768         | 7    |
//! | (pool)             | `avgpool`             | global average                           | 768         | 1    |
//! | `head_norm`        | `classifier.0`        | LayerNorm                                | 768         |      |
//! | `head`             | —                     | FC(1024) → ReLU → Dropout → FC(10)       | 10          |      |
//!
//! CNBlock (x = input, channels C): depthwise conv 7x7 pad 3 (bias) → to channels-last →
//! LayerNorm → Linear(C, 4C) → GELU (exact, erf) → Linear(4C, C) → × layer_scale (C) → to
//! channels-first → stochastic depth → + x. Every LayerNorm has eps 1e-6; LayerNorm2d
//! normalises over C at each pixel. Stochastic depth (row mode) grows linearly from 0 to 0.1
//! over the 18 blocks and is active only while training. Sizes are for a 224 x 224 input.
//!
//! The pooled features are torchvision's `avgpool` output. The Dense block reads them through
//! `head_norm`, torchvision's `classifier.0` LayerNorm (kept: it is pretrained and is what
//! normalises the last stage for a classifier). torchvision's 1000-way fc (`classifier.2`) is
//! kept aside by the import ([`super::torchvision::Imported`]). The `tiny` preset
//! divides every width by 8 and keeps the depths.

use super::{global_avg_pool, Embeddings, Head, HeadConfig, SizePreset};
use crate::onnx::graph::{Graph, Value};
use crate::onnx::layers::{self, param, ConvWeights};
use anyhow::Result;
use burn::module::{Flag, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Gelu, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;

/// torchvision's `partial(LayerNorm, eps=1e-6)` / `LayerNorm2d(eps=1e-6)`.
const LN_EPS: f64 = 1e-6;
/// torchvision's initial layer scale (the ImageNet weights overwrite it).
const LAYER_SCALE_INIT: f32 = 1e-6;

/// Widths, depths and head of a [`ConvNextTiny`].
#[derive(Clone, Debug, PartialEq)]
pub struct ConvNextTinyConfig {
    /// Channels of the four stages.
    pub dims: [usize; 4],
    /// CNBlocks per stage.
    pub depths: [usize; 4],
    /// Stochastic-depth probability of the last block (torchvision: 0.1 for Tiny).
    pub stochastic_depth: f64,
    pub head_dropout: f64,
}

impl ConvNextTinyConfig {
    /// torchvision's ConvNeXt-Tiny: 27.8 M backbone parameters, 768 pooled features.
    pub fn paper() -> Self {
        Self { dims: [96, 192, 384, 768], depths: [3, 3, 9, 3], stochastic_depth: 0.1, head_dropout: 0.5 }
    }

    /// Every width / 8, same depths.
    pub fn tiny() -> Self {
        Self { dims: [12, 24, 48, 96], ..Self::paper() }
    }

    pub fn preset(preset: SizePreset) -> Self {
        match preset {
            SizePreset::Paper => Self::paper(),
            SizePreset::Tiny => Self::tiny(),
        }
    }

    /// Width of the pooled features fed to the head.
    pub fn pooled_dim(&self) -> usize {
        self.dims[3]
    }

    pub fn init(&self, device: &Device) -> ConvNextTiny {
        let total: usize = self.depths.iter().sum();
        let mut block_id = 0;
        let mut stages = Vec::new();
        for (&dim, &depth) in self.dims.iter().zip(&self.depths) {
            let blocks = (0..depth)
                .map(|_| {
                    let p = self.stochastic_depth * block_id as f64 / (total - 1) as f64;
                    block_id += 1;
                    CnBlock::new(dim, p, device)
                })
                .collect();
            stages.push(blocks);
        }
        let downsample = self
            .dims
            .windows(2)
            .map(|w| Downsample {
                norm: LayerNormConfig::new(w[0]).with_epsilon(LN_EPS).init(device),
                conv: Conv2dConfig::new([w[0], w[1]], [2, 2]).with_stride([2, 2]).init(device),
            })
            .collect();
        ConvNextTiny {
            stem: Stem {
                conv: Conv2dConfig::new([3, self.dims[0]], [4, 4]).with_stride([4, 4]).init(device),
                norm: LayerNormConfig::new(self.dims[0]).with_epsilon(LN_EPS).init(device),
            },
            stages,
            downsample,
            head_norm: LayerNormConfig::new(self.pooled_dim()).with_epsilon(LN_EPS).init(device),
            head: HeadConfig::new(self.pooled_dim()).with_dropout(self.head_dropout).init(device),
        }
    }
}

/// ConvNeXt-Tiny backbone + Dense block. Input `[batch, 3, h, w]`, ImageNet-normalised RGB.
#[derive(Module, Debug)]
pub struct ConvNextTiny {
    pub stem: Stem,
    /// `stages[s][j]`: block j of stage s.
    pub stages: Vec<Vec<CnBlock>>,
    /// Between stage s and s + 1.
    pub downsample: Vec<Downsample>,
    pub head_norm: LayerNorm,
    pub head: Head,
}

impl ConvNextTiny {
    /// The globally pooled backbone features, `[batch, 768]` (torchvision's `avgpool` output).
    pub fn forward_pooled(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = self.stem.forward(x);
        for (s, blocks) in self.stages.iter().enumerate() {
            if s > 0 {
                x = self.downsample[s - 1].forward(x);
            }
            for block in blocks {
                x = block.forward(x);
            }
        }
        global_avg_pool(x)
    }

    /// Both embeddings: FC(1024) activations and FC(10) logits.
    pub fn forward(&self, x: Tensor<4>) -> Embeddings {
        self.head.forward(self.head_norm.forward(self.forward_pooled(x)))
    }

    /// ONNX of [`Self::forward`]: `x` `[N, 3, H, W]` → (fc1024, logits). burn runs a CNBlock
    /// channels-last (permute, LayerNorm, Linear, Linear, permute back); the ONNX stays
    /// channels-first throughout, which is the same arithmetic: the LayerNorm over channels
    /// is a reduction over axis 1, each pointwise Linear a 1x1 conv (weight transposed), and
    /// the layer scale is folded into the second one. No transposes in the graph, and every
    /// matrix product is a Conv the int8 pass can quantize.
    pub fn emit(&self, g: &mut Graph, x: &str) -> Result<(Value, Value)> {
        let mut x = self.stem.emit(g, "stem", x)?;
        for (s, blocks) in self.stages.iter().enumerate() {
            if s > 0 {
                x = self.downsample[s - 1].emit(g, &format!("downsample.{}", s - 1), &x)?;
            }
            for (j, block) in blocks.iter().enumerate() {
                x = block.emit(g, &format!("stages.{s}.{j}"), &x)?;
            }
        }
        let pooled = layers::global_avg_pool(g, "avgpool", &x);
        let normed = layers::layer_norm(g, "head_norm", &pooled, &self.head_norm, LN_EPS as f32, 2);
        Ok(self.head.emit(g, "head", &normed))
    }
}

/// torchvision's LayerNorm2d: LayerNorm over channels at every pixel of `[b, c, h, w]`.
fn layer_norm_2d(norm: &LayerNorm, x: Tensor<4>) -> Tensor<4> {
    norm.forward(x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2])
}

/// `features.0`: patchify conv 4x4 / 4, then LayerNorm2d.
#[derive(Module, Debug)]
pub struct Stem {
    pub conv: Conv2d,
    pub norm: LayerNorm,
}

impl Stem {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        layer_norm_2d(&self.norm, self.conv.forward(x))
    }

    pub fn emit(&self, g: &mut Graph, n: &str, x: &str) -> Result<Value> {
        let y = layers::conv2d(g, &format!("{n}.conv"), x, &self.conv)?;
        Ok(layers::layer_norm(g, &format!("{n}.norm"), &y, &self.norm, LN_EPS as f32, 4))
    }
}

/// `features.2/4/6`: LayerNorm2d, then conv 2x2 / 2.
#[derive(Module, Debug)]
pub struct Downsample {
    pub norm: LayerNorm,
    pub conv: Conv2d,
}

impl Downsample {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(layer_norm_2d(&self.norm, x))
    }

    pub fn emit(&self, g: &mut Graph, n: &str, x: &str) -> Result<Value> {
        let y = layers::layer_norm(g, &format!("{n}.norm"), x, &self.norm, LN_EPS as f32, 4);
        layers::conv2d(g, &format!("{n}.conv"), &y, &self.conv)
    }
}

/// torchvision's `CNBlock`.
#[derive(Module, Debug)]
pub struct CnBlock {
    /// `block.0`: depthwise 7x7.
    pub dwconv: Conv2d,
    /// `block.2`.
    pub norm: LayerNorm,
    /// `block.3`.
    pub pwconv1: Linear,
    pub gelu: Gelu,
    /// `block.5`.
    pub pwconv2: Linear,
    /// `layer_scale`, stored as `[C]` (torchvision: `[C, 1, 1]`).
    pub layer_scale: Param<Tensor<1>>,
    pub drop_path: StochasticDepth,
}

impl CnBlock {
    fn new(dim: usize, drop_path: f64, device: &Device) -> Self {
        Self {
            dwconv: Conv2dConfig::new([dim, dim], [7, 7])
                .with_groups(dim)
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .init(device),
            norm: LayerNormConfig::new(dim).with_epsilon(LN_EPS).init(device),
            pwconv1: LinearConfig::new(dim, 4 * dim).init(device),
            gelu: Gelu::new(),
            pwconv2: LinearConfig::new(4 * dim, dim).init(device),
            layer_scale: Param::from_tensor(Tensor::full([dim], LAYER_SCALE_INIT, device)),
            drop_path: StochasticDepth { prob: drop_path, training: Param::from_bool(true) },
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.dwconv.forward(x.clone()).permute([0, 2, 3, 1]);
        let y = self.pwconv1.forward(self.norm.forward(y));
        let y = self.pwconv2.forward(self.gelu.forward(y));
        // Channels-last, so the [C] scale broadcasts over the last axis.
        let y = (y * self.layer_scale.val().unsqueeze::<4>()).permute([0, 3, 1, 2]);
        self.drop_path.forward(y) + x
    }

    /// ONNX of [`Self::forward`], channels-first (see [`ConvNextTiny::emit`]).
    pub fn emit(&self, g: &mut Graph, n: &str, x: &str) -> Result<Value> {
        let y = layers::conv2d(g, &format!("{n}.dwconv"), x, &self.dwconv)?;
        let y = layers::layer_norm(g, &format!("{n}.norm"), &y, &self.norm, LN_EPS as f32, 4);
        let y = layers::conv(g, &format!("{n}.pwconv1"), &y, &pointwise(&self.pwconv1));
        let y = layers::gelu(g, &format!("{n}.gelu"), &y);
        let mut pw2 = pointwise(&self.pwconv2);
        pw2.scale_out(&param(&self.layer_scale));
        let y = layers::conv(g, &format!("{n}.pwconv2"), &y, &pw2);
        Ok(layers::add(g, &format!("{n}.add"), &y, x))
    }
}

/// A `Linear` `[c_in, c_out]` applied per pixel, as a 1x1 conv `[c_out, c_in, 1, 1]`.
fn pointwise(m: &Linear) -> ConvWeights {
    let [c_in, c_out] = m.weight.val().dims();
    let w = param(&m.weight);
    let mut t = vec![0.0; w.len()];
    for i in 0..c_in {
        for o in 0..c_out {
            t[o * c_in + i] = w[i * c_out + o];
        }
    }
    ConvWeights {
        dims: [c_out, c_in, 1, 1],
        w: t,
        b: m.bias.as_ref().map(param).unwrap_or_else(|| vec![0.0; c_out]),
        stride: [1, 1],
        pads: [0; 4],
        dilation: [1, 1],
        groups: 1,
    }
}

/// torchvision's `StochasticDepth(p, "row")`: drops the whole residual branch of a sample
/// with probability `prob` while training (survivors scaled by 1 / (1 - prob)).
#[derive(Module, Debug)]
pub struct StochasticDepth {
    pub prob: f64,
    pub training: Param<Flag>,
}

impl StochasticDepth {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.prob == 0.0 || !self.training.is_enabled() || !x.device().is_autodiff() {
            return x;
        }
        let keep = 1.0 - self.prob;
        let [b, ..] = x.dims();
        let mask = Tensor::<4>::random([b, 1, 1, 1], Distribution::Bernoulli(keep), &x.device());
        x * (mask / keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::{trainable_params, EMBED_DIM, NUM_CLASSES};

    fn check(cfg: ConvNextTinyConfig) -> usize {
        let device = Device::flex();
        let net = cfg.init(&device);
        let x = Tensor::<4>::random([2, 3, 224, 224], Distribution::Default, &device);
        let e = net.forward(x);
        assert_eq!(e.fc1024.dims(), [2, EMBED_DIM]);
        assert_eq!(e.logits.dims(), [2, NUM_CLASSES]);
        let n = trainable_params(&net);
        println!("ConvNeXt-Tiny {cfg:?}: {n} trainable parameters");
        n
    }

    #[test]
    fn paper_shapes_and_size() {
        let n = check(ConvNextTinyConfig::paper());
        // torchvision's 28 589 128 less the 1000-way fc, plus FC(768→1024) and FC(1024→10).
        assert_eq!(n, 28_589_128 - 768 * 1000 - 1000 + 768 * 1024 + 1024 + 1024 * 10 + 10);
    }

    #[test]
    fn tiny_shapes_and_size() {
        let n = check(ConvNextTinyConfig::tiny());
        assert!(n < 1_500_000, "{n}");
    }

    #[test]
    fn tiny_backpropagates_in_training_mode() {
        let device = Device::flex().autodiff();
        let net = ConvNextTinyConfig::tiny().init(&device);
        let x = Tensor::<4>::random([2, 3, 64, 64], Distribution::Default, &device);
        let grads = net.forward(x).logits.mean().backward();
        assert!(net.stem.conv.weight.grad(&grads).is_some());
        assert!(net.stages[3][2].layer_scale.grad(&grads).is_some());
    }
}
