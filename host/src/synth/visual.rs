//! Synthetic scene pictures: a group-specific background hue, stripe texture and shape
//! kind (shared by the two classes of a visual group) plus a faint class cue (the shapes'
//! size, overlapping between the two classes), with moving shapes and pixel noise.

use super::{visual_group, SynthConfig};
use crate::rng::SplitMix64;
use anyhow::Result;
use avsc_shared::image::RgbImage;

/// Per visual group: background RGB, stripe angle (degrees), stripe period (px), shape kind.
const GROUPS: [([f64; 3], f64, f64, Shape); 5] = [
    ([70.0, 110.0, 170.0], 0.0, 9.0, Shape::Disc),
    ([150.0, 90.0, 60.0], 36.0, 14.0, Shape::Square),
    ([80.0, 150.0, 80.0], 72.0, 6.0, Shape::Ring),
    ([160.0, 150.0, 70.0], 108.0, 11.0, Shape::Bar),
    ([120.0, 80.0, 140.0], 144.0, 17.0, Shape::Diamond),
];
/// Mean shape radius (px at 160x120) of the even and odd class, and its spread.
const CUE_RADIUS: [f64; 2] = [8.0, 11.0];
const CUE_SPREAD: f64 = 2.2;

#[derive(Clone, Copy)]
enum Shape {
    Disc,
    Square,
    Ring,
    Bar,
    Diamond,
}

pub struct Scene {
    background: [f64; 3],
    angle: f64,
    period: f64,
    shape: Shape,
    radius: f64,
    shape_colour: [f64; 3],
    /// (x, y, vx, vy) in pixels and pixels per frame.
    shapes: Vec<(f64, f64, f64, f64)>,
    pixel_noise: f64,
}

impl Scene {
    pub fn new(class: usize, cfg: &SynthConfig, rng: &mut SplitMix64, loc: &mut SplitMix64) -> Scene {
        let (bg, angle, period, shape) = GROUPS[visual_group(class)];
        let cast: Vec<f64> = (0..3).map(|_| loc.range(-25.0, 25.0) * cfg.visual_noise).collect();
        let (w, h) = (cfg.width as f64, cfg.height as f64);
        let scale = w / 160.0;
        let radius = (CUE_RADIUS[class % 2] + CUE_SPREAD * cfg.visual_noise * rng.normal()).max(3.0) * scale;
        let n_shapes = 3 + rng.below(4);
        let shapes = (0..n_shapes)
            .map(|_| (rng.range(0.0, w), rng.range(0.0, h), rng.range(-3.0, 3.0) * scale, rng.range(-2.0, 2.0) * scale))
            .collect();
        Scene {
            background: [bg[0] + cast[0], bg[1] + cast[1], bg[2] + cast[2]],
            angle: (angle + rng.range(-8.0, 8.0)).to_radians(),
            period: period * scale * rng.range(0.9, 1.1),
            shape,
            radius,
            shape_colour: [rng.range(200.0, 255.0), rng.range(200.0, 255.0), rng.range(180.0, 255.0)],
            shapes,
            pixel_noise: 12.0 * cfg.visual_noise,
        }
    }

    pub fn render(&self, frame: usize, cfg: &SynthConfig, rng: &mut SplitMix64) -> RgbImage {
        let (w, h) = (cfg.width, cfg.height);
        let (s, c) = self.angle.sin_cos();
        let brightness = rng.range(-15.0, 15.0) * cfg.visual_noise;
        let f = frame as f64;
        let centres: Vec<(f64, f64)> = self
            .shapes
            .iter()
            .map(|&(x, y, vx, vy)| ((x + vx * f).rem_euclid(w as f64), (y + vy * f).rem_euclid(h as f64)))
            .collect();
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let (xf, yf) = (x as f64, y as f64);
                let stripe = ((xf * c + yf * s) * std::f64::consts::TAU / self.period).sin() * 30.0;
                let inside = centres.iter().any(|&(cx, cy)| self.contains(xf - cx, yf - cy));
                for (ch, bg) in self.background.iter().enumerate() {
                    let base = if inside { self.shape_colour[ch] } else { bg + stripe };
                    let v = base + brightness + self.pixel_noise * rng.normal();
                    data.push(v.round().clamp(0.0, 255.0) as u8);
                }
            }
        }
        RgbImage { width: w, height: h, data }
    }

    fn contains(&self, dx: f64, dy: f64) -> bool {
        let r = self.radius;
        match self.shape {
            Shape::Disc => dx * dx + dy * dy <= r * r,
            Shape::Square => dx.abs() <= r && dy.abs() <= r,
            Shape::Ring => ((dx * dx + dy * dy).sqrt() - r).abs() <= r * 0.3,
            Shape::Bar => dx.abs() <= r * 1.8 && dy.abs() <= r * 0.45,
            Shape::Diamond => dx.abs() + dy.abs() <= r * 1.2,
        }
    }
}

/// PNG bytes of an RGB image.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, img.width as u32, img.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut w = enc.write_header()?;
        w.write_image_data(&img.data)?;
    }
    Ok(out)
}
