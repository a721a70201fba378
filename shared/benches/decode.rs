//! Decode cost of one 10-s 720p tau-mini clip (H.264 frames at 2 per second; AAC audio):
//!
//!     cargo bench -p avsc-shared --features decode --bench decode

use avsc_shared::decode::{decode_audio, decode_video_frames};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let dir = avsc_shared::reference_dir().join("media/tau-mini/video");
    let mut clips: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (set AVSC_SHARED_DIR)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
        .collect();
    clips.sort();
    let path = &clips[0];
    let mut g = c.benchmark_group("tau_mini_10s_720p");
    g.sample_size(10);
    g.bench_function("frames_2fps", |b| b.iter(|| black_box(decode_video_frames(path, 2.0, None).unwrap())));
    g.bench_function("aac_audio", |b| b.iter(|| black_box(decode_audio(path).unwrap())));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
