//! The V4L2 camera path itself — the `v4l` crate's open, QUERYCAP, S_FMT, REQBUFS,
//! QUERYBUF, mmap, QBUF, STREAMON, poll, DQBUF, STREAMOFF, munmap, close — against a camera
//! in userspace: tests/v4l2_fake/fake_v4l2.c, compiled here with the system C compiler and
//! preloaded (LD_PRELOAD) into a child process. It serves MJPEG or YUYV frames at a frame
//! rate, stamped on CLOCK_MONOTONIC at capture and delivered late if asked, and follows a
//! script: stalls (no frames, the device open) and unplugs (open fails with ENOENT, the open
//! descriptor reports POLLERR and ENODEV) at seconds since its first open. Real time: these
//! tests take about 35 s of wall clock, mostly waiting for frames.
//!
//! Each test runs its body in a child (this test binary again, with the library preloaded
//! and only that test selected); the parent builds the library and checks the child passed.
//! Skipped under qemu (device/ci-aarch64.sh): the library is built for the host.

mod common;

use avsc_device::sources::clock::Monotonic;
use avsc_device::sources::convert::{mjpeg_to_rgb, yuyv_to_rgb_into};
use avsc_device::sources::v4l::{PixelFormat, V4lConfig, V4lSource};
use avsc_device::sources::FrameSource;
use avsc_shared::image::RgbImage;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const DEVICE: &str = "/dev/video-avsc-fake";
const CHILD: &str = "AVSC_FAKE_V4L2_CHILD";

/// The fake camera, built once per test process.
fn fake_library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/v4l2_fake/fake_v4l2.c");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join(format!("fake_v4l2-{}.so", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let o = Command::new(&cc)
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&out)
            .arg(&src)
            .args(["-ldl", "-lm", "-lpthread"])
            .output()
            .unwrap_or_else(|e| panic!("{cc}: {e} (a C compiler builds the fake camera; Rust's linker is one)"));
        assert!(o.status.success(), "{cc} {}: {}", src.display(), String::from_utf8_lossy(&o.stderr));
        out
    })
}

/// Run `body` in a child process with the fake camera preloaded and configured by `env`;
/// in the parent, return the child's stderr after checking that it passed.
fn in_child(test: &str, env: &[(&str, String)], body: impl FnOnce()) -> Option<String> {
    if std::env::var_os(CHILD).is_some() {
        body();
        return None;
    }
    if std::env::var("AVSC_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty()) {
        eprintln!("skipped under an emulator: the fake camera is built for the host");
        return None;
    }
    let lib = fake_library();
    let o = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("LD_PRELOAD", lib)
        .env(CHILD, "1")
        .env("AVSC_FAKE_V4L2_DEVICE", DEVICE)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr).to_string());
    eprintln!("child stdout:\n{out}\nchild stderr:\n{err}");
    assert!(o.status.success(), "the child failed");
    assert!(out.contains("1 passed"), "the child ran no test: {out}");
    Some(err)
}

/// Three distinct 320x240 test pictures.
fn pictures() -> Vec<RgbImage> {
    (0..3u32)
        .map(|k| {
            let (w, h) = (320usize, 240usize);
            let mut data = Vec::with_capacity(w * h * 3);
            for y in 0..h {
                for x in 0..w {
                    let bar = (x * 8 / w) as u32;
                    data.extend_from_slice(&[
                        ((bar * 37 + k * 80) % 256) as u8,
                        (y * 255 / h) as u8,
                        ((x / 2 * 2) as u32 * 255 / w as u32 + k * 40) as u8,
                    ]);
                }
            }
            RgbImage { width: w, height: h, data }
        })
        .collect()
}

/// The pictures as JPEG files (what a UVC camera's MJPEG frames are).
fn jpegs(dir: &Path) -> Vec<PathBuf> {
    pictures()
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
                .encode(&p.data, p.width as u32, p.height as u32, image::ExtendedColorType::Rgb8)
                .unwrap();
            let path = dir.join(format!("frame{k}.jpg"));
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")
}

fn config(format: PixelFormat, stall_s: f64) -> V4lConfig {
    V4lConfig {
        path: DEVICE.into(),
        width: 640,
        height: 480,
        format,
        fps: 2.0,
        stall_timeout: Duration::from_secs_f64(stall_s),
        reopen_backoff: Duration::from_millis(100),
        reopen_backoff_max: Duration::from_millis(200),
    }
}

/// The child's test directory, made by the parent.
fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var("AVSC_TEST_DIR").expect("set by the parent"))
}

/// The fake's log lines, without their times.
fn calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap().lines().map(|l| l.split_once(' ').map_or(l, |x| x.1).to_string()).collect()
}

#[test]
fn mjpeg_frames_arrive_whole_with_their_capture_time() {
    let dir = tempfile::tempdir().unwrap();
    let files = jpegs(dir.path());
    let log = dir.path().join("camera.log");
    let env = [
        ("AVSC_FAKE_V4L2_FRAMES", list(&files)),
        ("AVSC_FAKE_V4L2_FPS", "10".into()),
        ("AVSC_FAKE_V4L2_LATE_MS", "300".into()),
        ("AVSC_FAKE_V4L2_LOG", log.display().to_string()),
        ("AVSC_TEST_DIR", dir.path().display().to_string()),
    ];
    let parent = in_child("mjpeg_frames_arrive_whole_with_their_capture_time", &env, || {
        let files: Vec<_> = (0..3).map(|k| child_dir().join(format!("frame{k}.jpg"))).collect();
        let want: Vec<RgbImage> = files.iter().map(|f| mjpeg_to_rgb(&std::fs::read(f).unwrap()).unwrap()).collect();
        let clock = Monotonic::shared();
        let mut cam = V4lSource::open(config(PixelFormat::Mjpeg, 2.0), clock.clone()).unwrap();
        let mut seen = Vec::new();
        for _ in 0..6 {
            let f = cam.next_frame().unwrap().unwrap();
            let received = clock.now();
            let k = want.iter().position(|w| *w == f.image).expect("a frame equal to one of the camera's pictures");
            // Stamped at capture (the buffer's time), not when it was dequeued 0.3 s later.
            assert!((0.29..1.3).contains(&(received - f.t)), "captured at {} s, received at {received} s", f.t);
            seen.push((f.t, k));
        }
        // 10 frames a second thinned to 2 (on the timeline's half-second grid): one every
        // 0.5 s after the first, the pictures in camera order.
        for w in seen[1..].windows(2) {
            assert!((w[1].0 - w[0].0 - 0.5).abs() < 0.011, "{seen:?}");
            assert_eq!(w[1].1, (w[0].1 + 5) % 3, "{seen:?}");
        }
        assert_eq!((cam.stalls, cam.reopens), (0, 0));
    });
    if parent.is_none() {
        return;
    }
    let calls = calls(&log);
    let head: Vec<&str> = calls.iter().take(18).map(String::as_str).collect();
    assert_eq!(
        head,
        [
            "open",
            "QUERYCAP",
            "S_FMT 640x480 MJPG",
            "G_FMT",
            "REQBUFS 4",
            "QUERYBUF 0",
            "mmap 0",
            "QUERYBUF 1",
            "mmap 1",
            "QUERYBUF 2",
            "mmap 2",
            "QUERYBUF 3",
            "mmap 3",
            "QBUF 0",
            "QBUF 1",
            "QBUF 2",
            "QBUF 3",
            "STREAMON",
        ]
    );
    // Each buffer dequeued is queued again before the next frame is waited for, and the
    // source stops the stream, unmaps, frees the buffers and closes when dropped.
    let tail: Vec<&str> = calls.iter().rev().take(7).rev().map(String::as_str).collect();
    assert_eq!(tail, ["STREAMOFF", "munmap 0", "munmap 1", "munmap 2", "munmap 3", "REQBUFS 0", "close"]);
    assert!(!calls.iter().any(|c| c.starts_with("dropped")), "frames dropped: the reader kept no buffer queued");
}

#[test]
fn yuyv_with_padded_rows_at_the_size_the_driver_chose() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h, stride) = (320usize, 240usize, 704usize);
    let frames: Vec<PathBuf> = pictures()
        .iter()
        .enumerate()
        .map(|(k, p)| {
            // Rows padded to 704 bytes with a pattern the conversion must not read.
            let packed = avsc_device::sources::convert::rgb_to_yuyv(p);
            let mut bytes = Vec::with_capacity(stride * h);
            for row in packed.chunks_exact(2 * w) {
                bytes.extend_from_slice(row);
                bytes.extend((0..stride - 2 * w).map(|i| (i * 7 + k) as u8));
            }
            let path = dir.path().join(format!("frame{k}.yuyv"));
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect();
    let env = [
        ("AVSC_FAKE_V4L2_FRAMES", list(&frames)),
        ("AVSC_FAKE_V4L2_FORMAT", "YUYV".into()),
        ("AVSC_FAKE_V4L2_SIZE", format!("{w}x{h}")),
        ("AVSC_FAKE_V4L2_STRIDE", stride.to_string()),
        ("AVSC_TEST_DIR", dir.path().display().to_string()),
    ];
    in_child("yuyv_with_padded_rows_at_the_size_the_driver_chose", &env, || {
        let want: Vec<RgbImage> = (0..3)
            .map(|k| {
                let bytes = std::fs::read(child_dir().join(format!("frame{k}.yuyv"))).unwrap();
                let mut img = RgbImage::default();
                yuyv_to_rgb_into(&bytes, w, h, stride, &mut img).unwrap();
                img
            })
            .collect();
        // Asked for 640x480; the driver gives 320x240 with 704-byte rows.
        let mut cam = V4lSource::open(config(PixelFormat::Yuyv, 2.0), Monotonic::shared()).unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let f = cam.next_frame().unwrap().unwrap();
            assert_eq!((f.image.width, f.image.height), (w, h));
            seen.push(want.iter().position(|x| *x == f.image).expect("a frame equal to one of the camera's pictures"));
        }
        assert!(seen[1..].windows(2).all(|p| p[1] == (p[0] + 5) % 3), "{seen:?}");
    });
}

#[test]
fn an_unplugged_camera_is_reopened_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let files = jpegs(dir.path());
    let log = dir.path().join("camera.log");
    let env = [
        ("AVSC_FAKE_V4L2_FRAMES", list(&files)),
        ("AVSC_FAKE_V4L2_SCRIPT", "gone 1.2 3.2".into()),
        ("AVSC_FAKE_V4L2_LOG", log.display().to_string()),
    ];
    let parent = in_child("an_unplugged_camera_is_reopened_when_it_comes_back", &env, || {
        let clock = Monotonic::shared();
        let mut cam = V4lSource::open(config(PixelFormat::Mjpeg, 1.0), clock.clone()).unwrap();
        let mut t = Vec::new();
        while t.last().is_none_or(|&l| l < 4.5) {
            t.push(cam.next_frame().unwrap().unwrap().t);
        }
        // Frames every 0.5 s up to the unplug, none while it is away, then again from 3.2 s.
        let gap = t.windows(2).map(|p| p[1] - p[0]).fold(0.0, f64::max);
        assert!(t.iter().all(|&x| !(1.2..3.2).contains(&x)), "{t:?}");
        assert!((2.0..3.5).contains(&gap), "largest gap {gap} s: {t:?}");
        assert_eq!(cam.stalls, 1, "one stop, noticed at once (POLLERR, ENODEV)");
        assert_eq!(cam.reopens, 1);
    });
    if parent.is_none() {
        return;
    }
    let calls = calls(&log);
    let count = |s: &str| calls.iter().filter(|c| c.starts_with(s)).count();
    assert!(count("poll POLLERR") >= 1 && count("DQBUF ENODEV") >= 1, "{calls:?}");
    assert!(count("open ENOENT") >= 2, "the reopen retried while the camera was away: {calls:?}");
    assert_eq!(count("open"), count("open ENOENT") + 2, "{calls:?}");
    assert_eq!(count("close"), 2, "the dead descriptor closed, and the last one: {calls:?}");
    assert_eq!(count("munmap"), 8, "every mapping released: {calls:?}");
}

/// A camera whose bus fails (every ioctl answers EIO for two seconds, STREAMOFF and
/// REQBUFS included) is closed and reopened like any other stop. (With the `v4l` crate's
/// own stream, the EIO of STREAMOFF panicked in its `drop`, REQBUFS's EIO panicked again
/// while unwinding, and the process aborted.)
#[test]
fn a_camera_failing_with_io_errors_is_reopened_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let files = jpegs(dir.path());
    let log = dir.path().join("camera.log");
    let env = [
        ("AVSC_FAKE_V4L2_FRAMES", list(&files)),
        ("AVSC_FAKE_V4L2_SCRIPT", "eio 1.2 3.2".into()),
        ("AVSC_FAKE_V4L2_LOG", log.display().to_string()),
    ];
    let parent = in_child("a_camera_failing_with_io_errors_is_reopened_not_fatal", &env, || {
        let mut cam = V4lSource::open(config(PixelFormat::Mjpeg, 1.0), Monotonic::shared()).unwrap();
        let mut t = Vec::new();
        while t.last().is_none_or(|&l| l < 4.5) {
            t.push(cam.next_frame().unwrap().unwrap().t);
        }
        assert!(t.iter().all(|&x| !(1.2..3.2).contains(&x)), "{t:?}");
        assert!(t.iter().any(|&x| x > 3.2), "{t:?}");
        assert!(cam.stalls >= 1 && cam.reopens >= 1, "{} stalls, {} reopens", cam.stalls, cam.reopens);
    });
    if parent.is_none() {
        return;
    }
    let calls = calls(&log);
    let count = |s: &str| calls.iter().filter(|c| c.starts_with(s)).count();
    assert!(count("poll POLLERR (I/O error)") >= 1, "{calls:?}");
    assert!(count("DQBUF EIO") >= 1 && count("STREAMOFF EIO") >= 1 && count("REQBUFS EIO") >= 1, "{calls:?}");
    assert_eq!(count("open"), count("close"), "every descriptor closed: {calls:?}");
    assert_eq!(count("mmap"), count("munmap"), "every mapping released: {calls:?}");
}

#[test]
fn a_camera_offering_only_h264_is_refused_by_name() {
    let env = [("AVSC_FAKE_V4L2_FORMAT", "H264".into())];
    in_child("a_camera_offering_only_h264_is_refused_by_name", &env, || {
        let e = V4lSource::open(config(PixelFormat::Mjpeg, 1.0), Monotonic::shared()).err().expect("refused");
        assert_eq!(
            format!("{e:#}"),
            format!("camera {DEVICE} (avsc fake camera): offers H264 instead of Mjpeg; only MJPEG and YUYV are read")
        );
    });
}

/// `avsc-device run` with the fake camera and a microphone fed in real time (ALSA's `file`
/// plugin reading a FIFO this test writes 0.1 s at a time): the camera stalls from 2 s to
/// 5 s; the window has both modalities and the frames from before and after the stall.
#[test]
fn run_classifies_live_audio_with_the_cameras_frames_through_a_stall() {
    if std::env::var("AVSC_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty()) {
        eprintln!("skipped under an emulator: the fake camera is built for the host");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = jpegs(dir.path());
    let log = dir.path().join("camera.log");
    let fifo = dir.path().join("mic.fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let rate = 48_000u32;
    let conf = alsa_config(dir.path(), &fifo, rate);
    let bundle = write_bundle(&dir.path().join("bundle"), BundleSpec::default());
    let feeder = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let s16 = to_s16(&test_signal(rate, 13.0));
            let bytes: Vec<u8> = s16.iter().flat_map(|s| s.to_le_bytes()).collect();
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            let start = std::time::Instant::now();
            for (k, chunk) in bytes.chunks(rate as usize * 4 / 10).enumerate() {
                if f.write_all(chunk).is_err() {
                    return; // the device stopped reading
                }
                std::thread::sleep(Duration::from_secs_f64(0.1 * (k + 1) as f64).saturating_sub(start.elapsed()));
            }
        })
    };
    let o = bin()
        .env("ALSA_CONFIG_PATH", &conf)
        .env("LD_PRELOAD", fake_library())
        .env("AVSC_FAKE_V4L2_DEVICE", DEVICE)
        .env("AVSC_FAKE_V4L2_FRAMES", list(&files))
        .env("AVSC_FAKE_V4L2_LATE_MS", "150")
        .env("AVSC_FAKE_V4L2_SCRIPT", "stall 2 5")
        .env("AVSC_FAKE_V4L2_LOG", &log)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .args(["--mic", "ci_mic", "--camera", DEVICE, "--camera-timeout", "1", "--windows", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("stderr: {err}");
    // A reader for a moment, so that a feeder still waiting to open the FIFO goes on (and
    // stops at its next write).
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _r = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo);
    }
    let _ = feeder.join();
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1);
    let w = &lines[0];
    assert_eq!(w["modalities"], serde_json::json!(["audio", "visual"]), "{w}");
    assert_eq!(w["head"], "fusion");
    // 2 frames a second over 10 s, less the 3-s stall and what its detection costs.
    let frames = w["frames"].as_u64().unwrap();
    assert!((11..=16).contains(&frames), "{frames} frames: {w}");
    assert!(err.contains("camera stopped delivering") && err.contains("camera reopened"), "{err}");
    let calls = calls(&log);
    assert!(calls.iter().filter(|c| c.as_str() == "STREAMON").count() >= 2, "{calls:?}");
}

/// `avsc-device run` whose microphone cannot be opened at start (a USB microphone not
/// enumerated yet at boot) while a camera works: the run goes on from the camera alone,
/// trying the microphone again meanwhile, instead of exiting.
#[test]
fn run_without_a_microphone_at_start_classifies_the_camera_alone() {
    if std::env::var("AVSC_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty()) {
        eprintln!("skipped under an emulator: the fake camera is built for the host");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = jpegs(dir.path());
    let conf = dir.path().join("asound.conf");
    std::fs::write(&conf, "# no PCM defined: the microphone is not there\n").unwrap();
    let bundle = write_bundle(&dir.path().join("bundle"), BundleSpec::default());
    let o = bin()
        .env("ALSA_CONFIG_PATH", &conf)
        .env("LD_PRELOAD", fake_library())
        .env("AVSC_FAKE_V4L2_DEVICE", DEVICE)
        .env("AVSC_FAKE_V4L2_FRAMES", list(&files))
        .args(["run", "--bundle"])
        .arg(&bundle)
        .args(["--mic", "usb_mic_not_yet", "--camera", DEVICE, "--windows", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1, "{err}");
    let w = &lines[0];
    assert_eq!(w["modalities"], serde_json::json!(["visual"]), "{w}");
    assert_eq!(w["head"], "fusion_visual");
    assert!(w["frames"].as_u64().unwrap() >= 18, "{w}");
    assert!(w["note"].as_str().unwrap().starts_with("microphone: 10.0 s of this window's audio missing"), "{w}");
    assert!(err.contains("waiting for the microphone") && err.contains("retrying in"), "{err}");
}
