//! The whole two-phase system end to end: Table I (f1..f6 trained and evaluated), the
//! one-command chain from a dataset to a bundle ([`chain::train_all`], with its stage records
//! in [`stage`] and [`sources`]), and the demo: a synthetic TAU-shaped set through that same
//! chain at the tiny settings.

pub mod chain;
pub mod cli;
pub mod sources;
pub mod stage;

pub use chain::{train_all, ChainConfig};

use crate::compute::ComputeDevice;
use crate::embed::EmbeddingSet;
use crate::evaluate::{self, Evaluated, Scores};
use crate::fusion::{self, FusionKind, FusionSpec, Modalities};
use crate::nets::resinception::InputNorm;
use crate::nets::SizePreset;
use crate::synth::{self, SynthConfig};
use crate::train::{TrainConfig, TrainSummary};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Phase II hyper-parameters (the heads are small: more epochs, a higher rate).
pub fn fusion_config(train_split: &str, seed: u64, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        lr: 3e-3,
        lr_min: 3e-5,
        weight_decay: 1e-4,
        mixup_alpha: 0.4,
        seed,
        val_fraction: 0.2,
        split: train_split.into(),
        resume: true,
        ..TrainConfig::default()
    }
}

/// The heads Table I and Figure 4 need: f1..f6 over all five embeddings, and f4 over the audio
/// or the visual ones.
pub fn table1_specs() -> Vec<FusionSpec> {
    let mut v: Vec<FusionSpec> =
        FusionKind::ALL.iter().map(|&k| FusionSpec::new(k, Modalities::Av).expect("av takes every fusion")).collect();
    v.push(FusionSpec::new(FusionKind::F4, Modalities::Audio).expect("f4"));
    v.push(FusionSpec::new(FusionKind::F4, Modalities::Visual).expect("f4"));
    v
}

/// Run folder of a head under `root`: `av_f4`, `audio_f4`, ...
pub fn head_dir(root: &Path, spec: &FusionSpec) -> PathBuf {
    root.join(format!("{}_{}", spec.modalities.name(), spec.kind))
}

pub struct Table1 {
    pub results: Vec<Evaluated>,
    /// Per-class accuracy of f1..f6 (Table I), Markdown.
    pub table1: String,
    /// Audio f4 / visual f4 / audio-visual f4 (Table II's last row, Figure 4), Markdown.
    pub modalities: String,
}

impl Table1 {
    pub fn get(&self, kind: FusionKind, m: Modalities) -> Option<&Scores> {
        self.results.iter().find(|e| e.spec.kind == kind && e.spec.modalities == m).map(|e| &e.scores)
    }
}

/// Train every head of [`table1_specs`] on `train_split` (resuming finished or partial runs)
/// and evaluate it on `test_split`; writes the runs under `out/heads`, the evaluation
/// (metrics, confusion CSV + PNG, submission) under `out/eval` and `out/table1.md`.
pub fn table1(
    set: &EmbeddingSet,
    train_split: &str,
    test_split: &str,
    epochs: usize,
    seed: u64,
    out: &Path,
    device: ComputeDevice,
) -> Result<Table1> {
    let heads_root = out.join("heads");
    let mut dirs = Vec::new();
    for spec in table1_specs() {
        let dir = head_dir(&heads_root, &spec);
        let cfg = TrainConfig { device, ..fusion_config(train_split, seed, epochs) };
        let s: TrainSummary = fusion::train(set, spec, &cfg, &dir)?;
        eprintln!(
            "{} {}: validation accuracy {:.3} (best epoch {})",
            spec.modalities.name(),
            spec.kind,
            s.best_val_accuracy,
            s.best_epoch
        );
        dirs.push(dir);
    }
    let (results, written) = evaluate::run(set, &dirs, test_split, &out.join("eval"), device)?;
    let pick = |m: Modalities| -> Vec<(String, &Scores)> {
        results.iter().filter(|e| e.spec.modalities == m).map(|e| (e.spec.kind.to_string(), &e.scores)).collect()
    };
    let table1 = evaluate::markdown_table(&pick(Modalities::Av));
    let f4 = |m: Modalities| results.iter().find(|e| e.spec.kind == FusionKind::F4 && e.spec.modalities == m);
    let cols: Vec<(String, &Scores)> = [Modalities::Audio, Modalities::Visual, Modalities::Av]
        .iter()
        .filter_map(|&m| f4(m).map(|e| (format!("{} (f4)", m.name()), &e.scores)))
        .collect();
    let modalities = evaluate::markdown_table(&cols);
    let doc = format!(
        "# Table I: accuracy (%) per fusion on {test_split}\n\n{table1}\n# Audio / visual / audio-visual (f4)\n\n{modalities}\nMetrics: {}\n",
        written.metrics.display()
    );
    avsc_shared::write_atomic(&out.join("table1.md"), doc.as_bytes())?;
    Ok(Table1 { results, table1, modalities })
}

/// The demo's settings. Defaults fit the 15-minute budget on 2 cores.
#[derive(Clone, Debug, Serialize)]
pub struct DemoConfig {
    pub out: PathBuf,
    pub train_clips_per_class: usize,
    pub eval_clips_per_class: usize,
    pub audio_epochs: usize,
    pub visual_epochs: usize,
    pub fusion_epochs: usize,
    /// Evenly spaced frames per clip for the visual embeddings and validation.
    pub frames: usize,
    pub seed: u64,
    pub jobs: usize,
    /// Where the networks train and embed.
    pub device: ComputeDevice,
    pub audio_norm: InputNorm,
}

impl DemoConfig {
    pub fn new(out: PathBuf) -> DemoConfig {
        DemoConfig {
            out,
            train_clips_per_class: 16,
            eval_clips_per_class: 8,
            audio_epochs: 8,
            visual_epochs: 5,
            fusion_epochs: 30,
            frames: 6,
            seed: 0,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            device: ComputeDevice::Cpu,
            audio_norm: InputNorm::default(),
        }
    }

    /// Where the synthetic dataset goes.
    pub fn dataset(&self) -> PathBuf {
        self.out.join("dataset")
    }

    /// `train-all` at the tiny settings: small batches (~110 training clips give 14 steps an
    /// epoch), higher rates, 2 random frames per clip and epoch.
    pub fn chain(&self) -> ChainConfig {
        let audio = TrainConfig {
            epochs: self.audio_epochs,
            batch_size: 8,
            lr: 3e-3,
            lr_min: 3e-5,
            seed: self.seed,
            split: chain::TRAIN_SPLIT.into(),
            resume: true,
            input_norm: self.audio_norm,
            ..TrainConfig::default()
        };
        let visual = TrainConfig {
            epochs: self.visual_epochs,
            lr: 2e-3,
            lr_min: 2e-5,
            frames_per_clip: 2,
            eval_frames: self.frames,
            ..audio.clone()
        };
        ChainConfig {
            size: SizePreset::Tiny,
            audio,
            visual,
            embed_frames: self.frames,
            fusion_epochs: self.fusion_epochs,
            calibration_clips: 64,
            jobs: self.jobs,
            device: self.device,
            ..ChainConfig::paper(self.dataset(), self.out.clone())
        }
    }
}

/// What `train-all` (and so the demo) reports in OUT/report.json.
#[derive(Serialize)]
pub struct Report {
    pub accuracy_audio: f64,
    pub accuracy_visual: f64,
    pub accuracy_av: f64,
    pub log_loss_av: f64,
    pub macro_log_loss_av: f64,
    /// Fusion name → overall accuracy on the evaluation set.
    pub table1: BTreeMap<String, f64>,
    /// Phase-I validation accuracy per backbone.
    pub phase1_val_accuracy: BTreeMap<String, f64>,
    pub minutes: f64,
    pub eval_clips: usize,
    pub plots: Vec<PathBuf>,
    pub bundle: Option<PathBuf>,
    /// How each stage went in this run: ran, resumed or up_to_date.
    pub stages: BTreeMap<String, stage::Outcome>,
    pub config: ChainConfig,
}

/// Everything, from nothing: a synthetic TAU-shaped dataset (audio separates pairs of scenes,
/// pictures other pairs; the evaluation clips come from other places), then [`train_all`].
/// Re-running redoes only what changed.
pub fn demo(cfg: &DemoConfig) -> Result<Report> {
    let data = cfg.dataset();
    let base = SynthConfig::default();
    let train = SynthConfig { clips_per_class: cfg.train_clips_per_class, seed: 1, ..base.clone() };
    let eval = SynthConfig { clips_per_class: cfg.eval_clips_per_class, seed: 2, prefix: "eval-".into(), ..base };
    let done = data.join(".complete");
    let wanted = format!("{} {}\n", cfg.train_clips_per_class, cfg.eval_clips_per_class);
    if std::fs::read_to_string(&done).ok().as_deref() == Some(wanted.as_str()) {
        eprintln!("synth: {} already complete", data.display());
    } else {
        eprintln!("== synth: a stand-in dataset in the TAU layout ({})", data.display());
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        let pb = crate::progress::bar(
            (train.clips_per_class + eval.clips_per_class) * avsc_shared::NUM_CLASSES,
            "synth",
            "clips",
        );
        let n = synth::write_tau(&data, &train, &eval, |d, _| pb.set_position(d as u64))?;
        pb.finish_and_clear();
        avsc_shared::write_atomic(&done, wanted.as_bytes())?;
        eprintln!("synth: {n} clips in {}", data.display());
    }
    train_all(&cfg.chain())
}
