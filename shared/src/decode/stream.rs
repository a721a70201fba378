//! Audio decoded as it is read: a file's audio a packet at a time, so a recording of any
//! length is classified (or prepared) in memory bounded by one packet and the caller's
//! buffer. The WAV reader, the MP4 audio track (AAC, MP3) and symphonia's formats each give
//! packets; [`Decoded`] trims them (encoder priming, edit lists) and interleaves.

use anyhow::{anyhow, ensure, Result};

/// A stream of interleaved audio.
pub trait AudioStream {
    fn sample_rate(&self) -> u32;
    fn channels(&self) -> usize;
    /// Fill `buf` (interleaved) with up to `buf.len() / channels` frames; returns how many,
    /// 0 at the end of the stream.
    fn read(&mut self, buf: &mut [f32]) -> Result<usize>;
    /// How many frames the stream holds in all, when the container says (before trimming
    /// it may be approximate for compressed formats); for progress and messages only.
    fn frames_hint(&self) -> Option<u64> {
        None
    }
}

/// What feeds a [`Decoded`] stream.
pub(super) trait Packets {
    /// Replace the contents of `out` (one `Vec` per channel) with the next packet's
    /// samples; `false` at the end of the stream.
    fn next_packet(&mut self, out: &mut Vec<Vec<f32>>) -> Result<bool>;
    fn frames_hint(&self) -> Option<u64> {
        None
    }
}

/// A packet source turned into an [`AudioStream`]: `delay` frames of silence first (a
/// leading empty edit), then the decoded frames less the first `skip` (encoder priming),
/// and no more than `keep` of them (the presented length) when given.
pub(super) struct Decoded<P> {
    packets: P,
    rate: u32,
    pending: Vec<Vec<f32>>,
    pos: usize,
    skip: u64,
    keep: Option<u64>,
    delay: u64,
    done: bool,
    /// Frames handed out: a stream that gives none at all is an error.
    given: u64,
}

impl<P: Packets> Decoded<P> {
    /// Decode the first packet (for the rate and channel count); `trim` then says, from the
    /// rate, how many frames to skip, keep and delay.
    pub(super) fn new(
        mut packets: P,
        rate_of_first: impl FnOnce(&mut P) -> u32,
        trim: impl FnOnce(u32) -> Result<(u64, Option<u64>, u64)>,
    ) -> Result<Decoded<P>> {
        let mut pending = Vec::new();
        let got = packets.next_packet(&mut pending)?;
        ensure!(got && !pending.is_empty() && !pending[0].is_empty(), "no audio samples");
        let rate = rate_of_first(&mut packets);
        ensure!(rate > 0, "the audio declares a zero sample rate");
        let (skip, keep, delay) = trim(rate)?;
        Ok(Decoded { packets, rate, pending, pos: 0, skip, keep, delay, done: false, given: 0 })
    }
}

impl<P: Packets> AudioStream for Decoded<P> {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn channels(&self) -> usize {
        self.pending.len()
    }

    fn read(&mut self, buf: &mut [f32]) -> Result<usize> {
        let ch = self.pending.len();
        let want = buf.len() / ch;
        let mut n = 0;
        while n < want {
            if self.delay > 0 {
                let k = self.delay.min((want - n) as u64) as usize;
                buf[n * ch..(n + k) * ch].fill(0.0);
                self.delay -= k as u64;
                n += k;
                continue;
            }
            if self.keep == Some(0) {
                break;
            }
            let avail = self.pending[0].len() - self.pos;
            if avail == 0 {
                if self.done || !self.packets.next_packet(&mut self.pending)? {
                    self.done = true;
                    break;
                }
                ensure!(self.pending.len() == ch, "the channel count changed mid-stream");
                self.pos = 0;
                continue;
            }
            if self.skip > 0 {
                let k = self.skip.min(avail as u64) as usize;
                self.pos += k;
                self.skip -= k as u64;
                continue;
            }
            let k = avail.min(want - n).min(self.keep.unwrap_or(u64::MAX).min(usize::MAX as u64) as usize);
            for (c, src) in self.pending.iter().enumerate() {
                for (i, v) in src[self.pos..self.pos + k].iter().enumerate() {
                    buf[(n + i) * ch + c] = *v;
                }
            }
            self.pos += k;
            n += k;
            if let Some(keep) = &mut self.keep {
                *keep -= k as u64;
            }
        }
        self.given += n as u64;
        ensure!(n > 0 || self.given > 0 || want == 0, "audio track is empty after the edit list");
        Ok(n)
    }

    fn frames_hint(&self) -> Option<u64> {
        self.keep.map(|k| k + self.given).or_else(|| self.packets.frames_hint())
    }
}

/// A stream whose errors name the file, and whose codec panics (a backstop: corrupt input
/// should give errors) become errors.
pub struct Named {
    inner: Box<dyn AudioStream>,
    name: String,
}

impl Named {
    pub(super) fn new(inner: Box<dyn AudioStream>, name: String) -> Named {
        Named { inner, name }
    }
}

/// Run `f`, turning a panic into an error.
pub(super) fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(anyhow!("decoder panicked (corrupt input?): {msg}"))
    })
}

impl AudioStream for Named {
    fn sample_rate(&self) -> u32 {
        self.inner.sample_rate()
    }
    fn channels(&self) -> usize {
        self.inner.channels()
    }
    fn read(&mut self, buf: &mut [f32]) -> Result<usize> {
        guarded(|| self.inner.read(buf)).map_err(|e| anyhow!("{}: cannot decode audio: {e:#}", self.name))
    }
    fn frames_hint(&self) -> Option<u64> {
        self.inner.frames_hint()
    }
}

/// A WAV file's samples, read a block at a time.
pub(super) struct WavPackets {
    file: std::fs::File,
    layout: crate::wav::Layout,
    /// Frames read so far.
    done: u64,
    bytes: Vec<u8>,
}

/// Frames per WAV read.
const WAV_BLOCK: u64 = 4096;

impl WavPackets {
    pub(super) fn open(file: std::fs::File) -> Result<Decoded<WavPackets>> {
        use std::os::unix::fs::FileExt;
        let len = file.metadata()?.len();
        let layout = crate::wav::layout(len, &mut |at, buf| Ok(file.read_exact_at(buf, at)?))?;
        let p = WavPackets { file, layout, done: 0, bytes: Vec::new() };
        let rate = layout.sample_rate;
        Decoded::new(p, |_| rate, |_| Ok((0, None, 0)))
    }
}

impl Packets for WavPackets {
    fn next_packet(&mut self, out: &mut Vec<Vec<f32>>) -> Result<bool> {
        use std::os::unix::fs::FileExt;
        let l = &self.layout;
        let n = WAV_BLOCK.min(l.frames() - self.done);
        if n == 0 {
            return Ok(false);
        }
        let fb = l.frame_bytes() as u64;
        self.bytes.resize((n * fb) as usize, 0);
        self.file.read_exact_at(&mut self.bytes, l.data_offset + self.done * fb)?;
        out.resize_with(l.channels, Vec::new);
        out.iter_mut().for_each(Vec::clear);
        l.convert(&self.bytes, self.done, out)?;
        self.done += n;
        Ok(true)
    }

    fn frames_hint(&self) -> Option<u64> {
        Some(self.layout.frames())
    }
}
