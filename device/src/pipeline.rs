//! The device loop: audio reads drive the loop; samples and frames carry times on one
//! clock (the device's monotonic clock live, the file's own for files), so a window takes
//! the frames captured with its samples; frames are embedded as they arrive; each closed
//! window is classified and written as one JSON line. A window that lost more than half its
//! audio (a microphone away) is classified from its frames alone, and says so. It sees only the source traits, so
//! `run` (ALSA + V4L2) and `classify` (files) are the same loop.

use crate::infer::{Engine, Latency, WindowAudio};
use crate::sources::{AudioSource, Frame, FrameSource, FrameThinner};
use crate::window::{AudioWindow, EmbeddingRing, Event, Windower};
use anyhow::{Context, Result};
use avsc_shared::{LABELS, NUM_CLASSES};
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

/// Where frames come from: nowhere, a source pulled in step with the audio clock (files),
/// or a capture thread (cameras: `next_frame` blocks and may stall for seconds).
pub enum FrameFeed {
    None,
    Pull { src: Box<dyn FrameSource>, pending: Option<Frame>, done: bool },
    Thread(Receiver<Frame>),
}

impl FrameFeed {
    pub fn pull(src: Box<dyn FrameSource>) -> FrameFeed {
        FrameFeed::Pull { src, pending: None, done: false }
    }

    /// Hand every frame up to stream time `t` (all frames received, for a thread) to `f`.
    fn drain_until(&mut self, t: f64, mut f: impl FnMut(Frame) -> Result<()>) -> Result<()> {
        match self {
            FrameFeed::None => Ok(()),
            FrameFeed::Pull { src, pending, done } => loop {
                if pending.is_none() && !*done {
                    *pending = src.next_frame()?;
                    *done = pending.is_none();
                }
                match pending.take() {
                    Some(fr) if fr.t < t => f(fr)?,
                    other => {
                        *pending = other;
                        return Ok(());
                    }
                }
            },
            FrameFeed::Thread(rx) => loop {
                match rx.try_recv() {
                    Ok(fr) => f(fr)?,
                    Err(TryRecvError::Empty) => return Ok(()),
                    Err(TryRecvError::Disconnected) => {
                        tracing::warn!("camera thread ended; going on audio-only");
                        *self = FrameFeed::None;
                        return Ok(());
                    }
                }
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct LoopOptions {
    pub hop_s: f64,
    /// Stop after this many windows.
    pub max_windows: Option<u64>,
    /// A stream shorter than one window is classified as one window (its audio repeated
    /// to fill it) if it lasts at least this many seconds; a shorter one is an error.
    pub min_seconds: f64,
    /// Read size, seconds.
    pub chunk_s: f64,
    /// Embed at most this many frames per second (fewer than the bundle's rate: frames are
    /// thinned by timestamp); `None`: every frame the source gives.
    pub visual_fps: Option<f64>,
    /// Compute each window's features as its samples arrive (the same numbers; only the
    /// last frames are left when it closes). Off: all of it after the window's last sample.
    pub stream_features: bool,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            hop_s: 10.0,
            max_windows: None,
            min_seconds: 1.0,
            chunk_s: 0.1,
            visual_fps: None,
            stream_features: true,
        }
    }
}

/// One output line.
#[derive(Serialize)]
pub struct Record<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a str>,
    pub window: u64,
    pub start_s: f64,
    pub end_s: f64,
    pub top: &'static str,
    /// Label -> probability, in label (alphabetical) order.
    pub probabilities: Probabilities,
    pub modalities: &'static [&'static str],
    pub head: &'static str,
    pub frames: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Seconds of the window filled by repeating a short recording's audio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub padded_s: Option<f64>,
    /// Seconds of the window whose audio was lost (overrun, microphone away).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_s: Option<f64>,
    pub latency_ms: Latency,
}

/// The probabilities of a window, written as a JSON object keyed by label (in label order,
/// each value the f32 widened to f64, as before), without building a map per window.
pub struct Probabilities(pub [f32; NUM_CLASSES]);

impl Serialize for Probabilities {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(NUM_CLASSES))?;
        for (label, p) in LABELS.iter().zip(self.0) {
            m.serialize_entry(label, &f64::from(p))?;
        }
        m.end()
    }
}

/// Append `rec` and a newline to `line` (cleared first): the same buffer every window, so
/// a window's line costs no allocation once the buffer has grown to a line's size.
pub fn write_line(line: &mut Vec<u8>, rec: &Record) {
    line.clear();
    serde_json::to_writer(&mut *line, rec).expect("plain data serialises");
    line.push(b'\n');
}

/// Writes the lines and remembers the first failure (the windower's callback cannot return
/// one).
struct Emitter<'a> {
    source: Option<&'a str>,
    out: &'a mut dyn Write,
    clip: f64,
    max_windows: Option<u64>,
    written: u64,
    failure: Option<anyhow::Error>,
    /// Why the audio source holds no audio ([`AudioSource::absent`]).
    absent: Option<String>,
    /// What the audio source says of itself ([`AudioSource::note`]), put in every line.
    source_note: Option<String>,
    /// Frames are handed to the engine as they arrive ([`LoopOptions::stream_features`]).
    streaming: bool,
    /// The JSON line being written, reused.
    line: Vec<u8>,
}

impl Emitter<'_> {
    fn done(&self) -> bool {
        self.failure.is_some() || self.max_windows.is_some_and(|m| self.written >= m)
    }

    fn window(&mut self, engine: &mut Engine, w: &AudioWindow, ring: &mut EmbeddingRing, frame_ms: &mut EmbeddingRing) {
        if self.done() {
            return;
        }
        if let Err(e) = self.try_window(engine, w, ring, frame_ms) {
            self.failure = Some(e.context(format!("window at {:.2} s", w.start_s)));
        }
    }

    fn try_window(
        &mut self,
        engine: &mut Engine,
        w: &AudioWindow,
        ring: &mut EmbeddingRing,
        frame_ms: &mut EmbeddingRing,
    ) -> Result<()> {
        let t0 = Instant::now();
        let end = w.start_s + self.clip;
        let (n_ms, ms_mean) = frame_ms.mean(w.start_s, end);
        let visual_ms = ms_mean[0] as f64 * n_ms as f64;
        let (n, mean) = ring.mean(w.start_s, end);
        let lost;
        let audio = match &self.absent {
            None if w.gap_s > 0.5 * self.clip => {
                if n == 0 || !engine.has_visual() {
                    // Neither modality: nothing to classify, and nothing is wrong with the
                    // device either (the microphone's absence is logged by its source).
                    tracing::warn!(
                        "window at {:.2} s skipped: {:.1} s of its audio missing and no frames",
                        w.start_s,
                        w.gap_s
                    );
                    return Ok(());
                }
                lost = format!("microphone: {:.1} s of this window's audio missing", w.gap_s);
                Err(lost.as_str())
            }
            None => Ok(WindowAudio {
                channels: w.channels,
                rate: w.sample_rate,
                first_frame: (w.padded_s == 0.0 && self.streaming).then_some(w.first_frame),
            }),
            Some(why) => Err(why.as_str()),
        };
        let r = engine.classify(audio, Some((n, mean)), visual_ms)?;
        let mut latency_ms = r.latency;
        latency_ms.end_of_window = t0.elapsed().as_secs_f64() * 1e3;
        let top = (0..LABELS.len()).max_by(|&a, &b| r.probabilities[a].total_cmp(&r.probabilities[b])).unwrap_or(0);
        let probabilities = Probabilities(r.probabilities);
        let modalities: &[&str] = match (r.audio, r.visual) {
            (true, true) => &["audio", "visual"],
            (true, false) => &["audio"],
            (false, true) => &["visual"],
            (false, false) => &[],
        };
        let rec = Record {
            source: self.source,
            window: w.index,
            start_s: w.start_s,
            end_s: end,
            top: LABELS[top],
            probabilities,
            modalities,
            head: r.head,
            frames: if r.visual { n } else { 0 },
            note: match (&self.source_note, r.note) {
                (Some(s), Some(n)) => Some(format!("{s}; {n}")),
                (Some(s), None) => Some(s.clone()),
                (None, n) => n,
            },
            padded_s: (w.padded_s > 0.0).then_some(w.padded_s),
            gap_s: (w.gap_s > 0.0).then_some(w.gap_s),
            latency_ms,
        };
        write_line(&mut self.line, &rec);
        self.out.write_all(&self.line).and_then(|_| self.out.flush()).context("cannot write the output")?;
        self.written += 1;
        release_freed_memory();
        Ok(())
    }
}

/// Hand the memory freed during a window back to the system. glibc's adaptive mmap threshold
/// serves a window's large buffers from the heap once one of them has been freed, and free
/// heap pages stay resident: over the first windows resident memory crept up by 3-14 MB
/// (tests/long_files.rs). Trimming after each window (about a millisecond) keeps it where
/// one window needs it. (A fixed threshold, the other cure, made tract's int8 plans crash:
/// README.md.)
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only returns free memory of the allocator to the system.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Run until the audio ends, `stop` is set or `max_windows` are written. Returns the
/// number of windows written.
pub fn run_loop(
    engine: &mut Engine,
    audio: &mut dyn AudioSource,
    mut frames: FrameFeed,
    opts: &LoopOptions,
    stop: &AtomicBool,
    source: Option<&str>,
    out: &mut dyn Write,
) -> Result<u64> {
    let (ch, rate) = (audio.channels(), audio.sample_rate());
    let clip = engine.preset().clip_seconds;
    let fps = engine.frames().fps;
    let mut windower = Windower::new(ch, rate, clip, opts.hop_s);
    let cap = ((clip + opts.hop_s) * fps).ceil() as usize + 4;
    let width = engine.visual_width().max(1);
    let mut ring = EmbeddingRing::new(cap, width);
    let mut frame_ms = EmbeddingRing::new(cap, 1);
    let mut pending = PendingFrames::new(&frames);
    let mut buf = vec![0.0f32; ((opts.chunk_s * rate as f64).ceil() as usize).max(1) * ch];
    let absent = audio.absent().map(str::to_string);
    let source_note = audio.note().map(str::to_string);
    let streaming = opts.stream_features && absent.is_none();
    let mut em = Emitter {
        source,
        out,
        clip,
        max_windows: opts.max_windows,
        written: 0,
        failure: None,
        absent,
        source_note,
        streaming,
        line: Vec::with_capacity(1024),
    };
    let mut thinner = opts.visual_fps.filter(|&f| f < fps).map(FrameThinner::new);

    while !stop.load(Ordering::Relaxed) && !em.done() {
        let Some(r) = audio.read(&mut buf)? else { break };
        let t_end = r.t + r.frames as f64 / rate as f64;
        let closes = windower.closes_within(r.frames, t_end);
        drain_frames(engine, &mut frames, t_end, closes, &mut pending, &mut ring, &mut frame_ms, thinner.as_mut())?;
        windower.push_events(r.t, &buf[..r.frames * ch], |e| match e {
            Event::Frames { first, samples, window_start } if streaming => {
                engine.audio_frames(first, window_start, samples, ch, rate)
            }
            Event::Frames { .. } => {}
            Event::Window(w) => em.window(engine, w, &mut ring, &mut frame_ms),
        });
    }
    if !stop.load(Ordering::Relaxed) && !em.done() {
        drain_frames(
            engine,
            &mut frames,
            f64::INFINITY,
            true,
            &mut pending,
            &mut ring,
            &mut frame_ms,
            thinner.as_mut(),
        )?;
        windower.flush_partial(opts.min_seconds, |w| em.window(engine, w, &mut ring, &mut frame_ms));
        if windower.windows_emitted() == 0 {
            anyhow::bail!(
                "{:.2} s long: at least {:.1} s is needed to fill a {clip:.0}-s window",
                windower.now_s(),
                opts.min_seconds
            );
        }
    }
    match em.failure {
        Some(e) => Err(e),
        None => Ok(em.written),
    }
}

/// Frames taken from the feed and not yet embedded. Frames from files are embedded in
/// batches of one per core (`Engine::embed_frames` spreads their networks over the cores);
/// a camera's at once, so that none waits for the next.
struct PendingFrames {
    frames: Vec<Frame>,
    batch: usize,
    out: Vec<f32>,
    ms: Vec<f64>,
}

impl PendingFrames {
    fn new(feed: &FrameFeed) -> PendingFrames {
        let batch = if matches!(feed, FrameFeed::Pull { .. }) { crate::infer::cores() } else { 1 };
        PendingFrames { frames: Vec::with_capacity(batch), batch, out: Vec::new(), ms: Vec::new() }
    }
}

/// Take the frames before stream time `t` and embed them once a batch is full, or all of
/// them when `flush` (a window is about to close, or the stream ended).
#[allow(clippy::too_many_arguments)]
fn drain_frames(
    engine: &mut Engine,
    frames: &mut FrameFeed,
    t: f64,
    flush: bool,
    pending: &mut PendingFrames,
    ring: &mut EmbeddingRing,
    frame_ms: &mut EmbeddingRing,
    mut thinner: Option<&mut FrameThinner>,
) -> Result<()> {
    if !engine.has_visual() {
        return frames.drain_until(t, |_| Ok(()));
    }
    frames.drain_until(t, |fr| {
        if thinner.as_mut().is_none_or(|th| th.keep(fr.t)) {
            pending.frames.push(fr);
        }
        Ok(())
    })?;
    if pending.frames.is_empty() || (pending.frames.len() < pending.batch && !flush) {
        return Ok(());
    }
    let (n, w) = (pending.frames.len(), engine.visual_width());
    pending.out.resize(n * w, 0.0);
    pending.ms.resize(n, 0.0);
    let images: Vec<_> = pending.frames.iter().map(|f| &f.image).collect();
    let results = engine.embed_frames(&images, &mut pending.out, &mut pending.ms);
    for (((fr, r), emb), ms) in pending.frames.iter().zip(results).zip(pending.out.chunks(w)).zip(&pending.ms) {
        match r {
            Ok(()) => {
                ring.push(fr.t, emb);
                frame_ms.push(fr.t, &[*ms as f32]);
            }
            // One bad frame (odd size, decoder glitch) is skipped: the window still has
            // its other frames, or falls back to audio-only.
            Err(e) => tracing::warn!("frame at {:.2} s skipped: {e:#}", fr.t),
        }
    }
    pending.frames.clear();
    Ok(())
}

/// Run a camera in its own thread: `open` runs there (a V4L2 stream stays on the thread
/// that mapped it). Returns the feed, or the open error (the caller goes on audio-only).
pub fn spawn_camera<S, F>(open: F) -> Result<FrameFeed>
where
    S: FrameSource + 'static,
    F: FnOnce() -> Result<S> + Send + 'static,
{
    let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel::<Result<String>>(1);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Frame>(16);
    std::thread::Builder::new()
        .name("camera".into())
        .spawn(move || {
            let mut src = match open() {
                Ok(s) => {
                    let _ = opened_tx.send(Ok(s.describe()));
                    s
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                    return;
                }
            };
            loop {
                match src.next_frame() {
                    Ok(Some(f)) => {
                        if tx.send(f).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::error!("camera: {e:#}");
                        return;
                    }
                }
            }
        })
        .context("cannot start the camera thread")?;
    let name = opened_rx.recv().context("camera thread died while opening")??;
    tracing::info!("camera: {name}");
    Ok(FrameFeed::Thread(rx))
}

/// A stop flag set by SIGINT or SIGTERM: the loop finishes the current read, flushes and
/// returns.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install the signal handler")?;
    }
    Ok(stop)
}
