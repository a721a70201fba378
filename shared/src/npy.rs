//! NumPy .npy (v1.0) reading and writing for little-endian f32 / u8 arrays, C order.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// A decoded .npy array: shape and values widened to f32.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Total header (magic 6 + version 2 + len 2 + dict + '\n') padded to a multiple of 64.
    let unpadded = 10 + h.len() + 1;
    h.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out
}

/// Encode a little-endian f32 array as .npy bytes.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "npy: shape does not match data");
    let mut out = header("<f4", shape);
    out.reserve(data.len() * 4);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Write atomically: a temporary file beside `path`, then rename.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    crate::write_atomic(path, &encode_f32(shape, data))
}

/// Parse .npy bytes holding '<f4', '<f8' or '|u1' data in C order.
pub fn decode(bytes: &[u8]) -> Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("not a .npy file (bad magic)");
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                bail!("truncated .npy header");
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => bail!("unsupported .npy version {v}"),
    };
    let h = std::str::from_utf8(bytes.get(start..start + hlen).context("truncated .npy header")?)
        .context(".npy header is not UTF-8")?;
    let field = |key: &str| -> Result<&str> {
        let i = h.find(key).with_context(|| format!(".npy header lacks {key}"))?;
        Ok(h[i + key.len()..].trim_start_matches([' ', ':']))
    };
    let descr = field("'descr'")?;
    let descr = descr.trim_start_matches('\'');
    let descr = &descr[..descr.find('\'').context("bad descr")?];
    if field("'fortran_order'")?.starts_with("True") {
        bail!("Fortran-order .npy arrays are not supported");
    }
    let shape_s = field("'shape'")?;
    let shape_s = &shape_s[1..shape_s.find(')').context("bad shape")?];
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().context("bad shape entry"))
        .collect::<Result<_>>()?;
    let n: usize = shape.iter().product();
    let body = &bytes[start + hlen..];
    let data: Vec<f32> = match descr {
        "<f4" => body
            .get(..n * 4)
            .context("truncated .npy data")?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        "<f8" => body
            .get(..n * 8)
            .context("truncated .npy data")?
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        "|u1" => body.get(..n).context("truncated .npy data")?.iter().map(|&b| b as f32).collect(),
        d => bail!("unsupported .npy dtype {d}"),
    };
    Ok(NpyArray { shape, data })
}

pub fn read(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    decode(&bytes).with_context(|| format!("{}: invalid .npy", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_alignment() {
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bytes = encode_f32(&[2, 3, 4], &data);
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.shape, vec![2, 3, 4]);
        assert_eq!(back.data, data);
        assert!(decode(b"not numpy at all").is_err());
        assert!(decode(&bytes[..bytes.len() - 4]).is_err());
    }
}
