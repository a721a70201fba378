//! Phase II (Section II-B, equations (1)-(3)): a fusion layer over the frozen backbones'
//! embeddings, then the Dense layer FC(10) + softmax, trained alone.
//!
//! With embeddings e_1..e_k (audio first: ae_m, ae_g, ae_c, then ve_i, ve_c) and trainable
//! vectors of the embedding width d:
//!
//! | fusion | embeddings | fused (input of FC(10))                                      | width |
//! |--------|------------|--------------------------------------------------------------|-------|
//! | f1     | FC(1024)   | Σ_i e_i ⊙ w_i + b                                            | d     |
//! | f2     | FC(1024)   | (Σ_audio e_i ⊙ w_i) ⊙ w_a + (Σ_visual e_i ⊙ w_i) ⊙ w_v + b     | d     |
//! | f3     | FC(1024)   | concat[Σ_audio e_i ⊙ w_i, Σ_visual e_i ⊙ w_i]                | 2d    |
//! | f4..f6 | FC(10)     | as f1..f3                                                    |       |
//!
//! The audio-only and visual-only systems of Figure 4 use the f4 form (f1 for FC(1024)) over
//! the three audio or the two visual embeddings. The w vectors start at 1 and b at 0 (the
//! fused embedding starts as the plain sum); FC(10) is drawn like every other layer.
//!
//! The backbones are not part of a fusion module at all: their embeddings are computed once
//! (`avsc-host embed`, on the plain, non-autodiff device) and the head is trained on them, so
//! no gradient can reach a backbone (see the test `backbones_get_no_gradient`).

pub mod data;

use crate::embed::EmbeddingSet;
use crate::nets::Embeddings;
use crate::onnx::graph::{attr_int, Graph, Value};
use crate::onnx::layers::{self, param};
use crate::train::{TrainConfig, TrainSummary};
use anyhow::{bail, Context, Result};
use avsc_shared::bundle::{EmbeddingKind, Role};
use avsc_shared::NUM_CLASSES;
use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// The six fusion layers of Table I.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FusionKind {
    F1,
    F2,
    F3,
    F4,
    F5,
    F6,
}

/// How the weighted embeddings are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// f1 / f4: one weighted sum plus bias.
    Sum,
    /// f2 / f5: per-modality weighted sums, weighted again, plus bias.
    TwoLevel,
    /// f3 / f6: per-modality weighted sums, concatenated.
    Concat,
}

impl FusionKind {
    pub const ALL: [FusionKind; 6] =
        [FusionKind::F1, FusionKind::F2, FusionKind::F3, FusionKind::F4, FusionKind::F5, FusionKind::F6];

    pub fn parse(s: &str) -> Result<FusionKind> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f1" => FusionKind::F1,
            "f2" => FusionKind::F2,
            "f3" => FusionKind::F3,
            "f4" => FusionKind::F4,
            "f5" => FusionKind::F5,
            "f6" => FusionKind::F6,
            _ => bail!("unknown fusion {s:?} (expected f1, f2, f3, f4, f5 or f6)"),
        })
    }

    pub fn embedding(self) -> EmbeddingKind {
        match self {
            FusionKind::F1 | FusionKind::F2 | FusionKind::F3 => EmbeddingKind::Fc1024,
            _ => EmbeddingKind::Fc10,
        }
    }

    pub fn form(self) -> Form {
        match self {
            FusionKind::F1 | FusionKind::F4 => Form::Sum,
            FusionKind::F2 | FusionKind::F5 => Form::TwoLevel,
            FusionKind::F3 | FusionKind::F6 => Form::Concat,
        }
    }
}

impl fmt::Display for FusionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = FusionKind::ALL.iter().position(|k| k == self).unwrap() + 1;
        write!(f, "f{i}")
    }
}

/// Which backbones feed a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modalities {
    /// All five (the audio-visual system).
    Av,
    /// Aud-MEL, Aud-GAM, Aud-CQT.
    Audio,
    /// Vis-INC, Vis-CONV.
    Visual,
}

impl Modalities {
    /// The backbones in input order (audio first).
    pub fn sources(self) -> &'static [Role] {
        match self {
            Modalities::Av => &Role::BACKBONES,
            Modalities::Audio => &Role::BACKBONES[..3],
            Modalities::Visual => &Role::BACKBONES[3..],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Modalities::Av => "av",
            Modalities::Audio => "audio",
            Modalities::Visual => "visual",
        }
    }

    /// The bundle role of a head over these modalities.
    pub fn role(self) -> Role {
        match self {
            Modalities::Av => Role::Fusion,
            Modalities::Audio => Role::FusionAudio,
            Modalities::Visual => Role::FusionVisual,
        }
    }
}

/// What a fusion head is: the fusion layer and the embeddings it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FusionSpec {
    pub kind: FusionKind,
    pub modalities: Modalities,
}

impl FusionSpec {
    pub fn new(kind: FusionKind, modalities: Modalities) -> Result<FusionSpec> {
        if modalities != Modalities::Av && kind.form() != Form::Sum {
            bail!("{kind} combines audio with visual embeddings; a single-modality head takes f1 or f4");
        }
        Ok(FusionSpec { kind, modalities })
    }

    /// Number of input embeddings.
    pub fn k(&self) -> usize {
        self.modalities.sources().len()
    }

    /// Embedding width.
    pub fn d(&self) -> usize {
        self.kind.embedding().dim()
    }

    pub fn n_audio(&self) -> usize {
        self.modalities.sources().iter().filter(|r| r.is_audio()).count()
    }

    /// Width of the fused embedding (input of FC(10)).
    pub fn fused_dim(&self) -> usize {
        match self.kind.form() {
            Form::Concat => 2 * self.d(),
            _ => self.d(),
        }
    }

    pub fn init(&self, device: &Device) -> FusionHead {
        let (k, d) = (self.k(), self.d());
        let form = self.kind.form();
        FusionHead {
            w: Param::from_tensor(Tensor::ones([k, d], device)),
            w_av: (form == Form::TwoLevel).then(|| Param::from_tensor(Tensor::ones([2, d], device))),
            b: (form != Form::Concat).then(|| Param::from_tensor(Tensor::zeros([d], device))),
            fc: LinearConfig::new(self.fused_dim(), NUM_CLASSES).init(device),
            n_audio: self.n_audio(),
            concat: form == Form::Concat,
        }
    }
}

/// A fusion layer + FC(10). Input `[batch, k, d]` (the k embeddings stacked), output logits
/// (softmax is applied by the loss, by evaluation and in the exported graph).
#[derive(Module, Debug)]
pub struct FusionHead {
    /// w_1..w_k, one row per input embedding.
    pub w: Param<Tensor<2>>,
    /// f2 / f5: rows w_a, w_v.
    pub w_av: Option<Param<Tensor<2>>>,
    /// b (every form but concat).
    pub b: Option<Param<Tensor<1>>>,
    pub fc: Linear,
    /// How many of the k inputs are audio embeddings (they come first).
    pub n_audio: usize,
    pub concat: bool,
}

impl FusionHead {
    /// The audio-visual embedding, `[batch, fused_dim]`.
    pub fn fuse(&self, x: Tensor<3>) -> Tensor<2> {
        let [n, k, d] = x.dims();
        let weighted = x * self.w.val().unsqueeze::<3>();
        let sum = |t: Tensor<3>| -> Tensor<2> { t.sum_dim(1).reshape([n, d]) };
        let split = self.w_av.is_some() || self.concat;
        let fused = if split {
            let na = self.n_audio;
            let audio = sum(weighted.clone().slice([0..n, 0..na, 0..d]));
            let visual = sum(weighted.slice([0..n, na..k, 0..d]));
            if self.concat {
                Tensor::cat(vec![audio, visual], 1)
            } else {
                let w = self.w_av.as_ref().unwrap().val();
                let wa = w.clone().slice([0..1, 0..d]);
                let wv = w.slice([1..2, 0..d]);
                audio * wa + visual * wv
            }
        } else {
            sum(weighted)
        };
        match &self.b {
            Some(b) => fused + b.val().unsqueeze::<2>(),
            None => fused,
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Embeddings {
        let fused = self.fuse(x);
        let logits = self.fc.forward(fused.clone());
        Embeddings { fc1024: fused, logits }
    }

    /// ONNX of [`Self::forward`] and a softmax: `x` `[N, k, d]` (the k backbone embeddings,
    /// audio first, in the order of the manifest's `sources`) → probabilities `[N, 10]`.
    pub fn emit(&self, g: &mut Graph, x: &str) -> Value {
        let [k, d] = self.w.val().dims();
        let w = g.init_f32("fusion.w", &[k, d], &param(&self.w));
        let weighted = g.node("Mul", "fusion.weighted", &[x, &w], vec![]);
        let split = self.w_av.is_some() || self.concat;
        let fused = if split {
            let na = self.n_audio;
            let audio = emit_sum_rows(g, "fusion.audio", &weighted, Some((0, na)));
            let visual = emit_sum_rows(g, "fusion.visual", &weighted, Some((na, k)));
            if self.concat {
                layers::concat(g, "fusion.cat", &[&audio, &visual], 1)
            } else {
                let wav = param(self.w_av.as_ref().expect("two-level head has w_av"));
                let wa = g.init_f32("fusion.w_a", &[d], &wav[..d]);
                let wv = g.init_f32("fusion.w_v", &[d], &wav[d..]);
                let a = g.node("Mul", "fusion.audio_weighted", &[&audio, &wa], vec![]);
                let v = g.node("Mul", "fusion.visual_weighted", &[&visual, &wv], vec![]);
                g.node("Add", "fusion.two_level", &[&a, &v], vec![])
            }
        } else {
            emit_sum_rows(g, "fusion.sum", &weighted, None)
        };
        let fused = match &self.b {
            Some(b) => {
                let bv = g.init_f32("fusion.b", &[d], &param(b));
                g.node("Add", "fusion.biased", &[&fused, &bv], vec![])
            }
            None => fused,
        };
        let dims = self.fc.weight.val().dims();
        let b = self.fc.bias.as_ref().map(param);
        let logits = layers::dense(g, "fc", &fused, &param(&self.fc.weight), dims, b.as_deref());
        layers::softmax(g, "softmax", &logits)
    }
}

/// ONNX: Σ over axis 1 of `[N, k, d]` (only rows `from..to` when given) → `[N, d]`.
fn emit_sum_rows(g: &mut Graph, name: &str, x: &str, rows: Option<(usize, usize)>) -> Value {
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

/// Phase II reuses the Phase-I loop (mixup, KL + L2, Adam, checkpoints): a clip's k stacked
/// embeddings travel as a `[k, d, 1]` "image".
impl crate::train::Net for FusionHead {
    fn embed(&self, x: Tensor<4>) -> Embeddings {
        let [n, k, d, _] = x.dims();
        self.forward(x.reshape([n, k, d]))
    }
    fn map_head(self, _f: impl FnOnce(crate::nets::Head) -> crate::nets::Head) -> Self {
        self
    }
}

/// `OUT/head.json` beside a trained head: what it is, so it can be loaded without flags.
pub const SPEC_FILE: &str = "head.json";

/// Phase II: train a fusion head on the embeddings of `cfg.split` (validation: the clips the
/// Phase-I runs held out, as the embeddings record them). Writes OUT/head.json, OUT/best.bpk, metrics and
/// checkpoints like a Phase-I run.
pub fn train(set: &EmbeddingSet, spec: FusionSpec, cfg: &TrainConfig, out: &Path) -> Result<TrainSummary> {
    let data = data::FusionData::new(set, spec, &cfg.split)?;
    let fingerprint = set.fingerprint();
    let mut cfg = cfg.clone();
    if cfg.resume && trained_on(out).as_deref() != Some(fingerprint.as_str()) {
        // A head trained (or half trained) on other embeddings starts again: resuming it
        // would keep weights fitted to inputs that no longer exist.
        let ckpt = out.join("checkpoint");
        if ckpt.exists() {
            eprintln!("{}: the embeddings changed since this head was trained; training it again", out.display());
            std::fs::remove_dir_all(&ckpt).with_context(|| format!("clearing {}", ckpt.display()))?;
        }
        cfg.resume = false;
    }
    eprintln!(
        "fusion {} ({}): {} training clips, {} validation clips",
        spec.kind,
        spec.modalities.name(),
        data.train_len(),
        crate::train::data::Data::val_len(&data)
    );
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    avsc_shared::write_atomic(&out.join(SPEC_FILE), serde_json::to_string_pretty(&spec)?.as_bytes())?;
    avsc_shared::write_atomic(&out.join(EMBEDDINGS_FILE), fingerprint.as_bytes())?;
    let seed = crate::rng::SplitMix64::derive(cfg.seed, 0xF05E).next_u64();
    let head = crate::train::math::redraw(spec.init(&Device::flex()), seed);
    let meta = serde_json::json!({
        "task": "fusion", "fusion": spec.kind, "modalities": spec.modalities, "embeddings": fingerprint
    });
    crate::train::engine::run(head, &data, &cfg, out, meta)
}

/// `OUT/embeddings.sha256` beside a head: [`EmbeddingSet::fingerprint`] of the set it was
/// trained on.
pub const EMBEDDINGS_FILE: &str = "embeddings.sha256";

/// The fingerprint of the embeddings the head in `dir` was trained on, if recorded.
pub fn trained_on(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(EMBEDDINGS_FILE)).ok().map(|s| s.trim().to_string())
}

/// Refuses a head trained on other embeddings than `set` (its scores would be meaningless).
pub fn check_trained_on(dir: &Path, set: &EmbeddingSet) -> Result<()> {
    let want = set.fingerprint();
    match trained_on(dir) {
        Some(f) if f == want => Ok(()),
        Some(f) => bail!(
            "{}: this head was trained on other embeddings (sha256 {}…, these are {}…): train it again",
            dir.display(),
            &f[..f.len().min(12)],
            &want[..12]
        ),
        None => bail!(
            "{}: no {EMBEDDINGS_FILE}: this head does not record which embeddings it was trained on; train it again",
            dir.display()
        ),
    }
}

/// A trained head from its run folder (`head.json` + `best.bpk`), on `device`.
pub fn load(dir: &Path, device: &Device) -> Result<(FusionSpec, FusionHead)> {
    let p = dir.join(SPEC_FILE);
    let text = std::fs::read_to_string(&p).with_context(|| format!("{}: cannot read", p.display()))?;
    let spec: FusionSpec = serde_json::from_str(&text).with_context(|| format!("{}: invalid", p.display()))?;
    let head = crate::nets::load_module(spec.init(device), &dir.join("best.bpk"))?;
    Ok((spec, head))
}

/// Class probabilities `[clips.len()][10]` of a head on the given clips.
pub fn predict(
    head: &FusionHead,
    spec: &FusionSpec,
    set: &EmbeddingSet,
    clips: &[usize],
    device: &Device,
) -> Result<Vec<[f32; NUM_CLASSES]>> {
    let inputs: Vec<Vec<f32>> = clips.iter().map(|&c| data::stacked(set, spec, c)).collect();
    let probs = crate::train::engine::predict(head, &inputs, [spec.k(), spec.d(), 1], 256, device)?;
    Ok(probs.chunks(NUM_CLASSES).map(|r| r.try_into().expect("10 columns")).collect())
}

#[cfg(test)]
mod tests;
