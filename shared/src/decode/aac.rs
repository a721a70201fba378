//! AAC-LC (and MP3-in-MP4) decoding (symphonia) of an MP4 audio track, trimmed so that
//! sample 0 is presentation time 0.
//!
//! AAC encoders prepend "priming" samples (1024 for ffmpeg/libfdk, 2112 for Apple) that the
//! decoder's output still contains. The container says how many: the edit list's
//! `media_time`, or iTunes' `iTunSMPB` tag when there is no edit list. Left in, they would
//! shift the audio ~21-44 ms against the video and against the WAV the model trained on.

use super::mp4::{self, Codec, Track};
use super::stream::{Decoded, Packets};
use anyhow::{anyhow, bail, ensure, Result};
use std::fs::File;
use symphonia::core::codecs::audio::well_known::{CODEC_ID_AAC, CODEC_ID_MP3};
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::packet::PacketRef;
use symphonia::core::units::{Duration, Timestamp};
use symphonia::default::codecs::{AacDecoder, MpaDecoder};

/// The packets of an MP4 audio track, decoded one at a time.
pub(super) struct Mp4Packets {
    file: File,
    track: Track,
    dec: Box<dyn AudioDecoder>,
    /// Samples per packet, for the packets' nominal durations.
    frame: u64,
    next: usize,
    data: Vec<u8>,
    rate: u32,
}

impl Packets for Mp4Packets {
    fn next_packet(&mut self, out: &mut Vec<Vec<f32>>) -> Result<bool> {
        let i = self.next;
        let Some(s) = self.track.samples.get(i) else { return Ok(false) };
        self.next += 1;
        s.read(&self.file, &mut self.data)?;
        let packet = PacketRef::new(0, Timestamp::new(s.dts), Duration::new(self.frame), &self.data);
        let buf = self.dec.decode_ref(&packet).map_err(|e| anyhow!("corrupt audio frame {i}: {e}"))?;
        self.rate = buf.spec().rate();
        buf.copy_to_vecs_planar(out);
        Ok(true)
    }

    fn frames_hint(&self) -> Option<u64> {
        Some(self.track.samples.len() as u64 * self.frame)
    }
}

/// Open `track` (of `movie`, parsed from `file`) for streaming, trimmed so that frame 0 is
/// presentation time 0.
pub(super) fn open(file: File, movie: &mp4::Movie, track: &Track) -> Result<Decoded<Mp4Packets>> {
    let mut params = AudioCodecParameters::new();
    let opts = AudioDecoderOptions::default();
    let (dec, frame): (Box<dyn AudioDecoder>, u64) = match &track.codec {
        Codec::Aac { asc } => {
            params.codec = CODEC_ID_AAC;
            params.extra_data = Some(asc.clone().into_boxed_slice());
            let dec = AacDecoder::try_new(&params, &opts)
                .map_err(|e| anyhow!("unsupported AAC stream ({e}); only AAC-LC mono/stereo is decoded"))?;
            (Box::new(dec), 1024)
        }
        Codec::Mp3 => {
            params.codec = CODEC_ID_MP3;
            (Box::new(MpaDecoder::try_new(&params, &opts).map_err(|e| anyhow!("MP3 in MP4: {e}"))?), 1152)
        }
        _ => bail!("audio track is neither AAC nor MP3"),
    };
    ensure!(!track.samples.is_empty(), "audio track has no samples");
    let packets = Mp4Packets { file, track: track.clone(), dec, frame, next: 0, data: Vec::new(), rate: 0 };
    let smpb = mp4::itunes_smpb(&movie.udta);
    Decoded::new(
        packets,
        |p| p.rate,
        |rate| {
            // Priming and length in output samples. The edit list counts in media ticks,
            // which for AAC in MP4 are samples at the track rate.
            let to_out = |ticks: i64| (ticks as f64 * rate as f64 / track.timescale as f64).round().max(0.0) as u64;
            let (skip, keep) = if track.edit_media_time > 0 || track.edit_duration.is_some() {
                let keep = track.edit_duration.map(|d| (d * rate as f64).round().max(0.0) as u64);
                (to_out(track.edit_media_time), keep)
            } else if let Some((priming, total)) = smpb {
                (priming, Some(total))
            } else {
                (0, None)
            };
            // A leading empty edit delays the audio: silence first.
            let delay = (track.edit_delay * rate as f64).round().max(0.0) as u64;
            (skip, keep, delay)
        },
    )
}
