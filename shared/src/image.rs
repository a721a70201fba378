//! Frame preprocessing: RGB8 frame of any size -> 3 x size x size f32, Pillow-compatible
//! BILINEAR resize, then the backbone's normalisation.
//!
//! The trainer fed the backbones frames resized by Pillow's `Image.resize(.., BILINEAR)`,
//! which is not a 2x2 bilinear sample: it is a separable convolution with a triangle
//! filter whose support widens with the downscale factor (i.e. antialiased), computed in
//! fixed point with an 8-bit intermediate between the horizontal and vertical passes.
//! `fast_image_resize`'s `Convolution(Bilinear)` is a port of that algorithm, so the
//! device sees the same pixels (to within one 8-bit step) as the trainer did.

use crate::preset::{FramePreset, Normalisation};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// An 8-bit RGB image, row-major, interleaved (HWC).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// The image turned clockwise by `degrees` (0, 90, 180 or 270; others are taken as 0).
    pub fn rotated(&self, degrees: u16) -> RgbImage {
        let (w, h) = (self.width, self.height);
        let (nw, nh) = if degrees % 180 == 90 { (h, w) } else { (w, h) };
        let mut out = RgbImage::new(nw, nh);
        for y in 0..nh {
            for x in 0..nw {
                // The source pixel that lands at (x, y).
                let (sx, sy) = match degrees {
                    90 => (y, h - 1 - x),
                    180 => (w - 1 - x, h - 1 - y),
                    270 => (w - 1 - y, x),
                    _ => (x, y),
                };
                let (d, s) = ((y * nw + x) * 3, (sy * w + sx) * 3);
                out.data[d..d + 3].copy_from_slice(&self.data[s..s + 3]);
            }
        }
        out
    }

    /// A black image.
    pub fn new(width: usize, height: usize) -> RgbImage {
        RgbImage { width, height, data: vec![0; width * height * 3] }
    }
}

/// A reusable Pillow-BILINEAR resizer. The convolution needs scratch buffers (the
/// intermediate image between the two passes, the filter coefficients); keeping the
/// `Resizer` alive across frames lets a video stream reuse them instead of allocating
/// per frame.
#[derive(Debug, Clone)]
pub struct FrameResizer {
    resizer: Resizer,
    options: ResizeOptions,
    /// Resized frame reused by [`FrameResizer::preprocess`].
    scratch: RgbImage,
}

impl Default for FrameResizer {
    fn default() -> Self {
        FrameResizer::new()
    }
}

impl FrameResizer {
    pub fn new() -> FrameResizer {
        FrameResizer {
            resizer: Resizer::new(),
            // No alpha channel in RGB8, but say so: premultiplication would only cost time.
            options: ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).use_alpha(false),
            scratch: RgbImage::default(),
        }
    }

    /// Resize to `size` x `size` as Pillow's `Image.resize((size, size), BILINEAR)` does.
    ///
    /// Panics if `img` is empty, `size` is 0 or `img.data` does not hold
    /// `width * height * 3` bytes: all are caller bugs, not data errors.
    pub fn resize(&mut self, img: &RgbImage, size: usize) -> RgbImage {
        let mut out = RgbImage::new(size, size);
        self.resize_into(img, &mut out);
        out
    }

    /// Resize into `out`, whose `width` and `height` give the target size; `out.data` is
    /// resized to fit, so passing the same `out` every frame allocates nothing.
    pub fn resize_into(&mut self, img: &RgbImage, out: &mut RgbImage) {
        assert!(img.width > 0 && img.height > 0, "resize: empty source image");
        assert!(out.width > 0 && out.height > 0, "resize: empty target size");
        assert_eq!(
            img.data.len(),
            img.width * img.height * 3,
            "resize: {}x{} RGB image needs {} bytes",
            img.width,
            img.height,
            img.width * img.height * 3
        );
        out.data.resize(out.width * out.height * 3, 0);
        let src = ImageRef::new(dim(img.width), dim(img.height), &img.data, PixelType::U8x3)
            .expect("buffer size checked above; u8x3 has no alignment requirement");
        let mut dst = Image::from_slice_u8(dim(out.width), dim(out.height), &mut out.data, PixelType::U8x3)
            .expect("buffer sized above; u8x3 has no alignment requirement");
        self.resizer
            .resize(&src, &mut dst, &self.options)
            .expect("same pixel type on both sides and no cropping: resize cannot fail");
    }

    /// Resize + normalise, reusing this resizer's buffers for the intermediate frame.
    pub fn preprocess(&mut self, img: &RgbImage, frames: &FramePreset, n: &Normalisation) -> Vec<f32> {
        // Taken out and put back because resize_into borrows all of self.
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.width = frames.size;
        scratch.height = frames.size;
        self.resize_into(img, &mut scratch);
        let out = normalise(&scratch, n);
        self.scratch = scratch;
        out
    }
}

fn dim(n: usize) -> u32 {
    u32::try_from(n).expect("image dimension does not fit in u32")
}

/// Resize to `size` x `size` as Pillow's `Image.resize((size, size), BILINEAR)` does.
/// One-off convenience; use a [`FrameResizer`] for a stream of frames.
pub fn resize_rgb(img: &RgbImage, size: usize) -> RgbImage {
    FrameResizer::new().resize(img, size)
}

/// CHW f32, normalised.
///
/// The arithmetic is torchvision's, in f32 and in its order (`ToTensor` divides by 255,
/// `Normalize` subtracts then divides), so the values are bit-identical to what the
/// trainer computed. Only 256 inputs are possible per channel, so each channel's values
/// are tabulated once rather than recomputed per pixel.
pub fn normalise(img: &RgbImage, n: &Normalisation) -> Vec<f32> {
    let plane = img.width * img.height;
    assert_eq!(img.data.len(), plane * 3, "normalise: data does not match {}x{} RGB", img.width, img.height);
    let mut out = vec![0.0f32; plane * 3];
    for c in 0..3 {
        let lut: [f32; 256] = std::array::from_fn(|v| match n {
            Normalisation::MeanStd { mean, std } => (v as f32 / 255.0 - mean[c]) / std[c],
            Normalisation::MinusOneOne => v as f32 / 127.5 - 1.0,
        });
        let dst = &mut out[c * plane..(c + 1) * plane];
        for (d, px) in dst.iter_mut().zip(img.data.chunks_exact(3)) {
            *d = lut[px[c] as usize];
        }
    }
    out
}

/// Resize + normalise: the network input for one frame, (3, size, size) row-major.
pub fn preprocess(img: &RgbImage, frames: &FramePreset, n: &Normalisation) -> Vec<f32> {
    normalise(&resize_rgb(img, frames.size), n)
}

/// Decode a PNG or JPEG file to RGB8 (grey and alpha images are converted).
pub fn read_image(path: &std::path::Path) -> anyhow::Result<RgbImage> {
    use anyhow::Context;
    let img = ::image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?
        .decode()
        .with_context(|| format!("{}: not a decodable PNG/JPEG image", path.display()))?
        .into_rgb8();
    let (width, height) = (img.width() as usize, img.height() as usize);
    Ok(RgbImage { width, height, data: img.into_raw() })
}
