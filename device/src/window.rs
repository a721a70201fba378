//! Windowing: audio in a fixed-capacity ring allocated once, cut into windows of
//! `clip_seconds` every `hop` seconds; visual embeddings in a fixed-capacity ring of their
//! own, averaged over the frames inside a window when the window closes.
//!
//! Audio time is the stamp each read carries (the device's monotonic clock, see
//! `sources::clock`), not only the count of samples: when a read starts later than the
//! samples before it ended (samples lost in an overrun, a microphone away for a while, or
//! no audio at all: an empty push), the gap is filled with silence and each window records
//! how much of it it holds; samples stamped inside a gap declared by an empty push (late:
//! the source was slower than its heartbeat) are dropped; small differences (jitter, the
//! sound card's crystal drifting against the system clock) move the timeline slowly onto
//! the stamps without touching the samples. A source that delivers faster than its stamps
//! advance (alsa-lib's `file` plugin, a replay) keeps every sample on the count's timeline.
//!
//! Nothing here allocates after construction: pushing samples, closing a window (the ring
//! is copied out into per-channel buffers that were allocated with the windower) and adding
//! frame embeddings only copy. device/tests/window_alloc.rs checks it with a counting
//! global allocator.

/// A window ready for the networks: per-channel samples at the source rate.
pub struct AudioWindow<'a> {
    /// Seconds since the source started, of the first sample.
    pub start_s: f64,
    /// The windower's index of the window's first frame (frames counted since the start,
    /// gaps included), as in [`Event::Frames`].
    pub first_frame: u64,
    pub index: u64,
    pub channels: &'a [Vec<f32>],
    pub sample_rate: u32,
    /// Seconds at the end of the window filled by repeating the audio (a stream shorter
    /// than one window); 0 for a whole window.
    pub padded_s: f64,
    /// Seconds of the window with no audio (lost samples, filled with silence).
    pub gap_s: f64,
}

/// What a push hands on, in order: the frames as they enter the ring (so work on a window
/// can start before it closes), and each window as it closes.
pub enum Event<'a, 'w> {
    /// Interleaved frames `first..` (silence for a gap) entering the ring, and the first
    /// frame of the next window to close. After a window closes, the frames of the next one
    /// that are already in the ring (overlapping windows) are handed on again.
    Frames {
        first: u64,
        samples: &'a [f32],
        window_start: u64,
    },
    Window(&'a AudioWindow<'w>),
}

/// A read whose stamp differs from where the audio before it ended by more than this is a
/// discontinuity (a gap or late samples); below it the difference is jitter or drift.
pub const GAP_TOLERANCE_S: f64 = 0.05;

/// How many gaps a windower remembers (older ones drop out; only those inside the current
/// window matter).
const MAX_GAPS: usize = 64;

pub struct Windower {
    channels: usize,
    rate: u32,
    window: usize,
    hop: usize,
    /// The last `window` frames, interleaved; `head` is where the next frame goes.
    ring: Vec<f32>,
    head: usize,
    /// Frames pushed in total, and the frame count at which the next window ends.
    total: u64,
    next_end: u64,
    /// Stream time of frame 0: the first frame pushed, moved slowly onto the reads' stamps.
    origin: Option<f64>,
    /// Gaps as (first frame, frames), oldest first.
    gaps: Vec<(u64, u64)>,
    /// Frames of gap at the end of what was pushed (no samples since).
    gap_tail: u64,
    out: Vec<Vec<f32>>,
    emitted: u64,
    /// Frames of the window being closed that repeat earlier ones.
    padded: usize,
}

impl Windower {
    /// `window_s` and `hop_s` in seconds at `rate`; hop may exceed the window (gaps).
    pub fn new(channels: usize, rate: u32, window_s: f64, hop_s: f64) -> Windower {
        let frames = |s: f64| (s * rate as f64).round() as usize;
        let (window, hop) = (frames(window_s), frames(hop_s));
        assert!(channels > 0 && window > 0 && hop > 0, "empty window or hop");
        Windower {
            channels,
            rate,
            window,
            hop,
            ring: vec![0.0; window * channels],
            head: 0,
            total: 0,
            next_end: window as u64,
            origin: None,
            gaps: Vec::with_capacity(MAX_GAPS),
            gap_tail: 0,
            out: vec![vec![0.0; window]; channels],
            emitted: 0,
            padded: 0,
        }
    }

    pub fn window_frames(&self) -> usize {
        self.window
    }

    /// Stream time of the last frame pushed so far (end of the audio seen).
    pub fn now_s(&self) -> f64 {
        self.origin.unwrap_or(0.0) + self.total as f64 / self.rate as f64
    }

    /// Push interleaved samples whose first frame is at stream time `t`; `on_window` runs
    /// for every window that closes inside them, in order. Empty `samples` say there was no
    /// audio until `t` (a source whose device is away): the time before it becomes a gap.
    pub fn push(&mut self, t: f64, samples: &[f32], mut on_window: impl FnMut(&AudioWindow)) {
        self.push_events(t, samples, |e| {
            if let Event::Window(w) = e {
                on_window(w)
            }
        })
    }

    /// [`Self::push`], handing on the frames as they arrive too ([`Event`]).
    pub fn push_events(&mut self, t: f64, samples: &[f32], mut on_window: impl FnMut(Event)) {
        let ch = self.channels;
        debug_assert_eq!(samples.len() % ch, 0);
        let origin = *self.origin.get_or_insert(t);
        let ahead = t - self.now_s();
        let mut rest = samples;
        if ahead > GAP_TOLERANCE_S {
            let lost = (ahead * self.rate as f64).round() as u64;
            self.record_gap(lost);
            self.feed(None, lost, &mut on_window);
            self.gap_tail += lost;
        } else if ahead < -GAP_TOLERANCE_S {
            // Only what falls inside a declared gap is dropped: the rest is a source faster
            // than the clock, whose samples all count.
            let late = ((-ahead * self.rate as f64).round() as u64).min(self.gap_tail);
            let late = (late as usize).min(rest.len() / ch);
            rest = &rest[late * ch..];
        } else if !rest.is_empty() && ahead.abs() > 1e-4 {
            // Jitter and drift: follow the stamps by an eighth of the difference per read.
            self.origin = Some(origin + ahead / 8.0);
        }
        if !rest.is_empty() {
            self.gap_tail = 0;
        }
        self.feed(Some(rest), (rest.len() / ch) as u64, &mut on_window);
    }

    /// Add `frames` frames to the ring: from `samples`, or silence when `None`.
    fn feed(&mut self, samples: Option<&[f32]>, frames: u64, on_window: &mut impl FnMut(Event)) {
        let ch = self.channels;
        let mut done = 0u64;
        while done < frames {
            // Up to the next window end, and no further than the ring's end.
            let until_end = self.next_end - self.total;
            let n = (frames - done).min(until_end).min((self.window - self.head) as u64) as usize;
            let dst = &mut self.ring[self.head * ch..(self.head + n) * ch];
            match samples {
                Some(s) => dst.copy_from_slice(&s[done as usize * ch..(done as usize + n) * ch]),
                None => dst.fill(0.0),
            }
            let window_start = self.next_end - self.window as u64;
            on_window(Event::Frames { first: self.total, samples: dst, window_start });
            self.head = (self.head + n) % self.window;
            self.total += n as u64;
            done += n as u64;
            if self.total == self.next_end {
                self.close(on_window);
            }
        }
    }

    /// Remember that the next `frames` frames are a gap, forgetting gaps that ended before
    /// the current window's start.
    fn record_gap(&mut self, frames: u64) {
        let oldest = self.next_end.saturating_sub(self.window as u64);
        self.gaps.retain(|&(s, n)| s + n > oldest);
        if self.gaps.len() == MAX_GAPS {
            self.gaps.remove(0);
        }
        self.gaps.push((self.total, frames));
    }

    /// Frames of gap in frames `start..end`.
    fn gap_frames(&self, start: u64, end: u64) -> u64 {
        self.gaps.iter().map(|&(s, n)| (s + n).min(end).saturating_sub(s.max(start))).sum()
    }

    /// Copy the ring (oldest frame at `head`) out de-interleaved and hand it over.
    fn close(&mut self, on_window: &mut impl FnMut(Event)) {
        let ch = self.channels;
        let (old, new) = self.ring.split_at(self.head * ch);
        for (i, frame) in new.chunks_exact(ch).chain(old.chunks_exact(ch)).enumerate() {
            for (c, s) in frame.iter().enumerate() {
                self.out[c][i] = *s;
            }
        }
        let start = self.next_end - self.window as u64;
        let w = AudioWindow {
            start_s: self.origin.unwrap_or(0.0) + start as f64 / self.rate as f64,
            first_frame: start,
            index: self.emitted,
            channels: &self.out,
            sample_rate: self.rate,
            padded_s: self.padded as f64 / self.rate as f64,
            gap_s: self.gap_frames(start, self.next_end) as f64 / self.rate as f64,
        };
        on_window(Event::Window(&w));
        self.emitted += 1;
        self.next_end += self.hop as u64;
        // The next window's frames already in the ring (oldest at `head`), handed on again.
        let next_start = self.next_end - self.window as u64;
        if self.padded == 0 && next_start < self.total {
            let skip = (next_start - (self.total - self.window as u64)) as usize;
            let at = (self.head + skip) % self.window;
            let (end, wraps) = if at < self.head { (self.head, false) } else { (self.window, self.head > 0) };
            let first = &self.ring[at * ch..end * ch];
            on_window(Event::Frames { first: next_start, samples: first, window_start: next_start });
            if wraps {
                let rest = &self.ring[..self.head * ch];
                on_window(Event::Frames {
                    first: next_start + (end - at) as u64,
                    samples: rest,
                    window_start: next_start,
                });
            }
        }
    }

    /// At the end of a stream that never filled a window: if it holds at least `min_s`
    /// seconds, one window of them repeated until it is full (the usual way DCASE systems
    /// fill short clips), marked with the seconds repeated ([`AudioWindow::padded_s`]).
    /// In place: nothing is allocated.
    pub fn flush_partial(&mut self, min_s: f64, mut on_window: impl FnMut(&AudioWindow)) {
        let mut on_window = |e: Event| {
            if let Event::Window(w) = e {
                on_window(w)
            }
        };
        let have = self.total as usize;
        if self.emitted > 0 || have == 0 || (have as f64) < min_s * self.rate as f64 {
            return;
        }
        // No window closed yet, so the ring holds frames 0..have from its start.
        let ch = self.channels;
        for k in have..self.window {
            let from = (k % have) * ch;
            self.ring.copy_within(from..from + ch, k * ch);
        }
        self.padded = self.window - have;
        self.head = 0;
        self.total = self.next_end;
        self.close(&mut on_window);
        self.padded = 0;
    }

    /// Whether pushing `frames` more frames, or reaching stream time `t` (through a gap),
    /// closes a window.
    pub fn closes_within(&self, frames: usize, t: f64) -> bool {
        let by_time = self.origin.is_some_and(|o| ((t - o) * self.rate as f64).round() as u64 >= self.next_end);
        by_time || self.total + frames as u64 >= self.next_end
    }

    pub fn windows_emitted(&self) -> u64 {
        self.emitted
    }
}

/// Per-frame visual embeddings (all visual backbones, both embedding kinds, concatenated)
/// with their timestamps, in a ring sized for the frames of one window plus one hop.
pub struct EmbeddingRing {
    width: usize,
    times: Vec<f64>,
    data: Vec<f32>,
    /// Slots used, oldest first at `head`.
    head: usize,
    len: usize,
    mean: Vec<f32>,
}

impl EmbeddingRing {
    pub fn new(capacity: usize, width: usize) -> EmbeddingRing {
        assert!(capacity > 0);
        EmbeddingRing {
            width,
            times: vec![0.0; capacity],
            data: vec![0.0; capacity * width],
            head: 0,
            len: 0,
            mean: vec![0.0; width],
        }
    }

    pub fn capacity(&self) -> usize {
        self.times.len()
    }

    /// Add a frame's embedding; the oldest is dropped when full.
    pub fn push(&mut self, t: f64, embedding: &[f32]) {
        assert_eq!(embedding.len(), self.width, "embedding width");
        let cap = self.capacity();
        let slot = (self.head + self.len) % cap;
        if self.len == cap {
            self.head = (self.head + 1) % cap;
        } else {
            self.len += 1;
        }
        self.times[slot] = t;
        self.data[slot * self.width..(slot + 1) * self.width].copy_from_slice(embedding);
    }

    /// The mean embedding of the frames with start <= t < end, and how many there were.
    pub fn mean(&mut self, start: f64, end: f64) -> (usize, &[f32]) {
        self.mean.iter_mut().for_each(|m| *m = 0.0);
        let cap = self.capacity();
        let mut n = 0;
        for k in 0..self.len {
            let slot = (self.head + k) % cap;
            let t = self.times[slot];
            if t >= start && t < end {
                n += 1;
                let row = &self.data[slot * self.width..(slot + 1) * self.width];
                self.mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
            }
        }
        if n > 0 {
            let inv = 1.0 / n as f32;
            self.mean.iter_mut().for_each(|m| *m *= inv);
        }
        (n, &self.mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(frames: usize, ch: usize, from: usize) -> Vec<f32> {
        (0..frames).flat_map(|i| (0..ch).map(move |c| ((from + i) * 10 + c) as f32)).collect()
    }

    #[test]
    fn windows_with_hop_and_odd_chunks() {
        // 10-frame windows every 4 frames at 1 Hz, pushed in chunks of 3.
        let mut w = Windower::new(2, 1, 10.0, 4.0);
        let mut got = Vec::new();
        let all = ramp(30, 2, 0);
        for (k, chunk) in all.chunks(6).enumerate() {
            w.push(k as f64 * 3.0, chunk, |win| got.push((win.start_s, win.channels[0].clone(), win.channels[1][0])));
        }
        let starts: Vec<f64> = got.iter().map(|g| g.0).collect();
        assert_eq!(starts, vec![0.0, 4.0, 8.0, 12.0, 16.0, 20.0]);
        for (start, ch0, ch1_first) in &got {
            let s = *start as usize;
            let want: Vec<f32> = (s..s + 10).map(|i| (i * 10) as f32).collect();
            assert_eq!(ch0, &want);
            assert_eq!(*ch1_first, (s * 10 + 1) as f32);
        }
    }

    /// The frames handed on, taken from each window's start, are exactly that window's
    /// frames, in order, before it closes: overlapping windows (replayed from the ring),
    /// windows with gaps between them, and a gap of silence.
    #[test]
    fn frames_handed_on_rebuild_every_window() {
        for (window_s, hop_s) in [(10.0, 4.0), (10.0, 10.0), (4.0, 7.0), (10.0, 3.0)] {
            let mut w = Windower::new(2, 1, window_s, hop_s);
            let all = ramp(40, 2, 0);
            let mut building: Vec<f32> = Vec::new();
            let mut start = u64::MAX;
            let mut next = 0u64;
            let mut checked = 0;
            let mut on = |e: Event| match e {
                Event::Frames { first, samples, window_start } => {
                    if window_start != start {
                        (start, next) = (window_start, window_start);
                        building.clear();
                    }
                    let n = samples.len() as u64 / 2;
                    if first + n <= start {
                        return;
                    }
                    let skip = start.saturating_sub(first);
                    assert_eq!(first + skip, next, "window {window_s} hop {hop_s}: contiguous");
                    building.extend_from_slice(&samples[skip as usize * 2..]);
                    next = first + n;
                }
                Event::Window(win) => {
                    assert_eq!(win.first_frame, start);
                    let interleaved: Vec<f32> =
                        (0..win.channels[0].len()).flat_map(|i| [win.channels[0][i], win.channels[1][i]]).collect();
                    assert_eq!(building, interleaved, "window {window_s} hop {hop_s} at {}", win.start_s);
                    checked += 1;
                }
            };
            for (k, chunk) in all[..30].chunks(6).enumerate() {
                w.push_events(k as f64 * 3.0, chunk, &mut on);
            }
            // 5 s of silence (a gap), then the rest.
            w.push_events(20.0, &all[30..], &mut on);
            assert!(checked >= 3, "window {window_s} hop {hop_s}: {checked} windows");
        }
    }

    #[test]
    fn hop_longer_than_window_skips() {
        let mut w = Windower::new(1, 1, 2.0, 5.0);
        let mut starts = Vec::new();
        w.push(0.0, &ramp(13, 1, 0), |win| starts.push((win.start_s, win.channels[0].clone())));
        assert_eq!(starts, vec![(0.0, vec![0.0, 10.0]), (5.0, vec![50.0, 60.0]), (10.0, vec![100.0, 110.0])]);
    }

    #[test]
    fn a_short_stream_fills_one_window_by_repetition_from_the_minimum_length() {
        // 10 frames/s, 10-s window, at least 1.5 s needed.
        let mut w = Windower::new(2, 10, 10.0, 10.0);
        let frame = |k: usize| [k as f32, -(k as f32)];
        let first: Vec<f32> = (0..12).flat_map(frame).collect();
        w.push(0.0, &first, |_| panic!("not a whole window"));
        let mut n = 0;
        w.flush_partial(1.5, |_| n += 1);
        assert_eq!(n, 0, "1.2 s is below the minimum");
        let more: Vec<f32> = (12..37).flat_map(frame).collect();
        w.push(1.2, &more, |_| panic!("not a whole window"));
        w.flush_partial(1.5, |win| {
            n += 1;
            assert_eq!((win.start_s, win.index), (0.0, 0));
            assert!((win.padded_s - 6.3).abs() < 1e-9, "{}", win.padded_s);
            // 3.7 s of audio, then the same again from its start, and again.
            let want: Vec<f32> = (0..100).map(|i| (i % 37) as f32).collect();
            assert_eq!(win.channels[0], want);
            assert_eq!(win.channels[1], want.iter().map(|v| -v).collect::<Vec<_>>());
        });
        assert_eq!(n, 1);
        // A later window of the same windower is whole again.
        w.push(10.0, &[0.0; 200], |win| assert_eq!(win.padded_s, 0.0));
    }

    /// Interleaved stereo frames `from..to`, each sample its frame number + 1 (so silence
    /// tells itself apart).
    fn numbered(from: usize, to: usize) -> Vec<f32> {
        (from..to).flat_map(|k| [(k + 1) as f32; 2]).collect()
    }

    #[test]
    fn lost_samples_move_the_timeline_on_and_each_window_counts_its_gap() {
        // 10 frames/s, 10-s windows every 5 s. 3 s of audio, then 2 s lost, then 12 s.
        let mut w = Windower::new(2, 10, 10.0, 5.0);
        let mut got = Vec::new();
        let mut keep = |win: &AudioWindow| got.push((win.start_s, win.gap_s, win.channels[0].clone()));
        w.push(0.0, &numbered(0, 30), &mut keep);
        w.push(5.0, &numbered(50, 170), &mut keep);
        assert_eq!(got.len(), 2);
        let (start, gap, ch0) = &got[0];
        assert_eq!((*start, *gap), (0.0, 2.0));
        let want: Vec<f32> = (0..100).map(|k| if (30..50).contains(&k) { 0.0 } else { (k + 1) as f32 }).collect();
        assert_eq!(ch0, &want);
        // The second window starts at 5 s, after the gap: whole, its samples from 5 s.
        let (start, gap, ch0) = &got[1];
        assert_eq!((*start, *gap), (5.0, 0.0));
        assert_eq!(ch0[0], 51.0);
        assert!((w.now_s() - 17.0).abs() < 1e-9);
    }

    #[test]
    fn an_empty_push_declares_silence_and_late_samples_are_dropped() {
        let mut w = Windower::new(2, 10, 10.0, 10.0);
        let mut got = Vec::new();
        w.push(0.0, &numbered(0, 20), |_| unreachable!());
        // No audio until 8 s (the microphone is away): 6 s of gap, one window closes by 12 s.
        w.push(8.0, &[], |_| unreachable!());
        assert!(w.closes_within(0, 12.0) && !w.closes_within(0, 9.0));
        // Samples from 7 s arrive late: 7..8 s is already covered and dropped.
        w.push(7.0, &numbered(70, 100), |win| got.push((win.gap_s, win.channels[1].clone())));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 6.0);
        assert_eq!(&got[0].1[78..82], &[0.0, 0.0, 81.0, 82.0]);
        assert_eq!(got[0].1[19], 20.0);
    }

    #[test]
    fn a_source_faster_than_its_stamps_keeps_every_sample() {
        // alsa-lib's file plugin: 30 s of samples read in no time, all stamped near 0.
        let mut w = Windower::new(2, 10, 10.0, 10.0);
        let mut got = Vec::new();
        for k in 0..30 {
            w.push(k as f64 * 1e-3, &numbered(k * 10, k * 10 + 10), |win| {
                got.push((win.start_s, win.gap_s, win.channels[0][0], win.channels[0][99]))
            });
        }
        assert_eq!(got, vec![(0.0, 0.0, 1.0, 100.0), (10.0, 0.0, 101.0, 200.0), (20.0, 0.0, 201.0, 300.0)]);
    }

    #[test]
    fn drift_is_followed_without_gaps() {
        // The sound card runs 0.1 % slow against the system clock: its 0.1-s reads are
        // stamped 0.1001 s apart. After 100 s the windows start on the stamps, gap-free.
        let mut w = Windower::new(1, 1000, 10.0, 10.0);
        let mut got = Vec::new();
        let chunk = vec![0.5f32; 100];
        for k in 0..1000 {
            w.push(k as f64 * 0.1001, &chunk, |win| got.push((win.start_s, win.gap_s)));
        }
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|&(_, g)| g == 0.0));
        let (last_start, _) = got[9];
        let stamped = 90.0 * 1.001;
        assert!((last_start - stamped).abs() < 0.01, "{last_start} vs {stamped}");
    }

    #[test]
    fn embedding_ring_means_frames_in_range() {
        let mut r = EmbeddingRing::new(3, 2);
        for k in 0..5 {
            r.push(k as f64, &[k as f32, 1.0]);
        }
        // Frames 0 and 1 fell out of the ring.
        assert_eq!(r.mean(0.0, 10.0), (3, &[3.0, 1.0][..]));
        assert_eq!(r.mean(3.0, 4.0), (1, &[3.0, 1.0][..]));
        assert_eq!(r.mean(5.0, 6.0).0, 0);
    }
}
