//! Regression tests for inputs found by `avsc-fuzz mp4`: hand-built, minimal files.

use super::*;

/// A box: 32-bit size, type, body.
fn bx(typ: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
    let body = parts.concat();
    let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(typ);
    b.extend_from_slice(&body);
    b
}

/// Big-endian u32s.
fn be(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// A movie with one video track of `n` 4-byte samples in one chunk at offset 0, the given
/// `stts` entries (count, delta) and `ctts` entries, and an optional raw `elst` body.
fn movie(n: u32, stts: &[(u32, u32)], ctts: &[(u32, u32)], elst: Option<Vec<u8>>) -> Vec<u8> {
    let pairs = |e: &[(u32, u32)]| {
        let mut b = be(&[0, e.len() as u32]);
        b.extend(e.iter().flat_map(|&(c, d)| be(&[c, d])));
        b
    };
    let mut stbl = vec![
        bx(b"stsd", &[&be(&[0, 1]), &bx(b"mp4v", &[])]),
        bx(b"stsz", &[&be(&[0, 4, n])]),
        bx(b"stco", &[&be(&[0, 1, 0])]),
        bx(b"stsc", &[&be(&[0, 1, 1, n, 1])]),
        bx(b"stts", &[&pairs(stts)]),
    ];
    if !ctts.is_empty() {
        stbl.push(bx(b"ctts", &[&pairs(ctts)]));
    }
    let mdia = bx(
        b"mdia",
        &[
            &bx(b"mdhd", &[&be(&[0, 0, 0, 1000, 0])]),
            &bx(b"hdlr", &[&be(&[0, 0]), b"vide"]),
            &bx(b"minf", &[&bx(b"stbl", &[&stbl.concat()])]),
        ],
    );
    let edts = elst.map(|e| bx(b"edts", &[&bx(b"elst", &[&e])])).unwrap_or_default();
    let trak = bx(b"trak", &[&edts, &mdia]);
    let file = bx(b"moov", &[&bx(b"mvhd", &[&be(&[0, 0, 0, 1000])]), &trak]);
    // Room for the samples: they lie at offset 0, over the moov box itself.
    assert!(file.len() >= 4 * n as usize);
    file
}

#[test]
fn a_huge_stts_or_ctts_count_ends_at_the_last_sample() {
    // Was a hang: a count of 2^32 - 1 looped 4 billion times.
    let m = parse(&movie(3, &[(u32::MAX, 10)], &[(u32::MAX, 5)], None)).unwrap();
    let times: Vec<(i64, i64)> = m.tracks[0].samples.iter().map(|s| (s.dts, s.pts)).collect();
    assert_eq!(times, [(0, 5), (10, 15), (20, 25)]);
    // Too few times is still an error.
    let e = parse(&movie(3, &[(2, 10)], &[], None)).unwrap_err().to_string();
    assert!(e.contains("'stts' times 2 of 3 samples"), "{e}");
}

#[test]
fn a_negative_edit_media_time_is_refused() {
    // elst version 1: segment duration, media time 2^63 (negative as i64), rate. Was an
    // overflow in `Track::seconds` (a panic with overflow checks, garbage without).
    let mut elst = vec![1, 0, 0, 0];
    elst.extend(be(&[1]));
    elst.extend(1000u64.to_be_bytes());
    elst.extend((1u64 << 63).to_be_bytes());
    elst.extend(be(&[0x0001_0000]));
    let e = parse(&movie(2, &[(2, 10)], &[], Some(elst))).unwrap_err().to_string();
    assert!(e.contains("negative media time"), "{e}");
}

#[test]
fn times_of_extreme_tracks_do_not_overflow() {
    let mut t = parse(&movie(2, &[(1, u32::MAX), (1, 1)], &[], None)).unwrap().tracks.remove(0);
    t.edit_media_time = i64::MAX;
    assert!(t.seconds(i64::MIN).is_finite());
    t.samples[1].dts = i64::MAX;
    t.samples[1].pts = i64::MAX;
    assert!(t.duration().is_finite());
}

/// A `moof` with one `traf` for track 0 (the test movies have no `tkhd`): `tfhd` with
/// `default-base-is-moof`, a `tfdt`, and one `trun` of the given flags and body.
fn moof(tfdt: u32, trun_flags: u32, n: u32, entries: &[u32]) -> Vec<u8> {
    let traf = bx(
        b"traf",
        &[
            &bx(b"tfhd", &[&be(&[0x02_0000, 0])]),
            &bx(b"tfdt", &[&be(&[0, tfdt])]),
            &bx(b"trun", &[&be(&[trun_flags, n]), &be(entries)]),
        ],
    );
    bx(b"moof", &[&bx(b"mfhd", &[&be(&[0, 1])]), &traf])
}

#[test]
fn fragments_append_samples_at_their_offsets_and_times() {
    let mut file = movie(0, &[], &[], None);
    let at = file.len() as u64;
    // Two samples: (duration, size) = (10, 3), (20, 5); data right after the moof header.
    let mut f = moof(100, 0x301, 2, &[0, 10, 3, 20, 5]);
    let data_offset = f.len() as u32;
    let end = f.len();
    f[end - 20..end - 16].copy_from_slice(&data_offset.to_be_bytes());
    file.extend(f);
    file.extend(bx(b"mdat", &[&[0u8; 8]]));
    let t = parse(&file).unwrap().tracks.remove(0);
    let got: Vec<(u64, u32, i64)> = t.samples.iter().map(|s| (s.offset, s.size, s.dts)).collect();
    let first = at + data_offset as u64;
    assert_eq!(got, [(first, 3, 100), (first + 3, 5, 110)]);
}

#[test]
fn a_fragment_of_countless_empty_samples_is_refused() {
    // Found by `avsc-fuzz mp4` on its first fragmented seed: a `trun` of 2^32 - 1 samples
    // with no per-sample fields (default size 0) asked for 96 GB.
    let mut file = movie(0, &[], &[], None);
    file.extend(moof(0, 0, u32::MAX, &[]));
    let e = format!("{:#}", parse(&file).unwrap_err());
    assert!(e.contains("'trun' places 4294967295 samples of 0 bytes"), "{e}");
}
