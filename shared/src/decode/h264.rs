//! H.264 bitstream plumbing around OpenH264: `avcC` parameter sets, AVCC -> Annex B,
//! the SPS fields that matter for colour, and a decoder that tags each access unit with
//! a timestamp so reordered (B-frame) output can be matched to its container sample.

use anyhow::{bail, ensure, Context, Result};
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::OpenH264API;
use openh264_sys2::{
    dsErrorFree, dsFramePending, videoFormatI420, SBufferInfo, DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER,
    DECODING_STATE,
};

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Walk the NAL units of one MP4 video sample (each after a `length_size`-byte length, as
/// `avcC` and `hvcC` say), checking every length and the forbidden bit.
pub(super) fn length_prefixed_nals<'a>(
    sample: &'a [u8],
    length_size: usize,
    mut f: impl FnMut(&'a [u8]),
) -> Result<()> {
    let mut pos = 0;
    while pos < sample.len() {
        let pre = sample.get(pos..pos + length_size).context("corrupt NAL: truncated length prefix")?;
        let len = pre.iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        pos += length_size;
        ensure!(
            len > 0 && len <= sample.len() - pos,
            "corrupt NAL: length {len} at byte {} overruns the {}-byte sample",
            pos - length_size,
            sample.len()
        );
        let nal = &sample[pos..pos + len];
        ensure!(nal[0] & 0x80 == 0, "corrupt NAL: forbidden_zero_bit set");
        f(nal);
        pos += len;
    }
    Ok(())
}

/// The decoder configuration record (`avcC`).
pub struct AvcConfig {
    /// Bytes of each NAL length prefix in samples (1, 2 or 4).
    pub length_size: usize,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
}

pub fn parse_avcc(b: &[u8]) -> Result<AvcConfig> {
    ensure!(b.len() >= 7, "'avcC' record is truncated");
    ensure!(b[0] == 1, "'avcC' version {} is not 1", b[0]);
    let length_size = (b[4] & 3) as usize + 1;
    ensure!(length_size != 3, "'avcC' declares 3-byte NAL lengths");
    let mut pos = 5;
    let sets = |count: usize, pos: &mut usize| -> Result<Vec<Vec<u8>>> {
        let mut v = Vec::with_capacity(count);
        for _ in 0..count {
            let len = b.get(*pos..*pos + 2).context("'avcC' record is truncated")?;
            let len = u16::from_be_bytes([len[0], len[1]]) as usize;
            let nal = b.get(*pos + 2..*pos + 2 + len).context("'avcC' parameter set is truncated")?;
            v.push(nal.to_vec());
            *pos += 2 + len;
        }
        Ok(v)
    };
    let n_sps = (b[5] & 0x1f) as usize;
    pos += 1;
    let sps = sets(n_sps, &mut pos)?;
    let n_pps = *b.get(pos).context("'avcC' record is truncated")? as usize;
    pos += 1;
    let pps = sets(n_pps, &mut pos)?;
    ensure!(!sps.is_empty() && !pps.is_empty(), "'avcC' has no SPS or no PPS");
    Ok(AvcConfig { length_size, sps, pps })
}

impl AvcConfig {
    /// The parameter sets as one Annex B buffer, fed to the decoder before the first frame.
    pub fn annex_b_headers(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in self.sps.iter().chain(&self.pps) {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
        }
        out
    }

    /// Walk the length-prefixed NALs of one AVCC sample, checking every length.
    fn nals<'a>(&self, sample: &'a [u8], f: impl FnMut(&'a [u8])) -> Result<()> {
        length_prefixed_nals(sample, self.length_size, f)
    }

    /// What a sample's slices are: an IDR picture (decoding can start there) and/or a
    /// reference picture (later pictures may need it; one that is not can be skipped).
    pub fn kind(&self, sample: &[u8]) -> Result<SampleKind> {
        let mut k = SampleKind { idr: false, reference: false };
        self.nals(sample, |nal| {
            let typ = nal[0] & 0x1f;
            k.idr |= typ == 5;
            k.reference |= matches!(typ, 1 | 5) && nal[0] >> 5 != 0;
        })?;
        Ok(k)
    }

    /// Rewrite one AVCC sample (length-prefixed NALs) as Annex B into `out`.
    pub fn to_annex_b(&self, sample: &[u8], out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        self.nals(sample, |nal| {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
        })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct SampleKind {
    pub idr: bool,
    pub reference: bool,
}

/// How to turn the decoded Y'CbCr into R'G'B'.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColourInfo {
    pub full_range: bool,
    /// ITU-T H.273 matrix_coefficients (1 = BT.709, 5/6 = BT.601, 9 = BT.2020, 2 = unknown).
    pub matrix: u8,
}

/// The SPS fields we need: chroma format and bit depth (OpenH264 does 8-bit 4:2:0 only),
/// interlacing, and the VUI colour description.
pub struct SpsInfo {
    pub profile_idc: u8,
    pub chroma_format_idc: u32,
    pub bit_depth: u32,
    pub frame_mbs_only: bool,
    pub colour: ColourInfo,
}

/// Exp-Golomb bit reader over an RBSP (emulation prevention bytes already removed).
struct Bits<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Result<u32> {
        let byte = *self.b.get(self.pos / 8).context("SPS is truncated")?;
        let v = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(v as u32)
    }
    fn bits(&mut self, n: u32) -> Result<u32> {
        (0..n).try_fold(0, |a, _| Ok((a << 1) | self.bit()?))
    }
    fn ue(&mut self) -> Result<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            ensure!(zeros < 32, "corrupt SPS: bad Exp-Golomb code");
        }
        Ok((1u32 << zeros) - 1 + self.bits(zeros)?)
    }
    fn se(&mut self) -> Result<i32> {
        let k = self.ue()?;
        Ok(if k % 2 == 1 { (k / 2 + 1) as i32 } else { -((k / 2) as i32) })
    }
}

fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// The name of an H.264 profile, for messages ("High 4:4:4 Predictive profile (244)").
pub fn profile_name(profile_idc: u8) -> String {
    let name = match profile_idc {
        66 => "Constrained Baseline/Baseline",
        77 => "Main",
        88 => "Extended",
        100 => "High",
        110 => "High 10",
        122 => "High 4:2:2",
        244 => "High 4:4:4 Predictive",
        44 => "CAVLC 4:4:4 Intra",
        83 | 86 => "Scalable",
        118 | 128 => "Multiview",
        _ => "unknown",
    };
    format!("{name} profile ({profile_idc})")
}

pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo> {
    ensure!(nal.len() >= 4 && nal[0] & 0x1f == 7, "corrupt SPS NAL");
    let data = rbsp(&nal[1..]);
    let mut r = Bits { b: &data, pos: 0 };
    let profile_idc = r.bits(8)? as u8;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // sps id
    let (mut chroma_format_idc, mut bit_depth) = (1, 8);
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bit()?;
        }
        bit_depth = r.ue()? + 8;
        r.ue()?; // chroma bit depth
        r.bit()?; // qpprime_y_zero_transform_bypass
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num - 4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            let n = r.ue()?;
            ensure!(n <= 255, "corrupt SPS: {n} POC cycle entries");
            for _ in 0..n {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_allowed
    r.ue()?; // width in MBs
    r.ue()?; // height in map units
    let frame_mbs_only = r.bit()? == 1;
    if !frame_mbs_only {
        r.bit()?;
    }
    r.bit()?; // direct_8x8_inference
    if r.bit()? == 1 {
        for _ in 0..4 {
            r.ue()?;
        }
    }
    // Without a colour description, decoders (and ffmpeg's swscale) assume BT.601 limited.
    let mut colour = ColourInfo { full_range: false, matrix: 2 };
    if r.bit()? == 1 {
        if r.bit()? == 1 && r.bits(8)? == 255 {
            r.bits(32)?; // extended SAR
        }
        if r.bit()? == 1 {
            r.bit()?; // overscan_appropriate
        }
        if r.bit()? == 1 {
            r.bits(3)?; // video_format
            colour.full_range = r.bit()? == 1;
            if r.bit()? == 1 {
                r.bits(16)?; // primaries, transfer
                colour.matrix = r.bits(8)? as u8;
            }
        }
    }
    Ok(SpsInfo { profile_idc, chroma_format_idc, bit_depth, frame_mbs_only, colour })
}

/// One decoded picture, borrowed from the decoder until its next call.
pub struct Picture<'a> {
    /// The timestamp given with the access unit this picture came from.
    pub tag: u64,
    pub width: usize,
    pub height: usize,
    y: (&'a [u8], usize),
    u: (&'a [u8], usize),
    v: (&'a [u8], usize),
}

/// OpenH264 through its raw API: the safe wrapper neither passes input timestamps nor
/// reports the output ones, and B-frame streams come out in presentation order, so
/// without the tags a skipped or dropped picture would shift every later one.
pub struct H264Decoder {
    dec: Decoder,
}

impl H264Decoder {
    pub fn new() -> Result<Self> {
        let dec = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .map_err(|e| anyhow::anyhow!("cannot start the H.264 decoder: {e}"))?;
        Ok(H264Decoder { dec })
    }

    /// Decode one Annex B access unit tagged `tag`; returns a picture if one is ready
    /// (not necessarily this one: output follows presentation order).
    pub fn decode(&mut self, annex_b: &[u8], tag: u64) -> Result<Option<Picture<'_>>> {
        let len = i32::try_from(annex_b.len()).context("access unit larger than 2 GiB")?;
        let mut dst = [std::ptr::null_mut::<u8>(); 3];
        let mut info = SBufferInfo { uiInBsTimeStamp: tag, ..Default::default() };
        // SAFETY: the buffers outlive the call; OpenH264 only reads `annex_b` and writes
        // `dst`/`info`.
        let state =
            unsafe { self.dec.raw_api().decode_frame_no_delay(annex_b.as_ptr(), len, dst.as_mut_ptr(), &mut info) };
        check(state)?;
        // SAFETY: `dst` and `info` were just filled by the decoder.
        unsafe { picture(&dst, &info) }
    }

    /// Pictures still held for reordering after the last access unit, one per call.
    pub fn flush(&mut self) -> Result<Option<Picture<'_>>> {
        let mut remaining: DECODING_STATE = 0;
        // SAFETY: the option writes one int.
        let rc = unsafe {
            self.dec.raw_api().get_option(
                DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER,
                (&mut remaining as *mut DECODING_STATE).cast(),
            )
        };
        if rc != 0 || remaining <= 0 {
            return Ok(None);
        }
        let mut dst = [std::ptr::null_mut::<u8>(); 3];
        let mut info = SBufferInfo::default();
        // SAFETY: as in `decode`.
        let state = unsafe { self.dec.raw_api().flush_frame(dst.as_mut_ptr(), &mut info) };
        check(state)?;
        // SAFETY: as in `decode`.
        unsafe { picture(&dst, &info) }
    }
}

fn check(state: DECODING_STATE) -> Result<()> {
    if state == dsErrorFree || state == dsFramePending {
        return Ok(());
    }
    let mut why = Vec::new();
    for (bit, name) in [
        (0x02, "reference lost"),
        (0x04, "bitstream error"),
        (0x08, "dependency layer lost"),
        (0x10, "no parameter sets"),
        (0x20, "data error concealed"),
        (0x40, "null reference list"),
        (0x1000, "invalid argument"),
        (0x2000, "decoder not initialised"),
        (0x4000, "out of memory"),
        (0x8000, "output buffer too small"),
    ] {
        if state & bit != 0 {
            why.push(name);
        }
    }
    bail!("H.264 decoding failed ({}; OpenH264 state {state:#x})", why.join(", "))
}

/// SAFETY: `dst` and `info` must come from the decoder call just made; the planes stay
/// valid until the decoder is called again, which the borrow on the decoder enforces.
unsafe fn picture<'a>(dst: &[*mut u8; 3], info: &SBufferInfo) -> Result<Option<Picture<'a>>> {
    if info.iBufferStatus != 1 || dst.iter().any(|p| p.is_null()) {
        return Ok(None);
    }
    let sb = unsafe { info.UsrData.sSystemBuffer };
    ensure!(sb.iFormat == videoFormatI420, "decoder produced pixel format {} (expected I420)", sb.iFormat);
    let (w, h) = (sb.iWidth.max(0) as usize, sb.iHeight.max(0) as usize);
    let (ys, cs) = (sb.iStride[0].max(0) as usize, sb.iStride[1].max(0) as usize);
    ensure!(w > 0 && h > 0 && ys >= w && cs >= w.div_ceil(2), "decoder produced a malformed {w}x{h} picture");
    let ch = h.div_ceil(2);
    // The last row needs only `width` bytes, not a whole stride.
    let (ylen, clen) = (ys * (h - 1) + w, cs * (ch - 1) + w.div_ceil(2));
    let plane = |p: *mut u8, len: usize| unsafe { std::slice::from_raw_parts(p as *const u8, len) };
    Ok(Some(Picture {
        tag: info.uiOutYuvTimeStamp,
        width: w,
        height: h,
        y: (plane(dst[0], ylen), ys),
        u: (plane(dst[1], clen), cs),
        v: (plane(dst[2], clen), cs),
    }))
}

impl<'a> Picture<'a> {
    /// A picture from 8-bit 4:2:0 planes (plane, row stride) held elsewhere.
    pub(super) fn from_planes(
        tag: u64,
        width: usize,
        height: usize,
        y: (&'a [u8], usize),
        u: (&'a [u8], usize),
        v: (&'a [u8], usize),
    ) -> Picture<'a> {
        Picture { tag, width, height, y, u, v }
    }

    /// Convert to RGB8. Chroma is taken from the co-sited 2x2 block (no interpolation),
    /// in 16-bit fixed point: cheap, and within an 8-bit step or so of swscale's output.
    pub fn to_rgb(&self, colour: ColourInfo) -> crate::image::RgbImage {
        // (Kr, Kb) of the matrix; unknown or unsupported matrices fall back to BT.601.
        let (kr, kb) = match colour.matrix {
            1 => (0.2126, 0.0722),
            9 | 10 => (0.2627, 0.0593),
            _ => (0.299, 0.114),
        };
        let kg = 1.0 - kr - kb;
        let (ys, yoff, cs) = if colour.full_range { (1.0, 0.0, 1.0) } else { (255.0 / 219.0, 16.0, 255.0 / 224.0) };
        let fx = |v: f64| (v * 65536.0).round() as i32;
        let cy = fx(ys);
        let crv = fx(2.0 * (1.0 - kr) * cs);
        let cbu = fx(2.0 * (1.0 - kb) * cs);
        let cgu = fx(2.0 * (1.0 - kb) * kb / kg * cs);
        let cgv = fx(2.0 * (1.0 - kr) * kr / kg * cs);
        let yoff = yoff as i32;
        let (w, h) = (self.width, self.height);
        let cw = w.div_ceil(2);
        let mut img = crate::image::RgbImage::new(w, h);
        // Chroma terms once per chroma row, shared by its two luma rows.
        let (mut rv, mut guv, mut bu) = (vec![0i32; cw], vec![0i32; cw], vec![0i32; cw]);
        for (row, out) in img.data.chunks_exact_mut(w * 3).enumerate() {
            if row.is_multiple_of(2) {
                let crow = row / 2;
                let urow = &self.u.0[crow * self.u.1..][..cw];
                let vrow = &self.v.0[crow * self.v.1..][..cw];
                for x in 0..cw {
                    let (u, v) = (urow[x] as i32 - 128, vrow[x] as i32 - 128);
                    rv[x] = crv * v + 32768;
                    guv[x] = 32768 - cgu * u - cgv * v;
                    bu[x] = cbu * u + 32768;
                }
            }
            let yrow = &self.y.0[row * self.y.1..][..w];
            let chroma = rv.iter().zip(&guv).zip(&bu);
            // Two pixels per chroma sample; an odd width leaves a last pixel of its own.
            let pairs = out.chunks_mut(6).zip(yrow.chunks(2)).zip(chroma);
            for ((px, ys), ((&r, &g), &b)) in pairs {
                for (px, &yv) in px.chunks_exact_mut(3).zip(ys) {
                    let y = (yv as i32 - yoff) * cy;
                    px[0] = ((y + r) >> 16).clamp(0, 255) as u8;
                    px[1] = ((y + g) >> 16).clamp(0, 255) as u8;
                    px[2] = ((y + b) >> 16).clamp(0, 255) as u8;
                }
            }
        }
        img
    }
}
