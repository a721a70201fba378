//! Media decoding (cargo feature `decode`): MP4/MOV files with H.264 or HEVC video and AAC-LC, MP3,
//! ALAC or uncompressed (PCM) audio, as the dataset, phones and cameras write them, plus
//! audio files (WAV by the product's own reader, the rest by symphonia).
//!
//! Frames are sampled by presentation time, not by index: for `fps` frames per second the
//! targets are t = (k + 0.5) / fps s and each takes the frame whose presentation timestamp
//! (decode time + `ctts` offset - edit list start) is nearest, the earlier one on a tie
//! (the frame on screen at t). Only those frames are converted to RGB, and only the
//! pictures they depend on are decoded: not the non-reference frames nobody chose, not the
//! tail of a GOP after its last chosen frame, nothing after the last target's frame.
//!
//! Both are streamed: [`open_frames`] and [`open_audio`] read the file a sample or a packet
//! at a time (only the `moov` of an MP4 is read whole), so memory is bounded by what the
//! caller holds, not by the recording's length; [`decode_video_frames`], [`decode_audio`]
//! and [`decode_clip`] collect the same streams for callers that want a whole clip.
//!
//! Every error is one line naming the file and the reason; corrupt input never panics.

mod aac;
mod asc;
mod audio_file;
mod frames;
mod h264;
mod h265;
pub mod mp4;
mod pcm;
mod stream;

pub use asc::AacConfig;
pub use audio_file::{AUDIO_EXTENSIONS, VIDEO_EXTENSIONS};
pub use frames::MAX_FRAME_TARGETS;
pub use stream::{AudioStream, Named};

use crate::image::RgbImage;
use crate::wav::Audio;
use anyhow::{anyhow, bail, Context, Result};
use mp4::{Codec, Kind, Movie, Track};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// What a video file holds, from its headers alone.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    /// The displayed size: the pictures' size turned by the track's rotation.
    pub width: usize,
    pub height: usize,
    /// Mean frame rate (frames / track duration).
    pub fps: f64,
    /// Presented duration of the video track, seconds.
    pub duration_s: f64,
    pub n_frames: usize,
    pub has_audio: bool,
}

/// Read a video file's headers.
pub fn probe(path: &Path) -> Result<VideoInfo> {
    named(path, "cannot probe", || video_info(&parse(&open(path)?)?))
}

fn open(path: &Path) -> Result<File> {
    File::open(path).context("cannot read")
}

fn parse(file: &File) -> Result<Movie> {
    stream::guarded(|| mp4::parse_file(file))
}

/// Errors of `f` as one line naming the file (panics from the codecs, a backstop, too).
fn named<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    stream::guarded(f).map_err(|e| anyhow!("{}: {what}: {e:#}", path.display()))
}

fn video_info(movie: &Movie) -> Result<VideoInfo> {
    let track = video_track(movie)?;
    let (Codec::Avc { width, height, .. } | Codec::Hevc { width, height, .. }) = track.codec else {
        unreachable!("checked by video_track")
    };
    let duration_s = track.duration();
    let n_frames = track.samples.len();
    // The displayed size: a quarter turn swaps the sides.
    let (width, height) = if track.rotation % 180 == 90 { (height, width) } else { (width, height) };
    Ok(VideoInfo {
        width: width as usize,
        height: height as usize,
        fps: if duration_s > 0.0 { n_frames as f64 / duration_s } else { 0.0 },
        duration_s,
        n_frames,
        has_audio: movie.track(Kind::Audio).is_some(),
    })
}

/// An MP4's frames, decoded one at a time as they are asked for (see the module docs for
/// which frames); errors name the file.
pub struct VideoFrames {
    inner: frames::FrameStream,
    name: String,
}

impl VideoFrames {
    /// The next frame: (presentation time in seconds, upright RGB), `None` after the last.
    pub fn next_frame(&mut self) -> Result<Option<(f64, RgbImage)>> {
        stream::guarded(|| self.inner.next_frame()).map_err(|e| anyhow!("{}: cannot decode video: {e:#}", self.name))
    }

    /// Frames not handed out yet.
    pub fn remaining(&self) -> usize {
        self.inner.remaining()
    }
}

/// Open an MP4's H.264 track for `fps` frames per second, chosen by presentation time, up
/// to `max_seconds` if given.
pub fn open_frames(path: &Path, fps: f64, max_seconds: Option<f64>) -> Result<VideoFrames> {
    named(path, "cannot decode video", || {
        let file = open(path)?;
        let movie = parse(&file)?;
        let inner = frames::FrameStream::new(file, video_track(&movie)?, fps, max_seconds)?;
        Ok(VideoFrames { inner, name: path.display().to_string() })
    })
}

/// Decode `fps` frames per second of an MP4's H.264 track, chosen by presentation time
/// (see the module docs), up to `max_seconds` if given. Returns (presentation time in
/// seconds, RGB frame) in presentation order.
pub fn decode_video_frames(path: &Path, fps: f64, max_seconds: Option<f64>) -> Result<Vec<(f64, RgbImage)>> {
    let mut s = open_frames(path, fps, max_seconds)?;
    let mut out = Vec::with_capacity(s.remaining());
    while let Some(f) = s.next_frame()? {
        out.push(f);
    }
    Ok(out)
}

/// Open a file's audio for streaming: the audio track of an MP4/MOV/M4A (AAC or MP3,
/// priming removed, so frame 0 is time 0), a WAV file, or any other audio file symphonia
/// reads (FLAC, OGG Vorbis, MP3, 8-bit and other PCM WAV variants, AIFF, CAF; see
/// `audio_file`), at its own rate and channels.
pub fn open_audio(path: &Path) -> Result<Named> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let inner = named(path, "cannot decode audio", || -> Result<Box<dyn AudioStream>> {
        let file = open(path)?;
        let mut magic = [0u8; 8];
        let n = file.metadata().map_or(0, |m| m.len().min(8) as usize);
        file.read_exact_at(&mut magic[..n], 0).context("cannot read")?;
        let magic = &magic[..n];
        if magic.starts_with(b"RIFF") || matches!(ext.as_deref(), Some("wav" | "wave")) {
            // The product's own reader first (PCM 16/24/32, float 32); symphonia for the
            // sample formats it does not take (8-bit, A-law/µ-law, ADPCM, 64-bit float). A
            // file the own reader refuses for being broken (truncated) stays refused.
            let own = stream::WavPackets::open(file.try_clone().context("cannot read")?);
            let s: Result<Box<dyn AudioStream>> = match own {
                Ok(s) => Ok(Box::new(s)),
                Err(own) if own.to_string().starts_with("unsupported") => match audio_file::open(file, Some("wav")) {
                    Ok(s) => Ok(Box::new(s)),
                    Err(e) => Err(own.context(format!("{e:#}"))),
                },
                Err(e) => Err(e),
            };
            return s.context("invalid WAV");
        }
        if is_iso_bmff(magic) {
            let movie = parse(&file)?;
            let track = audio_track(&movie)?.clone();
            return Ok(match track.codec {
                Codec::Pcm(_) => Box::new(pcm::open(file, &movie, &track)?),
                _ => Box::new(aac::open(file, &movie, &track)?),
            });
        }
        Ok(Box::new(audio_file::open(file, ext.as_deref())?))
    })?;
    Ok(Named::new(inner, path.display().to_string()))
}

/// Decode a file's audio whole (see [`open_audio`]).
pub fn decode_audio(path: &Path) -> Result<Audio> {
    decode_audio_head(path, None)
}

/// Decode a file's audio up to `max_seconds` (the rest of the file is not read), or whole.
pub fn decode_audio_head(path: &Path, max_seconds: Option<f64>) -> Result<Audio> {
    let mut s = open_audio(path)?;
    let ch = s.channels();
    let limit = max_seconds.map_or(u64::MAX, |m| (m.max(0.0) * s.sample_rate() as f64).ceil() as u64);
    let hint = s.frames_hint().unwrap_or(0).min(limit).min(1 << 28);
    let mut channels = vec![Vec::with_capacity(hint as usize); ch];
    let mut buf = vec![0.0f32; 4096 * ch];
    while (channels[0].len() as u64) < limit {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let n = n.min((limit - channels[0].len() as u64) as usize);
        for frame in buf[..n * ch].chunks_exact(ch) {
            for (c, v) in channels.iter_mut().zip(frame) {
                c.push(*v);
            }
        }
    }
    Ok(Audio { sample_rate: s.sample_rate(), channels })
}

/// Parse an MP4 held in memory and plan the decoding of its video track at `fps` as
/// [`open_frames`] does, without decoding a picture: the container, `avcC`, SPS and every
/// NAL length prefix up to the last chosen frame are read. Returns the number of frames
/// chosen. For the fuzzer (`avsc-fuzz mp4`): everything but OpenH264 itself.
#[doc(hidden)]
pub fn plan_video_frames(file: &[u8], fps: f64, max_seconds: Option<f64>) -> Result<usize> {
    let movie = mp4::parse(file)?;
    let track = video_track(&movie)?;
    let plan = frames::plan(track, fps, max_seconds)?;
    let last = plan.chosen.iter().copied().max();
    for (i, s) in track.samples.iter().enumerate().take(last.map_or(0, |l| l + 1)) {
        plan.config.check_sample(s.bytes(file)?).with_context(|| format!("frame {i}"))?;
    }
    Ok(plan.chosen.len())
}

/// Parse an MP4 held in memory and apply its audio track's edit list (or iTunes gapless
/// info) to `n` decoded frames at `sample_rate`, as [`open_audio`] does to the decoder's
/// output. Returns the frames given. For the fuzzer (`avsc-fuzz mp4`): the container
/// arithmetic without symphonia.
#[doc(hidden)]
pub fn plan_audio_trim(file: &[u8], sample_rate: u32, n: usize) -> Result<usize> {
    anyhow::ensure!(sample_rate > 0, "sample rate 0");
    let movie = mp4::parse(file)?;
    let (skip, keep, delay) = aac::trim(sample_rate, &movie, audio_track(&movie)?, n as u64)?;
    let kept = (n as u64).saturating_sub(skip).min(keep.unwrap_or(u64::MAX));
    Ok(delay.saturating_add(kept).min(usize::MAX as u64) as usize)
}

/// An MP4/MOV/M4A (ISO base media) file: its first box is `ftyp`, or a QuickTime `moov`,
/// `mdat`, `wide` or `free` box.
fn is_iso_bmff(file: &[u8]) -> bool {
    file.len() >= 8 && matches!(&file[4..8], b"ftyp" | b"moov" | b"mdat" | b"wide" | b"free" | b"skip")
}

/// A whole clip at once.
pub struct Clip {
    pub info: VideoInfo,
    pub frames: Vec<(f64, RgbImage)>,
    /// `None` when the file has no audio track.
    pub audio: Option<Audio>,
}

pub fn decode_clip(path: &Path, fps: f64, max_seconds: Option<f64>) -> Result<Clip> {
    let info = probe(path)?;
    let frames = decode_video_frames(path, fps, max_seconds).context("video")?;
    let audio = if info.has_audio { Some(decode_audio(path).context("audio")?) } else { None };
    Ok(Clip { info, frames, audio })
}

fn video_track(movie: &Movie) -> Result<&Track> {
    let t = movie.track(Kind::Video).context("no video track")?;
    match &t.codec {
        Codec::Avc { .. } | Codec::Hevc { .. } => Ok(t),
        Codec::Aac { .. } | Codec::Mp3 | Codec::Alac { .. } | Codec::Pcm(_) => bail!("video track holds audio"),
        Codec::Other(c) => match video_codec_name(c) {
            Some(name) => bail!("{name} ('{c}') is not decoded (only H.264 and HEVC are)"),
            None => bail!("unsupported video codec '{c}' (only H.264 and HEVC are decoded)"),
        },
    }
}

/// What a video sample entry's four-character code is, for the error.
fn video_codec_name(fourcc: &str) -> Option<&'static str> {
    Some(match fourcc {
        "dvh1" | "dvhe" => "Dolby Vision (profile 5) HEVC video",
        "av01" => "AV1 video",
        "vp08" => "VP8 video",
        "vp09" => "VP9 video",
        "mp4v" => "MPEG-4 Part 2 video",
        "apch" | "apcn" | "apcs" | "apco" | "ap4h" | "ap4x" => "Apple ProRes video",
        "mjpa" | "mjpb" | "jpeg" => "Motion JPEG video",
        "s263" | "h263" => "H.263 video",
        _ => return None,
    })
}

fn audio_track(movie: &Movie) -> Result<&Track> {
    let t = movie.track(Kind::Audio).context("no audio track")?;
    match &t.codec {
        Codec::Aac { .. } | Codec::Mp3 | Codec::Alac { .. } | Codec::Pcm(_) => Ok(t),
        Codec::Avc { .. } | Codec::Hevc { .. } => bail!("audio track holds video"),
        Codec::Other(c) => bail!("unsupported audio codec '{c}' (AAC-LC, MP3, ALAC and PCM are decoded)"),
    }
}

/// For each target time (k + 0.5) / fps below `limit` s, the index (into `pts`, ticks
/// relative to presentation time 0 at `timescale`) of the nearest presented frame.
pub(crate) fn select_frames(pts: &[i64], timescale: u32, fps: f64, limit: f64) -> Vec<usize> {
    // Presented frames in presentation order; frames before the edit start never show.
    let mut order: Vec<usize> = (0..pts.len()).filter(|&i| pts[i] >= 0).collect();
    order.sort_by_key(|&i| (pts[i], i));
    let mut chosen = Vec::new();
    if order.is_empty() || fps <= 0.0 {
        return chosen;
    }
    // Distances are compared as 2 * fps * ticks - (2k + 1) * timescale, exact in f64 for
    // integral fps, so the ties at e.g. 0.25 s in 30 fps video break the same way always.
    let ts = timescale as f64;
    let mut j = 0;
    for k in 0.. {
        let t = (k as f64 + 0.5) / fps;
        if t >= limit {
            break;
        }
        let target = (2 * k + 1) as f64 * ts;
        let dist = |i: usize| (2.0 * fps * pts[i] as f64 - target).abs();
        // Targets increase, so the nearest frame never moves backwards.
        while j + 1 < order.len() && dist(order[j + 1]) < dist(order[j]) {
            j += 1;
        }
        chosen.push(order[j]);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_by_presentation_time() {
        // 30 fps at timescale 15360 (512 ticks a frame), shuffled like B-frame decode order.
        let mut pts: Vec<i64> = (0..300).map(|i| i * 512).collect();
        pts.swap(1, 3);
        let chosen = select_frames(&pts, 15360, 2.0, 10.0);
        assert_eq!(chosen.len(), 20);
        let frames: Vec<i64> = chosen.iter().map(|&i| pts[i] / 512).collect();
        // 0.25 s is exactly between frames 7 and 8: the earlier one is on screen.
        assert_eq!(&frames[..3], &[7, 22, 37]);
        assert_eq!(frames[19], 292);
        // A 1 fps source serves two targets per frame.
        let slow: Vec<i64> = (0..10).map(|i| i * 15360).collect();
        let c = select_frames(&slow, 15360, 2.0, 10.0);
        assert_eq!(&c[..4], &[0, 1, 1, 2]);
        assert_eq!(select_frames(&pts, 15360, 2.0, 1.0).len(), 2);
    }
}
