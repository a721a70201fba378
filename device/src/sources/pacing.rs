//! Real-time pacing for file sources: a recorded clip replayed as if it were live, so
//! `classify --realtime` exercises the same timing as `run`.

use super::{AudioRead, AudioSource, Frame, FrameSource};
use anyhow::Result;
use std::time::{Duration, Instant};

/// Delivers each read no earlier than the wall-clock time its last sample was captured.
pub struct Paced<S> {
    inner: S,
    start: Option<Instant>,
}

impl<S> Paced<S> {
    pub fn new(inner: S) -> Paced<S> {
        Paced { inner, start: None }
    }

    fn wait_until(&mut self, t: f64) {
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + Duration::from_secs_f64(t.max(0.0));
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

impl<S: AudioSource> AudioSource for Paced<S> {
    fn sample_rate(&self) -> u32 {
        self.inner.sample_rate()
    }
    fn channels(&self) -> usize {
        self.inner.channels()
    }
    fn read(&mut self, buf: &mut [f32]) -> Result<Option<AudioRead>> {
        let r = self.inner.read(buf)?;
        if let Some(r) = r {
            self.wait_until(r.t + r.frames as f64 / self.inner.sample_rate() as f64);
        }
        Ok(r)
    }
    fn describe(&self) -> String {
        format!("{} (paced)", self.inner.describe())
    }
    fn absent(&self) -> Option<&str> {
        self.inner.absent()
    }
    fn note(&self) -> Option<&str> {
        self.inner.note()
    }
}

impl<S: FrameSource> FrameSource for Paced<S> {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        let f = self.inner.next_frame()?;
        if let Some(f) = &f {
            self.wait_until(f.t);
        }
        Ok(f)
    }
    fn describe(&self) -> String {
        format!("{} (paced)", self.inner.describe())
    }
}
