//! The live loop as `avsc-device run` builds it — the ALSA source on its capture thread
//! with a heartbeat, the V4L2 source on the camera thread, one clock — driven by a scripted
//! microphone and a scripted camera on a clock that runs 10 times faster than real time:
//! 90 s of a field unit in about 9 s.
//!
//! The script: the microphone is unplugged from 24.3 s to 54.3 s (a 30-s outage: reads
//! fail, reopening fails until it is back); the camera delivers 10 frames a second, each
//! 0.2 s after capture, and stalls from 60 s until it is reopened at 68 s.
//!
//! Skipped under qemu (device/ci-aarch64.sh): its speed is real-time dependent there.

mod common;

use avsc_device::infer::Engine;
use avsc_device::pipeline::{run_loop, spawn_camera, LoopOptions};
use avsc_device::sources::alsa::{AlsaConfig, AlsaSource, CapturePcm, PcmOpener, SampleFormat};
use avsc_device::sources::clock::{Clock, Scaled};
use avsc_device::sources::threaded::ThreadedAudio;
use avsc_device::sources::v4l::{CameraOpener, CameraStream, Opened, PixelFormat, V4lConfig, V4lSource};
use avsc_shared::bundle::Precision;
use common::*;
use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SPEED: f64 = 10.0;
const RATE: u32 = 32_000;
const PERIOD_S: f64 = 0.1;
const MIC_AWAY: (f64, f64) = (24.3, 54.3);
const CAMERA_AWAY: (f64, f64) = (60.0, 68.0);

/// A microphone capturing from the clock: period k covers [k, k+1) * PERIOD_S, its samples
/// all equal to k. Unplugged during MIC_AWAY.
struct Mic {
    clock: Scaled,
    next: Cell<u64>,
}

impl Mic {
    fn end(&self) -> f64 {
        (self.next.get() + 1) as f64 * PERIOD_S
    }
}

impl CapturePcm for Mic {
    fn read_s16(&self, buf: &mut [i16]) -> alsa::Result<usize> {
        if self.end() > MIC_AWAY.0 && self.next.get() as f64 * PERIOD_S < MIC_AWAY.1 {
            self.clock.sleep_until(MIC_AWAY.0);
            return Err(alsa::Error::new("snd_pcm_readi", 19)); // ENODEV
        }
        self.clock.sleep_until(self.end());
        buf.fill(self.next.get() as i16);
        self.next.set(self.next.get() + 1);
        Ok(buf.len() / 2)
    }
    fn read_s32(&self, _: &mut [i32]) -> alsa::Result<usize> {
        unreachable!("S16")
    }
    fn prepare(&self) -> alsa::Result<()> {
        Ok(())
    }
    fn resume(&self) -> alsa::Result<()> {
        Ok(())
    }
    /// Frames captured since the last period read ended.
    fn avail(&self) -> alsa::Result<i64> {
        let last_end = self.next.get() as f64 * PERIOD_S;
        Ok(((self.clock.now() - last_end) * RATE as f64).max(0.0) as i64)
    }
}

/// A camera at 10 frames a second, frame k captured at k / 10 s and delivered 0.2 s later
/// with the kernel's stamp; stalled during CAMERA_AWAY.
struct Camera {
    clock: Scaled,
    next: u64,
    buf: Vec<u8>,
}

impl CameraStream for Camera {
    fn next_buffer(&mut self) -> std::io::Result<(&[u8], Option<f64>)> {
        let t = self.next as f64 * 0.1;
        if (CAMERA_AWAY.0..CAMERA_AWAY.1).contains(&t) {
            self.clock.sleep_until(t + 2.0);
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "VIDIOC_DQBUF timed out"));
        }
        self.clock.sleep_until(t + 0.2);
        self.next += 1;
        self.buf = [(t * 2.0) as u8, 128].repeat(8 * 8);
        Ok((&self.buf, Some(t)))
    }
}

/// The output, with the clock's time at each line.
struct Lines {
    clock: Scaled,
    buf: Vec<u8>,
    at: Arc<Mutex<Vec<f64>>>,
}

impl Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let lines = self.buf.iter().filter(|&&b| b == b'\n').count();
        let mut at = self.at.lock().unwrap();
        while at.len() < lines {
            at.push(self.clock.now());
        }
        Ok(())
    }
}

fn next_index(clock: &Scaled, period: f64) -> u64 {
    (clock.now() / period).ceil() as u64
}

#[test]
fn a_microphone_outage_and_a_camera_stall_keep_one_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&dir.path().join("b"), BundleSpec::default());
    let mut engine = Engine::load(&bundle, Precision::F32).unwrap();
    let clock = Scaled::new(SPEED);

    let mic_clock = clock;
    let open_mic = move || {
        let opener: PcmOpener = Box::new(move |cfg| {
            let now = mic_clock.now();
            if (MIC_AWAY.0..MIC_AWAY.1).contains(&now) {
                anyhow::bail!("ALSA PCM {:?}: cannot open for capture: No such device", cfg.device);
            }
            let next = Cell::new(next_index(&mic_clock, PERIOD_S));
            Ok(Box::new(Mic { clock: mic_clock, next }) as Box<dyn CapturePcm>)
        });
        let cfg = AlsaConfig {
            rate: RATE,
            channels: 2,
            format: SampleFormat::S16,
            period_frames: (PERIOD_S * RATE as f64) as usize,
            reopen_backoff: Duration::from_millis(10),
            reopen_backoff_max: Duration::from_millis(20),
            ..AlsaConfig::new("scripted")
        };
        AlsaSource::with_opener(cfg, opener, Arc::new(mic_clock))
    };
    let mut mic = ThreadedAudio::spawn(open_mic, PERIOD_S, 30.0)
        .unwrap()
        .with_heartbeat(Arc::new(clock), Duration::from_secs_f64(1.0 / SPEED));

    let cam_clock = clock;
    let open_camera = move || {
        let opener: CameraOpener = Box::new(move |_| {
            let now = cam_clock.now();
            if (CAMERA_AWAY.0..CAMERA_AWAY.1).contains(&now) {
                anyhow::bail!("camera /dev/video0: cannot open");
            }
            let stream = Box::new(Camera { clock: cam_clock, next: next_index(&cam_clock, 0.1), buf: Vec::new() });
            Ok(Opened { stream, width: 8, height: 8, stride: 16, format: PixelFormat::Yuyv })
        });
        let cfg = V4lConfig {
            path: "/dev/video0".into(),
            width: 8,
            height: 8,
            format: PixelFormat::Yuyv,
            fps: 2.0,
            stall_timeout: Duration::from_secs(2),
            reopen_backoff: Duration::from_millis(10),
            reopen_backoff_max: Duration::from_millis(20),
        };
        V4lSource::with_opener(cfg, opener, Arc::new(cam_clock))
    };
    let frames = spawn_camera(open_camera).unwrap();

    // Windows of 10 s every 5 s, ending at 10, 15, ..., 90 s.
    let opts = LoopOptions { hop_s: 5.0, max_windows: Some(17), ..LoopOptions::default() };
    let at = Arc::new(Mutex::new(Vec::new()));
    let mut out = Lines { clock, buf: Vec::new(), at: at.clone() };
    let n = run_loop(&mut engine, &mut mic, frames, &opts, &AtomicBool::new(false), None, &mut out).unwrap();
    assert_eq!(n, 17);
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.buf).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let at = at.lock().unwrap();
    let mut starts = Vec::new();
    for (k, (l, &written)) in lines.iter().zip(at.iter()).enumerate() {
        let start = l["start_s"].as_f64().unwrap();
        let end = l["end_s"].as_f64().unwrap();
        let frames = l["frames"].as_u64().unwrap();
        let gap = l["gap_s"].as_f64().unwrap_or(0.0);
        let modalities: Vec<&str> = l["modalities"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
        eprintln!(
            "{start:6.2}-{end:6.2} written {written:6.2}: {modalities:?} frames {frames} gap {gap:.2} {}",
            l["note"]
        );
        starts.push(start);
        // Audio and frames on one timeline: every window where the schedule puts it, after
        // the outage too (within one frame period, 0.5 s).
        assert!((start - 5.0 * k as f64).abs() < 0.5, "window {k} starts at {start}");
        assert!((end - start - 10.0).abs() < 1e-9);
        let mic_gap = (end.min(MIC_AWAY.1) - start.max(MIC_AWAY.0)).max(0.0);
        assert!((gap - mic_gap).abs() < 0.3, "window {k}: gap {gap} s, the microphone was away {mic_gap} s");
        if mic_gap > 5.0 {
            // Classified from the camera alone, while the microphone was still away.
            assert_eq!(modalities, ["visual"], "window {k}");
            assert_eq!(l["head"], "fusion_visual");
            assert!(l["note"].as_str().unwrap().contains("microphone"), "{}", l["note"]);
            assert!(written < MIC_AWAY.1 + 1.0 || end > MIC_AWAY.1, "window {k} written at {written}");
        } else {
            assert_eq!(modalities, ["audio", "visual"], "window {k}");
        }
        // Two frames a second where the camera delivered: 20 per window, fewer only for
        // the seconds it was stalled.
        let stalled = (end.min(CAMERA_AWAY.1) - start.max(CAMERA_AWAY.0)).max(0.0);
        let want = 20.0 - 2.0 * stalled;
        assert!((frames as f64 - want).abs() <= 2.0, "window {k}: {frames} frames, want about {want}");
    }
    assert!(starts.windows(2).all(|w| w[1] > w[0]), "monotonic: {starts:?}");
}
