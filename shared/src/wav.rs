//! WAV (RIFF/WAVE) reading: PCM 16/24/32-bit, IEEE float32, WAVE_FORMAT_EXTENSIBLE, any
//! rate and channel count. Strict: truncated data, empty data, NaN/inf are errors.

use anyhow::{bail, ensure, Context, Result};
use std::path::Path;

/// Decoded audio, one `Vec` per channel, samples in [-1, 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    pub sample_rate: u32,
    pub channels: Vec<Vec<f32>>,
}

impl Audio {
    pub fn n_samples(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    pub fn channel_refs(&self) -> Vec<&[f32]> {
        self.channels.iter().map(Vec::as_slice).collect()
    }

    /// Stereo view: mono is duplicated to both channels, more than two channels are mixed
    /// down ([`downmix_to_stereo`]); the returned [`Stereo`] says which happened.
    pub fn into_stereo(mut self) -> Result<(Audio, Stereo)> {
        match self.channels.len() {
            0 => bail!("no audio channels"),
            1 => {
                let c = self.channels[0].clone();
                self.channels.push(c);
                Ok((self, Stereo::FromMono))
            }
            2 => Ok((self, Stereo::AsIs)),
            n => {
                self.channels = downmix_to_stereo(&self.channels);
                Ok((self, Stereo::Downmixed(n)))
            }
        }
    }
}

/// How [`Audio::into_stereo`] made two channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stereo {
    AsIs,
    FromMono,
    /// Mixed down from this many channels.
    Downmixed(usize),
}

impl Stereo {
    /// A note for the user, naming `what` (a file), when the audio was not stereo already.
    pub fn note(self, what: &str) -> Option<String> {
        match self {
            Stereo::AsIs => None,
            Stereo::FromMono => Some(format!("{what}: mono; duplicated to both channels")),
            Stereo::Downmixed(n) => Some(format!("{what}: {n} channels; mixed down to stereo")),
        }
    }
}

/// Two channels from more than two. Six (5.1 in the WAV/FLAC/AAC order L, R, C, LFE, Ls, Rs)
/// follow ITU-R BS.775: L + 0.707 C + 0.707 Ls and R + 0.707 C + 0.707 Rs, LFE left out;
/// any other count sends the even channels left and the odd ones right. Each side is
/// scaled so a full-scale input cannot clip.
pub fn downmix_to_stereo(channels: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let n = channels.len();
    let len = channels.iter().map(Vec::len).min().unwrap_or(0);
    let g = std::f32::consts::FRAC_1_SQRT_2;
    // (channel, weight) per side.
    type Side = Vec<(usize, f32)>;
    let (left, right): (Side, Side) = if n == 6 {
        (vec![(0, 1.0), (2, g), (4, g)], vec![(1, 1.0), (2, g), (5, g)])
    } else {
        ((0..n).step_by(2).map(|c| (c, 1.0)).collect(), (1..n).step_by(2).map(|c| (c, 1.0)).collect())
    };
    let mix = |side: &[(usize, f32)]| -> Vec<f32> {
        let norm: f32 = side.iter().map(|&(_, w)| w).sum();
        (0..len).map(|i| side.iter().map(|&(c, w)| w * channels[c][i]).sum::<f32>() / norm).collect()
    };
    vec![mix(&left), mix(&right)]
}

const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

#[derive(Clone, Copy, Debug, PartialEq)]
enum SampleFormat {
    Int(u16),
    Float32,
}

/// Read a WAV file; errors name the file and say what is wrong.
pub fn read(path: &Path) -> Result<Audio> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    decode(&bytes).with_context(|| format!("{}: invalid WAV", path.display()))
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Where a WAV file's samples are and how they are stored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    format: SampleFormat,
    pub channels: usize,
    pub sample_rate: u32,
    /// Byte offset and length of the `data` chunk's samples.
    pub data_offset: u64,
    pub data_len: u64,
}

impl Layout {
    /// Bytes per frame (one sample of every channel).
    pub fn frame_bytes(&self) -> usize {
        self.format.width() * self.channels
    }

    pub fn frames(&self) -> u64 {
        self.data_len / self.frame_bytes() as u64
    }

    /// Append the frames in `data` (whole frames, as stored) to `out`, one `Vec` per channel;
    /// `first_frame` numbers them in errors.
    pub fn convert(&self, data: &[u8], first_frame: u64, out: &mut [Vec<f32>]) -> Result<()> {
        let (bits, float) = match self.format {
            SampleFormat::Int(bits) => (bits, false),
            SampleFormat::Float32 => (32, true),
        };
        let layout = PcmLayout { bits, float, big_endian: false, signed: true };
        convert_pcm(layout, self.channels, data, first_frame, out)
    }
}

/// How uncompressed samples are stored (WAV's, and QuickTime's in MOV files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcmLayout {
    /// Bits per sample: 8, 16, 24, 32 (integers) or 32, 64 (float).
    pub bits: u16,
    pub float: bool,
    pub big_endian: bool,
    /// Signed integers (unsigned: 8-bit only).
    pub signed: bool,
}

/// Append the frames in `data` (whole frames of `channels` samples as `layout` stores them)
/// to `out`, one `Vec` per channel: integers scaled by 2^(bits-1) (unsigned 8-bit about
/// 128), floats as they are and refused when not finite; `first_frame` numbers frames in
/// errors.
pub fn convert_pcm(
    layout: PcmLayout,
    channels: usize,
    data: &[u8],
    first_frame: u64,
    out: &mut [Vec<f32>],
) -> Result<()> {
    let width = layout.bits as usize / 8;
    let mut b = [0u8; 8];
    for (i, s) in data.chunks_exact(width).enumerate() {
        // Widen to 8 bytes, most significant first.
        b.fill(0);
        if layout.big_endian {
            b[..width].copy_from_slice(s);
        } else {
            for (d, v) in b[..width].iter_mut().zip(s.iter().rev()) {
                *d = *v;
            }
        }
        let v = match (layout.float, width) {
            (true, 4) => f32::from_be_bytes(b[..4].try_into().unwrap()),
            (true, _) => f64::from_be_bytes(b) as f32,
            (false, 1) if !layout.signed => (b[0] as f32 - 128.0) / 128.0,
            // Sign-extending shift of the top `bits` bits, then the scale (exact: one
            // rounding to f32, as `i32 as f32 / 2^31` has).
            (false, _) => {
                ((i64::from_be_bytes(b) >> (64 - layout.bits)) as f64 / (1u64 << (layout.bits - 1)) as f64) as f32
            }
        };
        ensure!(v.is_finite(), "non-finite sample ({v}) at frame {}", first_frame + (i / channels) as u64);
        out[i % channels].push(v);
    }
    Ok(())
}

impl SampleFormat {
    fn width(self) -> usize {
        match self {
            SampleFormat::Int(bits) => bits as usize / 8,
            SampleFormat::Float32 => 4,
        }
    }
}

/// Find the `fmt ` and `data` chunks of a WAV of `len` bytes, reading it through `read_at`
/// (offset, buffer to fill): only the chunk headers and the `fmt ` body are read.
pub fn layout(len: u64, read_at: &mut dyn FnMut(u64, &mut [u8]) -> Result<()>) -> Result<Layout> {
    let mut head = [0u8; 12];
    ensure!(len >= 12, "not a RIFF/WAVE file");
    read_at(0, &mut head)?;
    ensure!(&head[0..4] == b"RIFF" && &head[8..12] == b"WAVE", "not a RIFF/WAVE file");
    let mut pos = 12u64;
    let mut fmt: Option<(SampleFormat, usize, u32)> = None;
    while pos + 8 <= len {
        let mut ck = [0u8; 8];
        read_at(pos, &mut ck)?;
        let id = &ck[0..4];
        let size = u32_at(&ck, 4) as u64;
        let body = pos + 8;
        if id == b"fmt " {
            ensure!(size >= 16 && body + size <= len, "truncated fmt chunk");
            let mut b = [0u8; 40];
            let n = size.min(40) as usize;
            read_at(body, &mut b[..n])?;
            let tag = u16_at(&b, 0);
            let channels = u16_at(&b, 2) as usize;
            let rate = u32_at(&b, 4);
            let bits = u16_at(&b, 14);
            let tag = if tag == WAVE_FORMAT_EXTENSIBLE {
                ensure!(size >= 40, "truncated WAVE_FORMAT_EXTENSIBLE fmt chunk");
                // The sub-format GUID starts with the plain format tag.
                u16_at(&b, 24)
            } else {
                tag
            };
            let format = match (tag, bits) {
                (WAVE_FORMAT_PCM, 16 | 24 | 32) => SampleFormat::Int(bits),
                (WAVE_FORMAT_IEEE_FLOAT, 32) => SampleFormat::Float32,
                (WAVE_FORMAT_PCM, _) => {
                    bail!("unsupported PCM bit depth {bits} (expected 16, 24 or 32)")
                }
                (WAVE_FORMAT_IEEE_FLOAT, _) => {
                    bail!("unsupported float bit depth {bits} (expected 32)")
                }
                _ => bail!("unsupported WAV format tag {tag:#06x} (expected PCM or IEEE float)"),
            };
            ensure!(channels > 0, "fmt chunk declares zero channels");
            ensure!(rate > 0, "fmt chunk declares a zero sample rate");
            fmt = Some((format, channels, rate));
        } else if id == b"data" {
            let (format, channels, rate) = fmt.context("data chunk before fmt chunk")?;
            let frame = (format.width() * channels) as u64;
            let available = len - body;
            ensure!(size <= available, "truncated: data chunk declares {size} bytes but only {available} are present");
            ensure!(
                size.is_multiple_of(frame),
                "data chunk size {size} is not a whole number of {channels}-channel frames"
            );
            ensure!(size / frame > 0, "no audio samples");
            return Ok(Layout { format, channels, sample_rate: rate, data_offset: body, data_len: size });
        }
        // Chunks are padded to even sizes.
        pos = body + size + (size & 1);
    }
    match fmt {
        None => bail!("no fmt chunk"),
        Some(_) => bail!("no data chunk (truncated file?)"),
    }
}

/// Decode WAV bytes.
pub fn decode(b: &[u8]) -> Result<Audio> {
    let l = layout(b.len() as u64, &mut |at, buf| {
        let at = at as usize;
        buf.copy_from_slice(&b[at..at + buf.len()]);
        Ok(())
    })?;
    let n = l.frames() as usize;
    let mut out = vec![Vec::with_capacity(n); l.channels];
    let start = l.data_offset as usize;
    l.convert(&b[start..start + l.data_len as usize], 0, &mut out)?;
    Ok(Audio { sample_rate: l.sample_rate, channels: out })
}

/// Encode as a canonical WAV: 16-bit PCM or 32-bit float.
pub fn encode(audio: &Audio, float: bool) -> Vec<u8> {
    if float {
        encode_as(audio, WAVE_FORMAT_IEEE_FLOAT, 4, |x, b| b.extend_from_slice(&x.to_le_bytes()))
    } else {
        encode_as(audio, WAVE_FORMAT_PCM, 2, |x, b| {
            b.extend_from_slice(&((x * 32768.0).round().clamp(-32768.0, 32767.0) as i16).to_le_bytes())
        })
    }
}

/// Encode as a canonical 24-bit PCM WAV (TAU Urban Audio-Visual's format).
pub fn encode_pcm24(audio: &Audio) -> Vec<u8> {
    encode_as(audio, WAVE_FORMAT_PCM, 3, |x, b| {
        let v = (x as f64 * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32;
        b.extend_from_slice(&v.to_le_bytes()[..3])
    })
}

fn encode_as(audio: &Audio, format: u16, width: usize, put: impl Fn(f32, &mut Vec<u8>)) -> Vec<u8> {
    let ch = audio.channels.len();
    let n = audio.n_samples();
    let data_len = n * ch * width;
    let mut b = Vec::with_capacity(44 + data_len);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&((36 + data_len) as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&format.to_le_bytes());
    b.extend_from_slice(&(ch as u16).to_le_bytes());
    b.extend_from_slice(&audio.sample_rate.to_le_bytes());
    b.extend_from_slice(&(audio.sample_rate * (ch * width) as u32).to_le_bytes());
    b.extend_from_slice(&((ch * width) as u16).to_le_bytes());
    b.extend_from_slice(&((width * 8) as u16).to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data_len as u32).to_le_bytes());
    for i in 0..n {
        for c in &audio.channels {
            put(c[i], &mut b);
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stereo() -> Audio {
        Audio { sample_rate: 48_000, channels: vec![vec![0.0, 0.5, -0.25, -1.0], vec![0.25, -0.5, 0.75, 0.125]] }
    }

    #[test]
    fn float_and_pcm16_round_trip() {
        let a = stereo();
        assert_eq!(decode(&encode(&a, true)).unwrap(), a);
        // These values are exact in 16 bits, and in 24.
        assert_eq!(decode(&encode(&a, false)).unwrap(), a);
        let pcm24 = encode_pcm24(&a);
        assert_eq!((pcm24.len(), u16::from_le_bytes([pcm24[34], pcm24[35]])), (44 + 4 * 2 * 3, 24));
        assert_eq!(decode(&pcm24).unwrap(), a);
        let fine = Audio { sample_rate: 48_000, channels: vec![vec![1.0 / 8_388_608.0, -3.0 / 8_388_608.0]] };
        assert_eq!(decode(&encode_pcm24(&fine)).unwrap(), fine, "one 24-bit step survives");
    }

    #[test]
    fn pcm24_extensible_decodes() {
        // Hand-built WAVE_FORMAT_EXTENSIBLE, 24-bit, mono, 2 samples: +0.5 and -1.0.
        let mut b = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        b.extend_from_slice(&40u32.to_le_bytes());
        b.extend_from_slice(&WAVE_FORMAT_EXTENSIBLE.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&44_100u32.to_le_bytes());
        b.extend_from_slice(&(44_100u32 * 3).to_le_bytes());
        b.extend_from_slice(&3u16.to_le_bytes());
        b.extend_from_slice(&24u16.to_le_bytes());
        b.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        b.extend_from_slice(&24u16.to_le_bytes()); // valid bits
        b.extend_from_slice(&4u32.to_le_bytes()); // channel mask
        b.extend_from_slice(&1u16.to_le_bytes()); // sub-format GUID: PCM ...
        b.extend_from_slice(&[0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71]);
        b.extend_from_slice(b"data");
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&[0x00, 0x00, 0x40, 0x00, 0x00, 0x80]);
        let a = decode(&b).unwrap();
        assert_eq!(a.sample_rate, 44_100);
        assert_eq!(a.channels, vec![vec![0.5, -1.0]]);
        let (s, how) = a.into_stereo().unwrap();
        assert_eq!(how, Stereo::FromMono);
        assert_eq!(s.channels[0], s.channels[1]);
    }

    #[test]
    fn five_one_mixes_down_by_itu_and_other_counts_by_parity() {
        // One impulse per channel of 5.1 (L R C LFE Ls Rs) at its own sample.
        let six: Vec<Vec<f32>> = (0..6).map(|c| (0..6).map(|i| if i == c { 1.0 } else { 0.0 }).collect()).collect();
        let (s, how) = Audio { sample_rate: 48_000, channels: six }.into_stereo().unwrap();
        assert_eq!(how, Stereo::Downmixed(6));
        let g = std::f32::consts::FRAC_1_SQRT_2;
        let norm = 1.0 + 2.0 * g;
        let want_l = [1.0, 0.0, g, 0.0, g, 0.0].map(|v| v / norm);
        let want_r = [0.0, 1.0, g, 0.0, 0.0, g].map(|v| v / norm);
        for (got, want) in s.channels.iter().zip([want_l, want_r]) {
            assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{got:?} vs {want:?}");
        }
        let three = vec![vec![1.0f32], vec![0.5], vec![0.25]];
        assert_eq!(downmix_to_stereo(&three), vec![vec![0.625], vec![0.5]]);
        assert!(Audio { sample_rate: 8000, channels: vec![] }.into_stereo().is_err());
        assert_eq!(Stereo::Downmixed(6).note("x.wav").unwrap(), "x.wav: 6 channels; mixed down to stereo");
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let good = encode(&stereo(), true);
        let err = |b: &[u8]| format!("{:#}", decode(b).unwrap_err());
        assert!(err(b"hello world, not a wav").contains("not a RIFF/WAVE"));
        assert!(err(&good[..good.len() - 5]).contains("truncated"));
        let mut empty = encode(&Audio { sample_rate: 8000, channels: vec![vec![]] }, false);
        assert!(err(&empty).contains("no audio samples"));
        empty.truncate(36);
        assert!(err(&empty).contains("no data chunk"));
        let mut nan = stereo();
        nan.channels[1][2] = f32::NAN;
        assert!(err(&encode(&nan, true)).contains("non-finite"));
    }
}
