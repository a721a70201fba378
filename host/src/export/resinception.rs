//! ONNX export of [`ResInception`] (the audio network), field by field.

use super::graph::{Graph, Value};
use super::layers::{
    add, avg_pool2d, concat, conv_bn, global_avg_pool, head, max_pool2d, pool_branch, relu, standardise,
};
use crate::nets::resinception::{ResInception, ResInceptionBlock, INPUT_NORM_EPS};
use crate::nets::ConvBn;
use anyhow::Result;

/// `x` `[N, 6, 128, T]` → (fc1024, logits).
pub fn emit(g: &mut Graph, net: &ResInception, x: &str) -> Result<(Value, Value)> {
    let x = standardise(g, "input_norm", x, INPUT_NORM_EPS as f32);
    let x = conv_bn(g, "stem", &x, &net.stem)?;
    let mut x = max_pool2d(g, "pool", &x, &net.pool)?;
    let last = net.stages.len() - 1;
    for (s, blocks) in net.stages.iter().enumerate() {
        for (j, block) in blocks.iter().enumerate() {
            x = emit_block(g, &format!("stages.{s}.{j}"), &x, block)?;
        }
        if s < last {
            x = max_pool2d(g, "pool", &x, &net.pool)?;
        }
    }
    let pooled = global_avg_pool(g, "avgpool", &x);
    Ok(head(g, "head", &pooled, &net.head))
}

fn chain(g: &mut Graph, name: &str, x: &str, convs: &[ConvBn]) -> Result<Value> {
    let mut x = x.to_string();
    for (i, c) in convs.iter().enumerate() {
        x = conv_bn(g, &format!("{name}.{i}"), &x, c)?;
    }
    Ok(x)
}

fn emit_block(g: &mut Graph, name: &str, x: &str, b: &ResInceptionBlock) -> Result<Value> {
    let b1 = conv_bn(g, &format!("{name}.branch1x1"), x, &b.branch1x1)?;
    let b3 = chain(g, &format!("{name}.branch3x3"), x, &b.branch3x3)?;
    let b5 = chain(g, &format!("{name}.branch5x5"), x, &b.branch5x5)?;
    let pool = |g: &mut Graph, n: &str, x: &str| avg_pool2d(g, n, x, &b.avg_pool);
    let bp = pool_branch(g, &format!("{name}.avg_pool"), &format!("{name}.branch_pool"), x, pool, &b.branch_pool)?;
    let cat = concat(g, &format!("{name}.cat"), &[&b1, &b3, &b5, &bp], 1);
    let shortcut = match &b.shortcut {
        Some(proj) => conv_bn(g, &format!("{name}.shortcut"), x, proj)?,
        None => x.to_string(),
    };
    let sum = add(g, &format!("{name}.add"), &cat, &shortcut);
    Ok(relu(g, &format!("{name}.relu"), &sum))
}
