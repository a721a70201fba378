//! Phase I of the paper (Section II-A, III-A): each audio and visual network trained alone
//! on the prepared cache with mixup, the KL-divergence loss plus λ/2‖Θ‖², and Adam.
//!
//! ```text
//! OUT/
//!   metrics.csv              one row per finished epoch
//!   curves.png               training loss, validation log loss and accuracy per epoch
//!   best.bpk                 the model of the best validation epoch (accuracy, then log loss)
//!   checkpoint/state.json    last finished epoch, configuration, history
//!   checkpoint/epoch-NNNN.model.bpk, epoch-NNNN.adam.bin
//! ```
//!
//! - mixup: one λ ~ Beta(α, α) per batch (two Gamma draws on [`SplitMix64`]), each example
//!   mixed with a shuffled partner, inputs and one-hot labels alike;
//! - loss: Σ_c y log(y / ŷ), ŷ = softmax(logits), averaged over the batch;
//! - L2: the gradient λΘ of λ/2‖Θ‖² is added to every parameter gradient before Adam
//!   (coupled, not AdamW's decoupled decay); the penalty value is reported per epoch;
//! - learning rate: cosine from `lr` to `lr_min` over all steps;
//! - validation: the cache's training items split by location
//!   ([`grouped_validation_split`](crate::dataset::grouped_validation_split)); a clip's
//!   probabilities are the mean over its views (every frame, for video).
//!
//! Without `resume` an existing `OUT/checkpoint` is replaced; with it, training continues after
//! the last finished epoch (the configuration must match, `epochs` included).
//!
//! Determinism: the data order, mixup draws and parameter initialisation come from
//! `SplitMix64` streams derived from (seed, epoch), and burn's generator (dropout) is reseeded
//! at every epoch, so `resume` reproduces an uninterrupted run. burn's generator is
//! process-wide: only another thread drawing from it concurrently breaks this.

pub mod cli;
pub mod data;
pub mod engine;
pub mod loader;
pub mod math;
pub mod parity;
#[cfg(test)]
mod tests;

use crate::cache::Cache;
use crate::nets::convnext_tiny::{ConvNextTiny, ConvNextTinyConfig};
use crate::nets::inception_v3::{InceptionV3, InceptionV3Config};
use crate::nets::resinception::{FixedNorm, InputNorm, ResInception, ResInceptionConfig};
use crate::nets::torchvision::{import_torchvision, VisualNet};
use crate::nets::{load_module, Embeddings, Head, SizePreset};
use crate::rng::SplitMix64;
use anyhow::{bail, Result};
use avsc_shared::FeatureKind;
use burn::module::Module;
use burn::prelude::*;
use data::Data;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::compute::ComputeDevice;
pub use crate::nets::torchvision::Backbone as VisualBackbone;

/// A Phase-I network: images or spectrogram stacks in, both embeddings out.
pub trait Net: Module + 'static {
    fn embed(&self, x: Tensor<4>) -> Embeddings;
    /// Replace the Dense block (used to redraw it deterministically).
    fn map_head(self, f: impl FnOnce(Head) -> Head) -> Self;
}

macro_rules! impl_net {
    ($($t:ty),*) => {$(
        impl Net for $t {
            fn embed(&self, x: Tensor<4>) -> Embeddings {
                self.forward(x)
            }
            fn map_head(mut self, f: impl FnOnce(Head) -> Head) -> Self {
                self.head = f(self.head);
                self
            }
        }
    )*};
}
impl_net!(ResInception, InceptionV3, ConvNextTiny);

/// Phase-I hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak (initial) learning rate of the cosine schedule.
    pub lr: f64,
    /// Final learning rate of the cosine schedule.
    pub lr_min: f64,
    /// λ of λ/2‖Θ‖².
    pub weight_decay: f64,
    /// Mixup α (0: no mixup).
    pub mixup_alpha: f64,
    pub seed: u64,
    /// Fraction of the training items (whole locations) held out for validation.
    pub val_fraction: f64,
    /// The cache split trained on ("all" for every item).
    pub split: String,
    /// Video: random frames per training clip and epoch (0: every frame, the paper's recipe).
    pub frames_per_clip: usize,
    /// Video: evenly spaced frames per validation clip (0: all).
    pub eval_frames: usize,
    /// Continue from `OUT/checkpoint` when it exists.
    pub resume: bool,
    /// Stop after this many finished epochs (the schedule still spans `epochs`).
    pub stop_after: Option<usize>,
    /// Where the training runs. A resume may change it.
    #[serde(default)]
    pub device: ComputeDevice,
    /// Audio networks: how the input spectrogram is normalised (fixed statistics are
    /// computed on the training clips before the first epoch).
    #[serde(default)]
    pub input_norm: InputNorm,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 30,
            batch_size: 32,
            lr: 1e-3,
            lr_min: 1e-5,
            weight_decay: 1e-4,
            mixup_alpha: 0.4,
            seed: 0,
            val_fraction: 0.2,
            split: "fold1_train".into(),
            frames_per_clip: 0,
            eval_frames: 0,
            resume: false,
            stop_after: None,
            device: ComputeDevice::Cpu,
            input_norm: InputNorm::default(),
        }
    }
}

/// One finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Mean KL loss over the epoch's (mixed) training examples.
    pub train_loss: f64,
    /// λ/2‖Θ‖² at the end of the epoch.
    pub l2_penalty: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    #[serde(with = "nan_as_null")]
    pub val_accuracy: f64,
    #[serde(with = "nan_as_null")]
    pub val_log_loss: f64,
    pub seconds: f64,
}

mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_some(v)
        } else {
            s.serialize_none()
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// What a training run ended with.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// Finished epochs.
    pub epochs: usize,
    pub final_val_accuracy: f64,
    pub final_val_log_loss: f64,
    pub best_epoch: usize,
    pub best_val_accuracy: f64,
    pub best_val_log_loss: f64,
    /// The last epoch's model (burnpack; load with [`crate::nets::load_module`]).
    pub checkpoint: PathBuf,
    /// The best validation epoch's model.
    pub best_model: PathBuf,
    pub history: Vec<EpochMetrics>,
}

/// Train an audio network (Aud-MEL / Aud-GAM / Aud-CQT) on one feature kind of the cache.
pub fn train_audio(
    cache: &Path,
    kind: FeatureKind,
    size: SizePreset,
    cfg: &TrainConfig,
    out: &Path,
) -> Result<TrainSummary> {
    train_audio_with(cache, kind, &ResInceptionConfig::preset(size).with_input_norm(cfg.input_norm), cfg, out)
}

/// [`train_audio`] with an explicit network configuration.
pub fn train_audio_with(
    cache: &Path,
    kind: FeatureKind,
    net: &ResInceptionConfig,
    cfg: &TrainConfig,
    out: &Path,
) -> Result<TrainSummary> {
    let cache = Cache::open(cache)?;
    let (train, val) = data::split_items(&cache, &cfg.split, cfg.val_fraction, cfg.seed)?;
    data::SplitRecord::new(&cache, &cfg.split, cfg.val_fraction, cfg.seed, &train, &val).write(out)?;
    eprintln!("audio {kind}: {} training clips, {} validation clips", train.len(), val.len());
    let data = data::AudioData::load(&cache, kind, &train, &val)?;
    let [c, f, _] = data.input_shape();
    let net = &ResInceptionConfig { input_bins: f, ..net.clone() };
    let device = Device::flex();
    let mut model = math::redraw(net.init(&device), init_seed(cfg));
    if model.fixed_norm.is_some() {
        // After the redraw (it would redraw the statistics too).
        let (mean, std) = data.channel_bin_stats();
        model.fixed_norm = Some(FixedNorm::from_stats(&mean, &std, [c, f], &device));
    }
    let meta = serde_json::json!({ "task": "audio", "kind": kind.name(), "net": format!("{net:?}") });
    engine::run(model, &data, cfg, out, meta)
}

/// Train a visual network (Vis-INC / Vis-CONV) on the cache's frames. `weights`: a
/// torchvision checkpoint (`.safetensors` / `.pth`, paper size only: ImageNet initialisation
/// with a fresh Dense block) or a burnpack written by this crate (`.bpk`); `None`: random.
pub fn train_visual(
    cache: &Path,
    backbone: VisualBackbone,
    size: SizePreset,
    weights: Option<&Path>,
    cfg: &TrainConfig,
    out: &Path,
) -> Result<TrainSummary> {
    let cache = Cache::open(cache)?;
    let (train, val) = data::split_items(&cache, &cfg.split, cfg.val_fraction, cfg.seed)?;
    data::SplitRecord::new(&cache, &cfg.split, cfg.val_fraction, cfg.seed, &train, &val).write(out)?;
    eprintln!("visual {}: {} training clips, {} validation clips", backbone.torchvision_name(), train.len(), val.len());
    let norm = crate::embed::normalisation(backbone.role());
    let data = data::VisualData::new(&cache, norm, &train, &val, cfg.frames_per_clip, cfg.eval_frames)?;
    let meta = serde_json::json!({
        "task": "visual",
        "backbone": backbone.torchvision_name(),
        "size": size.to_string(),
        "weights": weights.map(|w| w.display().to_string()),
    });
    let device = Device::flex();
    let seed = init_seed(cfg);
    let is_bpk = weights.is_some_and(|w| w.extension().is_some_and(|e| e == "bpk"));
    let imported = match weights {
        Some(w) if !is_bpk => {
            if size != SizePreset::Paper {
                bail!("torchvision weights fit the paper size only");
            }
            Some(import_torchvision(backbone, w, &device)?.net)
        }
        _ => None,
    };
    let redraw_head = |h: Head| math::redraw(h, seed);
    match backbone {
        VisualBackbone::InceptionV3 => {
            let model = match (imported, weights) {
                (Some(VisualNet::InceptionV3(n)), _) => (*n).map_head(redraw_head),
                (_, Some(w)) if is_bpk => load_module(InceptionV3Config::preset(size).init(&device), w)?,
                _ => math::redraw(InceptionV3Config::preset(size).init(&device), seed),
            };
            engine::run(model, &data, cfg, out, meta)
        }
        VisualBackbone::ConvNextTiny => {
            let model = match (imported, weights) {
                (Some(VisualNet::ConvNextTiny(n)), _) => (*n).map_head(redraw_head),
                (_, Some(w)) if is_bpk => load_module(ConvNextTinyConfig::preset(size).init(&device), w)?,
                _ => math::redraw(ConvNextTinyConfig::preset(size).init(&device), seed),
            };
            engine::run(model, &data, cfg, out, meta)
        }
    }
}

fn init_seed(cfg: &TrainConfig) -> u64 {
    SplitMix64::derive(cfg.seed, 0xC0FFEE).next_u64()
}
