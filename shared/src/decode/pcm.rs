//! Uncompressed audio in MOV/MP4 (QuickTime's `lpcm`, `sowt`, `twos`, `raw `, `in24`,
//! `in32`, `fl32`, `fl64`: cameras and editors write them), read a block at a time straight
//! from its chunks, so memory is bounded by the block whatever the recording's length.

use super::mp4::{self, Codec, Pcm, Sample, Track};
use super::stream::{Decoded, Packets};
use crate::wav::{convert_pcm, PcmLayout};
use anyhow::{ensure, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Frames per read.
const BLOCK: u64 = 4096;

pub(super) struct PcmPackets {
    file: File,
    pcm: Pcm,
    /// The track's chunks (see [`mp4::Sample`]).
    chunks: Vec<Sample>,
    chunk: usize,
    /// Bytes of the current chunk already read.
    at: u64,
    bytes: Vec<u8>,
    frames: u64,
}

impl Packets for PcmPackets {
    fn next_packet(&mut self, out: &mut Vec<Vec<f32>>) -> Result<bool> {
        let fb = self.pcm.frame_bytes() as u64;
        let Some(c) = self.chunks.get(self.chunk) else { return Ok(false) };
        let n = (c.size as u64 - self.at).min(BLOCK * fb);
        self.bytes.resize(n as usize, 0);
        self.file
            .read_exact_at(&mut self.bytes, c.offset + self.at)
            .context("audio chunk lies beyond the end of the file (truncated file?)")?;
        self.at += n;
        if self.at == c.size as u64 {
            (self.chunk, self.at) = (self.chunk + 1, 0);
        }
        out.resize_with(self.pcm.channels as usize, Vec::new);
        out.iter_mut().for_each(Vec::clear);
        convert(&self.pcm, &self.bytes, out)?;
        Ok(true)
    }

    fn frames_hint(&self) -> Option<u64> {
        Some(self.frames)
    }
}

/// Append the frames in `data` (whole frames, as stored) to `out`, one `Vec` per channel,
/// scaled as the WAV reader scales them (the same conversion).
pub fn convert(pcm: &Pcm, data: &[u8], out: &mut [Vec<f32>]) -> Result<()> {
    let layout = PcmLayout { bits: pcm.bits, float: pcm.float, big_endian: pcm.big_endian, signed: pcm.signed };
    convert_pcm(layout, pcm.channels as usize, data, 0, out)
}

/// Open a PCM track (of `movie`) for streaming, cut as its edit list says.
pub(super) fn open(file: File, movie: &mp4::Movie, track: &Track) -> Result<Decoded<PcmPackets>> {
    let Codec::Pcm(pcm) = track.codec else { unreachable!("only PCM tracks come here") };
    ensure!(!track.samples.is_empty(), "audio track has no samples");
    let frames = track.samples.iter().map(|c| c.size as u64).sum::<u64>() / pcm.frame_bytes() as u64;
    let p = PcmPackets { file, pcm, chunks: track.samples.clone(), chunk: 0, at: 0, bytes: Vec::new(), frames };
    Decoded::new(p, |p| p.pcm.rate, |rate| super::aac::trim(rate, movie, track, frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm(bits: u16, float: bool, big_endian: bool, signed: bool) -> Pcm {
        Pcm { channels: 2, rate: 48_000, bits, float, big_endian, signed }
    }

    fn one(p: &Pcm, bytes: &[u8]) -> f32 {
        let mut out = vec![Vec::new(), Vec::new()];
        let frame: Vec<u8> = bytes.iter().chain(bytes).copied().collect();
        convert(p, &frame, &mut out).unwrap();
        assert_eq!(out[0], out[1]);
        out[0][0]
    }

    /// Each layout against values worked out by hand, and the WAV reader's scale.
    #[test]
    fn every_sample_format_scales_like_the_wav_reader() {
        assert_eq!(one(&pcm(8, false, true, false), &[0x00]), -1.0);
        assert_eq!(one(&pcm(8, false, true, false), &[0xC0]), 0.5);
        assert_eq!(one(&pcm(8, false, false, true), &[0x80]), -1.0);
        assert_eq!(one(&pcm(16, false, true, true), &[0x40, 0x00]), 0.5);
        assert_eq!(one(&pcm(16, false, false, true), &[0x00, 0xC0]), -0.5);
        assert_eq!(one(&pcm(16, false, false, true), &[0xFF, 0x7F]), 32767.0 / 32768.0);
        assert_eq!(one(&pcm(24, false, true, true), &[0xFF, 0xFF, 0xFF]), -1.0 / 8_388_608.0);
        assert_eq!(one(&pcm(24, false, false, true), &[0x00, 0x00, 0x40]), 0.5);
        assert_eq!(one(&pcm(32, false, true, true), &[0x80, 0, 0, 0]), -1.0);
        assert_eq!(one(&pcm(32, true, false, true), &0.25f32.to_le_bytes()), 0.25);
        assert_eq!(one(&pcm(32, true, true, true), &(-0.75f32).to_be_bytes()), -0.75);
        assert_eq!(one(&pcm(64, true, true, true), &0.125f64.to_be_bytes()), 0.125);
        assert_eq!(one(&pcm(64, true, false, true), &(-2.0f64).to_le_bytes()), -2.0);
        let mut out = vec![Vec::new(), Vec::new()];
        let e = convert(&pcm(32, true, false, true), &[0, 0, 0xC0, 0x7F, 0, 0, 0, 0], &mut out).unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
    }
}
