//! The one clock of the device: microphone samples and camera frames are both stamped on
//! CLOCK_MONOTONIC at capture, as seconds since the moment the device started (its epoch).
//! Audio time is therefore not the count of samples delivered (which stops over samples
//! lost in an overrun or while a device is reopened) and camera time is not the time since
//! the camera opened: a window picks the frames captured while its samples were, after an
//! outage of any length and through any drift between the sound card's crystal and the
//! system clock.
//!
//! Sources take the clock as an `Arc<dyn Clock>`, so tests drive them on a scripted one.

use std::sync::Arc;

/// Seconds on the device's timeline (since its epoch); never decreases.
pub trait Clock: Send + Sync {
    fn now(&self) -> f64;
    /// A CLOCK_MONOTONIC time (seconds, as the kernel stamps V4L2 buffers) on this
    /// timeline, when this clock is the system's; `None` for a scripted clock.
    fn monotonic_to_timeline(&self, _mono_s: f64) -> Option<f64> {
        None
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// CLOCK_MONOTONIC, in seconds (the clock V4L2 buffer timestamps and ALSA's monotonic
/// timestamps use; it does not jump when the wall clock is set).
pub fn monotonic_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; CLOCK_MONOTONIC
    // exists on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The system's monotonic clock with the device's epoch.
#[derive(Clone, Copy, Debug)]
pub struct Monotonic {
    epoch: f64,
}

impl Monotonic {
    /// A timeline starting now.
    pub fn start() -> Monotonic {
        Monotonic { epoch: monotonic_s() }
    }

    pub fn shared() -> SharedClock {
        Arc::new(Monotonic::start())
    }
}

impl Clock for Monotonic {
    fn now(&self) -> f64 {
        monotonic_s() - self.epoch
    }

    fn monotonic_to_timeline(&self, mono_s: f64) -> Option<f64> {
        Some(mono_s - self.epoch)
    }
}

/// A clock for tests: starts at 0 and runs `speed` times faster than real time, so a
/// scripted minute of microphone and camera takes seconds.
#[derive(Clone, Copy, Debug)]
pub struct Scaled {
    start: std::time::Instant,
    speed: f64,
}

impl Scaled {
    pub fn new(speed: f64) -> Scaled {
        assert!(speed > 0.0);
        Scaled { start: std::time::Instant::now(), speed }
    }

    /// Sleep until this clock reads `t` (returns at once if it already has).
    pub fn sleep_until(&self, t: f64) {
        let left = (t - self.now()) / self.speed;
        if left > 0.0 {
            std::thread::sleep(std::time::Duration::from_secs_f64(left));
        }
    }
}

impl Clock for Scaled {
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * self.speed
    }
    /// Scripted devices stamp with this clock's own readings.
    fn monotonic_to_timeline(&self, mono_s: f64) -> Option<f64> {
        Some(mono_s)
    }
}

/// A clock for tests that moves only when told to.
#[derive(Debug, Default)]
pub struct Manual {
    t: std::sync::Mutex<f64>,
}

impl Manual {
    pub fn shared() -> Arc<Manual> {
        Arc::new(Manual::default())
    }

    pub fn advance(&self, dt: f64) {
        assert!(dt >= 0.0, "a monotonic clock does not go back");
        *self.t.lock().unwrap() += dt;
    }
}

impl Clock for Manual {
    fn now(&self) -> f64 {
        *self.t.lock().unwrap()
    }
    /// Scripted devices stamp with this clock's own readings.
    fn monotonic_to_timeline(&self, mono_s: f64) -> Option<f64> {
        Some(mono_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_starts_near_zero_and_maps_kernel_stamps() {
        let c = Monotonic::start();
        let a = c.now();
        assert!((0.0..1.0).contains(&a), "{a}");
        let raw = monotonic_s();
        let b = c.now();
        let mapped = c.monotonic_to_timeline(raw).unwrap();
        assert!(a <= mapped && mapped <= b, "{a} {mapped} {b}");
    }

    #[test]
    fn scaled_runs_fast() {
        let c = Scaled::new(100.0);
        c.sleep_until(1.0);
        let t = c.now();
        assert!((1.0..5.0).contains(&t), "{t}");
    }
}
