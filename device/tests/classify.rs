//! `avsc-device classify` on recordings: the tau-mini clips (MP4: H.264 + AAC; WAV), a WAV
//! with a folder of frames, and the ways a run must refuse: corrupt input, a bad bundle.

mod common;

use common::*;
use std::path::PathBuf;

fn tau_mini() -> PathBuf {
    avsc_shared::reference_dir().join("media/tau-mini")
}

fn first(dir: &str, ext: &str) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(tau_mini().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v.remove(0)
}

fn check_line(v: &serde_json::Value) {
    eprintln!("line: {v}");
    let probs = v["probabilities"].as_object().unwrap();
    let labels: Vec<&str> = probs.keys().map(String::as_str).collect();
    assert_eq!(labels, avsc_shared::LABELS);
    let sum: f64 = probs.values().map(|p| p.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "sum {sum}");
    let top = v["top"].as_str().unwrap();
    let max = probs.values().map(|p| p.as_f64().unwrap()).fold(0.0, f64::max);
    assert_eq!(probs[top].as_f64().unwrap(), max);
    for k in ["resample", "features", "audio_nets", "fusion", "visual_nets", "end_of_window"] {
        assert!(v["latency_ms"][k].as_f64().unwrap() >= 0.0, "{k}");
    }
}

#[test]
fn mp4_clip_gives_one_audio_visual_line_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&dir.path().join("b"), BundleSpec::default());
    let clip = first("video", "mp4");
    let lines = json_lines(&run(bin().args(["classify", "--bundle"]).arg(&bundle).arg(&clip)));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v = &lines[0];
    check_line(v);
    assert_eq!(v["modalities"], serde_json::json!(["audio", "visual"]));
    assert_eq!(v["head"], "fusion");
    assert_eq!(v["start_s"], 0.0);
    let frames = v["frames"].as_u64().unwrap();
    assert!((19..=20).contains(&frames), "{frames} frames in a 10-s window at 2 fps");
    assert_eq!(v["source"], clip.display().to_string());

    // A 5-s hop on the same clip still gives one whole window (10 s).
    let lines = json_lines(&run(bin().args(["classify", "--hop", "5", "--bundle"]).arg(&bundle).arg(&clip)));
    assert_eq!(lines.len(), 1);
}

#[test]
fn wav_with_image_folder_and_wav_alone() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&dir.path().join("b"), BundleSpec::default());
    let wav = first("audio", "wav");
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for k in 0..20u8 {
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, k * 12]));
        img.save(frames.join(format!("{k:03}.png"))).unwrap();
    }
    let lines = json_lines(&run(bin().args(["classify", "--bundle"]).arg(&bundle).arg(&wav).arg(&frames).arg(&wav)));
    assert_eq!(lines.len(), 2);
    check_line(&lines[0]);
    assert_eq!(lines[0]["modalities"], serde_json::json!(["audio", "visual"]));
    assert_eq!(lines[0]["frames"], 20);
    assert_eq!(lines[1]["modalities"], serde_json::json!(["audio"]));
    assert_eq!(lines[1]["head"], "fusion_audio");
    assert!(lines[1]["note"].as_str().unwrap().contains("no video frames"));

    // --visual-fps 1: every other frame of the 2-fps folder is embedded.
    let thinned =
        json_lines(&run(bin().args(["classify", "--visual-fps", "1", "--bundle"]).arg(&bundle).arg(&wav).arg(&frames)));
    assert_eq!(thinned[0]["frames"], 10);
    assert_eq!(thinned[0]["modalities"], serde_json::json!(["audio", "visual"]));
    let o = bin().args(["classify", "--visual-fps", "0", "--bundle"]).arg(&bundle).arg(&wav).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--visual-fps"));

    // Without an audio-only head: the backbones' mean, and it says so.
    let b2 = write_bundle(&dir.path().join("b2"), BundleSpec { audio_head: false, ..BundleSpec::default() });
    let lines = json_lines(&run(bin().args(["classify", "--bundle"]).arg(&b2).arg(&wav)));
    assert_eq!(lines[0]["head"], "backbone_mean");
    check_line(&lines[0]);
}

/// A failed run: non-zero exit and exactly one line on stderr, starting "error:".
fn one_line_error(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "should fail");
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(!err.lines().any(|l| l.starts_with("Caused by") || l.trim().is_empty()), "{err}");
    assert!(o.stdout.is_empty());
    lines[0].to_string()
}

#[test]
fn bad_inputs_and_bundles_fail_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&dir.path().join("b"), BundleSpec::default());
    let classify = |bundle: &std::path::Path, input: &std::path::Path| {
        run(bin().args(["classify", "--bundle"]).arg(bundle).arg(input))
    };
    let corrupt = dir.path().join("corrupt.mp4");
    let mut bytes = std::fs::read(first("video", "mp4")).unwrap();
    bytes.truncate(bytes.len() / 3);
    std::fs::write(&corrupt, &bytes).unwrap();
    let e = one_line_error(&classify(&bundle, &corrupt));
    assert!(e.contains("corrupt.mp4"), "{e}");

    let garbage = dir.path().join("noise.wav");
    std::fs::write(&garbage, b"RIFF....WAVEnot really").unwrap();
    assert!(one_line_error(&classify(&bundle, &garbage)).contains("noise.wav"));

    assert!(one_line_error(&classify(&bundle, &dir.path().join("absent.wav"))).contains("absent.wav"));
    assert!(one_line_error(&classify(&bundle, &dir.path().join("notes.txt"))).contains("notes.txt"));

    // Under a second: too short to fill a window by repetition.
    let short = dir.path().join("short.wav");
    write_wav_s16(&short, 48_000, &to_s16(&test_signal(48_000, 0.8)));
    let e = one_line_error(&classify(&bundle, &short));
    assert!(e.contains("short.wav") && e.contains("0.80 s long") && e.contains("at least 1.0 s"), "{e}");
    // A 1.2-s phone clip: one window, its audio repeated, marked as padded.
    let phone = dir.path().join("phone.wav");
    write_wav_s16(&phone, 48_000, &to_s16(&test_signal(48_000, 1.2)));
    let lines = json_lines(&classify(&bundle, &phone));
    assert_eq!(lines.len(), 1);
    check_line(&lines[0]);
    assert!((lines[0]["padded_s"].as_f64().unwrap() - 8.8).abs() < 1e-6, "{}", lines[0]);

    let wav = first("audio", "wav");
    // A tampered network: its sha256 no longer matches.
    let tampered = write_bundle(&dir.path().join("t"), BundleSpec::default());
    let mut onnx = std::fs::read(tampered.join("aud_mel.onnx")).unwrap();
    let last = onnx.len() - 1;
    onnx[last] ^= 1;
    std::fs::write(tampered.join("aud_mel.onnx"), onnx).unwrap();
    let e = one_line_error(&classify(&tampered, &wav));
    assert!(e.contains("aud_mel.onnx") && e.contains("sha256"), "{e}");

    // No bundle at all; a manifest of another schema.
    assert!(one_line_error(&classify(&dir.path().join("nothing"), &wav)).contains("manifest.json"));
    let other = write_bundle(&dir.path().join("o"), BundleSpec::default());
    let m = std::fs::read_to_string(other.join("manifest.json"))
        .unwrap()
        .replace("\"schema_version\": 1", "\"schema_version\": 7");
    std::fs::write(other.join("manifest.json"), m).unwrap();
    assert!(one_line_error(&classify(&other, &wav)).contains("schema_version 7"));

    // A bad option value.
    let o = run(bin().args(["classify", "--hop", "0", "--bundle"]).arg(&bundle).arg(&wav));
    assert!(one_line_error(&o).contains("--hop"));
}

/// The field recordings users have, made from a tau-mini WAV by Debian's ffmpeg (installed
/// by .ci/run; the device never calls it): each classifies to one audio-only line; FLAC,
/// being lossless, gives the WAV's own probabilities; 5.1 is mixed down with a note.
#[test]
fn flac_ogg_mp3_8bit_and_surround_recordings_classify() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&dir.path().join("b"), BundleSpec::default());
    let wav = first("audio", "wav");
    let files = [
        ffmpeg(dir.path(), &wav, &["-c:a", "flac"], "rec.flac"),
        ffmpeg(dir.path(), &wav, &["-c:a", "libvorbis"], "rec.ogg"),
        ffmpeg(dir.path(), &wav, &["-c:a", "libmp3lame", "-b:a", "128k"], "rec.mp3"),
        ffmpeg(dir.path(), &wav, &["-c:a", "pcm_u8", "-ar", "22050"], "rec-8bit.wav"),
        ffmpeg(
            dir.path(),
            &wav,
            &["-c:a", "flac", "-af", "pan=5.1|FL=c0|FR=c1|FC=0.5*c0+0.5*c1|LFE=0*c0|BL=c0|BR=c1"],
            "rec-51.flac",
        ),
    ];
    let mut cmd = bin();
    cmd.args(["classify", "--bundle"]).arg(&bundle).arg(&wav).args(&files);
    let o = run(&mut cmd);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1 + files.len(), "{lines:?}");
    for (v, f) in lines[1..].iter().zip(&files) {
        check_line(v);
        assert_eq!(v["source"], f.display().to_string());
        assert_eq!(v["modalities"], serde_json::json!(["audio"]));
        assert_eq!(v["head"], "fusion_audio");
    }
    let probs = |v: &serde_json::Value| -> Vec<f64> {
        v["probabilities"].as_object().unwrap().values().map(|p| p.as_f64().unwrap()).collect()
    };
    let (w, f) = (probs(&lines[0]), probs(&lines[1]));
    assert!(w.iter().zip(&f).all(|(a, b)| (a - b).abs() < 1e-6), "FLAC {f:?} vs WAV {w:?}");
    let note = |v: &serde_json::Value| v["note"].as_str().unwrap_or_default().to_string();
    assert!(note(&lines[5]).starts_with("audio: 6 channels; mixed down to stereo"), "{}", lines[5]);
    assert!(!note(&lines[1]).contains("mixed down"), "{}", lines[1]);
}

/// `ffmpeg -i INPUT ARGS OUT` in `dir` (test fixtures only).
fn ffmpeg(dir: &std::path::Path, input: &std::path::Path, args: &[&str], name: &str) -> PathBuf {
    let out = dir.join(name);
    let o = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(input)
        .args(args)
        .arg(&out)
        .output()
        .expect("ffmpeg makes these fixtures: apt-get install ffmpeg (.ci/run does)");
    assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    out
}

/// Outdoor cameras record no sound, and some videos carry audio this build does not decode
/// (AC-3): both are classified from their frames by the visual-only head, each window
/// saying why; MP3 in MP4 (some phones), ALAC in MP4 and uncompressed PCM in MOV (cameras,
/// editors) are decoded. In a batch, a broken file is one error line, the files after it
/// are still classified, and the exit is non-zero.
#[test]
fn videos_without_usable_audio_are_visual_only_and_a_bad_file_does_not_stop_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&dir.path().join("b"), BundleSpec::default());
    let clip = first("video", "mp4");
    let silent = ffmpeg(dir.path(), &clip, &["-an", "-c:v", "copy"], "camera.mp4");
    // AC-3 in MP4: audio this build does not decode.
    let ac3 = ffmpeg(dir.path(), &clip, &["-c:v", "copy", "-c:a", "ac3"], "ac3.mp4");
    let mp3 = ffmpeg(dir.path(), &clip, &["-c:v", "copy", "-c:a", "libmp3lame"], "mp3-in-mp4.mp4");
    // The same 16-bit samples, losslessly: Apple Lossless in MP4, 24-bit PCM in MOV.
    let alac = ffmpeg(dir.path(), &clip, &["-c:v", "copy", "-c:a", "alac", "-sample_fmt", "s16p"], "alac.mp4");
    let pcm = ffmpeg(dir.path(), &alac, &["-c:v", "copy", "-c:a", "pcm_s24le"], "camera-pcm.mov");
    let corrupt = dir.path().join("corrupt.mp4");
    std::fs::write(&corrupt, &std::fs::read(&clip).unwrap()[..2000]).unwrap();
    let wav = first("audio", "wav");
    let o = bin()
        .args(["classify", "--bundle"])
        .arg(&bundle)
        .args([&silent, &ac3, &corrupt, &wav, &mp3, &alac, &pcm])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a failed file makes the exit non-zero: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("corrupt.mp4"), "{}", errors[0]);
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    for (v, (file, why)) in lines.iter().zip([(&silent, "no audio track"), (&ac3, "audio not decoded")]) {
        check_line(v);
        assert_eq!(v["source"], file.display().to_string());
        assert_eq!(v["modalities"], serde_json::json!(["visual"]));
        assert_eq!(v["head"], "fusion_visual");
        assert!(v["frames"].as_u64().unwrap() >= 19, "{v}");
        assert!(v["note"].as_str().unwrap().contains(why), "{v}");
    }
    assert_eq!(lines[2]["source"], wav.display().to_string(), "the file after the broken one");
    assert_eq!(lines[2]["modalities"], serde_json::json!(["audio"]));
    // MP3 and ALAC in MP4, PCM in MOV are decoded: both modalities.
    for (v, file) in lines[3..].iter().zip([&mp3, &alac, &pcm]) {
        check_line(v);
        assert_eq!(v["source"], file.display().to_string());
        assert_eq!(v["modalities"], serde_json::json!(["audio", "visual"]), "{v}");
        assert!(v.get("note").is_none_or(|n| n.is_null()), "{v}");
    }
    assert_eq!(lines[4]["probabilities"], lines[5]["probabilities"], "ALAC and PCM hold the same samples");
}

/// `avsc-device classify FILES | head -1`: once the reader has gone, the run stops quietly
/// with the status of a process killed by SIGPIPE (141), not an error line per file, not a
/// panic.
#[test]
fn a_closed_output_pipe_stops_the_run_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&dir.path().join("b"), BundleSpec::default());
    let wav = first("audio", "wav");
    let mut child = bin()
        .args(["classify", "--bundle"])
        .arg(&bundle)
        .args([&wav, &wav, &wav])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end before the first window is written.
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(141), "{err}");
    assert!(!err.contains("error:") && !err.contains("panicked"), "{err}");
}

/// `avsc-device classify FILES 2>&1 | head -1`: the logs lose their reader too; still the
/// quiet 141, not a panic (101) from a log line or an error line written to the closed pipe.
#[test]
fn output_and_logs_into_one_closed_pipe_stop_the_run_quietly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&dir.path().join("b"), BundleSpec::default());
    let wav = first("audio", "wav");
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, which the OwnedFds then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let status = bin()
        .args(["classify", "--bundle"])
        .arg(&bundle)
        .args([&wav, &wav, &wav])
        .stdout(std::process::Stdio::from(write.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(write))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(141), "{status:?}");
}

/// iPhones record HEVC by default ("High Efficiency"): decoded, both modalities. A codec
/// this build does not decode (VP9 here; AV1, ProRes ...) leaves the video classified from
/// its audio, every window naming the codec.
#[test]
fn hevc_video_is_decoded_and_a_codec_that_is_not_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&dir.path().join("b"), BundleSpec::default());
    let clip = first("video", "mp4");
    let small = ["-t", "3", "-vf", "scale=320:240"];
    let hevc_args = ["-c:v", "libx265", "-x265-params", "log-level=error", "-tag:v", "hvc1"];
    let hevc = ffmpeg(dir.path(), &clip, &[&small[..], &hevc_args].concat(), "iphone-hevc.mov");
    let vp9_args = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"];
    let vp9 = ffmpeg(dir.path(), &clip, &[&small[..], &vp9_args].concat(), "web-vp9.mp4");
    let lines = json_lines(&run(bin().args(["classify", "--bundle"]).arg(&bundle).args([&hevc, &vp9])));
    assert_eq!(lines.len(), 2, "{lines:?}");
    for v in &lines {
        check_line(v);
    }
    assert_eq!(lines[0]["modalities"], serde_json::json!(["audio", "visual"]), "{}", lines[0]);
    assert_eq!(lines[0]["head"], "fusion");
    assert_eq!(lines[1]["modalities"], serde_json::json!(["audio"]), "{}", lines[1]);
    assert_eq!(lines[1]["head"], "fusion_audio");
    let note = lines[1]["note"].as_str().unwrap_or_default();
    assert!(note.starts_with("video not decoded, audio only (VP9 video ('vp09') is not decoded"), "{}", lines[1]);
}
