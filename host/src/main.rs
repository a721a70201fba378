use anyhow::Result;
use avsc_host::progress;
use avsc_host::synth::{self, SynthConfig};
use avsc_shared::{FeatureKind, FeaturePreset};
use clap::{Parser, Subcommand, ValueEnum};
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

#[derive(Subcommand)]
enum Cmd {
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

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Synth {
            out,
            clips_per_class,
            seed,
            audio_noise,
            visual_noise,
        } => {
            let cfg = SynthConfig {
                clips_per_class,
                seed,
                audio_noise,
                visual_noise,
                ..Default::default()
            };
            let pb = progress::bar(clips_per_class * avsc_shared::NUM_CLASSES, "synth", "clips");
            let n = synth::write(&out, &cfg, |done, _| pb.set_position(done as u64))?;
            pb.finish();
            eprintln!("synth: {n} clips in {}", out.display());
        }
        Cmd::Features {
            input,
            kind,
            preset,
            deltas,
            out,
        } => {
            let preset = FeaturePreset::by_name(match preset {
                Preset::Paper => "paper",
                Preset::Hop14 => "hop14",
            })?;
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
