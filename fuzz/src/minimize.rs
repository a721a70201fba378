//! Shrinking a finding's input: chunks are deleted (halves, quarters, ... single bytes) as
//! long as the input still fails the same way, giving a small input for a regression test.
//! Panics and allocation findings only (a hang is better cut down by hand).

use crate::alloc;
use crate::engine::alloc_cap;
use crate::targets::Target;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

/// How `input` fails `target`: the panic message (with its location), or "alloc" when its
/// allocations peak above the cap; `None` if it passes.
pub fn failure(target: Target, input: &[u8]) -> Option<String> {
    static MESSAGE: Mutex<Option<String>> = Mutex::new(None);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| *MESSAGE.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.to_string())));
    crate::engine::warm_up_unwinding();
    let baseline = alloc::reset();
    let r = catch_unwind(AssertUnwindSafe(|| target.run(input)));
    let usage = alloc::usage(baseline);
    std::panic::set_hook(previous);
    match r {
        Err(_) => Some(MESSAGE.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default()),
        Ok(_) if usage.peak > alloc_cap(input.len()) => Some("alloc".to_string()),
        Ok(_) => None,
    }
}

/// The smallest input found by chunk deletion that fails as `input` does (at most
/// `max_tries` runs). Returns `input` unchanged if it does not fail.
pub fn minimize(target: Target, input: &[u8], max_tries: usize) -> Vec<u8> {
    let mut best = input.to_vec();
    let Some(want) = failure(target, &best) else { return best };
    let mut tries = 0;
    let mut chunk = best.len().div_ceil(2).max(1);
    loop {
        let mut at = 0;
        let mut shrunk = false;
        while at < best.len() && tries < max_tries {
            let end = (at + chunk).min(best.len());
            let mut candidate = best[..at].to_vec();
            candidate.extend_from_slice(&best[end..]);
            tries += 1;
            if failure(target, &candidate).as_deref() == Some(want.as_str()) {
                best = candidate;
                shrunk = true;
            } else {
                at += chunk;
            }
        }
        if tries >= max_tries || (chunk == 1 && !shrunk) {
            return best;
        }
        if !shrunk {
            chunk = chunk.div_ceil(2);
        }
    }
}
