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
use symphonia::core::io::MediaSourceStream;
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
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(e) = extension {
        hint.with_extension(e);
    }
    let reader = symphonia::default::get_probe()
        .probe(&hint, mss, FormatOptions::default(), MetadataOptions::default())
        .map_err(|e| match e {
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
