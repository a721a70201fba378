//! Feature extraction speed for one 10-s stereo clip (the golden `input_scene_10s`),
//! single thread, `paper` preset, and the 48 -> 32 kHz resampler on 10 s of stereo. Compare with `benches/reference_librosa.py`, which
//! times librosa 0.11 / gammatone 1.0.3 on the same input:
//!
//!     cargo bench -p avsc-shared --bench features
//!     python3 shared/benches/reference_librosa.py

use avsc_shared::dsp::deltas::stack6;
use avsc_shared::dsp::resample::Resampler;
use avsc_shared::dsp::FeatureExtractor;
use avsc_shared::{npy, reference_dir, FeatureKind, FeaturePreset};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn clip() -> Vec<Vec<f32>> {
    let path = reference_dir().join("golden/input_scene_10s.npy");
    match npy::read(&path) {
        Ok(a) => a.data.chunks_exact(a.shape[1]).map(<[f32]>::to_vec).collect(),
        // Without the reference folder: a deterministic chirp + noise clip of the same size.
        Err(_) => (0..2)
            .map(|c| {
                let mut s = 0x9E37_79B9u32 + c;
                (0..320_000)
                    .map(|i| {
                        s ^= s << 13;
                        s ^= s >> 17;
                        s ^= s << 5;
                        let t = i as f32 / 32_000.0;
                        0.2 * (2.0 * std::f32::consts::PI * (50.0 + 400.0 * t) * t).sin()
                            + (s as f32 / u32::MAX as f32 - 0.5) * 0.05
                    })
                    .collect()
            })
            .collect(),
    }
}

fn bench(c: &mut Criterion) {
    let audio = clip();
    let ch: Vec<&[f32]> = audio.iter().map(Vec::as_slice).collect();
    let preset = FeaturePreset::paper();
    let mut fx = FeatureExtractor::new(&preset);
    let mut g = c.benchmark_group("paper_10s_stereo");
    g.sample_size(30);
    for kind in FeatureKind::ALL {
        g.bench_function(format!("{kind}_db"), |b| b.iter(|| black_box(fx.db(kind, black_box(&ch)))));
    }
    let db = fx.db(FeatureKind::Mel, &ch);
    g.bench_function("deltas", |b| b.iter(|| black_box(stack6(black_box(&db), &preset.deltas))));
    g.bench_function("all_three_stacks", |b| b.iter(|| black_box(fx.stacks_all(black_box(&ch)))));
    g.bench_function("extractor_new", |b| b.iter(|| black_box(FeatureExtractor::new(&preset))));
    // The device's microphone rate to the feature rate: 10 s of 48 kHz stereo -> 32 kHz.
    let r = Resampler::new(48_000, 32_000, &preset.resample);
    let mic: Vec<f32> = (0..480_000).map(|i| (i as f32 * 0.131).sin() * 0.5).collect();
    g.bench_function("resample_48k_to_32k", |b| b.iter(|| [r.process(black_box(&mic)), r.process(black_box(&mic))]));
    g.bench_function("resampler_new", |b| b.iter(|| black_box(Resampler::new(48_000, 32_000, &preset.resample))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
