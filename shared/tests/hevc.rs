//! HEVC video (iPhones record it by default), decoded by rusty_h265. Fixtures re-encoded
//! from a tau-mini H.264 clip by Debian's ffmpeg/x265 (installed by .ci/run): losslessly,
//! at 8 and at 10 bits, the frames must be the H.264 frames exactly; lossy, with B-frames,
//! as ffmpeg's own decoder shows them.
#![cfg(feature = "decode")]

mod common;

use avsc_shared::decode::{decode_video_frames, probe};
use common::ffmpeg;
use std::path::PathBuf;
use std::process::Command;

fn source() -> PathBuf {
    avsc_shared::reference_dir().join("media/tau-mini/video/park-lisbon-1141-40029.mp4")
}

const X265: [&str; 4] = ["-c:v", "libx265", "-tag:v", "hvc1"];

#[test]
fn lossless_hevc_at_8_and_10_bits_gives_the_h264_frames_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let h264 = decode_video_frames(&source(), 2.0, Some(2.0)).unwrap();
    assert_eq!(h264.len(), 4);
    for (pix_fmt, name) in [("yuv420p", "lossless8.mov"), ("yuv420p10le", "lossless10.mov")] {
        let params = "lossless=1:log-level=error";
        let args =
            [&X265[..], &["-x265-params", params, "-preset", "ultrafast", "-pix_fmt", pix_fmt, "-t", "2", "-an"]];
        let hevc = ffmpeg(dir.path(), &source(), &args.concat(), name);
        let info = probe(&hevc).unwrap();
        assert_eq!((info.width, info.height), (h264[0].1.width, h264[0].1.height));
        let frames = decode_video_frames(&hevc, 2.0, Some(2.0)).unwrap();
        assert_eq!(frames.len(), h264.len(), "{name}");
        for ((t, img), (t0, img0)) in frames.iter().zip(&h264) {
            assert!((t - t0).abs() < 1e-6, "{name}: frame at {t} s, H.264 at {t0} s");
            assert!(img == img0, "{name}: the frame at {t} s differs from the H.264 one");
        }
    }
}

/// A phone-like lossy encode (B-frames, 4-frame reordering): each chosen frame is ffmpeg's
/// decode of the same picture, to the colour conversion's rounding.
#[test]
fn lossy_hevc_with_b_frames_matches_ffmpegs_decode() {
    let dir = tempfile::tempdir().unwrap();
    let params = "bframes=4:keyint=30:log-level=error";
    let args = [&X265[..], &["-x265-params", params, "-preset", "ultrafast", "-t", "3", "-c:a", "copy"]];
    let hevc = ffmpeg(dir.path(), &source(), &args.concat(), "phone.mov");
    let frames = decode_video_frames(&hevc, 2.0, None).unwrap();
    assert_eq!(frames.len(), 6);
    for (t, img) in &frames {
        let raw = dir.path().join("frame.rgb");
        let o = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-ss", &format!("{t}"), "-i"])
            .arg(&hevc)
            .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24"])
            .arg(&raw)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let want = std::fs::read(&raw).unwrap();
        assert_eq!(want.len(), img.data.len());
        let mad = want.iter().zip(&img.data).map(|(a, b)| (*a as i32 - *b as i32).abs() as f64).sum::<f64>()
            / want.len() as f64;
        // Chroma taken from the co-sited sample (swscale interpolates): a level or two.
        assert!(mad < 3.0, "frame at {t} s: mean difference {mad:.2} levels from ffmpeg's decode");
    }
}

/// The decoder holds up to 16 pictures of 16-bit samples: pictures larger than 4K (what
/// phones record at most) are refused from the SPS, before a picture is allocated.
#[test]
fn a_picture_larger_than_4k_is_refused_by_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=size=4160x2304:rate=1"])
        .args(["-frames:v", "1"])
        .args(X265)
        .args(["-x265-params", "log-level=error", "-preset", "ultrafast"])
        .arg(dir.path().join("big.mov"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = format!("{:#}", decode_video_frames(&dir.path().join("big.mov"), 2.0, None).unwrap_err());
    assert!(e.contains("HEVC pictures of 4160x2304 are larger than this build decodes"), "{e}");
}
