//! The `avsc-device` verbs. Results (JSON lines) on stdout or `--out`, logs on stderr, and
//! any error as one line on stderr with a non-zero exit status.

use crate::infer::Engine;
use crate::pipeline::{run_loop, spawn_camera, stop_on_signals, FrameFeed, LoopOptions};
use crate::sources::alsa::{AlsaConfig, AlsaSource, SampleFormat};
use crate::sources::clock::Monotonic;
use crate::sources::file::{FileAudio, ImageFolder, NoAudio, VideoFile};
use crate::sources::pacing::Paced;
use crate::sources::threaded::ThreadedAudio;
use crate::sources::v4l::{PixelFormat, V4lConfig, V4lSource};
use crate::sources::{AudioSource, FrameSource, Noted};
use anyhow::{bail, ensure, Context, Result};
use avsc_shared::bundle::Precision;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "avsc-device", version, about = "avsc on the edge: classify scenes from a microphone and a camera")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the labels and the feature presets this build computes, as JSON.
    Contract,
    /// Classify live: microphone (ALSA) and camera (V4L2), one JSON line per window.
    ///
    /// Without a usable camera (absent, busy, wrong format) the run goes on audio-only with
    /// the bundle's audio-only head. SIGINT / SIGTERM stop it after the current read.
    Run(RunArgs),
    /// Classify recordings: MP4 (audio + frames), WAV (audio), or a WAV followed by a folder
    /// of images (its frames, in name order, at the bundle's frame rate).
    Classify(ClassifyArgs),
    /// Capture raw samples from an ALSA PCM to a file, exactly as delivered (to check a
    /// microphone, or the capture path itself).
    Capture(CaptureArgs),
}

#[derive(Args)]
struct Common {
    /// Model bundle folder (manifest.json + ONNX files).
    #[arg(long)]
    bundle: PathBuf,
    /// Which networks of the bundle to run.
    #[arg(long, value_enum, default_value = "f32")]
    precision: PrecisionArg,
    /// Seconds between window starts (windows are the bundle's clip length, 10 s).
    #[arg(long, default_value_t = 10.0)]
    hop: f64,
    /// Write the JSON lines here (appending) instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stop after this many windows.
    #[arg(long)]
    windows: Option<u64>,
    /// Frames per second the visual networks see, at most the bundle's rate (2, as trained).
    /// Fewer frames cost less CPU per window; a window's visual embedding is the mean over
    /// the frames it has.
    #[arg(long)]
    visual_fps: Option<f64>,
    /// Compute each window's features only after its last sample, instead of as the samples
    /// arrive (the same numbers, later; for A/B measurements of the latency).
    #[arg(long)]
    no_stream_features: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    F32,
    Int8,
}

#[derive(Args)]
struct Mic {
    /// ALSA capture PCM.
    #[arg(long, default_value = "default")]
    mic: String,
    #[arg(long, default_value_t = 48_000)]
    rate: u32,
    #[arg(long, default_value_t = 2)]
    channels: u32,
    #[arg(long, value_enum, default_value = "s16")]
    format: SampleFormat,
    /// Frames per ALSA period (one read).
    #[arg(long, default_value_t = 4800)]
    period: usize,
}

impl Mic {
    fn config(&self) -> AlsaConfig {
        AlsaConfig {
            rate: self.rate,
            channels: self.channels,
            format: self.format,
            period_frames: self.period,
            ..AlsaConfig::new(&self.mic)
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    mic: Mic,
    /// V4L2 camera device, e.g. /dev/video0. Without it, audio-only.
    #[arg(long)]
    camera: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "mjpeg")]
    camera_format: PixelFormat,
    /// Capture size WIDTHxHEIGHT (frames are resized to the networks' input anyway).
    #[arg(long, default_value = "640x480", value_parser = parse_size)]
    camera_size: (u32, u32),
    /// Seconds without a frame before the camera is reported stalled and reopened.
    #[arg(long, default_value_t = 5.0)]
    camera_timeout: f64,
}

#[derive(Args)]
struct ClassifyArgs {
    #[command(flatten)]
    common: Common,
    /// Replay in real time (as if live) instead of as fast as possible.
    #[arg(long)]
    realtime: bool,
    /// MP4 or WAV files; a folder right after a WAV holds that WAV's frames.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

#[derive(Args)]
struct CaptureArgs {
    #[command(flatten)]
    mic: Mic,
    /// Frames (samples per channel) to capture.
    #[arg(long)]
    frames: u64,
    /// Raw interleaved little-endian samples are written here.
    #[arg(long)]
    out: PathBuf,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or_else(|| format!("{s:?}: expected WIDTHxHEIGHT"))?;
    let p = |v: &str| v.parse::<u32>().map_err(|_| format!("{s:?}: expected WIDTHxHEIGHT"));
    Ok((p(w)?, p(h)?))
}

pub fn main() -> ExitCode {
    one_malloc_arena();
    let cli = Cli::parse();
    init_logs();
    match dispatch(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`avsc-device classify ... | head`): stop
        // quietly, as a process killed by SIGPIPE would (status 128 + 13).
        Err(e) if is_broken_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// An error as one line on stderr: the whole context chain, newlines folded.
fn print_error(e: &anyhow::Error) {
    let _ = writeln!(Stderr, "error: {}", format!("{e:#}").replace('\n', " "));
}

/// stderr, whose write errors are dropped: with `avsc-device ... 2>&1 | head` stderr's
/// reader goes away too, and `eprintln!` (and tracing, which reports a failed write with
/// `eprintln!`) would then panic. The output's own broken pipe still ends the run (141).
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Whether writing our output failed because its reader closed the pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// glibc gives each thread that allocates its own malloc arena (up to 8 per core) and keeps
/// what an arena freed for that arena. The device runs every network of a window or a frame
/// on a thread of its own, so each arena grows to a network's working set: with the paper
/// int8 bundle the peak RSS was 345 MB with the default and 264 MB with one arena, at the
/// same speed (device/README.md). An explicit `MALLOC_ARENA_MAX` in the environment wins.
/// Called before any thread starts.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        /// malloc.h
        const M_ARENA_MAX: std::ffi::c_int = -8;
        // SAFETY: mallopt only sets a malloc parameter; no other thread exists yet.
        unsafe {
            mallopt(M_ARENA_MAX, 1);
        }
    }
}

fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in journald or a test's pipe.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Stderr)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

fn dispatch(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Contract => contract(),
        Cmd::Run(a) => run(a),
        Cmd::Classify(a) => classify(a),
        Cmd::Capture(a) => capture(a),
    }
}

fn contract() -> Result<()> {
    let presets: Vec<_> = avsc_shared::FeaturePreset::NAMES
        .iter()
        .map(|n| avsc_shared::FeaturePreset::by_name(n))
        .collect::<Result<_>>()?;
    let v = serde_json::json!({ "labels": avsc_shared::LABELS, "presets": presets });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn open_out(path: &Option<PathBuf>) -> Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("{}: cannot open for writing", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    })
}

impl Common {
    fn engine(&self) -> Result<Engine> {
        ensure!(self.hop > 0.0 && self.hop.is_finite(), "--hop must be a positive number of seconds");
        if let Some(f) = self.visual_fps {
            ensure!(f > 0.0 && f.is_finite(), "--visual-fps must be a positive number of frames per second");
        }
        let precision = match self.precision {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Int8 => Precision::Int8,
        };
        Engine::load(&self.bundle, precision)
    }

    fn loop_options(&self) -> LoopOptions {
        LoopOptions {
            hop_s: self.hop,
            max_windows: self.windows,
            visual_fps: self.visual_fps,
            stream_features: !self.no_stream_features,
            ..LoopOptions::default()
        }
    }
}

fn run(a: RunArgs) -> Result<()> {
    let stop = stop_on_signals()?;
    let mut engine = a.common.engine()?;
    let mut out = open_out(&a.common.out)?;
    let cfg = a.mic.config();
    let chunk_s = cfg.period_frames as f64 / cfg.rate as f64;
    // One clock for both: samples and frames stamped on CLOCK_MONOTONIC at capture.
    let clock = Monotonic::shared();
    let mic_clock = clock.clone();
    // Capture on its own thread: the microphone keeps being read while the networks run.
    // Without audio for a second (the microphone away), time goes on and windows are
    // classified from the camera alone.
    // With a camera, a microphone that cannot be opened at start (a USB one not enumerated
    // yet at boot) is waited for while the camera's frames are classified, as one lost
    // later is; without one there would be nothing to classify, so that is an error.
    let wait_for_mic = a.camera.is_some() && engine.has_visual();
    let mut mic = ThreadedAudio::spawn(
        move || {
            if wait_for_mic {
                Ok(AlsaSource::open_or_wait(cfg, mic_clock))
            } else {
                AlsaSource::open(cfg, mic_clock)
            }
        },
        chunk_s,
        8.0,
    )?
    .with_heartbeat(clock.clone(), Duration::from_secs(1));
    let frames = match &a.camera {
        Some(path) if engine.has_visual() => {
            let cfg = V4lConfig {
                path: path.clone(),
                width: a.camera_size.0,
                height: a.camera_size.1,
                format: a.camera_format,
                fps: engine.frames().fps,
                stall_timeout: Duration::from_secs_f64(a.camera_timeout.max(0.1)),
                reopen_backoff: Duration::from_millis(500),
                reopen_backoff_max: Duration::from_secs(8),
            };
            match spawn_camera(move || V4lSource::open(cfg, clock)) {
                Ok(feed) => feed,
                Err(e) => {
                    tracing::error!("{e:#}; going on audio-only");
                    FrameFeed::None
                }
            }
        }
        Some(_) => {
            tracing::warn!("the bundle has no visual networks; the camera is not used");
            FrameFeed::None
        }
        None => FrameFeed::None,
    };
    let n = run_loop(&mut engine, &mut mic, frames, &a.common.loop_options(), &stop, None, &mut out)?;
    out.flush()?;
    let (rss, peak) = memory_kib();
    // Overruns and reopens are logged by the capture thread as they happen.
    tracing::info!(windows = n, rss_kib = rss, peak_rss_kib = peak, "stopped");
    Ok(())
}

/// One `classify` job: an audio file and where its frames come from.
enum Job {
    Mp4(PathBuf),
    Wav(PathBuf, Option<PathBuf>),
}

fn jobs(inputs: &[PathBuf]) -> Result<Vec<Job>> {
    use avsc_shared::decode::{AUDIO_EXTENSIONS, VIDEO_EXTENSIONS};
    let mut jobs: Vec<Job> = Vec::new();
    for p in inputs {
        if p.is_dir() {
            match jobs.last_mut() {
                Some(Job::Wav(_, frames @ None)) => *frames = Some(p.clone()),
                _ => bail!("{}: an image folder must follow an audio file", p.display()),
            }
            continue;
        }
        let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some(e) if VIDEO_EXTENSIONS.contains(&e) => jobs.push(Job::Mp4(p.clone())),
            Some(e) if AUDIO_EXTENSIONS.contains(&e) => jobs.push(Job::Wav(p.clone(), None)),
            _ if !p.exists() => bail!("{}: no such file", p.display()),
            _ => bail!(
                "{}: not a video ({}), an audio file ({}), nor an image folder",
                p.display(),
                VIDEO_EXTENSIONS.join(", "),
                AUDIO_EXTENSIONS.join(", ")
            ),
        }
    }
    Ok(jobs)
}

fn classify(a: ClassifyArgs) -> Result<()> {
    let stop = stop_on_signals()?;
    let jobs = jobs(&a.inputs)?;
    let mut engine = a.common.engine()?;
    let mut out = open_out(&a.common.out)?;
    // A file that fails is one error line and the others are still classified; the exit
    // status is then non-zero. The last failure is returned (main prints it), earlier ones
    // are printed as they happen.
    let mut failed: Option<anyhow::Error> = None;
    for job in &jobs {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        if let Err(e) = classify_one(job, &a, &mut engine, &stop, &mut out) {
            if is_broken_pipe(&e) {
                return Err(e);
            }
            if let Some(prev) = failed.replace(e) {
                print_error(&prev);
            }
        }
    }
    out.flush()?;
    let (rss, peak) = memory_kib();
    tracing::info!(rss_kib = rss, peak_rss_kib = peak, "done");
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One input file: its audio and frames through the loop. A video whose audio is missing or
/// cannot be decoded is classified from its frames (the visual-only head, the reason as the
/// windows' note); one whose frames cannot be decoded, from its audio.
fn classify_one(
    job: &Job,
    a: &ClassifyArgs,
    engine: &mut Engine,
    stop: &std::sync::atomic::AtomicBool,
    out: &mut Box<dyn Write>,
) -> Result<()> {
    let (fps, size) = (engine.frames().fps, engine.frames().size);
    let (path, audio, frames): (&Path, Box<dyn AudioSource>, Option<Box<dyn FrameSource>>) = match job {
        Job::Mp4(p) => {
            let mut video_lost = None;
            let frames = match engine.has_visual().then(|| VideoFile::open(p, fps, Some(size))) {
                Some(Ok(f)) => Some(Box::new(f) as Box<dyn FrameSource>),
                Some(Err(e)) => {
                    tracing::warn!("{}: video not decoded, audio only: {e:#}", p.display());
                    video_lost = Some(format!("video not decoded, audio only ({})", root_cause(&e)));
                    None
                }
                None => None,
            };
            let audio: Box<dyn AudioSource> = match (FileAudio::open(p), video_lost) {
                // The reason goes into every window's note, as the audio's does below.
                (Ok(audio), Some(why)) => Box::new(Noted::new(audio, why)),
                (Ok(audio), None) => Box::new(audio),
                (Err(e), _) if frames.is_some() => {
                    // Only now is the file's duration needed (its headers are read again).
                    let info = avsc_shared::decode::probe(p)?;
                    let why = if info.has_audio {
                        format!("audio not decoded, visual only ({})", root_cause(&e))
                    } else {
                        "the file has no audio track; visual only".to_string()
                    };
                    tracing::warn!("{}: {why}", p.display());
                    Box::new(NoAudio::new(info.duration_s, engine.preset().sample_rate, why))
                }
                (Err(e), _) => return Err(e),
            };
            (p, audio, frames)
        }
        Job::Wav(p, dir) => {
            let audio = FileAudio::open(p)?;
            let frames = match dir {
                Some(d) => Some(Box::new(ImageFolder::open(d, fps)?) as Box<dyn FrameSource>),
                None => None,
            };
            (p, Box::new(audio), frames)
        }
    };
    let (mut audio, frames): (Box<dyn AudioSource>, Option<Box<dyn FrameSource>>) = if a.realtime {
        (Box::new(Paced::new(audio)), frames.map(|f| Box::new(Paced::new(f)) as _))
    } else {
        (audio, frames)
    };
    tracing::info!("{}", audio.describe());
    let feed = frames.map_or(FrameFeed::None, FrameFeed::pull);
    let name = path.display().to_string();
    // Decoding errors name the file already; others (inference) get its name here.
    run_loop(engine, &mut audio, feed, &a.common.loop_options(), stop, Some(&name), out.as_mut()).map_err(|e| {
        if format!("{e:#}").starts_with(&name) {
            e
        } else {
            e.context(name.clone())
        }
    })?;
    Ok(())
}

/// The innermost reason of an error (without the file name its outer contexts repeat).
fn root_cause(e: &anyhow::Error) -> String {
    let s = e.root_cause().to_string();
    s.rsplit(": ").next().unwrap_or(&s).to_string()
}

fn capture(a: CaptureArgs) -> Result<()> {
    let mut src = AlsaSource::open(a.mic.config(), Monotonic::shared())?;
    let frame_bytes = a.mic.channels as usize * a.mic.format.bytes();
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&a.out).with_context(|| format!("{}: cannot create", a.out.display()))?,
    );
    let mut chunk = Vec::new();
    let mut left = a.frames;
    while left > 0 {
        let n = src.read_bytes(&mut chunk)? as u64;
        let take = n.min(left) as usize;
        file.write_all(&chunk[..take * frame_bytes]).with_context(|| format!("{}: cannot write", a.out.display()))?;
        left -= take as u64;
    }
    file.flush()?;
    tracing::info!(frames = a.frames, xruns = src.xruns, "captured");
    Ok(())
}

/// Resident and peak resident memory of this process, KiB (Linux; 0 elsewhere).
pub fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}
