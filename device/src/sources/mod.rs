//! Where samples and frames come from. The device loop only sees the two traits below;
//! ALSA, V4L2 and the file-backed sources (WAV, MP4, image folders) implement them, so the
//! same loop runs on a Jetson's microphone and on a test fixture.

pub mod alsa;
pub mod clock;
pub mod convert;
pub mod file;
pub mod pacing;
pub mod threaded;
pub mod v4l;

use anyhow::Result;
use avsc_shared::image::RgbImage;

/// One read from an [`AudioSource`]: how many frames (samples per channel) were written into
/// the caller's buffer, and the stream time of the first of them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AudioRead {
    pub frames: usize,
    /// When the first of them was captured, in seconds: on the device's clock for a live
    /// source ([`clock`]), since the start of the file for a file.
    pub t: f64,
}

/// Interleaved audio at a fixed rate and channel count.
pub trait AudioSource {
    fn sample_rate(&self) -> u32;
    fn channels(&self) -> usize;
    /// Fill `buf` (interleaved, samples in [-1, 1)) with the next samples, up to
    /// `buf.len() / channels` frames. `Ok(None)` at the end of the stream; a live source
    /// blocks until samples arrive and never ends on its own. A read of 0 frames says there
    /// is no audio until its time (a live source whose device is away).
    fn read(&mut self, buf: &mut [f32]) -> Result<Option<AudioRead>>;
    /// A short description for logs.
    fn describe(&self) -> String;
    /// Why this source holds no audio, when it only keeps time (its samples are silence and
    /// windows are classified without audio); `None` for real audio.
    fn absent(&self) -> Option<&str> {
        None
    }
    /// What the user should know about this audio (e.g. it was mixed down), for every
    /// window's note.
    fn note(&self) -> Option<&str> {
        None
    }
}

/// An audio source with one more thing to say in every window's note (e.g. that the file's
/// video could not be decoded, so its windows are audio-only).
pub struct Noted<A> {
    inner: A,
    note: String,
}

impl<A: AudioSource> Noted<A> {
    pub fn new(inner: A, note: impl Into<String>) -> Noted<A> {
        let note = note.into();
        let note = match inner.note() {
            Some(n) => format!("{n}; {note}"),
            None => note,
        };
        Noted { inner, note }
    }
}

impl<A: AudioSource> AudioSource for Noted<A> {
    fn sample_rate(&self) -> u32 {
        self.inner.sample_rate()
    }
    fn channels(&self) -> usize {
        self.inner.channels()
    }
    fn read(&mut self, buf: &mut [f32]) -> Result<Option<AudioRead>> {
        self.inner.read(buf)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn absent(&self) -> Option<&str> {
        self.inner.absent()
    }
    fn note(&self) -> Option<&str> {
        Some(&self.note)
    }
}

/// An RGB frame and when it was captured, on the same clock as the audio's reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub t: f64,
    pub image: RgbImage,
}

/// Video frames, already thinned to the rate the models were trained on.
pub trait FrameSource {
    /// The next frame (blocking). `Ok(None)` at the end of the stream.
    fn next_frame(&mut self) -> Result<Option<Frame>>;
    fn describe(&self) -> String;
}

impl<T: AudioSource + ?Sized> AudioSource for Box<T> {
    fn sample_rate(&self) -> u32 {
        (**self).sample_rate()
    }
    fn channels(&self) -> usize {
        (**self).channels()
    }
    fn read(&mut self, buf: &mut [f32]) -> Result<Option<AudioRead>> {
        (**self).read(buf)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn absent(&self) -> Option<&str> {
        (**self).absent()
    }
    fn note(&self) -> Option<&str> {
        (**self).note()
    }
}

impl<T: FrameSource + ?Sized> FrameSource for Box<T> {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        (**self).next_frame()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Keeps frames on a grid of `fps` per second by timestamp: a frame is kept when it is the
/// first at or after the next grid point, so a 30-fps camera gives 2 frames per second
/// whatever its jitter, and a stalled camera does not cause a burst when it resumes.
#[derive(Clone, Debug)]
pub struct FrameThinner {
    period: f64,
    next: f64,
}

impl FrameThinner {
    pub fn new(fps: f64) -> FrameThinner {
        assert!(fps > 0.0, "frame rate must be positive");
        FrameThinner { period: 1.0 / fps, next: 0.0 }
    }

    pub fn keep(&mut self, t: f64) -> bool {
        if t + 1e-9 < self.next {
            return false;
        }
        // The next grid point strictly after t (a t a rounding error below a grid point
        // counts as on it, as above: else the next frame would be kept too).
        self.next = (((t + 1e-9) / self.period).floor() + 1.0) * self.period;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinner_keeps_two_per_second() {
        let mut th = FrameThinner::new(2.0);
        let kept: Vec<usize> = (0..90).filter(|&i| th.keep(i as f64 / 30.0)).collect();
        assert_eq!(kept, vec![0, 15, 30, 45, 60, 75]);
        // A stall then resume: one frame, not a burst.
        assert!(th.keep(10.0));
        assert!(!th.keep(10.1));
        assert!(th.keep(10.5));
    }
}
