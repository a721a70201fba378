//! ONNX export of [`InceptionV3`] (Vis-INC), field by field in torchvision's order.

use super::graph::{Graph, Value};
use super::layers::{avg_pool, concat, conv_bn, global_avg_pool, head, max_pool, max_pool2d, pool_branch};
use crate::nets::inception_v3::{InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, InceptionV3};
use crate::nets::ConvBn;
use anyhow::Result;

/// `x` `[N, 3, H, W]` → (fc1024, logits).
pub fn emit(g: &mut Graph, net: &InceptionV3, x: &str) -> Result<(Value, Value)> {
    let x = conv_bn(g, "conv2d_1a_3x3", x, &net.conv2d_1a_3x3)?;
    let x = conv_bn(g, "conv2d_2a_3x3", &x, &net.conv2d_2a_3x3)?;
    let x = conv_bn(g, "conv2d_2b_3x3", &x, &net.conv2d_2b_3x3)?;
    let x = max_pool2d(g, "maxpool1", &x, &net.maxpool1)?;
    let x = conv_bn(g, "conv2d_3b_1x1", &x, &net.conv2d_3b_1x1)?;
    let x = conv_bn(g, "conv2d_4a_3x3", &x, &net.conv2d_4a_3x3)?;
    let x = max_pool2d(g, "maxpool2", &x, &net.maxpool2)?;
    let x = inception_a(g, "mixed_5b", &x, &net.mixed_5b)?;
    let x = inception_a(g, "mixed_5c", &x, &net.mixed_5c)?;
    let x = inception_a(g, "mixed_5d", &x, &net.mixed_5d)?;
    let x = inception_b(g, "mixed_6a", &x, &net.mixed_6a)?;
    let x = inception_c(g, "mixed_6b", &x, &net.mixed_6b)?;
    let x = inception_c(g, "mixed_6c", &x, &net.mixed_6c)?;
    let x = inception_c(g, "mixed_6d", &x, &net.mixed_6d)?;
    let x = inception_c(g, "mixed_6e", &x, &net.mixed_6e)?;
    let x = inception_d(g, "mixed_7a", &x, &net.mixed_7a)?;
    let x = inception_e(g, "mixed_7b", &x, &net.mixed_7b)?;
    let x = inception_e(g, "mixed_7c", &x, &net.mixed_7c)?;
    let pooled = global_avg_pool(g, "avgpool", &x);
    Ok(head(g, "head", &pooled, &net.head))
}

/// torchvision's `F.avg_pool2d(x, 3, stride=1, padding=1)` (padding counted).
fn avg_pool_3x3(g: &mut Graph, name: &str, x: &str) -> Value {
    avg_pool(g, name, x, [3, 3], [1, 1], [1, 1, 1, 1], true)
}

/// `branch_pool(avg_pool_3x3(x))`, the pool after the 1x1 conv ([`pool_branch`]).
fn pool_branch_3x3(g: &mut Graph, n: &str, x: &str, m: &ConvBn) -> Result<Value> {
    let pool = |g: &mut Graph, name: &str, x: &str| Ok(avg_pool_3x3(g, name, x));
    pool_branch(g, &format!("{n}.avg_pool"), &format!("{n}.branch_pool"), x, pool, m)
}

/// torchvision's `F.max_pool2d(x, 3, stride=2)`.
fn max_pool_3x3_s2(g: &mut Graph, name: &str, x: &str) -> Value {
    max_pool(g, name, x, [3, 3], [2, 2], [0; 4])
}

/// `conv_bn` named `{block}.{field}`.
fn cb(g: &mut Graph, block: &str, field: &str, x: &str, m: &ConvBn) -> Result<Value> {
    conv_bn(g, &format!("{block}.{field}"), x, m)
}

fn inception_a(g: &mut Graph, n: &str, x: &str, m: &InceptionA) -> Result<Value> {
    let b1 = cb(g, n, "branch1x1", x, &m.branch1x1)?;
    let b5 = cb(g, n, "branch5x5_1", x, &m.branch5x5_1)?;
    let b5 = cb(g, n, "branch5x5_2", &b5, &m.branch5x5_2)?;
    let b3 = cb(g, n, "branch3x3dbl_1", x, &m.branch3x3dbl_1)?;
    let b3 = cb(g, n, "branch3x3dbl_2", &b3, &m.branch3x3dbl_2)?;
    let b3 = cb(g, n, "branch3x3dbl_3", &b3, &m.branch3x3dbl_3)?;
    let bp = pool_branch_3x3(g, n, x, &m.branch_pool)?;
    Ok(concat(g, &format!("{n}.cat"), &[&b1, &b5, &b3, &bp], 1))
}

fn inception_b(g: &mut Graph, n: &str, x: &str, m: &InceptionB) -> Result<Value> {
    let b3 = cb(g, n, "branch3x3", x, &m.branch3x3)?;
    let bd = cb(g, n, "branch3x3dbl_1", x, &m.branch3x3dbl_1)?;
    let bd = cb(g, n, "branch3x3dbl_2", &bd, &m.branch3x3dbl_2)?;
    let bd = cb(g, n, "branch3x3dbl_3", &bd, &m.branch3x3dbl_3)?;
    let bp = max_pool_3x3_s2(g, &format!("{n}.max_pool"), x);
    Ok(concat(g, &format!("{n}.cat"), &[&b3, &bd, &bp], 1))
}

fn inception_c(g: &mut Graph, n: &str, x: &str, m: &InceptionC) -> Result<Value> {
    let b1 = cb(g, n, "branch1x1", x, &m.branch1x1)?;
    let b7 = cb(g, n, "branch7x7_1", x, &m.branch7x7_1)?;
    let b7 = cb(g, n, "branch7x7_2", &b7, &m.branch7x7_2)?;
    let b7 = cb(g, n, "branch7x7_3", &b7, &m.branch7x7_3)?;
    let bd = cb(g, n, "branch7x7dbl_1", x, &m.branch7x7dbl_1)?;
    let bd = cb(g, n, "branch7x7dbl_2", &bd, &m.branch7x7dbl_2)?;
    let bd = cb(g, n, "branch7x7dbl_3", &bd, &m.branch7x7dbl_3)?;
    let bd = cb(g, n, "branch7x7dbl_4", &bd, &m.branch7x7dbl_4)?;
    let bd = cb(g, n, "branch7x7dbl_5", &bd, &m.branch7x7dbl_5)?;
    let bp = pool_branch_3x3(g, n, x, &m.branch_pool)?;
    Ok(concat(g, &format!("{n}.cat"), &[&b1, &b7, &bd, &bp], 1))
}

fn inception_d(g: &mut Graph, n: &str, x: &str, m: &InceptionD) -> Result<Value> {
    let b3 = cb(g, n, "branch3x3_1", x, &m.branch3x3_1)?;
    let b3 = cb(g, n, "branch3x3_2", &b3, &m.branch3x3_2)?;
    let b7 = cb(g, n, "branch7x7x3_1", x, &m.branch7x7x3_1)?;
    let b7 = cb(g, n, "branch7x7x3_2", &b7, &m.branch7x7x3_2)?;
    let b7 = cb(g, n, "branch7x7x3_3", &b7, &m.branch7x7x3_3)?;
    let b7 = cb(g, n, "branch7x7x3_4", &b7, &m.branch7x7x3_4)?;
    let bp = max_pool_3x3_s2(g, &format!("{n}.max_pool"), x);
    Ok(concat(g, &format!("{n}.cat"), &[&b3, &b7, &bp], 1))
}

fn inception_e(g: &mut Graph, n: &str, x: &str, m: &InceptionE) -> Result<Value> {
    let b1 = cb(g, n, "branch1x1", x, &m.branch1x1)?;
    let b3 = cb(g, n, "branch3x3_1", x, &m.branch3x3_1)?;
    let b3a = cb(g, n, "branch3x3_2a", &b3, &m.branch3x3_2a)?;
    let b3b = cb(g, n, "branch3x3_2b", &b3, &m.branch3x3_2b)?;
    let bd = cb(g, n, "branch3x3dbl_1", x, &m.branch3x3dbl_1)?;
    let bd = cb(g, n, "branch3x3dbl_2", &bd, &m.branch3x3dbl_2)?;
    let bda = cb(g, n, "branch3x3dbl_3a", &bd, &m.branch3x3dbl_3a)?;
    let bdb = cb(g, n, "branch3x3dbl_3b", &bd, &m.branch3x3dbl_3b)?;
    let bp = pool_branch_3x3(g, n, x, &m.branch_pool)?;
    Ok(concat(g, &format!("{n}.cat"), &[&b1, &b3a, &b3b, &bda, &bdb, &bp], 1))
}
