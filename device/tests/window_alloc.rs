//! The windowing path allocates nothing in steady state: a counting global allocator sees
//! zero allocations on this thread while 1,000 windows' worth of audio is pushed through the
//! ring, windows are closed (copied out per channel) and frame embeddings are averaged.

use avsc_device::window::{EmbeddingRing, Windower};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

#[test]
fn steady_state_windowing_does_not_allocate() {
    // 48 kHz stereo, 10-s windows every 1 s, fed in ALSA-sized chunks of 100 ms; frames
    // at 2 fps with two visual backbones' embeddings (2 x (1024 + 10)).
    let (rate, ch) = (48_000u32, 2usize);
    let mut w = Windower::new(ch, rate, 10.0, 1.0);
    let width = 2 * 1034;
    let mut ring = EmbeddingRing::new(26, width);
    let chunk: Vec<f32> = (0..4800 * ch).map(|i| (i % 97) as f32 / 97.0).collect();
    let emb = vec![0.25f32; width];
    let mut windows = 0u64;
    let mut checksum = 0.0f64;
    let mut t = 0.0;
    let step = |w: &mut Windower, ring: &mut EmbeddingRing, t: &mut f64, windows: &mut u64, sum: &mut f64| {
        if ((*t * 10.0).round() as u64).is_multiple_of(5) {
            ring.push(*t, &emb);
        }
        w.push(*t, &chunk, |win| {
            let (n, mean) = ring.mean(win.start_s, win.start_s + 10.0);
            *sum += win.channels[0][0] as f64
                + win.channels[1][win.channels[1].len() - 1] as f64
                + n as f64
                + mean[0] as f64;
            *windows += 1;
        });
        *t += 0.1;
    };
    // Warm up: the first window, so any lazy initialisation is behind us.
    while windows < 1 {
        step(&mut w, &mut ring, &mut t, &mut windows, &mut checksum);
    }
    let before = allocations();
    while windows < 1001 {
        step(&mut w, &mut ring, &mut t, &mut windows, &mut checksum);
    }
    let during = allocations() - before;
    assert_eq!(during, 0, "{during} allocations while closing 1,000 windows");
    assert!(checksum.is_finite() && checksum > 0.0);
    // The counter does count: a Vec allocates.
    let v: Vec<u8> = Vec::with_capacity(10);
    assert!(allocations() > before, "{}", v.capacity());
}

/// A window's JSON line is written into one reused buffer: after the first, 1,000 lines
/// (probabilities by label, modalities, latencies) allocate nothing.
#[test]
fn writing_a_windows_line_does_not_allocate() {
    use avsc_device::infer::Latency;
    use avsc_device::pipeline::{write_line, Probabilities, Record};
    let write = |line: &mut Vec<u8>, k: u64| {
        let mut p = [0.05f32; avsc_shared::NUM_CLASSES];
        p[(k % 10) as usize] = 0.55;
        let rec = Record {
            source: Some("field.mp4"),
            window: k,
            start_s: k as f64,
            end_s: k as f64 + 10.0,
            top: avsc_shared::LABELS[(k % 10) as usize],
            probabilities: Probabilities(p),
            modalities: &["audio", "visual"],
            head: "fusion",
            frames: 20,
            note: None,
            padded_s: None,
            gap_s: None,
            latency_ms: Latency { audio_nets: k as f64 * 0.1, ..Latency::default() },
        };
        write_line(line, &rec);
    };
    let mut line = Vec::new();
    write(&mut line, 0);
    let before = allocations();
    for k in 1..=1000 {
        write(&mut line, k);
    }
    let during = allocations() - before;
    assert_eq!(during, 0, "{during} allocations while writing 1,000 lines");
    // The last line is the JSON the device writes.
    let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(v["window"], 1000);
    assert_eq!(v["top"], "airport");
    assert_eq!(v["probabilities"]["airport"], f64::from(0.55f32));
    assert_eq!(v["probabilities"].as_object().unwrap().len(), 10);
    assert!(line.ends_with(b"}\n"));
}
