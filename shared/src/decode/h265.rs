//! HEVC (H.265) around `rusty_h265`, a pure-Rust decoder: the `hvcC` record, the NAL units
//! of a sample, the SPS fields that matter for colour, and 8-bit RGB from the 8- or 10-bit
//! pictures (Main and Main 10, 4:2:0: what phones record, iPhones by default).

use super::h264::{length_prefixed_nals, ColourInfo, Picture};
use crate::image::RgbImage;
use anyhow::{bail, ensure, Context, Result};

const VPS: u8 = 32;
const SPS: u8 = 33;
const PPS: u8 = 34;

fn nal_type(nal: &[u8]) -> u8 {
    (nal[0] >> 1) & 0x3f
}

/// The decoder configuration record (`hvcC`, ISO/IEC 14496-15 8.3.3).
pub struct HvcConfig {
    /// Bytes of each NAL length prefix in samples (1, 2 or 4).
    pub length_size: usize,
    /// Its NAL units (parameter sets, maybe SEI), in record order.
    pub nals: Vec<Vec<u8>>,
}

pub fn parse_hvcc(b: &[u8]) -> Result<HvcConfig> {
    ensure!(b.len() >= 23, "'hvcC' record is truncated");
    let length_size = (b[21] & 3) as usize + 1;
    ensure!(length_size != 3, "'hvcC' declares 3-byte NAL lengths");
    let mut pos = 23;
    let mut nals = Vec::new();
    let u16_at = |p: usize| b.get(p..p + 2).map(|x| u16::from_be_bytes([x[0], x[1]]) as usize);
    for _ in 0..b[22] {
        let count = u16_at(pos + 1).context("'hvcC' record is truncated")?;
        pos += 3;
        for _ in 0..count {
            let len = u16_at(pos).context("'hvcC' record is truncated")?;
            let nal = b.get(pos + 2..pos + 2 + len).context("'hvcC' parameter set is truncated")?;
            ensure!(nal.len() >= 2, "'hvcC' holds a NAL unit without a header");
            nals.push(nal.to_vec());
            pos += 2 + len;
        }
    }
    for (t, name) in [(VPS, "VPS"), (SPS, "SPS"), (PPS, "PPS")] {
        ensure!(nals.iter().any(|n| nal_type(n) == t), "'hvcC' has no {name}");
    }
    Ok(HvcConfig { length_size, nals })
}

impl HvcConfig {
    /// The NAL units of one sample (length-prefixed), every length checked.
    pub fn units<'a>(&self, sample: &'a [u8]) -> Result<Vec<&'a [u8]>> {
        let mut units = Vec::new();
        length_prefixed_nals(sample, self.length_size, |nal| units.push(nal))?;
        Ok(units)
    }

    /// The first sequence parameter set.
    pub fn sps(&self) -> &[u8] {
        self.nals.iter().find(|n| nal_type(n) == SPS).expect("checked by parse_hvcc")
    }
}

/// Whether no later picture can need a sample's picture (its NAL `units`): every slice of
/// it is a sub-layer non-reference picture (`TRAIL_N`, `TSA_N`, `STSA_N`, `RADL_N`,
/// `RASL_N`) of the highest temporal sub-layer, which only pictures of higher sub-layers
/// could use and there are none. x265 writes its unreferenced B-frames so. Such a sample
/// can be left out when nobody chose it, as a player dropping frames does.
pub fn disposable(units: &[&[u8]], top_layer: u8) -> bool {
    let mut slices = units.iter().filter(|nal| nal_type(nal) < 32).peekable();
    slices.peek().is_some()
        && slices.all(|nal| {
            let (t, temporal_id) = (nal_type(nal), (nal.get(1).copied().unwrap_or(1) & 7).saturating_sub(1));
            t < 16 && t.is_multiple_of(2) && temporal_id == top_layer
        })
}

/// The most pixels a picture may have: 4K (UHD 3840x2160 and DCI 4096x2160), the most
/// phones record. The decoder keeps up to 16 pictures of 16-bit samples; a corrupt SPS
/// stating 16888x16888 would otherwise ask for gigabytes.
pub const MAX_PIXELS: u64 = 4096 * 2304;

/// The SPS fields we need: the format (4:2:0, 8 or 10 bits) and the VUI colour description.
pub struct SpsInfo {
    pub chroma_format_idc: u8,
    pub bit_depth: u8,
    pub colour: ColourInfo,
    /// The highest temporal sub-layer (`sps_max_sub_layers_minus1`).
    pub top_layer: u8,
}

pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo> {
    ensure!(nal.len() > 2 && nal_type(nal) == SPS, "corrupt HEVC SPS NAL");
    let rbsp = rusty_h265::nal::unescape(&nal[2..]);
    let s = rusty_h265::ps::parse_sps(&rbsp.data).map_err(|e| anyhow::anyhow!("corrupt HEVC SPS ({})", why(e)))?;
    ensure!(
        s.width as u64 * s.height as u64 <= MAX_PIXELS,
        "HEVC pictures of {}x{} are larger than this build decodes (4K, {MAX_PIXELS} pixels, at most)",
        s.width,
        s.height
    );
    // Without a colour description, decoders (and ffmpeg's swscale) assume BT.601 limited.
    // (matrix 0, identity, is absent from camera video: read as "unknown", as no description)
    let colour = match &s.vui {
        Some(v) => ColourInfo {
            full_range: v.video_full_range_flag,
            matrix: if v.matrix_coeffs == 0 { 2 } else { v.matrix_coeffs },
        },
        None => ColourInfo { full_range: false, matrix: 2 },
    };
    Ok(SpsInfo {
        chroma_format_idc: s.chroma_format_idc,
        bit_depth: s.bit_depth_luma.max(s.bit_depth_chroma),
        colour,
        top_layer: s.max_sub_layers_minus1,
    })
}

fn why(e: rusty_h265::Error) -> String {
    match e {
        rusty_h265::Error::InvalidData(s) | rusty_h265::Error::Unsupported(s) => s,
        rusty_h265::Error::Unimplemented(s) => format!("{s} is not implemented by the decoder"),
        other => format!("{other:?}"),
    }
}

/// rusty_h265, fed a sample's NAL units at a time, each sample tagged so that pictures
/// (which come out in presentation order) can be matched to their container sample.
pub struct HevcDecoder {
    dec: Box<rusty_h265::Decoder>,
}

impl HevcDecoder {
    pub fn new() -> HevcDecoder {
        HevcDecoder { dec: Box::new(rusty_h265::Decoder::new()) }
    }

    /// One NAL unit (parameter sets with `tag` None, a sample's units with its index).
    pub fn push(&mut self, nal: &[u8], tag: Option<u64>) -> Result<()> {
        if nal.len() >= 2 && nal_type(nal) == SPS {
            // In-band parameter sets too: no picture larger than MAX_PIXELS.
            parse_sps(nal)?;
        }
        match self.dec.push_nal(nal, tag.map(|t| t as i64)) {
            Ok(()) | Err(rusty_h265::Error::Again) => Ok(()),
            Err(e @ rusty_h265::Error::Unsupported(_)) => bail!("HEVC {} is not decoded", why(e)),
            Err(e) => bail!("HEVC decoding failed ({})", why(e)),
        }
    }

    /// After the last sample: the pictures still held for reordering become available.
    pub fn flush(&mut self) {
        self.dec.flush();
    }

    /// The next picture in presentation order, when one is complete (a picture is complete
    /// once the next one has started, or after [`HevcDecoder::flush`]).
    pub fn next(&mut self) -> Option<rusty_h265::Frame> {
        self.dec.next_frame().ok()
    }
}

impl Default for HevcDecoder {
    fn default() -> Self {
        HevcDecoder::new()
    }
}

/// A decoded picture's tag (its sample index).
pub fn tag(f: &rusty_h265::Frame) -> Option<usize> {
    f.pts.and_then(|p| usize::try_from(p).ok())
}

/// The picture's cropped area as RGB8; 10-bit samples keep their top 8 bits.
pub fn to_rgb(f: &rusty_h265::Frame, colour: ColourInfo) -> Result<RgbImage> {
    let p = &f.picture;
    ensure!(p.chroma_format_idc == 1, "HEVC chroma format {} is not decoded (only 4:2:0 is)", p.chroma_format_idc);
    let (cx, cy, w, h) = p.crop;
    ensure!(w > 0 && h > 0, "HEVC picture has an empty crop window");
    let narrow =
        |plane: &rusty_h265::Plane, x0: usize, y0: usize, pw: usize, ph: usize, depth: u8| -> Result<Vec<u8>> {
            ensure!(x0 + pw <= plane.width && y0 + ph <= plane.height, "HEVC crop window outside the picture");
            let shift = depth.saturating_sub(8) as u32;
            let mut out = Vec::with_capacity(pw * ph);
            for row in y0..y0 + ph {
                out.extend(plane.row(row)[x0..x0 + pw].iter().map(|&v| (v >> shift).min(255) as u8));
            }
            Ok(out)
        };
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let y = narrow(&p.planes[0], cx, cy, w, h, p.bit_depth_luma)?;
    let u = narrow(&p.planes[1], cx / 2, cy / 2, cw, ch, p.bit_depth_chroma)?;
    let v = narrow(&p.planes[2], cx / 2, cy / 2, cw, ch, p.bit_depth_chroma)?;
    Ok(Picture::from_planes(0, w, h, (&y, w), (&u, cw), (&v, cw)).to_rgb(colour))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(arrays: &[(u8, &[&[u8]])]) -> Vec<u8> {
        let mut b = vec![1u8];
        b.extend([0u8; 20]);
        b.push(0xfc | 3); // 4-byte lengths
        b.push(arrays.len() as u8);
        for (t, nals) in arrays {
            b.push(*t);
            b.extend((nals.len() as u16).to_be_bytes());
            for n in *nals {
                b.extend((n.len() as u16).to_be_bytes());
                b.extend(*n);
            }
        }
        b
    }

    #[test]
    fn hvcc_gives_its_parameter_sets_and_refuses_a_truncated_or_incomplete_record() {
        let (vps, sps, pps) = ([VPS << 1, 1, 9].as_slice(), [SPS << 1, 1, 8].as_slice(), [PPS << 1, 1, 7].as_slice());
        let b = record(&[(VPS, &[vps]), (SPS, &[sps]), (PPS, &[pps])]);
        let c = parse_hvcc(&b).unwrap();
        assert_eq!((c.length_size, c.nals.len()), (4, 3));
        assert_eq!(c.sps(), sps);
        for cut in 0..b.len() {
            assert!(parse_hvcc(&b[..cut]).is_err(), "truncated at {cut}");
        }
        let e = parse_hvcc(&record(&[(VPS, &[vps]), (SPS, &[sps])])).err().unwrap().to_string();
        assert!(e.contains("no PPS"), "{e}");
    }
}
