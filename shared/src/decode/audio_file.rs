//! Audio files other than MP4/MOV: whatever symphonia's readers and codecs (the features in
//! the workspace Cargo.toml) decode — FLAC, OGG Vorbis, MP3, WAV in every PCM variant
//! (8-bit unsigned, A-law/µ-law, ADPCM, 24/32-bit, float), AIFF, CAF, ALAC — at any rate
//! and channel count. Encoder delay and padding (MP3's LAME header, Vorbis' granule
//! positions) are trimmed by symphonia's gapless decoding, so sample 0 is time 0.

use crate::wav::Audio;
use anyhow::{anyhow, bail, ensure, Context, Result};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// File name extensions of the audio files [`decode`] is meant for (the product's own
/// WAV reader and the MP4 demuxer take `wav`, `mp4`, `m4a`, `mov` first).
pub const AUDIO_EXTENSIONS: [&str; 11] =
    ["wav", "flac", "ogg", "oga", "mp3", "aif", "aiff", "aifc", "caf", "m4a", "wave"];

/// Decode a whole audio file held in memory; `extension` helps the format probe.
pub fn decode(bytes: &[u8], extension: Option<&str>) -> Result<Audio> {
    let source = std::io::Cursor::new(bytes.to_vec());
    let mss = MediaSourceStream::new(Box::new(source), Default::default());
    let mut hint = Hint::new();
    if let Some(e) = extension {
        hint.with_extension(e);
    }
    let mut reader = symphonia::default::get_probe()
        .probe(&hint, mss, FormatOptions::default(), MetadataOptions::default())
        .map_err(|_| {
            anyhow!("not an audio format this build reads (WAV, FLAC, OGG Vorbis, MP3, AIFF, CAF, MP4/M4A)")
        })?;
    let track = reader.default_track(TrackType::Audio).context("no audio track")?;
    let id = track.id;
    let params =
        track.codec_params.as_ref().and_then(|p| p.audio()).context("the audio track has no codec parameters")?.clone();
    let mut dec = symphonia::default::get_codecs()
        // Gapless (the default, set here to be explicit): the decoder itself drops the delay
        // and padding frames the packets mark.
        .make_audio_decoder(&params, &AudioDecoderOptions::default().gapless(true))
        .map_err(|e| anyhow!("unsupported audio codec ({e})"))?;

    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut scratch: Vec<Vec<f32>> = Vec::new();
    let mut sample_rate = 0;
    let mut packets = 0usize;
    while let Some(packet) = reader.next_packet().map_err(|e| anyhow!("corrupt stream after {packets} packets: {e}"))? {
        if packet.track_id != id {
            continue;
        }
        let buf = dec.decode(&packet).map_err(|e| anyhow!("corrupt audio packet {packets}: {e}"))?;
        packets += 1;
        sample_rate = buf.spec().rate();
        buf.copy_to_vecs_planar(&mut scratch);
        if channels.is_empty() {
            channels = vec![Vec::new(); scratch.len()];
        }
        ensure!(scratch.len() == channels.len(), "the channel count changed at packet {packets}");
        for (c, s) in channels.iter_mut().zip(&scratch) {
            c.extend_from_slice(s);
        }
    }
    if channels.is_empty() || channels[0].is_empty() || sample_rate == 0 {
        bail!("no audio samples");
    }
    Ok(Audio { sample_rate, channels })
}
