//! A minimal MP4 writer for synthetic video: RGB frames → H.264 (OpenH264's encoder, the
//! library the decoder already links) in an ISO BMFF file with one video track, as the TAU
//! recordings are laid out (`avc1` + `avcC`, one chunk, sync samples listed). It exists so
//! that `synth` can write TAU-sized sets without ffmpeg; the product reads such files through
//! avsc-shared's demuxer like any camera's.

use anyhow::{bail, ensure, Context, Result};
use avsc_shared::image::RgbImage;
use openh264::encoder::{BitRate, Encoder, EncoderConfig, FrameRate, IntraFramePeriod};
use openh264::formats::{RgbSliceU8, YUVBuffer};
use openh264::OpenH264API;
use std::path::Path;

/// Encode `frames` (all `width` x `height`, even sizes) at `fps` and write `path` atomically.
/// A key frame every second.
pub fn write_h264(
    path: &Path,
    width: usize,
    height: usize,
    fps: u32,
    frames: impl Iterator<Item = RgbImage>,
) -> Result<()> {
    ensure!(
        width.is_multiple_of(2) && height.is_multiple_of(2) && width > 0 && height > 0,
        "frame size {width}x{height} must be even"
    );
    let config = EncoderConfig::new()
        .bitrate(BitRate::from_bps(4_000_000))
        .max_frame_rate(FrameRate::from_hz(fps as f32))
        .skip_frames(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(fps));
    let mut enc = Encoder::with_api_config(OpenH264API::from_source(), config).context("H.264 encoder")?;
    let (mut sps, mut pps) = (None::<Vec<u8>>, None::<Vec<u8>>);
    let mut mdat = Vec::new();
    let (mut sizes, mut sync) = (Vec::new(), Vec::new());
    for (k, f) in frames.enumerate() {
        ensure!((f.width, f.height) == (width, height), "frame {k} is {}x{}, not {width}x{height}", f.width, f.height);
        let yuv = YUVBuffer::from_rgb8_source(RgbSliceU8::new(&f.data, (width, height)));
        let bs = enc.encode(&yuv).with_context(|| format!("encoding frame {k}"))?;
        let start = mdat.len();
        let mut key = false;
        for l in 0..bs.num_layers() {
            let layer = bs.layer(l).expect("layer index in range");
            for n in 0..layer.nal_count() {
                let nal = strip_start_code(layer.nal_unit(n).expect("nal index in range"));
                let Some(&h) = nal.first() else { continue };
                match h & 0x1f {
                    7 => sps = Some(nal.to_vec()),
                    8 => pps = Some(nal.to_vec()),
                    t => {
                        key |= t == 5;
                        mdat.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                        mdat.extend_from_slice(nal);
                    }
                }
            }
        }
        ensure!(mdat.len() > start, "the encoder skipped frame {k}");
        sizes.push((mdat.len() - start) as u32);
        if key {
            sync.push(k as u32 + 1);
        }
    }
    let (Some(sps), Some(pps)) = (sps, pps) else { bail!("the encoder wrote no SPS/PPS") };
    ensure!(sps.len() >= 4, "short SPS");
    let bytes = mux(width, height, fps, &sps, &pps, &mdat, &sizes, &sync);
    avsc_shared::write_atomic(path, &bytes)
}

fn strip_start_code(nal: &[u8]) -> &[u8] {
    nal.strip_prefix(&[0, 0, 0, 1]).or_else(|| nal.strip_prefix(&[0, 0, 1])).unwrap_or(nal)
}

/// A box: size, type, body.
fn bx(kind: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = 8 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_be_bytes());
    b.extend_from_slice(kind);
    for p in parts {
        b.extend_from_slice(p);
    }
    b
}

/// A full box: version 0 and `flags`, then the body.
fn full(kind: &[u8; 4], flags: u32, body: &[u8]) -> Vec<u8> {
    bx(kind, &[&flags.to_be_bytes(), body])
}

fn be32(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

#[allow(clippy::too_many_arguments)]
fn mux(
    width: usize,
    height: usize,
    fps: u32,
    sps: &[u8],
    pps: &[u8],
    mdat: &[u8],
    sizes: &[u32],
    sync: &[u32],
) -> Vec<u8> {
    let n = sizes.len() as u32;
    let timescale = fps * 1000;
    let duration = n * 1000; // in the media timescale: 1000 ticks a frame
    let movie_ms = (n as u64 * 1000 / fps as u64) as u32;
    let ftyp = bx(b"ftyp", &[b"isom", &512u32.to_be_bytes(), b"isomiso2avc1mp41"]);
    let mdat_box_len = 8 + mdat.len();
    let chunk_offset = (ftyp.len() + 8) as u32;

    let mut mvhd = be32(&[0, 0, 1000, movie_ms, 0x0001_0000]);
    mvhd.extend_from_slice(&0x0100u16.to_be_bytes());
    mvhd.extend_from_slice(&[0; 10]);
    mvhd.extend(be32(&MATRIX));
    mvhd.extend_from_slice(&[0; 24]);
    mvhd.extend(be32(&[2]));
    let mvhd = full(b"mvhd", 0, &mvhd);

    let mut tkhd = be32(&[0, 0, 1, 0, movie_ms, 0, 0]);
    tkhd.extend_from_slice(&[0; 8]); // layer, alternate group, volume, reserved
    tkhd.extend(be32(&MATRIX));
    tkhd.extend(be32(&[(width as u32) << 16, (height as u32) << 16]));
    let tkhd = full(b"tkhd", 3, &tkhd);

    let mut mdhd = be32(&[0, 0, timescale, duration]);
    mdhd.extend_from_slice(&0x55c4u16.to_be_bytes()); // "und"
    mdhd.extend_from_slice(&[0, 0]);
    let mdhd = full(b"mdhd", 0, &mdhd);
    let hdlr = full(b"hdlr", 0, &[&be32(&[0])[..], b"vide", &[0; 12], b"VideoHandler\0"].concat());

    let mut avcc = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    avcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(sps);
    avcc.push(1);
    avcc.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(pps);
    let mut avc1 = vec![0; 6];
    avc1.extend_from_slice(&1u16.to_be_bytes()); // data reference index
    avc1.extend_from_slice(&[0; 16]);
    avc1.extend_from_slice(&(width as u16).to_be_bytes());
    avc1.extend_from_slice(&(height as u16).to_be_bytes());
    avc1.extend(be32(&[0x0048_0000, 0x0048_0000, 0]));
    avc1.extend_from_slice(&1u16.to_be_bytes()); // frame count
    avc1.extend_from_slice(&[0; 32]); // compressor name
    avc1.extend_from_slice(&[0x00, 0x18, 0xff, 0xff]); // depth, pre_defined = -1
    let avc1 = bx(b"avc1", &[&avc1, &bx(b"avcC", &[&avcc])]);
    let stsd = full(b"stsd", 0, &[&be32(&[1])[..], &avc1].concat());
    let stts = full(b"stts", 0, &be32(&[1, n, 1000]));
    let stss = full(b"stss", 0, &[&be32(&[sync.len() as u32])[..], &be32(sync)].concat());
    let stsc = full(b"stsc", 0, &be32(&[1, 1, n, 1]));
    let stsz = full(b"stsz", 0, &[&be32(&[0, n])[..], &be32(sizes)].concat());
    let stco = full(b"stco", 0, &be32(&[1, chunk_offset]));
    let stbl = bx(b"stbl", &[&stsd, &stts, &stss, &stsc, &stsz, &stco]);
    let vmhd = full(b"vmhd", 1, &[0; 8]);
    let dinf = bx(b"dinf", &[&full(b"dref", 0, &[&be32(&[1])[..], &full(b"url ", 1, &[])].concat())]);
    let minf = bx(b"minf", &[&vmhd, &dinf, &stbl]);
    let mdia = bx(b"mdia", &[&mdhd, &hdlr, &minf]);
    let trak = bx(b"trak", &[&tkhd, &mdia]);
    let moov = bx(b"moov", &[&mvhd, &trak]);

    let mut out = Vec::with_capacity(ftyp.len() + mdat_box_len + moov.len());
    out.extend_from_slice(&ftyp);
    out.extend_from_slice(&(mdat_box_len as u32).to_be_bytes());
    out.extend_from_slice(b"mdat");
    out.extend_from_slice(mdat);
    out.extend_from_slice(&moov);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(k: usize, w: usize, h: usize) -> RgbImage {
        let mut data = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                // A gradient that moves 2 px a frame, and a flat block.
                data[i] = ((x + 2 * k) * 255 / w) as u8;
                data[i + 1] = (y * 255 / h) as u8;
                data[i + 2] = if x < w / 2 { 200 } else { 40 };
            }
        }
        RgbImage { width: w, height: h, data }
    }

    #[test]
    fn written_video_reads_back_through_the_demuxer_and_decoder() {
        let (w, h, fps) = (96, 64, 10);
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("v.mp4");
        write_h264(&path, w, h, fps, (0..25).map(|k| frame(k, w, h))).unwrap();
        // 2.5 s at 10 fps: sampled at 2 frames a second, the decoder gives 5 frames.
        let frames = avsc_shared::decode::decode_video_frames(&path, 2.0, None).unwrap();
        assert_eq!(frames.len(), 5);
        for (j, (t, f)) in frames.iter().enumerate() {
            assert_eq!((f.width, f.height), (w, h));
            // The source frame shown at t.
            let want = frame((t * fps as f64 + 1e-6).floor() as usize, w, h);
            let err: f64 = f.data.iter().zip(&want.data).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>()
                / f.data.len() as f64;
            assert!(err < 6.0, "frame {j}: mean abs error {err:.2}");
        }
    }

    #[test]
    fn odd_sizes_and_mismatched_frames_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v.mp4");
        assert!(write_h264(&p, 95, 64, 10, std::iter::empty()).is_err());
        let err = write_h264(&p, 96, 64, 10, [frame(0, 96, 64), frame(1, 64, 64)].into_iter()).unwrap_err();
        assert!(format!("{err:#}").contains("frame 1 is 64x64"), "{err:#}");
        assert!(!p.exists());
    }
}
