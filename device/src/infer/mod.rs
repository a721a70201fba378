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

mod nets;
mod workers;

pub use nets::{build_plan, run_f32, transforms_for, Plan};
pub use workers::{cores, Pool};

use crate::stream::AudioStream;
use anyhow::{bail, ensure, Context, Result};
use avsc_shared::bundle::{Bundle, EmbeddingKind, Precision, Role};
use avsc_shared::dsp::resample::Resampler;
use avsc_shared::dsp::FeatureExtractor;
use avsc_shared::image::{normalise, FrameResizer, RgbImage};
use avsc_shared::{Array3, FeatureKind, FeaturePreset, FramePreset, NUM_CLASSES};
use nets::{as_f32, run, softmax, Backbone, Head};
use std::path::Path;
use std::time::Instant;
use workers::{push_jobs, run_jobs, run_parallel};

/// Per-stage wall time of one window, milliseconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Latency {
    /// Resampling after the window's last sample (0 when the window was streamed: its
    /// samples were resampled as they came, counted in `fill`).
    pub resample: f64,
    pub features: f64,
    /// Features computed while the window filled (resampling, STFT, MEL and GAM as the
    /// samples arrived): thread time, not part of `end_of_window`.
    pub fill: f64,
    pub audio_nets: f64,
    pub fusion: f64,
    /// Visual backbones on this window's frames: thread time, summed over frames and
    /// networks (they ran as the frames arrived, two or more at a time).
    pub visual_nets: f64,
    /// From the window's last sample to its probabilities.
    pub end_of_window: f64,
}

/// A window's audio: per-channel samples at `rate`, and the windower's first frame of the
/// window when its frames were also handed to [`Engine::audio_frames`] as they arrived (the
/// features are then mostly computed already).
pub struct WindowAudio<'a> {
    pub channels: &'a [Vec<f32>],
    pub rate: u32,
    pub first_frame: Option<u64>,
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
    /// The window being filled, when the loop hands frames on as they arrive.
    stream: Option<AudioStream>,
    /// Where the networks run (one thread per audio network, at least one per core).
    pool: Pool,
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
        let audio_threads = audio.len();
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
            stream: None,
            pool: Pool::new(audio_threads.max(cores()))?,
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
        for (f, r, t) in run_jobs(&self.pool, &self.visual, jobs, cores()) {
            ms[f] += t;
            if let (Err(e), Ok(())) = (r, &results[f]) {
                results[f] = Err(e);
            }
        }
        results
    }

    /// Interleaved frames `first..` of `channels` at `rate` as they enter the windower; the
    /// window being filled starts at frame `window_start` ([`crate::window::Event::Frames`]).
    /// Its features are computed as they come; [`Self::classify`] with the window's
    /// `first_frame` then finishes them.
    pub fn audio_frames(&mut self, first: u64, window_start: u64, interleaved: &[f32], channels: usize, rate: u32) {
        if self.audio.is_empty() {
            return;
        }
        if !self.stream.as_ref().is_some_and(|s| s.fits(rate, channels)) {
            self.stream = AudioStream::new(&self.fx, rate, channels);
        }
        if let Some(s) = self.stream.as_mut() {
            s.frames(&mut self.fx, first, window_start, interleaved);
        }
    }

    /// Features and audio networks for a window.
    fn audio_embeddings(&mut self, audio: &WindowAudio, lat: &mut Latency) -> Result<()> {
        let t = Instant::now();
        let frames = audio.channels.first().map_or(0, Vec::len);
        let streamed = match (audio.first_frame, self.stream.as_mut()) {
            (Some(first), Some(s)) => s.take(&mut self.fx, first, frames),
            _ => None,
        };
        let stacks = match streamed {
            Some((stacks, fill)) => {
                lat.fill = fill;
                lat.features = ms(t);
                // In FeatureKind::ALL order; the bundle may have some of the three networks.
                let mut all = stacks.map(Some);
                let pick = |k: FeatureKind| FeatureKind::ALL.iter().position(|&a| a == k).expect("a kind");
                self.audio.iter().map(|b| all[pick(kind_of(b.role))].take().expect("one network per kind")).collect()
            }
            None => self.window_stacks(audio.channels, audio.rate, lat)?,
        };
        let t = Instant::now();
        for (b, s) in self.audio.iter().zip(&stacks) {
            ensure!(s.data.iter().all(|v| v.is_finite()), "{}: non-finite features", b.role.name());
        }
        let inputs: Vec<Vec<f32>> = stacks.into_iter().map(|s| s.data).collect();
        run_parallel(&self.pool, &self.audio, &inputs, &mut self.audio_emb)?;
        lat.audio_nets = ms(t);
        Ok(())
    }

    /// The audio networks' inputs computed from the whole window (per-channel samples at
    /// `rate`).
    fn window_stacks(&mut self, channels: &[Vec<f32>], rate: u32, lat: &mut Latency) -> Result<Vec<Array3>> {
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
        Ok(stacks)
    }

    /// Classify one window: `audio` (per-channel samples and their rate, or why there is
    /// none), `visual` (frames in the window, mean frame embedding) if any frame arrived.
    pub fn classify(
        &mut self,
        audio: std::result::Result<WindowAudio, &str>,
        visual: Option<(usize, &[f32])>,
        visual_ms: f64,
    ) -> Result<WindowResult> {
        let mut lat = Latency { visual_nets: visual_ms, ..Latency::default() };
        let mut notes = Vec::new();
        let mut have_audio = false;
        if let Ok(audio) = &audio {
            if self.audio.is_empty() {
                notes.push("bundle has no audio networks".to_string());
            } else {
                match self.audio_embeddings(audio, &mut lat) {
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

fn kind_of(role: Role) -> FeatureKind {
    match role {
        Role::AudMel => FeatureKind::Mel,
        Role::AudGam => FeatureKind::Gam,
        _ => FeatureKind::Cqt,
    }
}
