//! Frame preprocessing: RGB8 frame of any size -> 3 x size x size f32, Pillow-compatible
//! BILINEAR resize, then the backbone's normalisation.

use crate::preset::{FramePreset, Normalisation};

/// An 8-bit RGB image, row-major, interleaved (HWC).
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// Resize to `size` x `size` as Pillow's `Image.resize((size, size), BILINEAR)` does.
pub fn resize_rgb(_img: &RgbImage, _size: usize) -> RgbImage {
    todo!("resize")
}

/// CHW f32, normalised.
pub fn normalise(_img: &RgbImage, _n: &Normalisation) -> Vec<f32> {
    todo!("normalise")
}

/// Resize + normalise: the network input for one frame, (3, size, size) row-major.
pub fn preprocess(img: &RgbImage, frames: &FramePreset, n: &Normalisation) -> Vec<f32> {
    normalise(&resize_rgb(img, frames.size), n)
}
