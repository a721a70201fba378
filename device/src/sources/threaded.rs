//! A live audio source on its own thread. The capture thread does nothing but read periods
//! into a pool of buffers allocated once, so the device keeps reading the microphone while
//! the main thread spends a second or two in the networks at the end of a window; the
//! buffers queue up (`queue_s` of audio) and the main thread catches up afterwards. Only if
//! it stays behind longer than that does the capture thread block, and the device's own
//! buffer overrun — which the ALSA source recovers and reports.
//!
//! Live, with a heartbeat ([`ThreadedAudio::with_heartbeat`]): when no audio has come for
//! the stall time (the microphone is gone and being reopened), `read` returns an empty read
//! stamped with the clock, so the loop's time goes on without audio and windows keep being
//! classified from the camera alone.

use super::clock::SharedClock;
use super::{AudioRead, AudioSource};
use anyhow::{Context, Result};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

type Chunk = (AudioRead, Vec<f32>);

pub struct ThreadedAudio {
    rx: Receiver<Result<Chunk>>,
    pool: SyncSender<Vec<f32>>,
    rate: u32,
    channels: usize,
    describe: String,
    /// The chunk being handed out and how many of its frames are gone.
    current: Option<(Chunk, usize)>,
    heartbeat: Option<(SharedClock, Duration)>,
}

impl ThreadedAudio {
    /// Open the source on a new thread (`open` runs there) and start capturing `chunk_s`
    /// seconds per read, with up to `queue_s` seconds queued.
    pub fn spawn<S, F>(open: F, chunk_s: f64, queue_s: f64) -> Result<ThreadedAudio>
    where
        S: AudioSource + 'static,
        F: FnOnce() -> Result<S> + Send + 'static,
    {
        let (opened_tx, opened_rx) = sync_channel::<Result<(u32, usize, String)>>(1);
        let (tx, rx) = sync_channel::<Result<Chunk>>(1024);
        let n_buffers = ((queue_s / chunk_s).ceil() as usize).max(2);
        let (pool_tx, pool_rx) = sync_channel::<Vec<f32>>(n_buffers);
        std::thread::Builder::new()
            .name("audio".into())
            .spawn(move || {
                let mut src = match open() {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                let (rate, ch) = (src.sample_rate(), src.channels());
                let _ = opened_tx.send(Ok((rate, ch, src.describe())));
                let len = ((chunk_s * rate as f64).ceil() as usize).max(1) * ch;
                // The pool's buffers are made here, once; they come back after use.
                let mut fresh = n_buffers;
                loop {
                    let mut buf = if fresh > 0 {
                        fresh -= 1;
                        vec![0.0f32; len]
                    } else {
                        match pool_rx.recv() {
                            Ok(b) => b,
                            Err(_) => return,
                        }
                    };
                    let r = src.read(&mut buf);
                    let msg = match r {
                        Ok(Some(read)) => Ok((read, buf)),
                        Ok(None) => return,
                        Err(e) => Err(e),
                    };
                    let failed = msg.is_err();
                    if tx.send(msg).is_err() || failed {
                        return;
                    }
                }
            })
            .context("cannot start the audio thread")?;
        let (rate, channels, describe) = opened_rx.recv().context("audio thread died while opening")??;
        Ok(ThreadedAudio { rx, pool: pool_tx, rate, channels, describe, current: None, heartbeat: None })
    }

    /// When no audio arrives for `stall`, `read` returns an empty read stamped `stall`
    /// before `clock`'s now (audio captured before that may still be on its way): no audio
    /// until then. The clock must be the one the source stamps its reads with.
    pub fn with_heartbeat(mut self, clock: SharedClock, stall: Duration) -> ThreadedAudio {
        self.heartbeat = Some((clock, stall));
        self
    }
}

impl AudioSource for ThreadedAudio {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn channels(&self) -> usize {
        self.channels
    }

    fn read(&mut self, buf: &mut [f32]) -> Result<Option<AudioRead>> {
        if self.current.is_none() {
            let chunk = match &self.heartbeat {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some((_, stall)) => self.rx.recv_timeout(*stall),
            };
            match chunk {
                Ok(chunk) => self.current = Some((chunk?, 0)),
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
                Err(RecvTimeoutError::Timeout) => {
                    let (clock, stall) = self.heartbeat.as_ref().expect("timeouts only with a heartbeat");
                    return Ok(Some(AudioRead { frames: 0, t: clock.now() - stall.as_secs_f64() }));
                }
            }
        }
        let ch = self.channels;
        let ((read, data), used) = self.current.as_mut().expect("filled above");
        let n = (buf.len() / ch).min(read.frames - *used);
        buf[..n * ch].copy_from_slice(&data[*used * ch..(*used + n) * ch]);
        let t = read.t + *used as f64 / self.rate as f64;
        *used += n;
        if *used == read.frames {
            let ((_, data), _) = self.current.take().expect("present");
            let _ = self.pool.try_send(data);
        }
        Ok(Some(AudioRead { frames: n, t }))
    }

    fn describe(&self) -> String {
        format!("{} (capture thread)", self.describe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::file::{ClipAudio, FileAudio};
    use avsc_shared::wav::Audio;

    #[test]
    fn delivers_every_sample_in_order() {
        let n = 10_000;
        let audio = Audio { sample_rate: 1000, channels: vec![(0..n).map(|i| i as f32).collect(), vec![0.5; n]] };
        let mut t = ThreadedAudio::spawn(move || ClipAudio::new(audio, "x"), 0.1, 0.5).unwrap();
        let mut buf = vec![0.0; 74];
        let mut got = Vec::new();
        let mut times = Vec::new();
        while let Some(r) = t.read(&mut buf).unwrap() {
            times.push((r.t, got.len()));
            got.extend(buf[..r.frames * 2].chunks_exact(2).map(|f| f[0]));
        }
        assert_eq!(got, (0..n).map(|i| i as f32).collect::<Vec<_>>());
        assert!(times.iter().all(|&(t, k)| (t - k as f64 / 1000.0).abs() < 1e-9));
        assert!(ThreadedAudio::spawn(|| FileAudio::open(std::path::Path::new("/nonexistent.wav")), 0.1, 1.0).is_err());
    }
}
