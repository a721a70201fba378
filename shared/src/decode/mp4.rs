//! A small ISO-BMFF (MP4, QuickTime MOV, 3GPP) demuxer: just enough of `moov` (and of the
//! `moof` fragments of a fragmented file) to locate every sample of one video and one audio
//! track, with decode and composition times and the edit list.
//!
//! Hand-written rather than a crate so that every size and offset read from the file is
//! checked before use: corrupt or truncated input must give an error, never a panic or a
//! huge allocation; and so that only the tables are read, never the media data.

use anyhow::{ensure, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;

mod fragments;
mod stsd;
pub use stsd::Pcm;

/// The codec of a track, with what its decoder needs from the sample description.
#[derive(Clone, Debug)]
pub enum Codec {
    /// H.264 in AVCC form: the `avcC` record (parameter sets, NAL length size).
    Avc { avcc: Vec<u8>, width: u16, height: u16 },
    /// HEVC (H.265) as `hvc1`/`hev1`: the `hvcC` record (parameter sets, NAL length size).
    Hevc { hvcc: Vec<u8>, width: u16, height: u16 },
    /// MPEG-4 audio (AAC): the AudioSpecificConfig from `esds`.
    Aac { asc: Vec<u8> },
    /// MPEG-1/2 layer III in `mp4a` (object type 0x69 / 0x6B), as some phones record it.
    Mp3,
    /// Apple Lossless: the 24-byte ALACSpecificConfig.
    Alac { cookie: Vec<u8> },
    /// Uncompressed audio (QuickTime's sound formats). Its [`Track::samples`] are whole
    /// chunks, not frames: see [`Sample`].
    Pcm(Pcm),
    /// Anything else, by its sample-entry four-character code.
    Other(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
    Other,
}

/// One access unit: where it is in the file and when it is decoded and shown
/// (media timescale ticks; `pts` before the edit list is applied).
///
/// For uncompressed audio ([`Codec::Pcm`]) one `Sample` is one chunk of frames: the sample
/// table counts every frame, and a one-hour recording listed frame by frame would take
/// gigabytes; its chunks take a few MB (and the tables are in the file already).
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub offset: u64,
    pub size: u32,
    pub dts: i64,
    pub pts: i64,
}

impl Sample {
    /// The sample's bytes in `file` (the file the movie was parsed from, in memory).
    pub fn bytes<'a>(&self, file: &'a [u8]) -> Result<&'a [u8]> {
        let start = usize::try_from(self.offset).ok();
        start
            .and_then(|s| file.get(s..))
            .and_then(|b| b.get(..self.size as usize))
            .context("sample lies beyond the end of the file (truncated file?)")
    }

    /// Read the sample's bytes from `file` (the file the movie was parsed from) into `buf`.
    pub fn read(&self, file: &File, buf: &mut Vec<u8>) -> Result<()> {
        buf.resize(self.size as usize, 0);
        file.read_exact_at(buf, self.offset).context("sample lies beyond the end of the file (truncated file?)")
    }
}

#[derive(Clone, Debug)]
pub struct Track {
    pub kind: Kind,
    pub timescale: u32,
    pub codec: Codec,
    pub samples: Vec<Sample>,
    /// Media time (media ticks) shown at presentation time `edit_delay`: the first
    /// non-empty edit's `media_time` (encoder priming, B-frame delay), 0 without `elst`.
    pub edit_media_time: i64,
    /// Presentation delay from leading empty edits, seconds.
    pub edit_delay: f64,
    /// Presented duration in seconds from the edit list, if it says.
    pub edit_duration: Option<f64>,
    /// Clockwise rotation for display (0, 90, 180 or 270) from the `tkhd` matrix: phones
    /// store portrait video as landscape pictures plus this.
    pub rotation: u16,
}

impl Track {
    /// Presentation time of a media timestamp, in seconds.
    pub fn seconds(&self, ticks: i64) -> f64 {
        // In f64: the difference of two arbitrary i64 can overflow (exact below 2^53 ticks).
        (ticks as f64 - self.edit_media_time as f64) / self.timescale as f64 + self.edit_delay
    }

    /// Presented duration in seconds: the edit list's if any, else the sample durations'.
    pub fn duration(&self) -> f64 {
        if let Some(d) = self.edit_duration {
            return d;
        }
        let end = self.samples.iter().map(|s| s.pts).max().unwrap_or(0);
        let last_dur = match self.samples.as_slice() {
            [.., a, b] => b.dts.saturating_sub(a.dts),
            _ => 0,
        };
        self.seconds(end.saturating_add(last_dur)).max(0.0)
    }
}

#[derive(Clone, Debug)]
pub struct Movie {
    pub tracks: Vec<Track>,
    /// The raw `udta` payload, for iTunes gapless metadata (`iTunSMPB`).
    pub udta: Vec<u8>,
}

impl Movie {
    pub fn track(&self, kind: Kind) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == kind)
    }
}

/// A box: its type and payload (after the header).
struct Bx<'a> {
    typ: [u8; 4],
    body: &'a [u8],
}

/// Iterate over the boxes in `b`; a box running past the end is an error (truncation).
fn boxes(mut b: &[u8]) -> impl Iterator<Item = Result<Bx<'_>>> {
    std::iter::from_fn(move || {
        if b.is_empty() {
            return None;
        }
        let r = (|| {
            ensure!(b.len() >= 8, "{} stray bytes where a box header should be", b.len());
            let size32 = u32::from_be_bytes(b[0..4].try_into().unwrap()) as u64;
            let typ: [u8; 4] = b[4..8].try_into().unwrap();
            let (size, hdr) = match size32 {
                0 => (b.len() as u64, 8),
                1 => {
                    ensure!(b.len() >= 16, "truncated 64-bit box header");
                    (u64::from_be_bytes(b[8..16].try_into().unwrap()), 16)
                }
                s => (s, 8),
            };
            ensure!(size >= hdr as u64, "box '{}' has an impossible size {size}", fourcc(&typ));
            ensure!(
                size <= b.len() as u64,
                "box '{}' declares {size} bytes but only {} remain (truncated file?)",
                fourcc(&typ),
                b.len()
            );
            let (this, rest) = b.split_at(size as usize);
            b = rest;
            Ok(Bx { typ, body: &this[hdr..] })
        })();
        if r.is_err() {
            b = &[];
        }
        Some(r)
    })
}

fn fourcc(t: &[u8]) -> String {
    t.iter().map(|&c| if c.is_ascii_graphic() || c == b' ' { c as char } else { '?' }).collect()
}

fn child<'a>(b: &'a [u8], typ: &[u8; 4]) -> Result<Option<&'a [u8]>> {
    for bx in boxes(b) {
        let bx = bx?;
        if &bx.typ == typ {
            return Ok(Some(bx.body));
        }
    }
    Ok(None)
}

fn need<'a>(b: &'a [u8], typ: &[u8; 4]) -> Result<&'a [u8]> {
    child(b, typ)?.with_context(|| format!("missing '{}' box", fourcc(typ)))
}

/// A bounds-checked big-endian reader.
struct Rd<'a> {
    b: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Rd<'a> {
    fn new(b: &'a [u8], what: &'static str) -> Self {
        Rd { b, pos: 0, what }
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.with_context(|| format!("'{}' box is truncated", self.what))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.bytes(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.bytes(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.bytes(8)?.try_into().unwrap()))
    }
    /// A table of `n` entries of `entry` bytes each: checked against the box size first,
    /// so a corrupt count cannot make us allocate gigabytes.
    fn table(&mut self, n: u32, entry: usize) -> Result<usize> {
        let n = n as usize;
        ensure!(
            n.checked_mul(entry).is_some_and(|len| len <= self.b.len() - self.pos),
            "'{}' box declares {n} entries but is only {} bytes",
            self.what,
            self.b.len()
        );
        Ok(n)
    }
}

/// Parse the `moov` of an MP4 file held in memory, as [`parse_file`] does on disk (the same
/// walk: for fuzzing and tests).
pub fn parse(file: &[u8]) -> Result<Movie> {
    parse_at(file.len() as u64, &mut |at, buf| {
        let b = usize::try_from(at).ok().and_then(|at| file.get(at..)).and_then(|b| b.get(..buf.len()));
        buf.copy_from_slice(b.context("read past the end of the file")?);
        Ok(())
    })
}

/// The largest `moov` read (sample tables of a 24-hour 60-fps video take about 100 MB).
const MAX_MOOV: u64 = 256 << 20;

/// Parse the `moov` of an MP4 file on disk, reading only the top-level box headers and the
/// `moov` itself: the media data stays on disk (samples are read with [`Sample::read`]).
pub fn parse_file(file: &File) -> Result<Movie> {
    let len = file.metadata().context("cannot stat")?.len();
    parse_at(len, &mut |at, buf| file.read_exact_at(buf, at).context("cannot read"))
}

/// Walk the top-level boxes of a file of `len` bytes through `read_at` (offset, buffer to
/// fill), read the `moov` and parse it.
fn parse_at(len: u64, read_at: &mut dyn FnMut(u64, &mut [u8]) -> Result<()>) -> Result<Movie> {
    let mut pos = 0u64;
    let mut moov = None;
    // Fragments (offset, body), and their bytes so far.
    let (mut moofs, mut moof_bytes) = (Vec::new(), 0u64);
    while pos < len {
        let mut hdr = [0u8; 16];
        let n = (len - pos).min(16) as usize;
        ensure!(n >= 8, "{n} stray bytes where a box header should be");
        read_at(pos, &mut hdr[..n])?;
        let size32 = u32::from_be_bytes(hdr[0..4].try_into().unwrap()) as u64;
        let typ: [u8; 4] = hdr[4..8].try_into().unwrap();
        let (size, head) = match size32 {
            0 => (len - pos, 8),
            1 => {
                ensure!(n >= 16, "truncated 64-bit box header");
                (u64::from_be_bytes(hdr[8..16].try_into().unwrap()), 16)
            }
            s => (s, 8),
        };
        ensure!(size >= head, "box '{}' has an impossible size {size}", fourcc(&typ));
        ensure!(
            size <= len - pos,
            "box '{}' declares {size} bytes but only {} remain (truncated file?)",
            fourcc(&typ),
            len - pos
        );
        match &typ {
            b"moov" => {
                ensure!(size <= MAX_MOOV, "'moov' box of {size} bytes is larger than any real movie's");
                let mut body = vec![0u8; (size - head) as usize];
                read_at(pos + head, &mut body)?;
                moov = Some(body);
            }
            b"moof" => {
                moof_bytes += size;
                ensure!(
                    moof_bytes <= MAX_MOOV,
                    "fragment tables of over {MAX_MOOV} bytes are larger than any real movie's"
                );
                let mut body = vec![0u8; (size - head) as usize];
                read_at(pos + head, &mut body)?;
                moofs.push((pos, body));
            }
            _ => {}
        }
        pos += size;
    }
    let moov = moov.context("no 'moov' box (not an MP4 file, or truncated)")?;
    let (mut movie, ids) = parse_moov(&moov, len)?;
    if !moofs.is_empty() {
        fragments::apply(&mut movie, &ids, &moov, &moofs, len).context("fragmented MP4")?;
    }
    Ok(movie)
}

/// The movie, and the `track_ID` of each of its tracks.
fn parse_moov(moov: &[u8], file_len: u64) -> Result<(Movie, Vec<u32>)> {
    let mvhd = need(moov, b"mvhd")?;
    let mut r = Rd::new(mvhd, "mvhd");
    let version = r.u8()?;
    r.bytes(3 + if version == 1 { 16 } else { 8 })?;
    let movie_timescale = r.u32()?;
    let (mut tracks, mut ids) = (Vec::new(), Vec::new());
    for bx in boxes(moov) {
        let bx = bx?;
        if &bx.typ == b"trak" {
            tracks.push(parse_trak(bx.body, movie_timescale, file_len)?);
            ids.push(fragments::track_id(bx.body).unwrap_or(0));
        }
    }
    let udta = child(moov, b"udta")?.unwrap_or_default().to_vec();
    Ok((Movie { tracks, udta }, ids))
}

/// The display rotation of a `tkhd` matrix, clockwise degrees: the matrix's first row
/// (a, b) is (cos θ, sin θ) in 16.16 fixed point; anything but a quarter turn counts as 0.
fn tkhd_rotation(tkhd: &[u8]) -> Result<u16> {
    let mut r = Rd::new(tkhd, "tkhd");
    let version = r.u8()?;
    // flags; times, track id, reserved, duration; reserved, layer, group, volume, reserved
    r.bytes(3 + if version == 1 { 32 } else { 20 } + 16)?;
    let (a, b) = (r.u32()? as i32, r.u32()? as i32);
    Ok(match (a.signum(), b.signum()) {
        (0, 1) => 90,
        (-1, 0) => 180,
        (0, -1) => 270,
        _ => 0,
    })
}

fn parse_trak(trak: &[u8], movie_timescale: u32, file_len: u64) -> Result<Track> {
    let rotation = match child(trak, b"tkhd")? {
        Some(tkhd) => tkhd_rotation(tkhd)?,
        None => 0,
    };
    let mdia = need(trak, b"mdia")?;
    let mut r = Rd::new(need(mdia, b"mdhd")?, "mdhd");
    let version = r.u8()?;
    r.bytes(3 + if version == 1 { 16 } else { 8 })?;
    let timescale = r.u32()?;
    ensure!(timescale > 0, "track timescale is 0");
    let mut r = Rd::new(need(mdia, b"hdlr")?, "hdlr");
    r.bytes(8)?;
    let kind = match r.bytes(4)? {
        b"vide" => Kind::Video,
        b"soun" => Kind::Audio,
        _ => Kind::Other,
    };
    let stbl = need(need(mdia, b"minf")?, b"stbl")?;
    let codec = stsd::parse_stsd(need(stbl, b"stsd")?, timescale)?;
    let pcm_frame = match &codec {
        Codec::Pcm(p) => Some(p.frame_bytes()),
        _ => None,
    };
    let samples = parse_samples(stbl, file_len, pcm_frame)?;

    let (mut edit_media_time, mut edit_delay, mut edit_duration) = (0, 0.0, None);
    if let Some(elst) = child(trak, b"edts")?.map(|e| child(e, b"elst")).transpose()?.flatten() {
        let mut r = Rd::new(elst, "elst");
        let version = r.u8()?;
        r.bytes(3)?;
        let n = r.u32()?;
        let n = r.table(n, if version == 1 { 20 } else { 12 })?;
        for _ in 0..n {
            let (seg, media_time) =
                if version == 1 { (r.u64()?, r.u64()? as i64) } else { (r.u32()? as u64, r.u32()? as i32 as i64) };
            r.bytes(4)?; // media rate
            ensure!(media_time >= -1, "'elst' edit with a negative media time {media_time}");
            let seg_s = if movie_timescale > 0 { seg as f64 / movie_timescale as f64 } else { 0.0 };
            if media_time == -1 {
                edit_delay += seg_s;
            } else {
                // Later edits (rare outside editors) are ignored: one continuous segment.
                edit_media_time = media_time;
                edit_duration = (seg > 0).then_some(seg_s + edit_delay);
                break;
            }
        }
    }
    Ok(Track { kind, timescale, codec, samples, edit_media_time, edit_delay, edit_duration, rotation })
}

/// The sample table: sizes (`stsz`/`stz2`), chunk offsets (`stco`/`co64`) and the
/// sample-to-chunk map (`stsc`) give file positions; `stts` and `ctts` give times. With
/// `pcm_frame` (bytes per frame of uncompressed audio) the table's samples are frames, and
/// each chunk becomes one [`Sample`] of its frames, timed by its first.
fn parse_samples(stbl: &[u8], file_len: u64, pcm_frame: Option<u32>) -> Result<Vec<Sample>> {
    let stsz = child(stbl, b"stsz")?.context("missing 'stsz' box ('stz2' compact sizes are not supported)")?;
    let mut r = Rd::new(stsz, "stsz");
    r.bytes(4)?;
    let fixed = r.u32()?;
    let n = r.u32()?;
    let mut sizes = Vec::new();
    if fixed == 0 {
        ensure!(pcm_frame.is_none(), "uncompressed audio with a size for each frame ('stsz')");
        let n = r.table(n, 4)?;
        sizes.reserve(n);
        for _ in 0..n {
            sizes.push(r.u32()?);
        }
    } else {
        // Fixed size: the count is only bounded by the file it must fit in. (For PCM the
        // size is that of a frame, which the sample description says; QuickTime writes 1.)
        let each = pcm_frame.unwrap_or(fixed);
        ensure!(each as u64 * n as u64 <= file_len, "'stsz' describes more data than the file holds");
    }
    let n = n as usize;
    let size_of = |i: usize| if fixed == 0 { sizes[i] } else { fixed };

    let mut chunk_offsets = Vec::new();
    if let Some(stco) = child(stbl, b"stco")? {
        let mut r = Rd::new(stco, "stco");
        r.bytes(4)?;
        let c = r.u32()?;
        for _ in 0..r.table(c, 4)? {
            chunk_offsets.push(r.u32()? as u64);
        }
    } else {
        let mut r = Rd::new(need(stbl, b"co64")?, "co64");
        r.bytes(4)?;
        let c = r.u32()?;
        for _ in 0..r.table(c, 8)? {
            chunk_offsets.push(r.u64()?);
        }
    }

    let mut r = Rd::new(need(stbl, b"stsc")?, "stsc");
    r.bytes(4)?;
    let c = r.u32()?;
    let mut stsc = Vec::new();
    for _ in 0..r.table(c, 12)? {
        let first_chunk = r.u32()?;
        let per_chunk = r.u32()?;
        r.u32()?;
        ensure!(first_chunk >= 1, "'stsc' entry with chunk number 0");
        stsc.push((first_chunk as usize - 1, per_chunk as usize));
    }

    let beyond = |i: usize, off: u64, size: u64| -> Result<()> {
        ensure!(
            off.checked_add(size).is_some_and(|end| end <= file_len),
            "sample {i} (bytes {off}..+{size}) lies beyond the end of the file (truncated file?)"
        );
        Ok(())
    };
    let mut samples = Vec::with_capacity(if pcm_frame.is_some() { chunk_offsets.len() } else { n });
    // PCM: the frames of each chunk.
    let mut spans = Vec::new();
    let mut i = 0;
    for (e, &(first, per_chunk)) in stsc.iter().enumerate() {
        let last = stsc.get(e + 1).map_or(chunk_offsets.len(), |s| s.0.min(chunk_offsets.len()));
        for &chunk_offset in chunk_offsets.get(first..last).unwrap_or_default() {
            if let Some(frame) = pcm_frame {
                let frames = per_chunk.min(n - i);
                if frames > 0 {
                    let size = frames as u64 * frame as u64;
                    beyond(i, chunk_offset, size)?;
                    let size = u32::try_from(size).ok().context("a chunk of uncompressed audio over 4 GB")?;
                    samples.push(Sample { offset: chunk_offset, size, dts: 0, pts: 0 });
                    spans.push(frames as u64);
                    i += frames;
                }
                continue;
            }
            let mut off = chunk_offset;
            for _ in 0..per_chunk {
                if i == n {
                    break;
                }
                let size = size_of(i);
                beyond(i, off, size as u64)?;
                samples.push(Sample { offset: off, size, dts: 0, pts: 0 });
                off += size as u64;
                i += 1;
            }
        }
    }
    ensure!(i == n, "sample tables disagree: 'stsz' has {n} samples, the chunk map places {i}");

    // Decode times: each sample takes the next `span` entries of `stts` (1, or a PCM
    // chunk's frames); entries past the last sample are ignored, so a count of 2^32 - 1
    // costs nothing.
    let mut r = Rd::new(need(stbl, b"stts")?, "stts");
    r.bytes(4)?;
    let c = r.u32()?;
    let mut entries = r.table(c, 8)?;
    let (mut dts, mut left, mut delta, mut k) = (0i64, 0u64, 0i64, 0usize);
    for (j, s) in samples.iter_mut().enumerate() {
        s.dts = dts;
        s.pts = dts;
        let mut span = spans.get(j).copied().unwrap_or(1);
        while span > 0 {
            if left == 0 {
                ensure!(entries > 0, "'stts' times {k} of {n} samples");
                entries -= 1;
                left = r.u32()? as u64;
                delta = r.u32()? as i64;
                continue;
            }
            let m = span.min(left);
            dts = (m as i64)
                .checked_mul(delta)
                .and_then(|d| dts.checked_add(d))
                .context("'stts' decode times overflow")?;
            (span, left, k) = (span - m, left - m, k + m as usize);
        }
    }

    if let (Some(ctts), None) = (child(stbl, b"ctts")?, pcm_frame) {
        let mut r = Rd::new(ctts, "ctts");
        r.bytes(4)?;
        let c = r.u32()?;
        let mut k = 0usize;
        for _ in 0..r.table(c, 8)? {
            let count = r.u32()? as usize;
            // Version 0 offsets are unsigned in the spec, but muxers write negative ones
            // there too, and no real offset exceeds 2^31: read both versions as signed.
            let off = r.u32()? as i32 as i64;
            // As in `stts`, entries past the last sample are ignored.
            for s in &mut samples[k..k + count.min(n - k)] {
                s.pts = s.dts.checked_add(off).context("'ctts' presentation times overflow")?;
            }
            k += count.min(n - k);
        }
    }
    Ok(samples)
}

/// iTunes gapless info (`iTunSMPB` in `udta`): (priming samples, total valid samples).
pub fn itunes_smpb(udta: &[u8]) -> Option<(u64, u64)> {
    let key = b"iTunSMPB";
    let at = udta.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &udta[at..];
    // The value is the payload of the following 'data' box, after 8 bytes of type/locale.
    let d = rest.windows(4).position(|w| w == b"data")?;
    let size = u32::from_be_bytes(rest.get(d.checked_sub(4)?..d)?.try_into().ok()?) as usize;
    let text = rest.get(d + 12..(d - 4).checked_add(size)?)?;
    let text = std::str::from_utf8(text).ok()?;
    let f: Vec<u64> = text.split_whitespace().filter_map(|h| u64::from_str_radix(h, 16).ok()).collect();
    // Fields: 0, priming, padding, valid sample count, ...
    match f.as_slice() {
        [_, priming, _, total, ..] => Some((*priming, *total)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
