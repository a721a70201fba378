//! Camera capture through V4L2 (the `v4l` crate, memory-mapped streaming): MJPEG or YUYV at
//! a requested size, converted to RGB, thinned to the models' frame rate by timestamp.
//!
//! A camera that stops delivering (no frame within `stall_timeout`: unplugged, firmware
//! hang) is reported, closed and reopened with backoff; `next_frame` blocks meanwhile, so
//! the device loop runs the camera in its own thread and windows without frames fall back
//! to the audio-only head.

use super::convert::{mjpeg_to_rgb, yuyv_to_rgb_into};
use super::{Frame, FrameSource, FrameThinner};
use anyhow::{bail, Context, Result};
use avsc_shared::image::RgbImage;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PixelFormat {
    Mjpeg,
    Yuyv,
}

impl PixelFormat {
    fn fourcc(self) -> FourCC {
        match self {
            PixelFormat::Mjpeg => FourCC::new(b"MJPG"),
            PixelFormat::Yuyv => FourCC::new(b"YUYV"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct V4lConfig {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// Frames kept per second (the bundle's frame preset).
    pub fps: f64,
    pub stall_timeout: Duration,
}

struct Open {
    // Field order matters: the stream unmaps its buffers before the device closes.
    stream: Stream<'static>,
    _dev: Device,
    width: usize,
    height: usize,
    stride: usize,
    format: PixelFormat,
}

pub struct V4lSource {
    cfg: V4lConfig,
    open: Option<Open>,
    thinner: FrameThinner,
    start: Instant,
    pub stalls: u64,
}

fn open_device(cfg: &V4lConfig) -> Result<Open> {
    let name = cfg.path.display();
    let dev = Device::with_path(&cfg.path).with_context(|| format!("camera {name}: cannot open"))?;
    let caps = dev.query_caps().with_context(|| format!("camera {name}: not a V4L2 device"))?;
    let want = v4l::Format::new(cfg.width, cfg.height, cfg.format.fourcc());
    let got = dev.set_format(&want).with_context(|| format!("camera {name} ({}): cannot set format", caps.card))?;
    let format = if got.fourcc == PixelFormat::Mjpeg.fourcc() {
        PixelFormat::Mjpeg
    } else if got.fourcc == PixelFormat::Yuyv.fourcc() {
        PixelFormat::Yuyv
    } else {
        bail!(
            "camera {name} ({}): offers {} instead of {:?}; only MJPEG and YUYV are read",
            caps.card,
            got.fourcc,
            cfg.format
        );
    };
    if (got.width, got.height) != (cfg.width, cfg.height) {
        tracing::warn!(camera = %name, "asked for {}x{}, the driver chose {}x{}", cfg.width, cfg.height, got.width, got.height);
    }
    let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, 4)
        .with_context(|| format!("camera {name}: cannot map buffers"))?;
    stream.set_timeout(cfg.stall_timeout);
    tracing::info!(camera = %name, card = %caps.card, "{}x{} {:?}", got.width, got.height, format);
    let stride = if got.stride > 0 { got.stride as usize } else { 2 * got.width as usize };
    Ok(Open { stream, _dev: dev, width: got.width as usize, height: got.height as usize, stride, format })
}

impl V4lSource {
    /// Open the camera; a missing or unusable device is an error here (the caller decides
    /// whether to go on without video), unlike a camera that fails later.
    pub fn open(cfg: V4lConfig) -> Result<V4lSource> {
        let open = open_device(&cfg)?;
        Ok(V4lSource { thinner: FrameThinner::new(cfg.fps), cfg, open: Some(open), start: Instant::now(), stalls: 0 })
    }

    fn reopen(&mut self) {
        let mut backoff = Duration::from_millis(500);
        loop {
            std::thread::sleep(backoff);
            match open_device(&self.cfg) {
                Ok(o) => {
                    tracing::warn!(camera = %self.cfg.path.display(), "camera reopened");
                    self.open = Some(o);
                    return;
                }
                Err(e) => {
                    tracing::warn!("{e:#}; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(8));
                }
            }
        }
    }
}

impl FrameSource for V4lSource {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            if self.open.is_none() {
                self.reopen();
            }
            let o = self.open.as_mut().expect("opened above");
            let (buf, meta) = match o.stream.next() {
                Ok(x) => x,
                Err(e) => {
                    self.stalls += 1;
                    tracing::error!(camera = %self.cfg.path.display(), stalls = self.stalls, "camera stopped delivering ({e}); reopening");
                    self.open = None;
                    continue;
                }
            };
            let t = self.start.elapsed().as_secs_f64();
            if !self.thinner.keep(t) {
                continue;
            }
            let data = &buf[..(meta.bytesused as usize).min(buf.len())];
            let image = match o.format {
                PixelFormat::Mjpeg => mjpeg_to_rgb(data),
                PixelFormat::Yuyv => {
                    let mut img = RgbImage::default();
                    yuyv_to_rgb_into(data, o.width, o.height, o.stride, &mut img).map(|_| img)
                }
            };
            match image {
                Ok(image) => return Ok(Some(Frame { t, image })),
                // A corrupt frame (a truncated MJPEG) is dropped, not fatal.
                Err(e) => tracing::warn!(camera = %self.cfg.path.display(), "frame dropped: {e:#}"),
            }
        }
    }

    fn describe(&self) -> String {
        format!("V4L2 {} ({}x{} {:?})", self.cfg.path.display(), self.cfg.width, self.cfg.height, self.cfg.format)
    }
}
