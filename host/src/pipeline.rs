//! The whole two-phase system end to end: Table I (f1..f6 trained and evaluated), and the
//! one-command demo (synthetic data → prepare → Phase I → embeddings → Phase II → evaluation
//! → bundle → report.json).

use crate::compute::ComputeDevice;
use crate::embed::{self, EmbedArgs, EmbeddingSet};
use crate::evaluate::{self, Evaluated, Scores};
use crate::fusion::{self, FusionKind, FusionSpec, Modalities};
use crate::nets::SizePreset;
use crate::prepare::{self, PrepareArgs};
use crate::synth::{self, SynthConfig};
use crate::train::{self, TrainConfig, TrainSummary, VisualBackbone};
use anyhow::{bail, Context, Result};
use avsc_shared::bundle::{Precision, Role};
use avsc_shared::{FeaturePreset, FramePreset};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
        }
    }
}

#[derive(Serialize)]
pub struct Report {
    pub accuracy_audio: f64,
    pub accuracy_visual: f64,
    pub accuracy_av: f64,
    pub log_loss_av: f64,
    pub macro_log_loss_av: f64,
    /// Fusion name → overall accuracy on the evaluation set.
    pub table1: std::collections::BTreeMap<String, f64>,
    /// Phase-I validation accuracy per backbone.
    pub phase1_val_accuracy: std::collections::BTreeMap<String, f64>,
    pub minutes: f64,
    pub eval_clips: usize,
    pub plots: Vec<PathBuf>,
    pub bundle: Option<PathBuf>,
    pub config: DemoConfig,
}

fn stage(t0: Instant, what: &str) {
    eprintln!("\n== demo [{:5.1} min] {what}", t0.elapsed().as_secs_f64() / 60.0);
}

/// Synthesise `cfg` into `dir` unless a completed copy is there.
fn synth_once(dir: &Path, cfg: &SynthConfig) -> Result<()> {
    let done = dir.join(".complete");
    if done.exists() {
        eprintln!("synth: {} already complete", dir.display());
        return Ok(());
    }
    let pb = crate::progress::bar(cfg.clips_per_class * avsc_shared::NUM_CLASSES, "synth", "clips");
    let n = synth::write(dir, cfg, |d, _| pb.set_position(d as u64))?;
    pb.finish_and_clear();
    avsc_shared::write_atomic(&done, b"")?;
    eprintln!("synth: {n} clips in {}", dir.display());
    Ok(())
}

/// Everything, from nothing. Re-running continues where a previous run stopped.
pub fn demo(cfg: &DemoConfig) -> Result<Report> {
    let t0 = Instant::now();
    let out = &cfg.out;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let (train_split, test_split) = ("fold1_train", "fold1_evaluate");

    stage(t0, "1/7 synthesise a stand-in dataset (audio separates pairs of scenes, pictures other pairs)");
    let train_data = out.join("data/train");
    let eval_data = out.join("data/evaluate");
    let base = SynthConfig::default();
    synth_once(&train_data, &SynthConfig { clips_per_class: cfg.train_clips_per_class, seed: 1, ..base.clone() })?;
    synth_once(
        &eval_data,
        &SynthConfig { clips_per_class: cfg.eval_clips_per_class, seed: 2, prefix: "eval-".into(), ..base },
    )?;

    stage(t0, "2/7 prepare: spectrograms (MEL, GAM, CQT) and frames into the feature cache");
    let cache = out.join("cache");
    for (data, split) in [(&train_data, train_split), (&eval_data, test_split)] {
        let r = prepare::run(&PrepareArgs {
            dataset: data.clone(),
            out: cache.clone(),
            preset: FeaturePreset::paper(),
            frames: FramePreset::default(),
            split: crate::dataset::Split::parse(split)?,
            jobs: cfg.jobs,
            progress: false,
        })?;
        if !r.failed.is_empty() {
            bail!("prepare: {} clips failed (see {})", r.failed.len(), cache.join("prepare-report.json").display());
        }
        eprintln!("prepare {split}: {} prepared, {} cached ({:.1} s)", r.prepared, r.skipped, r.seconds);
    }

    stage(t0, &format!("3/7 Phase I: five backbones (tiny preset, {})", cfg.device));
    let runs = out.join("runs");
    let mut phase1 = std::collections::BTreeMap::new();
    for role in Role::BACKBONES {
        let run_dir = runs.join(role.name());
        eprintln!("-- {}", role.name());
        let s = if let Some(kind) = embed::feature_kind(role) {
            let c = TrainConfig {
                epochs: cfg.audio_epochs,
                // Small batches: ~110 training clips give 14 steps an epoch.
                batch_size: 8,
                lr: 3e-3,
                lr_min: 3e-5,
                seed: cfg.seed,
                split: train_split.into(),
                resume: true,
                device: cfg.device,
                ..TrainConfig::default()
            };
            train::train_audio(&cache, kind, SizePreset::Tiny, &c, &run_dir)?
        } else {
            let backbone =
                if role == Role::VisInc { VisualBackbone::InceptionV3 } else { VisualBackbone::ConvNextTiny };
            let c = TrainConfig {
                epochs: cfg.visual_epochs,
                batch_size: 8,
                lr: 2e-3,
                lr_min: 2e-5,
                seed: cfg.seed,
                split: train_split.into(),
                frames_per_clip: 2,
                eval_frames: cfg.frames,
                resume: true,
                device: cfg.device,
                ..TrainConfig::default()
            };
            train::train_visual(&cache, backbone, SizePreset::Tiny, None, &c, &run_dir)?
        };
        phase1.insert(role.name().to_string(), s.best_val_accuracy);
    }

    stage(t0, "4/7 embeddings of every clip (frozen backbones)");
    let emb_dir = out.join("embeddings");
    let set = embed::run(&EmbedArgs {
        cache: cache.clone(),
        runs: runs.clone(),
        size: SizePreset::Tiny,
        frames: cfg.frames,
        batch: 32,
        out: emb_dir,
        device: cfg.device,
    })?;

    stage(t0, "5/7 Phase II: fusion heads f1..f6, audio-only and visual-only f4; 6/7 evaluation");
    let t = table1(&set, train_split, test_split, cfg.fusion_epochs, cfg.seed, out, cfg.device)?;

    stage(t0, "7/7 export the bundle");
    let bundle = export_bundle(out, &runs, &out.join("heads"), train_split)?;

    let f4 = |m: Modalities| t.get(FusionKind::F4, m).context("f4 head missing");
    let (audio, visual, av) = (f4(Modalities::Audio)?, f4(Modalities::Visual)?, f4(Modalities::Av)?);
    let plots: Vec<PathBuf> = std::fs::read_dir(out.join("eval"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .chain(Role::BACKBONES.iter().map(|r| runs.join(r.name()).join("curves.png")))
        .collect();
    let report = Report {
        accuracy_audio: audio.accuracy,
        accuracy_visual: visual.accuracy,
        accuracy_av: av.accuracy,
        log_loss_av: av.log_loss,
        macro_log_loss_av: av.macro_log_loss,
        table1: t
            .results
            .iter()
            .filter(|e| e.spec.modalities == Modalities::Av)
            .map(|e| (e.spec.kind.to_string(), e.scores.accuracy))
            .collect(),
        phase1_val_accuracy: phase1,
        minutes: t0.elapsed().as_secs_f64() / 60.0,
        eval_clips: av.clips,
        plots,
        bundle,
        config: cfg.clone(),
    };
    avsc_shared::write_atomic(&out.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    println!("# avsc demo: evaluation set ({} clips)\n", av.clips);
    println!("## Table I (accuracy %, per fusion)\n\n{}", t.table1);
    println!("## Audio only / visual only / audio-visual (f4)\n\n{}", t.modalities);
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

/// The bundle step of the demo: f32 and int8 files of the five backbones and the f4 heads in
/// `OUT/bundle`, int8 calibrated on training clips.
fn export_bundle(out: &Path, runs: &Path, heads: &Path, train_split: &str) -> Result<Option<PathBuf>> {
    let cache = out.join("cache");
    let (feature_preset, frame_preset) = crate::export::presets(Some(&cache), FeaturePreset::paper())?;
    let dir = out.join("bundle");
    let report = crate::export::export_bundle(&crate::export::ExportArgs {
        runs: runs.to_path_buf(),
        heads: heads.to_path_buf(),
        fusion: FusionKind::F4,
        size: SizePreset::Tiny,
        precisions: vec![Precision::F32, Precision::Int8],
        feature_preset,
        frame_preset,
        cache: Some(cache),
        calibration_clips: 64,
        calibration_split: Some(train_split.to_string()),
        weight_scales: Default::default(),
        out: dir.clone(),
    })?;
    eprintln!(
        "bundle: {} (f32 {:.2} MB, int8 {:.2} MB)",
        dir.display(),
        report.bytes(Precision::F32) as f64 / 1e6,
        report.bytes(Precision::Int8) as f64 / 1e6
    );
    Ok(Some(dir))
}
