//! The fuzz targets: each feeds one input to a reader, then does with the result what the
//! product does next (a bug in what a reader returns shows only when it is used).

use crate::mutate::Layout;
use avsc_shared::bundle::{Manifest, Precision, Role};
use avsc_shared::decode::{self, mp4};
use avsc_shared::tsv::{self, Table};
use avsc_shared::Label;
use std::hint::black_box;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The MP4/MOV demuxer ([`mp4::parse`]), the sample table's use, the video frame
    /// planning and the audio edit-list trimming.
    Mp4,
    /// The WAV reader ([`avsc_shared::wav::decode`]).
    Wav,
    /// The TAU CSV reader ([`Table::parse`]) and the row handling of the host's listing.
    Csv,
    /// The bundle manifest reader ([`Manifest::parse`]) and a write / read round trip.
    Manifest,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::Mp4, Target::Wav, Target::Csv, Target::Manifest];

    /// The command-line name, also the corpus folder's.
    pub fn name(self) -> &'static str {
        match self {
            Target::Mp4 => "mp4",
            Target::Wav => "wav",
            Target::Csv => "csv",
            Target::Manifest => "manifest",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The seed corpus committed with this crate: `fuzz/corpus/<name>/`.
    pub fn corpus_dir(self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(self.name())
    }

    pub fn layout(self) -> Layout {
        match self {
            Target::Mp4 => Layout::Bmff,
            Target::Wav => Layout::Riff,
            Target::Csv | Target::Manifest => Layout::Text,
        }
    }

    /// Tokens of the format that byte mutations rarely produce.
    pub fn dictionary(self) -> &'static [&'static [u8]] {
        match self {
            Target::Mp4 => &[
                b"moov",
                b"trak",
                b"mdia",
                b"minf",
                b"stbl",
                b"stsd",
                b"stsz",
                b"stco",
                b"co64",
                b"stsc",
                b"stts",
                b"ctts",
                b"edts",
                b"elst",
                b"udta",
                b"mvhd",
                b"tkhd",
                b"mdhd",
                b"hdlr",
                b"avc1",
                b"avcC",
                b"mp4a",
                b"esds",
                b"wave",
                b"moof",
                b"mdat",
                b"ftyp",
                b"vide",
                b"soun",
                b"iTunSMPB",
                b"data",
                b"\0\0\0\x08free",
                b"\0\0\0\x01",
                b"\0\0\0\0",
                b"\xff\xff\xff\xff",
                b"\x03\x80\x80\x80",
            ],
            Target::Wav => &[
                b"RIFF",
                b"WAVE",
                b"fmt ",
                b"data",
                b"LIST",
                b"fact",
                b"\xfe\xff",
                b"\x01\x00",
                b"\x03\x00",
                b"\x10\x00\x00\x00",
                b"\x28\x00\x00\x00",
                b"\xff\xff\xff\xff",
            ],
            Target::Csv => &[
                b"\t",
                b"\n",
                b"\r\n",
                b" ",
                b"\t\t\t",
                b"filename_audio",
                b"filename_video",
                b"scene_label",
                b"identifier",
                b"airport",
                b"street_traffic",
                b"audio/x.wav",
                b"..",
                b"/",
                b"\xef\xbb\xbf",
                b"\xc3\xa9",
                b"-lyon-1100-",
                b".wav",
            ],
            Target::Manifest => &[
                b"{",
                b"}",
                b"[",
                b"]",
                b"\"",
                b":",
                b",",
                b"null",
                b"true",
                b"false",
                b"\"N\"",
                b"\"aud_mel\"",
                b"\"fusion\"",
                b"\"int8\"",
                b"\"fc10\"",
                b"\"schema_version\"",
                b"\\u0000",
                b"\\ud800",
                b"[[[[[[[[",
                b"{\"kind\":\"minus_one_one\"}",
                b"\"sources\":[]",
                b"\"files\":[]",
                b"1e400",
                b"-0.0",
            ],
        }
    }

    /// Run one input. Returns whether the reader accepted it; a panic propagates (the
    /// engine catches it).
    pub fn run(self, data: &[u8]) -> bool {
        match self {
            Target::Mp4 => run_mp4(data),
            Target::Wav => run_wav(data),
            Target::Csv => run_csv(&String::from_utf8_lossy(data)),
            Target::Manifest => run_manifest(&String::from_utf8_lossy(data)),
        }
    }
}

/// Parse, then use every track as the decoders do: sample bytes and times, durations, the
/// gapless tag, the video frame plan (avcC, SPS, every NAL length prefix) and the audio
/// edit-list trimming. Accepted when the demuxer parses the file.
fn run_mp4(data: &[u8]) -> bool {
    let Ok(movie) = mp4::parse(data) else { return false };
    for track in &movie.tracks {
        black_box(track.duration());
        for s in &track.samples {
            black_box(s.bytes(data).map(<[u8]>::len).ok());
            black_box((track.seconds(s.dts), track.seconds(s.pts)));
        }
    }
    black_box(mp4::itunes_smpb(&movie.udta));
    // 30 fps: the seeds last 0.2-0.3 s, and every chosen frame has its NAL units walked.
    black_box(decode::plan_video_frames(data, 30.0, None).ok());
    black_box(decode::plan_audio_trim(data, 16_000, 16_384).ok());
    true
}

/// Decode, then make the stereo view the feature extraction uses.
fn run_wav(data: &[u8]) -> bool {
    let Ok(audio) = avsc_shared::wav::decode(data) else { return false };
    black_box(audio.n_samples());
    black_box(audio.into_stereo().ok());
    true
}

/// Parse, then read every row as the host's TAU listing does: the four columns it uses, the
/// scene label, the audio file's stem.
fn run_csv(text: &str) -> bool {
    let Ok(table) = Table::parse(text, "fuzz.csv") else { return false };
    let audio = table.column("filename_audio").ok();
    let video = table.column("filename_video").ok();
    let label = table.column("scene_label").ok();
    let ident = table.optional_column("identifier");
    for (line, row) in &table.rows {
        black_box(line);
        if let Some(a) = audio.and_then(|c| tsv::field(row, c)) {
            black_box(Path::new(a).file_stem());
        }
        black_box(video.and_then(|c| tsv::field(row, c)));
        black_box(ident.and_then(|c| tsv::field(row, c)));
        if let Some(l) = label.and_then(|c| tsv::field(row, c)) {
            black_box(l.parse::<Label>().ok());
        }
    }
    true
}

/// Parse, then look files up as the device does, and check that writing the manifest and
/// reading it back gives the same manifest (`Manifest::write` uses the same serialisation).
fn run_manifest(text: &str) -> bool {
    let Ok(manifest) = Manifest::parse(text, "manifest.json") else { return false };
    for role in [Role::Fusion, Role::FusionAudio, Role::FusionVisual].into_iter().chain(Role::BACKBONES) {
        for precision in [Precision::F32, Precision::Int8] {
            black_box(manifest.file(role, precision));
        }
        black_box(role.input_normalisation());
    }
    black_box((manifest.feature_preset.clip_samples(), manifest.feature_preset.delta_crop()));
    let written = serde_json::to_string_pretty(&manifest).expect("a parsed manifest serialises");
    let back = Manifest::parse(&written, "written manifest.json").expect("a written manifest reads back");
    assert!(back == manifest, "the manifest changed in a write / read round trip:\n{written}");
    true
}
