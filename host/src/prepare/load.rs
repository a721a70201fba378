//! One dataset item -> one cache clip: decode, make stereo 32 kHz exactly one window long,
//! three dB spectrograms, frames sampled by timestamp and resized.

use crate::cache::{ClipData, ClipHeader};
use crate::dataset::{Item, Visual};
use anyhow::{bail, Context, Result};
use avsc_shared::decode;
use avsc_shared::dsp::resample::Resampler;
use avsc_shared::dsp::FeatureExtractor;
use avsc_shared::image::{read_image, FrameResizer, RgbImage};
use avsc_shared::wav::Audio;
use avsc_shared::{FeatureKind, FeaturePreset, FramePreset};
use std::path::Path;

/// A clip may be this much shorter than the window and still be used (zero-padded).
pub const MIN_FRACTION: f64 = 0.9;

/// Per-worker state, built once per thread.
pub struct Worker {
    pub fx: FeatureExtractor,
    pub resizer: FrameResizer,
}

impl Worker {
    pub fn new(preset: &FeaturePreset) -> Worker {
        Worker { fx: FeatureExtractor::new(preset), resizer: FrameResizer::new() }
    }
}

/// Load one item. `notes` receives warnings (padding, mono) to print.
pub fn load(item: &Item, frames: &FramePreset, w: &mut Worker, notes: &mut Vec<String>) -> Result<ClipData> {
    let preset = w.fx.preset().clone();
    let audio_path = item.audio.as_deref().context("no audio file")?;
    let (audio, padded) = load_audio(audio_path, &preset, notes)?;
    let ch = audio.channel_refs();
    let specs = FeatureKind::ALL.map(|k| w.fx.db(k, &ch));
    let pictures = match &item.visual {
        Some(v) => load_frames(v, frames, preset.clip_seconds, &mut w.resizer, notes)?,
        None => {
            notes.push(format!("{}: no video or frame folder; audio only", item.id));
            Vec::new()
        }
    };
    Ok(ClipData {
        header: ClipHeader {
            id: item.id.clone(),
            label: item.label.map(|l| l.name().to_string()),
            location: item.location.clone(),
            spec_shape: specs[0].shape,
            n_frames: pictures.len(),
            frame_size: frames.size,
            padded_seconds: padded,
        },
        specs,
        frames: pictures,
    })
}

/// Stereo audio at the preset's rate, exactly one window long. Returns the seconds of
/// zero padding added.
pub fn load_audio(path: &Path, preset: &FeaturePreset, notes: &mut Vec<String>) -> Result<(Audio, f64)> {
    // One window and a second (more than any resampling filter reaches) is all that is
    // used: the rest of a long file is never decoded.
    let audio = decode::decode_audio_head(path, Some(preset.clip_seconds + 1.0))?;
    if let Some((c, i)) =
        audio.channels.iter().enumerate().find_map(|(c, x)| x.iter().position(|v| !v.is_finite()).map(|i| (c, i)))
    {
        bail!("{}: non-finite audio sample at channel {c}, sample {i}", path.display());
    }
    let (mut audio, how) = audio.into_stereo().with_context(|| path.display().to_string())?;
    notes.extend(how.note(&path.display().to_string()));
    if audio.sample_rate != preset.sample_rate {
        let r = Resampler::new(audio.sample_rate, preset.sample_rate, &preset.resample);
        audio =
            Audio { sample_rate: preset.sample_rate, channels: audio.channels.iter().map(|c| r.process(c)).collect() };
    }
    let want = preset.clip_samples();
    let have = audio.n_samples();
    let seconds = |n: usize| n as f64 / preset.sample_rate as f64;
    let mut padded = 0.0;
    if have < want {
        if (have as f64) < MIN_FRACTION * want as f64 {
            bail!(
                "{}: clip is {:.2} s long; at least {:.1} s of the {:.0}-s window is needed",
                path.display(),
                seconds(have),
                MIN_FRACTION * preset.clip_seconds,
                preset.clip_seconds
            );
        }
        padded = seconds(want - have);
        notes.push(format!("{}: {:.2} s long; zero-padded by {padded:.2} s", path.display(), seconds(have)));
    }
    for c in audio.channels.iter_mut() {
        c.resize(want, 0.0);
    }
    Ok((audio, padded))
}

/// `fps` frames per second over the window, resized to the preset size.
pub fn load_frames(
    visual: &Visual,
    frames: &FramePreset,
    clip_seconds: f64,
    resizer: &mut FrameResizer,
    notes: &mut Vec<String>,
) -> Result<Vec<RgbImage>> {
    let want = (clip_seconds * frames.fps).round() as usize;
    let (source, mut pics) = match visual {
        Visual::Video(path) => {
            let f = decode::decode_video_frames(path, frames.fps, Some(clip_seconds))?;
            (path.as_path(), f.into_iter().map(|(_, img)| img).collect::<Vec<_>>())
        }
        Visual::Frames(dir) => {
            let mut files: Vec<_> = std::fs::read_dir(dir)
                .with_context(|| format!("{}: cannot list frame folder", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|e| ["png", "jpg", "jpeg"].iter().any(|x| e.eq_ignore_ascii_case(x)))
                })
                .collect();
            files.sort();
            files.truncate(want);
            (dir.as_path(), files.iter().map(|p| read_image(p)).collect::<Result<Vec<_>>>()?)
        }
    };
    if pics.is_empty() {
        bail!("{}: no frames", source.display());
    }
    if pics.len() < want {
        if (pics.len() as f64) < MIN_FRACTION * want as f64 {
            bail!(
                "{}: only {} frames; {want} expected for {clip_seconds} s at {} fps",
                source.display(),
                pics.len(),
                frames.fps
            );
        }
        notes.push(format!("{}: {} of {want} frames; repeating the last", source.display(), pics.len()));
        let last = pics.last().unwrap().clone();
        pics.resize(want, last);
    }
    pics.truncate(want);
    Ok(pics.iter().map(|p| resizer.resize(p, frames.size)).collect())
}
