//! Microphone capture through ALSA (alsa-lib via the `alsa` crate): interleaved S16_LE or
//! S32_LE at a requested rate and channel count, blocking reads of one period.
//!
//! An overrun (EPIPE: the device filled its buffer because the reader was late) is
//! recovered with `prepare()`, counted and logged; samples are lost but the stream goes on.
//! A device that goes away (ENODEV, EBADFD, ESTRPIPE that `resume` cannot fix: a USB
//! microphone unplugged) is closed and reopened with exponential backoff until it returns.
//!
//! Every period is stamped on the device's monotonic clock ([`super::clock`]) at capture:
//! the read time minus the frames read and those still waiting in the device's buffer. So
//! after an overrun or a reopen the stream time moves on by the time lost, and the device
//! loop sees the gap.

use super::clock::SharedClock;
use super::{AudioRead, AudioSource};
use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};
use anyhow::{bail, Context, Result};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SampleFormat {
    /// Signed 16-bit little endian.
    S16,
    /// Signed 32-bit little endian (24-bit converters deliver this, MSB-aligned).
    S32,
}

impl SampleFormat {
    pub fn bytes(self) -> usize {
        match self {
            SampleFormat::S16 => 2,
            SampleFormat::S32 => 4,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AlsaConfig {
    /// PCM name: `default`, `hw:1,0`, `plughw:CARD=Device`, or one from $ALSA_CONFIG_PATH.
    pub device: String,
    pub rate: u32,
    pub channels: u32,
    pub format: SampleFormat,
    /// Frames per read (one period).
    pub period_frames: usize,
    /// First wait before reopening a vanished device; doubles up to `reopen_backoff_max`.
    pub reopen_backoff: Duration,
    pub reopen_backoff_max: Duration,
}

impl AlsaConfig {
    pub fn new(device: &str) -> AlsaConfig {
        AlsaConfig {
            device: device.into(),
            rate: 48_000,
            channels: 2,
            format: SampleFormat::S16,
            period_frames: 4800,
            reopen_backoff: Duration::from_millis(250),
            reopen_backoff_max: Duration::from_secs(8),
        }
    }
}

enum Raw {
    S16(Vec<i16>),
    S32(Vec<i32>),
}

/// What the capture loop asks of a PCM. alsa-lib's [`PCM`] is the real one; a scripted one
/// drives the recovery paths (overrun, a device that vanishes and returns) in tests.
pub trait CapturePcm {
    fn read_s16(&self, buf: &mut [i16]) -> alsa::Result<usize>;
    fn read_s32(&self, buf: &mut [i32]) -> alsa::Result<usize>;
    fn prepare(&self) -> alsa::Result<()>;
    fn resume(&self) -> alsa::Result<()>;
    /// Frames captured and not yet read (still in the device's buffer).
    fn avail(&self) -> alsa::Result<i64>;
    /// The rate the device settled on, when it says (a `hw:` device takes the nearest it
    /// has to the rate asked).
    fn rate(&self) -> Option<u32> {
        None
    }
}

impl CapturePcm for PCM {
    fn read_s16(&self, buf: &mut [i16]) -> alsa::Result<usize> {
        self.io_i16()?.readi(buf)
    }
    fn read_s32(&self, buf: &mut [i32]) -> alsa::Result<usize> {
        self.io_i32()?.readi(buf)
    }
    fn prepare(&self) -> alsa::Result<()> {
        PCM::prepare(self)
    }
    fn resume(&self) -> alsa::Result<()> {
        PCM::resume(self)
    }
    // `Frames` is a C long: i64 here, i32 on 32-bit ARM.
    #[allow(clippy::unnecessary_cast)]
    fn avail(&self) -> alsa::Result<i64> {
        PCM::avail(self).map(|f| f as i64)
    }
    fn rate(&self) -> Option<u32> {
        self.hw_params_current().and_then(|h| h.get_rate()).ok()
    }
}

/// Opens the configured PCM: at start, and again after the device was lost.
pub type PcmOpener = Box<dyn FnMut(&AlsaConfig) -> Result<Box<dyn CapturePcm>>>;

/// The real opener: alsa-lib.
fn alsa_lib() -> PcmOpener {
    Box::new(|c| Ok(Box::new(open_pcm(c)?) as Box<dyn CapturePcm>))
}

pub struct AlsaSource {
    cfg: AlsaConfig,
    pcm: Option<Box<dyn CapturePcm>>,
    opener: PcmOpener,
    raw: Raw,
    clock: SharedClock,
    /// When the first frame of the last period read was captured (device timeline).
    stamp: f64,
    pub xruns: u64,
    pub reopens: u64,
}

fn open_pcm(cfg: &AlsaConfig) -> Result<PCM> {
    let pcm = PCM::new(&cfg.device, Direction::Capture, false)
        .with_context(|| format!("ALSA PCM {:?}: cannot open for capture", cfg.device))?;
    {
        let hw = HwParams::any(&pcm).context("hw params")?;
        hw.set_access(Access::RWInterleaved).context("interleaved access")?;
        let fmt = match cfg.format {
            SampleFormat::S16 => Format::s16(),
            SampleFormat::S32 => Format::s32(),
        };
        hw.set_format(fmt).with_context(|| format!("format {:?} not supported", cfg.format))?;
        hw.set_channels(cfg.channels).with_context(|| format!("{} channels not supported", cfg.channels))?;
        hw.set_rate(cfg.rate, ValueOr::Nearest).with_context(|| format!("rate {} Hz not supported", cfg.rate))?;
        let period = cfg.period_frames as alsa::pcm::Frames;
        hw.set_period_size_near(period, ValueOr::Nearest).context("period size")?;
        hw.set_buffer_size_near(period * 4).context("buffer size")?;
        pcm.hw_params(&hw).with_context(|| format!("ALSA PCM {:?}: hw params refused", cfg.device))?;
    }
    pcm.prepare().context("prepare")?;
    Ok(pcm)
}

impl AlsaSource {
    /// Open `cfg.device` through alsa-lib; periods are stamped on `clock`.
    pub fn open(cfg: AlsaConfig, clock: SharedClock) -> Result<AlsaSource> {
        AlsaSource::with_opener(cfg, alsa_lib(), clock)
    }

    /// As [`AlsaSource::open`], but a microphone that cannot be opened yet (not plugged in,
    /// a USB device not enumerated at boot) is waited for, as one lost later is: reads
    /// block while it is tried again with backoff.
    pub fn open_or_wait(cfg: AlsaConfig, clock: SharedClock) -> AlsaSource {
        AlsaSource::waiting(cfg, alsa_lib(), clock)
    }

    /// [`AlsaSource::with_opener`] that waits for a device absent at start.
    pub fn waiting(cfg: AlsaConfig, mut opener: PcmOpener, clock: SharedClock) -> AlsaSource {
        let pcm = opener(&cfg)
            .map_err(|e| tracing::error!("{e:#}; waiting for the microphone, trying again with backoff"))
            .ok();
        AlsaSource::with_pcm(cfg, pcm, opener, clock)
    }

    /// Capture from the PCMs `opener` gives (called now, and after each loss of the device).
    pub fn with_opener(cfg: AlsaConfig, mut opener: PcmOpener, clock: SharedClock) -> Result<AlsaSource> {
        let pcm = opener(&cfg)?;
        Ok(AlsaSource::with_pcm(cfg, Some(pcm), opener, clock))
    }

    fn with_pcm(
        mut cfg: AlsaConfig,
        pcm: Option<Box<dyn CapturePcm>>,
        opener: PcmOpener,
        clock: SharedClock,
    ) -> AlsaSource {
        // A `hw:` device gives the nearest rate it has (a USB microphone at 44.1 kHz asked for
        // 48 kHz): the stream is at that rate, or every window would be pitch-shifted.
        if let Some(rate) = pcm.as_ref().and_then(|p| p.rate()).filter(|&r| r != cfg.rate) {
            tracing::warn!(device = %cfg.device, "asked for {} Hz, the device captures at {rate} Hz; using {rate} Hz", cfg.rate);
            cfg.rate = rate;
        }
        let n = cfg.period_frames * cfg.channels as usize;
        let raw = match cfg.format {
            SampleFormat::S16 => Raw::S16(vec![0; n]),
            SampleFormat::S32 => Raw::S32(vec![0; n]),
        };
        if pcm.is_some() {
            tracing::info!(device = %cfg.device, rate = cfg.rate, channels = cfg.channels, format = ?cfg.format, "ALSA capture open");
        }
        AlsaSource { cfg, pcm, opener, raw, clock, stamp: 0.0, xruns: 0, reopens: 0 }
    }

    pub fn config(&self) -> &AlsaConfig {
        &self.cfg
    }

    /// Read one period into the internal buffer; returns the frames read. Recovers overruns
    /// and reopens a vanished device (blocking until it is back).
    fn read_period(&mut self, max_frames: usize) -> Result<usize> {
        let k = max_frames.min(self.cfg.period_frames) * self.cfg.channels as usize;
        let mut backoff = self.cfg.reopen_backoff;
        loop {
            let Some(pcm) = self.pcm.as_ref() else {
                std::thread::sleep(backoff);
                match (self.opener)(&self.cfg) {
                    // The stream's rate is fixed: a device back at another rate (another
                    // microphone plugged in) is not taken.
                    Ok(p) if p.rate().is_some_and(|r| r != self.cfg.rate) => {
                        backoff = (backoff * 2).min(self.cfg.reopen_backoff_max);
                        tracing::warn!(
                            device = %self.cfg.device,
                            "the device is back at {} Hz, not this stream's {} Hz; retrying in {:.1} s",
                            p.rate().unwrap_or(0),
                            self.cfg.rate,
                            backoff.as_secs_f64()
                        );
                    }
                    Ok(p) => {
                        self.reopens += 1;
                        tracing::warn!(device = %self.cfg.device, reopens = self.reopens, "ALSA device reopened");
                        self.pcm = Some(p);
                    }
                    Err(e) => {
                        backoff = (backoff * 2).min(self.cfg.reopen_backoff_max);
                        tracing::warn!("{e:#}; retrying in {:.1} s", backoff.as_secs_f64());
                    }
                }
                continue;
            };
            let r = match &mut self.raw {
                Raw::S16(b) => pcm.read_s16(&mut b[..k]),
                Raw::S32(b) => pcm.read_s32(&mut b[..k]),
            };
            match r {
                Ok(0) => continue,
                Ok(n) => {
                    // The last frame read was captured `avail` frames before now.
                    let behind = n as i64 + pcm.avail().unwrap_or(0).max(0);
                    self.stamp = self.clock.now() - behind as f64 / self.cfg.rate as f64;
                    return Ok(n);
                }
                Err(e) if e.errno() == libc_errno::EPIPE => {
                    self.xruns += 1;
                    tracing::warn!(device = %self.cfg.device, xruns = self.xruns, "ALSA overrun: samples lost, recovering");
                    pcm.prepare().context("prepare after overrun")?;
                }
                Err(e) if e.errno() == libc_errno::EINTR || e.errno() == libc_errno::EAGAIN => {}
                Err(e) if e.errno() == libc_errno::ESTRPIPE && pcm.resume().is_ok() => {}
                Err(e)
                    if [libc_errno::ENODEV, libc_errno::EBADFD, libc_errno::ESTRPIPE, libc_errno::EIO]
                        .contains(&e.errno()) =>
                {
                    tracing::error!(device = %self.cfg.device, "ALSA device lost ({e}); reopening");
                    self.pcm = None;
                }
                Err(e) => bail!("ALSA PCM {:?}: read failed: {e}", self.cfg.device),
            }
        }
    }

    /// The next period as raw little-endian bytes in the capture format (what the device
    /// delivered, untouched: `avsc-device capture` writes these).
    pub fn read_bytes(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let n = self.read_period(usize::MAX)?;
        let k = n * self.cfg.channels as usize;
        out.clear();
        match &self.raw {
            Raw::S16(b) => b[..k].iter().for_each(|s| out.extend_from_slice(&s.to_le_bytes())),
            Raw::S32(b) => b[..k].iter().for_each(|s| out.extend_from_slice(&s.to_le_bytes())),
        }
        Ok(n)
    }
}

/// The errno values alsa-lib returns (Linux; identical on x86_64 and aarch64).
mod libc_errno {
    pub const EINTR: i32 = 4;
    pub const EIO: i32 = 5;
    pub const EAGAIN: i32 = 11;
    pub const ENODEV: i32 = 19;
    pub const EPIPE: i32 = 32;
    pub const EBADFD: i32 = 77;
    pub const ESTRPIPE: i32 = 86;
}

impl AudioSource for AlsaSource {
    fn sample_rate(&self) -> u32 {
        self.cfg.rate
    }

    fn channels(&self) -> usize {
        self.cfg.channels as usize
    }

    /// Reads at most one period.
    fn read(&mut self, buf: &mut [f32]) -> Result<Option<AudioRead>> {
        let ch = self.cfg.channels as usize;
        let n = self.read_period(buf.len() / ch)?;
        let t = self.stamp;
        let k = n * ch;
        match &self.raw {
            Raw::S16(b) => buf.iter_mut().zip(&b[..k]).for_each(|(d, s)| *d = *s as f32 / 32_768.0),
            Raw::S32(b) => buf.iter_mut().zip(&b[..k]).for_each(|(d, s)| *d = *s as f32 / 2_147_483_648.0),
        }
        Ok(Some(AudioRead { frames: n, t }))
    }

    fn describe(&self) -> String {
        format!("ALSA {} ({} Hz, {} ch, {:?})", self.cfg.device, self.cfg.rate, self.cfg.channels, self.cfg.format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::clock::Manual;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;

    const RATE: f64 = 48_000.0;

    /// What a scripted read does.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        /// Deliver this many frames (stereo; sample values count up from the last one); the
        /// clock moves on by their duration, as a real read returns once they are captured.
        Frames(usize),
        /// Fail with this errno.
        Fail(i32),
        /// Frames captured and lost (an overrun): the clock moves on, no read happens.
        Lose(usize),
        /// This many more frames are captured before the next read returns, and wait in the
        /// buffer (`avail`) after it.
        Backlog(usize),
    }

    #[derive(Default)]
    struct Log {
        opens: usize,
        prepares: usize,
        next_sample: i16,
        backlog: i64,
    }

    type Shared<T> = Rc<RefCell<T>>;

    struct Scripted {
        steps: Shared<Vec<Step>>,
        log: Shared<Log>,
        clock: Arc<Manual>,
        rate: Option<u32>,
    }

    impl CapturePcm for Scripted {
        fn read_s16(&self, buf: &mut [i16]) -> alsa::Result<usize> {
            let mut step = self.steps.borrow_mut().remove(0);
            while let Step::Lose(n) | Step::Backlog(n) = step {
                self.clock.advance(n as f64 / RATE);
                self.log.borrow_mut().backlog = if matches!(step, Step::Backlog(_)) { n as i64 } else { 0 };
                step = self.steps.borrow_mut().remove(0);
            }
            match step {
                Step::Frames(n) => {
                    self.clock.advance(n as f64 / RATE);
                    let mut log = self.log.borrow_mut();
                    for s in &mut buf[..n * 2] {
                        *s = log.next_sample;
                        log.next_sample += 1;
                    }
                    Ok(n)
                }
                // alsa-rs keeps the positive errno (its `acheck!` negates alsa-lib's return).
                Step::Fail(errno) => Err(alsa::Error::new("snd_pcm_readi", errno)),
                Step::Lose(_) | Step::Backlog(_) => unreachable!("taken above"),
            }
        }
        fn read_s32(&self, _: &mut [i32]) -> alsa::Result<usize> {
            unreachable!("the test captures S16")
        }
        fn prepare(&self) -> alsa::Result<()> {
            self.log.borrow_mut().prepares += 1;
            Ok(())
        }
        fn resume(&self) -> alsa::Result<()> {
            Err(alsa::Error::new("snd_pcm_resume", libc_errno::ENODEV))
        }
        fn avail(&self) -> alsa::Result<i64> {
            Ok(std::mem::take(&mut self.log.borrow_mut().backlog))
        }
        fn rate(&self) -> Option<u32> {
            self.rate
        }
    }

    /// A source over `steps`, whose opener fails (the device is absent) on the calls listed
    /// in `absent` (0 is the first open); each failed open takes a second of the clock.
    fn scripted(steps: Vec<Step>, absent: &'static [usize]) -> (AlsaSource, Shared<Vec<Step>>, Shared<Log>) {
        scripted_at(steps, absent, &[])
    }

    /// As [`scripted`], the PCM of open call i settling on `rates[i]` Hz (when listed).
    fn scripted_at(
        steps: Vec<Step>,
        absent: &'static [usize],
        rates: &'static [u32],
    ) -> (AlsaSource, Shared<Vec<Step>>, Shared<Log>) {
        scripted_with(steps, absent, rates, false)
    }

    /// `wait`: made by [`AlsaSource::waiting`] (a device absent at start is waited for).
    fn scripted_with(
        steps: Vec<Step>,
        absent: &'static [usize],
        rates: &'static [u32],
        wait: bool,
    ) -> (AlsaSource, Shared<Vec<Step>>, Shared<Log>) {
        let steps = Rc::new(RefCell::new(steps));
        let log = Rc::new(RefCell::new(Log::default()));
        let clock = Manual::shared();
        let (s, l, c) = (steps.clone(), log.clone(), clock.clone());
        let opener: PcmOpener = Box::new(move |cfg| {
            let call = {
                let mut log = l.borrow_mut();
                log.opens += 1;
                log.opens - 1
            };
            if absent.contains(&call) {
                c.advance(1.0);
                anyhow::bail!("ALSA PCM {:?}: cannot open for capture: No such device", cfg.device);
            }
            let rate = rates.get(call).copied();
            Ok(Box::new(Scripted { steps: s.clone(), log: l.clone(), clock: c.clone(), rate }) as Box<dyn CapturePcm>)
        });
        let cfg =
            AlsaConfig { period_frames: 4, reopen_backoff: Duration::from_millis(1), ..AlsaConfig::new("usb_mic") };
        let src = if wait {
            AlsaSource::waiting(cfg, opener, clock)
        } else {
            AlsaSource::with_opener(cfg, opener, clock).unwrap()
        };
        (src, steps, log)
    }

    fn read(src: &mut AlsaSource) -> (AudioRead, Vec<f32>) {
        let mut buf = vec![f32::NAN; 8];
        let r = src.read(&mut buf).unwrap().unwrap();
        buf.truncate(r.frames * 2);
        (r, buf)
    }

    fn samples(from: i16, n: usize) -> Vec<f32> {
        (0..n as i16).map(|i| (from + i) as f32 / 32_768.0).collect()
    }

    #[test]
    fn overrun_is_prepared_and_counted_and_the_stream_time_moves_over_the_lost_samples() {
        let (mut src, steps, log) =
            scripted(vec![Step::Frames(4), Step::Lose(10), Step::Fail(libc_errno::EPIPE), Step::Frames(3)], &[]);
        let (r, x) = read(&mut src);
        assert_eq!((r.frames, r.t, x), (4, 0.0, samples(0, 8)));
        let (r, x) = read(&mut src);
        assert_eq!((r.frames, x), (3, samples(8, 6)));
        assert!((r.t - 14.0 / RATE).abs() < 1e-12, "{}", r.t);
        assert_eq!((src.xruns, src.reopens, log.borrow().prepares, log.borrow().opens), (1, 0, 1, 1));
        assert!(steps.borrow().is_empty());
    }

    #[test]
    fn a_vanished_device_is_reopened_with_backoff_and_the_clock_continues() {
        // Unplugged during the second read; absent for two tries, back on the third.
        let (mut src, steps, log) =
            scripted(vec![Step::Frames(4), Step::Fail(libc_errno::ENODEV), Step::Frames(4)], &[1, 2]);
        read(&mut src);
        let t0 = std::time::Instant::now();
        let (r, x) = read(&mut src);
        // Waits of 1, 2 and 4 ms before the three tries.
        assert!(t0.elapsed() >= Duration::from_millis(7), "{:?}", t0.elapsed());
        // The two seconds the device was away are on the stream clock.
        assert_eq!((r.frames, x), (4, samples(8, 8)));
        assert!((r.t - (2.0 + 4.0 / RATE)).abs() < 1e-12, "{}", r.t);
        assert_eq!((src.reopens, log.borrow().opens, src.xruns), (1, 4, 0));
        assert!(steps.borrow().is_empty());
    }

    #[test]
    fn a_read_behind_the_capture_is_stamped_at_its_first_frame() {
        // The second period is read after 6 more frames were captured.
        let (mut src, _, _) = scripted(vec![Step::Frames(4), Step::Backlog(6), Step::Frames(4)], &[]);
        read(&mut src);
        let (r, _) = read(&mut src);
        assert!((r.t - 4.0 / RATE).abs() < 1e-12, "{}", r.t);
    }

    #[test]
    fn a_suspended_device_that_cannot_resume_is_reopened() {
        let (mut src, _, log) = scripted(vec![Step::Fail(libc_errno::ESTRPIPE), Step::Frames(2)], &[]);
        let (r, _) = read(&mut src);
        assert_eq!((r.frames, src.reopens, log.borrow().opens), (2, 1, 2));
    }

    #[test]
    fn the_stream_is_at_the_rate_the_device_settled_on_and_keeps_it() {
        // Asked 48 kHz, the device settles on 44.1 kHz; unplugged; back at 48 kHz (another
        // microphone: not taken), then at 44.1 kHz again.
        let (mut src, steps, log) = scripted_at(
            vec![Step::Frames(4), Step::Fail(libc_errno::ENODEV), Step::Frames(4)],
            &[],
            &[44_100, 48_000, 44_100],
        );
        assert_eq!(src.sample_rate(), 44_100);
        assert!(src.describe().contains("44100 Hz"), "{}", src.describe());
        read(&mut src);
        read(&mut src);
        assert_eq!((src.sample_rate(), src.reopens, log.borrow().opens), (44_100, 1, 3));
        assert!(steps.borrow().is_empty());
    }

    #[test]
    fn a_device_absent_at_start_is_waited_for() {
        // Absent on the first two opens (each a second of the clock), there on the third.
        let (mut src, steps, log) = scripted_with(vec![Step::Frames(4)], &[0, 1], &[], true);
        assert_eq!(log.borrow().opens, 1);
        let (r, x) = read(&mut src);
        assert_eq!((r.frames, x), (4, samples(0, 8)));
        assert!((r.t - 2.0).abs() < 1e-12, "stamped when captured, after the wait: {}", r.t);
        assert_eq!((src.reopens, log.borrow().opens), (1, 3));
        assert!(steps.borrow().is_empty());
        // Without waiting, the absent device is an error at once.
        assert!(AlsaSource::with_opener(
            AlsaConfig::new("usb_mic"),
            Box::new(|_| anyhow::bail!("no such device")),
            Manual::shared()
        )
        .is_err());
    }

    #[test]
    fn an_unexpected_error_names_the_device() {
        let (mut src, _, _) = scripted(vec![Step::Fail(22)], &[]);
        let e = format!("{:#}", src.read(&mut [0.0; 8]).unwrap_err());
        assert!(e.starts_with("ALSA PCM \"usb_mic\": read failed"), "{e}");
    }
}
