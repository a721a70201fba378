//! ONNX export of [`ConvNextTiny`] (Vis-CONV).
//!
//! burn runs a CNBlock channels-last (permute, LayerNorm, Linear, Linear, permute back); the
//! export stays channels-first throughout, which is the same arithmetic: the LayerNorm over
//! channels is a reduction over axis 1, each pointwise Linear is a 1x1 conv (weight
//! transposed), and the layer scale is folded into the second one. No transposes in the
//! graph, and every matrix product is a Conv the int8 pass can quantize.

use super::graph::{Graph, Value};
use super::layers::{add, conv, conv2d, gelu, global_avg_pool, head, layer_norm, param, ConvWeights};
use crate::nets::convnext_tiny::{CnBlock, ConvNextTiny};
use anyhow::Result;
use burn::nn::Linear;

/// torchvision's LayerNorm eps (burn keeps a LayerNorm's epsilon private).
const LN_EPS: f32 = 1e-6;

/// `x` `[N, 3, H, W]` → (fc1024, logits).
pub fn emit(g: &mut Graph, net: &ConvNextTiny, x: &str) -> Result<(Value, Value)> {
    let x = conv2d(g, "stem.conv", x, &net.stem.conv)?;
    let mut x = layer_norm(g, "stem.norm", &x, &net.stem.norm, LN_EPS, 4);
    for (s, blocks) in net.stages.iter().enumerate() {
        if s > 0 {
            let d = &net.downsample[s - 1];
            let y = layer_norm(g, &format!("downsample.{}.norm", s - 1), &x, &d.norm, LN_EPS, 4);
            x = conv2d(g, &format!("downsample.{}.conv", s - 1), &y, &d.conv)?;
        }
        for (j, block) in blocks.iter().enumerate() {
            x = cn_block(g, &format!("stages.{s}.{j}"), &x, block)?;
        }
    }
    let pooled = global_avg_pool(g, "avgpool", &x);
    let normed = layer_norm(g, "head_norm", &pooled, &net.head_norm, LN_EPS, 2);
    Ok(head(g, "head", &normed, &net.head))
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

fn cn_block(g: &mut Graph, n: &str, x: &str, m: &CnBlock) -> Result<Value> {
    let y = conv2d(g, &format!("{n}.dwconv"), x, &m.dwconv)?;
    let y = layer_norm(g, &format!("{n}.norm"), &y, &m.norm, LN_EPS, 4);
    let y = conv(g, &format!("{n}.pwconv1"), &y, &pointwise(&m.pwconv1));
    let y = gelu(g, &format!("{n}.gelu"), &y);
    let mut pw2 = pointwise(&m.pwconv2);
    pw2.scale_out(&param(&m.layer_scale));
    let y = conv(g, &format!("{n}.pwconv2"), &y, &pw2);
    Ok(add(g, &format!("{n}.add"), &y, x))
}
