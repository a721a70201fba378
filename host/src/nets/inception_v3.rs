//! InceptionV3 backbone exactly as torchvision defines it (`inception_v3(aux_logits=False,
//! transform_input=False)`), followed by the Dense block of Figure 3.
//!
//! Field names are torchvision's module names in lower case, so the import table in
//! [`super::torchvision`] is a rename, not a rewiring. Every conv is torchvision's
//! `BasicConv2d`: conv (no bias) → BatchNorm (eps 0.001) → ReLU ([`ConvBn`]).
//! Spatial sizes below are for the 224 x 224 input of Figure 3 (torchvision's 299 gives 8 x 8).
//!
//! | module          | block                                        | out (paper) | size    |
//! |-----------------|----------------------------------------------|-------------|---------|
//! | `conv2d_1a_3x3` | 3x3 / 2                                      | 32          | 111     |
//! | `conv2d_2a_3x3` | 3x3                                          | 32          | 109     |
//! | `conv2d_2b_3x3` | 3x3 pad 1                                    | 64          | 109     |
//! | `maxpool1`      | max 3x3 / 2                                  | 64          | 54      |
//! | `conv2d_3b_1x1` | 1x1                                          | 80          | 54      |
//! | `conv2d_4a_3x3` | 3x3                                          | 192         | 52      |
//! | `maxpool2`      | max 3x3 / 2                                  | 192         | 25      |
//! | `mixed_5b`      | A: 1x1 64, 1x1-5x5 64, 1x1-3x3-3x3 96, pool 32 | 256       | 25      |
//! | `mixed_5c`      | A, pool 64                                   | 288         | 25      |
//! | `mixed_5d`      | A, pool 64                                   | 288         | 25      |
//! | `mixed_6a`      | B: 3x3/2 384, 1x1-3x3-3x3/2 96, max pool     | 768         | 12      |
//! | `mixed_6b`..`e` | C: 1x1 192, 1x7-7x1 192, 7x1-1x7 x2 192, pool 192 (c7 = 128, 160, 160, 192) | 768 | 12 |
//! | `mixed_7a`      | D: 1x1-3x3/2 320, 1x1-1x7-7x1-3x3/2 192, max pool | 1280   | 5       |
//! | `mixed_7b`      | E: 1x1 320, 1x1-(1x3‖3x1) 768, 1x1-3x3-(1x3‖3x1) 768, pool 192 | 2048 | 5 |
//! | `mixed_7c`      | E                                            | 2048        | 5       |
//! | (pool)          | global average                               | 2048        | 1       |
//! | `head`          | FC(1024) → ReLU → Dropout → FC(10)           | 10          |         |
//!
//! torchvision's own `dropout` and `fc` (1000 classes) are not part of this network; the
//! import keeps that fc aside for checking ([`super::torchvision::Imported`]). The `tiny`
//! preset divides every width by 8.

use super::{global_avg_pool, ConvBn, ConvBnConfig, Embeddings, Head, HeadConfig, SizePreset};
use crate::onnx::graph::{Graph, Value};
use crate::onnx::layers;
use anyhow::Result;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;

/// torchvision's BasicConv2d BatchNorm epsilon.
const BN_EPS: f64 = 0.001;

/// Widths and head of an [`InceptionV3`].
#[derive(Clone, Debug, PartialEq)]
pub struct InceptionV3Config {
    /// Every torchvision width is divided by this (1 = torchvision).
    pub width_div: usize,
    pub head_dropout: f64,
}

impl InceptionV3Config {
    /// torchvision's widths: 21.8 M backbone parameters, 2048 pooled features.
    pub fn paper() -> Self {
        Self { width_div: 1, head_dropout: 0.5 }
    }

    /// Every width / 8.
    pub fn tiny() -> Self {
        Self { width_div: 8, head_dropout: 0.5 }
    }

    pub fn preset(preset: SizePreset) -> Self {
        match preset {
            SizePreset::Paper => Self::paper(),
            SizePreset::Tiny => Self::tiny(),
        }
    }

    fn w(&self, torchvision_width: usize) -> usize {
        torchvision_width / self.width_div
    }

    /// Width of the pooled features fed to the head.
    pub fn pooled_dim(&self) -> usize {
        self.w(2048)
    }

    pub fn init(&self, device: &Device) -> InceptionV3 {
        let w = |n| self.w(n);
        let conv = |c_in, c_out, k| ConvBnConfig::new(c_in, c_out, k, BN_EPS);
        let maxpool = || MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init();
        InceptionV3 {
            conv2d_1a_3x3: conv(3, w(32), 3).stride(2).init(device),
            conv2d_2a_3x3: conv(w(32), w(32), 3).init(device),
            conv2d_2b_3x3: conv(w(32), w(64), 3).same().init(device),
            maxpool1: maxpool(),
            conv2d_3b_1x1: conv(w(64), w(80), 1).init(device),
            conv2d_4a_3x3: conv(w(80), w(192), 3).init(device),
            maxpool2: maxpool(),
            mixed_5b: InceptionA::new(self, w(192), w(32), device),
            mixed_5c: InceptionA::new(self, w(256), w(64), device),
            mixed_5d: InceptionA::new(self, w(288), w(64), device),
            mixed_6a: InceptionB::new(self, w(288), device),
            mixed_6b: InceptionC::new(self, w(768), w(128), device),
            mixed_6c: InceptionC::new(self, w(768), w(160), device),
            mixed_6d: InceptionC::new(self, w(768), w(160), device),
            mixed_6e: InceptionC::new(self, w(768), w(192), device),
            mixed_7a: InceptionD::new(self, w(768), device),
            mixed_7b: InceptionE::new(self, w(1280), device),
            mixed_7c: InceptionE::new(self, w(2048), device),
            head: HeadConfig::new(self.pooled_dim()).with_dropout(self.head_dropout).init(device),
        }
    }
}

/// InceptionV3 backbone + Dense block. Input `[batch, 3, h, w]`, ImageNet-normalised RGB.
#[derive(Module, Debug)]
pub struct InceptionV3 {
    pub conv2d_1a_3x3: ConvBn,
    pub conv2d_2a_3x3: ConvBn,
    pub conv2d_2b_3x3: ConvBn,
    pub maxpool1: MaxPool2d,
    pub conv2d_3b_1x1: ConvBn,
    pub conv2d_4a_3x3: ConvBn,
    pub maxpool2: MaxPool2d,
    pub mixed_5b: InceptionA,
    pub mixed_5c: InceptionA,
    pub mixed_5d: InceptionA,
    pub mixed_6a: InceptionB,
    pub mixed_6b: InceptionC,
    pub mixed_6c: InceptionC,
    pub mixed_6d: InceptionC,
    pub mixed_6e: InceptionC,
    pub mixed_7a: InceptionD,
    pub mixed_7b: InceptionE,
    pub mixed_7c: InceptionE,
    pub head: Head,
}

impl InceptionV3 {
    /// The globally pooled backbone features, `[batch, 2048]` (torchvision's fc input).
    pub fn forward_pooled(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.conv2d_1a_3x3.forward(x);
        let x = self.conv2d_2a_3x3.forward(x);
        let x = self.conv2d_2b_3x3.forward(x);
        let x = self.maxpool1.forward(x);
        let x = self.conv2d_3b_1x1.forward(x);
        let x = self.conv2d_4a_3x3.forward(x);
        let x = self.maxpool2.forward(x);
        let x = self.mixed_5b.forward(x);
        let x = self.mixed_5c.forward(x);
        let x = self.mixed_5d.forward(x);
        let x = self.mixed_6a.forward(x);
        let x = self.mixed_6b.forward(x);
        let x = self.mixed_6c.forward(x);
        let x = self.mixed_6d.forward(x);
        let x = self.mixed_6e.forward(x);
        let x = self.mixed_7a.forward(x);
        let x = self.mixed_7b.forward(x);
        let x = self.mixed_7c.forward(x);
        global_avg_pool(x)
    }

    /// Both embeddings: FC(1024) activations and FC(10) logits.
    pub fn forward(&self, x: Tensor<4>) -> Embeddings {
        self.head.forward(self.forward_pooled(x))
    }

    /// ONNX of [`Self::forward`], field by field in torchvision's order: `x` `[N, 3, H, W]` →
    /// (fc1024, logits).
    pub fn emit(&self, g: &mut Graph, x: &str) -> Result<(Value, Value)> {
        let x = self.conv2d_1a_3x3.emit(g, "conv2d_1a_3x3", x)?;
        let x = self.conv2d_2a_3x3.emit(g, "conv2d_2a_3x3", &x)?;
        let x = self.conv2d_2b_3x3.emit(g, "conv2d_2b_3x3", &x)?;
        let x = layers::max_pool2d(g, "maxpool1", &x, &self.maxpool1)?;
        let x = self.conv2d_3b_1x1.emit(g, "conv2d_3b_1x1", &x)?;
        let x = self.conv2d_4a_3x3.emit(g, "conv2d_4a_3x3", &x)?;
        let x = layers::max_pool2d(g, "maxpool2", &x, &self.maxpool2)?;
        let x = self.mixed_5b.emit(g, "mixed_5b", &x)?;
        let x = self.mixed_5c.emit(g, "mixed_5c", &x)?;
        let x = self.mixed_5d.emit(g, "mixed_5d", &x)?;
        let x = self.mixed_6a.emit(g, "mixed_6a", &x)?;
        let x = self.mixed_6b.emit(g, "mixed_6b", &x)?;
        let x = self.mixed_6c.emit(g, "mixed_6c", &x)?;
        let x = self.mixed_6d.emit(g, "mixed_6d", &x)?;
        let x = self.mixed_6e.emit(g, "mixed_6e", &x)?;
        let x = self.mixed_7a.emit(g, "mixed_7a", &x)?;
        let x = self.mixed_7b.emit(g, "mixed_7b", &x)?;
        let x = self.mixed_7c.emit(g, "mixed_7c", &x)?;
        let pooled = layers::global_avg_pool(g, "avgpool", &x);
        Ok(self.head.emit(g, "head", &pooled))
    }
}

/// torchvision's `F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)` (padding counted).
fn avg_pool_3x3(x: Tensor<4>) -> Tensor<4> {
    let options = AvgPoolOptions::new([3, 3])
        .with_stride([1, 1])
        .with_padding_pairs([(1, 1), (1, 1)])
        .with_count_include_pad(true);
    avg_pool2d(x, options)
}

/// torchvision's `F.max_pool2d(x, kernel_size=3, stride=2)`.
fn max_pool_3x3_s2(x: Tensor<4>) -> Tensor<4> {
    MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init().forward(x)
}

/// ONNX of `branch_pool(avg_pool_3x3(x))` ([`ConvBn::emit_after_pool`]).
fn emit_pool_branch_3x3(g: &mut Graph, n: &str, x: &str, m: &ConvBn) -> Result<Value> {
    let pool =
        |g: &mut Graph, name: &str, x: &str| Ok(layers::avg_pool(g, name, x, [3, 3], [1, 1], [1, 1, 1, 1], true));
    m.emit_after_pool(g, &format!("{n}.avg_pool"), &format!("{n}.branch_pool"), x, pool)
}

/// ONNX of [`max_pool_3x3_s2`].
fn emit_max_pool_3x3_s2(g: &mut Graph, name: &str, x: &str) -> Value {
    layers::max_pool(g, name, x, [3, 3], [2, 2], [0; 4])
}

fn conv(c_in: usize, c_out: usize, k: usize) -> ConvBnConfig {
    ConvBnConfig::new(c_in, c_out, k, BN_EPS)
}

/// Mixed_5b/c/d: 1x1 ‖ 1x1→5x5 ‖ 1x1→3x3→3x3 ‖ avgpool→1x1.
#[derive(Module, Debug)]
pub struct InceptionA {
    pub branch1x1: ConvBn,
    pub branch5x5_1: ConvBn,
    pub branch5x5_2: ConvBn,
    pub branch3x3dbl_1: ConvBn,
    pub branch3x3dbl_2: ConvBn,
    pub branch3x3dbl_3: ConvBn,
    pub branch_pool: ConvBn,
}

impl InceptionA {
    fn new(cfg: &InceptionV3Config, c_in: usize, pool: usize, device: &Device) -> Self {
        let w = |n| cfg.w(n);
        Self {
            branch1x1: conv(c_in, w(64), 1).init(device),
            branch5x5_1: conv(c_in, w(48), 1).init(device),
            branch5x5_2: conv(w(48), w(64), 5).same().init(device),
            branch3x3dbl_1: conv(c_in, w(64), 1).init(device),
            branch3x3dbl_2: conv(w(64), w(96), 3).same().init(device),
            branch3x3dbl_3: conv(w(96), w(96), 3).same().init(device),
            branch_pool: conv(c_in, pool, 1).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b5 = self.branch5x5_2.forward(self.branch5x5_1.forward(x.clone()));
        let b3 = self.branch3x3dbl_1.forward(x.clone());
        let b3 = self.branch3x3dbl_3.forward(self.branch3x3dbl_2.forward(b3));
        let bp = self.branch_pool.forward(avg_pool_3x3(x));
        Tensor::cat(vec![b1, b5, b3, bp], 1)
    }

    /// ONNX of [`Self::forward`], the nodes named `{n}.<field>`.
    pub fn emit(&self, g: &mut Graph, n: &str, x: &str) -> Result<Value> {
        let b1 = self.branch1x1.emit(g, &format!("{n}.branch1x1"), x)?;
        let b5 = self.branch5x5_1.emit(g, &format!("{n}.branch5x5_1"), x)?;
        let b5 = self.branch5x5_2.emit(g, &format!("{n}.branch5x5_2"), &b5)?;
        let b3 = self.branch3x3dbl_1.emit(g, &format!("{n}.branch3x3dbl_1"), x)?;
        let b3 = self.branch3x3dbl_2.emit(g, &format!("{n}.branch3x3dbl_2"), &b3)?;
        let b3 = self.branch3x3dbl_3.emit(g, &format!("{n}.branch3x3dbl_3"), &b3)?;
        let bp = emit_pool_branch_3x3(g, n, x, &self.branch_pool)?;
        Ok(layers::concat(g, &format!("{n}.cat"), &[&b1, &b5, &b3, &bp], 1))
    }
}

/// Mixed_6a (grid reduction): 3x3/2 ‖ 1x1→3x3→3x3/2 ‖ maxpool/2.
#[derive(Module, Debug)]
pub struct InceptionB {
    pub branch3x3: ConvBn,
    pub branch3x3dbl_1: ConvBn,
    pub branch3x3dbl_2: ConvBn,
    pub branch3x3dbl_3: ConvBn,
}

impl InceptionB {
    fn new(cfg: &InceptionV3Config, c_in: usize, device: &Device) -> Self {
        let w = |n| cfg.w(n);
        Self {
            branch3x3: conv(c_in, w(384), 3).stride(2).init(device),
            branch3x3dbl_1: conv(c_in, w(64), 1).init(device),
            branch3x3dbl_2: conv(w(64), w(96), 3).same().init(device),
            branch3x3dbl_3: conv(w(96), w(96), 3).stride(2).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self.branch3x3.forward(x.clone());
        let bd = self.branch3x3dbl_1.forward(x.clone());
        let bd = self.branch3x3dbl_3.forward(self.branch3x3dbl_2.forward(bd));
        Tensor::cat(vec![b3, bd, max_pool_3x3_s2(x)], 1)
    }

    /// ONNX of [`Self::forward`], the nodes named `{n}.<field>`.
    pub fn emit(&self, g: &mut Graph, n: &str, x: &str) -> Result<Value> {
        let b3 = self.branch3x3.emit(g, &format!("{n}.branch3x3"), x)?;
        let bd = self.branch3x3dbl_1.emit(g, &format!("{n}.branch3x3dbl_1"), x)?;
        let bd = self.branch3x3dbl_2.emit(g, &format!("{n}.branch3x3dbl_2"), &bd)?;
        let bd = self.branch3x3dbl_3.emit(g, &format!("{n}.branch3x3dbl_3"), &bd)?;
        let bp = emit_max_pool_3x3_s2(g, &format!("{n}.max_pool"), x);
        Ok(layers::concat(g, &format!("{n}.cat"), &[&b3, &bd, &bp], 1))
    }
}

/// Mixed_6b..e: 1x1 ‖ 1x1→1x7→7x1 ‖ 1x1→7x1→1x7→7x1→1x7 ‖ avgpool→1x1.
#[derive(Module, Debug)]
pub struct InceptionC {
    pub branch1x1: ConvBn,
    pub branch7x7_1: ConvBn,
    pub branch7x7_2: ConvBn,
    pub branch7x7_3: ConvBn,
    pub branch7x7dbl_1: ConvBn,
    pub branch7x7dbl_2: ConvBn,
    pub branch7x7dbl_3: ConvBn,
    pub branch7x7dbl_4: ConvBn,
    pub branch7x7dbl_5: ConvBn,
    pub branch_pool: ConvBn,
}

impl InceptionC {
    fn new(cfg: &InceptionV3Config, c_in: usize, c7: usize, device: &Device) -> Self {
        let c192 = cfg.w(192);
        let row = |a, b| conv(a, b, 1).kernel([1, 7]).same().init(device);
        let col = |a, b| conv(a, b, 1).kernel([7, 1]).same().init(device);
        Self {
            branch1x1: conv(c_in, c192, 1).init(device),
            branch7x7_1: conv(c_in, c7, 1).init(device),
            branch7x7_2: row(c7, c7),
            branch7x7_3: col(c7, c192),
            branch7x7dbl_1: conv(c_in, c7, 1).init(device),
            branch7x7dbl_2: col(c7, c7),
            branch7x7dbl_3: row(c7, c7),
            branch7x7dbl_4: col(c7, c7),
            branch7x7dbl_5: row(c7, c192),
            branch_pool: conv(c_in, c192, 1).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b7 = self.branch7x7_1.forward(x.clone());
        let b7 = self.branch7x7_3.forward(self.branch7x7_2.forward(b7));
        let bd = self.branch7x7dbl_1.forward(x.clone());
        let bd = self.branch7x7dbl_3.forward(self.branch7x7dbl_2.forward(bd));
        let bd = self.branch7x7dbl_5.forward(self.branch7x7dbl_4.forward(bd));
        let bp = self.branch_pool.forward(avg_pool_3x3(x));
        Tensor::cat(vec![b1, b7, bd, bp], 1)
    }

    /// ONNX of [`Self::forward`], the nodes named `{n}.<field>`.
    pub fn emit(&self, g: &mut Graph, n: &str, x: &str) -> Result<Value> {
        let b1 = self.branch1x1.emit(g, &format!("{n}.branch1x1"), x)?;
        let b7 = self.branch7x7_1.emit(g, &format!("{n}.branch7x7_1"), x)?;
        let b7 = self.branch7x7_2.emit(g, &format!("{n}.branch7x7_2"), &b7)?;
        let b7 = self.branch7x7_3.emit(g, &format!("{n}.branch7x7_3"), &b7)?;
        let bd = self.branch7x7dbl_1.emit(g, &format!("{n}.branch7x7dbl_1"), x)?;
        let bd = self.branch7x7dbl_2.emit(g, &format!("{n}.branch7x7dbl_2"), &bd)?;
        let bd = self.branch7x7dbl_3.emit(g, &format!("{n}.branch7x7dbl_3"), &bd)?;
        let bd = self.branch7x7dbl_4.emit(g, &format!("{n}.branch7x7dbl_4"), &bd)?;
        let bd = self.branch7x7dbl_5.emit(g, &format!("{n}.branch7x7dbl_5"), &bd)?;
        let bp = emit_pool_branch_3x3(g, n, x, &self.branch_pool)?;
        Ok(layers::concat(g, &format!("{n}.cat"), &[&b1, &b7, &bd, &bp], 1))
    }
}

/// Mixed_7a (grid reduction): 1x1→3x3/2 ‖ 1x1→1x7→7x1→3x3/2 ‖ maxpool/2.
#[derive(Module, Debug)]
pub struct InceptionD {
    pub branch3x3_1: ConvBn,
    pub branch3x3_2: ConvBn,
    pub branch7x7x3_1: ConvBn,
    pub branch7x7x3_2: ConvBn,
    pub branch7x7x3_3: ConvBn,
    pub branch7x7x3_4: ConvBn,
}

impl InceptionD {
    fn new(cfg: &InceptionV3Config, c_in: usize, device: &Device) -> Self {
        let (c192, c320) = (cfg.w(192), cfg.w(320));
        Self {
            branch3x3_1: conv(c_in, c192, 1).init(device),
            branch3x3_2: conv(c192, c320, 3).stride(2).init(device),
            branch7x7x3_1: conv(c_in, c192, 1).init(device),
            branch7x7x3_2: conv(c192, c192, 1).kernel([1, 7]).same().init(device),
            branch7x7x3_3: conv(c192, c192, 1).kernel([7, 1]).same().init(device),
            branch7x7x3_4: conv(c192, c192, 3).stride(2).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self.branch3x3_2.forward(self.branch3x3_1.forward(x.clone()));
        let b7 = self.branch7x7x3_1.forward(x.clone());
        let b7 = self.branch7x7x3_2.forward(b7);
        let b7 = self.branch7x7x3_4.forward(self.branch7x7x3_3.forward(b7));
        Tensor::cat(vec![b3, b7, max_pool_3x3_s2(x)], 1)
    }

    /// ONNX of [`Self::forward`], the nodes named `{n}.<field>`.
    pub fn emit(&self, g: &mut Graph, n: &str, x: &str) -> Result<Value> {
        let b3 = self.branch3x3_1.emit(g, &format!("{n}.branch3x3_1"), x)?;
        let b3 = self.branch3x3_2.emit(g, &format!("{n}.branch3x3_2"), &b3)?;
        let b7 = self.branch7x7x3_1.emit(g, &format!("{n}.branch7x7x3_1"), x)?;
        let b7 = self.branch7x7x3_2.emit(g, &format!("{n}.branch7x7x3_2"), &b7)?;
        let b7 = self.branch7x7x3_3.emit(g, &format!("{n}.branch7x7x3_3"), &b7)?;
        let b7 = self.branch7x7x3_4.emit(g, &format!("{n}.branch7x7x3_4"), &b7)?;
        let bp = emit_max_pool_3x3_s2(g, &format!("{n}.max_pool"), x);
        Ok(layers::concat(g, &format!("{n}.cat"), &[&b3, &b7, &bp], 1))
    }
}

/// Mixed_7b/c: 1x1 ‖ 1x1→(1x3 ‖ 3x1) ‖ 1x1→3x3→(1x3 ‖ 3x1) ‖ avgpool→1x1.
#[derive(Module, Debug)]
pub struct InceptionE {
    pub branch1x1: ConvBn,
    pub branch3x3_1: ConvBn,
    pub branch3x3_2a: ConvBn,
    pub branch3x3_2b: ConvBn,
    pub branch3x3dbl_1: ConvBn,
    pub branch3x3dbl_2: ConvBn,
    pub branch3x3dbl_3a: ConvBn,
    pub branch3x3dbl_3b: ConvBn,
    pub branch_pool: ConvBn,
}

impl InceptionE {
    fn new(cfg: &InceptionV3Config, c_in: usize, device: &Device) -> Self {
        let w = |n| cfg.w(n);
        let c384 = w(384);
        let row = |a, b| conv(a, b, 1).kernel([1, 3]).same().init(device);
        let col = |a, b| conv(a, b, 1).kernel([3, 1]).same().init(device);
        Self {
            branch1x1: conv(c_in, w(320), 1).init(device),
            branch3x3_1: conv(c_in, c384, 1).init(device),
            branch3x3_2a: row(c384, c384),
            branch3x3_2b: col(c384, c384),
            branch3x3dbl_1: conv(c_in, w(448), 1).init(device),
            branch3x3dbl_2: conv(w(448), c384, 3).same().init(device),
            branch3x3dbl_3a: row(c384, c384),
            branch3x3dbl_3b: col(c384, c384),
            branch_pool: conv(c_in, w(192), 1).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b3 = self.branch3x3_1.forward(x.clone());
        let b3 = Tensor::cat(vec![self.branch3x3_2a.forward(b3.clone()), self.branch3x3_2b.forward(b3)], 1);
        let bd = self.branch3x3dbl_1.forward(x.clone());
        let bd = self.branch3x3dbl_2.forward(bd);
        let bd = Tensor::cat(vec![self.branch3x3dbl_3a.forward(bd.clone()), self.branch3x3dbl_3b.forward(bd)], 1);
        let bp = self.branch_pool.forward(avg_pool_3x3(x));
        Tensor::cat(vec![b1, b3, bd, bp], 1)
    }

    /// ONNX of [`Self::forward`], the nodes named `{n}.<field>`.
    pub fn emit(&self, g: &mut Graph, n: &str, x: &str) -> Result<Value> {
        let b1 = self.branch1x1.emit(g, &format!("{n}.branch1x1"), x)?;
        let b3 = self.branch3x3_1.emit(g, &format!("{n}.branch3x3_1"), x)?;
        let b3a = self.branch3x3_2a.emit(g, &format!("{n}.branch3x3_2a"), &b3)?;
        let b3b = self.branch3x3_2b.emit(g, &format!("{n}.branch3x3_2b"), &b3)?;
        let bd = self.branch3x3dbl_1.emit(g, &format!("{n}.branch3x3dbl_1"), x)?;
        let bd = self.branch3x3dbl_2.emit(g, &format!("{n}.branch3x3dbl_2"), &bd)?;
        let bda = self.branch3x3dbl_3a.emit(g, &format!("{n}.branch3x3dbl_3a"), &bd)?;
        let bdb = self.branch3x3dbl_3b.emit(g, &format!("{n}.branch3x3dbl_3b"), &bd)?;
        let bp = emit_pool_branch_3x3(g, n, x, &self.branch_pool)?;
        Ok(layers::concat(g, &format!("{n}.cat"), &[&b1, &b3a, &b3b, &bda, &bdb, &bp], 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::{trainable_params, EMBED_DIM, NUM_CLASSES};
    use burn::tensor::Distribution;

    fn check(cfg: InceptionV3Config) -> usize {
        let device = Device::flex();
        let net = cfg.init(&device);
        let x = Tensor::<4>::random([2, 3, 224, 224], Distribution::Default, &device);
        let pooled = net.forward_pooled(x.clone());
        assert_eq!(pooled.dims(), [2, cfg.pooled_dim()]);
        let e = net.head.forward(pooled);
        assert_eq!(e.fc1024.dims(), [2, EMBED_DIM]);
        assert_eq!(e.logits.dims(), [2, NUM_CLASSES]);
        let n = trainable_params(&net);
        println!("InceptionV3 {cfg:?}: {n} trainable parameters");
        n
    }

    #[test]
    fn paper_shapes_and_size() {
        let n = check(InceptionV3Config::paper());
        // torchvision's 21 785 568 without fc, plus FC(2048→1024) and FC(1024→10).
        assert_eq!(n, 21_785_568 + 2048 * 1024 + 1024 + 1024 * 10 + 10);
    }

    #[test]
    fn tiny_shapes_and_size() {
        let n = check(InceptionV3Config::tiny());
        assert!(n < 1_000_000, "{n}");
    }
}
