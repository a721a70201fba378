//! One training step of the residual-inception audio CNN at batch 32: forward, KL loss against
//! mixed labels, backward, Adam with the coupled L2 term — the inner loop of `train-audio`.
//! The PyTorch reference is `reference_torch_step.py` beside this file (same layers, widths
//! and loss).
//!
//! By default the tiny network on the CPU (`flex` backend):
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo bench -p avsc-host --bench train_step
//! python3 host/benches/reference_torch_step.py --threads 1
//! ```
//!
//! `AVSC_BENCH_DEVICE=cuda|wgpu` (with `--features cuda` / `wgpu`, host/gpu/README.md) runs it
//! on a GPU, and `AVSC_BENCH_SIZE=paper` takes the paper-size network (about 12 M parameters):
//!
//! ```sh
//! AVSC_BENCH_DEVICE=cuda AVSC_BENCH_SIZE=paper cargo bench -p avsc-host --features cuda --bench train_step
//! python3 host/benches/reference_torch_step.py --device cuda --size paper
//! ```
//!
//! `avsc-host bench` times the same step for all three architectures from the release binary
//! (host/gpu/bench.sh runs it on a GPU machine).
//!
//! Each timed step ends with a device sync, so a GPU step is timed to its end.

use avsc_host::nets::resinception::ResInceptionConfig;
use avsc_host::train::math::{adam_step, kl_loss, AdamParams, AdamState};
use avsc_host::train::{ComputeDevice, Net};
use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{criterion_group, criterion_main, Criterion};

const BATCH: usize = 32;

fn train_step(c: &mut Criterion) {
    avsc_host::alloc::keep_freed_memory();
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let (device_name, size) = (env("AVSC_BENCH_DEVICE", "cpu"), env("AVSC_BENCH_SIZE", "tiny"));
    let device = device_name.parse::<ComputeDevice>().and_then(|d| d.open()).unwrap_or_else(|e| panic!("{e:#}"));
    let device = device.autodiff();
    let net = match size.as_str() {
        "tiny" => ResInceptionConfig::tiny(),
        "paper" => ResInceptionConfig::paper(),
        s => panic!("AVSC_BENCH_SIZE={s:?}: expected tiny or paper"),
    };
    let mut model = Some(net.init(&device).train());
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
    // The CPU names keep the ones of earlier reports.
    let name = match device_name.as_str() {
        "cpu" => format!("{size}_resinception_batch32"),
        d => format!("{size}_resinception_batch32_{d}"),
    };
    g.bench_function(name, |b| {
        b.iter(|| {
            let m = model.take().expect("model");
            let loss = kl_loss(m.embed(x.clone()).logits, &y);
            let grads = loss.backward();
            model = Some(adam_step(m, &grads, &mut adam, p, 1e-3));
            // GPU work is queued, not finished: the step ends when the device is idle.
            device.sync().expect("device sync");
        })
    });
    g.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
