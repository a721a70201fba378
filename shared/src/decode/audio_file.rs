//! Audio files other than MP4/MOV: whatever symphonia's readers and codecs (the features in
//! the workspace Cargo.toml) decode — FLAC, OGG Vorbis, MP3, WAV in every PCM variant
//! (8-bit unsigned, A-law/µ-law, ADPCM, 24/32-bit, float), AIFF, CAF, ALAC — at any rate
//! and channel count. Encoder delay and padding (MP3's LAME header, Vorbis' granule
//! positions) are trimmed by symphonia's gapless decoding, so sample 0 is time 0.

use super::stream::{Decoded, Packets};
use anyhow::{anyhow, Context, Result};
use std::fs::File;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::FormatReader;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

/// File name extensions of audio files (the product's own WAV reader and MP4 demuxer take
/// `wav`, `m4a` and `m4b` first; [`open`] the rest; `aac` is raw ADTS).
pub const AUDIO_EXTENSIONS: [&str; 13] =
    ["wav", "flac", "ogg", "oga", "mp3", "aif", "aiff", "aifc", "caf", "m4a", "m4b", "aac", "wave"];

/// File name extensions of videos (ISO base media: MP4, QuickTime MOV, 3GPP).
pub const VIDEO_EXTENSIONS: [&str; 5] = ["mp4", "m4v", "mov", "3gp", "3g2"];

/// Packets of the default audio track, as symphonia decodes them.
pub(super) struct SymphoniaPackets {
    reader: Box<dyn FormatReader>,
    dec: Box<dyn AudioDecoder>,
    track: u32,
    packets: usize,
    rate: u32,
    frames: Option<u64>,
}

impl Packets for SymphoniaPackets {
    fn next_packet(&mut self, out: &mut Vec<Vec<f32>>) -> Result<bool> {
        loop {
            let packet =
                self.reader.next_packet().map_err(|e| anyhow!("corrupt stream after {} packets: {e}", self.packets))?;
            let Some(packet) = packet else { return Ok(false) };
            if packet.track_id != self.track {
                continue;
            }
            let buf = self.dec.decode(&packet).map_err(|e| anyhow!("corrupt audio packet {}: {e}", self.packets))?;
            self.packets += 1;
            self.rate = buf.spec().rate();
            buf.copy_to_vecs_planar(out);
            // Gapless trimming can leave a packet empty: go on to the next.
            if out.first().is_some_and(|c| !c.is_empty()) {
                return Ok(true);
            }
        }
    }

    fn frames_hint(&self) -> Option<u64> {
        self.frames
    }
}

/// Open an audio file for streaming; `extension` helps the format probe.
pub(super) fn open(file: File, extension: Option<&str>) -> Result<Decoded<SymphoniaPackets>> {
    let probe = |source: Box<dyn MediaSource>| {
        let mss = MediaSourceStream::new(source, Default::default());
        let mut hint = Hint::new();
        if let Some(e) = extension {
            hint.with_extension(e);
        }
        symphonia::default::get_probe().probe(&hint, mss, FormatOptions::default(), MetadataOptions::default())
    };
    let reader = match probe(Box::new(file.try_clone().context("cannot read")?)) {
        // A FLAC whose metadata the reader refuses (a cue sheet off the CD grid, a broken
        // picture block) still holds good audio: read it with the stream info alone.
        Err(e) if !matches!(e, SymphoniaError::Unsupported(_)) => match FlacAudioOnly::new(file) {
            Ok(Some(f)) => probe(Box::new(f)).map_err(|_| e),
            _ => Err(e),
        },
        r => r,
    };
    let reader = reader.map_err(|e| match e {
        SymphoniaError::Unsupported(_) => {
            anyhow!("not an audio format this build reads (WAV, FLAC, OGG Vorbis, MP3, AIFF, CAF, MP4/M4A)")
        }
        // The format was recognised, and its headers are broken (or stricter than the
        // reader: a FLAC cue sheet off the CD grid).
        e => anyhow!("malformed file ({})", e.to_string().replace(": ", " ")),
    })?;
    let track = reader.default_track(TrackType::Audio).context("no audio track")?;
    let id = track.id;
    let frames = track.num_frames;
    let params =
        track.codec_params.as_ref().and_then(|p| p.audio()).context("the audio track has no codec parameters")?.clone();
    let dec = symphonia::default::get_codecs()
        // Gapless (the default, set here to be explicit): the decoder itself drops the delay
        // and padding frames the packets mark.
        .make_audio_decoder(&params, &AudioDecoderOptions::default().gapless(true))
        .map_err(|e| anyhow!("unsupported audio codec ({e})"))?;
    let packets = SymphoniaPackets { reader, dec, track: id, packets: 0, rate: 0, frames };
    Decoded::new(packets, |p| p.rate, |_| Ok((0, None, 0)))
}

/// A FLAC file as its `fLaC` marker, its STREAMINFO block (marked as the last one) and its
/// audio frames: the other metadata blocks left out.
struct FlacAudioOnly {
    head: Vec<u8>,
    file: File,
    /// Where the frames start in the file.
    frames_at: u64,
    len: u64,
    pos: u64,
}

impl FlacAudioOnly {
    /// `None` when the file is not a FLAC with a STREAMINFO block first.
    fn new(file: File) -> Result<Option<FlacAudioOnly>> {
        use std::os::unix::fs::FileExt;
        let file_len = file.metadata()?.len();
        let mut head = [0u8; 42];
        if file_len < 42 || file.read_exact_at(&mut head, 0).is_err() || &head[..4] != b"fLaC" || head[4] & 0x7F != 0 {
            return Ok(None);
        }
        // Walk the metadata block headers to the first frame.
        let (mut at, mut hdr) = (4u64, [0u8; 4]);
        loop {
            if at + 4 > file_len {
                return Ok(None);
            }
            file.read_exact_at(&mut hdr, at)?;
            at += 4 + u32::from_be_bytes([0, hdr[1], hdr[2], hdr[3]]) as u64;
            if hdr[0] & 0x80 != 0 {
                break;
            }
        }
        if at > file_len {
            return Ok(None);
        }
        let mut head = head.to_vec();
        head[4] |= 0x80;
        let len = head.len() as u64 + file_len - at;
        Ok(Some(FlacAudioOnly { head, file, frames_at: at, len, pos: 0 }))
    }
}

impl std::io::Read for FlacAudioOnly {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let h = self.head.len() as u64;
        let n = if self.pos < h {
            let k = ((h - self.pos) as usize).min(buf.len());
            buf[..k].copy_from_slice(&self.head[self.pos as usize..self.pos as usize + k]);
            k
        } else {
            self.file.read_at(buf, self.frames_at + self.pos - h)?
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for FlacAudioOnly {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

impl MediaSource for FlacAudioOnly {
    fn is_seekable(&self) -> bool {
        true
    }
    fn byte_len(&self) -> Option<u64> {
        Some(self.len)
    }
}
