//! Frame preprocessing against Pillow 13 `Image.resize(.., BILINEAR)`: the golden video
//! frames in ../shared/golden/frames, plus synthetic up-, down- and mixed-scale cases
//! whose references were made once by tests/data/gen_frames.py (CI has no Python).

mod common;

use avsc_shared::image::{normalise, preprocess, resize_rgb, FrameResizer, RgbImage};
use avsc_shared::npy;
use avsc_shared::{FramePreset, Normalisation};
use std::path::{Path, PathBuf};

/// Pillow and fast_image_resize share the algorithm but not every rounding step.
const TOLERANCE: u8 = 1;

fn decode_png(path: &Path) -> RgbImage {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}: golden frames are RGB", path.display());
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let (w, h) = (info.width as usize, info.height as usize);
    buf.truncate(info.line_size * h);
    assert_eq!(info.line_size, w * 3);
    RgbImage { width: w, height: h, data: buf }
}

/// A Pillow reference (HWC uint8 .npy) as an image.
fn load_reference(path: &Path) -> RgbImage {
    let a = npy::read(path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
    let [h, w, 3] = a.shape[..] else { panic!("{}: shape {:?} is not HWC RGB", path.display(), a.shape) };
    RgbImage { width: w, height: h, data: a.data.iter().map(|&v| v as u8).collect() }
}

/// Asserts every 8-bit value is within [`TOLERANCE`] and prints the histogram of the
/// signed differences (ours - Pillow's): a lopsided one would mean a bias, not rounding.
fn check(name: &str, got: &RgbImage, want: &RgbImage) {
    assert_eq!((got.width, got.height), (want.width, want.height), "{name}: size");
    let mut hist = std::collections::BTreeMap::<i16, usize>::new();
    for (a, b) in got.data.iter().zip(&want.data) {
        *hist.entry(*a as i16 - *b as i16).or_default() += 1;
    }
    let max = hist.keys().map(|d| d.unsigned_abs()).max().unwrap_or(0);
    let shown: Vec<String> = hist.iter().map(|(d, n)| format!("{d:+}:{n}")).collect();
    println!("{name}: max |diff| {max}, histogram {}", shown.join(" "));
    assert!(max <= TOLERANCE as u16, "{name}: max |diff| {max} > {TOLERANCE}");
}

/// The synthetic source of tests/data/gen_frames.py, spelled identically.
fn synthetic(w: usize, h: usize) -> RgbImage {
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            data.push(((x * 255 / (w - 1).max(1) + y * 3) % 256) as u8);
            data.push((((x * 31 + y * 17) ^ (x * y)) & 255) as u8);
            data.push(if (x / 5 + y / 3).is_multiple_of(2) { 255 } else { 20 });
        }
    }
    RgbImage { width: w, height: h, data }
}

fn data_dir() -> PathBuf {
    avsc_shared::test_data_dir()
}

#[test]
fn golden_frames_match_pillow_bilinear() {
    let mut resizer = FrameResizer::new();
    for name in ["park", "square"] {
        let src = decode_png(&common::golden(&format!("frames/{name}_1280x720.png")));
        assert_eq!((src.width, src.height), (1280, 720));
        let want = load_reference(&common::golden(&format!("frames/{name}_224_pillow_bilinear.npy")));
        let got = resizer.resize(&src, 224);
        check(name, &got, &want);
        // The one-off function and a reused resizer must agree exactly.
        assert_eq!(resize_rgb(&src, 224), got, "{name}: reused resizer differs");
    }
}

#[test]
fn synthetic_frames_match_pillow_bilinear() {
    let mut resizer = FrameResizer::new();
    for (name, w, h, size) in
        [("up_37x23", 37, 23, 224), ("down_300x500", 300, 500, 224), ("mixed_300x40", 300, 40, 96)]
    {
        let want = load_reference(&data_dir().join(format!("{name}_{size}_pillow_bilinear.npy")));
        check(name, &resizer.resize(&synthetic(w, h), size), &want);
    }
}

#[test]
fn every_simd_path_gives_the_same_pixels() {
    // The tolerance above is measured on this machine's SIMD path; the device may take
    // another (e.g. NEON). fast_image_resize's paths share one fixed-point scheme, so
    // require them to agree exactly with the portable one wherever we can run them.
    use fast_image_resize::images::{Image, ImageRef};
    use fast_image_resize::{CpuExtensions, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let src = decode_png(&common::golden("frames/park_1280x720.png"));
    let want = resize_rgb(&src, 224);
    let src = ImageRef::new(1280, 720, &src.data, PixelType::U8x3).unwrap();
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).use_alpha(false);
    #[allow(unused_mut)]
    let mut exts = vec![CpuExtensions::None];
    #[cfg(target_arch = "x86_64")]
    exts.extend([CpuExtensions::Sse4_1, CpuExtensions::Avx2]);
    #[cfg(target_arch = "aarch64")]
    exts.push(CpuExtensions::Neon);
    for ext in exts.into_iter().filter(CpuExtensions::is_supported) {
        let mut resizer = Resizer::new();
        // SAFETY: only extensions this CPU reports as supported.
        unsafe { resizer.set_cpu_extensions(ext) };
        let mut dst = Image::new(224, 224, PixelType::U8x3);
        resizer.resize(&src, &mut dst, &options).unwrap();
        assert!(dst.buffer() == want.data.as_slice(), "{ext:?} differs from the default path");
    }
}

#[test]
fn resize_into_reuses_and_resizes_the_output() {
    let src = synthetic(64, 48);
    let mut resizer = FrameResizer::new();
    let mut out = RgbImage::new(10, 10);
    resizer.resize_into(&src, &mut out);
    assert_eq!(out, resize_rgb(&src, 10));
    out.width = 20;
    out.height = 20;
    resizer.resize_into(&src, &mut out);
    assert_eq!(out, resize_rgb(&src, 20));
}

#[test]
fn same_size_resize_is_the_identity() {
    let src = synthetic(32, 32);
    assert_eq!(resize_rgb(&src, 32), src);
}

/// A 1x2 image: pixel 0 = (0, 128, 255), pixel 1 = (51, 102, 204).
fn two_pixels() -> RgbImage {
    RgbImage { width: 2, height: 1, data: vec![0, 128, 255, 51, 102, 204] }
}

#[test]
fn mean_std_normalisation_is_chw_and_matches_hand_values() {
    let n = Normalisation::imagenet();
    let got = normalise(&two_pixels(), &n);
    // (v/255 - mean) / std by hand, planes R then G then B, each in pixel order:
    // R (0 - .485)/.229, (.2 - .485)/.229; G (128/255 - .456)/.224, (.4 - .456)/.224;
    // B (1 - .406)/.225, (.8 - .406)/.225.
    let want = [-2.117_904, -1.244_541_5, 0.205_182_07, -0.25, 2.64, 1.751_111_1];
    assert_eq!(got.len(), 6);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 2e-6, "index {i}: got {g}, want {w}");
    }
}

#[test]
fn minus_one_one_normalisation_matches_hand_values() {
    let got = normalise(&two_pixels(), &Normalisation::MinusOneOne);
    // v/127.5 - 1: 0 -> -1, 51 -> -0.6, 128 -> 0.003921569, 102 -> -0.2, 255 -> 1, 204 -> 0.6
    let want = [-1.0, -0.6, 0.003_921_569, -0.2, 1.0, 0.6];
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-6, "index {i}: got {g}, want {w}");
    }
    // The extremes are exact, as the backbone expects.
    assert_eq!((got[0], got[4]), (-1.0, 1.0));
}

#[test]
fn normalisation_matches_torchvision_arithmetic_bit_for_bit() {
    // ToTensor then Normalize in f32: the table lookup must not change a single bit.
    let img = RgbImage { width: 256, height: 1, data: (0..=255u8).flat_map(|v| [v, 255 - v, v / 2]).collect() };
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let got = normalise(&img, &Normalisation::MeanStd { mean, std });
    for c in 0..3 {
        for x in 0..256 {
            let v = img.data[x * 3 + c] as f32;
            assert_eq!(got[c * 256 + x].to_bits(), ((v / 255.0 - mean[c]) / std[c]).to_bits());
        }
    }
}

#[test]
fn preprocess_is_resize_then_normalise() {
    let src = synthetic(300, 500);
    let frames = FramePreset::default();
    let n = Normalisation::imagenet();
    let want = normalise(&resize_rgb(&src, frames.size), &n);
    assert_eq!(want.len(), 3 * 224 * 224);
    assert_eq!(preprocess(&src, &frames, &n), want);
    let mut resizer = FrameResizer::new();
    assert_eq!(resizer.preprocess(&src, &frames, &n), want);
    // Second call on the warmed-up scratch buffer, with a different source size.
    assert_eq!(resizer.preprocess(&synthetic(37, 23), &frames, &n), preprocess(&synthetic(37, 23), &frames, &n));
}

/// A source that keeps frames already resized to the network size (the device's MP4 frames)
/// gives the same network input as the full-resolution frame: a resize to the size an image
/// already has is the identity.
#[test]
fn resizing_to_the_current_size_is_the_identity() {
    let dir = avsc_shared::reference_dir().join("golden/frames");
    let preset = FramePreset::default();
    for name in ["park_1280x720.png", "square_1280x720.png"] {
        let img = decode_png(&dir.join(name));
        let small = resize_rgb(&img, preset.size);
        assert_eq!(resize_rgb(&small, preset.size).data, small.data, "{name}");
        let n = Normalisation::imagenet();
        assert_eq!(preprocess(&small, &preset, &n), preprocess(&img, &preset, &n), "{name}");
    }
    // Also for sizes the synthetic references use.
    let odd = resize_rgb(&synthetic(97, 41), 53);
    assert_eq!(resize_rgb(&odd, 53).data, odd.data);
}
