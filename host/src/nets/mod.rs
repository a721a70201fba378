//! The Phase-I networks of the paper (Section II-A, Figures 2 and 3), in burn.
//!
//! | file                | network                          | input (paper preset) | pooled |
//! |---------------------|----------------------------------|----------------------|--------|
//! | [`resinception`]    | residual-inception audio CNN     | 6 x 128 x 305        | 1024   |
//! | [`inception_v3`]    | torchvision InceptionV3 backbone | 3 x 224 x 224        | 2048   |
//! | [`convnext_tiny`]   | torchvision ConvNeXt-Tiny        | 3 x 224 x 224        | 768    |
//!
//! Every network ends in the same [`Head`] — FC(1024) → ReLU → Dropout → FC(10) — and returns
//! both embeddings the paper fuses in Phase II as [`Embeddings`]. [`torchvision`] imports
//! ImageNet checkpoints into the two visual backbones.
//!
//! Each network has a `paper` preset (the published widths) and a `tiny` one (same topology,
//! narrow widths, for CPU tests and the demo). Train / eval follows burn: BatchNorm uses batch
//! statistics and dropout is active only on an autodiff device with the module in training
//! mode (`module.valid()` gives the eval copy).
//!
//! One definition per network: each layer and block writes its ONNX (`emit`, eval mode)
//! beside its `forward`, from the same fields, with the op vocabulary of [`crate::onnx`]; the
//! export ([`crate::export`]) only wraps a network's `emit` into a file, and its parity tests
//! hold the two walks equal (burn vs tract, tiny and paper widths).

pub mod convnext_tiny;
pub mod inception_v3;
pub mod matmul;
pub mod resinception;
pub mod torchvision;

use crate::onnx::graph::{Graph, Value};
use crate::onnx::layers::{self, ConvWeights};
use anyhow::{Context, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::nn::{PaddingConfig2d, Relu};
use burn::prelude::*;
use std::path::Path;
use std::str::FromStr;

/// Width of the first dense layer: the "FC(1024)" embedding of Figures 1-3.
pub const EMBED_DIM: usize = 1024;
/// Number of scene classes (DCASE 2021 Task 1B): the "FC(10)" logits.
pub const NUM_CLASSES: usize = 10;

/// Which widths a network is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SizePreset {
    /// The published widths (about 12 M parameters per audio model).
    Paper,
    /// Same topology, narrow: for CPU tests and the demo.
    Tiny,
}

impl FromStr for SizePreset {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "paper" => Ok(Self::Paper),
            "tiny" => Ok(Self::Tiny),
            other => anyhow::bail!("unknown size preset {other:?} (expected \"paper\" or \"tiny\")"),
        }
    }
}

impl std::fmt::Display for SizePreset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Paper => "paper",
            Self::Tiny => "tiny",
        })
    }
}

/// The two embeddings of one forward pass (Section II-A, last paragraph).
#[derive(Clone, Debug)]
pub struct Embeddings {
    /// FC(1024) activations after its ReLU, `[batch, 1024]`.
    pub fc1024: Tensor<2>,
    /// FC(10) outputs before softmax, `[batch, 10]`.
    pub logits: Tensor<2>,
}

/// The Dense block of Figures 2 and 3: FC(`embed_dim`) → ReLU → Dropout → FC(`num_classes`).
#[derive(Config, Debug)]
pub struct HeadConfig {
    /// Width of the pooled features fed in.
    pub d_in: usize,
    #[config(default = "EMBED_DIM")]
    pub embed_dim: usize,
    #[config(default = "NUM_CLASSES")]
    pub num_classes: usize,
    #[config(default = 0.5)]
    pub dropout: f64,
}

/// See [`HeadConfig`].
#[derive(Module, Debug)]
pub struct Head {
    pub fc1: Linear,
    pub relu: Relu,
    pub dropout: Dropout,
    pub fc2: Linear,
}

impl HeadConfig {
    pub fn init(&self, device: &Device) -> Head {
        Head {
            fc1: LinearConfig::new(self.d_in, self.embed_dim).init(device),
            relu: Relu::new(),
            dropout: DropoutConfig::new(self.dropout).init(),
            fc2: LinearConfig::new(self.embed_dim, self.num_classes).init(device),
        }
    }
}

impl Head {
    /// `[batch, d_in]` pooled features → both embeddings.
    pub fn forward(&self, pooled: Tensor<2>) -> Embeddings {
        let fc1024 = self.relu.forward(self.fc1.forward(pooled));
        let logits = self.fc2.forward(self.dropout.forward(fc1024.clone()));
        Embeddings { fc1024, logits }
    }

    /// ONNX of [`Self::forward`] (dropout is the identity); returns (fc1024, logits).
    pub fn emit(&self, g: &mut Graph, name: &str, x: &str) -> (Value, Value) {
        let h = layers::linear(g, &format!("{name}.fc1"), x, &self.fc1);
        let fc1024 = layers::relu(g, &format!("{name}.relu"), &h);
        let logits = layers::linear(g, &format!("{name}.fc2"), &fc1024, &self.fc2);
        (fc1024, logits)
    }
}

/// Conv (no bias) → BatchNorm → optional ReLU: torchvision's `BasicConv2d` (fields `conv`, `bn`)
/// and the unit the residual-inception blocks are built from.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub relu: bool,
}

/// Builder for [`ConvBn`]; padding is symmetric `[rows, cols]`.
#[derive(Clone, Copy, Debug)]
pub struct ConvBnConfig {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub bn_eps: f64,
    pub relu: bool,
}

impl ConvBnConfig {
    /// A square `k`x`k` conv, stride 1, no padding, ReLU, BatchNorm eps `bn_eps`.
    pub fn new(c_in: usize, c_out: usize, k: usize, bn_eps: f64) -> Self {
        Self { c_in, c_out, kernel: [k, k], stride: [1, 1], padding: [0, 0], bn_eps, relu: true }
    }
    /// A rectangular kernel (InceptionV3's factorised 1x7 / 7x1 / 1x3 / 3x1 convs).
    pub fn kernel(self, kernel: [usize; 2]) -> Self {
        Self { kernel, ..self }
    }
    pub fn stride(self, s: usize) -> Self {
        Self { stride: [s, s], ..self }
    }
    pub fn padding(self, padding: [usize; 2]) -> Self {
        Self { padding, ..self }
    }
    /// Same-size output for odd kernels at stride 1.
    pub fn same(self) -> Self {
        self.padding([self.kernel[0] / 2, self.kernel[1] / 2])
    }
    pub fn no_relu(self) -> Self {
        Self { relu: false, ..self }
    }

    pub fn init(&self, device: &Device) -> ConvBn {
        let [ph, pw] = self.padding;
        ConvBn {
            conv: Conv2dConfig::new([self.c_in, self.c_out], self.kernel)
                .with_stride(self.stride)
                .with_padding(PaddingConfig2d::Explicit(ph, pw, ph, pw))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(self.c_out).with_epsilon(self.bn_eps).init(device),
            relu: self.relu,
        }
    }
}

impl ConvBn {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_with(x, |y| y)
    }

    /// ONNX of [`Self::forward`]: the conv with the BatchNorm folded in, then ReLU if the
    /// layer has one.
    pub fn emit(&self, g: &mut Graph, name: &str, x: &str) -> Result<Value> {
        let y = layers::conv(g, &format!("{name}.conv"), x, &self.folded()?);
        Ok(if self.relu { layers::relu(g, &format!("{name}.relu"), &y) } else { y })
    }

    /// The conv's weights with the BatchNorm folded in.
    fn folded(&self) -> Result<ConvWeights> {
        let mut cw = ConvWeights::from_conv(&self.conv)?;
        cw.fold_bn(&self.bn);
        Ok(cw)
    }

    /// `between` applied to the conv's output, before the BatchNorm. For a pointwise conv and a
    /// per-channel linear `between` (an average pool) this is `forward(between(x))`: the conv
    /// has no bias, so the two commute ([`Self::emit_after_pool`] is the same in ONNX).
    pub fn forward_with(&self, x: Tensor<4>, between: impl FnOnce(Tensor<4>) -> Tensor<4>) -> Tensor<4> {
        self.after_conv(between(self.conv.forward(x)))
    }

    /// ONNX of an inception pool branch, `self.forward(pool(x))`, the pool named `pool_name`.
    /// When the conv is pointwise (1x1, stride 1, no padding) it is emitted in the other order:
    /// the conv without its bias, the pool on the conv's outputs, then the bias (and ReLU).
    /// Both are linear and they commute: the pool mixes positions within a channel, the conv
    /// channels within a position, and the bias is added after the pool so that a zero-padded
    /// border does not average it down. The pool then reads the branch's few outputs rather
    /// than the block's many inputs (2-10x fewer channels; the pool was 13 % of Aud-MEL's time
    /// in tract), and an int8 conv reads the uint8 block input that the other branches share
    /// instead of quantizing the pool's output.
    pub fn emit_after_pool(
        &self,
        g: &mut Graph,
        pool_name: &str,
        name: &str,
        x: &str,
        pool: impl FnOnce(&mut Graph, &str, &str) -> Result<Value>,
    ) -> Result<Value> {
        let mut cw = self.folded()?;
        if !cw.is_pointwise() {
            let p = pool(g, pool_name, x)?;
            return self.emit(g, name, &p);
        }
        cw.b.iter_mut().for_each(|b| *b = 0.0);
        let y = layers::conv(g, &format!("{name}.conv"), x, &cw);
        self.finish_after_pool(g, pool_name, name, &y, pool)
    }

    /// Pointwise layers that read the same input `x`, as one Conv (their folded weights
    /// stacked) and one Slice of its output channels per layer, each with its ReLU. The layer
    /// at `pool_at` gets its conv output without bias: [`Self::finish_after_pool`] pools it
    /// and adds the bias (as [`Self::emit_after_pool`] does).
    pub fn emit_merged(g: &mut Graph, name: &str, x: &str, convs: &[&ConvBn], pool_at: usize) -> Result<Vec<Value>> {
        let mut parts = Vec::with_capacity(convs.len());
        for (i, c) in convs.iter().enumerate() {
            let mut cw = c.folded()?;
            anyhow::ensure!(cw.is_pointwise(), "{name}: layer {i} is not a pointwise conv");
            if i == pool_at {
                cw.b.iter_mut().for_each(|b| *b = 0.0);
            }
            parts.push(cw);
        }
        let mut merged = parts[0].clone();
        merged.dims[0] = parts.iter().map(|p| p.dims[0]).sum();
        merged.w = parts.iter().flat_map(|p| p.w.iter().copied()).collect();
        merged.b = parts.iter().flat_map(|p| p.b.iter().copied()).collect();
        let y = layers::conv(g, &format!("{name}.conv"), x, &merged);
        let axes = g.init_i64(&format!("{name}.axes"), &[1], &[1]);
        let mut start = 0i64;
        let mut outs = Vec::with_capacity(parts.len());
        for (i, (c, p)) in convs.iter().zip(&parts).enumerate() {
            let end = start + p.dims[0] as i64;
            let s = g.init_i64(&format!("{name}.{i}.start"), &[1], &[start]);
            let e = g.init_i64(&format!("{name}.{i}.end"), &[1], &[end]);
            let part = g.node("Slice", &format!("{name}.{i}"), &[&y, &s, &e, &axes], vec![]);
            outs.push(if c.relu && i != pool_at { layers::relu(g, &format!("{name}.{i}.relu"), &part) } else { part });
            start = end;
        }
        Ok(outs)
    }

    /// The rest of [`Self::emit_after_pool`] for a conv output `y` written without its bias
    /// (there, or by [`Self::emit_merged`]): the pool, the bias, the ReLU.
    pub fn finish_after_pool(
        &self,
        g: &mut Graph,
        pool_name: &str,
        name: &str,
        y: &str,
        pool: impl FnOnce(&mut Graph, &str, &str) -> Result<Value>,
    ) -> Result<Value> {
        let cw = self.folded()?;
        let p = pool(g, pool_name, y)?;
        let b = g.init_f32(&format!("{name}.bias"), &[cw.dims[0], 1, 1], &cw.b);
        let y = g.node("Add", &format!("{name}.biased"), &[&p, &b], vec![]);
        Ok(if self.relu { layers::relu(g, &format!("{name}.relu"), &y) } else { y })
    }

    /// BatchNorm (and ReLU) on this layer's convolution output, computed elsewhere
    /// ([`matmul`]).
    pub fn after_conv(&self, y: Tensor<4>) -> Tensor<4> {
        let y = self.bn.forward(y);
        if self.relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        }
    }
}

/// Global average pooling: `[batch, c, h, w]` → `[batch, c]`.
pub fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
}

/// 3x3 average pooling, stride 1, zero padding 1, the padding counted (`AvgPool2d`'s default
/// `count_include_pad`), as a separable box sum of shifted slices. Same values as the pooling
/// op, but its backward is a few slice-adds: burn-flex's avg-pool backward took 14 % of a
/// training step of the audio network.
pub fn box_avg3x3(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let p = x.pad([(1, 1), (1, 1)], burn::tensor::ops::PadMode::Constant(0.0));
    let cols = |d: usize| p.clone().slice([0..b, 0..c, 0..h + 2, d..d + w]);
    let rows = cols(0) + cols(1) + cols(2);
    let shift = |d: usize| rows.clone().slice([0..b, 0..c, d..d + h, 0..w]);
    (shift(0) + shift(1) + shift(2)).div_scalar(9.0)
}

/// Calls `f(element_count, read_values)` for every trainable float parameter (BatchNorm
/// running statistics and fixed input statistics are buffers and skipped); `read_values` copies the tensor out only
/// when called.
pub fn visit_trainable<M: Module>(module: &M, f: impl FnMut(usize, &dyn Fn() -> Vec<f32>)) {
    struct Visitor<F> {
        field: Vec<String>,
        f: F,
    }
    impl<F: FnMut(usize, &dyn Fn() -> Vec<f32>)> ModuleVisitor for Visitor<F> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.field.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.field.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let constant = ["running_mean", "running_var", "input_mean", "input_inv_std"];
            if self.field.last().is_some_and(|f| constant.contains(&f.as_str())) {
                return;
            }
            let read = || param.val().without_autodiff().into_data().try_to_vec().unwrap_or_default();
            (self.f)(param.lazy_shape().num_elements(), &read);
        }
    }
    module.visit(&mut Visitor { field: Vec::new(), f });
}

/// Number of trainable parameters.
pub fn trainable_params<M: Module>(module: &M) -> usize {
    let mut total = 0;
    visit_trainable(module, |n, _| total += n);
    total
}

/// Write `module`'s parameters to a burnpack file: to a temporary file beside `path`, then
/// renamed over it, so a crash never leaves a truncated model behind.
pub fn save_module<M: Module>(module: M, path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    module
        .save_file(&tmp)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("writing burn record {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("renaming {} to {}", tmp.display(), path.display())
    })
}

/// Load parameters written by [`save_module`] into `module` (built with the same preset).
pub fn load_module<M: Module>(module: M, path: &Path) -> Result<M> {
    module
        .try_load_file(path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading burn record {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_returns_both_embeddings() {
        let device = Device::flex();
        let head = HeadConfig::new(32).init(&device);
        let e = head.forward(Tensor::ones([2, 32], &device));
        assert_eq!(e.fc1024.dims(), [2, EMBED_DIM]);
        assert_eq!(e.logits.dims(), [2, NUM_CLASSES]);
        assert_eq!(trainable_params(&head), 32 * 1024 + 1024 + 1024 * 10 + 10);
    }

    #[test]
    fn save_then_load_round_trips() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head.bpk");
        let head = HeadConfig::new(8).init(&device);
        save_module(head.clone(), &path).unwrap();
        let fresh = load_module(HeadConfig::new(8).init(&device), &path).unwrap();
        let x = Tensor::<2>::ones([1, 8], &device);
        let (a, b) = (head.forward(x.clone()).logits, fresh.forward(x).logits);
        let diff: f32 = (a - b).abs().max().into_scalar();
        assert_eq!(diff, 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temp file left");
    }
}
