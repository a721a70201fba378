//! Camera pixel formats -> RGB8. Pure functions, so the V4L2 path is testable with no camera.
//!
//! YUYV (YUV 4:2:2, `Y0 U Y1 V` per pixel pair) from a UVC camera is BT.601 with limited
//! ("studio") range, Y in [16, 235] and U, V in [16, 240]: the conversion is ffmpeg's
//! swscale default for `yuyv422 -> rgb24`, in the usual 8-bit fixed point:
//!
//! ```text
//! R = (298 (Y-16)               + 409 (V-128) + 128) >> 8
//! G = (298 (Y-16) - 100 (U-128) - 208 (V-128) + 128) >> 8
//! B = (298 (Y-16) + 516 (U-128)               + 128) >> 8
//! ```
//!
//! MJPEG frames are JFIF (full-range YCbCr) and are decoded by the `image` crate's JPEG
//! decoder, as any JPEG file would be.

use anyhow::{ensure, Context, Result};
use avsc_shared::image::RgbImage;

#[inline]
fn clip(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

#[inline]
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 298 * (y as i32 - 16);
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    [clip((c + 409 * e + 128) >> 8), clip((c - 100 * d - 208 * e + 128) >> 8), clip((c + 516 * d + 128) >> 8)]
}

/// Convert a YUYV frame of `width` x `height` (rows `stride` bytes apart; `stride` >= 2 *
/// width) into `out`, whose buffer is reused.
pub fn yuyv_to_rgb_into(src: &[u8], width: usize, height: usize, stride: usize, out: &mut RgbImage) -> Result<()> {
    ensure!(width > 0 && height > 0 && width.is_multiple_of(2), "YUYV frame {width}x{height}: width must be even");
    ensure!(stride >= 2 * width, "YUYV stride {stride} is less than 2 x width {width}");
    let need = stride * (height - 1) + 2 * width;
    ensure!(src.len() >= need, "YUYV frame {width}x{height} needs {need} bytes, got {}", src.len());
    out.width = width;
    out.height = height;
    out.data.resize(width * height * 3, 0);
    for (row, dst) in out.data.chunks_exact_mut(width * 3).enumerate() {
        let line = &src[row * stride..row * stride + 2 * width];
        for (px, d) in line.chunks_exact(4).zip(dst.chunks_exact_mut(6)) {
            let (y0, u, y1, v) = (px[0], px[1], px[2], px[3]);
            d[..3].copy_from_slice(&yuv_to_rgb(y0, u, v));
            d[3..].copy_from_slice(&yuv_to_rgb(y1, u, v));
        }
    }
    Ok(())
}

/// YUYV -> a new RGB image (rows packed, stride = 2 * width).
pub fn yuyv_to_rgb(src: &[u8], width: usize, height: usize) -> Result<RgbImage> {
    let mut out = RgbImage::default();
    yuyv_to_rgb_into(src, width, height, 2 * width, &mut out)?;
    Ok(out)
}

/// Decode one MJPEG frame (a JPEG image) to RGB.
pub fn mjpeg_to_rgb(jpeg: &[u8]) -> Result<RgbImage> {
    let img = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .context("MJPEG frame is not a decodable JPEG")?
        .into_rgb8();
    let (width, height) = (img.width() as usize, img.height() as usize);
    Ok(RgbImage { width, height, data: img.into_raw() })
}

/// The inverse of the YUYV conversion in floating point (BT.601 limited range, a pixel
/// pair sharing the mean of its chroma): how the reference frames of the tests, and a
/// synthetic camera, are made.
pub fn rgb_to_yuyv(img: &RgbImage) -> Vec<u8> {
    assert!(img.width.is_multiple_of(2), "YUYV needs an even width");
    let yuv = |p: &[u8]| {
        let (r, g, b) = (p[0] as f64, p[1] as f64, p[2] as f64);
        let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
        let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
        (y, u, v)
    };
    let q = |x: f64| x.round().clamp(0.0, 255.0) as u8;
    let mut out = Vec::with_capacity(img.width * img.height * 2);
    for pair in img.data.chunks_exact(6) {
        let (y0, u0, v0) = yuv(&pair[..3]);
        let (y1, u1, v1) = yuv(&pair[3..]);
        out.extend_from_slice(&[q(y0), q((u0 + u1) / 2.0), q(y1), q((v0 + v1) / 2.0)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic test card: colour bars in the top half, smooth gradients below.
    /// Horizontally pairs of pixels are equal, so 4:2:2 subsampling loses nothing.
    pub fn test_card(width: usize, height: usize) -> RgbImage {
        const BARS: [[u8; 3]; 8] = [
            [255, 255, 255],
            [255, 255, 0],
            [0, 255, 255],
            [0, 255, 0],
            [255, 0, 255],
            [255, 0, 0],
            [0, 0, 255],
            [0, 0, 0],
        ];
        let mut img = RgbImage::new(width, height);
        for y in 0..height {
            for x in 0..width {
                let xp = x & !1;
                let p = if y < height / 2 {
                    BARS[xp * 8 / width]
                } else {
                    [(xp * 255 / width) as u8, (y * 255 / height) as u8, ((xp + y) * 127 / (width + height)) as u8]
                };
                img.data[(y * width + x) * 3..][..3].copy_from_slice(&p);
            }
        }
        img
    }

    #[test]
    fn yuyv_known_values() {
        // Limited-range black, white and the BT.601 primaries (the codes ffmpeg writes for
        // pure red, green, blue) come back to within the last bit.
        assert_eq!(yuv_to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(yuv_to_rgb(235, 128, 128), [255, 255, 255]);
        assert_eq!(yuv_to_rgb(81, 90, 240), [255, 0, 0]);
        assert_eq!(yuv_to_rgb(145, 54, 34), [0, 255, 1]);
        assert_eq!(yuv_to_rgb(41, 240, 110), [0, 0, 255]);
        // Out-of-range codes clip instead of wrapping.
        assert_eq!(yuv_to_rgb(255, 255, 255), [255, 125, 255]);
        assert_eq!(yuv_to_rgb(0, 0, 0), [0, 135, 0]);
    }

    #[test]
    fn yuyv_round_trip_within_quantisation() {
        let card = test_card(64, 48);
        let yuyv = rgb_to_yuyv(&card);
        let rgb = yuyv_to_rgb(&yuyv, 64, 48).unwrap();
        // Tolerance 2: Y, U and V are each rounded to 8 bits on the way in, and one code of
        // Y is 255/219 = 1.16 RGB levels and one code of U is up to 2.02 (B), so
        // half a code of each plus the fixed point's own rounding stays under 2.5.
        let max = card.data.iter().zip(&rgb.data).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
        assert!(max <= 2, "max |error| {max}");
        // With a stride wider than the row (padded lines), the same pixels.
        let mut padded = Vec::new();
        for row in yuyv.chunks_exact(128) {
            padded.extend_from_slice(row);
            padded.extend_from_slice(&[0xAA; 16]);
        }
        let mut out = RgbImage::default();
        yuyv_to_rgb_into(&padded, 64, 48, 144, &mut out).unwrap();
        assert_eq!(out, rgb);
    }

    #[test]
    fn yuyv_rejects_short_frames() {
        let e = yuyv_to_rgb(&[0; 100], 64, 48).unwrap_err().to_string();
        assert!(e.contains("needs 6144 bytes"), "{e}");
        assert!(yuyv_to_rgb(&[0; 100], 5, 2).is_err());
    }

    #[test]
    fn mjpeg_decodes_an_encoded_card() {
        let card = test_card(64, 48);
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode(&card.data, 64, 48, image::ExtendedColorType::Rgb8)
            .unwrap();
        let rgb = mjpeg_to_rgb(&jpeg).unwrap();
        assert_eq!((rgb.width, rgb.height), (64, 48));
        // JPEG is lossy: DCT quantisation (quality 95) and chroma subsampling smear the
        // hard edges of the colour bars, so the bound is on the mean error, with a loose
        // maximum for the edge pixels.
        let err: Vec<i32> = card.data.iter().zip(&rgb.data).map(|(a, b)| (*a as i32 - *b as i32).abs()).collect();
        let mean = err.iter().sum::<i32>() as f64 / err.len() as f64;
        let max = *err.iter().max().unwrap();
        assert!(mean < 3.0 && max < 96, "mean {mean}, max {max}");
        // The smooth lower half has no edges: tight there.
        let half = err.len() / 2;
        let max_smooth = *err[half..].iter().max().unwrap();
        assert!(max_smooth <= 8, "max error in the gradients {max_smooth}");
        assert!(mjpeg_to_rgb(&jpeg[..jpeg.len() / 3]).is_err() || mjpeg_to_rgb(b"not a jpeg").is_err());
    }
}
