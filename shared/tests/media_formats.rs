//! The media files users have, through the one decoder host and device share: FLAC, OGG
//! Vorbis, MP3, 8-bit WAV and 5.1 audio made from one known stereo signal, QuickTime MOV and
//! portrait phone video made from a tau-mini clip, all by Debian's ffmpeg (which `.ci/run`
//! installs; the product never calls it). Lossless formats must return the samples exactly, lossy ones the signal in
//! time (encoder delay trimmed), and broken files one error line naming the file.
#![cfg(feature = "decode")]

mod common;

use avsc_shared::decode::decode_audio;
use avsc_shared::wav::{self, Audio, Stereo};
use common::ffmpeg;
use std::path::PathBuf;
use std::process::Command;

const RATE: u32 = 44_100;

/// 3 s at 44.1 kHz: 440 Hz on the left, 1 kHz on the right, as 16-bit PCM values.
fn source() -> Audio {
    let n = 3 * RATE as usize;
    let tone = |f: f64, a: f64| -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = a * (2.0 * std::f64::consts::PI * f * i as f64 / RATE as f64).sin();
                ((x * 32767.0).round() / 32768.0) as f32
            })
            .collect()
    };
    Audio { sample_rate: RATE, channels: vec![tone(440.0, 0.5), tone(1000.0, 0.3)] }
}

/// (directory, the 16-bit stereo source WAV).
fn fixture_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.wav");
    std::fs::write(&src, wav::encode(&source(), false)).unwrap();
    (dir, src)
}

/// Signal-to-error ratio (dB) of `got` against `want` over their common length.
fn snr_db(want: &[f32], got: &[f32]) -> f64 {
    let n = want.len().min(got.len());
    let (mut s, mut e) = (0.0f64, 0.0f64);
    for i in 0..n {
        s += (want[i] as f64).powi(2);
        e += (want[i] as f64 - got[i] as f64).powi(2);
    }
    10.0 * (s / e.max(1e-30)).log10()
}

#[test]
fn flac_is_lossless() {
    let (dir, src) = fixture_dir();
    let flac = ffmpeg(dir.path(), &src, &["-c:a", "flac"], "a.flac");
    let a = decode_audio(&flac).unwrap();
    assert_eq!(a.sample_rate, RATE);
    assert_eq!(a.channels, source().channels, "FLAC returns the 16-bit samples exactly");
}

#[test]
fn unsigned_8_bit_wav_keeps_the_signal_to_its_resolution() {
    let (dir, src) = fixture_dir();
    let u8wav = ffmpeg(dir.path(), &src, &["-c:a", "pcm_u8"], "a8.wav");
    let a = decode_audio(&u8wav).unwrap();
    let want = source();
    assert_eq!(a.channels.len(), 2);
    assert_eq!(a.n_samples(), want.n_samples());
    for (g, w) in a.channels.iter().zip(&want.channels) {
        let worst = g.iter().zip(w).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1.0 / 128.0 + 1e-6, "8-bit error {worst}");
    }
}

#[test]
fn lossy_formats_keep_the_signal_aligned_in_time() {
    let (dir, src) = fixture_dir();
    let want = source();
    for (args, name, min_snr) in [
        (&["-c:a", "libvorbis", "-q:a", "6"][..], "a.ogg", 25.0),
        (&["-c:a", "libmp3lame", "-b:a", "192k"][..], "a.mp3", 20.0),
        // MP3 inside MP4 (object type 0x6B), as some phones record: the MP4 demuxer, then
        // symphonia's MP3 decoder; the edit list trims the encoder delay.
        (&["-c:a", "libmp3lame", "-b:a", "192k"][..], "mp3-in.mp4", 20.0),
    ] {
        let path = ffmpeg(dir.path(), &src, args, name);
        let a = decode_audio(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!((a.sample_rate, a.channels.len()), (RATE, 2), "{name}");
        // Gapless: the encoder's delay and padding are trimmed away.
        let dn = a.n_samples() as i64 - want.n_samples() as i64;
        assert!(dn.abs() <= 1152, "{name}: {} samples for {}", a.n_samples(), want.n_samples());
        for (c, (g, w)) in a.channels.iter().zip(&want.channels).enumerate() {
            // A shift of even a few samples at 1 kHz would sink the ratio well below 10 dB.
            let snr = snr_db(w, g);
            eprintln!("{name}: {} samples ({dn:+}), channel {c}: {snr:.1} dB", a.n_samples());
            assert!(snr >= min_snr, "{name} channel {c}: {snr:.1} dB");
        }
    }
}

#[test]
fn five_one_flac_mixes_down_to_stereo() {
    let (dir, _) = fixture_dir();
    // 5.1 with the 1 kHz tone in the centre only: both stereo sides carry it equally.
    let n = RATE as usize;
    let centre: Vec<f32> =
        (0..n).map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / RATE as f32).sin()).collect();
    let channels = (0..6).map(|c| if c == 2 { centre.clone() } else { vec![0.0; n] }).collect();
    let src = dir.path().join("six.wav");
    std::fs::write(&src, wav::encode(&Audio { sample_rate: RATE, channels }, false)).unwrap();
    let flac = ffmpeg(dir.path(), &src, &["-c:a", "flac", "-channel_layout", "5.1"], "six.flac");
    let a = decode_audio(&flac).unwrap();
    assert_eq!(a.channels.len(), 6);
    let (s, how) = a.into_stereo().unwrap();
    assert_eq!(how, Stereo::Downmixed(6));
    assert_eq!(s.channels[0], s.channels[1]);
    let peak = s.channels[0].iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let g = std::f32::consts::FRAC_1_SQRT_2;
    assert!((peak - 0.5 * g / (1.0 + 2.0 * g)).abs() < 1e-3, "centre at {peak}");
}

#[test]
fn broken_audio_files_are_one_line_naming_the_file() {
    let (dir, src) = fixture_dir();
    let flac = ffmpeg(dir.path(), &src, &["-c:a", "flac"], "a.flac");
    let bytes = std::fs::read(&flac).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text.ogg", b"this is not audio at all, only words".to_vec()),
        ("head.flac", bytes[..64].to_vec()),
        ("empty.mp3", Vec::new()),
    ];
    for (name, data) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        let e = format!("{:#}", decode_audio(&path).unwrap_err());
        assert!(e.starts_with(&path.display().to_string()) && !e.contains('\n'), "{name}: {e}");
    }
}

/// QuickTime MOV (iPhone, HandBrake) keeps the AAC `esds` inside a `wave` box of a version-1
/// sound description: remuxed from a tau-mini MP4 without re-encoding, the MOV must give
/// the MP4's audio and frames exactly.
#[test]
fn quicktime_mov_gives_the_mp4s_audio_and_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mp4 = avsc_shared::reference_dir().join("media/tau-mini/video/park-lisbon-1141-40029.mp4");
    let mov = ffmpeg(dir.path(), &mp4, &["-c", "copy", "-f", "mov"], "phone.mov");
    let bytes = std::fs::read(&mov).unwrap();
    assert!(bytes.windows(4).any(|w| w == b"wave"), "ffmpeg's MOV muxer should write a 'wave' box");
    let (a, b) = (decode_audio(&mp4).unwrap(), decode_audio(&mov).unwrap());
    assert_eq!((a.sample_rate, a.channels.len(), a.n_samples()), (b.sample_rate, b.channels.len(), b.n_samples()));
    assert!(a.channels == b.channels, "the same AAC packets decode to the same samples");
    let (fa, fb) = (
        avsc_shared::decode::decode_video_frames(&mp4, 2.0, Some(2.0)).unwrap(),
        avsc_shared::decode::decode_video_frames(&mov, 2.0, Some(2.0)).unwrap(),
    );
    assert_eq!(fa.len(), fb.len());
    assert!(fa.iter().zip(&fb).all(|(x, y)| x.0 == y.0 && x.1 == y.1), "the same frames at the same times");
}

/// Phones store portrait video as landscape pictures plus a `tkhd` rotation. The frames must
/// come out upright: as ffmpeg's own decoder shows them (it applies the rotation too), for
/// a quarter turn either way.
#[test]
fn portrait_phone_video_frames_come_out_upright() {
    let dir = tempfile::tempdir().unwrap();
    let mp4 = avsc_shared::reference_dir().join("media/tau-mini/video/park-lisbon-1141-40029.mp4");
    for rotate in ["90", "270"] {
        let name = format!("portrait{rotate}.mp4");
        let meta = format!("rotate={rotate}");
        let phone = ffmpeg(dir.path(), &mp4, &["-c", "copy", "-metadata:s:v:0", &meta], &name);
        let info = avsc_shared::decode::probe(&phone).unwrap();
        let ours = avsc_shared::decode::decode_video_frames(&phone, 2.0, Some(0.5)).unwrap();
        let (t, img) = &ours[0];
        assert_eq!((img.width, img.height), (info.width, info.height), "probe reports the displayed size");
        assert!(img.height > img.width, "portrait: {}x{}", img.width, img.height);
        // ffmpeg's decode of the same picture (its nearest frame at t), auto-rotated.
        let raw = dir.path().join(format!("{rotate}.rgb"));
        let ss = format!("{t}");
        let o = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-ss", &ss, "-i"])
            .arg(&phone)
            .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24"])
            .arg(&raw)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let reference = std::fs::read(&raw).unwrap();
        assert_eq!(reference.len(), img.data.len(), "ffmpeg's frame has the same upright size");
        let mad = reference.iter().zip(&img.data).map(|(a, b)| (*a as i32 - *b as i32).abs() as f64).sum::<f64>()
            / reference.len() as f64;
        // Decoders and colour conversion differ by a few levels; a wrong turn by far more.
        assert!(mad < 6.0, "rotate {rotate}: mean difference {mad:.2} levels from ffmpeg's upright frame");
        let wrong = img.rotated(180);
        let mad_wrong =
            reference.iter().zip(&wrong.data).map(|(a, b)| (*a as i32 - *b as i32).abs() as f64).sum::<f64>()
                / reference.len() as f64;
        assert!(mad_wrong > 4.0 * mad.max(1.0), "the check tells the turns apart: {mad_wrong:.2} vs {mad:.2}");
        eprintln!("rotate {rotate}: {}x{}, mean difference from ffmpeg {mad:.2} levels", img.width, img.height);
    }
}

/// Cameras and editors (QuickTime) store uncompressed audio in MOV, in every sample format
/// QuickTime names: each must give the source's samples exactly (8-bit ones to their
/// resolution), read chunk by chunk: the track lists chunks, not its 132,300 frames.
#[test]
fn pcm_in_mov_in_every_quicktime_format() {
    let (dir, src) = fixture_dir();
    // Rates above 65,535 Hz do not fit sound descriptions 0 and 1: ffmpeg writes version 2
    // `lpcm` (the same samples, declared at 96 kHz).
    let src96 = dir.path().join("src96.wav");
    std::fs::write(&src96, wav::encode(&Audio { sample_rate: 96_000, ..source() }, false)).unwrap();
    let cases = [
        ("pcm_s16le", &src, "sowt", true),
        ("pcm_s16be", &src, "twos", true),
        ("pcm_s24le", &src, "in24", true),
        ("pcm_s24be", &src, "in24", true),
        ("pcm_s32le", &src, "in32", true),
        ("pcm_f32le", &src, "fl32", true),
        ("pcm_f64be", &src, "fl64", true),
        ("pcm_u8", &src, "raw ", false),
        ("pcm_s8", &src, "sowt", false),
        ("pcm_s24le", &src96, "lpcm", true),
    ];
    for (i, (codec, input, tag, exact)) in cases.into_iter().enumerate() {
        let mov = ffmpeg(dir.path(), input, &["-c:a", codec, "-f", "mov"], &format!("{i}-{codec}.mov"));
        let bytes = std::fs::read(&mov).unwrap();
        assert!(bytes.windows(4).any(|w| w == tag.as_bytes()), "{codec}: ffmpeg should write '{tag}'");
        let a = decode_audio(&mov).unwrap_or_else(|e| panic!("{codec}: {e:#}"));
        let want = source();
        let rate = if tag == "lpcm" { 96_000 } else { RATE };
        assert_eq!((a.sample_rate, a.channels.len(), a.n_samples()), (rate, 2, want.n_samples()), "{codec}");
        if exact {
            assert!(a.channels == want.channels, "{codec}: the samples exactly");
        } else {
            for (g, w) in a.channels.iter().zip(&want.channels) {
                let worst = g.iter().zip(w).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
                assert!(worst <= 1.0 / 128.0, "{codec}: off by {worst}");
            }
        }
        let movie = avsc_shared::decode::mp4::parse(&bytes).unwrap();
        let track = movie.track(avsc_shared::decode::mp4::Kind::Audio).unwrap();
        assert!(track.samples.len() * 100 < want.n_samples(), "{codec}: {} samples listed", track.samples.len());
    }
}

/// Rewrite the AudioSpecificConfig of an MP4 made by ffmpeg (`moov` after `mdat`, 4-byte
/// descriptor lengths) to `asc`, fixing the sizes of every box and descriptor around it.
fn with_asc(mp4: &[u8], asc: &[u8]) -> Vec<u8> {
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
    };
    let esds = find(mp4, b"esds", 0).expect("an esds box") - 4;
    let moov = find(mp4, b"moov", 0).unwrap() - 4;
    assert!(find(mp4, b"mdat", 0).unwrap() < moov, "samples before moov: their offsets stay");
    let dsi = find(mp4, &[0x05, 0x80, 0x80, 0x80], esds).unwrap();
    let old_len = mp4[dsi + 4] as usize;
    let delta = asc.len() as i64 - old_len as i64;
    let mut out = mp4.to_vec();
    let add = |b: &mut [u8], at: usize, width: usize| {
        let mut v = 0i64;
        for k in 0..width {
            v = (v << 8) | b[at + k] as i64;
        }
        let v = (v + delta).to_be_bytes();
        b[at..at + width].copy_from_slice(&v[8 - width..]);
    };
    // The ES and DecoderConfig descriptors enclose the DSI: their last length byte.
    for tag in [0x03u8, 0x04] {
        let d = find(mp4, &[tag, 0x80, 0x80, 0x80], esds).unwrap();
        assert!(d < dsi);
        add(&mut out, d + 4, 1);
    }
    add(&mut out, dsi + 4, 1);
    // Every box from moov down whose bytes hold the DSI.
    let (mut start, mut end) = (moov, mp4.len());
    while start < esds + 8 {
        let mut p = start;
        while p < end {
            let size = u32::from_be_bytes(mp4[p..p + 4].try_into().unwrap()) as usize;
            if (p..p + size).contains(&dsi) {
                add(&mut out, p, 4);
                let skip = match &mp4[p + 4..p + 8] {
                    b"stsd" => 16,
                    b"mp4a" => 36,
                    _ => 8,
                };
                (start, end) = (p + skip, p + size);
                break;
            }
            p += size;
        }
        assert!(p < end, "no box holds the DSI");
    }
    out.splice(dsi + 5..dsi + 5 + old_len, asc.iter().copied());
    out
}

/// HE-AAC (SBR; v2 adds parametric stereo) is AAC-LC at half the rate plus side information.
/// The decoder takes AAC-LC only: an HE-AAC stream is decoded as its core, saying so. No
/// encoder at hand writes HE-AAC, so the test declares an AAC-LC stream at 24 kHz to be the
/// core of 48-kHz HE-AAC (explicit signalling, as Android and Apple encoders write it): it
/// must decode to the LC stream's samples, with the note. 5.1 AAC is refused naming the
/// layout (the device then falls back to the pictures, see device/tests/classify.rs).
#[test]
fn he_aac_decodes_its_core_and_surround_aac_is_named() {
    let (dir, src) = fixture_dir();
    let lc = ffmpeg(dir.path(), &src, &["-c:a", "aac", "-ar", "24000"], "lc24.mp4");
    let he = dir.path().join("he.m4a");
    std::fs::write(&he, with_asc(&std::fs::read(&lc).unwrap(), &[0x2B, 0x11, 0x88, 0x00])).unwrap();
    let (a, b) = (decode_audio(&lc).unwrap(), decode_audio(&he).unwrap());
    assert_eq!((b.sample_rate, b.channels.len()), (24_000, 2));
    assert!(a.channels == b.channels, "the core is the LC stream");
    let s = avsc_shared::decode::open_audio(&he).unwrap();
    let note = avsc_shared::decode::AudioStream::note(&s).expect("a note");
    assert!(note.contains("HE-AAC, stereo, 48000 Hz") && note.contains("above 12000 Hz"), "{note}");
    assert!(avsc_shared::decode::AudioStream::note(&avsc_shared::decode::open_audio(&lc).unwrap()).is_none());

    let surround = dir.path().join("surround.mp4");
    std::fs::write(&surround, with_asc(&std::fs::read(&lc).unwrap(), &[0x13, 0x30])).unwrap();
    let e = format!("{:#}", decode_audio(&surround).unwrap_err());
    assert!(e.contains("AAC-LC, 5.1, 24000 Hz is not decoded"), "{e}");
}

/// Fragmented MP4 (Safari's MediaRecorder, streaming tools, some camera apps): `moof`
/// fragments after an empty `moov`. Remuxed from a tau-mini clip without re-encoding, with
/// explicit base offsets (ffmpeg's default), with `default-base-is-moof`, and in short
/// fragments of both tracks, it must give the clip's packets: ffmpeg writes no edit list
/// there, so the audio keeps the encoder's 1,024 priming samples and the video starts two
/// frames (its B-frame delay) late, as ffmpeg's own decoder shows it; past that, the same
/// samples and the same pictures.
#[test]
fn fragmented_mp4_gives_the_clips_audio_and_frames() {
    use avsc_shared::decode::decode_video_frames;
    let dir = tempfile::tempdir().unwrap();
    let mp4 = avsc_shared::reference_dir().join("media/tau-mini/video/park-lisbon-1141-40029.mp4");
    let (audio, frames) = (decode_audio(&mp4).unwrap(), decode_video_frames(&mp4, 30.0, Some(1.0)).unwrap());
    assert_eq!(frames.len(), 30);
    for (i, flags) in
        ["frag_keyframe+empty_moov", "frag_keyframe+empty_moov+default_base_moof", "empty_moov+default_base_moof"]
            .into_iter()
            .enumerate()
    {
        let mut args = vec!["-c", "copy", "-movflags", flags];
        if i == 2 {
            args.extend(["-frag_duration", "400000"]);
        }
        let frag = ffmpeg(dir.path(), &mp4, &args, &format!("frag{i}.mp4"));
        let bytes = std::fs::read(&frag).unwrap();
        let moofs = bytes.windows(4).filter(|w| w == b"moof").count();
        assert!(moofs >= 2, "{flags}: {moofs} fragments");
        let a = decode_audio(&frag).unwrap_or_else(|e| panic!("{flags}: {e:#}"));
        assert_eq!((a.sample_rate, a.n_samples()), (audio.sample_rate, 470 * 1024), "{flags}: every packet");
        for (got, want) in a.channels.iter().zip(&audio.channels) {
            assert!(got[1024..1024 + want.len()] == want[..], "{flags}: the same samples after the priming");
        }
        let f = decode_video_frames(&frag, 30.0, Some(1.0)).unwrap();
        assert_eq!(f.len(), 30, "{flags}");
        for (x, y) in f[2..].iter().zip(&frames) {
            assert!((x.0 - y.0 - 2.0 / 30.0).abs() < 1e-9 && x.1 == y.1, "{flags}: frame at {} s", x.0);
        }
    }
}
