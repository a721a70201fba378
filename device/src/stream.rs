//! The window being filled: its audio goes through the feature front end (resampling, STFT,
//! MEL and GAM filterbanks) as the windower hands the frames on, so that at the window's
//! last sample only the last STFT frames, the CQT, dB and deltas are left
//! (`avsc_shared::dsp::stream`, equal to the whole-window computation bit for bit).

use avsc_shared::dsp::stream::WindowStream;
use avsc_shared::dsp::FeatureExtractor;
use avsc_shared::Array3;
use std::time::Instant;

pub struct AudioStream {
    ws: WindowStream,
    /// The windower's first frame of the window being filled, and the next frame expected.
    start: u64,
    next: u64,
    /// A frame of the window was not handed on (it cannot be used).
    broken: bool,
    /// Thread time spent on the window so far, milliseconds.
    fill_ms: f64,
}

impl AudioStream {
    /// `None` for more than two channels (the whole-window path mixes those down, or refuses).
    pub fn new(fx: &FeatureExtractor, rate: u32, channels: usize) -> Option<AudioStream> {
        matches!(channels, 1 | 2).then(|| AudioStream {
            ws: fx.window_stream(rate, channels),
            start: u64::MAX,
            next: 0,
            broken: true,
            fill_ms: 0.0,
        })
    }

    pub fn fits(&self, rate: u32, channels: usize) -> bool {
        self.ws.rate() == rate && self.ws.channels() == channels
    }

    /// Interleaved frames `first..` of the stream; the window being filled starts at
    /// `window_start` (frames before it are not its).
    pub fn frames(&mut self, fx: &mut FeatureExtractor, first: u64, window_start: u64, interleaved: &[f32]) {
        let t = Instant::now();
        let ch = self.ws.channels();
        if window_start != self.start {
            fx.stream_reset(&mut self.ws);
            (self.start, self.next, self.broken, self.fill_ms) = (window_start, window_start, false, 0.0);
        }
        let n = (interleaved.len() / ch) as u64;
        if first + n <= window_start || self.broken {
            return;
        }
        let skip = window_start.saturating_sub(first);
        if first + skip != self.next {
            self.broken = true;
            return;
        }
        fx.stream_push(&mut self.ws, &interleaved[(skip as usize) * ch..]);
        self.next = first + n;
        self.fill_ms += t.elapsed().as_secs_f64() * 1e3;
    }

    /// The stacks of the window starting at `first_frame`, `frames` frames long, if every
    /// one of its frames came through here; and the milliseconds spent while it filled.
    pub fn take(&mut self, fx: &mut FeatureExtractor, first_frame: u64, frames: usize) -> Option<([Array3; 3], f64)> {
        let whole = !self.broken && self.start == first_frame && self.ws.fed() == frames;
        // Whatever happens, this window is done with: the next frames start a new one.
        self.start = u64::MAX;
        whole.then(|| (fx.stream_finish(&mut self.ws), self.fill_ms))
    }
}
