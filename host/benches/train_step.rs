//! One training step of the tiny residual-inception audio CNN at batch 32 on the CPU (`flex`
//! backend): forward, KL loss against mixed labels, backward, Adam with the coupled L2 term —
//! the inner loop of `train-audio`. The PyTorch reference is `reference_torch_step.py` beside
//! this file (same layers, widths and loss).
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo bench -p avsc-host --bench train_step
//! python3 host/benches/reference_torch_step.py --threads 1
//! ```

use avsc_host::nets::resinception::ResInceptionConfig;
use avsc_host::train::math::{adam_step, kl_loss, AdamParams, AdamState};
use avsc_host::train::Net;
use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{criterion_group, criterion_main, Criterion};

const BATCH: usize = 32;

fn train_step(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    let mut model = Some(ResInceptionConfig::tiny().init(&device).train());
    let x = Tensor::<4>::random([BATCH, 6, 128, 305], Distribution::Default, &device);
    // Soft targets, as mixup makes them: two classes per row.
    let mut y = vec![0.0f32; BATCH * 10];
    for i in 0..BATCH {
        y[i * 10 + i % 10] = 0.7;
        y[i * 10 + (i + 3) % 10] = 0.3;
    }
    let mut adam = AdamState::default();
    let p = AdamParams { beta1: 0.9, beta2: 0.999, eps: 1e-7, l2: 1e-4 };
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10);
    g.bench_function("tiny_resinception_batch32", |b| {
        b.iter(|| {
            let m = model.take().expect("model");
            let loss = kl_loss(m.embed(x.clone()).logits, &y);
            let grads = loss.backward();
            model = Some(adam_step(m, &grads, &mut adam, p, 1e-3));
        })
    });
    g.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
