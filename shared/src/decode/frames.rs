//! An MP4's frames decoded as they are asked for: the chosen frames (see the module docs of
//! `decode`) come out in presentation order, one at a time, and only the pictures the next
//! one depends on are decoded. The file is read a sample at a time, so memory is bounded by
//! the decoder's reference pictures and the frames waiting to be handed out (at most the
//! stream's reordering delay), not by the video's length.

use super::h264::{self, AvcConfig, ColourInfo, H264Decoder, SampleKind};
use super::h265::{self, HevcDecoder, HvcConfig};
use super::mp4::{Codec, Track};
use super::select_frames;
use crate::image::RgbImage;
use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::fs::File;

/// The video codec's configuration, from the sample description.
pub(super) enum Config {
    Avc(AvcConfig),
    /// With the highest temporal sub-layer.
    Hevc(HvcConfig, u8),
}

impl Config {
    /// Every NAL length prefix of a sample checked (the fuzzer's view of a sample).
    pub(super) fn check_sample(&self, sample: &[u8]) -> Result<()> {
        match self {
            Config::Avc(avc) => avc.kind(sample).map(|_| ()),
            Config::Hevc(hvc, top) => {
                let units = hvc.units(sample)?;
                let _ = h265::disposable(&units, *top);
                Ok(())
            }
        }
    }
}

/// The decoder, with what it still needs to be given before the first sample.
enum Decoding {
    /// OpenH264: from the IDR before each chosen sample, skipping what nothing needs.
    Avc { avc: AvcConfig, dec: H264Decoder, headers: Option<Vec<u8>> },
    /// rusty_h265: the samples in decode order, but the disposable ones nobody chose (it
    /// outputs a picture once the next one has started, so a picture is taken when it comes
    /// out, not when its sample goes in).
    Hevc { hvc: HvcConfig, dec: HevcDecoder, headers: bool, top_layer: u8 },
}

pub struct FrameStream {
    file: File,
    track: Track,
    decoding: Decoding,
    colour: ColourInfo,
    /// Presentation time of each sample, ticks from presentation time 0.
    pts: Vec<i64>,
    /// Sample chosen for each output slot (presentation order).
    chosen: Vec<usize>,
    /// The output slots each chosen sample fills (a slow source serves several targets).
    wanted: BTreeMap<usize, Vec<usize>>,
    /// Chosen samples in decode order, without repeats; `segments` of them are decoded.
    sorted: Vec<usize>,
    segments: usize,
    /// The first sample after the last chosen one decoded.
    next_sample: usize,
    /// Decoded frames not yet handed out, by slot; `next_slot` is the next to hand out.
    ready: BTreeMap<usize, RgbImage>,
    next_slot: usize,
    flushed: bool,
    size: Option<(usize, usize)>,
    sample: Vec<u8>,
    au: Vec<u8>,
}

impl FrameStream {
    /// `fps` frames per second of `track` (an H.264 or HEVC track of `file`), up to
    /// `max_seconds`.
    pub(super) fn new(file: File, track: &Track, fps: f64, max_seconds: Option<f64>) -> Result<FrameStream> {
        let Plan { config, colour, pts, chosen } = plan(track, fps, max_seconds)?;
        let decoding = match config {
            Config::Avc(avc) => Decoding::Avc { headers: Some(avc.annex_b_headers()), avc, dec: H264Decoder::new()? },
            Config::Hevc(hvc, top_layer) => Decoding::Hevc { hvc, dec: HevcDecoder::new(), headers: false, top_layer },
        };
        let mut wanted: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (slot, &i) in chosen.iter().enumerate() {
            wanted.entry(i).or_default().push(slot);
        }
        let sorted: Vec<usize> = wanted.keys().copied().collect();
        Ok(FrameStream {
            file,
            track: track.clone(),
            decoding,
            colour,
            pts,
            chosen,
            wanted,
            sorted,
            segments: 0,
            next_sample: 0,
            ready: BTreeMap::new(),
            next_slot: 0,
            flushed: false,
            size: None,
            sample: Vec::new(),
            au: Vec::new(),
        })
    }

    /// Frames not handed out yet.
    pub fn remaining(&self) -> usize {
        self.chosen.len() - self.next_slot
    }

    /// The next frame (presentation time in seconds, upright RGB), `None` after the last.
    pub fn next_frame(&mut self) -> Result<Option<(f64, RgbImage)>> {
        loop {
            if self.next_slot == self.chosen.len() {
                return Ok(None);
            }
            if let Some(img) = self.ready.remove(&self.next_slot) {
                let t = self.pts[self.chosen[self.next_slot]] as f64 / self.track.timescale as f64;
                self.next_slot += 1;
                let size = *self.size.get_or_insert((img.width, img.height));
                ensure!(size == (img.width, img.height), "frame size changed mid-stream");
                // Upright, as the phone showed it.
                let img = if self.track.rotation == 0 { img } else { img.rotated(self.track.rotation) };
                return Ok(Some((t, img)));
            }
            if self.segments < self.sorted.len() {
                match self.decoding {
                    Decoding::Avc { .. } => self.decode_segment()?,
                    Decoding::Hevc { .. } => self.decode_hevc_segment()?,
                }
            } else if !self.flushed {
                self.flushed = true;
                let colour = self.colour;
                match &mut self.decoding {
                    Decoding::Avc { dec, .. } => {
                        while let Some(pic) = dec.flush().context("flushing the decoder")? {
                            take(&self.wanted, &mut self.ready, self.next_slot, pic.tag as usize, || {
                                Ok(pic.to_rgb(colour))
                            })?;
                        }
                    }
                    Decoding::Hevc { dec, .. } => {
                        dec.flush();
                        take_hevc(dec, &self.wanted, &mut self.ready, self.next_slot, colour)?;
                    }
                }
            } else {
                let t = self.pts[self.chosen[self.next_slot]] as f64 / self.track.timescale as f64;
                anyhow::bail!("the decoder never output the frame at {t:.3} s");
            }
        }
    }

    /// Decode up to the next chosen sample c: from the nearest IDR before it (or from the
    /// sample after the previous chosen one when there is no IDR in between: its
    /// references are decoded already), the reference pictures and c itself. The rest of a
    /// GOP after its last chosen frame, and every non-reference frame nobody chose, is
    /// never decoded.
    fn decode_segment(&mut self) -> Result<()> {
        let Decoding::Avc { avc, dec, headers } = &mut self.decoding else { unreachable!("H.264 only") };
        let c = self.sorted[self.segments];
        self.segments += 1;
        let mut kinds: Vec<SampleKind> = Vec::new();
        for i in (self.next_sample..=c).rev() {
            self.track.samples[i].read(&self.file, &mut self.sample)?;
            let kind = avc.kind(&self.sample).with_context(|| format!("frame {i}"))?;
            kinds.push(kind);
            if kind.idr {
                break;
            }
        }
        kinds.reverse();
        let start = c + 1 - kinds.len();
        for (i, kind) in (start..=c).zip(kinds) {
            if !(kind.reference || i == c) {
                continue;
            }
            self.track.samples[i].read(&self.file, &mut self.sample)?;
            avc.to_annex_b(&self.sample, &mut self.au).with_context(|| format!("frame {i}"))?;
            if let Some(h) = headers.take() {
                self.au.splice(0..0, h);
            }
            let pic = dec.decode(&self.au, i as u64).with_context(|| format!("frame {i} (decode order)"))?;
            if let Some(pic) = pic {
                let colour = self.colour;
                take(&self.wanted, &mut self.ready, self.next_slot, pic.tag as usize, || Ok(pic.to_rgb(colour)))?;
            }
        }
        self.next_sample = c + 1;
        Ok(())
    }

    /// HEVC: the samples up to the next chosen one, in decode order (but the unchosen ones
    /// no later picture can need), taking the pictures as they come out.
    fn decode_hevc_segment(&mut self) -> Result<()> {
        let Decoding::Hevc { hvc, dec, headers, top_layer } = &mut self.decoding else { unreachable!("HEVC only") };
        let c = self.sorted[self.segments];
        self.segments += 1;
        if !*headers {
            *headers = true;
            for nal in &hvc.nals {
                dec.push(nal, None).context("the 'hvcC' parameter sets")?;
            }
        }
        for i in self.next_sample..=c {
            self.track.samples[i].read(&self.file, &mut self.sample)?;
            let units = hvc.units(&self.sample).with_context(|| format!("frame {i}"))?;
            if i != c && h265::disposable(&units, *top_layer) {
                continue;
            }
            for nal in units {
                dec.push(nal, Some(i as u64)).with_context(|| format!("frame {i} (decode order)"))?;
            }
            take_hevc(dec, &self.wanted, &mut self.ready, self.next_slot, self.colour)?;
        }
        self.next_sample = c + 1;
        Ok(())
    }
}

/// The most frames a stream gives: 13.9 hours at 2 frames per second. A file stating a
/// longer duration (a corrupt or hostile edit list or sample time) is refused rather than
/// sampled into millions of copies of its few pictures.
pub const MAX_FRAME_TARGETS: usize = 100_000;

/// What a [`FrameStream`] decodes, from the container and the codec's headers alone.
pub(super) struct Plan {
    pub config: Config,
    pub colour: ColourInfo,
    /// Each sample's presentation time, ticks from presentation time 0.
    pub pts: Vec<i64>,
    /// The sample shown at each target time (see [`select_frames`]).
    pub chosen: Vec<usize>,
}

pub(super) fn plan(track: &Track, fps: f64, max_seconds: Option<f64>) -> Result<Plan> {
    ensure!(fps > 0.0 && fps.is_finite(), "frame rate {fps} must be positive");
    ensure!(!track.samples.is_empty(), "video track has no frames");
    let delay_ticks = (track.edit_delay * track.timescale as f64).round() as i64;
    // Saturating: a corrupt edit list must not overflow (it only moves frames out of reach).
    let pts: Vec<i64> =
        track.samples.iter().map(|s| s.pts.saturating_sub(track.edit_media_time).saturating_add(delay_ticks)).collect();
    let limit = max_seconds.map_or(track.duration(), |m| m.min(track.duration()));
    // One target per 1/fps s of the duration the file states: bounded before a slot is
    // allocated for each.
    ensure!(
        limit * fps <= MAX_FRAME_TARGETS as f64,
        "{limit:.0} s of video at {fps} frames per second is more than {MAX_FRAME_TARGETS} frames (corrupt duration?)"
    );
    let (config, colour) = match &track.codec {
        Codec::Avc { avcc, .. } => {
            let avc = h264::parse_avcc(avcc)?;
            let sps = h264::parse_sps(avc.sps.first().context("'avcC' has no sequence parameter set")?)?;
            ensure!(
                sps.chroma_format_idc == 1 && sps.bit_depth == 8,
                "unsupported H.264 format ({}, chroma format {}, {}-bit): only 8-bit 4:2:0 is decoded",
                h264::profile_name(sps.profile_idc),
                sps.chroma_format_idc,
                sps.bit_depth
            );
            ensure!(sps.frame_mbs_only, "interlaced H.264 is not supported");
            (Config::Avc(avc), sps.colour)
        }
        Codec::Hevc { hvcc, .. } => {
            let hvc = h265::parse_hvcc(hvcc)?;
            let sps = h265::parse_sps(hvc.sps())?;
            ensure!(
                sps.chroma_format_idc == 1 && sps.bit_depth <= 10,
                "unsupported HEVC format (chroma format {}, {}-bit): 8- and 10-bit 4:2:0 are decoded",
                sps.chroma_format_idc,
                sps.bit_depth
            );
            (Config::Hevc(hvc, sps.top_layer), sps.colour)
        }
        _ => unreachable!("checked by video_track"),
    };
    let chosen = select_frames(&pts, track.timescale, fps, limit);
    Ok(Plan { config, colour, pts, chosen })
}

/// Take the pictures rusty_h265 has finished.
fn take_hevc(
    dec: &mut HevcDecoder,
    wanted: &BTreeMap<usize, Vec<usize>>,
    ready: &mut BTreeMap<usize, RgbImage>,
    next_slot: usize,
    colour: ColourInfo,
) -> Result<()> {
    while let Some(f) = dec.next() {
        if let Some(tag) = h265::tag(&f) {
            take(wanted, ready, next_slot, tag, || h265::to_rgb(&f, colour))?;
        }
    }
    Ok(())
}

/// Keep the picture of sample `tag` (made by `rgb`, only if needed) in `ready` for the
/// slots that want it and are not handed out yet.
fn take(
    wanted: &BTreeMap<usize, Vec<usize>>,
    ready: &mut BTreeMap<usize, RgbImage>,
    next_slot: usize,
    tag: usize,
    rgb: impl FnOnce() -> Result<RgbImage>,
) -> Result<()> {
    let Some(slots) = wanted.get(&tag) else { return Ok(()) };
    let open = |s: &&usize| **s >= next_slot && !ready.contains_key(*s);
    if !slots.iter().any(|s| open(&s)) {
        return Ok(());
    }
    let img = rgb()?;
    let slots: Vec<usize> = slots.iter().filter(open).copied().collect();
    for s in slots {
        ready.insert(s, img.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::mp4::{Kind, Sample};

    /// Found by review of `avsc-fuzz mp4`'s target: an edit list stating a duration of
    /// 2^64 ticks made the frame selection allocate a target slot per 1/fps s until memory
    /// ran out.
    #[test]
    fn a_huge_stated_duration_is_refused_before_allocating() {
        let track = Track {
            kind: Kind::Video,
            timescale: 1,
            codec: Codec::Avc { avcc: vec![], width: 64, height: 64 },
            samples: vec![Sample { offset: 0, size: 1, dts: 0, pts: 0 }],
            edit_media_time: 0,
            edit_delay: 0.0,
            edit_duration: Some(u64::MAX as f64),
            rotation: 0,
        };
        let e = plan(&track, 2.0, None).err().unwrap().to_string();
        assert!(e.contains("more than 100000 frames"), "{e}");
        // A limit given by the caller keeps it in reach (then the empty avcC is the error).
        let e = plan(&track, 2.0, Some(10.0)).err().unwrap().to_string();
        assert!(e.contains("avcC"), "{e}");
    }
}
