//! MP4 decoding against ffmpeg (frames: tests/data/decode_reference.json, made by
//! tests/data/decode_reference.py) and against the dataset's own WAVs (audio).
#![cfg(feature = "decode")]

mod common;

use avsc_shared::decode::{decode_audio, decode_clip, decode_video_frames, probe};
use avsc_shared::image::RgbImage;
use avsc_shared::wav;
use realfft::RealFftPlanner;
use std::path::{Path, PathBuf};

fn clips() -> Vec<PathBuf> {
    let dir = common::shared_dir().join("media/tau-mini/video");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
        .collect();
    v.sort();
    assert_eq!(v.len(), 20, "tau-mini should have 20 clips");
    v
}

fn reference() -> serde_json::Value {
    let p = avsc_shared::test_data_dir().join("decode_reference.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn mean_rgb(img: &RgbImage) -> [f64; 3] {
    let mut s = [0u64; 3];
    for px in img.data.chunks_exact(3) {
        for c in 0..3 {
            s[c] += px[c] as u64;
        }
    }
    let n = (img.width * img.height) as f64;
    s.map(|v| v as f64 / n)
}

/// Block means over a `tw` x `th` grid, as the reference script computes them.
fn thumbnail(img: &RgbImage, tw: usize, th: usize) -> Vec<f64> {
    let (bw, bh) = (img.width / tw, img.height / th);
    let mut out = vec![0.0; tw * th * 3];
    for y in 0..bh * th {
        for x in 0..bw * tw {
            let o = ((y / bh) * tw + x / bw) * 3;
            for c in 0..3 {
                out[o + c] += img.data[(y * img.width + x) * 3 + c] as f64;
            }
        }
    }
    out.iter().map(|v| v / (bw * bh) as f64).collect()
}

#[test]
fn frames_match_ffmpeg() {
    let reference = reference();
    let (mut worst_mean, mut worst_thumb, mut worst_thumb_max) = (0.0f64, 0.0f64, 0.0f64);
    for path in clips() {
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let r = &reference["clips"][stem];
        let frames = decode_video_frames(&path, 2.0, None).unwrap();
        assert_eq!(frames.len(), 20, "{stem}");
        for (k, (t, img)) in frames.iter().enumerate() {
            let target = (k as f64 + 0.5) / 2.0;
            assert!((t - target).abs() <= 1.0 / 60.0 + 1e-9, "{stem}: frame {k} at {t} s, target {target}");
            assert!(k == 0 || *t > frames[k - 1].0, "{stem}: presentation times must increase");
            let want_t = r["pts"][k].as_f64().unwrap();
            assert!((t - want_t).abs() < 1e-5, "{stem}: frame {k} at {t} s, ffmpeg chose {want_t} s");
            assert_eq!((img.width, img.height), (1280, 720));
            let m = mean_rgb(img);
            for c in 0..3 {
                let d = (m[c] - r["mean_rgb"][k][c].as_f64().unwrap()).abs();
                worst_mean = worst_mean.max(d);
            }
        }
        let tk = r["thumb_frame"].as_u64().unwrap() as usize;
        let ours = thumbnail(&frames[tk].1, 32, 18);
        let theirs: Vec<f64> = r["thumb"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(ours.len(), theirs.len());
        let diffs: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).collect();
        worst_thumb = worst_thumb.max(diffs.iter().sum::<f64>() / diffs.len() as f64);
        worst_thumb_max = worst_thumb_max.max(diffs.iter().cloned().fold(0.0, f64::max));
    }
    println!(
        "vs ffmpeg: worst per-frame mean-RGB diff {worst_mean:.3}; thumbnails: worst mean abs diff \
         {worst_thumb:.3}, worst max {worst_thumb_max:.3} (8-bit)"
    );
    // Same decoded Y'CbCr and the same matrix: only rounding differs, and the reference
    // thumbnail is stored rounded to integers (up to 0.5 off by itself).
    assert!(worst_mean <= 0.05, "frame mean colour differs from ffmpeg by {worst_mean}");
    assert!(worst_thumb <= 0.35, "thumbnail differs from ffmpeg by {worst_thumb} on average");
    assert!(worst_thumb_max <= 0.75, "a thumbnail block differs from ffmpeg by {worst_thumb_max}");
}

#[test]
fn shorter_windows_and_other_rates() {
    let path = &clips()[0];
    let all = decode_video_frames(path, 2.0, None).unwrap();
    let head = decode_video_frames(path, 2.0, Some(3.0)).unwrap();
    assert_eq!(head.len(), 6);
    for ((t0, a), (t1, b)) in head.iter().zip(&all) {
        assert_eq!(t0, t1);
        assert!(a == b, "frame at {t0} s differs when decoding stops early");
    }
    let one = decode_video_frames(path, 1.0, None).unwrap();
    assert_eq!(one.len(), 10);
    assert!((one[0].0 - 0.5).abs() <= 1.0 / 60.0);
}

#[test]
fn probe_reads_headers() {
    let info = probe(&clips()[0]).unwrap();
    assert_eq!((info.width, info.height, info.n_frames), (1280, 720, 300));
    assert!((info.fps - 30.0).abs() < 1e-6, "{info:?}");
    assert!((info.duration_s - 10.0).abs() < 1e-6, "{info:?}");
    assert!(info.has_audio);
}

/// Cross-correlation of the channel sums for lags -max_lag..=max_lag (via FFT); returns
/// the lag of `a` against `b` with the highest correlation.
fn best_lag(a: &[f32], b: &[f32], max_lag: usize) -> i64 {
    let n = (a.len().max(b.len()) + max_lag + 1).next_power_of_two() * 2;
    let mut planner = RealFftPlanner::<f64>::new();
    let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let spectrum = |x: &[f32]| {
        let mut buf = vec![0.0; n];
        for (d, s) in buf.iter_mut().zip(x) {
            *d = *s as f64;
        }
        let mut out = fwd.make_output_vec();
        fwd.process(&mut buf, &mut out).unwrap();
        out
    };
    let (fa, fb) = (spectrum(a), spectrum(b));
    let mut prod: Vec<_> = fa.iter().zip(&fb).map(|(x, y)| x * y.conj()).collect();
    let mut corr = vec![0.0; n];
    inv.process(&mut prod, &mut corr).unwrap();
    // corr[l] = sum_t a[t + l] b[t], negative lags wrap around.
    (-(max_lag as i64)..=max_lag as i64)
        .max_by(|&x, &y| corr[x.rem_euclid(n as i64) as usize].total_cmp(&corr[y.rem_euclid(n as i64) as usize]))
        .unwrap()
}

fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let (ma, mb) = (a.iter().map(|&v| v as f64).sum::<f64>() / n, b.iter().map(|&v| v as f64).sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    sab / (saa * sbb).sqrt().max(f64::MIN_POSITIVE)
}

/// `x` with everything above `fc` Hz removed (brick-wall, whole-signal FFT).
fn lowpass(x: &[f32], rate: u32, fc: f64) -> Vec<f32> {
    let n = x.len();
    let mut planner = RealFftPlanner::<f64>::new();
    let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let mut buf: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut spec = fwd.make_output_vec();
    fwd.process(&mut buf, &mut spec).unwrap();
    for (k, c) in spec.iter_mut().enumerate() {
        if k as f64 * rate as f64 / n as f64 > fc {
            *c = Default::default();
        }
    }
    spec[0].im = 0.0;
    if n.is_multiple_of(2) {
        spec[n / 2].im = 0.0;
    }
    inv.process(&mut spec, &mut buf).unwrap();
    buf.iter().map(|&v| (v / n as f64) as f32).collect()
}

#[test]
fn audio_matches_wav_and_ffmpeg() {
    let reference = reference();
    let (mut worst_corr, mut worst_rms, mut lags) = (1.0f64, 0.0f64, Vec::new());
    for (ci, path) in clips().iter().enumerate() {
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let r = &reference["clips"][stem];
        let wav_path = path.parent().unwrap().join("../audio").join(format!("{stem}.wav"));
        let want = wav::read(&wav_path).unwrap();
        let got = decode_audio(path).unwrap();
        assert_eq!(got.sample_rate, want.sample_rate, "{stem}");
        assert_eq!(got.channels.len(), want.channels.len(), "{stem}");
        assert_eq!(got.n_samples(), want.n_samples(), "{stem}: decoded length");
        let mono = |a: &wav::Audio| -> Vec<f32> {
            (0..a.n_samples()).map(|i| a.channels.iter().map(|c| c[i]).sum()).collect()
        };
        let lag = best_lag(&mono(&got), &mono(&want), 4096);
        lags.push(lag);
        // The encoder drops everything above ~15.7 kHz, where this (synthetic, noisy)
        // content has much of its energy, and codes the rest perceptually: compare the
        // band below 4 kHz, where the waveform survives.
        for (g, w) in got.channels.iter().zip(&want.channels) {
            let (g, w) = if lag >= 0 { (&g[lag as usize..], &w[..]) } else { (&g[..], &w[(-lag) as usize..]) };
            let corr = pearson(&lowpass(g, 48_000, 4000.0), &lowpass(w, 48_000, 4000.0));
            worst_corr = worst_corr.min(corr);
        }
        // Against ffmpeg's decode of the same AAC: the same decoder output, up to float
        // rounding.
        for (c, ch) in got.channels.iter().enumerate() {
            for (s, block) in ch.chunks(48_000).enumerate() {
                let rms = (block.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / block.len() as f64).sqrt();
                let want = r["audio_rms"][c][s].as_f64().unwrap();
                worst_rms = worst_rms.max((rms - want).abs() / want.max(1e-6));
            }
        }
        if ci == 0 {
            for c in 0..2 {
                let want: Vec<f64> = r["audio_1s"][c].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
                for (k, w) in want.iter().enumerate() {
                    let g = got.channels[c][48_000 + k] as f64;
                    assert!((g - w).abs() < 1e-4, "{stem} ch {c} sample {}: {g} vs ffmpeg {w}", 48_000 + k);
                }
            }
        }
    }
    println!(
        "AAC vs WAV: lags {lags:?}; worst channel correlation below 4 kHz {worst_corr:.4}; \
         vs ffmpeg: worst per-second RMS difference {:.2e} (relative)",
        worst_rms
    );
    assert!(lags.iter().all(|&l| l == 0), "priming not removed: lags {lags:?}");
    assert!(worst_corr > 0.9, "AAC decode correlates only {worst_corr} with the WAV below 4 kHz");
    assert!(worst_rms < 1e-3, "AAC decode differs from ffmpeg's: RMS off by {worst_rms}");
}

#[test]
fn wav_through_decode_audio() {
    let path = clips()[0].parent().unwrap().join("../audio/airport-lyon-1100-40000.wav");
    assert_eq!(decode_audio(&path).unwrap(), wav::read(&path).unwrap());
}

#[test]
fn whole_clip() {
    let clip = decode_clip(&clips()[1], 2.0, None).unwrap();
    assert_eq!(clip.frames.len(), 20);
    assert_eq!(clip.audio.unwrap().n_samples(), 480_000);
    assert_eq!(clip.info.n_frames, 300);
}

/// The error must be one line naming the file.
fn assert_names_file<T: std::fmt::Debug>(r: anyhow::Result<T>, path: &Path) -> String {
    let msg = format!("{:#}", r.expect_err("corrupt input must be an error"));
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    msg
}

#[test]
fn truncated_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&clips()[0]).unwrap();
    let path = dir.path().join("truncated.mp4");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = assert_names_file(decode_video_frames(&path, 2.0, None), &path);
    println!("truncated: {msg}");
    assert_names_file(decode_audio(&path), &path);
    assert_names_file(probe(&path), &path);
    // moov intact, samples cut off: the sample table points past the end.
    let path = dir.path().join("cut_tail.mp4");
    let moov = find_box(&bytes, b"moov").unwrap();
    let (mdat, _) = find_box(&bytes, b"mdat").unwrap();
    let mut cut = bytes[..bytes.len() / 2].to_vec();
    // Shrink mdat to what is left, so the boxes are whole and only the samples are missing.
    let mdat_len = (cut.len() - mdat) as u32;
    cut[mdat..mdat + 4].copy_from_slice(&mdat_len.to_be_bytes());
    cut.extend_from_slice(&bytes[moov.0..moov.1]);
    std::fs::write(&path, &cut).unwrap();
    let msg = assert_names_file(decode_video_frames(&path, 2.0, None), &path);
    println!("cut tail: {msg}");
    assert!(msg.contains("beyond the end of the file"), "{msg}");
    let missing = dir.path().join("missing.mp4");
    assert_names_file(decode_video_frames(&missing, 2.0, None), &missing);
    let not_mp4 = dir.path().join("notes.mp4");
    std::fs::write(&not_mp4, b"hello, this is not a video").unwrap();
    assert_names_file(decode_video_frames(&not_mp4, 2.0, None), &not_mp4);
}

/// (start, end) of a top-level box.
fn find_box(b: &[u8], typ: &[u8; 4]) -> Option<(usize, usize)> {
    let mut pos = 0;
    while pos + 8 <= b.len() {
        let size = u32::from_be_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
        if &b[pos + 4..pos + 8] == typ {
            return Some((pos, pos + size));
        }
        pos += size.max(8);
    }
    None
}

#[test]
fn corrupt_mdat_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let clean = std::fs::read(&clips()[0]).unwrap();
    let (start, end) = find_box(&clean, b"mdat").unwrap();
    let garble = |b: &mut [u8]| {
        for (i, b) in b.iter_mut().enumerate() {
            *b = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] | 0x80;
        }
    };
    // 64 KiB in the middle: NAL length prefixes are hit, caught before decoding.
    let mut bytes = clean.clone();
    let mid = (start + end) / 2;
    garble(&mut bytes[mid..mid + 65536]);
    let path = dir.path().join("corrupt.mp4");
    std::fs::write(&path, &bytes).unwrap();
    let msg = assert_names_file(decode_video_frames(&path, 2.0, None), &path);
    println!("corrupt: {msg}");
    // AAC has no checksum: garbage may decode to noise or fail, but must not panic.
    if let Err(e) = decode_audio(&path) {
        println!("corrupt audio: {e:#}");
    }
    // 1 KiB inside the first IDR slice (the file's first sample, after x264's SEI): the
    // lengths are intact, the decoder itself must notice.
    let mut bytes = clean.clone();
    garble(&mut bytes[start + 3000..start + 4000]);
    let path = dir.path().join("corrupt_slice.mp4");
    std::fs::write(&path, &bytes).unwrap();
    let msg = assert_names_file(decode_video_frames(&path, 2.0, None), &path);
    println!("corrupt slice: {msg}");
}
