//! Media decoding (cargo feature `decode`): MP4 files with H.264 video and AAC-LC audio,
//! as the dataset and the device's recordings have them, plus WAV audio.
//!
//! Frames are sampled by presentation time, not by index: for `fps` frames per second the
//! targets are t = (k + 0.5) / fps s and each takes the frame whose presentation timestamp
//! (decode time + `ctts` offset - edit list start) is nearest, the earlier one on a tie
//! (the frame on screen at t). Only those frames are converted to RGB, and only the
//! pictures they depend on are decoded: not the non-reference frames nobody chose, not the
//! tail of a GOP after its last chosen frame, nothing after the last target's frame.
//!
//! Every error is one line naming the file and the reason; corrupt input never panics.

mod aac;
mod audio_file;
mod h264;
pub mod mp4;

pub use audio_file::AUDIO_EXTENSIONS;

use crate::image::RgbImage;
use crate::wav::Audio;
use anyhow::{anyhow, bail, ensure, Context, Result};
use mp4::{Codec, Kind, Movie, Track};
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
    with_file(path, "cannot probe", |file| video_info(&mp4::parse(file)?))
}

fn video_info(movie: &Movie) -> Result<VideoInfo> {
    let track = video_track(movie)?;
    let Codec::Avc { width, height, .. } = track.codec else { unreachable!("checked by video_track") };
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

/// Decode `fps` frames per second of an MP4's H.264 track, chosen by presentation time
/// (see the module docs), up to `max_seconds` if given. Returns (presentation time in
/// seconds, RGB frame) in presentation order.
pub fn decode_video_frames(path: &Path, fps: f64, max_seconds: Option<f64>) -> Result<Vec<(f64, RgbImage)>> {
    with_file(path, "cannot decode video", |file| {
        let movie = mp4::parse(file)?;
        video_frames(file, video_track(&movie)?, fps, max_seconds)
    })
}

/// Decode a file's audio: the AAC track of an MP4 (priming removed, so sample 0 is time
/// 0), a WAV file, or any other audio file symphonia reads (FLAC, OGG Vorbis, MP3, 8-bit
/// and other PCM WAV variants, AIFF, CAF; see `audio_file`), at its own rate and channels.
pub fn decode_audio(path: &Path) -> Result<Audio> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    with_file(path, "cannot decode audio", |file| {
        if file.starts_with(b"RIFF") || matches!(ext.as_deref(), Some("wav" | "wave")) {
            // The product's own reader first (PCM 16/24/32, float 32); symphonia for the sample
            // formats it does not take (8-bit, A-law/µ-law, ADPCM, 64-bit float). A file the
            // own reader refuses for being broken (truncated, non-finite) stays refused.
            return match crate::wav::decode(file) {
                Err(own) if own.to_string().starts_with("unsupported") => {
                    audio_file::decode(file, Some("wav")).map_err(|e| own.context(format!("{e:#}")))
                }
                r => r,
            }
            .context("invalid WAV");
        }
        if is_iso_bmff(file) {
            let movie = mp4::parse(file)?;
            return aac::decode(file, &movie, audio_track(&movie)?);
        }
        audio_file::decode(file, ext.as_deref())
    })
}

/// An MP4/MOV/M4A (ISO base media) file: its first box is `ftyp`, or a QuickTime `moov`,
/// `mdat`, `wide` or `free` box.
fn is_iso_bmff(file: &[u8]) -> bool {
    file.len() >= 8 && matches!(&file[4..8], b"ftyp" | b"moov" | b"mdat" | b"wide" | b"free" | b"skip")
}

/// A whole clip at once: the file is read and parsed once for both tracks.
pub struct Clip {
    pub info: VideoInfo,
    pub frames: Vec<(f64, RgbImage)>,
    /// `None` when the file has no audio track.
    pub audio: Option<Audio>,
}

pub fn decode_clip(path: &Path, fps: f64, max_seconds: Option<f64>) -> Result<Clip> {
    with_file(path, "cannot decode", |file| {
        let movie = mp4::parse(file)?;
        let info = video_info(&movie)?;
        let frames = video_frames(file, video_track(&movie)?, fps, max_seconds).context("video")?;
        let audio = match movie.track(Kind::Audio) {
            Some(_) => Some(aac::decode(file, &movie, audio_track(&movie)?).context("audio")?),
            None => None,
        };
        Ok(Clip { info, frames, audio })
    })
}

/// Read the file and run `f` on its bytes; errors (and, as a backstop, panics from the
/// codecs) become one line naming the file.
fn with_file<T>(path: &Path, what: &str, f: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
    let file = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&file)));
    let r = r.unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(anyhow!("decoder panicked (corrupt input?): {msg}"))
    });
    r.map_err(|e| anyhow!("{}: {what}: {e:#}", path.display()))
}

fn video_track(movie: &Movie) -> Result<&Track> {
    let t = movie.track(Kind::Video).context("no video track")?;
    match &t.codec {
        Codec::Avc { .. } => Ok(t),
        Codec::Aac { .. } | Codec::Mp3 => bail!("video track holds audio"),
        Codec::Other(c) => bail!("unsupported video codec '{c}' (only H.264 is decoded)"),
    }
}

fn audio_track(movie: &Movie) -> Result<&Track> {
    let t = movie.track(Kind::Audio).context("no audio track")?;
    match &t.codec {
        Codec::Aac { .. } | Codec::Mp3 => Ok(t),
        Codec::Avc { .. } => bail!("audio track holds H.264"),
        Codec::Other(c) => bail!("unsupported audio codec '{c}' (AAC-LC and MP3 are decoded)"),
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

/// The most frames [`decode_video_frames`] returns: 13.9 hours at 2 frames per second. A
/// file stating a longer duration (a corrupt or hostile edit list or sample time) is refused
/// rather than sampled into millions of copies of its few pictures.
pub const MAX_FRAME_TARGETS: usize = 100_000;

/// What [`video_frames`] will decode, worked out from the container and the H.264 headers
/// alone (no picture is decoded).
struct FramePlan {
    avc: h264::AvcConfig,
    sps: h264::SpsInfo,
    /// Each sample's presentation time, ticks from presentation time 0.
    pts: Vec<i64>,
    /// The sample shown at each target time (see [`select_frames`]).
    chosen: Vec<usize>,
    /// The last chosen sample in decode order.
    last: usize,
    /// Which of the samples up to `last` are fed to the decoder.
    decode: Vec<bool>,
}

fn plan_frames(file: &[u8], track: &Track, fps: f64, max_seconds: Option<f64>) -> Result<FramePlan> {
    ensure!(fps > 0.0 && fps.is_finite(), "frame rate {fps} must be positive");
    let Codec::Avc { avcc, .. } = &track.codec else { unreachable!("checked by video_track") };
    ensure!(!track.samples.is_empty(), "video track has no frames");
    let ts = track.timescale as f64;
    let delay_ticks = (track.edit_delay * ts).round() as i64;
    // Saturating: a corrupt edit list must not overflow (it only moves frames out of reach).
    let pts: Vec<i64> =
        track.samples.iter().map(|s| s.pts.saturating_sub(track.edit_media_time).saturating_add(delay_ticks)).collect();
    let limit = max_seconds.map_or(track.duration(), |m| m.min(track.duration()));
    // One target per 1/fps s of the duration, which the file states: bound it before
    // allocating a slot for each.
    ensure!(
        limit * fps <= MAX_FRAME_TARGETS as f64,
        "{limit:.0} s of video at {fps} frames per second is more than {MAX_FRAME_TARGETS} frames (corrupt duration?)"
    );
    let avc = h264::parse_avcc(avcc)?;
    let sps = h264::parse_sps(&avc.sps[0])?;
    ensure!(
        sps.chroma_format_idc == 1 && sps.bit_depth == 8,
        "unsupported H.264 format (profile {}, chroma format {}, {}-bit): only 8-bit 4:2:0 is decoded",
        sps.profile_idc,
        sps.chroma_format_idc,
        sps.bit_depth
    );
    ensure!(sps.frame_mbs_only, "interlaced H.264 is not supported");

    let chosen = select_frames(&pts, track.timescale, fps, limit);
    let last = chosen.iter().copied().max().unwrap_or(0);
    if chosen.is_empty() {
        return Ok(FramePlan { avc, sps, pts, chosen, last, decode: Vec::new() });
    }

    // Which samples to decode: each chosen frame and the reference pictures before it
    // back to the nearest IDR, or back to the previous chosen frame when there is no IDR
    // in between (its references are decoded already). The rest of each GOP after its
    // last chosen frame, and every non-reference frame nobody chose, is never decoded.
    let mut kinds = Vec::with_capacity(last + 1);
    for (i, s) in track.samples[..=last].iter().enumerate() {
        kinds.push(avc.kind(s.data(file)?).with_context(|| format!("frame {i}"))?);
    }
    let mut decode = vec![false; last + 1];
    let mut sorted = chosen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    let mut next = 0;
    for c in sorted {
        let start = (next..=c).rev().find(|&i| kinds[i].idr).unwrap_or(next);
        for (i, d) in decode.iter_mut().enumerate().take(c + 1).skip(start) {
            *d = kinds[i].reference || i == c;
        }
        next = c + 1;
    }
    Ok(FramePlan { avc, sps, pts, chosen, last, decode })
}

/// Parse an MP4 held in memory and plan the decoding of its video track at `fps` as
/// [`decode_video_frames`] does, without decoding a picture: the container, `avcC`, SPS and
/// every NAL length prefix up to the last chosen frame are read. Returns the number of
/// frames chosen. For the fuzzer (`avsc-fuzz mp4`): everything but OpenH264 itself.
#[doc(hidden)]
pub fn plan_video_frames(file: &[u8], fps: f64, max_seconds: Option<f64>) -> Result<usize> {
    let movie = mp4::parse(file)?;
    Ok(plan_frames(file, video_track(&movie)?, fps, max_seconds)?.chosen.len())
}

/// Parse an MP4 held in memory and apply its audio track's edit list (or iTunes gapless
/// info) to `n` samples of silence at `sample_rate`, as [`decode_audio`] does to the AAC
/// decoder's output. Returns the samples kept. For the fuzzer (`avsc-fuzz mp4`): the
/// container arithmetic without symphonia.
#[doc(hidden)]
pub fn plan_audio_trim(file: &[u8], sample_rate: u32, n: usize) -> Result<usize> {
    ensure!(sample_rate > 0, "sample rate 0");
    let movie = mp4::parse(file)?;
    let mut channels = vec![vec![0.0; n]];
    aac::trim_to_presentation(&mut channels, sample_rate, &movie, audio_track(&movie)?)?;
    Ok(channels[0].len())
}

fn video_frames(file: &[u8], track: &Track, fps: f64, max_seconds: Option<f64>) -> Result<Vec<(f64, RgbImage)>> {
    let FramePlan { avc, sps, pts, chosen, last, decode } = plan_frames(file, track, fps, max_seconds)?;
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let ts = track.timescale as f64;
    let mut got = Collector { wanted: vec![Vec::new(); track.samples.len()], out: vec![None; chosen.len()] };
    for (slot, &i) in chosen.iter().enumerate() {
        got.wanted[i].push(slot);
    }
    let mut missing = chosen.len();

    let mut dec = h264::H264Decoder::new()?;
    let mut headers = Some(avc.annex_b_headers());
    let mut au = Vec::new();
    for (i, s) in track.samples.iter().enumerate().take(last + 1) {
        if !decode[i] {
            continue;
        }
        avc.to_annex_b(s.data(file)?, &mut au).with_context(|| format!("frame {i}"))?;
        if let Some(h) = headers.take() {
            au.splice(0..0, h);
        }
        let pic = dec.decode(&au, i as u64).with_context(|| format!("frame {i} (decode order)"))?;
        if let Some(pic) = pic {
            missing -= got.take(pic, sps.colour);
        }
        if missing == 0 {
            break;
        }
    }
    while missing > 0 {
        match dec.flush().context("flushing the decoder")? {
            Some(pic) => missing -= got.take(pic, sps.colour),
            None => break,
        }
    }
    let out = got.out;
    let size = out.iter().flatten().next().map(|f| (f.width, f.height));
    chosen
        .iter()
        .zip(out)
        .map(|(&i, img)| {
            let t = pts[i] as f64 / ts;
            let img = img.with_context(|| format!("the decoder never output the frame at {t:.3} s"))?;
            ensure!(Some((img.width, img.height)) == size, "frame size changed mid-stream");
            // Upright, as the phone showed it.
            Ok((t, if track.rotation == 0 { img } else { img.rotated(track.rotation) }))
        })
        .collect()
}

/// The chosen frames as they come out of the decoder.
struct Collector {
    /// For each sample (decode order), the output slots it fills: a slow source can serve
    /// several targets.
    wanted: Vec<Vec<usize>>,
    out: Vec<Option<RgbImage>>,
}

impl Collector {
    /// Keep `pic` if a target wants it; returns how many slots it filled.
    fn take(&mut self, pic: h264::Picture<'_>, colour: h264::ColourInfo) -> usize {
        let slots = self.wanted.get(pic.tag as usize).map(Vec::as_slice).unwrap_or_default();
        if slots.is_empty() || self.out[slots[0]].is_some() {
            return 0;
        }
        let img = pic.to_rgb(colour);
        for &s in slots {
            self.out[s] = Some(img.clone());
        }
        slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review of `avsc-fuzz mp4`'s target: an edit list stating a duration of
    /// 2^64 ticks made `decode_video_frames(.., None)` allocate a target slot per 1/fps s
    /// until memory ran out.
    #[test]
    fn a_huge_stated_duration_is_refused_before_allocating() {
        let track = Track {
            kind: Kind::Video,
            timescale: 1,
            codec: Codec::Avc { avcc: vec![], width: 64, height: 64 },
            samples: vec![mp4::Sample { offset: 0, size: 1, dts: 0, pts: 0 }],
            edit_media_time: 0,
            edit_delay: 0.0,
            edit_duration: Some(u64::MAX as f64),
            rotation: 0,
        };
        let e = plan_frames(&[0], &track, 2.0, None).err().unwrap().to_string();
        assert!(e.contains("more than 100000 frames"), "{e}");
        // A limit given by the caller keeps it in reach (then the empty avcC is the error).
        let e = plan_frames(&[0], &track, 2.0, Some(10.0)).err().unwrap().to_string();
        assert!(e.contains("avcC"), "{e}");
    }

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
