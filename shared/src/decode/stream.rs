//! Audio decoded as it is read: a file's audio a packet at a time, so a recording of any
//! length is classified (or prepared) in memory bounded by one packet and the caller's
//! buffer. The WAV reader, the MP4 audio track (AAC, MP3) and symphonia's formats each give
//! packets; [`Decoded`] trims them (encoder priming, edit lists) and interleaves.

use anyhow::{anyhow, bail, ensure, Result};

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
    /// What the decoding leaves out or changes, for the user (e.g. HE-AAC without its upper
    /// band), if anything.
    fn note(&self) -> Option<String> {
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
    fn note(&self) -> Option<String> {
        None
    }
}

/// A packet source turned into an [`AudioStream`]: `delay` frames of silence first (a
/// leading empty edit), then the decoded frames less the first `skip` (encoder priming),
/// and no more than `keep` of them (the presented length) when given.
pub(super) struct Decoded<P> {
    packets: P,
    rate: u32,
    /// The channel count of the first packet; every later one must have it.
    channels: usize,
    pending: Vec<Vec<f32>>,
    pos: usize,
    skip: u64,
    keep: Option<u64>,
    delay: u64,
    done: bool,
    /// Frames handed out: a stream that gives none at all is an error.
    given: u64,
    /// An error met after some frames of a read were filled: those are returned first, the
    /// error by the next read.
    failed: Option<anyhow::Error>,
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
        let channels = pending.len();
        Ok(Decoded { packets, rate, channels, pending, pos: 0, skip, keep, delay, done: false, given: 0, failed: None })
    }
}

impl<P: Packets> AudioStream for Decoded<P> {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn channels(&self) -> usize {
        self.channels
    }

    fn read(&mut self, buf: &mut [f32]) -> Result<usize> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let ch = self.channels;
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
            let avail = self.pending.first().map_or(0, |c| c.len().saturating_sub(self.pos));
            if avail == 0 {
                if self.done {
                    break;
                }
                // A source may change `pending` and still say it has ended (a last packet
                // that gapless trimming left empty), or fail half-way: nothing of it is
                // handed out, and the position starts again at 0.
                self.pos = 0;
                let more = self.packets.next_packet(&mut self.pending).and_then(|more| {
                    let p = &self.pending;
                    if more && (p.len() != ch || p.iter().any(|c| c.len() != p[0].len())) {
                        self.done = true;
                        bail!("the channel count changed mid-stream");
                    }
                    Ok(more)
                });
                match more {
                    Ok(true) => continue,
                    Ok(false) => self.done = true,
                    Err(e) if n > 0 => self.failed = Some(e),
                    Err(e) => {
                        self.pending.iter_mut().for_each(Vec::clear);
                        return Err(e);
                    }
                }
                self.pending.iter_mut().for_each(Vec::clear);
                break;
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

    fn note(&self) -> Option<String> {
        self.packets.note()
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
    fn note(&self) -> Option<String> {
        self.inner.note()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets from a script: each `Some(frames)` a mono packet of that many frames (values
    /// counting up), `None` an error; after the script, the end. `tail` is what the source
    /// leaves in `out` when it says the stream ended (a last packet trimmed to nothing).
    struct Script {
        packets: std::vec::IntoIter<Option<usize>>,
        tail: Vec<Vec<f32>>,
        next: f32,
    }

    impl Packets for Script {
        fn next_packet(&mut self, out: &mut Vec<Vec<f32>>) -> Result<bool> {
            match self.packets.next() {
                Some(Some(n)) => {
                    *out = vec![(0..n).map(|i| self.next + i as f32).collect()];
                    self.next += n as f32;
                    Ok(true)
                }
                Some(None) => {
                    out.clear();
                    Err(anyhow!("corrupt packet"))
                }
                None => {
                    *out = self.tail.clone();
                    Ok(false)
                }
            }
        }
    }

    fn stream(packets: Vec<Option<usize>>, tail: Vec<Vec<f32>>) -> Decoded<Script> {
        let s = Script { packets: packets.into_iter(), tail, next: 0.0 };
        Decoded::new(s, |_| 8_000, |_| Ok((0, None, 0))).unwrap()
    }

    fn drain(s: &mut Decoded<Script>) -> (Vec<f32>, Option<String>) {
        let (mut got, mut buf) = (Vec::new(), [0.0f32; 3]);
        for _ in 0..100 {
            match s.read(&mut buf) {
                Ok(0) => return (got, None),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return (got, Some(e.to_string())),
            }
        }
        panic!("the stream never ended");
    }

    /// Found by real files (mutagen's `multipage-setup.ogg`, `silence-44-s-mpeg25.mp3`):
    /// symphonia's gapless decoding trims the last packet to nothing and the stream then
    /// ends, leaving `pending` emptied with the old position: the next read underflowed.
    #[test]
    fn a_source_that_ends_on_an_emptied_packet_ends_cleanly() {
        for tail in [vec![vec![]], vec![], vec![vec![], vec![]]] {
            let mut s = stream(vec![Some(4), Some(5)], tail);
            let (got, err) = drain(&mut s);
            assert_eq!(err, None);
            assert_eq!(got, (0..9).map(|i| i as f32).collect::<Vec<_>>());
            // Reading after the end stays at the end.
            assert_eq!(s.read(&mut [0.0; 4]).unwrap(), 0);
            assert_eq!(s.channels(), 1);
        }
    }

    /// An error mid-stream is returned once, and reading on neither panics nor repeats data.
    #[test]
    fn a_failing_packet_is_an_error_and_reading_on_is_safe() {
        let mut s = stream(vec![Some(4), None, Some(2)], vec![]);
        let (got, err) = drain(&mut s);
        assert_eq!(got, vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(err.as_deref(), Some("corrupt packet"));
        let (rest, err) = drain(&mut s);
        assert_eq!((rest, err), (vec![4.0, 5.0], None));
    }

    /// A packet with another channel count is an error, and the stream ends there.
    #[test]
    fn a_channel_count_change_is_an_error() {
        struct Two(u8);
        impl Packets for Two {
            fn next_packet(&mut self, out: &mut Vec<Vec<f32>>) -> Result<bool> {
                self.0 += 1;
                *out = vec![vec![0.5; 2]; self.0 as usize];
                Ok(self.0 < 4)
            }
        }
        let mut s = Decoded::new(Two(0), |_| 8_000, |_| Ok((0, None, 0))).unwrap();
        let mut buf = [0.0f32; 8];
        assert_eq!(s.read(&mut buf).unwrap(), 2);
        let e = s.read(&mut buf).unwrap_err().to_string();
        assert!(e.contains("channel count changed"), "{e}");
        assert_eq!(s.read(&mut buf).unwrap(), 0);
    }
}
