//! A small ISO-BMFF (MP4) demuxer: just enough of `moov` to locate every sample of one
//! H.264 and one AAC track, with decode and composition times and the edit list.
//!
//! Hand-written rather than a crate so that every size and offset read from the file is
//! checked before use: corrupt or truncated input must give an error, never a panic or a
//! huge allocation. Fragmented MP4 (`moof`) is not supported (the dataset and cameras we
//! record from write a plain `moov`).

use anyhow::{bail, ensure, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// The codec of a track, with what its decoder needs from the sample description.
#[derive(Clone, Debug)]
pub enum Codec {
    /// H.264 in AVCC form: the `avcC` record (parameter sets, NAL length size).
    Avc { avcc: Vec<u8>, width: u16, height: u16 },
    /// MPEG-4 audio (AAC): the AudioSpecificConfig from `esds`.
    Aac { asc: Vec<u8> },
    /// MPEG-1/2 layer III in `mp4a` (object type 0x69 / 0x6B), as some phones record it.
    Mp3,
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

/// Parse the `moov` of an MP4 file held in memory (what [`parse_file`] does on disk; for
/// fuzzing and tests).
pub fn parse(file: &[u8]) -> Result<Movie> {
    let mut moov = None;
    for bx in boxes(file) {
        let bx = bx?;
        match &bx.typ {
            b"moov" => moov = Some(bx.body),
            b"moof" => bail!("fragmented MP4 ('moof') is not supported"),
            _ => {}
        }
    }
    parse_moov(moov.context("no 'moov' box (not an MP4 file, or truncated)")?, file.len() as u64)
}

/// The largest `moov` read (sample tables of a 24-hour 60-fps video take about 100 MB).
const MAX_MOOV: u64 = 256 << 20;

/// Parse the `moov` of an MP4 file on disk, reading only the top-level box headers and the
/// `moov` itself: the media data stays on disk (samples are read with [`Sample::read`]).
pub fn parse_file(file: &File) -> Result<Movie> {
    let len = file.metadata().context("cannot stat")?.len();
    let mut pos = 0u64;
    let mut moov = None;
    while pos < len {
        let mut hdr = [0u8; 16];
        let n = (len - pos).min(16) as usize;
        ensure!(n >= 8, "{n} stray bytes where a box header should be");
        file.read_exact_at(&mut hdr[..n], pos).context("cannot read")?;
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
                file.read_exact_at(&mut body, pos + head).context("cannot read")?;
                moov = Some(body);
            }
            b"moof" => bail!("fragmented MP4 ('moof') is not supported"),
            _ => {}
        }
        pos += size;
    }
    parse_moov(&moov.context("no 'moov' box (not an MP4 file, or truncated)")?, len)
}

fn parse_moov(moov: &[u8], file_len: u64) -> Result<Movie> {
    let mvhd = need(moov, b"mvhd")?;
    let mut r = Rd::new(mvhd, "mvhd");
    let version = r.u8()?;
    r.bytes(3 + if version == 1 { 16 } else { 8 })?;
    let movie_timescale = r.u32()?;
    let mut tracks = Vec::new();
    for bx in boxes(moov) {
        let bx = bx?;
        if &bx.typ == b"trak" {
            tracks.push(parse_trak(bx.body, movie_timescale, file_len)?);
        }
    }
    let udta = child(moov, b"udta")?.unwrap_or_default().to_vec();
    Ok(Movie { tracks, udta })
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
    let codec = parse_stsd(need(stbl, b"stsd")?)?;
    let samples = parse_samples(stbl, file_len)?;

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

fn parse_stsd(stsd: &[u8]) -> Result<Codec> {
    let mut r = Rd::new(stsd, "stsd");
    r.bytes(8)?; // version, flags, entry count
    let entry = boxes(&stsd[8..]).next().context("empty 'stsd' box")??;
    let body = entry.body;
    match &entry.typ {
        b"avc1" | b"avc3" => {
            let mut r = Rd::new(body, "avc1");
            r.bytes(24)?;
            let width = r.u16()?;
            let height = r.u16()?;
            r.bytes(50)?;
            let avcc = need(&body[78..], b"avcC")?.to_vec();
            Ok(Codec::Avc { avcc, width, height })
        }
        b"mp4a" => {
            // Channels and rate come from the AudioSpecificConfig, which the decoder reads.
            let mut r = Rd::new(body, "mp4a");
            r.bytes(8)?; // reserved, data reference index
            let version = r.u16()?;
            let skip = match version {
                0 => 28,
                1 => 28 + 16,
                2 => 28 + 36,
                v => bail!("unsupported 'mp4a' sample entry version {v}"),
            };
            ensure!(body.len() >= skip, "'mp4a' box is truncated");
            // ISO files put `esds` in the sample entry; QuickTime (iPhone, HandBrake MOV)
            // puts it in a `wave` box there (sound description versions 1 and 2).
            let entries = &body[skip..];
            let esds = match child(entries, b"esds")? {
                Some(e) => e,
                None => match child(entries, b"wave")? {
                    Some(wave) => need(wave, b"esds").context("QuickTime 'wave' box")?,
                    None => bail!("missing 'esds' box (in the 'mp4a' sample entry or its QuickTime 'wave' box)"),
                },
            };
            let (oti, asc) = parse_esds(esds)?;
            match (oti, asc) {
                (0x40 | 0x66 | 0x67, Some(asc)) => Ok(Codec::Aac { asc }),
                (0x40 | 0x66 | 0x67, None) => bail!("'esds' has no decoder specific info (AudioSpecificConfig)"),
                // Not AAC: the file is still readable (its video, its other tracks); the audio
                // decoder names the codec when asked for this track.
                (0x69 | 0x6B, _) => Ok(Codec::Mp3),
                (oti, _) => Ok(Codec::Other(format!("mp4a object type {oti:#04x}"))),
            }
        }
        t => Ok(Codec::Other(fourcc(t))),
    }
}

/// `esds`: the DecoderConfigDescriptor's object type and the DecoderSpecificInfo (which
/// MP3 and some other object types do not carry).
fn parse_esds(esds: &[u8]) -> Result<(u8, Option<Vec<u8>>)> {
    fn descriptor<'a>(r: &mut Rd<'a>) -> Result<(u8, &'a [u8])> {
        let tag = r.u8()?;
        let mut len = 0usize;
        for _ in 0..4 {
            let b = r.u8()?;
            len = (len << 7) | (b & 0x7f) as usize;
            if b & 0x80 == 0 {
                break;
            }
        }
        Ok((tag, r.bytes(len)?))
    }
    let mut r = Rd::new(esds, "esds");
    r.bytes(4)?;
    let (tag, es) = descriptor(&mut r)?;
    ensure!(tag == 3, "'esds' does not start with an ES descriptor");
    let mut r = Rd::new(es, "esds");
    r.bytes(2)?;
    let flags = r.u8()?;
    if flags & 0x80 != 0 {
        r.bytes(2)?;
    }
    if flags & 0x40 != 0 {
        let n = r.u8()? as usize;
        r.bytes(n)?;
    }
    if flags & 0x20 != 0 {
        r.bytes(2)?;
    }
    while r.pos < r.b.len() {
        let (tag, dc) = descriptor(&mut r)?;
        if tag != 4 {
            continue;
        }
        let mut r = Rd::new(dc, "esds");
        let oti = r.u8()?;
        r.bytes(12)?;
        while r.pos < r.b.len() {
            let (tag, dsi) = descriptor(&mut r)?;
            if tag == 5 {
                return Ok((oti, Some(dsi.to_vec())));
            }
        }
        return Ok((oti, None));
    }
    bail!("'esds' has no decoder config descriptor")
}

/// The sample table: sizes (`stsz`/`stz2`), chunk offsets (`stco`/`co64`) and the
/// sample-to-chunk map (`stsc`) give file positions; `stts` and `ctts` give times.
fn parse_samples(stbl: &[u8], file_len: u64) -> Result<Vec<Sample>> {
    let mut sizes = Vec::new();
    if let Some(stsz) = child(stbl, b"stsz")? {
        let mut r = Rd::new(stsz, "stsz");
        r.bytes(4)?;
        let fixed = r.u32()?;
        let n = r.u32()?;
        if fixed == 0 {
            let n = r.table(n, 4)?;
            sizes.reserve(n);
            for _ in 0..n {
                sizes.push(r.u32()?);
            }
        } else {
            // Fixed size: the count is only bounded by the file it must fit in.
            ensure!(fixed as u64 * n as u64 <= file_len, "'stsz' describes more data than the file holds");
            sizes = vec![fixed; n as usize];
        }
    } else {
        bail!("missing 'stsz' box ('stz2' compact sizes are not supported)");
    }
    let n = sizes.len();

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

    let mut samples = Vec::with_capacity(n);
    let mut i = 0;
    for (e, &(first, per_chunk)) in stsc.iter().enumerate() {
        let last = stsc.get(e + 1).map_or(chunk_offsets.len(), |s| s.0.min(chunk_offsets.len()));
        for &chunk_offset in chunk_offsets.get(first..last).unwrap_or_default() {
            let mut off = chunk_offset;
            for _ in 0..per_chunk {
                if i == n {
                    break;
                }
                let size = sizes[i];
                ensure!(
                    off.checked_add(size as u64).is_some_and(|end| end <= file_len),
                    "sample {i} (bytes {off}..+{size}) lies beyond the end of the file (truncated file?)"
                );
                samples.push(Sample { offset: off, size, dts: 0, pts: 0 });
                off += size as u64;
                i += 1;
            }
        }
    }
    ensure!(i == n, "sample tables disagree: 'stsz' has {n} samples, the chunk map places {i}");

    let mut r = Rd::new(need(stbl, b"stts")?, "stts");
    r.bytes(4)?;
    let c = r.u32()?;
    let (mut dts, mut k) = (0i64, 0usize);
    for _ in 0..r.table(c, 8)? {
        let count = r.u32()? as usize;
        let delta = r.u32()? as i64;
        // Entries past the last sample are ignored: a count of 2^32 - 1 must not loop.
        for s in &mut samples[k..k + count.min(n - k)] {
            s.dts = dts;
            s.pts = dts;
            dts = dts.checked_add(delta).context("'stts' decode times overflow")?;
        }
        k += count.min(n - k);
    }
    ensure!(k == n, "'stts' times {k} of {n} samples");

    if let Some(ctts) = child(stbl, b"ctts")? {
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
