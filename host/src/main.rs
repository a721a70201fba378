use anyhow::Result;
use avsc_host::dataset::Split;
use avsc_host::nets::torchvision::{import_torchvision, Backbone};
use avsc_host::nets::SizePreset;
use avsc_host::prepare::{self, PrepareArgs};
use avsc_host::progress;
use avsc_host::synth::{self, SynthConfig};
use avsc_host::train::{self, TrainConfig, TrainSummary, VisualBackbone};
use avsc_shared::FramePreset;
use avsc_shared::{FeatureKind, FeaturePreset};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "avsc-host",
    version,
    about = "avsc host: audio-visual scene classification — features, training, evaluation, export",
    long_about = "avsc host: ingest the TAU Urban Audio-Visual Scenes 2021 dataset (or your own recordings), \
compute MEL / Gammatone / CQT spectrograms and video frames, train the two-phase model of Pham et al. (2023) \
and export model bundles for avsc-device.\n\nProgress and notes go to stderr, results to stdout."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// Slaney mel power spectrogram
    Mel,
    /// Ellis FFT-weight gammatone spectrogram
    Gam,
    /// librosa constant-Q transform (24 bins/octave from 10 Hz)
    Cqt,
}

impl From<Kind> for FeatureKind {
    fn from(k: Kind) -> FeatureKind {
        match k {
            Kind::Mel => FeatureKind::Mel,
            Kind::Gam => FeatureKind::Gam,
            Kind::Cqt => FeatureKind::Cqt,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Preset {
    /// 4096-point FFT, 2560 window, 1024 hop, uncentred: 128x309 for 10 s (the paper's shapes)
    Paper,
    /// the paper's text taken literally: 2560 window, 448 hop (14 ms), centred
    Hop14,
}

/// Phase-I training options shared by train-audio and train-visual.
#[derive(clap::Args)]
struct TrainOpts {
    /// Feature cache made by `prepare`.
    #[arg(long)]
    cache: PathBuf,
    /// Output folder: metrics.csv, best.bpk, checkpoint/.
    #[arg(long)]
    out: PathBuf,
    /// Network widths: paper (published) or tiny (CPU demo).
    #[arg(long, default_value = "paper")]
    size: String,
    /// Cache split to train on (its items are split by location into train/validation).
    #[arg(long, default_value = "fold1_train")]
    split: String,
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate (cosine schedule down to 1 % of it).
    #[arg(long)]
    lr: Option<f64>,
    /// λ of the λ/2‖Θ‖² penalty.
    #[arg(long, default_value_t = 1e-4)]
    l2: f64,
    /// Mixup α (0 disables mixup).
    #[arg(long, default_value_t = 0.4)]
    mixup_alpha: f64,
    /// Fraction of training items (whole locations) held out for validation.
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue from OUT/checkpoint after the last finished epoch.
    #[arg(long)]
    resume: bool,
}

impl TrainOpts {
    fn config(&self, default_lr: f64) -> TrainConfig {
        let lr = self.lr.unwrap_or(default_lr);
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr,
            lr_min: lr * 0.01,
            weight_decay: self.l2,
            mixup_alpha: self.mixup_alpha,
            seed: self.seed,
            val_fraction: self.val_fraction,
            split: self.split.clone(),
            resume: self.resume,
            ..TrainConfig::default()
        }
    }
}

fn report_training(what: &str, s: &TrainSummary) {
    eprintln!(
        "{what}: best validation accuracy {:.3} (log loss {:.3}) at epoch {}; model {}",
        s.best_val_accuracy,
        s.best_val_log_loss,
        s.best_epoch,
        s.best_model.display()
    );
}

#[derive(Subcommand)]
enum Cmd {
    /// Prepare a dataset split for training: spectrograms and frames into a feature cache.
    ///
    /// For each clip: MEL, GAM and CQT dB spectrograms (deltas are added on load) and the
    /// frames at 2 per second, 224x224. Resumable: clips already in the cache are skipped.
    /// Failed clips are reported (one line each, and in CACHE/prepare-report.json) and the
    /// others still prepared; the exit code is 2 if anything failed.
    Prepare {
        /// Dataset root: TAU Urban Audio-Visual Scenes 2021 layout or <label>/<clip> folders.
        #[arg(long)]
        dataset: PathBuf,
        /// Cache folder (created if needed).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "paper")]
        preset: Preset,
        /// fold1_train, fold1_evaluate, fold1_test or all (the folder layout only has all).
        #[arg(long, default_value = "all")]
        split: String,
        /// Worker threads (default: all cores).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Phase I: train one audio network (Aud-MEL, Aud-GAM or Aud-CQT) on a prepared cache.
    ///
    /// Residual-inception CNN on the 6-channel spectrogram stack, mixup, KL loss + L2, Adam
    /// with a cosine schedule. Per epoch: train loss, validation accuracy and log loss on
    /// stderr and in OUT/metrics.csv; a checkpoint every epoch (`--resume` continues).
    TrainAudio {
        #[arg(long, value_enum)]
        feature: Kind,
        #[command(flatten)]
        opts: TrainOpts,
    },
    /// Phase I: fine-tune one visual network (Vis-INC or Vis-CONV) on a prepared cache.
    ///
    /// Trained on frames with the clip label, evaluated per clip by averaging the frame
    /// probabilities. `--weights` takes a record from `import-weights` (ImageNet start) or a
    /// torchvision checkpoint directly.
    TrainVisual {
        /// inception-v3 or convnext-tiny
        #[arg(long)]
        backbone: String,
        /// Initial weights: burn record (.bpk) or torchvision checkpoint.
        #[arg(long)]
        weights: Option<PathBuf>,
        #[command(flatten)]
        opts: TrainOpts,
    },
    /// Import torchvision ImageNet weights into a visual backbone (paper widths).
    ///
    /// Reads a torchvision state dict (`.safetensors`, or `.pth`/`.pt`) of `inception_v3`
    /// or `convnext_tiny` through an explicit key-mapping table (host/src/nets/torchvision.rs)
    /// and writes a burn record for `train-visual --weights`. Nothing is downloaded: give the
    /// file. The Dense block FC(1024) -> FC(10) starts fresh.
    ImportWeights {
        /// inception-v3 or convnext-tiny
        #[arg(long)]
        backbone: String,
        /// torchvision checkpoint file.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Output burn record (written atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a synthetic stand-in dataset (folder layout: <label>/<clip>.wav + frame PNGs).
    ///
    /// Audio separates the scenes only in pairs {airport, bus}, {metro, metro_station}, ...;
    /// pictures only in the shifted pairs {bus, metro}, ..., {tram, airport}; a faint,
    /// overlapping per-class cue in each. So audio-only and visual-only models are both
    /// imperfect and fusion helps, as in the paper. Deterministic per seed.
    Synth {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 24)]
        clips_per_class: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Audio nuisance level (1 = default; higher buries the audio cue deeper).
        #[arg(long, default_value_t = 1.0)]
        audio_noise: f64,
        /// Visual nuisance level (1 = default).
        #[arg(long, default_value_t = 1.0)]
        visual_noise: f64,
    },
    /// Compute one spectrogram of a WAV file and write it as a NumPy .npy (float32).
    ///
    /// Output shape (2, 128, T) in dB (channel, frequency bin with 0 lowest, frame), or with
    /// --deltas the network input [S_L, S_R, Δ_L, Δ_R, ΔΔ_L, ΔΔ_R]: (6, 128, T-4) in the
    /// paper preset. Any PCM 16/24/32-bit or float32 WAV, any rate (resampled to 32 kHz),
    /// mono (duplicated to both channels) or stereo.
    Features {
        /// Input WAV file.
        input: PathBuf,
        /// Which spectrogram.
        #[arg(long, value_enum)]
        kind: Kind,
        /// Feature preset.
        #[arg(long, value_enum, default_value = "paper")]
        preset: Preset,
        /// Add delta and delta-delta channels (6-channel network input).
        #[arg(long)]
        deltas: bool,
        /// Output .npy path (written atomically).
        #[arg(long)]
        out: PathBuf,
    },
}

fn preset_by(p: Preset) -> Result<FeaturePreset> {
    FeaturePreset::by_name(match p {
        Preset::Paper => "paper",
        Preset::Hop14 => "hop14",
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Prepare { dataset, out, preset, split, jobs } => {
            let args = PrepareArgs {
                dataset,
                out: out.clone(),
                preset: preset_by(preset)?,
                frames: FramePreset::default(),
                split: Split::parse(&split)?,
                jobs: jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                progress: std::io::stderr().is_terminal(),
            };
            let r = prepare::run(&args)?;
            eprintln!(
                "prepare: {} prepared, {} already cached, {} failed in {:.1} s; report: {}",
                r.prepared,
                r.skipped,
                r.failed.len(),
                r.seconds,
                out.join("prepare-report.json").display()
            );
            if !r.failed.is_empty() {
                std::process::exit(2);
            }
        }
        Cmd::TrainAudio { feature, opts } => {
            let size: SizePreset = opts.size.parse()?;
            let s = train::train_audio(&opts.cache, feature.into(), size, &opts.config(1e-3), &opts.out)?;
            report_training("train-audio", &s);
        }
        Cmd::TrainVisual { backbone, weights, opts } => {
            let size: SizePreset = opts.size.parse()?;
            let backbone: VisualBackbone = backbone.parse()?;
            let cfg = opts.config(if weights.is_some() { 1e-4 } else { 1e-3 });
            let s = train::train_visual(&opts.cache, backbone, size, weights.as_deref(), &cfg, &opts.out)?;
            report_training("train-visual", &s);
        }
        Cmd::ImportWeights { backbone, checkpoint, out } => {
            let backbone: Backbone = backbone.parse()?;
            let device = burn::prelude::Device::flex();
            let imported = import_torchvision(backbone, &checkpoint, &device)?;
            imported.net.save(&out)?;
            eprintln!(
                "import-weights: {} tensors from {} into {} ({} parameters); new Dense block: {}",
                imported.loaded,
                checkpoint.display(),
                out.display(),
                imported.net.trainable_params(),
                imported.fresh.join(", ")
            );
        }
        Cmd::Synth { out, clips_per_class, seed, audio_noise, visual_noise } => {
            let cfg = SynthConfig { clips_per_class, seed, audio_noise, visual_noise, ..Default::default() };
            let pb = progress::bar(clips_per_class * avsc_shared::NUM_CLASSES, "synth", "clips");
            let n = synth::write(&out, &cfg, |done, _| pb.set_position(done as u64))?;
            pb.finish();
            eprintln!("synth: {n} clips in {}", out.display());
        }
        Cmd::Features { input, kind, preset, deltas, out } => {
            let preset = preset_by(preset)?;
            let shape = avsc_host::features::run(&input, kind.into(), &preset, deltas, &out)?;
            println!("{}: {:?} float32", out.display(), shape);
        }
    }
    Ok(())
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        // One line: the context chain names the file and what was wrong.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
