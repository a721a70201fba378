//! Sample descriptions (`stsd`): which codec a track holds, and what its decoder needs.
//!
//! Sound descriptions come in the ISO form (version 0) and QuickTime's versions 1 and 2
//! (iPhone, HandBrake, cameras writing MOV): version 1 adds four sizes, version 2 moves the
//! rate, channels and sample format into fields of its own; both may keep the codec's
//! configuration (`esds`, `alac`, the byte order `enda`) inside a `wave` box.

use super::{boxes, child, fourcc, need, Codec, Rd};
use anyhow::{bail, ensure, Context, Result};

/// Uncompressed audio as QuickTime describes it (`lpcm`, `sowt`, `twos`, `raw `, `in24`,
/// `in32`, `fl32`, `fl64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pcm {
    pub channels: u16,
    /// Frames per second (the track's timescale when the description says 0).
    pub rate: u32,
    /// Bits per sample: 8, 16, 24, 32 or 64.
    pub bits: u16,
    pub float: bool,
    pub big_endian: bool,
    /// Signed integers (all but `raw `, which is unsigned 8-bit).
    pub signed: bool,
}

impl Pcm {
    /// Bytes per frame (one sample of every channel).
    pub fn frame_bytes(&self) -> u32 {
        self.channels as u32 * self.bits as u32 / 8
    }
}

/// The fields of a sound sample description every version has, and where its child boxes
/// start.
struct Sound<'a> {
    version: u16,
    channels: u16,
    bits: u16,
    rate: u32,
    /// Version 2: (rate, channels, bits per channel, format flags).
    v2: Option<(f64, u32, u32, u32)>,
    children: &'a [u8],
}

fn sound<'a>(body: &'a [u8], what: &'static str) -> Result<Sound<'a>> {
    let mut r = Rd::new(body, what);
    r.bytes(8)?; // reserved, data reference index
    let version = r.u16()?;
    r.bytes(6)?; // revision, vendor
    let channels = r.u16()?;
    let bits = r.u16()?;
    r.bytes(4)?; // compression id, packet size
    let rate = r.u32()? >> 16;
    let mut v2 = None;
    match version {
        0 => {}
        1 => drop(r.bytes(16)?),
        2 => {
            r.bytes(4)?; // size of the struct
            let rate = f64::from_bits(r.u64()?);
            let channels = r.u32()?;
            r.bytes(4)?; // always 0x7F000000
            let bits = r.u32()?;
            let flags = r.u32()?;
            r.bytes(8)?; // bytes per packet, frames per packet
            v2 = Some((rate, channels, bits, flags));
        }
        v => bail!("unsupported '{what}' sound description version {v}"),
    }
    Ok(Sound { version, channels, bits, rate, v2, children: &body[r.pos..] })
}

/// A child of the sound description, or of its QuickTime `wave` box.
fn sound_child<'a>(s: &Sound<'a>, typ: &[u8; 4]) -> Result<Option<&'a [u8]>> {
    if let Some(b) = child(s.children, typ)? {
        return Ok(Some(b));
    }
    match child(s.children, b"wave")? {
        Some(wave) => child(wave, typ),
        None => Ok(None),
    }
}

/// The codec of the first sample description (`timescale`: the track's, for PCM whose
/// description leaves the rate out).
pub(super) fn parse_stsd(stsd: &[u8], timescale: u32) -> Result<Codec> {
    let mut r = Rd::new(stsd, "stsd");
    r.bytes(8)?; // version, flags, entry count
    let entry = boxes(&stsd[8..]).next().context("empty 'stsd' box")??;
    let body = entry.body;
    match &entry.typ {
        b"avc1" | b"avc3" | b"hvc1" | b"hev1" => {
            // VisualSampleEntry: 24 bytes, width, height, 50 bytes, then the boxes.
            let mut r = Rd::new(body, "visual sample entry");
            r.bytes(24)?;
            let width = r.u16()?;
            let height = r.u16()?;
            r.bytes(50)?;
            if entry.typ.starts_with(b"avc") {
                let avcc = need(&body[78..], b"avcC")?.to_vec();
                Ok(Codec::Avc { avcc, width, height })
            } else {
                let hvcc = need(&body[78..], b"hvcC")?.to_vec();
                Ok(Codec::Hevc { hvcc, width, height })
            }
        }
        b"mp4a" => {
            // Channels and rate come from the AudioSpecificConfig, which the decoder reads.
            let s = sound(body, "mp4a")?;
            let esds = sound_child(&s, b"esds")?
                .context("missing 'esds' box (in the 'mp4a' sample entry or its QuickTime 'wave' box)")?;
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
        b"alac" => {
            // Apple Lossless: the `alac` box holds version and flags, then the 24-byte
            // ALACSpecificConfig (the decoder's "magic cookie").
            let s = sound(body, "alac")?;
            let config = sound_child(&s, b"alac")?.context("missing 'alac' configuration box")?;
            let cookie = config.get(4..28).context("'alac' configuration box is truncated")?;
            Ok(Codec::Alac { cookie: cookie.to_vec() })
        }
        t @ (b"lpcm" | b"sowt" | b"twos" | b"raw " | b"in24" | b"in32" | b"fl32" | b"fl64") => {
            Ok(Codec::Pcm(pcm(t, &sound(body, "lpcm")?, timescale)?))
        }
        t => Ok(Codec::Other(fourcc(t))),
    }
}

/// The sample format of an uncompressed sound description.
fn pcm(typ: &[u8; 4], s: &Sound, timescale: u32) -> Result<Pcm> {
    // `in24`, `in32`, `fl32` and `fl64` are big-endian unless an `enda` box says otherwise.
    let little =
        || -> Result<bool> { Ok(sound_child(s, b"enda")?.and_then(|e| e.get(..2)).is_some_and(|v| v != [0, 0])) };
    let (channels, rate) = (s.channels as u32, s.rate as f64);
    let (bits, float, big_endian, signed, channels, rate) = match typ {
        b"raw " => (s.bits as u32, false, true, false, channels, rate),
        b"twos" => (s.bits as u32, false, true, true, channels, rate),
        b"sowt" => (s.bits as u32, false, false, true, channels, rate),
        b"in24" => (24, false, !little()?, true, channels, rate),
        b"in32" => (32, false, !little()?, true, channels, rate),
        b"fl32" => (32, true, !little()?, true, channels, rate),
        b"fl64" => (64, true, !little()?, true, channels, rate),
        _ => {
            // `lpcm` says it all in version 2's fields: flags 1 float, 2 big-endian, 4 signed.
            let (rate, channels, bits, flags) =
                s.v2.with_context(|| format!("'lpcm' in a version {} sound description", s.version))?;
            (bits, flags & 1 != 0, flags & 2 != 0, flags & 4 != 0 || flags & 1 != 0, channels, rate)
        }
    };
    let name = fourcc(typ);
    ensure!(
        matches!((float, bits), (false, 8 | 16 | 24 | 32) | (true, 32 | 64)),
        "'{name}' audio of {bits}-bit {} samples is not supported",
        if float { "float" } else { "integer" }
    );
    ensure!(signed || bits == 8, "'{name}' audio of unsigned {bits}-bit samples is not supported");
    ensure!((1..=64).contains(&channels), "'{name}' audio with {channels} channels");
    let rate = if rate >= 1.0 { rate } else { timescale as f64 };
    ensure!(rate.fract() == 0.0 && (1.0..=1_536_000.0).contains(&rate), "'{name}' audio at {rate} Hz");
    Ok(Pcm { channels: channels as u16, rate: rate as u32, bits: bits as u16, float, big_endian, signed })
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
