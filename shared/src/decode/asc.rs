//! The MPEG-4 AudioSpecificConfig (ISO/IEC 14496-3, 1.6.2.1): enough of it to name an AAC
//! stream in a message (profile, channels, rate) and to find the AAC-LC core of HE-AAC.
//!
//! HE-AAC (v1: SBR; v2: SBR + parametric stereo) is an AAC-LC stream at half the output
//! rate plus side information that recreates the upper band (and, for v2, stereo). The
//! decoder used here reads only AAC-LC, and skips the side information it meets in the
//! packets; so an HE-AAC stream is decoded as its core, at the core's rate, without the
//! band above a quarter of the output rate (12 kHz for 48 kHz audio), mono for v2. The
//! caller says so in a note.

use anyhow::{ensure, Context, Result};

/// What a stream's AudioSpecificConfig declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AacConfig {
    /// Audio object type: 2 AAC-LC, 5 SBR, 29 PS, ...
    pub object_type: u32,
    /// The rate of the (core) AAC stream.
    pub rate: u32,
    /// The channel configuration (1 mono, 2 stereo, ..., 6 for 5.1; 0: a program config).
    pub channel_config: u8,
    /// Explicit HE-AAC: the output rate.
    pub he_rate: Option<u32>,
    /// The AudioSpecificConfig of the AAC-LC stream (or HE-AAC's core) alone, as the
    /// decoder reads it best: without the flags LC does not use (some encoders set
    /// `dependsOnCoreCoder` and then leave its 14 bits out: Nero's audiobooks).
    pub lc: Option<Vec<u8>>,
}

const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// An MSB-first bit reader.
struct Bits<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Result<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.b.get(self.pos / 8).context("AudioSpecificConfig is truncated")?;
            v = (v << 1) | ((byte >> (7 - self.pos % 8)) & 1) as u32;
            self.pos += 1;
        }
        Ok(v)
    }
    fn object_type(&mut self) -> Result<u32> {
        let t = self.read(5)?;
        Ok(if t == 31 { 32 + self.read(6)? } else { t })
    }
    /// (index, rate): index 15 is an explicit 24-bit rate.
    fn rate(&mut self) -> Result<(u32, u32)> {
        let i = self.read(4)?;
        let rate =
            if i == 15 { self.read(24)? } else { *RATES.get(i as usize).context("reserved sampling rate index")? };
        ensure!(rate > 0, "sampling rate 0");
        Ok((i, rate))
    }
}

/// An MSB-first bit writer.
#[derive(Default)]
struct Out {
    b: Vec<u8>,
    bits: usize,
}

impl Out {
    fn put(&mut self, v: u32, n: usize) {
        for k in (0..n).rev() {
            if self.bits.is_multiple_of(8) {
                self.b.push(0);
            }
            let last = self.b.len() - 1;
            self.b[last] |= (((v >> k) & 1) as u8) << (7 - self.bits % 8);
            self.bits += 1;
        }
    }
}

impl AacConfig {
    pub fn parse(asc: &[u8]) -> Result<AacConfig> {
        let mut r = Bits { b: asc, pos: 0 };
        let object_type = r.object_type()?;
        let (index, rate) = r.rate()?;
        let channel_config = r.read(4)? as u8;
        let mut he_rate = None;
        let mut core = object_type;
        if object_type == 5 || object_type == 29 {
            // Explicit signalling: the output rate, then the core's object type.
            he_rate = Some(r.rate()?.1);
            core = r.object_type()?;
        }
        let lc = (core == 2).then(|| -> Result<Vec<u8>> {
            // GASpecificConfig: frame length (1024 or 960), then flags LC leaves at 0.
            let frame_length = r.read(1)?;
            let mut w = Out::default();
            w.put(2, 5);
            w.put(index, 4);
            if index == 15 {
                w.put(rate, 24);
            }
            w.put(channel_config as u32, 4);
            w.put(frame_length, 1);
            w.put(0, 2); // no core coder, no extension
            Ok(w.b)
        });
        Ok(AacConfig { object_type, rate, channel_config, he_rate, lc: lc.transpose()? })
    }

    /// The stream named as people name it: "HE-AAC v2, stereo, 48000 Hz".
    pub fn describe(&self) -> String {
        let profile = match self.object_type {
            1 => "AAC Main",
            2 => "AAC-LC",
            3 => "AAC SSR",
            4 => "AAC LTP",
            5 => "HE-AAC",
            23 => "AAC-LD",
            29 => "HE-AAC v2",
            39 => "AAC-ELD",
            42 => "xHE-AAC (USAC)",
            _ => "MPEG-4 audio",
        };
        let channels = match self.channel_config {
            0 => "channels from a program config".to_string(),
            1 => "mono".into(),
            2 => "stereo".into(),
            3 => "3.0".into(),
            4 => "4.0".into(),
            5 => "5.0".into(),
            6 => "5.1".into(),
            7 | 12 => "7.1".into(),
            c => format!("channel configuration {c}"),
        };
        let rate = self.he_rate.unwrap_or(self.rate);
        let t = if matches!(self.object_type, 1..=5 | 23 | 29 | 39 | 42) {
            String::new()
        } else {
            format!(" {}", self.object_type)
        };
        format!("{profile}{t}, {channels}, {rate} Hz")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_he_and_he_v2_configs() {
        // ffmpeg's AAC-LC stereo 48 kHz: 00010 0011 0010 000.
        let lc = AacConfig::parse(&[0x11, 0x90]).unwrap();
        assert_eq!((lc.object_type, lc.rate, lc.channel_config, lc.he_rate), (2, 48_000, 2, None));
        assert_eq!(lc.lc, Some(vec![0x11, 0x90]));
        assert_eq!(lc.describe(), "AAC-LC, stereo, 48000 Hz");
        // Nero's: dependsOnCoreCoder set and its delay left out (00010 0100 0010 0 1 0).
        let nero = AacConfig::parse(&[0x12, 0x12]).unwrap();
        assert_eq!(nero.lc, Some(vec![0x12, 0x10]));
        // 5.1 at 48 kHz (as in Big Buck Bunny's trailer): channel configuration 6.
        assert_eq!(AacConfig::parse(&[0x11, 0xB0]).unwrap().describe(), "AAC-LC, 5.1, 48000 Hz");
        // HE-AAC, explicit: SBR (5), core 24 kHz (6), stereo, output 48 kHz (3), core LC.
        // 00101 0110 0010 0011 00010 000 -> the core's own config is LC stereo 24 kHz.
        let he = AacConfig::parse(&[0x2B, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!((he.object_type, he.rate, he.channel_config, he.he_rate), (5, 24_000, 2, Some(48_000)));
        assert_eq!(he.lc, Some(vec![0x13, 0x10]));
        assert_eq!(he.describe(), "HE-AAC, stereo, 48000 Hz");
        // HE-AAC v2: PS (29), core mono 24 kHz, output 48 kHz.
        // 11101 0110 0001 0011 00010 000
        let v2 = AacConfig::parse(&[0xEB, 0x09, 0x88, 0x00]).unwrap();
        assert_eq!(v2.describe(), "HE-AAC v2, mono, 48000 Hz");
        assert_eq!(v2.lc.unwrap(), vec![0x13, 0x08]);
        // Not LC: named, no LC config.
        let ld = AacConfig::parse(&[0xB9, 0x90, 0x00]).unwrap();
        assert_eq!((ld.describe().as_str(), ld.lc), ("AAC-LD, stereo, 48000 Hz", None));
        // Truncated and reserved values are errors, not panics.
        assert!(AacConfig::parse(&[0x11]).is_err());
        assert!(AacConfig::parse(&[0x16, 0x90]).is_err()); // rate index 13
    }
}
