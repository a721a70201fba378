//! Phase II training data: per clip, the k backbone embeddings a head reads, stacked.

use super::FusionSpec;
use crate::embed::EmbeddingSet;
use crate::rng::SplitMix64;
use crate::train::data::{Data, Sample};
use anyhow::{bail, ensure, Result};
use std::collections::HashSet;

/// The stacked `[k, d]` embeddings of one clip for `spec`.
pub fn stacked(set: &EmbeddingSet, spec: &FusionSpec, clip: usize) -> Vec<f32> {
    let kind = spec.kind.embedding();
    spec.modalities.sources().iter().flat_map(|&r| set.get(r, kind, clip).iter().copied()).collect()
}

/// Embeddings of a split's labelled clips, divided as Phase I divided them: validation is
/// exactly the clips the Phase-I runs held out (recorded in the embeddings), so Phase II
/// validates on clips no backbone trained on.
pub struct FusionData {
    spec: FusionSpec,
    /// (stacked embeddings, label)
    train: Vec<(Vec<f32>, usize)>,
    val: Vec<(Vec<f32>, usize)>,
}

impl FusionData {
    pub fn new(set: &EmbeddingSet, spec: FusionSpec, split: &str) -> Result<FusionData> {
        let clips = set.labelled(split);
        if clips.is_empty() {
            bail!("no labelled clips in split {split:?} of the embeddings");
        }
        let Some(p1) = &set.phase1 else {
            bail!(
                "these embeddings do not record which clips the Phase-I runs held out (made by an older build): \
                 run embed again"
            );
        };
        let held_out: HashSet<&str> = p1.validation.iter().map(String::as_str).collect();
        let (val, train): (Vec<usize>, Vec<usize>) =
            clips.into_iter().partition(|&i| held_out.contains(set.items[i].id.as_str()));
        ensure!(
            !train.is_empty(),
            "every labelled clip of split {split:?} was held out by Phase I ({}): nothing to train the head on",
            p1.split
        );
        let rows = |part: Vec<usize>| -> Vec<(Vec<f32>, usize)> {
            part.into_iter().map(|c| (stacked(set, &spec, c), set.label(c).expect("labelled"))).collect()
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
