//! Batch assembly for the training loop, off the loop's thread: while the device runs step
//! `b`, a producer thread reads and assembles the next batches (f16 → f32 and deltas for
//! audio, frame reads and normalisation for video, both over rayon's pool; then mixup) and
//! hands them over through a bounded channel. The batches and their mixup draws are exactly
//! those of assembling them in line: the producer owns the epoch's random stream and takes
//! the batches in order.

use super::data::{Data, Sample};
use super::math;
use crate::nets::NUM_CLASSES;
use crate::rng::SplitMix64;
use anyhow::Result;
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};

/// Batches assembled ahead of the one being trained on.
pub const PREFETCH: usize = 2;

/// One training batch: `x` is `[n, c, h, w]` row-major, `y` the (mixed) targets `[n, 10]`.
pub struct Batch {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub n: usize,
}

/// Read and mix one batch. `rng` draws mixup's λ and partner permutation.
pub fn assemble(data: &dyn Data, batch: &[Sample], mixup_alpha: f64, rng: &mut SplitMix64) -> Result<Batch> {
    let n = batch.len();
    let inputs: Vec<Vec<f32>> = batch.par_iter().map(|&s| data.train_input(s)).collect::<Result<_>>()?;
    let mut x: Vec<f32> = inputs.concat();
    let mut y = vec![0.0f32; n * NUM_CLASSES];
    for (i, s) in batch.iter().enumerate() {
        y[i * NUM_CLASSES + data.train_label(s.0)] = 1.0;
    }
    if mixup_alpha > 0.0 && n > 1 {
        let lambda = math::beta(rng, mixup_alpha, mixup_alpha) as f32;
        let mut perm: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut perm);
        math::mixup(&mut x, &mut y, n, lambda, &perm);
    }
    Ok(Batch { x, y, n })
}

/// Run `consume` on every batch of `samples` (in chunks of `batch_size`), the batches being
/// assembled by a producer thread up to [`PREFETCH`] ahead. The first error, from either side,
/// ends the epoch; the producer stops when the consumer does.
pub fn for_each_batch(
    data: &dyn Data,
    samples: &[Sample],
    batch_size: usize,
    mixup_alpha: f64,
    mut rng: SplitMix64,
    mut consume: impl FnMut(usize, Batch) -> Result<()>,
) -> Result<()> {
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Result<Batch>>(PREFETCH);
        scope.spawn(move || {
            for chunk in samples.chunks(batch_size) {
                let b = assemble(data, chunk, mixup_alpha, &mut rng);
                let failed = b.is_err();
                if tx.send(b).is_err() || failed {
                    break;
                }
            }
        });
        drain(rx, &mut consume)
    })
}

fn drain(rx: Receiver<Result<Batch>>, consume: &mut impl FnMut(usize, Batch) -> Result<()>) -> Result<()> {
    for (b, batch) in rx.into_iter().enumerate() {
        consume(b, batch?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs that say which sample they are.
    struct Numbered;
    impl Data for Numbered {
        fn input_shape(&self) -> [usize; 3] {
            [1, 1, 2]
        }
        fn epoch_samples(&self, _: &mut SplitMix64) -> Vec<Sample> {
            (0..23).map(|i| (i, 0)).collect()
        }
        fn train_input(&self, s: Sample) -> Result<Vec<f32>> {
            anyhow::ensure!(s.0 != 99, "sample 99 is unreadable");
            Ok(vec![s.0 as f32, -(s.0 as f32)])
        }
        fn train_label(&self, clip: usize) -> usize {
            clip % NUM_CLASSES
        }
        fn val_len(&self) -> usize {
            0
        }
        fn val_label(&self, _: usize) -> usize {
            0
        }
        fn val_inputs(&self, _: usize) -> Result<Vec<Vec<f32>>> {
            Ok(vec![])
        }
    }

    #[test]
    fn prefetched_batches_equal_inline_ones_in_order() {
        let samples = Numbered.epoch_samples(&mut SplitMix64::new(0));
        let mut inline_rng = SplitMix64::new(5);
        let inline: Vec<Batch> =
            samples.chunks(4).map(|c| assemble(&Numbered, c, 0.4, &mut inline_rng).unwrap()).collect();
        let mut got = Vec::new();
        for_each_batch(&Numbered, &samples, 4, 0.4, SplitMix64::new(5), |b, batch| {
            assert_eq!(b, got.len());
            got.push(batch);
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 6, "23 samples in batches of 4");
        assert_eq!(got[5].n, 3);
        for (a, b) in inline.iter().zip(&got) {
            assert_eq!((a.n, &a.x, &a.y), (b.n, &b.x, &b.y));
        }
        // Mixup did mix: the first batch's inputs are not the raw samples.
        assert_ne!(got[0].x, vec![0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0]);
    }

    #[test]
    fn errors_end_the_epoch_from_either_side() {
        let samples: Vec<Sample> = vec![(0, 0), (1, 0), (99, 0), (3, 0), (4, 0), (5, 0)];
        let mut seen = 0;
        let err = for_each_batch(&Numbered, &samples, 2, 0.0, SplitMix64::new(1), |_, _| {
            seen += 1;
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("sample 99"), "{err}");
        assert_eq!(seen, 1);

        let mut calls = 0;
        let err = for_each_batch(
            &Numbered,
            &Numbered.epoch_samples(&mut SplitMix64::new(0)),
            1,
            0.0,
            SplitMix64::new(1),
            |b, _| {
                calls += 1;
                anyhow::ensure!(b < 2, "stop at {b}");
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!((err.to_string(), calls), ("stop at 2".to_string(), 3));
    }
}
