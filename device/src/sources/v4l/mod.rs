//! Camera capture through V4L2 (the `v4l` crate, memory-mapped streaming): MJPEG or YUYV at
//! a requested size, converted to RGB, thinned to the models' frame rate by timestamp.
//!
//! Frames are stamped on the device's clock ([`super::clock`]): with the kernel's capture
//! time when the driver stamps buffers on CLOCK_MONOTONIC (V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC,
//! nearly all do), else with the time the buffer was dequeued. So a frame delivered late
//! still lands in the window it was captured in.
//!
//! A camera that stops delivering (no frame within `stall_timeout`: unplugged, firmware
//! hang) is reported, closed and reopened with backoff; `next_frame` blocks meanwhile, so
//! the device loop runs the camera in its own thread and windows without frames fall back
//! to the audio-only head. The device behind the source is a [`CameraStream`] from an
//! opener, so tests drive these paths with a scripted camera.

mod mmap;

use super::clock::SharedClock;
use super::convert::{mjpeg_to_rgb, yuyv_to_rgb_into};
use super::{Frame, FrameSource, FrameThinner};
use anyhow::{bail, Context, Result};
use avsc_shared::image::RgbImage;
use mmap::MmapCapture;
use std::path::PathBuf;
use std::time::Duration;
use v4l::buffer::Flags;
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
    /// First wait before reopening a camera that stopped; doubles up to
    /// `reopen_backoff_max`.
    pub reopen_backoff: Duration,
    pub reopen_backoff_max: Duration,
}

/// A camera delivering buffers: V4L2 memory-mapped streaming, or a scripted one in tests.
pub trait CameraStream {
    /// The next buffer's bytes, and the kernel's capture time in CLOCK_MONOTONIC seconds
    /// when the driver gives one. An error (a timeout after the stall time included) means
    /// the camera stopped.
    fn next_buffer(&mut self) -> std::io::Result<(&[u8], Option<f64>)>;
}

/// An opened camera: its stream and the layout of its buffers.
pub struct Opened {
    pub stream: Box<dyn CameraStream>,
    pub width: usize,
    pub height: usize,
    /// Bytes per row (YUYV).
    pub stride: usize,
    pub format: PixelFormat,
}

/// Opens the configured camera: at start, and again after it stopped.
pub type CameraOpener = Box<dyn FnMut(&V4lConfig) -> Result<Opened>>;

struct V4lStream {
    // Field order matters: the stream unmaps its buffers before the device closes.
    stream: MmapCapture,
    _dev: Device,
}

impl CameraStream for V4lStream {
    fn next_buffer(&mut self) -> std::io::Result<(&[u8], Option<f64>)> {
        let (data, meta) = self.stream.next()?;
        let (sec, usec) = meta.timestamp;
        let monotonic = meta.flags & Flags::TIMESTAMP_MASK == Flags::TIMESTAMP_MONOTONIC;
        let stamp = (monotonic && (sec, usec) != (0, 0)).then_some(sec as f64 + usec as f64 * 1e-6);
        Ok((data, stamp))
    }
}

fn open_device(cfg: &V4lConfig) -> Result<Opened> {
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
    let stream =
        MmapCapture::new(&dev, 4, cfg.stall_timeout).with_context(|| format!("camera {name}: cannot map buffers"))?;
    tracing::info!(camera = %name, card = %caps.card, "{}x{} {:?}", got.width, got.height, format);
    let stride = if got.stride > 0 { got.stride as usize } else { 2 * got.width as usize };
    Ok(Opened {
        stream: Box::new(V4lStream { stream, _dev: dev }),
        width: got.width as usize,
        height: got.height as usize,
        stride,
        format,
    })
}

pub struct V4lSource {
    cfg: V4lConfig,
    open: Option<Opened>,
    opener: CameraOpener,
    clock: SharedClock,
    thinner: FrameThinner,
    pub stalls: u64,
    pub reopens: u64,
}

impl V4lSource {
    /// Open the camera; a missing or unusable device is an error here (the caller decides
    /// whether to go on without video), unlike a camera that fails later. Frames are
    /// stamped on `clock`.
    pub fn open(cfg: V4lConfig, clock: SharedClock) -> Result<V4lSource> {
        V4lSource::with_opener(cfg, Box::new(open_device), clock)
    }

    /// Capture from the cameras `opener` gives (called now, and after each stall).
    pub fn with_opener(cfg: V4lConfig, mut opener: CameraOpener, clock: SharedClock) -> Result<V4lSource> {
        let open = opener(&cfg)?;
        Ok(V4lSource {
            thinner: FrameThinner::new(cfg.fps),
            cfg,
            open: Some(open),
            opener,
            clock,
            stalls: 0,
            reopens: 0,
        })
    }

    fn reopen(&mut self) {
        let mut backoff = self.cfg.reopen_backoff;
        loop {
            std::thread::sleep(backoff);
            match (self.opener)(&self.cfg) {
                Ok(o) => {
                    self.reopens += 1;
                    tracing::warn!(camera = %self.cfg.path.display(), reopens = self.reopens, "camera reopened");
                    self.open = Some(o);
                    return;
                }
                Err(e) => {
                    tracing::warn!("{e:#}; retrying");
                    backoff = (backoff * 2).min(self.cfg.reopen_backoff_max);
                }
            }
        }
    }
}

/// A buffer's time on the device clock: the kernel's stamp when it is plausible (not in the
/// future, not older than the stall time plus a second), else now.
fn stamp(clock: &dyn super::clock::Clock, stall: Duration, kernel: Option<f64>) -> f64 {
    let now = clock.now();
    let oldest = now - stall.as_secs_f64() - 1.0;
    kernel.and_then(|m| clock.monotonic_to_timeline(m)).filter(|t| (oldest..=now + 0.01).contains(t)).unwrap_or(now)
}

impl FrameSource for V4lSource {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            if self.open.is_none() {
                self.reopen();
            }
            let o = self.open.as_mut().expect("opened above");
            let (data, kernel) = match o.stream.next_buffer() {
                Ok(x) => x,
                Err(e) => {
                    self.stalls += 1;
                    tracing::error!(camera = %self.cfg.path.display(), stalls = self.stalls, "camera stopped delivering ({e}); reopening");
                    self.open = None;
                    continue;
                }
            };
            // Thinned before converting: a 30-fps camera gives 2 frames a second to decode.
            let t = stamp(&*self.clock, self.cfg.stall_timeout, kernel);
            if !self.thinner.keep(t) {
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::clock::{Clock, Manual};
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;
    use std::sync::Arc;

    /// What the scripted camera does on a dequeue.
    enum Step {
        /// A 4x2 YUYV buffer of this luma, captured `age` seconds before the clock's now
        /// (`None`: the driver gives no timestamp); the clock moves on by `dt` first.
        Frame { luma: u8, dt: f64, age: Option<f64> },
        /// A buffer too short for its size (a driver glitch), a second later.
        Garbage,
        /// No buffer within the stall time.
        Stall,
    }

    struct Scripted {
        steps: Rc<RefCell<VecDeque<Step>>>,
        clock: Arc<Manual>,
        buf: Vec<u8>,
    }

    impl CameraStream for Scripted {
        fn next_buffer(&mut self) -> std::io::Result<(&[u8], Option<f64>)> {
            let step = self.steps.borrow_mut().pop_front().expect("script ran out");
            match step {
                Step::Frame { luma, dt, age } => {
                    self.clock.advance(dt);
                    self.buf = [luma, 128, luma, 128].repeat(4);
                    Ok((&self.buf, age.map(|a| self.clock.now() - a)))
                }
                Step::Garbage => {
                    self.clock.advance(1.0);
                    self.buf = vec![0xff, 0xd8, 1, 2, 3];
                    Ok((&self.buf, None))
                }
                Step::Stall => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "VIDIOC_DQBUF timed out")),
            }
        }
    }

    fn camera(steps: Vec<Step>, format: PixelFormat) -> (V4lSource, Arc<Manual>, Rc<RefCell<usize>>) {
        let steps = Rc::new(RefCell::new(VecDeque::from(steps)));
        let clock = Manual::shared();
        let opens = Rc::new(RefCell::new(0));
        let (c, o) = (clock.clone(), opens.clone());
        let opener: CameraOpener = Box::new(move |_| {
            *o.borrow_mut() += 1;
            let stream = Box::new(Scripted { steps: steps.clone(), clock: c.clone(), buf: Vec::new() });
            Ok(Opened { stream, width: 4, height: 2, stride: 8, format })
        });
        let cfg = V4lConfig {
            path: "/dev/video9".into(),
            width: 4,
            height: 2,
            format,
            fps: 2.0,
            stall_timeout: Duration::from_secs(2),
            reopen_backoff: Duration::from_millis(1),
            reopen_backoff_max: Duration::from_millis(1),
        };
        (V4lSource::with_opener(cfg, opener, clock.clone()).unwrap(), clock, opens)
    }

    fn next(src: &mut V4lSource) -> (f64, u8) {
        let f = src.next_frame().unwrap().unwrap();
        (f.t, f.image.data[0])
    }

    #[test]
    fn frames_carry_the_kernels_capture_time_when_plausible() {
        let (mut src, _, _) = camera(
            vec![
                // Delivered 0.3 s after capture: stamped at capture.
                Step::Frame { luma: 20, dt: 10.0, age: Some(0.3) },
                // No driver timestamp: the dequeue time.
                Step::Frame { luma: 40, dt: 1.0, age: None },
                // A stamp in the future, or far older than a stall: the dequeue time.
                Step::Frame { luma: 60, dt: 1.0, age: Some(-5.0) },
                Step::Frame { luma: 80, dt: 1.0, age: Some(100.0) },
            ],
            PixelFormat::Yuyv,
        );
        let got: Vec<(f64, u8)> = (0..4).map(|_| next(&mut src)).collect();
        let t: Vec<f64> = got.iter().map(|g| (g.0 * 1e6).round() / 1e6).collect();
        assert_eq!(t, vec![9.7, 11.0, 12.0, 13.0]);
        assert!(got[0].1 < got[1].1 && got[1].1 < got[2].1, "{got:?}");
    }

    #[test]
    fn a_stalled_camera_is_reopened_and_a_corrupt_frame_skipped() {
        let (mut src, _, opens) = camera(
            vec![
                Step::Frame { luma: 100, dt: 0.0, age: Some(0.0) },
                Step::Stall,
                Step::Garbage,
                Step::Frame { luma: 100, dt: 4.0, age: Some(0.0) },
            ],
            PixelFormat::Yuyv,
        );
        assert_eq!(next(&mut src).0, 0.0);
        assert_eq!(next(&mut src).0, 5.0);
        assert_eq!((src.stalls, src.reopens, *opens.borrow()), (1, 1, 2));
    }

    #[test]
    fn a_thirty_fps_camera_gives_two_frames_a_second() {
        let steps = (0..90).map(|k| Step::Frame { luma: k as u8, dt: 1.0 / 30.0, age: Some(0.0) }).collect();
        let (mut src, _, _) = camera(steps, PixelFormat::Yuyv);
        let t: Vec<f64> = (0..6).map(|_| next(&mut src).0).collect();
        // One per half second: the first frame at or after each grid point (two frame
        // periods of slack for the clock's rounding).
        for (k, t) in t.iter().enumerate() {
            assert!((k as f64 * 0.5 - 1e-6..k as f64 * 0.5 + 0.07).contains(t), "frame {k}: {t}");
        }
    }
}
