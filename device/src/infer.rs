//! Inference with tract: a bundle's networks as optimised plans built once at start, and the
//! two things the device loop asks of them — a frame's visual embeddings (as each frame
//! arrives) and a window's probabilities (audio features, audio networks, a fusion head).
//!
//! Everything is read from the manifest (`avsc_shared::bundle`, verified there: schema,
//! labels, sha256): which networks exist, their input shapes, which output is the FC(1024)
//! embedding and which the logits, the feature preset, the frame normalisation, and for each
//! fusion head the embedding kind and source order. A window whose video is missing uses the
//! audio-only head (and says so); if the bundle has no head for the modalities at hand, the
//! mean of the available backbones' softmax is used and reported as such.

use anyhow::{bail, ensure, Context, Result};
use avsc_shared::bundle::{Bundle, Dim, EmbeddingKind, FileEntry, Precision, Role, TensorSpec};
use avsc_shared::dsp::resample::Resampler;
use avsc_shared::dsp::FeatureExtractor;
use avsc_shared::image::{normalise, FrameResizer, RgbImage};
use avsc_shared::{Array3, FeatureKind, FeaturePreset, FramePreset, Normalisation, NUM_CLASSES};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tract_onnx::prelude::*;

type Plan = Arc<TypedRunnableModel>;

/// The batch-1 shape of a manifest tensor: the batch symbol `N` is 1, and any other symbol
/// (the spectrogram's frame count `T`) takes its value from `actual`, the shape of the data
/// the device will feed (whose fixed dimensions must agree with the manifest's).
fn concrete(spec: &TensorSpec, actual: Option<&[usize]>) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(spec.shape.len());
    for (i, d) in spec.shape.iter().enumerate() {
        let have = actual.and_then(|a| a.get(i.wrapping_sub(1)).copied()).filter(|_| i > 0);
        out.push(match (d, have) {
            (Dim::Symbol(s), _) if i == 0 || s == "N" => 1,
            (Dim::Symbol(s), Some(n)) => {
                tracing::debug!("{}: {s} = {n}", spec.name);
                n
            }
            (Dim::Symbol(s), None) => bail!("input {}: no value for the symbolic dimension {s}", spec.name),
            (Dim::Fixed(n), Some(h)) if *n != h => {
                bail!("input {}: the manifest says {:?}, the device computes {:?}", spec.name, spec.shape, actual)
            }
            (Dim::Fixed(n), _) => *n,
        });
    }
    Ok(out)
}

fn build_plan(path: &Path, shapes: &[Vec<usize>]) -> Result<Plan> {
    let mut model = tract_onnx::onnx()
        .model_for_path(path)
        .with_context(|| format!("{}: not a loadable ONNX model", path.display()))?;
    for (i, shape) in shapes.iter().enumerate() {
        model = model.with_input_fact(i, InferenceFact::dt_shape(f32::datum_type(), shape.clone()))?;
    }
    let plan = model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .with_context(|| format!("{}: tract cannot build a plan for the manifest's input shapes", path.display()))?;
    Ok(plan)
}

fn run(plan: &Plan, inputs: Vec<(Vec<usize>, &[f32])>) -> Result<TVec<TValue>> {
    let values = inputs
        .into_iter()
        .map(|(shape, data)| Ok(Tensor::from_shape(&shape, data)?.into()))
        .collect::<TractResult<TVec<TValue>>>()?;
    plan.run(values)
}

fn as_f32(v: &TValue) -> Result<Vec<f32>> {
    Ok(v.to_plain_array_view::<f32>()?.iter().copied().collect())
}

/// A Phase-I backbone: one input, outputs FC(1024) (the embedding; narrower in `tiny`
/// bundles) and logits.
struct Backbone {
    role: Role,
    plan: Plan,
    input: Vec<usize>,
    fc_out: usize,
    logits_out: usize,
    /// Width of the FC embedding.
    fc_dim: usize,
    normalisation: Option<Normalisation>,
    /// Wall time of the last run, microseconds (orders the jobs of `run_jobs`).
    last_us: AtomicU64,
}

impl Backbone {
    /// `actual`: the shape (without batch) of what the device feeds it.
    fn load(bundle: &Bundle, f: &FileEntry, actual: &[usize]) -> Result<Backbone> {
        let name = f.role.name();
        ensure!(f.inputs.len() == 1, "{}: {name} must have one input, has {}", f.path, f.inputs.len());
        let pos = |want: &str| f.outputs.iter().position(|o| o.name == want);
        let fc_out = pos("fc1024").unwrap_or(0);
        let logits_out = pos("logits").unwrap_or(1);
        let width = |i: usize| match f.outputs.get(i).and_then(|o| o.shape.last()) {
            Some(Dim::Fixed(n)) => Ok(*n),
            _ => bail!("{}: output {i} of {name} has no fixed width", f.path),
        };
        let fc_dim = width(fc_out)?;
        ensure!(width(logits_out)? == NUM_CLASSES, "{}: {name}'s logits are not {NUM_CLASSES} wide", f.path);
        ensure!(f.role.is_audio() || f.normalisation.is_some(), "{}: visual backbone without normalisation", f.path);
        let input = concrete(&f.inputs[0], Some(actual)).with_context(|| f.path.clone())?;
        Ok(Backbone {
            role: f.role,
            plan: build_plan(&bundle.path(f), std::slice::from_ref(&input))?,
            input,
            fc_out,
            logits_out,
            fc_dim,
            normalisation: f.normalisation.clone(),
            last_us: AtomicU64::new(0),
        })
    }

    fn width(&self) -> usize {
        self.fc_dim + NUM_CLASSES
    }

    /// FC embedding then logits, into `out` (`width()` values).
    fn embed(&self, x: &[f32], out: &mut [f32]) -> Result<()> {
        let shape = &self.input;
        ensure!(
            shape.iter().product::<usize>() == x.len(),
            "{}: input of {} values for shape {shape:?}",
            self.role.name(),
            x.len()
        );
        let o = run(&self.plan, vec![(shape.clone(), x)]).with_context(|| format!("{} failed", self.role.name()))?;
        let fc = as_f32(&o[self.fc_out])?;
        let lg = as_f32(&o[self.logits_out])?;
        ensure!(
            fc.len() == self.fc_dim && lg.len() == NUM_CLASSES,
            "{}: output sizes {} and {}",
            self.role.name(),
            fc.len(),
            lg.len()
        );
        out[..self.fc_dim].copy_from_slice(&fc);
        out[self.fc_dim..].copy_from_slice(&lg);
        Ok(())
    }
}

/// A Phase-II head: the sources' embeddings (one `[N, k, d]` input, or k `[N, d]` inputs)
/// to probabilities.
struct Head {
    role: Role,
    plan: Plan,
    sources: Vec<Role>,
    embedding: EmbeddingKind,
    inputs: Vec<Vec<usize>>,
    /// The graph ends in logits rather than a softmax.
    logits: bool,
}

impl Head {
    fn load(bundle: &Bundle, f: &FileEntry) -> Result<Head> {
        let embedding = f.embedding.with_context(|| format!("{}: fusion head without `embedding`", f.path))?;
        ensure!(!f.sources.is_empty(), "{}: fusion head without `sources`", f.path);
        let inputs: Vec<Vec<usize>> = f.inputs.iter().map(|s| concrete(s, None)).collect::<Result<_>>()?;
        let k = f.sources.len();
        let d = *inputs.first().and_then(|s| s.last()).with_context(|| format!("{}: no inputs", f.path))?;
        let fits = inputs == [vec![1, k, d]] || (inputs.len() == k && inputs.iter().all(|s| s == &[1, d]));
        ensure!(fits, "{}: inputs {inputs:?} do not fit {k} sources of {d}", f.path);
        Ok(Head {
            role: f.role,
            plan: build_plan(&bundle.path(f), &inputs)?,
            sources: f.sources.clone(),
            embedding,
            inputs,
            logits: f.outputs.first().is_some_and(|o| o.name.contains("logit")),
        })
    }
}

fn softmax(x: &mut [f32]) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let s: f32 = x
        .iter_mut()
        .map(|v| {
            *v = (*v - m).exp();
            *v
        })
        .sum();
    x.iter_mut().for_each(|v| *v /= s);
}

/// Per-stage wall time of one window, milliseconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Latency {
    pub resample: f64,
    pub features: f64,
    pub audio_nets: f64,
    pub fusion: f64,
    /// Visual backbones on this window's frames: thread time, summed over frames and
    /// networks (they ran as the frames arrived, two or more at a time).
    pub visual_nets: f64,
    /// From the window's last sample to its probabilities.
    pub end_of_window: f64,
}

pub struct WindowResult {
    pub probabilities: [f32; NUM_CLASSES],
    pub head: &'static str,
    pub audio: bool,
    pub visual: bool,
    pub note: Option<String>,
    pub latency: Latency,
}

pub struct Engine {
    pub bundle: Bundle,
    fx: FeatureExtractor,
    resampler: Option<Resampler>,
    audio: Vec<Backbone>,
    visual: Vec<Backbone>,
    heads: Vec<Head>,
    resizer: FrameResizer,
    /// Scratch: one window's audio embeddings, per audio backbone.
    audio_emb: Vec<f32>,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

impl Engine {
    /// Open and verify the bundle, then build every plan at `precision`.
    pub fn load(dir: &Path, precision: Precision) -> Result<Engine> {
        let bundle = Bundle::open(dir)?;
        let m = &bundle.manifest;
        ensure!(m.feature_preset.channels == 2, "{}: the device computes stereo features only", dir.display());
        let pick = |role: Role| m.file(role, precision);
        let mut fx = FeatureExtractor::new(&m.feature_preset);
        // The spectrograms' shapes (the frame count is symbolic in the ONNX files): what the
        // extractor gives for one window, computed once on silence.
        let silence = vec![0.0f32; m.feature_preset.clip_samples()];
        let shapes = fx.stacks_all(&[&silence, &silence]).map(|a| a.shape.to_vec());
        let audio = [Role::AudMel, Role::AudGam, Role::AudCqt]
            .into_iter()
            .zip(shapes)
            .filter_map(|(r, shape)| pick(r).map(|f| (f, shape)))
            .map(|(f, shape)| Backbone::load(&bundle, f, &shape))
            .collect::<Result<Vec<_>>>()?;
        let image = [3, m.frame_preset.size, m.frame_preset.size];
        let visual = [Role::VisInc, Role::VisConv]
            .into_iter()
            .filter_map(pick)
            .map(|f| Backbone::load(&bundle, f, &image))
            .collect::<Result<Vec<_>>>()?;
        let heads = [Role::Fusion, Role::FusionAudio, Role::FusionVisual]
            .into_iter()
            .filter_map(pick)
            .map(|f| Head::load(&bundle, f))
            .collect::<Result<Vec<_>>>()?;
        if audio.is_empty() && visual.is_empty() {
            bail!("{}: no {precision:?} backbone networks in the manifest", dir.display());
        }
        for h in &heads {
            let d = h.inputs[0].last().copied().unwrap_or(0);
            for s in &h.sources {
                let b = audio.iter().chain(&visual).find(|b| b.role == *s);
                let b = b.with_context(|| {
                    format!("{}: head {} reads {} which the bundle lacks", dir.display(), h.role.name(), s.name())
                })?;
                let width = match h.embedding {
                    EmbeddingKind::Fc1024 => b.fc_dim,
                    EmbeddingKind::Fc10 => NUM_CLASSES,
                };
                ensure!(
                    width == d,
                    "{}: head {} reads {d}-wide embeddings, {} gives {width}",
                    dir.display(),
                    h.role.name(),
                    s.name()
                );
            }
        }
        let audio_width: usize = audio.iter().map(Backbone::width).sum();
        let (rss_kib, peak_rss_kib) = crate::cli::memory_kib();
        tracing::info!(
            bundle = %dir.display(),
            rss_kib,
            peak_rss_kib,
            audio = audio.len(),
            visual = visual.len(),
            heads = ?heads.iter().map(|h| h.role.name()).collect::<Vec<_>>(),
            "plans built"
        );
        Ok(Engine {
            bundle,
            fx,
            resampler: None,
            audio,
            visual,
            heads,
            resizer: FrameResizer::new(),
            audio_emb: vec![0.0; audio_width],
        })
    }

    pub fn preset(&self) -> &FeaturePreset {
        &self.bundle.manifest.feature_preset
    }

    pub fn frames(&self) -> &FramePreset {
        &self.bundle.manifest.frame_preset
    }

    pub fn has_visual(&self) -> bool {
        !self.visual.is_empty()
    }

    /// Width of a frame's embedding record ([`Engine::embed_frame`]).
    pub fn visual_width(&self) -> usize {
        self.visual.iter().map(Backbone::width).sum()
    }

    /// Run every visual backbone on one frame; `out` gets `visual_width()` values.
    pub fn embed_frame(&mut self, img: &RgbImage, out: &mut [f32]) -> Result<()> {
        let mut ms = [0.0];
        self.embed_frames(&[img], out, &mut ms).pop().expect("one frame")
    }

    /// Every visual backbone on each of `imgs`: frame i's `visual_width()` values go to
    /// `out[i * visual_width()..]`, and `ms[i]` gets its networks' thread time, summed.
    /// The (frame, network) jobs share one worker per core, the costliest network's jobs
    /// first: with InceptionV3 and ConvNeXt (about twice its cost) on two cores, two frames
    /// take about three InceptionV3 times instead of four. Each frame gets its own result.
    pub fn embed_frames(&mut self, imgs: &[&RgbImage], out: &mut [f32], ms: &mut [f64]) -> Vec<Result<()>> {
        let size = self.bundle.manifest.frame_preset.size;
        let w = self.visual_width();
        assert!(out.len() == imgs.len() * w && ms.len() == imgs.len(), "embed_frames: output sizes");
        // Each frame resized once (the networks share the input size), then normalised per
        // network.
        let mut resized = RgbImage::new(size, size);
        let inputs: Vec<Vec<Vec<f32>>> = imgs
            .iter()
            .map(|img| {
                self.resizer.resize_into(img, &mut resized);
                self.visual
                    .iter()
                    .map(|b| normalise(&resized, b.normalisation.as_ref().expect("checked at load")))
                    .collect()
            })
            .collect();
        let mut jobs = Vec::with_capacity(imgs.len() * self.visual.len());
        for (f, (row, xs)) in out.chunks_mut(w).zip(&inputs).enumerate() {
            push_jobs(&mut jobs, &self.visual, xs, row, |_| f);
        }
        let mut results: Vec<Result<()>> = imgs.iter().map(|_| Ok(())).collect();
        ms.iter_mut().for_each(|m| *m = 0.0);
        for (f, r, t) in run_jobs(&self.visual, jobs, cores()) {
            ms[f] += t;
            if let (Err(e), Ok(())) = (r, &results[f]) {
                results[f] = Err(e);
            }
        }
        results
    }

    /// Features and audio networks for a window (per-channel samples at `rate`).
    fn audio_embeddings(&mut self, channels: &[Vec<f32>], rate: u32, lat: &mut Latency) -> Result<()> {
        let t = Instant::now();
        let preset = self.bundle.manifest.feature_preset.clone();
        let stereo: [&[f32]; 2] = match channels {
            [m] => [m, m],
            [l, r] => [l, r],
            _ => bail!("{} audio channels; expected mono or stereo", channels.len()),
        };
        if rate != preset.sample_rate && self.resampler.as_ref().map(|r| r.from) != Some(rate) {
            self.resampler = Some(Resampler::new(rate, preset.sample_rate, &preset.resample));
        }
        let resampled: Option<[Vec<f32>; 2]> = (rate != preset.sample_rate)
            .then(|| stereo.map(|x| self.resampler.as_ref().expect("built above").process(x)));
        let mut x: [&[f32]; 2] = stereo;
        if let Some(r) = &resampled {
            x = [&r[0], &r[1]];
        }
        // The trainer's clips are exactly clip_samples long (shorter ones zero-padded).
        let want = preset.clip_samples();
        let fixed: Option<[Vec<f32>; 2]> =
            (x[0].len() != want).then(|| x.map(|c| (0..want).map(|i| c.get(i).copied().unwrap_or(0.0)).collect()));
        if let Some(f) = &fixed {
            x = [&f[0], &f[1]];
        }
        lat.resample = ms(t);

        let t = Instant::now();
        let all = self.audio.len() == 3;
        let stacks: Vec<Array3> = if all {
            self.fx.stacks_all(&x).into()
        } else {
            self.audio.iter().map(|b| self.fx.stack(kind_of(b.role), &x)).collect()
        };
        lat.features = ms(t);

        let t = Instant::now();
        for (b, s) in self.audio.iter().zip(&stacks) {
            ensure!(s.data.iter().all(|v| v.is_finite()), "{}: non-finite features", b.role.name());
        }
        let inputs: Vec<Vec<f32>> = stacks.into_iter().map(|s| s.data).collect();
        run_parallel(&self.audio, &inputs, &mut self.audio_emb)?;
        lat.audio_nets = ms(t);
        Ok(())
    }

    /// Classify one window: `audio` (per-channel samples and their rate, or why there is
    /// none), `visual` (frames in the window, mean frame embedding) if any frame arrived.
    pub fn classify(
        &mut self,
        audio: std::result::Result<(&[Vec<f32>], u32), &str>,
        visual: Option<(usize, &[f32])>,
        visual_ms: f64,
    ) -> Result<WindowResult> {
        let mut lat = Latency { visual_nets: visual_ms, ..Latency::default() };
        let mut notes = Vec::new();
        let mut have_audio = false;
        if let Ok((ch, rate)) = audio {
            if self.audio.is_empty() {
                notes.push("bundle has no audio networks".to_string());
            } else {
                match self.audio_embeddings(ch, rate, &mut lat) {
                    Ok(()) => have_audio = true,
                    Err(e) => {
                        tracing::warn!("audio failed for this window: {e:#}");
                        notes.push(format!("audio failed: {e:#}"));
                    }
                }
            }
        } else if let Err(why) = audio {
            notes.push(why.to_string());
        }
        let visual = visual.filter(|(n, _)| *n > 0 && self.has_visual());
        if visual.is_none() && self.has_visual() {
            notes.push("no video frames in this window".into());
        }
        let have_visual = visual.is_some();
        let want = match (have_audio, have_visual) {
            (true, true) => Role::Fusion,
            (true, false) => Role::FusionAudio,
            (false, true) => Role::FusionVisual,
            (false, false) => bail!("neither audio nor video for this window ({})", notes.join("; ")),
        };
        let t = Instant::now();
        let emb = |role: Role, kind: EmbeddingKind| -> &[f32] {
            let (list, rows) = if role.is_audio() {
                (&self.audio, &self.audio_emb[..])
            } else {
                (&self.visual, visual.expect("visual embeddings only with frames").1)
            };
            let mut at = 0;
            for b in list {
                if b.role == role {
                    let row = &rows[at..at + b.width()];
                    return match kind {
                        EmbeddingKind::Fc1024 => &row[..b.fc_dim],
                        EmbeddingKind::Fc10 => &row[b.fc_dim..],
                    };
                }
                at += b.width();
            }
            unreachable!("{} checked at load", role.name())
        };
        let mut probabilities = [0.0f32; NUM_CLASSES];
        let head_name = match self.heads.iter().find(|h| h.role == want) {
            Some(h) => {
                let parts: Vec<&[f32]> = h.sources.iter().map(|&s| emb(s, h.embedding)).collect();
                let stacked: Vec<f32>;
                let inputs: Vec<(Vec<usize>, &[f32])> = if h.inputs.len() == 1 && h.inputs[0].len() == 3 {
                    stacked = parts.concat();
                    vec![(h.inputs[0].clone(), &stacked[..])]
                } else {
                    h.inputs.iter().cloned().zip(parts).collect()
                };
                let o = run(&h.plan, inputs).with_context(|| format!("{} failed", h.role.name()))?;
                let p = as_f32(&o[0])?;
                ensure!(p.len() == NUM_CLASSES, "{}: {} outputs", h.role.name(), p.len());
                probabilities.copy_from_slice(&p);
                if h.logits {
                    softmax(&mut probabilities);
                }
                h.role.name()
            }
            None => {
                // No head for these modalities: the mean of the backbones' own softmax.
                let roles: Vec<Role> = self
                    .audio
                    .iter()
                    .filter(|_| have_audio)
                    .chain(self.visual.iter().filter(|_| have_visual))
                    .map(|b| b.role)
                    .collect();
                for r in &roles {
                    let mut p = [0.0f32; NUM_CLASSES];
                    p.copy_from_slice(emb(*r, EmbeddingKind::Fc10));
                    softmax(&mut p);
                    probabilities.iter_mut().zip(p).for_each(|(a, b)| *a += b / roles.len() as f32);
                }
                notes.push(format!("bundle has no {} head; mean of the backbones' softmax", want.name()));
                "backbone_mean"
            }
        };
        lat.fusion = ms(t);
        if want != Role::Fusion && head_name != "backbone_mean" {
            notes.push(format!("used the {} head", head_name));
        }
        Ok(WindowResult {
            probabilities,
            head: head_name,
            audio: have_audio,
            visual: have_visual,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
            latency: lat,
        })
    }
}

/// Each backbone on its input, on a thread of its own, embeddings side by side into `out`.
/// One thread per network rather than one per core: the three audio networks of a window on
/// two cores then finish together, after about 1.5 network times rather than 2 (int8 paper
/// bundle, this 2-core VM: 354-460 ms against 455-484 ms).
fn run_parallel(nets: &[Backbone], inputs: &[Vec<f32>], out: &mut [f32]) -> Result<()> {
    let mut jobs = Vec::with_capacity(nets.len());
    push_jobs(&mut jobs, nets, inputs, out, |k| k);
    run_jobs(nets, jobs, nets.len()).into_iter().try_for_each(|(_, r, _)| r)
}

/// The cores this process may use (2 if unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// One network run: `nets[net]` on `input`, its embedding into `out`.
struct Job<'a> {
    tag: usize,
    net: usize,
    input: &'a [f32],
    out: &'a mut [f32],
}

/// One job per network of `nets` on its input, their embeddings side by side into `out`;
/// `tag(k)` names network k's job.
fn push_jobs<'a>(
    jobs: &mut Vec<Job<'a>>,
    nets: &[Backbone],
    inputs: &'a [Vec<f32>],
    out: &'a mut [f32],
    tag: impl Fn(usize) -> usize,
) {
    let mut rest = out;
    for (k, (b, x)) in nets.iter().zip(inputs).enumerate() {
        let (slot, tail) = rest.split_at_mut(b.width());
        rest = tail;
        jobs.push(Job { tag: tag(k), net: k, input: x, out: slot });
    }
}

/// Run the jobs on `workers` threads (tract runs a plan on one core), taking them costliest
/// network first (by each network's last run time; stable, so in the given order
/// until every network has run once). Returns (tag, result, thread ms) per job, in the
/// order they finished.
fn run_jobs(nets: &[Backbone], mut jobs: Vec<Job>, workers: usize) -> Vec<(usize, Result<()>, f64)> {
    let cost = |j: &Job| nets[j.net].last_us.load(Ordering::Relaxed);
    jobs.sort_by_key(|j| std::cmp::Reverse(cost(j)));
    // Popped from the back.
    jobs.reverse();
    let workers = workers.min(jobs.len());
    let queue = Mutex::new(jobs);
    let done = Mutex::new(Vec::new());
    let work = || loop {
        let Some(job) = queue.lock().expect("job queue").pop() else { return };
        let t = Instant::now();
        let b = &nets[job.net];
        let r = b.embed(job.input, job.out);
        let us = t.elapsed().as_micros() as u64;
        b.last_us.store(us, Ordering::Relaxed);
        done.lock().expect("job results").push((job.tag, r, us as f64 / 1e3));
    };
    std::thread::scope(|scope| {
        // Not on the calling thread: after running networks there, its resampling of the
        // next window took twice as long (70 ms instead of 33, int8 paper bundle), every
        // window, on this VM.
        for _ in 0..workers {
            scope.spawn(work);
        }
    });
    done.into_inner().expect("job results")
}

fn kind_of(role: Role) -> FeatureKind {
    match role {
        Role::AudMel => FeatureKind::Mel,
        Role::AudGam => FeatureKind::Gam,
        _ => FeatureKind::Cqt,
    }
}
