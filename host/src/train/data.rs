//! Training data from the prepared cache: audio stacks (statics preloaded once, deltas
//! stacked per batch) and video frames (read per batch, normalised per backbone).

use crate::cache::{Cache, CacheItem, ClipData};
use crate::dataset::grouped_validation_split;
use crate::dataset::Item;
use crate::rng::SplitMix64;
use anyhow::{bail, ensure, Context, Result};
use avsc_shared::dsp::deltas::stack6;
use avsc_shared::image::normalise;
use avsc_shared::preset::DeltaParams;
use avsc_shared::{Array3, FeatureKind, Normalisation};
use half::f16;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One training example: (clip index, view index) — the view is a frame for video, 0 for audio.
pub type Sample = (usize, usize);

/// What the training loop needs from a task.
pub trait Data: Sync {
    /// (channels, height, width) of one input.
    fn input_shape(&self) -> [usize; 3];
    /// The training examples of one epoch, in order.
    fn epoch_samples(&self, rng: &mut SplitMix64) -> Vec<Sample>;
    /// One training input, CHW.
    fn train_input(&self, s: Sample) -> Result<Vec<f32>>;
    fn train_label(&self, clip: usize) -> usize;
    fn val_len(&self) -> usize;
    fn val_label(&self, clip: usize) -> usize;
    /// Every view of a validation clip (its probabilities are averaged).
    fn val_inputs(&self, clip: usize) -> Result<Vec<Vec<f32>>>;
}

/// The cache's labelled items of `split`, divided by location into (train, validation).
pub fn split_items(cache: &Cache, split: &str, fraction: f64, seed: u64) -> Result<(Vec<CacheItem>, Vec<CacheItem>)> {
    let items: Vec<Item> = cache
        .items(split)
        .into_iter()
        .filter_map(|c| {
            c.label().map(|label| Item {
                id: c.id.clone(),
                audio: None,
                visual: None,
                label: Some(label),
                location: c.location.clone(),
                folds: Vec::new(),
            })
        })
        .collect();
    if items.is_empty() {
        let has_folds = cache.manifest.items.iter().any(|i| i.splits.iter().any(|s| s.starts_with("fold")));
        if !has_folds && split != "all" {
            bail!(
                "the cache at {} has no folds (its dataset has no evaluation_setup/ fold lists); train with --split all",
                cache.root.display()
            );
        }
        bail!("the cache at {} has no labelled items in split {split:?}", cache.root.display());
    }
    let (train, val) = grouped_validation_split(&items, fraction, seed);
    let index: HashMap<&str, &CacheItem> = cache.manifest.items.iter().map(|c| (c.id.as_str(), c)).collect();
    let back = |v: Vec<Item>| -> Vec<CacheItem> { v.iter().map(|it| index[it.id.as_str()].clone()).collect() };
    Ok((back(train), back(val)))
}

/// Which clips a Phase I run trained and validated on: `OUT/split.json`. Phase II and a
/// reader of the run can check from it that no held-out clip was used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    /// The cache folder, as given.
    pub cache: String,
    pub split: String,
    pub val_fraction: f64,
    pub seed: u64,
    pub train: Vec<String>,
    pub validation: Vec<String>,
}

pub const SPLIT_FILE: &str = "split.json";

impl SplitRecord {
    pub fn new(
        cache: &Cache,
        split: &str,
        val_fraction: f64,
        seed: u64,
        train: &[CacheItem],
        val: &[CacheItem],
    ) -> Self {
        let ids = |v: &[CacheItem]| v.iter().map(|c| c.id.clone()).collect();
        SplitRecord {
            cache: cache.root.display().to_string(),
            split: split.to_string(),
            val_fraction,
            seed,
            train: ids(train),
            validation: ids(val),
        }
    }

    /// Written atomically into `out` (created if needed).
    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
        avsc_shared::write_atomic(&out.join(SPLIT_FILE), serde_json::to_string_pretty(self)?.as_bytes())
    }

    pub fn read(run: &Path) -> Result<SplitRecord> {
        let path = run.join(SPLIT_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a split record", path.display()))
    }
}

fn label_of(item: &CacheItem) -> usize {
    item.label().expect("split_items keeps labelled items").index()
}

/// A preloaded spectrogram: f16 values, shape, label.
type Loaded = (Vec<f16>, [usize; 3], usize);

/// One feature kind's dB statics, preloaded (f16, as stored).
pub struct AudioData {
    deltas: DeltaParams,
    shape: [usize; 3],
    train: Vec<(Vec<f16>, usize)>,
    val: Vec<(Vec<f16>, usize)>,
}

impl AudioData {
    pub fn load(cache: &Cache, kind: FeatureKind, train: &[CacheItem], val: &[CacheItem]) -> Result<AudioData> {
        let total = train.len() + val.len();
        let pb = crate::progress::bar(total, "loading", "clips");
        let load = |items: &[CacheItem]| -> Result<Vec<Loaded>> {
            items
                .par_iter()
                .map(|it| {
                    let clip = cache.read(&it.id)?;
                    pb.inc(1);
                    let s = clip.spec(kind);
                    Ok((s.data.iter().map(|&v| f16::from_f32(v)).collect(), s.shape, label_of(it)))
                })
                .collect()
        };
        let (train, val) = (load(train)?, load(val)?);
        pb.finish_and_clear();
        let shape = train.first().map(|t| t.1).context("no training clips")?;
        ensure!(train.iter().chain(&val).all(|t| t.1 == shape), "spectrogram shapes differ across clips");
        let strip = |v: Vec<Loaded>| v.into_iter().map(|(d, _, l)| (d, l)).collect();
        let deltas = cache.manifest.feature_preset.deltas.clone();
        Ok(AudioData { deltas, shape, train: strip(train), val: strip(val) })
    }

    /// Mean and standard deviation of every (input channel, frequency bin) over the training
    /// clips and their frames, channel-major: the fixed input normalisation's statistics.
    pub fn channel_bin_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let [c, f, t] = self.input_shape();
        let rows = c * f;
        let sums = self
            .train
            .par_iter()
            .fold(
                || vec![(0.0f64, 0.0f64); rows],
                |mut acc, (spec, _)| {
                    for (a, row) in acc.iter_mut().zip(self.stack(spec).chunks_exact(t)) {
                        a.0 += row.iter().map(|&v| v as f64).sum::<f64>();
                        a.1 += row.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
                    }
                    acc
                },
            )
            .reduce(|| vec![(0.0, 0.0); rows], |a, b| a.iter().zip(&b).map(|(x, y)| (x.0 + y.0, x.1 + y.1)).collect());
        let n = (self.train.len() * t).max(1) as f64;
        sums.iter()
            .map(|(s, q)| {
                let mean = s / n;
                (mean as f32, (q / n - mean * mean).max(0.0).sqrt() as f32)
            })
            .unzip()
    }

    fn stack(&self, spec: &[f16]) -> Vec<f32> {
        let a = Array3::from_vec(self.shape, spec.iter().map(|v| v.to_f32()).collect());
        stack6(&a, &self.deltas).data
    }
}

impl Data for AudioData {
    fn input_shape(&self) -> [usize; 3] {
        stack6(&Array3::zeros(self.shape), &self.deltas).shape
    }
    fn epoch_samples(&self, rng: &mut SplitMix64) -> Vec<Sample> {
        let mut s: Vec<Sample> = (0..self.train.len()).map(|i| (i, 0)).collect();
        rng.shuffle(&mut s);
        s
    }
    fn train_input(&self, s: Sample) -> Result<Vec<f32>> {
        Ok(self.stack(&self.train[s.0].0))
    }
    fn train_label(&self, clip: usize) -> usize {
        self.train[clip].1
    }
    fn val_len(&self) -> usize {
        self.val.len()
    }
    fn val_label(&self, clip: usize) -> usize {
        self.val[clip].1
    }
    fn val_inputs(&self, clip: usize) -> Result<Vec<Vec<f32>>> {
        Ok(vec![self.stack(&self.val[clip].0)])
    }
}

/// Video frames: (clip, frame) pairs with the clip label.
pub struct VisualData {
    norm: Normalisation,
    size: usize,
    frames_per_clip: usize,
    eval_frames: usize,
    /// (path, frame count, label)
    train: Vec<(PathBuf, usize, usize)>,
    val: Vec<(PathBuf, usize, usize)>,
}

impl VisualData {
    /// `frames_per_clip` random frames per training clip and epoch (0: every frame, as the
    /// paper trains); `eval_frames` evenly spaced frames per validation clip (0: all).
    pub fn new(
        cache: &Cache,
        norm: Normalisation,
        train: &[CacheItem],
        val: &[CacheItem],
        frames_per_clip: usize,
        eval_frames: usize,
    ) -> Result<VisualData> {
        let entries = |items: &[CacheItem]| -> Result<Vec<(PathBuf, usize, usize)>> {
            items
                .iter()
                .map(|it| {
                    let path = Cache::item_path(&cache.root, &it.id);
                    let (h, _) = ClipData::read_frames(&path, &[])?;
                    ensure!(h.n_frames > 0, "{}: no frames", path.display());
                    Ok((path, h.n_frames, label_of(it)))
                })
                .collect()
        };
        let size = cache.manifest.frame_preset.size;
        Ok(VisualData { norm, size, frames_per_clip, eval_frames, train: entries(train)?, val: entries(val)? })
    }
}

impl Data for VisualData {
    fn input_shape(&self) -> [usize; 3] {
        [3, self.size, self.size]
    }
    fn epoch_samples(&self, rng: &mut SplitMix64) -> Vec<Sample> {
        let mut s = Vec::new();
        for (i, &(_, n, _)) in self.train.iter().enumerate() {
            let mut frames: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut frames);
            let take = if self.frames_per_clip == 0 { n } else { self.frames_per_clip };
            s.extend(frames.into_iter().take(take).map(|k| (i, k)));
        }
        rng.shuffle(&mut s);
        s
    }
    fn train_input(&self, s: Sample) -> Result<Vec<f32>> {
        let (_, frames) = ClipData::read_frames(&self.train[s.0].0, &[s.1])?;
        Ok(normalise(&frames[0], &self.norm))
    }
    fn train_label(&self, clip: usize) -> usize {
        self.train[clip].2
    }
    fn val_len(&self) -> usize {
        self.val.len()
    }
    fn val_label(&self, clip: usize) -> usize {
        self.val[clip].2
    }
    fn val_inputs(&self, clip: usize) -> Result<Vec<Vec<f32>>> {
        let (path, n, _) = &self.val[clip];
        let k = if self.eval_frames == 0 { *n } else { self.eval_frames.min(*n) };
        let which: Vec<usize> = (0..k).map(|j| (2 * j + 1) * n / (2 * k)).collect();
        let (_, frames) = ClipData::read_frames(path, &which)?;
        Ok(frames.iter().map(|f| normalise(f, &self.norm)).collect())
    }
}
