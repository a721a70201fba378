//! Fragmented MP4 (`moof` + `mdat` pairs after a `moov` whose sample tables are empty): what
//! browsers' MediaRecorder (Safari), some phone and camera apps, streaming tools and 3GPP
//! recorders write. Each fragment's `traf` boxes append samples to their track: `tfhd`
//! gives the base offset and defaults (else the track's `trex` in `mvex`), `tfdt` the decode
//! time, each `trun` the samples' durations, sizes and composition offsets.

use super::{boxes, child, need, Codec, Movie, Rd, Sample};
use anyhow::{bail, ensure, Context, Result};

/// `trex` defaults of a track: (duration, size).
type Defaults = (u32, u32);

/// The `track_ID` of a `trak`, from its `tkhd`.
pub(super) fn track_id(trak: &[u8]) -> Result<u32> {
    let mut r = Rd::new(need(trak, b"tkhd")?, "tkhd");
    let version = r.u8()?;
    r.bytes(3 + if version == 1 { 16 } else { 8 })?;
    r.u32()
}

/// Append the samples of every fragment to the movie's tracks. `ids[i]` is the `track_ID`
/// of `movie.tracks[i]`; `moofs` are (file offset of the `moof` box, its body) in file order.
pub(super) fn apply(
    movie: &mut Movie,
    ids: &[u32],
    moov: &[u8],
    moofs: &[(u64, Vec<u8>)],
    file_len: u64,
) -> Result<()> {
    let mut defaults: Vec<Defaults> = vec![(0, 0); ids.len()];
    if let Some(mvex) = child(moov, b"mvex")? {
        for bx in boxes(mvex) {
            let bx = bx?;
            if &bx.typ == b"trex" {
                let mut r = Rd::new(bx.body, "trex");
                r.bytes(4)?;
                let id = r.u32()?;
                r.u32()?; // sample description index
                let d = (r.u32()?, r.u32()?);
                if let Some(i) = ids.iter().position(|&t| t == id) {
                    defaults[i] = d;
                }
            }
        }
    }
    // Where each track's next sample is decoded, when a fragment has no `tfdt`.
    let mut next_dts: Vec<i64> = movie
        .tracks
        .iter()
        .map(|t| match t.samples.as_slice() {
            [.., a, b] => b.dts.saturating_add(b.dts.saturating_sub(a.dts)),
            [a] => a.dts,
            [] => 0,
        })
        .collect();
    for (moof_at, moof) in moofs {
        for bx in boxes(moof) {
            let bx = bx?;
            if &bx.typ != b"traf" {
                continue;
            }
            let traf = bx.body;
            let mut r = Rd::new(need(traf, b"tfhd")?, "tfhd");
            let flags = r.u32()? & 0xFF_FFFF;
            let id = r.u32()?;
            let Some(t) = ids.iter().position(|&x| x == id) else {
                bail!("a fragment of track {id}, which 'moov' does not have")
            };
            let base = if flags & 0x1 != 0 { r.u64()? } else { *moof_at };
            if flags & 0x2 != 0 {
                r.u32()?;
            }
            let duration = if flags & 0x8 != 0 { r.u32()? } else { defaults[t].0 };
            let size = if flags & 0x10 != 0 { r.u32()? } else { defaults[t].1 };
            let track = &mut movie.tracks[t];
            ensure!(!matches!(track.codec, Codec::Pcm(_)), "uncompressed audio in a fragmented file is not supported");
            if let Some(tfdt) = child(traf, b"tfdt")? {
                let mut r = Rd::new(tfdt, "tfdt");
                let version = r.u8()?;
                r.bytes(3)?;
                let t0 = if version == 1 { r.u64()? } else { r.u32()? as u64 };
                next_dts[t] = i64::try_from(t0).ok().context("'tfdt' decode time overflows")?;
            }
            // Samples follow each other from the base (or a run's own data offset).
            let mut at = base;
            for run in boxes(traf) {
                let run = run?;
                if &run.typ != b"trun" {
                    continue;
                }
                let mut r = Rd::new(run.body, "trun");
                let rflags = r.u32()? & 0xFF_FFFF;
                let n = r.u32()?;
                if rflags & 0x1 != 0 {
                    at = base.checked_add_signed(r.u32()? as i32 as i64).context("'trun' data offset overflows")?;
                }
                if rflags & 0x4 != 0 {
                    r.u32()?;
                }
                let entry = [0x100, 0x200, 0x400, 0x800].iter().filter(|&&f| rflags & f != 0).count() * 4;
                let n = r.table(n, entry)?;
                if rflags & 0x200 == 0 {
                    // Every sample has the default size: the count is bounded by the file
                    // (found by `avsc-fuzz mp4`: 2^32 empty samples).
                    ensure!(
                        n == 0 || (size > 0 && n as u64 * size as u64 <= file_len),
                        "'trun' places {n} samples of {size} bytes"
                    );
                }
                track.samples.reserve(n);
                for _ in 0..n {
                    let d = if rflags & 0x100 != 0 { r.u32()? } else { duration };
                    let s = if rflags & 0x200 != 0 { r.u32()? } else { size };
                    if rflags & 0x400 != 0 {
                        r.u32()?;
                    }
                    // Signed in version 1; read version 0's as signed too, as `ctts` is.
                    let cto = if rflags & 0x800 != 0 { r.u32()? as i32 as i64 } else { 0 };
                    ensure!(
                        at.checked_add(s as u64).is_some_and(|end| end <= file_len),
                        "fragment sample (bytes {at}..+{s}) lies beyond the end of the file (truncated file?)"
                    );
                    let dts = next_dts[t];
                    let pts = dts.checked_add(cto).context("'trun' presentation times overflow")?;
                    track.samples.push(Sample { offset: at, size: s, dts, pts });
                    at += s as u64;
                    next_dts[t] = dts.checked_add(d as i64).context("'trun' decode times overflow")?;
                }
            }
        }
    }
    Ok(())
}
