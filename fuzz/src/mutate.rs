//! Mutation operators. Each mutation stacks a few operators on a copy of a pool entry:
//! byte-level ones (bit flips, interesting bytes, arithmetic, insert / delete / duplicate,
//! splicing from another entry), dictionary tokens of the target format, and
//! structure-aware ones: the size and count fields of ISO-BMFF boxes (big-endian, before
//! the type) or RIFF chunks (little-endian, after the id), and numbers in text.

use avsc_shared::rng::SplitMix64 as Rng;

/// How an input's length-prefixed structures are laid out, for the structure-aware
/// operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// ISO base media boxes: 32-bit big-endian size, then a four-character type.
    Bmff,
    /// RIFF chunks: a four-character id, then a 32-bit little-endian size.
    Riff,
    /// Text: numbers are rewritten as text.
    Text,
}

/// Values at the edges of integer ranges and of typical sizes, where checks go wrong.
const INTERESTING_32: [u32; 25] = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    9,
    12,
    15,
    16,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x3fff,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0x8000_0001,
    0xffff_fffe,
    0xffff_ffff,
];
const INTERESTING_64: [u64; 6] = [0, 1, 0x7fff_ffff_ffff_ffff, 0x8000_0000_0000_0000, u64::MAX - 1, u64::MAX];
const INTERESTING_8: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x20, b'0'];

/// Numbers that stress text-to-number conversions.
const INTERESTING_NUMBERS: [&str; 20] = [
    "0",
    "-1",
    "1",
    "-0",
    "65535",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "1e309",
    "-1e309",
    "1e-320",
    "0.5",
    "NaN",
    "3.4e38",
    "99999999999999999999999999",
    "1.7976931348623157e308",
];

/// The mutator of one target: its layout, its dictionary, the longest input it makes.
#[derive(Clone, Debug)]
pub struct Mutator {
    pub layout: Layout,
    pub dictionary: &'static [&'static [u8]],
    pub max_len: usize,
}

impl Mutator {
    /// Apply 1 to 8 random operators to `data`; `pool` (non-empty) supplies splice material.
    pub fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>]) {
        let n = 1 + rng.below(8);
        for _ in 0..n {
            self.one(rng, data, pool);
        }
        data.truncate(self.max_len);
    }

    fn one(&self, rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>]) {
        if data.is_empty() {
            let other = rng.pick(pool);
            data.extend_from_slice(other);
            if data.is_empty() {
                data.push(rng.next_u64() as u8);
            }
            return;
        }
        let len = data.len();
        match rng.below(16) {
            0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len);
                data[i] = *rng.pick(&INTERESTING_8);
            }
            2 => {
                let i = rng.below(len);
                let d = 1 + rng.below(16) as u8;
                data[i] = if rng.one_in(2) { data[i].wrapping_add(d) } else { data[i].wrapping_sub(d) };
            }
            3 => {
                let i = rng.below(len);
                data[i] = rng.next_u64() as u8;
            }
            4 | 5 => {
                let (i, big_endian) = (rng.below(len), rng.one_in(2));
                overwrite_u32(rng, data, i, big_endian);
            }
            6 => {
                let i = rng.below(len);
                let v = *rng.pick(&INTERESTING_64);
                overwrite(data, i, &v.to_be_bytes());
            }
            7 | 8 => self.structure(rng, data),
            9 => {
                // Insert random bytes or a run of one byte.
                let i = rng.below(len + 1);
                let n = 1 + rng.below(32);
                let run = rng.one_in(2);
                let b = rng.next_u64() as u8;
                let bytes: Vec<u8> = (0..n).map(|_| if run { b } else { rng.next_u64() as u8 }).collect();
                data.splice(i..i, bytes);
            }
            10 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                data.drain(i..i + n);
            }
            11 => {
                // Duplicate a chunk somewhere else.
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let chunk = data[i..i + n].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, chunk);
            }
            12 => {
                // Splice a chunk of another pool entry in, replacing or inserting.
                let other = rng.pick(pool);
                if other.is_empty() {
                    return;
                }
                let i = rng.below(other.len());
                let n = 1 + rng.below((other.len() - i).min(512));
                let chunk = &other[i..i + n];
                let at = rng.below(len);
                if rng.one_in(2) {
                    data.splice(at..at, chunk.iter().copied());
                } else {
                    overwrite(data, at, chunk);
                }
            }
            13 => data.truncate(rng.below(len)),
            14 => {
                if self.dictionary.is_empty() {
                    return;
                }
                let token = *rng.pick(self.dictionary);
                let at = rng.below(len + 1);
                if rng.one_in(2) || at == len {
                    data.splice(at..at, token.iter().copied());
                } else {
                    overwrite(data, at, token);
                }
            }
            _ => {
                if self.layout == Layout::Text {
                    replace_number(rng, data);
                } else {
                    self.structure(rng, data);
                }
            }
        }
    }

    /// Rewrite a size or count field of a box / chunk (or a number in text).
    fn structure(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        match self.layout {
            Layout::Bmff => {
                let Some(at) = pick_header(rng, data, 8, |d, i| {
                    is_fourcc(&d[i + 4..i + 8]) && (8..=(d.len() - i) as u64).contains(&be32(&d[i..]))
                }) else {
                    return;
                };
                // The size itself, or a field of a full box: version / flags, entry count, first entries.
                let field = at + 4 * [0, 2, 3, 4, 5, 6][rng.below(6)];
                overwrite_u32(rng, data, field, true);
            }
            Layout::Riff => {
                let Some(at) = pick_header(rng, data, 8, |d, i| {
                    is_fourcc(&d[i..i + 4]) && (le32(&d[i + 4..]) as u64) <= (d.len() - i) as u64
                }) else {
                    return;
                };
                let field = at + 4 + [0, 4, 6, 8, 12, 18][rng.below(6)];
                if rng.one_in(2) {
                    overwrite_u32(rng, data, field, false);
                } else {
                    let v = *rng.pick(&INTERESTING_32) as u16;
                    overwrite(data, field, &v.to_le_bytes());
                }
            }
            Layout::Text => replace_number(rng, data),
        }
    }
}

/// Four printable ASCII characters, as box types and chunk ids are.
fn is_fourcc(b: &[u8]) -> bool {
    b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b' ')
}

fn be32(b: &[u8]) -> u64 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// A uniformly chosen offset `i` where `is_header(data, i)` holds, among those with `width`
/// bytes from `i` on, by reservoir sampling over the whole input.
fn pick_header(rng: &mut Rng, data: &[u8], width: usize, is_header: impl Fn(&[u8], usize) -> bool) -> Option<usize> {
    let mut chosen = None;
    let mut seen = 0;
    for i in 0..(data.len() + 1).saturating_sub(width) {
        if is_header(data, i) {
            seen += 1;
            if rng.one_in(seen) {
                chosen = Some(i);
            }
        }
    }
    chosen
}

/// Overwrite the 32-bit field at `at` with an interesting value or a small step from its
/// current value.
fn overwrite_u32(rng: &mut Rng, data: &mut [u8], at: usize, big_endian: bool) {
    let Some(field) = data.get(at..at + 4) else { return };
    let current = if big_endian { be32(field) as u32 } else { le32(field) };
    let v = match rng.below(3) {
        0 => current.wrapping_add(1 + rng.below(16) as u32),
        1 => current.wrapping_sub(1 + rng.below(16) as u32),
        _ => *rng.pick(&INTERESTING_32),
    };
    overwrite(data, at, &if big_endian { v.to_be_bytes() } else { v.to_le_bytes() });
}

/// Copy `bytes` over `data` from `at`, as far as `data` reaches.
fn overwrite(data: &mut [u8], at: usize, bytes: &[u8]) {
    let end = (at + bytes.len()).min(data.len());
    if at < end {
        data[at..end].copy_from_slice(&bytes[..end - at]);
    }
}

/// Replace one run of ASCII digits with an interesting number.
fn replace_number(rng: &mut Rng, data: &mut Vec<u8>) {
    let Some(start) = pick_header(rng, data, 1, |d, i| d[i].is_ascii_digit() && (i == 0 || !d[i - 1].is_ascii_digit()))
    else {
        return;
    };
    let end = data[start..].iter().position(|c| !c.is_ascii_digit()).map_or(data.len(), |n| start + n);
    let number = rng.pick(&INTERESTING_NUMBERS).as_bytes();
    data.splice(start..end, number.iter().copied());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutants_differ_and_stay_within_max_len() {
        let seed: Vec<u8> = b"\0\0\0\x10moov\0\0\0\x08trak1234".to_vec();
        for layout in [Layout::Bmff, Layout::Riff, Layout::Text] {
            let m = Mutator { layout, dictionary: &[b"moov", b"\t"], max_len: 64 };
            let mut rng = Rng::new(1);
            let pool = vec![seed.clone()];
            let mut changed = 0;
            for _ in 0..2000 {
                let mut d = seed.clone();
                m.mutate(&mut rng, &mut d, &pool);
                assert!(d.len() <= 64);
                changed += usize::from(d != seed);
            }
            assert!(changed > 1800, "{layout:?}: only {changed} of 2000 mutants differ");
        }
    }

    #[test]
    fn box_fields_are_found() {
        let mut rng = Rng::new(3);
        let data = b"xx\0\0\0\x08free\0\0\0\x08skip";
        let mut hits = [0; 2];
        for _ in 0..200 {
            let at = pick_header(&mut rng, data, 8, |d, i| is_fourcc(&d[i + 4..i + 8]) && be32(&d[i..]) == 8).unwrap();
            hits[usize::from(at == 10)] += 1;
            assert!(at == 2 || at == 10);
        }
        assert!(hits[0] > 50 && hits[1] > 50, "{hits:?}");
        let mut text = b"a 12 b".to_vec();
        replace_number(&mut rng, &mut text);
        assert!(text.starts_with(b"a ") && text.ends_with(b" b") && text != b"a 12 b");
    }
}
