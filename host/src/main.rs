use anyhow::Result;
use avsc_host::dataset::Split;
use avsc_host::embed::EmbeddingSet;
use avsc_host::fusion::{FusionKind, FusionSpec, Modalities};
use avsc_host::nets::resinception::InputNorm;
use avsc_host::nets::torchvision::{import_torchvision, Backbone};
use avsc_host::nets::SizePreset;
use avsc_host::pipeline;
use avsc_host::prepare::{self, PrepareArgs};
use avsc_host::progress;
use avsc_host::synth::{self, SynthConfig};
use avsc_host::train::cli::{report_training, DeviceArg, TrainOpts};
use avsc_host::train::{self, TrainConfig, VisualBackbone};
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
    /// paper with a fixed dB floor (no window-relative top_db): spectrograms computable as
    /// the window fills, for networks with fixed input normalisation
    Stream,
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
        /// Which clips to prepare: all, fold1_train, fold1_evaluate or fold1_test (the folder
        /// layout only has all). Each clip records the TAU folds that list it either way, so
        /// the default (all) serves training on fold1_train and evaluation on fold1_evaluate.
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
        /// Input normalisation: per-example (standardised over each window) or fixed
        /// (training-set mean and std per channel and bin, stored in the model; use a cache
        /// prepared with --preset stream so no feature depends on the whole window).
        #[arg(long, default_value = "per-example")]
        input_norm: InputNorm,
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
        /// Random frames per training clip and epoch (0: all of them, as the paper trains;
        /// a small number makes quick runs).
        #[arg(long, default_value_t = 0)]
        frames_per_clip: usize,
        /// Evenly spaced frames per validation clip (0: every frame).
        #[arg(long, default_value_t = 0)]
        eval_frames: usize,
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
    /// Write a synthetic stand-in dataset (folder layout: <label>/<clip>.wav + frame PNGs;
    /// with --evaluate-clips-per-class, the TAU layout with folds).
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
        /// Prefix of every clip (and location) name: keeps a training and an evaluation set
        /// apart in one cache.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Also write this many evaluation clips per class (other places, seed + 1) and the
        /// TAU layout's meta.csv and evaluation_setup/ (fold1_train, fold1_evaluate,
        /// fold1_test), as `train-all` reads.
        #[arg(long)]
        evaluate_clips_per_class: Option<usize>,
        /// TAU's sizes: 48 kHz 24-bit WAV and 1280x720 H.264 MP4 at 30 frames a second (to
        /// measure costs at real size without the dataset).
        #[arg(long)]
        tau_size: bool,
    },
    /// Phase II, step 1: run the five frozen backbones over a prepared cache.
    ///
    /// Per clip and backbone: the FC(1024) activations and the FC(10) logits (a visual clip:
    /// the mean over its frames), into EMB/index.json + EMB/<role>.fc1024.npy / .fc10.npy.
    /// The backbones are read from RUNS/<role>/best.bpk (role: aud_mel, aud_gam, aud_cqt,
    /// vis_inc, vis_conv).
    Embed {
        #[arg(long)]
        cache: PathBuf,
        /// Folder with the five Phase-I run folders.
        #[arg(long)]
        runs: PathBuf,
        /// Network widths the runs were trained with.
        #[arg(long, default_value = "paper")]
        size: String,
        /// Evenly spaced frames per clip averaged for the visual embeddings (0: all).
        #[arg(long, default_value_t = 0)]
        frames: usize,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        dev: DeviceArg,
    },
    /// Phase II: train one fusion head (f1..f6 + FC(10) + softmax) on frozen embeddings.
    ///
    /// Mixup on embeddings, KL loss + L2, Adam; validation on the clips Phase I held out
    /// (same location split and seed). `--modalities audio|visual` trains the f4-style head
    /// over the audio or the visual embeddings only (Figure 4).
    TrainFusion {
        #[arg(long)]
        embeddings: PathBuf,
        /// f1, f2, f3 (FC(1024) embeddings) or f4, f5, f6 (FC(10) logits).
        #[arg(long, default_value = "f4")]
        fusion: String,
        /// av (all five), audio or visual.
        #[arg(long, default_value = "av")]
        modalities: String,
        #[arg(long, default_value = "fold1_train")]
        split: String,
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Continue from OUT/checkpoint after the last finished epoch.
        #[arg(long)]
        resume: bool,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        dev: DeviceArg,
    },
    /// Evaluate trained fusion heads as DCASE scores them.
    ///
    /// Accuracy (overall, per class), log loss and macro log loss, confusion matrices (CSV and
    /// PNG), a DCASE submission file (TAB separated) and a Markdown summary, into OUT.
    Evaluate {
        #[arg(long)]
        embeddings: PathBuf,
        /// Head run folders (each with head.json and best.bpk).
        #[arg(long = "head", required = true)]
        heads: Vec<PathBuf>,
        #[arg(long, default_value = "fold1_evaluate")]
        split: String,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        dev: DeviceArg,
    },
    /// Table I: train and evaluate f1..f6 (and the audio-only / visual-only f4 heads).
    ///
    /// Prints the per-class accuracy of every fusion as Markdown, and the audio / visual /
    /// audio-visual comparison; writes OUT/table1.md, OUT/heads/, OUT/eval/.
    Table1 {
        #[arg(long)]
        embeddings: PathBuf,
        #[arg(long, default_value = "fold1_train")]
        train_split: String,
        #[arg(long, default_value = "fold1_evaluate")]
        test_split: String,
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        dev: DeviceArg,
    },
    /// The whole chain on a dataset with official folds (TAU layout), in one command.
    ///
    /// prepare (every clip, tagged with its folds) -> the five Phase-I networks on
    /// fold1_train -> embeddings -> Phase II (f1..f6, audio-only and visual-only f4) ->
    /// evaluation on fold1_evaluate (Table I, confusion matrices, submission) -> f32 and int8
    /// bundle -> OUT/report.json. Defaults are the paper's recipe. Each stage is skipped when
    /// what it reads is unchanged (content digests in OUT/stages/), redone when it changed,
    /// and continued when interrupted.
    TrainAll(avsc_host::pipeline::cli::TrainAllCli),
    /// The whole system in one command, from nothing (about 10 minutes on 2 CPU cores).
    ///
    /// Synthesises a stand-in dataset in the TAU layout (OUT/dataset), then runs `train-all`
    /// on it at the tiny settings: prepare, the five Phase-I networks, the Phase-II heads,
    /// evaluation on the held-out places, the bundle, OUT/report.json, Table I, confusion
    /// matrices and training curves. Re-running redoes only what changed.
    Demo {
        #[arg(long, default_value = "demo")]
        out: PathBuf,
        /// Training clips per class (evaluation: half as many, other places).
        #[arg(long, default_value_t = 16)]
        clips_per_class: usize,
        #[arg(long, default_value_t = 8)]
        audio_epochs: usize,
        #[arg(long, default_value_t = 5)]
        visual_epochs: usize,
        #[arg(long, default_value_t = 30)]
        fusion_epochs: usize,
        /// Seed of every training run (the dataset stays the same).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Audio input normalisation (see train-all).
        #[arg(long, default_value = "per-example")]
        audio_norm: InputNorm,
        #[command(flatten)]
        dev: DeviceArg,
    },
    /// Export the trained networks as a model bundle for avsc-device (ONNX + manifest.json).
    ///
    /// Reads the five Phase-I backbones from RUNS/<role>/best.bpk and the Phase-II heads from
    /// HEADS/av_<fusion>, HEADS/audio_f4 and HEADS/visual_f4; writes one ONNX file per network
    /// (ROLE.onnx, and ROLE.int8.onnx for int8) and OUT/manifest.json with every file's role,
    /// shapes, precision and sha256. Each file is checked by loading it in tract. int8 needs
    /// --cache (calibration clips); the feature and frame presets come from the cache too.
    /// Format: models/README.md.
    Export(avsc_host::export::cli::ExportCli),
    /// Time a training step or an inference pass of a Phase-I network on a device.
    ///
    /// One JSON line on stdout, a readable line on stderr; the PyTorch reference is
    /// host/benches/reference_torch_step.py. host/gpu/bench.sh runs every case on a GPU.
    Bench(avsc_host::bench::BenchArgs),
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

fn parse_modalities(s: &str) -> Result<Modalities> {
    Ok(match s {
        "av" => Modalities::Av,
        "audio" => Modalities::Audio,
        "visual" => Modalities::Visual,
        _ => anyhow::bail!("unknown modalities {s:?} (expected av, audio or visual)"),
    })
}

fn preset_by(p: Preset) -> Result<FeaturePreset> {
    FeaturePreset::by_name(match p {
        Preset::Paper => "paper",
        Preset::Hop14 => "hop14",
        Preset::Stream => "stream",
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
            let folds: Vec<String> = r.folds.iter().map(|(f, n)| format!("{f} {n}")).collect();
            eprintln!(
                "prepare: {} prepared, {} already cached, {} failed in {:.1} s; cache clips per fold: {}; report: {}",
                r.prepared,
                r.skipped,
                r.failed.len(),
                r.seconds,
                folds.join(", "),
                out.join("prepare-report.json").display()
            );
            if !r.failed.is_empty() {
                std::process::exit(2);
            }
        }
        Cmd::TrainAudio { feature, input_norm, opts } => {
            let size: SizePreset = opts.size.parse()?;
            let mut cfg = opts.config(1e-3)?;
            if opts.config.is_none() {
                cfg.input_norm = input_norm;
            }
            let s = train::train_audio(&opts.cache, feature.into(), size, &cfg, &opts.out)?;
            report_training("train-audio", &s);
        }
        Cmd::TrainVisual { backbone, weights, frames_per_clip, eval_frames, opts } => {
            let size: SizePreset = opts.size.parse()?;
            let backbone: VisualBackbone = backbone.parse()?;
            let mut cfg = opts.config(if weights.is_some() { 1e-4 } else { 1e-3 })?;
            match &opts.config {
                None => (cfg.frames_per_clip, cfg.eval_frames) = (frames_per_clip, eval_frames),
                Some(c) if (frames_per_clip, eval_frames) != (0, 0) => {
                    anyhow::bail!(
                        "{}: --config carries the frame counts; drop --frames-per-clip / --eval-frames",
                        c.display()
                    )
                }
                Some(_) => {}
            }
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
        Cmd::Synth {
            out,
            clips_per_class,
            seed,
            audio_noise,
            visual_noise,
            prefix,
            evaluate_clips_per_class,
            tau_size,
        } => {
            let cfg = SynthConfig { clips_per_class, seed, audio_noise, visual_noise, prefix, ..Default::default() };
            let cfg = if tau_size { cfg.tau_size() } else { cfg };
            let total = clips_per_class + evaluate_clips_per_class.unwrap_or(0);
            let pb = progress::bar(total * avsc_shared::NUM_CLASSES, "synth", "clips");
            let n = match evaluate_clips_per_class {
                None => synth::write(&out, &cfg, |done, _| pb.set_position(done as u64))?,
                Some(e) => {
                    let eval = SynthConfig {
                        clips_per_class: e,
                        seed: cfg.seed + 1,
                        prefix: format!("{}eval-", cfg.prefix),
                        ..cfg.clone()
                    };
                    synth::write_tau(&out, &cfg, &eval, |done, _| pb.set_position(done as u64))?
                }
            };
            pb.finish();
            eprintln!("synth: {n} clips in {}", out.display());
        }
        Cmd::Embed { cache, runs, size, frames, batch_size, out, dev } => {
            let set = avsc_host::embed::run(&avsc_host::embed::EmbedArgs {
                cache,
                runs,
                size: size.parse()?,
                frames,
                batch: batch_size,
                out: out.clone(),
                device: dev.device,
            })?;
            eprintln!("embed: {} clips x 5 backbones into {}", set.len(), out.display());
        }
        Cmd::TrainFusion { embeddings, fusion, modalities, split, epochs, seed, resume, out, dev } => {
            let set = EmbeddingSet::read(&embeddings)?;
            let spec = FusionSpec::new(FusionKind::parse(&fusion)?, parse_modalities(&modalities)?)?;
            let cfg = TrainConfig { resume, device: dev.device, ..pipeline::fusion_config(&split, seed, epochs) };
            let s = avsc_host::fusion::train(&set, spec, &cfg, &out)?;
            report_training("train-fusion", &s);
        }
        Cmd::Evaluate { embeddings, heads, split, out, dev } => {
            let set = EmbeddingSet::read(&embeddings)?;
            let (results, written) = avsc_host::evaluate::run(&set, &heads, &split, &out, dev.device)?;
            let cols: Vec<(String, &avsc_host::evaluate::Scores)> =
                results.iter().map(|e| (format!("{} {}", e.spec.modalities.name(), e.spec.kind), &e.scores)).collect();
            println!("{}", avsc_host::evaluate::markdown_table(&cols));
            eprintln!("evaluate: {} and {} plots in {}", written.metrics.display(), written.pngs.len(), out.display());
        }
        Cmd::Table1 { embeddings, train_split, test_split, epochs, seed, out, dev } => {
            let set = EmbeddingSet::read(&embeddings)?;
            let t = pipeline::table1(&set, &train_split, &test_split, epochs, seed, &out, dev.device)?;
            println!("## Table I (accuracy %, per fusion)\n\n{}", t.table1);
            println!("## Audio only / visual only / audio-visual (f4)\n\n{}", t.modalities);
            eprintln!("table1: {}", out.join("table1.md").display());
        }
        Cmd::TrainAll(args) => args.run()?,
        Cmd::Demo { out, clips_per_class, audio_epochs, visual_epochs, fusion_epochs, seed, audio_norm, dev } => {
            let cfg = pipeline::DemoConfig {
                seed,
                audio_norm,
                train_clips_per_class: clips_per_class,
                eval_clips_per_class: clips_per_class.div_ceil(2),
                audio_epochs,
                visual_epochs,
                fusion_epochs,
                device: dev.device,
                ..pipeline::DemoConfig::new(out)
            };
            pipeline::demo(&cfg)?;
        }
        Cmd::Export(args) => args.run()?,
        Cmd::Bench(args) => avsc_host::bench::main(&args)?,
        Cmd::Features { input, kind, preset, deltas, out } => {
            let preset = preset_by(preset)?;
            let shape = avsc_host::features::run(&input, kind.into(), &preset, deltas, &out)?;
            println!("{}: {:?} float32", out.display(), shape);
        }
    }
    Ok(())
}

fn main() {
    avsc_host::alloc::keep_freed_memory();
    if let Err(e) = run(Cli::parse()) {
        // One line: the context chain names the file and what was wrong.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
