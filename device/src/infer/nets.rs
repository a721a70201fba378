//! The bundle's networks as tract plans: a Phase-I backbone (one input; FC embedding and
//! logits out) and a Phase-II head (embeddings to probabilities), shapes from the manifest.

use anyhow::{bail, ensure, Context, Result};
use avsc_shared::bundle::{Bundle, Dim, EmbeddingKind, FileEntry, Role, TensorSpec};
use avsc_shared::{Normalisation, NUM_CLASSES};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use tract_onnx::prelude::*;

pub type Plan = Arc<TypedRunnableModel>;

/// The batch-1 shape of a manifest tensor: the batch symbol `N` is 1, and any other symbol
/// (the spectrogram's frame count `T`) takes its value from `actual`, the shape of the data
/// the device will feed (whose fixed dimensions must agree with the manifest's).
pub(super) fn concrete(spec: &TensorSpec, actual: Option<&[usize]>) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(spec.shape.len());
    for (i, d) in spec.shape.iter().enumerate() {
        let have = actual.and_then(|a| a.get(i.wrapping_sub(1)).copied()).filter(|_| i > 0);
        out.push(match (d, have) {
            (Dim::Symbol(s), _) if i == 0 || s == "N" => 1,
            (Dim::Symbol(s), Some(n)) => {
                tracing::debug!("{}: {s} = {n}", spec.name);
                n
            }
            (Dim::Symbol(s), None) => bail!("input {}: no value for the symbolic dimension {s}", spec.name),
            (Dim::Fixed(n), Some(h)) if *n != h => {
                bail!("input {}: the manifest says {:?}, the device computes {:?}", spec.name, spec.shape, actual)
            }
            (Dim::Fixed(n), _) => *n,
        });
    }
    Ok(out)
}

/// tract model transforms applied to a role's network before optimisation. Measured on the
/// paper bundle, 2 cores (device/README.md "tract's options"): `conv_nhwc` (convolutions
/// channel-last, depthwise ones as tract's DepthWise) takes 5-7 % off ConvNeXt's time per frame
/// and nothing off the other networks. `AVSC_TRACT_TRANSFORMS=ROLE:TRANSFORM,...` replaces
/// this list (empty: none), for measuring (tests/benches/paper_bundle.rs).
pub fn transforms_for(role: Role) -> Vec<String> {
    match std::env::var("AVSC_TRACT_TRANSFORMS") {
        Ok(spec) => spec
            .split(',')
            .filter_map(|s| s.trim().split_once(':'))
            .filter(|(r, _)| *r == role.name())
            .map(|(_, t)| t.to_string())
            .collect(),
        Err(_) if role == Role::VisConv => vec!["conv_nhwc".into()],
        Err(_) => Vec::new(),
    }
}

/// A plan for the ONNX file at `path` with inputs of exactly `shapes` (fixed before
/// optimisation: tract picks its fast convolution paths only for concrete shapes), tract's
/// `transforms` applied to the decluttered model first.
pub fn build_plan(path: &Path, shapes: &[Vec<usize>], transforms: &[String]) -> Result<Plan> {
    let mut model = tract_onnx::onnx()
        .model_for_path(path)
        .with_context(|| format!("{}: not a loadable ONNX model", path.display()))?;
    for (i, shape) in shapes.iter().enumerate() {
        model = model.with_input_fact(i, InferenceFact::dt_shape(f32::datum_type(), shape.clone()))?;
    }
    let cannot = || format!("{}: tract cannot build a plan for the manifest's input shapes", path.display());
    if transforms.is_empty() {
        return model.into_optimized().and_then(|m| m.into_runnable()).with_context(cannot);
    }
    let mut typed = model.into_typed().and_then(|m| m.into_decluttered()).with_context(cannot)?;
    for name in transforms {
        let t = tract_onnx::tract_core::transform::get_transform(name)?
            .with_context(|| format!("tract has no transform {name:?}"))?;
        t.transform(&mut typed).with_context(|| format!("{}: tract transform {name}", path.display()))?;
    }
    typed.into_optimized().and_then(|m| m.into_runnable()).with_context(cannot)
}

/// Run a plan on float32 inputs (shape, row-major data); its outputs as float32 vectors.
pub fn run_f32(plan: &Plan, inputs: Vec<(Vec<usize>, &[f32])>) -> Result<Vec<Vec<f32>>> {
    run(plan, inputs)?.iter().map(as_f32).collect()
}

pub(super) fn run(plan: &Plan, inputs: Vec<(Vec<usize>, &[f32])>) -> Result<TVec<TValue>> {
    let values = inputs
        .into_iter()
        .map(|(shape, data)| Ok(Tensor::from_shape(&shape, data)?.into()))
        .collect::<TractResult<TVec<TValue>>>()?;
    plan.run(values)
}

pub(super) fn as_f32(v: &TValue) -> Result<Vec<f32>> {
    Ok(v.to_plain_array_view::<f32>()?.iter().copied().collect())
}

/// A Phase-I backbone: one input, outputs FC(1024) (the embedding; narrower in `tiny`
/// bundles) and logits.
pub(super) struct Backbone {
    pub(super) role: Role,
    pub(super) plan: Plan,
    pub(super) input: Vec<usize>,
    pub(super) fc_out: usize,
    pub(super) logits_out: usize,
    /// Width of the FC embedding.
    pub(super) fc_dim: usize,
    pub(super) normalisation: Option<Normalisation>,
    /// Wall time of the last run, microseconds (orders the jobs of `run_jobs`).
    pub(super) last_us: AtomicU64,
}

impl Backbone {
    /// `actual`: the shape (without batch) of what the device feeds it.
    pub(super) fn load(bundle: &Bundle, f: &FileEntry, actual: &[usize]) -> Result<Backbone> {
        let name = f.role.name();
        ensure!(f.inputs.len() == 1, "{}: {name} must have one input, has {}", f.path, f.inputs.len());
        let pos = |want: &str| f.outputs.iter().position(|o| o.name == want);
        let fc_out = pos("fc1024").unwrap_or(0);
        let logits_out = pos("logits").unwrap_or(1);
        let width = |i: usize| match f.outputs.get(i).and_then(|o| o.shape.last()) {
            Some(Dim::Fixed(n)) => Ok(*n),
            _ => bail!("{}: output {i} of {name} has no fixed width", f.path),
        };
        let fc_dim = width(fc_out)?;
        ensure!(width(logits_out)? == NUM_CLASSES, "{}: {name}'s logits are not {NUM_CLASSES} wide", f.path);
        ensure!(f.role.is_audio() || f.normalisation.is_some(), "{}: visual backbone without normalisation", f.path);
        let input = concrete(&f.inputs[0], Some(actual)).with_context(|| f.path.clone())?;
        Ok(Backbone {
            role: f.role,
            plan: build_plan(&bundle.path(f), std::slice::from_ref(&input), &transforms_for(f.role))?,
            input,
            fc_out,
            logits_out,
            fc_dim,
            normalisation: f.normalisation.clone(),
            last_us: AtomicU64::new(0),
        })
    }

    pub(super) fn width(&self) -> usize {
        self.fc_dim + NUM_CLASSES
    }

    /// FC embedding then logits, into `out` (`width()` values).
    pub(super) fn embed(&self, x: &[f32], out: &mut [f32]) -> Result<()> {
        let shape = &self.input;
        ensure!(
            shape.iter().product::<usize>() == x.len(),
            "{}: input of {} values for shape {shape:?}",
            self.role.name(),
            x.len()
        );
        let o = run(&self.plan, vec![(shape.clone(), x)]).with_context(|| format!("{} failed", self.role.name()))?;
        let fc = as_f32(&o[self.fc_out])?;
        let lg = as_f32(&o[self.logits_out])?;
        ensure!(
            fc.len() == self.fc_dim && lg.len() == NUM_CLASSES,
            "{}: output sizes {} and {}",
            self.role.name(),
            fc.len(),
            lg.len()
        );
        out[..self.fc_dim].copy_from_slice(&fc);
        out[self.fc_dim..].copy_from_slice(&lg);
        Ok(())
    }
}

/// A Phase-II head: the sources' embeddings (one `[N, k, d]` input, or k `[N, d]` inputs)
/// to probabilities.
pub(super) struct Head {
    pub(super) role: Role,
    pub(super) plan: Plan,
    pub(super) sources: Vec<Role>,
    pub(super) embedding: EmbeddingKind,
    pub(super) inputs: Vec<Vec<usize>>,
    /// The graph ends in logits rather than a softmax.
    pub(super) logits: bool,
}

impl Head {
    pub(super) fn load(bundle: &Bundle, f: &FileEntry) -> Result<Head> {
        let embedding = f.embedding.with_context(|| format!("{}: fusion head without `embedding`", f.path))?;
        ensure!(!f.sources.is_empty(), "{}: fusion head without `sources`", f.path);
        let inputs: Vec<Vec<usize>> = f.inputs.iter().map(|s| concrete(s, None)).collect::<Result<_>>()?;
        let k = f.sources.len();
        let d = *inputs.first().and_then(|s| s.last()).with_context(|| format!("{}: no inputs", f.path))?;
        let fits = inputs == [vec![1, k, d]] || (inputs.len() == k && inputs.iter().all(|s| s == &[1, d]));
        ensure!(fits, "{}: inputs {inputs:?} do not fit {k} sources of {d}", f.path);
        Ok(Head {
            role: f.role,
            plan: build_plan(&bundle.path(f), &inputs, &transforms_for(f.role))?,
            sources: f.sources.clone(),
            embedding,
            inputs,
            logits: f.outputs.first().is_some_and(|o| o.name.contains("logit")),
        })
    }
}

pub(super) fn softmax(x: &mut [f32]) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let s: f32 = x
        .iter_mut()
        .map(|v| {
            *v = (*v - m).exp();
            *v
        })
        .sum();
    x.iter_mut().for_each(|v| *v /= s);
}
