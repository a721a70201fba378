//! One cached clip: header + f16 spectrograms + u8 frames (format in `cache/mod.rs`).

use anyhow::{bail, ensure, Context, Result};
use avsc_shared::dsp::deltas::stack6;
use avsc_shared::image::RgbImage;
use avsc_shared::{Array3, FeatureKind, FeaturePreset};
use half::f16;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const MAGIC: &[u8; 8] = b"AVSCCLIP";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipHeader {
    pub id: String,
    pub label: Option<String>,
    pub location: String,
    /// (channels, bins, frames) of each spectrogram, in MEL, GAM, CQT order.
    pub spec_shape: [usize; 3],
    pub n_frames: usize,
    pub frame_size: usize,
    /// Seconds of zero padding added to a short clip (0 for a full clip).
    pub padded_seconds: f64,
}

/// A decoded clip: dB spectrograms (statics) and frames.
#[derive(Clone, Debug)]
pub struct ClipData {
    pub header: ClipHeader,
    /// MEL, GAM, CQT: each (2, bins, T) dB.
    pub specs: [Array3; 3],
    /// RGB frames, size x size, before normalisation.
    pub frames: Vec<RgbImage>,
}

fn kind_index(kind: FeatureKind) -> usize {
    match kind {
        FeatureKind::Mel => 0,
        FeatureKind::Gam => 1,
        FeatureKind::Cqt => 2,
    }
}

impl ClipData {
    pub fn spec(&self, kind: FeatureKind) -> &Array3 {
        &self.specs[kind_index(kind)]
    }

    /// The network input for `kind`: the 6-channel stack with deltas, computed with the
    /// shared code the device runs.
    pub fn stack(&self, kind: FeatureKind, preset: &FeaturePreset) -> Array3 {
        stack6(self.spec(kind), &preset.deltas)
    }

    pub fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("header serialises");
        let spec_len: usize = self.specs.iter().map(|s| s.data.len() * 2).sum();
        let frame_len: usize = self.frames.iter().map(|f| f.data.len()).sum();
        let mut out = Vec::with_capacity(12 + header.len() + spec_len + frame_len);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        for s in &self.specs {
            for v in &s.data {
                out.extend_from_slice(&f16::from_f32(*v).to_le_bytes());
            }
        }
        for f in &self.frames {
            out.extend_from_slice(&f.data);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<ClipData> {
        let header = Self::decode_header(bytes)?;
        let hlen = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let [c, b, t] = header.spec_shape;
        let n = c * b * t;
        let fsz = header.frame_size * header.frame_size * 3;
        let mut pos = 12 + hlen;
        let mut spec = || {
            let data =
                bytes[pos..pos + 2 * n].chunks_exact(2).map(|h| f16::from_le_bytes([h[0], h[1]]).to_f32()).collect();
            pos += 2 * n;
            Array3::from_vec(header.spec_shape, data)
        };
        let specs = [spec(), spec(), spec()];
        let frames = bytes[pos..]
            .chunks_exact(fsz)
            .map(|d| RgbImage { width: header.frame_size, height: header.frame_size, data: d.to_vec() })
            .collect();
        Ok(ClipData { header, specs, frames })
    }

    /// Parse and validate the header, including that the file holds exactly the payload
    /// it announces (a torn or foreign file is refused, never half-trusted).
    pub fn decode_header(bytes: &[u8]) -> Result<ClipHeader> {
        ensure!(bytes.len() >= 12 && &bytes[..8] == MAGIC, "not an avsc clip file");
        let hlen = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let h = bytes.get(12..12 + hlen).context("truncated clip header")?;
        let header: ClipHeader = serde_json::from_slice(h).context("invalid clip header")?;
        let want = Self::expected_len(&header, hlen);
        if bytes.len() != want {
            bail!("clip file is {} bytes, its header announces {want}", bytes.len());
        }
        Ok(header)
    }

    pub fn read(path: &Path, preset: &FeaturePreset) -> Result<ClipData> {
        let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let clip = Self::decode(&bytes).with_context(|| format!("{}: corrupt cache item", path.display()))?;
        ensure!(
            clip.header.spec_shape[1] == preset.n_bins,
            "{}: {} bins, the preset has {}",
            path.display(),
            clip.header.spec_shape[1],
            preset.n_bins
        );
        Ok(clip)
    }

    /// True when `path` holds a complete clip: a valid header and exactly the payload it
    /// announces (used to skip finished work without reading the payload).
    pub fn is_complete(path: &Path) -> bool {
        ClipFile::open(path).is_ok()
    }

    /// Read frames `which` of a cached clip without reading its spectrograms or other frames.
    pub fn read_frames(path: &Path, which: &[usize]) -> Result<(ClipHeader, Vec<RgbImage>)> {
        let inner = || -> Result<(ClipHeader, Vec<RgbImage>)> {
            let mut f = ClipFile::open(path)?;
            let h = &f.header;
            let fsz = h.frame_size * h.frame_size * 3;
            let mut frames = Vec::with_capacity(which.len());
            for &k in which {
                ensure!(k < h.n_frames, "frame {k} of {}", h.n_frames);
                f.file.seek(SeekFrom::Start((f.frames_at + k * fsz) as u64))?;
                let mut data = vec![0u8; fsz];
                f.file.read_exact(&mut data)?;
                frames.push(RgbImage { width: h.frame_size, height: h.frame_size, data });
            }
            Ok((f.header, frames))
        };
        inner().with_context(|| format!("{}: reading frames", path.display()))
    }

    fn expected_len(h: &ClipHeader, hlen: usize) -> usize {
        let [c, b, t] = h.spec_shape;
        12 + hlen + 3 * 2 * c * b * t + h.n_frames * h.frame_size * h.frame_size * 3
    }
}

/// An open clip file whose header was read and checked against the file's length; the one
/// reader of the format's header (whole-file reads go through [`ClipData::decode_header`]).
struct ClipFile {
    file: std::fs::File,
    header: ClipHeader,
    /// Byte offset of the first frame.
    frames_at: usize,
}

impl ClipFile {
    fn open(path: &Path) -> Result<ClipFile> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len() as usize;
        let mut head = [0u8; 12];
        file.read_exact(&mut head).context("truncated clip file")?;
        ensure!(&head[..8] == MAGIC, "not an avsc clip file");
        let hlen = u32::from_le_bytes(head[8..12].try_into().unwrap()) as usize;
        ensure!(hlen < 1 << 20, "implausible header length");
        let mut h = vec![0u8; hlen];
        file.read_exact(&mut h).context("truncated clip header")?;
        let header: ClipHeader = serde_json::from_slice(&h).context("invalid clip header")?;
        let want = ClipData::expected_len(&header, hlen);
        ensure!(len == want, "clip file is {len} bytes, its header announces {want}");
        let [c, b, t] = header.spec_shape;
        Ok(ClipFile { file, frames_at: 12 + hlen + 3 * 2 * c * b * t, header })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip() -> ClipData {
        let spec = |o: f32| Array3::from_vec([2, 4, 9], (0..72).map(|i| -80.0 + o + i as f32 * 0.37).collect());
        ClipData {
            header: ClipHeader {
                id: "park-x".into(),
                label: Some("park".into()),
                location: "x".into(),
                spec_shape: [2, 4, 9],
                n_frames: 2,
                frame_size: 3,
                padded_seconds: 0.0,
            },
            specs: [spec(0.0), spec(1.0), spec(2.0)],
            frames: (0..2)
                .map(|k| RgbImage { width: 3, height: 3, data: (0..27).map(|i| (i * 9 + k) as u8).collect() })
                .collect(),
        }
    }

    #[test]
    fn round_trip_within_f16_precision_and_torn_files_refused() {
        let c = clip();
        let bytes = c.encode();
        let back = ClipData::decode(&bytes).unwrap();
        assert_eq!(back.header, c.header);
        assert_eq!(back.frames, c.frames);
        for (a, b) in back.specs.iter().zip(&c.specs) {
            assert_eq!(a.shape, b.shape);
            let err = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(err <= 0.032, "f16 error {err} dB");
        }
        assert!(ClipData::decode_header(&bytes[..bytes.len() - 1]).is_err(), "torn file must be refused");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ClipData::decode_header(&longer).is_err());
        assert!(ClipData::decode_header(b"AVSCCLIP\xff\xff\xff\xff").is_err());
    }
}
