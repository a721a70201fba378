//! AAC-LC (and MP3 and ALAC in MP4) decoding (symphonia) of an MP4 audio track, trimmed so
//! that sample 0 is presentation time 0.
//!
//! AAC encoders prepend "priming" samples (1024 for ffmpeg/libfdk, 2112 for Apple) that the
//! decoder's output still contains. The container says how many: the edit list's
//! `media_time`, or iTunes' `iTunSMPB` tag when there is no edit list. Left in, they would
//! shift the audio ~21-44 ms against the video and against the WAV the model trained on.

use super::asc::AacConfig;
use super::mp4::{self, Codec, Track};
use super::stream::{Decoded, Packets};
use anyhow::{anyhow, bail, ensure, Result};
use std::fs::File;
use symphonia::core::codecs::audio::well_known::{CODEC_ID_AAC, CODEC_ID_ALAC, CODEC_ID_MP3};
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::packet::PacketRef;
use symphonia::core::units::{Duration, Timestamp};
use symphonia::default::codecs::{AacDecoder, AlacDecoder, MpaDecoder};

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
    /// What the decoding leaves out (HE-AAC's upper band).
    note: Option<String>,
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

    fn note(&self) -> Option<String> {
        self.note.clone()
    }
}

/// Open `track` (of `movie`, parsed from `file`) for streaming, trimmed so that frame 0 is
/// presentation time 0.
pub(super) fn open(file: File, movie: &mp4::Movie, track: &Track) -> Result<Decoded<Mp4Packets>> {
    let mut params = AudioCodecParameters::new();
    let opts = AudioDecoderOptions::default();
    let mut note = None;
    let (dec, frame): (Box<dyn AudioDecoder>, u64) = match &track.codec {
        Codec::Aac { asc } => {
            let cfg = AacConfig::parse(asc).map_err(|e| anyhow!("bad AAC configuration ({e})"))?;
            // The decoder reads AAC-LC, mono or stereo: HE-AAC through its core.
            let what = cfg.describe();
            ensure!(
                matches!(cfg.channel_config, 1 | 2),
                "{what} is not decoded (only mono and stereo AAC are, not surround)"
            );
            if cfg.he_rate.is_some() {
                note = Some(format!(
                    "audio: {what} decoded without its SBR band (nothing above {} Hz{})",
                    cfg.rate / 2,
                    if cfg.object_type == 29 { ", mono" } else { "" }
                ));
            }
            let config = cfg.lc.clone().unwrap_or_else(|| asc.clone());
            params.codec = CODEC_ID_AAC;
            params.extra_data = Some(config.into_boxed_slice());
            let dec = AacDecoder::try_new(&params, &opts)
                .map_err(|e| anyhow!("{what} is not decoded ({})", e.to_string().replace(": ", " ")))?;
            (Box::new(dec), 1024)
        }
        Codec::Mp3 => {
            params.codec = CODEC_ID_MP3;
            (Box::new(MpaDecoder::try_new(&params, &opts).map_err(|e| anyhow!("MP3 in MP4: {e}"))?), 1152)
        }
        Codec::Alac { cookie } => {
            params.codec = CODEC_ID_ALAC;
            params.extra_data = Some(cookie.clone().into_boxed_slice());
            let dec = AlacDecoder::try_new(&params, &opts).map_err(|e| anyhow!("Apple Lossless (ALAC): {e}"))?;
            // The cookie starts with the frames per packet (4096 from Apple's encoders).
            let frame = u32::from_be_bytes(cookie[..4].try_into().unwrap()).max(1);
            (Box::new(dec), frame as u64)
        }
        _ => bail!("audio track is neither AAC, MP3 nor ALAC"),
    };
    ensure!(!track.samples.is_empty(), "audio track has no samples");
    let packets = Mp4Packets { file, track: track.clone(), dec, frame, next: 0, data: Vec::new(), rate: 0, note };
    let frames = track.samples.len() as u64 * frame;
    Decoded::new(packets, |p| p.rate, |rate| trim(rate, movie, track, frames))
}

/// How to cut the decoder's output (at `rate`, about `frames` frames) to what the container
/// presents: (frames to skip: priming, by the edit list or by iTunes' `iTunSMPB` without
/// one; frames to keep, if the container says; frames of silence first: a leading empty
/// edit). A delay longer than the audio (and than a second) is a corrupt edit list.
pub(super) fn trim(rate: u32, movie: &mp4::Movie, track: &Track, frames: u64) -> Result<(u64, Option<u64>, u64)> {
    // The edit list counts in media ticks, which for AAC in MP4 are samples at the track
    // rate. Float to integer casts saturate: a corrupt value cannot wrap.
    let to_out = |ticks: f64| (ticks * rate as f64 / track.timescale as f64).round().max(0.0) as u64;
    let (skip, keep) = if track.edit_media_time > 0 || track.edit_duration.is_some() {
        let keep = track.edit_duration.map(|d| (d * rate as f64).round().max(0.0) as u64);
        (to_out(track.edit_media_time as f64), keep)
    } else if let Some((priming, total)) = mp4::itunes_smpb(&movie.udta) {
        (priming, Some(total))
    } else {
        (0, None)
    };
    let delay = (track.edit_delay * rate as f64).round().max(0.0);
    ensure!(
        delay <= frames.max(rate as u64) as f64,
        "the edit list delays the audio by {:.1} s, longer than the audio itself (corrupt edit list?)",
        track.edit_delay
    );
    Ok((skip, keep, delay as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp4::{Kind, Movie};

    fn track(edit_delay: f64) -> Track {
        Track {
            kind: Kind::Audio,
            timescale: 48_000,
            codec: Codec::Mp3,
            samples: vec![],
            edit_media_time: 0,
            edit_delay,
            edit_duration: None,
            rotation: 0,
        }
    }

    /// An `iTunSMPB` tag in `udta`: priming and total valid samples, in hex.
    fn smpb(priming: u64, total: u64) -> Vec<u8> {
        let text = format!(" 00000000 {priming:08X} 00000000 {total:016X}");
        let mut b = b"----iTunSMPB".to_vec();
        b.extend_from_slice(&((text.len() + 16) as u32).to_be_bytes());
        b.extend_from_slice(b"data\0\0\0\x01\0\0\0\0");
        b.extend_from_slice(text.as_bytes());
        b
    }

    /// Found by review of `avsc-fuzz mp4`'s target: a total above i64::MAX once put the end
    /// before the priming and panicked; counts are unsigned now, so it keeps everything.
    #[test]
    fn a_corrupt_gapless_total_keeps_the_audio() {
        let movie = Movie { tracks: vec![], udta: smpb(10, u64::MAX) };
        assert_eq!(trim(48_000, &movie, &track(0.0), 100).unwrap(), (10, Some(u64::MAX), 0));
        let movie = Movie { tracks: vec![], udta: smpb(10, 50) };
        assert_eq!(trim(48_000, &movie, &track(0.0), 100).unwrap(), (10, Some(50), 0));
    }

    /// Found by review of `avsc-fuzz mp4`'s target: a leading empty edit of 2^64 ticks was
    /// padded as silence (a capacity overflow, or gigabytes; streamed, hours of silence).
    #[test]
    fn an_absurd_edit_delay_is_refused() {
        let movie = Movie { tracks: vec![], udta: vec![] };
        let e = trim(48_000, &movie, &track(1.8e19), 100).unwrap_err().to_string();
        assert!(e.contains("longer than the audio itself"), "{e}");
        // A short real delay is still silence in front.
        assert_eq!(trim(48_000, &movie, &track(0.5), 100).unwrap(), (0, None, 24_000));
    }
}
