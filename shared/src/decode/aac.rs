//! AAC-LC (and MP3-in-MP4) decoding (symphonia) of an MP4 audio track, trimmed so that
//! sample 0 is presentation time 0.
//!
//! AAC encoders prepend "priming" samples (1024 for ffmpeg/libfdk, 2112 for Apple) that the
//! decoder's output still contains. The container says how many: the edit list's
//! `media_time`, or iTunes' `iTunSMPB` tag when there is no edit list. Left in, they would
//! shift the audio ~21-44 ms against the video and against the WAV the model trained on.

use super::mp4::{self, Codec, Track};
use crate::wav::Audio;
use anyhow::{anyhow, bail, ensure, Result};
use symphonia::core::codecs::audio::well_known::{CODEC_ID_AAC, CODEC_ID_MP3};
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::packet::PacketRef;
use symphonia::core::units::{Duration, Timestamp};
use symphonia::default::codecs::{AacDecoder, MpaDecoder};

pub fn decode(file: &[u8], movie: &mp4::Movie, track: &Track) -> Result<Audio> {
    let mut params = AudioCodecParameters::new();
    let opts = AudioDecoderOptions::default();
    // Samples per packet, for the packets' nominal durations.
    let (mut dec, frame): (Box<dyn AudioDecoder>, u64) = match &track.codec {
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

    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut scratch: Vec<Vec<f32>> = Vec::new();
    let mut sample_rate = 0;
    for (i, s) in track.samples.iter().enumerate() {
        let data = s.data(file)?;
        let packet = PacketRef::new(0, Timestamp::new(s.dts), Duration::new(frame), data);
        let buf = dec.decode_ref(&packet).map_err(|e| anyhow!("corrupt audio frame {i}: {e}"))?;
        sample_rate = buf.spec().rate();
        buf.copy_to_vecs_planar(&mut scratch);
        if channels.is_empty() {
            channels = vec![Vec::with_capacity(track.samples.len() * frame as usize); scratch.len()];
        }
        ensure!(scratch.len() == channels.len(), "AAC channel count changed at frame {i}");
        for (c, s) in channels.iter_mut().zip(&scratch) {
            c.extend_from_slice(s);
        }
    }
    ensure!(!channels.is_empty() && sample_rate > 0, "audio track has no samples");
    trim_to_presentation(&mut channels, sample_rate, movie, track)?;
    Ok(Audio { sample_rate, channels })
}

/// Cut the decoder's output (`channels`, at `sample_rate`) to what the container presents:
/// priming and padding off by the edit list, or by iTunes' `iTunSMPB` without one, and a
/// leading empty edit's delay as silence. `channels` must not be empty.
pub(super) fn trim_to_presentation(
    channels: &mut [Vec<f32>],
    sample_rate: u32,
    movie: &mp4::Movie,
    track: &Track,
) -> Result<()> {
    // Priming and length in output samples. The edit list counts in media ticks, which
    // for AAC in MP4 are samples at the track rate.
    let to_out = |ticks: i64| (ticks as f64 * sample_rate as f64 / track.timescale as f64).round() as i64;
    let (skip, keep) = if track.edit_media_time > 0 || track.edit_duration.is_some() {
        let keep = track.edit_duration.map(|d| (d * sample_rate as f64).round() as i64);
        (to_out(track.edit_media_time), keep)
    } else if let Some((priming, total)) = mp4::itunes_smpb(&movie.udta) {
        (priming as i64, Some(total as i64))
    } else {
        (0, None)
    };
    let n = channels[0].len() as i64;
    let skip = skip.clamp(0, n);
    // A corrupt length can be negative or overflow: clamp to [skip, n].
    let end = keep.map_or(n, |k| skip.saturating_add(k).clamp(skip, n)) as usize;
    let skip = skip as usize;
    for c in channels.iter_mut() {
        c.truncate(end);
        c.drain(..skip);
    }
    // A leading empty edit delays the audio: pad with silence. A delay longer than the audio
    // itself (and than a second) is a corrupt edit list, not a reason to allocate gigabytes.
    let delay = (track.edit_delay * sample_rate as f64).round();
    ensure!(
        delay <= n.max(sample_rate as i64) as f64,
        "the edit list delays the audio by {:.1} s, longer than the audio itself (corrupt edit list?)",
        track.edit_delay
    );
    let delay = delay as usize;
    if delay > 0 {
        for c in channels.iter_mut() {
            c.splice(0..0, std::iter::repeat_n(0.0, delay));
        }
    }
    ensure!(!channels[0].is_empty(), "audio track is empty after the edit list");
    Ok(())
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

    /// Found by review of `avsc-fuzz mp4`'s target: a total above i64::MAX (negative as
    /// i64) put the end before the priming, and `drain(..skip)` panicked.
    #[test]
    fn a_corrupt_gapless_total_is_an_error_not_a_panic() {
        let movie = Movie { tracks: vec![], udta: smpb(10, u64::MAX) };
        let mut channels = vec![vec![0.5; 100]];
        let e = trim_to_presentation(&mut channels, 48_000, &movie, &track(0.0)).unwrap_err().to_string();
        assert!(e.contains("empty after the edit list"), "{e}");
        let movie = Movie { tracks: vec![], udta: smpb(10, 50) };
        let mut channels = vec![vec![0.5; 100]];
        trim_to_presentation(&mut channels, 48_000, &movie, &track(0.0)).unwrap();
        assert_eq!(channels[0].len(), 50);
    }

    /// Found by review of `avsc-fuzz mp4`'s target: a leading empty edit of 2^64 ticks was
    /// padded as silence (a capacity overflow, or gigabytes).
    #[test]
    fn an_absurd_edit_delay_is_refused() {
        let movie = Movie { tracks: vec![], udta: vec![] };
        let mut channels = vec![vec![0.5; 100]];
        let e = trim_to_presentation(&mut channels, 48_000, &movie, &track(1.8e19)).unwrap_err().to_string();
        assert!(e.contains("longer than the audio itself"), "{e}");
        // A short real delay is still silence in front.
        trim_to_presentation(&mut channels, 48_000, &movie, &track(0.5)).unwrap();
        assert_eq!(channels[0].len(), 24_100);
        assert_eq!(channels[0][23_999..24_001], [0.0, 0.5]);
    }
}
