//! Emitters for the burn modules and tensor operations the networks are built from: each reads
//! the module's fields and weights and writes the equivalent ONNX nodes (eval mode: BatchNorm
//! with its running statistics, folded into the conv before it; dropout and stochastic depth
//! are identities). The networks' own layers emit themselves beside their forward pass
//! (`nets/`).

use super::graph::{attr_int, attr_ints, Graph, Value};
use anyhow::{bail, Result};
use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2d, MaxPool2d};
use burn::nn::{BatchNorm, LayerNorm, Linear, PaddingConfig2d};
use burn::prelude::*;

/// A tensor's values, row-major.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().expect("float tensor")
}

pub fn param<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f32> {
    values(p.val())
}

/// A conv's parameters as ONNX wants them, after any folding.
#[derive(Clone, Debug)]
pub struct ConvWeights {
    /// `[c_out, c_in / groups, kh, kw]`.
    pub dims: [usize; 4],
    pub w: Vec<f32>,
    /// `[c_out]`.
    pub b: Vec<f32>,
    pub stride: [usize; 2],
    /// ONNX order: top, left, bottom, right.
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl ConvWeights {
    pub fn from_conv(conv: &Conv2d) -> Result<ConvWeights> {
        let dims = conv.weight.val().dims();
        let b = conv.bias.as_ref().map(param).unwrap_or_else(|| vec![0.0; dims[0]]);
        Ok(ConvWeights {
            dims,
            w: param(&conv.weight),
            b,
            stride: conv.stride,
            pads: pads(&conv.padding)?,
            dilation: conv.dilation,
            groups: conv.groups,
        })
    }

    /// 1x1, stride 1, no padding, one group.
    pub fn is_pointwise(&self) -> bool {
        self.dims[2..] == [1, 1] && self.stride == [1, 1] && self.pads == [0; 4] && self.groups == 1
    }

    /// Fold an eval-mode BatchNorm after the conv into its weights and bias:
    /// `γ (W x + b − μ) / √(σ² + ε) + β`. Computed in f64.
    pub fn fold_bn(&mut self, bn: &BatchNorm) {
        let (gamma, beta) = (param(&bn.gamma), param(&bn.beta));
        let (mean, var) = (values(bn.running_mean.value()), values(bn.running_var.value()));
        let per_out = self.w.len() / self.dims[0];
        for o in 0..self.dims[0] {
            let s = gamma[o] as f64 / (var[o] as f64 + bn.epsilon).sqrt();
            for w in &mut self.w[o * per_out..(o + 1) * per_out] {
                *w = (*w as f64 * s) as f32;
            }
            self.b[o] = ((self.b[o] as f64 - mean[o] as f64) * s + beta[o] as f64) as f32;
        }
    }

    /// Multiply every output channel by `scale[o]` (a layer scale after the conv).
    pub fn scale_out(&mut self, scale: &[f32]) {
        let per_out = self.w.len() / self.dims[0];
        for (o, &s) in scale.iter().enumerate() {
            self.w[o * per_out..(o + 1) * per_out].iter_mut().for_each(|w| *w *= s);
            self.b[o] *= s;
        }
    }
}

/// burn padding → ONNX `pads` (top, left, bottom, right).
pub fn pads(p: &PaddingConfig2d) -> Result<[usize; 4]> {
    Ok(match *p {
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
        PaddingConfig2d::Same => bail!("'same' padding depends on the input size; use explicit padding"),
    })
}

fn usz(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

/// A Conv node with the given weights (quantized when the graph calibrates `x`).
pub fn conv(g: &mut Graph, name: &str, x: &str, cw: &ConvWeights) -> Value {
    if let Some(y) = crate::export::quant::conv(g, name, x, cw) {
        return y;
    }
    let w = g.init_f32(&format!("{name}.weight"), &cw.dims, &cw.w);
    let b = g.init_f32(&format!("{name}.bias"), &[cw.dims[0]], &cw.b);
    g.node("Conv", name, &[x, &w, &b], conv_attrs(cw))
}

pub fn conv_attrs(cw: &ConvWeights) -> Vec<tract_onnx::pb::AttributeProto> {
    vec![
        attr_ints("kernel_shape", &usz(&cw.dims[2..])),
        attr_ints("strides", &usz(&cw.stride)),
        attr_ints("pads", &usz(&[cw.pads[0], cw.pads[1], cw.pads[2], cw.pads[3]])),
        attr_ints("dilations", &usz(&cw.dilation)),
        attr_int("group", cw.groups as i64),
    ]
}

/// burn `Conv2d`.
pub fn conv2d(g: &mut Graph, name: &str, x: &str, m: &Conv2d) -> Result<Value> {
    Ok(conv(g, name, x, &ConvWeights::from_conv(m)?))
}

pub fn relu(g: &mut Graph, name: &str, x: &str) -> Value {
    g.node("Relu", name, &[x], vec![])
}

/// Exact GELU, `x · ½ (1 + erf(x / √2))` (burn's and torchvision's default).
pub fn gelu(g: &mut Graph, name: &str, x: &str) -> Value {
    let sqrt2 = g.scalar(&format!("{name}.sqrt2"), std::f32::consts::SQRT_2);
    let one = g.scalar(&format!("{name}.one"), 1.0);
    let half = g.scalar(&format!("{name}.half"), 0.5);
    let t = g.node("Div", &format!("{name}.div"), &[x, &sqrt2], vec![]);
    let t = g.node("Erf", &format!("{name}.erf"), &[&t], vec![]);
    let t = g.node("Add", &format!("{name}.add"), &[&t, &one], vec![]);
    let t = g.node("Mul", &format!("{name}.mul"), &[x, &t], vec![]);
    g.node("Mul", name, &[&t, &half], vec![])
}

/// MaxPool with explicit geometry.
pub fn max_pool(g: &mut Graph, name: &str, x: &str, kernel: [usize; 2], stride: [usize; 2], pads: [usize; 4]) -> Value {
    let attrs = vec![
        attr_ints("kernel_shape", &usz(&kernel)),
        attr_ints("strides", &usz(&stride)),
        attr_ints("pads", &usz(&pads)),
    ];
    g.node("MaxPool", name, &[x], attrs)
}

/// burn `MaxPool2d` (dilation 1, floor mode: what the networks use).
pub fn max_pool2d(g: &mut Graph, name: &str, x: &str, m: &MaxPool2d) -> Result<Value> {
    if m.dilation != [1, 1] || m.ceil_mode {
        bail!("{name}: max pooling with dilation or ceil mode is not exported");
    }
    Ok(max_pool(g, name, x, m.kernel_size, m.stride, pads(&m.padding)?))
}

/// AveragePool with explicit geometry.
pub fn avg_pool(
    g: &mut Graph,
    name: &str,
    x: &str,
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
    count_pad: bool,
) -> Value {
    let attrs = vec![
        attr_ints("kernel_shape", &usz(&kernel)),
        attr_ints("strides", &usz(&stride)),
        attr_ints("pads", &usz(&pads)),
        attr_int("count_include_pad", count_pad as i64),
    ];
    g.node("AveragePool", name, &[x], attrs)
}

/// burn `AvgPool2d` (floor mode).
pub fn avg_pool2d(g: &mut Graph, name: &str, x: &str, m: &AvgPool2d) -> Result<Value> {
    if m.ceil_mode {
        bail!("{name}: average pooling in ceil mode is not exported");
    }
    Ok(avg_pool(g, name, x, m.kernel_size, m.stride, pads(&m.padding)?, m.count_include_pad))
}

/// `[N, C, H, W]` → `[N, C]`.
pub fn global_avg_pool(g: &mut Graph, name: &str, x: &str) -> Value {
    let p = g.node("GlobalAveragePool", &format!("{name}.gap"), &[x], vec![]);
    g.node("Flatten", name, &[&p], vec![attr_int("axis", 1)])
}

pub fn concat(g: &mut Graph, name: &str, xs: &[&str], axis: i64) -> Value {
    g.node("Concat", name, xs, vec![attr_int("axis", axis)])
}

pub fn add(g: &mut Graph, name: &str, a: &str, b: &str) -> Value {
    g.node("Add", name, &[a, b], vec![])
}

/// A dense layer on `[N, d_in]` with weight `[d_in, d_out]` (burn's layout) and bias.
pub fn dense(g: &mut Graph, name: &str, x: &str, w: &[f32], dims: [usize; 2], b: Option<&[f32]>) -> Value {
    if let Some(y) = crate::export::quant::dense(g, name, x, w, dims, b) {
        return y;
    }
    let wv = g.init_f32(&format!("{name}.weight"), &dims, w);
    match b {
        Some(b) => {
            let bv = g.init_f32(&format!("{name}.bias"), &[dims[1]], b);
            g.node("Gemm", name, &[x, &wv, &bv], vec![])
        }
        None => g.node("MatMul", name, &[x, &wv], vec![]),
    }
}

/// burn `Linear` on `[N, d_in]`.
pub fn linear(g: &mut Graph, name: &str, x: &str, m: &Linear) -> Value {
    let dims = m.weight.val().dims();
    let b = m.bias.as_ref().map(param);
    dense(g, name, x, &param(&m.weight), dims, b.as_deref())
}

/// LayerNorm over axis 1 of `[N, C]` or `[N, C, H, W]` (torchvision's LayerNorm2d), written
/// out as ReduceMean / Sub / Mul / Sqrt / Div so one form serves both ranks without
/// transposes. burn's LayerNorm keeps `epsilon` private, so the caller passes it.
pub fn layer_norm(g: &mut Graph, name: &str, x: &str, m: &LayerNorm, eps: f32, rank: usize) -> Value {
    let gamma = param(&m.gamma);
    let c = gamma.len();
    let shape: Vec<usize> = if rank == 4 { vec![c, 1, 1] } else { vec![c] };
    let t = centre_and_scale(g, name, &format!("{name}.normed"), x, &[1], eps);
    let gv = g.init_f32(&format!("{name}.gamma"), &shape, &gamma);
    let t = g.node("Mul", &format!("{name}.scaled"), &[&t, &gv], vec![]);
    match &m.beta {
        Some(beta) => {
            let bv = g.init_f32(&format!("{name}.beta"), &shape, &param(beta));
            g.node("Add", name, &[&t, &bv], vec![])
        }
        None => t,
    }
}

/// Per example and channel standardisation over the spatial axes of `[N, C, H, W]`
/// (`nets::resinception::standardise`), as ReduceMean / Sub / Mul / Sqrt / Div.
pub fn standardise(g: &mut Graph, name: &str, x: &str, eps: f32) -> Value {
    centre_and_scale(g, name, name, x, &[2, 3], eps)
}

/// `(x − mean) / sqrt(var + ε)` over `axes` (kept), the result named `out`: the shared core
/// of [`layer_norm`] and [`standardise`].
fn centre_and_scale(g: &mut Graph, name: &str, out: &str, x: &str, axes: &[i64], eps: f32) -> Value {
    let axes = vec![attr_ints("axes", axes), attr_int("keepdims", 1)];
    let mean = g.node("ReduceMean", &format!("{name}.mean"), &[x], axes.clone());
    let d = g.node("Sub", &format!("{name}.centred"), &[x, &mean], vec![]);
    let sq = g.node("Mul", &format!("{name}.sq"), &[&d, &d], vec![]);
    let var = g.node("ReduceMean", &format!("{name}.var"), &[&sq], axes);
    let epsv = g.scalar(&format!("{name}.eps"), eps);
    let t = g.node("Add", &format!("{name}.var_eps"), &[&var, &epsv], vec![]);
    let t = g.node("Sqrt", &format!("{name}.std"), &[&t], vec![]);
    g.node("Div", out, &[&d, &t], vec![])
}

/// Softmax over the last axis.
pub fn softmax(g: &mut Graph, name: &str, x: &str) -> Value {
    g.node("Softmax", name, &[x], vec![attr_int("axis", -1)])
}
