//! ONNX export of a Phase-II [`FusionHead`]: `embeddings` `[N, k, d]` (the k backbone
//! embeddings stacked, audio first, in the order of the manifest's `sources`) →
//! `probabilities` `[N, 10]` (fusion layer, FC(10), softmax).

use super::graph::{attr_int, Graph, Value};
use super::layers::{concat, dense, param, softmax};
use crate::fusion::FusionHead;

/// Emit the head on `x` `[N, k, d]`; returns the probabilities.
pub fn emit(g: &mut Graph, head: &FusionHead, x: &str) -> Value {
    let [k, d] = head.w.val().dims();
    let w = g.init_f32("fusion.w", &[k, d], &param(&head.w));
    let weighted = g.node("Mul", "fusion.weighted", &[x, &w], vec![]);
    let split = head.w_av.is_some() || head.concat;
    let fused = if split {
        let na = head.n_audio;
        let audio = sum_rows(g, "fusion.audio", &weighted, Some((0, na)));
        let visual = sum_rows(g, "fusion.visual", &weighted, Some((na, k)));
        if head.concat {
            concat(g, "fusion.cat", &[&audio, &visual], 1)
        } else {
            let wav = param(head.w_av.as_ref().expect("two-level head has w_av"));
            let wa = g.init_f32("fusion.w_a", &[d], &wav[..d]);
            let wv = g.init_f32("fusion.w_v", &[d], &wav[d..]);
            let a = g.node("Mul", "fusion.audio_weighted", &[&audio, &wa], vec![]);
            let v = g.node("Mul", "fusion.visual_weighted", &[&visual, &wv], vec![]);
            g.node("Add", "fusion.two_level", &[&a, &v], vec![])
        }
    } else {
        sum_rows(g, "fusion.sum", &weighted, None)
    };
    let fused = match &head.b {
        Some(b) => {
            let bv = g.init_f32("fusion.b", &[d], &param(b));
            g.node("Add", "fusion.biased", &[&fused, &bv], vec![])
        }
        None => fused,
    };
    let dims = head.fc.weight.val().dims();
    let b = head.fc.bias.as_ref().map(param);
    let logits = dense(g, "fc", &fused, &param(&head.fc.weight), dims, b.as_deref());
    softmax(g, "softmax", &logits)
}

/// Σ over axis 1 of `[N, k, d]` (only rows `from..to` when given) → `[N, d]`.
fn sum_rows(g: &mut Graph, name: &str, x: &str, rows: Option<(usize, usize)>) -> Value {
    let axes = g.init_i64(&format!("{name}.axes"), &[1], &[1]);
    let x = match rows {
        Some((from, to)) => {
            let starts = g.init_i64(&format!("{name}.starts"), &[1], &[from as i64]);
            let ends = g.init_i64(&format!("{name}.ends"), &[1], &[to as i64]);
            g.node("Slice", &format!("{name}.rows"), &[x, &starts, &ends, &axes], vec![])
        }
        None => x.to_string(),
    };
    g.node("ReduceSum", name, &[&x, &axes], vec![attr_int("keepdims", 0)])
}
