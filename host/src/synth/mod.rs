//! `avsc-host synth`: a synthetic stand-in dataset in the plain folder layout
//! (`<out>/<label>/<clip>.wav` + `<out>/<label>/<clip>/frame_NN.png`), deterministic per seed.
//!
//! The classes are built so that neither modality alone can separate them and fusion can:
//! audio renders scene *groups* {0,1}, {2,3}, ... (the two classes of a group share their
//! spectral envelope, tones and modulation and differ only by a faint cue), while pictures
//! render the groups {1,2}, {3,4}, ..., {9,0} (shared colours, textures and shapes, a faint
//! per-class cue). Audio then confuses airport/bus, visual confuses bus/metro, and the
//! pair of them decides. `--audio-noise` / `--visual-noise` bury the faint cues deeper.

mod audio;
pub mod mp4;
mod visual;

use crate::rng::SplitMix64;
use anyhow::{Context, Result};
use avsc_shared::wav::{self, Audio};
use avsc_shared::{Label, NUM_CLASSES};
use std::path::Path;

#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub clips_per_class: usize,
    pub seed: u64,
    /// Relative level of the audio nuisance noise (1 = default difficulty).
    pub audio_noise: f64,
    /// Relative level of the pixel and colour noise (1 = default difficulty).
    pub visual_noise: f64,
    pub sample_rate: u32,
    pub seconds: f64,
    pub frames_per_second: f64,
    pub width: usize,
    pub height: usize,
    /// Distinct recording places per class (clips of one place share nuisance settings).
    pub locations_per_class: usize,
    /// Prefix of every clip name (and so of its location): keeps two sets apart in one cache.
    pub prefix: String,
    /// Write each clip's pictures as an H.264 MP4 at this frame rate (the rendered frames,
    /// `frames_per_second` of them, held and panned 2 px a frame in between) instead of a
    /// folder of PNGs.
    pub video_fps: Option<u32>,
    /// 24-bit PCM WAV instead of 16-bit.
    pub pcm24: bool,
}

impl SynthConfig {
    /// TAU Urban Audio-Visual 2021's sizes: 48 kHz 24-bit stereo WAV, 1280x720 H.264 MP4 at
    /// 30 frames a second, 10 s. (The TAU MP4s also carry an AAC copy of the audio; no AAC
    /// encoder is at hand without ffmpeg, so these MP4s are video only and the audio is read
    /// from the WAV, as the TAU reader prefers anyway.)
    pub fn tau_size(self) -> SynthConfig {
        SynthConfig { sample_rate: 48_000, width: 1280, height: 720, video_fps: Some(30), pcm24: true, ..self }
    }
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            clips_per_class: 24,
            seed: 1,
            audio_noise: 1.0,
            visual_noise: 1.0,
            sample_rate: 32_000,
            seconds: 10.0,
            frames_per_second: 2.0,
            width: 160,
            height: 120,
            locations_per_class: 6,
            prefix: String::new(),
            video_fps: None,
            pcm24: false,
        }
    }
}

/// The audio group of a class: classes 2g and 2g+1 sound alike.
pub fn audio_group(class: usize) -> usize {
    class / 2
}

/// The visual group of a class: classes 2g+1 and 2g+2 (mod 10) look alike.
pub fn visual_group(class: usize) -> usize {
    ((class + NUM_CLASSES - 1) % NUM_CLASSES) / 2
}

/// Write the dataset (clips in parallel); returns the number of clips. Existing clips are
/// overwritten.
pub fn write(out: &Path, cfg: &SynthConfig, progress: impl FnMut(usize, usize) + Send) -> Result<usize> {
    use rayon::prelude::*;
    let total = cfg.clips_per_class * NUM_CLASSES;
    for label in Label::all() {
        let dir = out.join(label.name());
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let jobs: Vec<(Label, usize)> = Label::all().flat_map(|l| (0..cfg.clips_per_class).map(move |k| (l, k))).collect();
    let progress = std::sync::Mutex::new((0usize, progress));
    jobs.par_iter().try_for_each(|&(label, k)| -> Result<()> {
        write_clip(out, cfg, label, k)?;
        let mut p = progress.lock().unwrap();
        p.0 += 1;
        let done = p.0;
        (p.1)(done, total);
        Ok(())
    })?;
    Ok(total)
}

/// The file stem and the location index of clip `k` of a class. Stems are unique across
/// classes, as TAU's are (its reader names clips by stem).
fn stem_of(cfg: &SynthConfig, label: Label, k: usize) -> (String, usize) {
    let loc = k % cfg.locations_per_class;
    (format!("{}-{}loc{loc}-{k:03}", label.name(), cfg.prefix), loc)
}

/// A stand-in for TAU Urban Audio-Visual 2021 in its layout: the `train` clips form
/// fold1_train, the `evaluate` clips (other places: give them another seed and prefix)
/// fold1_evaluate and fold1_test, with `meta.csv` (an `identifier` per class and place) and
/// `evaluation_setup/`. Audio is `<label>/<clip>.wav`; `filename_video` names the clip's
/// folder of frames, which the TAU reader takes in place of an MP4. Returns the clip count.
pub fn write_tau(
    root: &Path,
    train: &SynthConfig,
    evaluate: &SynthConfig,
    mut progress: impl FnMut(usize, usize) + Send,
) -> Result<usize> {
    anyhow::ensure!(train.prefix != evaluate.prefix, "the train and evaluate sets need different prefixes");
    let total = (train.clips_per_class + evaluate.clips_per_class) * NUM_CLASSES;
    let n_train = write(root, train, |d, _| progress(d, total))?;
    let offset = n_train;
    write(root, evaluate, |d, _| progress(offset + d, total))?;
    let head3 = "filename_audio\tfilename_video\tscene_label";
    let mut meta = format!("{head3}\tidentifier\n");
    let (mut fold_train, mut fold_eval) = (format!("{head3}\n"), format!("{head3}\n"));
    let mut fold_test = "filename_audio\tfilename_video\n".to_string();
    for (cfg, is_train) in [(train, true), (evaluate, false)] {
        for label in Label::all() {
            for k in 0..cfg.clips_per_class {
                let (stem, loc) = stem_of(cfg, label, k);
                let ext = if cfg.video_fps.is_some() { ".mp4" } else { "" };
                let (audio, video) = (format!("{}/{stem}.wav", label.name()), format!("{}/{stem}{ext}", label.name()));
                let id = format!("{}-{}loc{loc}", label.name(), cfg.prefix);
                meta.push_str(&format!("{audio}\t{video}\t{}\t{id}\n", label.name()));
                let row = format!("{audio}\t{video}\t{}\n", label.name());
                if is_train {
                    fold_train.push_str(&row);
                } else {
                    fold_eval.push_str(&row);
                    fold_test.push_str(&format!("{audio}\t{video}\n"));
                }
            }
        }
    }
    let setup = root.join("evaluation_setup");
    std::fs::create_dir_all(&setup).with_context(|| format!("{}: cannot create", setup.display()))?;
    for (path, text) in [
        (setup.join("fold1_train.csv"), fold_train),
        (setup.join("fold1_evaluate.csv"), fold_eval),
        (setup.join("fold1_test.csv"), fold_test),
        // meta.csv last: its presence makes the folder a TAU dataset.
        (root.join("meta.csv"), meta),
    ] {
        avsc_shared::write_atomic(&path, text.as_bytes())?;
    }
    Ok(total)
}

fn write_clip(out: &Path, cfg: &SynthConfig, label: Label, k: usize) -> Result<()> {
    let dir = out.join(label.name());
    let (stem, loc) = stem_of(cfg, label, k);
    let clip_seed = cfg.seed.wrapping_mul(1_000_003).wrapping_add((label.index() * 10_000 + k) as u64);
    let loc_seed = cfg.seed.wrapping_mul(7_919).wrapping_add((label.index() * 100 + loc) as u64);
    let mut rng = SplitMix64::derive(clip_seed, 1);
    let mut loc_rng = SplitMix64::derive(loc_seed, 2);
    let channels = audio::render(label.index(), cfg, &mut rng, &mut loc_rng);
    let a = Audio { sample_rate: cfg.sample_rate, channels };
    let wav_bytes = if cfg.pcm24 { wav::encode_pcm24(&a) } else { wav::encode(&a, false) };
    avsc_shared::write_atomic(&dir.join(format!("{stem}.wav")), &wav_bytes)?;
    let n_frames = (cfg.seconds * cfg.frames_per_second).round() as usize;
    let mut vrng = SplitMix64::derive(clip_seed, 3);
    let mut vloc = SplitMix64::derive(loc_seed, 4);
    let scene = visual::Scene::new(label.index(), cfg, &mut vrng, &mut vloc);
    if let Some(fps) = cfg.video_fps {
        // Each rendered picture is shown for `hold` video frames, panning 2 px a frame.
        let hold = (fps as f64 / cfg.frames_per_second).round().max(1.0) as usize;
        let mut current = None;
        let frames = (0..n_frames * hold).map(|j| {
            if j % hold == 0 {
                current = Some(scene.render(j / hold, cfg, &mut vrng));
            }
            pan(current.as_ref().expect("rendered"), 2 * (j % hold))
        });
        return mp4::write_h264(&dir.join(format!("{stem}.mp4")), cfg.width, cfg.height, fps, frames)
            .with_context(|| format!("{stem}.mp4"));
    }
    let fdir = dir.join(&stem);
    std::fs::create_dir_all(&fdir).with_context(|| format!("{}: cannot create", fdir.display()))?;
    for f in 0..n_frames {
        let img = scene.render(f, cfg, &mut vrng);
        avsc_shared::write_atomic(&fdir.join(format!("frame_{f:02}.png")), &visual::encode_png(&img)?)?;
    }
    Ok(())
}

/// `img` shifted left by `dx` pixels, wrapping around.
fn pan(img: &avsc_shared::image::RgbImage, dx: usize) -> avsc_shared::image::RgbImage {
    let (w, row) = (img.width, img.width * 3);
    let dx = dx % w.max(1);
    let mut data = Vec::with_capacity(img.data.len());
    for r in img.data.chunks(row) {
        data.extend_from_slice(&r[dx * 3..]);
        data.extend_from_slice(&r[..dx * 3]);
    }
    avsc_shared::image::RgbImage { width: w, height: img.height, data }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{grouped_validation_split, Dataset, Split, Visual};

    #[test]
    fn groups_pair_classes_differently() {
        for c in 0..NUM_CLASSES {
            let a_partner = (0..NUM_CLASSES).find(|&o| o != c && audio_group(o) == audio_group(c)).unwrap();
            let v_partner = (0..NUM_CLASSES).find(|&o| o != c && visual_group(o) == visual_group(c)).unwrap();
            assert_ne!(a_partner, v_partner, "class {c}: one modality must resolve the other's confusion");
        }
    }

    #[test]
    fn writes_a_deterministic_folder_dataset() {
        let cfg = SynthConfig { clips_per_class: 2, seconds: 1.0, locations_per_class: 2, ..Default::default() };
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        assert_eq!(write(a.path(), &cfg, |_, _| {}).unwrap(), 20);
        write(b.path(), &cfg, |_, _| {}).unwrap();
        let ds = Dataset::open(a.path()).unwrap();
        let l = ds.list(Split::All).unwrap();
        assert_eq!(l.items.len(), 20);
        let it = &l.items[0];
        let Some(Visual::Frames(f)) = &it.visual else { panic!("frames expected") };
        assert_eq!(std::fs::read_dir(f).unwrap().count(), 2);
        let wav_a = std::fs::read(it.audio.as_ref().unwrap()).unwrap();
        let wav_b = std::fs::read(b.path().join("airport/airport-loc0-000.wav")).unwrap();
        assert_eq!(wav_a, wav_b, "same seed, same bytes");
        let audio = avsc_shared::wav::decode(&wav_a).unwrap();
        assert_eq!((audio.channels.len(), audio.n_samples()), (2, 32_000));
        let (train, val) = grouped_validation_split(&l.items, 0.5, 1);
        assert!(!train.is_empty() && !val.is_empty());
        let other = write(b.path(), &SynthConfig { seed: 2, ..cfg }, |_, _| {});
        assert!(other.is_ok());
        assert_ne!(
            wav_a,
            std::fs::read(b.path().join("airport/airport-loc0-000.wav")).unwrap(),
            "another seed, other bytes"
        );
    }

    #[test]
    fn writes_the_tau_layout_with_folds() {
        let small = SynthConfig { clips_per_class: 2, seconds: 1.0, locations_per_class: 2, ..Default::default() };
        let eval = SynthConfig { clips_per_class: 1, seed: 2, prefix: "eval-".into(), ..small.clone() };
        let d = tempfile::tempdir().unwrap();
        assert_eq!(write_tau(d.path(), &small, &eval, |_, _| {}).unwrap(), 30);
        let ds = Dataset::open(d.path()).unwrap();
        assert!(ds.has_folds());
        let all = ds.list(Split::All).unwrap();
        assert!(all.errors.is_empty(), "{:?}", all.errors);
        assert_eq!(all.items.len(), 30);
        let train = all.items.iter().filter(|i| i.folds == ["fold1_train"]).count();
        let held = all.items.iter().filter(|i| i.folds == ["fold1_evaluate", "fold1_test"]).count();
        assert_eq!((train, held), (20, 10));
        let it = all.items.iter().find(|i| i.id == "bus-eval-loc0-000").unwrap();
        assert_eq!(it.location, "bus-eval-loc0");
        assert!(
            matches!(&it.visual, Some(Visual::Frames(f)) if f.ends_with("bus/bus-eval-loc0-000")),
            "{:?}",
            it.visual
        );
        let test = ds.list(Split::Fold1Test).unwrap();
        assert!(test.items.iter().all(|i| i.label.is_none() && i.id.contains("-eval-")));
    }

    #[test]
    fn tau_shaped_clips_are_mp4_and_24_bit_wav() {
        let small = SynthConfig { clips_per_class: 1, seconds: 1.0, locations_per_class: 1, ..Default::default() };
        let small = SynthConfig { sample_rate: 8_000, width: 64, height: 48, ..small.tau_size() };
        let eval = SynthConfig { seed: 2, prefix: "eval-".into(), ..small.clone() };
        let d = tempfile::tempdir().unwrap();
        write_tau(d.path(), &small, &eval, |_, _| {}).unwrap();
        let all = Dataset::open(d.path()).unwrap().list(Split::All).unwrap();
        assert_eq!(all.items.len(), 20);
        let it = &all.items[0];
        let Some(Visual::Video(mp4)) = &it.visual else { panic!("an MP4 expected: {:?}", it.visual) };
        let info = avsc_shared::decode::probe(mp4).unwrap();
        assert_eq!((info.width, info.height), (64, 48), "{info:?}");
        let frames = avsc_shared::decode::decode_video_frames(mp4, 2.0, None).unwrap();
        assert_eq!(frames.len(), 2, "1 s at 2 frames a second");
        let wav = std::fs::read(it.audio.as_ref().unwrap()).unwrap();
        assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 24, "bits per sample");
        assert_eq!(avsc_shared::wav::decode(&wav).unwrap().n_samples(), 8_000);
    }
}
