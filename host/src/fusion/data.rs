//! Phase II training data: per clip, the k backbone embeddings a head reads, stacked.

use super::FusionSpec;
use crate::dataset::{grouped_validation_split, Item};
use crate::embed::EmbeddingSet;
use crate::rng::SplitMix64;
use crate::train::data::{Data, Sample};
use anyhow::{bail, Result};

/// The stacked `[k, d]` embeddings of one clip for `spec`.
pub fn stacked(set: &EmbeddingSet, spec: &FusionSpec, clip: usize) -> Vec<f32> {
    let kind = spec.kind.embedding();
    spec.modalities.sources().iter().flat_map(|&r| set.get(r, kind, clip).iter().copied()).collect()
}

/// Embeddings of a split's labelled clips, divided by location exactly as Phase I divided
/// them (same fraction and seed), so Phase II validates on clips no backbone trained on.
pub struct FusionData {
    spec: FusionSpec,
    /// (stacked embeddings, label)
    train: Vec<(Vec<f32>, usize)>,
    val: Vec<(Vec<f32>, usize)>,
}

impl FusionData {
    pub fn new(set: &EmbeddingSet, spec: FusionSpec, split: &str, val_fraction: f64, seed: u64) -> Result<FusionData> {
        let clips = set.labelled(split);
        if clips.is_empty() {
            bail!("no labelled clips in split {split:?} of the embeddings");
        }
        let items: Vec<Item> = clips
            .iter()
            .map(|&i| Item {
                id: set.items[i].id.clone(),
                audio: None,
                visual: None,
                label: set.items[i].label(),
                location: set.items[i].location.clone(),
                folds: Vec::new(),
            })
            .collect();
        let (train, val) = grouped_validation_split(&items, val_fraction, seed);
        let index: std::collections::HashMap<&str, usize> =
            set.items.iter().enumerate().map(|(i, c)| (c.id.as_str(), i)).collect();
        let rows = |part: Vec<Item>| -> Vec<(Vec<f32>, usize)> {
            part.iter()
                .map(|it| {
                    let clip = index[it.id.as_str()];
                    (stacked(set, &spec, clip), it.label.expect("labelled").index())
                })
                .collect()
        };
        Ok(FusionData { spec, train: rows(train), val: rows(val) })
    }

    pub fn train_len(&self) -> usize {
        self.train.len()
    }
}

impl Data for FusionData {
    fn input_shape(&self) -> [usize; 3] {
        [self.spec.k(), self.spec.d(), 1]
    }
    fn epoch_samples(&self, rng: &mut SplitMix64) -> Vec<Sample> {
        let mut s: Vec<Sample> = (0..self.train.len()).map(|i| (i, 0)).collect();
        rng.shuffle(&mut s);
        s
    }
    fn train_input(&self, s: Sample) -> Result<Vec<f32>> {
        Ok(self.train[s.0].0.clone())
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
        Ok(vec![self.val[clip].0.clone()])
    }
}
