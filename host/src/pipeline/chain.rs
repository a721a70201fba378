//! `avsc-host train-all`: one command from a dataset with official folds (the TAU layout) to
//! an evaluated system and a bundle.
//!
//! ```text
//! OUT/
//!   cache/                 prepare: every clip, tagged with its folds
//!   runs/<role>/           Phase I, on fold1_train (validation: whole places of it)
//!   embeddings/            the five frozen backbones on every clip
//!   heads/, eval/, table1.md   Phase II on fold1_train; evaluation on fold1_evaluate
//!   bundle/                f32 and int8 ONNX (int8 calibrated on fold1_train clips)
//!   stages/<stage>.json    what each stage read (content digests) and wrote
//!   report.json
//! ```
//!
//! Every stage is skipped when what it reads is unchanged, redone when it changed, and
//! continued when it was interrupted ([`super::stage`]). Clips are re-prepared when their
//! files' contents change ([`super::sources`]). fold1_evaluate clips reach no training,
//! validation or calibration: they are only evaluated.

use super::sources::clip_digests;
use super::stage::{file_digest, files_digest, hex, remove, Stage, Stages};
use super::{fusion_config, table1, Report};
use crate::cache::{Cache, SCHEMA_VERSION};
use crate::compute::ComputeDevice;
use crate::dataset::{Dataset, Split};
use crate::embed::{self, EmbedArgs, EmbeddingSet};
use crate::fusion::{FusionKind, Modalities};
use crate::nets::resinception::InputNorm;
use crate::nets::SizePreset;
use crate::prepare::{self, PrepareArgs};
use crate::train::{self, TrainConfig, VisualBackbone};
use anyhow::{bail, Context, Result};
use avsc_shared::bundle::{Precision, Role};
use avsc_shared::{FeaturePreset, FramePreset};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const TRAIN_SPLIT: &str = "fold1_train";
pub const TEST_SPLIT: &str = "fold1_evaluate";

/// Everything `train-all` does, with the paper's recipe as [`ChainConfig::paper`].
#[derive(Clone, Debug, Serialize)]
pub struct ChainConfig {
    pub dataset: PathBuf,
    pub out: PathBuf,
    #[serde(serialize_with = "as_string")]
    pub size: SizePreset,
    /// The three audio networks' training (split: fold1_train).
    pub audio: TrainConfig,
    /// The two visual networks' training from random initialisation.
    pub visual: TrainConfig,
    /// Peak learning rate of a visual network fine-tuned from ImageNet weights (cosine down
    /// to 1 % of it); the rest as `visual`.
    pub finetune_lr: f64,
    /// ImageNet weights (torchvision checkpoint or burn record) for InceptionV3 / ConvNeXt.
    pub weights_inc: Option<PathBuf>,
    pub weights_conv: Option<PathBuf>,
    /// Evenly spaced frames per clip for the visual embeddings (0: every frame).
    pub embed_frames: usize,
    pub fusion_epochs: usize,
    /// int8 calibration clips (from fold1_train).
    pub calibration_clips: usize,
    /// Parallel prepare workers.
    pub jobs: usize,
    pub device: ComputeDevice,
}

fn as_string<S: serde::Serializer>(v: &SizePreset, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

impl ChainConfig {
    /// The spectrograms the audio networks are trained on: `paper`, or with
    /// [`InputNorm::Fixed`] audio networks `stream` (the same without the window-relative
    /// dB floor), so that nothing of the audio path depends on the whole window.
    pub fn feature_preset(&self) -> FeaturePreset {
        match self.audio.input_norm {
            InputNorm::PerExample => FeaturePreset::paper(),
            InputNorm::Fixed => FeaturePreset::stream(),
        }
    }

    /// The paper's recipe at the published widths: Adam at 1e-3 (1e-4 when fine-tuning from
    /// ImageNet weights), batch 32, mixup 0.4, L2 1e-4, 30 epochs; visual networks on every
    /// frame; Phase II 30 epochs.
    pub fn paper(dataset: PathBuf, out: PathBuf) -> ChainConfig {
        let audio = TrainConfig { split: TRAIN_SPLIT.into(), resume: true, ..TrainConfig::default() };
        ChainConfig {
            dataset,
            out,
            size: SizePreset::Paper,
            visual: audio.clone(),
            audio,
            finetune_lr: 1e-4,
            weights_inc: None,
            weights_conv: None,
            embed_frames: 0,
            fusion_epochs: 30,
            calibration_clips: 256,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            device: ComputeDevice::Cpu,
        }
    }

    /// The training of `role`'s network: audio, visual from scratch, or visual fine-tuned.
    fn train_config(&self, role: Role) -> TrainConfig {
        if embed::feature_kind(role).is_some() {
            self.audio.clone()
        } else if self.weights(role).is_some() {
            TrainConfig { lr: self.finetune_lr, lr_min: self.finetune_lr * 0.01, ..self.visual.clone() }
        } else {
            self.visual.clone()
        }
    }

    fn weights(&self, role: Role) -> Option<&Path> {
        match role {
            Role::VisInc => self.weights_inc.as_deref(),
            Role::VisConv => self.weights_conv.as_deref(),
            _ => None,
        }
    }
}

/// A training configuration as a stage input: without what does not change the result
/// (where it runs, resumption).
fn recipe(c: &TrainConfig) -> Value {
    let mut v = serde_json::to_value(c).expect("config");
    if let Value::Object(m) = &mut v {
        for k in ["device", "resume", "stop_after"] {
            m.remove(k);
        }
    }
    v
}

/// Digest of a folder's files (names and contents), in name order.
fn dir_digest(dir: &Path) -> Result<Option<String>> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Ok(None) };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    if files.is_empty() {
        return Ok(None);
    }
    files_digest(&files)
}

/// The cache's outputs: its manifest and clip-source record by content, the clip files by
/// name and size (hashing ~50 GB of TAU features on every run would cost minutes; the clips
/// are a pure function of their sources, which are hashed).
fn cache_digest(cache: &Path) -> Result<Option<String>> {
    let Some(m) = files_digest(&[Cache::manifest_path(cache), cache.join(CLIP_SOURCES)])? else { return Ok(None) };
    let mut h = Sha256::new();
    h.update(m.as_bytes());
    let mut clips: Vec<(String, u64)> = std::fs::read_dir(cache.join("items"))
        .with_context(|| format!("{}: cannot list", cache.join("items").display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_string_lossy().into_owned(), e.metadata().ok()?.len())))
        .collect();
    clips.sort();
    for (name, len) in clips {
        h.update(format!("{name}\t{len}\n").as_bytes());
    }
    Ok(Some(hex(&h.finalize())))
}

/// `CACHE/clip-sources.json`: clip id -> digest of the files it was prepared from.
const CLIP_SOURCES: &str = "clip-sources.json";

fn summary_f64(v: &Value, path: &[&str]) -> f64 {
    path.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap_or(f64::NAN)
}

/// Run (or skip) every stage; writes `OUT/report.json`.
pub fn train_all(cfg: &ChainConfig) -> Result<Report> {
    let t0 = Instant::now();
    let out = &cfg.out;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    cfg.device.open()?; // fail before any work when the device is unusable
    let mut stages = Stages::new(out);
    let cache = out.join("cache");
    let runs = out.join("runs");

    // Prepare: every clip of the dataset, each tagged with the folds that list it.
    let ds = Dataset::open(&cfg.dataset)?;
    if !ds.has_folds() {
        bail!(
            "{}: train-all needs the official folds (a TAU layout with evaluation_setup/fold1_train.csv and \
             fold1_evaluate.csv); for a folder of your own recordings run prepare and train-audio/train-visual",
            cfg.dataset.display()
        );
    }
    let listing = ds.list(Split::All)?;
    let digests = clip_digests(&listing.items, &out.join("stages/sources.json"))?;
    let mut h = Sha256::new();
    for it in &listing.items {
        h.update(
            format!("{}\t{:?}\t{}\t{:?}\t{}\n", it.id, it.label, it.location, it.folds, digests[&it.id]).as_bytes(),
        );
    }
    let (features, frames) = (cfg.feature_preset(), FramePreset::default());
    let inputs = json!({
        "clips": hex(&h.finalize()),
        "n_clips": listing.items.len(),
        "listing_errors": listing.errors,
        "feature_preset": features,
        "frame_preset": frames,
        "cache_schema": SCHEMA_VERSION,
    });
    let clear_cache = || -> Result<()> {
        // Keep the clips whose sources are unchanged; the manifest is rebuilt.
        let old: BTreeMap<String, String> = std::fs::read_to_string(cache.join(CLIP_SOURCES))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        remove(&Cache::manifest_path(&cache))?;
        if let Ok(rd) = std::fs::read_dir(cache.join("items")) {
            for e in rd.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.strip_suffix(".clip").unwrap_or(&name);
                if !old.contains_key(id) || old.get(id) != digests.get(id) {
                    remove(&e.path())?;
                }
            }
        }
        Ok(())
    };
    let stage = Stage {
        name: "prepare".into(),
        inputs,
        outputs: Box::new(|| cache_digest(&cache)),
        clear: Box::new(clear_cache),
    };
    let (prep, cache_id) = stages.run(stage, || {
        let r = prepare::run(&PrepareArgs {
            dataset: cfg.dataset.clone(),
            out: cache.clone(),
            preset: features.clone(),
            frames: frames.clone(),
            split: Split::All,
            jobs: cfg.jobs,
            progress: true,
        })?;
        avsc_shared::write_atomic(&cache.join(CLIP_SOURCES), serde_json::to_string_pretty(&digests)?.as_bytes())?;
        eprintln!(
            "prepare: {} prepared, {} cached, {} failed ({:.1} s)",
            r.prepared,
            r.skipped,
            r.failed.len(),
            r.seconds
        );
        Ok(json!({ "prepared": r.prepared, "cached": r.skipped, "failed": r.failed.len(), "folds": r.folds }))
    })?;
    if summary_f64(&prep, &["failed"]) > 0.0 {
        eprintln!(
            "warning: {} clips could not be prepared and are left out (reasons: {})",
            prep["failed"],
            cache.join("prepare-report.json").display()
        );
    }
    let opened = Cache::open(&cache)?;
    for split in [TRAIN_SPLIT, TEST_SPLIT] {
        if opened.items(split).is_empty() {
            bail!("{}: no clip of {split} was prepared", cache.display());
        }
    }

    // Phase I: the five backbones.
    let mut phase1 = BTreeMap::new();
    let mut phase1_ids = BTreeMap::new();
    for role in Role::BACKBONES {
        let dir = runs.join(role.name());
        let train_cfg = &cfg.train_config(role);
        let weights = match cfg.weights(role) {
            Some(p) => Some(file_digest(p)?.with_context(|| format!("{}: weights not found", p.display()))?),
            None => None,
        };
        let files = [dir.join("best.bpk"), dir.join(train::data::SPLIT_FILE)];
        let stage = Stage {
            name: format!("phase1/{}", role.name()),
            inputs: json!({
                "cache": cache_id, "role": role.name(), "size": cfg.size.to_string(),
                "train": recipe(train_cfg), "weights": weights,
            }),
            outputs: Box::new(|| files_digest(&files)),
            clear: Box::new(|| remove(&dir)),
        };
        let (s, id) = stages.run(stage, || {
            let c = TrainConfig { device: cfg.device, resume: true, ..train_cfg.clone() };
            let s = match embed::feature_kind(role) {
                Some(kind) => train::train_audio(&cache, kind, cfg.size, &c, &dir)?,
                None => {
                    let backbone =
                        if role == Role::VisInc { VisualBackbone::InceptionV3 } else { VisualBackbone::ConvNextTiny };
                    if weights.is_none() && cfg.size == SizePreset::Paper {
                        eprintln!(
                            "warning: {}: no ImageNet weights given: trained from random initialisation",
                            role.name()
                        );
                    }
                    train::train_visual(&cache, backbone, cfg.size, cfg.weights(role), &c, &dir)?
                }
            };
            Ok(json!({ "best_val_accuracy": s.best_val_accuracy, "best_epoch": s.best_epoch, "epochs": s.epochs }))
        })?;
        phase1.insert(role.name().to_string(), summary_f64(&s, &["best_val_accuracy"]));
        phase1_ids.insert(role.name().to_string(), id);
    }

    // Embeddings of every clip by the frozen backbones.
    let emb_dir = out.join("embeddings");
    let stage = Stage {
        name: "embed".into(),
        inputs: json!({ "cache": cache_id, "phase1": phase1_ids, "size": cfg.size.to_string(), "frames": cfg.embed_frames }),
        outputs: Box::new(|| dir_digest(&emb_dir)),
        clear: Box::new(|| remove(&emb_dir)),
    };
    stages.run(stage, || {
        let set = embed::run(&EmbedArgs {
            cache: cache.clone(),
            runs: runs.clone(),
            size: cfg.size,
            frames: cfg.embed_frames,
            batch: 32,
            out: emb_dir.clone(),
            device: cfg.device,
        })?;
        Ok(json!({ "clips": set.items.len(), "fingerprint": set.fingerprint() }))
    })?;
    let set = EmbeddingSet::read(&emb_dir)?;

    // Phase II (f1..f6, audio-only and visual-only f4) and the evaluation on fold1_evaluate.
    let heads = out.join("heads");
    let seed = cfg.audio.seed;
    let head_files = || -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = super::table1_specs()
            .iter()
            .flat_map(|s| {
                let d = super::head_dir(&heads, s);
                [d.join("best.bpk"), d.join("head.json")]
            })
            .collect();
        v.push(out.join("eval/metrics.json"));
        v
    };
    let stage = Stage {
        name: "phase2".into(),
        inputs: json!({
            "embeddings": set.fingerprint(),
            "fusion": recipe(&fusion_config(TRAIN_SPLIT, seed, cfg.fusion_epochs)),
            "test_split": TEST_SPLIT,
        }),
        outputs: Box::new(|| files_digest(&head_files())),
        clear: Box::new(|| {
            remove(&heads)?;
            remove(&out.join("eval"))?;
            remove(&out.join("table1.md"))
        }),
    };
    let (p2, phase2_id) = stages.run(stage, || {
        let t = table1(&set, TRAIN_SPLIT, TEST_SPLIT, cfg.fusion_epochs, seed, out, cfg.device)?;
        let scores = |m: Modalities| -> Result<Value> {
            let s = t.get(FusionKind::F4, m).context("f4 head missing")?;
            Ok(json!({ "accuracy": s.accuracy, "log_loss": s.log_loss, "macro_log_loss": s.macro_log_loss, "clips": s.clips }))
        };
        let table: BTreeMap<String, f64> = t
            .results
            .iter()
            .filter(|e| e.spec.modalities == Modalities::Av)
            .map(|e| (e.spec.kind.to_string(), e.scores.accuracy))
            .collect();
        Ok(json!({
            "table1": table,
            "audio": scores(Modalities::Audio)?,
            "visual": scores(Modalities::Visual)?,
            "av": scores(Modalities::Av)?,
            "table1_md": t.table1,
            "modalities_md": t.modalities,
        }))
    })?;

    // The bundle: f32 and int8, calibrated on training clips.
    let bundle = out.join("bundle");
    let (features_b, frames_b) = crate::export::presets(Some(&cache), cfg.feature_preset())?;
    let stage = Stage {
        name: "export".into(),
        inputs: json!({
            "phase1": phase1_ids, "phase2": phase2_id, "cache": cache_id, "size": cfg.size.to_string(),
            "calibration_clips": cfg.calibration_clips, "calibration_split": TRAIN_SPLIT,
        }),
        outputs: Box::new(|| file_digest(&bundle.join("manifest.json"))),
        clear: Box::new(|| remove(&bundle)),
    };
    let (ex, _) = stages.run(stage, || {
        let report = crate::export::export_bundle(&crate::export::ExportArgs {
            runs: runs.clone(),
            heads: heads.clone(),
            fusion: FusionKind::F4,
            size: cfg.size,
            precisions: vec![Precision::F32, Precision::Int8],
            feature_preset: features_b,
            frame_preset: frames_b,
            cache: Some(cache.clone()),
            calibration_clips: cfg.calibration_clips,
            calibration_split: Some(TRAIN_SPLIT.to_string()),
            weight_scales: Default::default(),
            out: bundle.clone(),
        })?;
        Ok(json!({ "f32_bytes": report.bytes(Precision::F32), "int8_bytes": report.bytes(Precision::Int8) }))
    })?;
    eprintln!(
        "bundle: {} (f32 {:.2} MB, int8 {:.2} MB)",
        bundle.display(),
        summary_f64(&ex, &["f32_bytes"]) / 1e6,
        summary_f64(&ex, &["int8_bytes"]) / 1e6
    );

    let plots: Vec<PathBuf> = std::fs::read_dir(out.join("eval"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .chain(Role::BACKBONES.iter().map(|r| runs.join(r.name()).join("curves.png")))
        .collect();
    let table1: BTreeMap<String, f64> = serde_json::from_value(p2["table1"].clone()).context("phase2 record")?;
    let report = Report {
        accuracy_audio: summary_f64(&p2, &["audio", "accuracy"]),
        accuracy_visual: summary_f64(&p2, &["visual", "accuracy"]),
        accuracy_av: summary_f64(&p2, &["av", "accuracy"]),
        log_loss_av: summary_f64(&p2, &["av", "log_loss"]),
        macro_log_loss_av: summary_f64(&p2, &["av", "macro_log_loss"]),
        table1,
        phase1_val_accuracy: phase1,
        minutes: t0.elapsed().as_secs_f64() / 60.0,
        eval_clips: p2["av"]["clips"].as_u64().unwrap_or(0) as usize,
        plots,
        bundle: Some(bundle),
        stages: stages.log.iter().cloned().collect(),
        config: cfg.clone(),
    };
    avsc_shared::write_atomic(&out.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    println!("# avsc train-all: {} ({} clips)\n", TEST_SPLIT, report.eval_clips);
    println!("## Table I (accuracy %, per fusion)\n\n{}", p2["table1_md"].as_str().unwrap_or_default());
    println!("## Audio only / visual only / audio-visual (f4)\n\n{}", p2["modalities_md"].as_str().unwrap_or_default());
    println!(
        "audio {:.1} %, visual {:.1} %, audio-visual {:.1} % (log loss {:.3}); {:.1} minutes",
        100.0 * report.accuracy_audio,
        100.0 * report.accuracy_visual,
        100.0 * report.accuracy_av,
        report.log_loss_av,
        report.minutes
    );
    println!("report: {}", out.join("report.json").display());
    println!("plots: {}", out.join("eval").display());
    for p in &report.plots {
        println!("  {}", p.display());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_network_given_weights_is_fine_tuned_at_the_lower_rate() {
        let cfg =
            ChainConfig { weights_inc: Some("inc.pth".into()), ..ChainConfig::paper("data".into(), "out".into()) };
        let lr = |r: Role| cfg.train_config(r).lr;
        assert_eq!((lr(Role::VisInc), lr(Role::VisConv), lr(Role::AudMel)), (1e-4, 1e-3, 1e-3));
        assert!((cfg.train_config(Role::VisInc).lr_min - 1e-6).abs() < 1e-18);
        assert_eq!(cfg.train_config(Role::VisInc).split, TRAIN_SPLIT);
    }
}
