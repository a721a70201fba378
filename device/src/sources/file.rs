//! File-backed sources: a file's audio (WAV, FLAC, OGG, MP3, the audio track of an MP4 or
//! MOV) and an MP4's frames, both decoded as the loop asks for them, so a recording of any
//! length is classified in the memory of one window; audio already in memory; folders of
//! images. `classify` and the tests use them; they end when the file does.

use super::{AudioRead, AudioSource, Frame, FrameSource};
use anyhow::{bail, Context, Result};
use avsc_shared::decode::{AudioStream, Named, VideoFrames};
use avsc_shared::image::{read_image, FrameResizer};
use avsc_shared::wav::{Audio, Stereo};
use std::path::{Path, PathBuf};

/// A file's audio, decoded a packet at a time. More than two channels are mixed down to
/// stereo as they are read (and every window's note says so).
pub struct FileAudio {
    stream: Named,
    channels_in: usize,
    pos: u64,
    name: String,
    note: Option<String>,
    /// Reads of more than two channels, before the mix-down.
    wide: Vec<f32>,
    planar: Vec<Vec<f32>>,
}

impl FileAudio {
    pub fn open(path: &Path) -> Result<FileAudio> {
        let stream = avsc_shared::decode::open_audio(path)?;
        let channels_in = stream.channels();
        let mixed = (channels_in > 2).then(|| Stereo::Downmixed(channels_in).note("audio")).flatten();
        // What the decoder left out (HE-AAC's upper band), then the mix-down.
        let note = match (stream.note(), mixed) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        let planar = if channels_in > 2 { vec![Vec::new(); channels_in] } else { Vec::new() };
        let name = path.display().to_string();
        Ok(FileAudio { stream, channels_in, pos: 0, name, note, wide: Vec::new(), planar })
    }
}

impl AudioSource for FileAudio {
    fn sample_rate(&self) -> u32 {
        self.stream.sample_rate()
    }

    fn channels(&self) -> usize {
        self.channels_in.min(2)
    }

    fn read(&mut self, buf: &mut [f32]) -> Result<Option<AudioRead>> {
        let n = if self.channels_in <= 2 {
            self.stream.read(buf)?
        } else {
            let frames = buf.len() / 2;
            self.wide.resize(frames * self.channels_in, 0.0);
            let n = self.stream.read(&mut self.wide)?;
            for (c, p) in self.planar.iter_mut().enumerate() {
                p.clear();
                p.extend(self.wide[..n * self.channels_in].iter().skip(c).step_by(self.channels_in));
            }
            let stereo = avsc_shared::wav::downmix_to_stereo(&self.planar);
            for (i, frame) in buf[..n * 2].chunks_exact_mut(2).enumerate() {
                frame[0] = stereo[0][i];
                frame[1] = stereo[1][i];
            }
            n
        };
        if n == 0 {
            return Ok(None);
        }
        let t = self.pos as f64 / self.sample_rate() as f64;
        self.pos += n as u64;
        Ok(Some(AudioRead { frames: n, t }))
    }

    fn describe(&self) -> String {
        let len = self.stream.frames_hint().map(|f| format!(", {:.2} s", f as f64 / self.sample_rate() as f64));
        format!("{} ({} Hz, {} ch{})", self.name, self.sample_rate(), self.channels_in, len.unwrap_or_default())
    }

    fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }
}

/// An MP4's frames at the models' rate, decoded one at a time as the loop asks for them and
/// resized to the models' size.
pub struct VideoFile {
    frames: VideoFrames,
    first: Option<Frame>,
    resizer: FrameResizer,
    size: Option<usize>,
    name: String,
}

impl VideoFile {
    /// Open `path` for `fps` frames a second (resized to `size` x `size` when given). The
    /// first frame is decoded here, so a video that cannot be decoded at all fails now.
    pub fn open(path: &Path, fps: f64, size: Option<usize>) -> Result<VideoFile> {
        let frames = avsc_shared::decode::open_frames(path, fps, None)?;
        let name = path.display().to_string();
        let mut v = VideoFile { frames, first: None, resizer: FrameResizer::new(), size, name };
        v.first = v.decode()?;
        Ok(v)
    }

    fn decode(&mut self) -> Result<Option<Frame>> {
        Ok(self.frames.next_frame()?.map(|(t, img)| Frame {
            t,
            image: match self.size {
                Some(size) => self.resizer.resize(&img, size),
                None => img,
            },
        }))
    }
}

impl FrameSource for VideoFile {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        match self.first.take() {
            Some(f) => Ok(Some(f)),
            None => self.decode(),
        }
    }

    fn describe(&self) -> String {
        format!("{} ({} frames left)", self.name, self.frames.remaining() + self.first.is_some() as usize)
    }
}

/// Audio already in memory, served in chunks.
pub struct ClipAudio {
    audio: Audio,
    pos: usize,
    name: String,
    /// How the file's audio was adapted (mixed down), for each window's note.
    note: Option<String>,
}

impl ClipAudio {
    pub fn new(audio: Audio, name: impl Into<String>) -> Result<ClipAudio> {
        if audio.channels.is_empty() || audio.n_samples() == 0 {
            bail!("no audio samples");
        }
        Ok(ClipAudio { audio, pos: 0, name: name.into(), note: None })
    }

    /// An audio file (WAV, FLAC, OGG, MP3, ...) or the audio track of an MP4 (the shared
    /// decoder). More than two channels are mixed down to stereo, which each window's
    /// note says ([`AudioSource::note`]).
    pub fn duration_s(&self) -> f64 {
        self.audio.n_samples() as f64 / self.audio.sample_rate as f64
    }
}

impl AudioSource for ClipAudio {
    fn sample_rate(&self) -> u32 {
        self.audio.sample_rate
    }

    fn channels(&self) -> usize {
        self.audio.channels.len()
    }

    fn read(&mut self, buf: &mut [f32]) -> Result<Option<AudioRead>> {
        let ch = self.channels();
        let n = (buf.len() / ch).min(self.audio.n_samples() - self.pos);
        if n == 0 {
            return Ok(None);
        }
        for (i, frame) in buf.chunks_exact_mut(ch).take(n).enumerate() {
            for (c, s) in frame.iter_mut().enumerate() {
                *s = self.audio.channels[c][self.pos + i];
            }
        }
        let t = self.pos as f64 / self.audio.sample_rate as f64;
        self.pos += n;
        Ok(Some(AudioRead { frames: n, t }))
    }

    fn describe(&self) -> String {
        format!("{} ({} Hz, {} ch, {:.2} s)", self.name, self.audio.sample_rate, self.channels(), self.duration_s())
    }
    fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }
}

/// Frames decoded up front: an MP4's video track sampled at `fps` by presentation time.
pub struct ImageFolder {
    files: Vec<PathBuf>,
    next: usize,
    fps: f64,
    dir: PathBuf,
}

impl ImageFolder {
    pub fn open(dir: &Path, fps: f64) -> Result<ImageFolder> {
        let rd = std::fs::read_dir(dir).with_context(|| format!("{}: cannot read image folder", dir.display()))?;
        let mut files = Vec::new();
        for e in rd {
            let p = e.with_context(|| format!("{}: cannot list", dir.display()))?.path();
            let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
            if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
                files.push(p);
            }
        }
        if files.is_empty() {
            bail!("{}: no .png/.jpg images", dir.display());
        }
        files.sort();
        Ok(ImageFolder { files, next: 0, fps, dir: dir.to_path_buf() })
    }
}

impl FrameSource for ImageFolder {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        let Some(p) = self.files.get(self.next) else { return Ok(None) };
        let t = (self.next as f64 + 0.5) / self.fps;
        self.next += 1;
        Ok(Some(Frame { t, image: read_image(p)? }))
    }

    fn describe(&self) -> String {
        format!("{} ({} images at {} fps)", self.dir.display(), self.files.len(), self.fps)
    }
}

/// The time line of a video whose audio is missing or cannot be decoded: silence at
/// `rate` for the video's duration, marked [`AudioSource::absent`] so each window is
/// classified from its frames alone (the bundle's visual-only head) with `reason` as note.
pub struct NoAudio {
    rate: u32,
    total: usize,
    pos: usize,
    reason: String,
}

impl NoAudio {
    pub fn new(duration_s: f64, rate: u32, reason: impl Into<String>) -> NoAudio {
        NoAudio { rate, total: (duration_s.max(0.0) * rate as f64).round() as usize, pos: 0, reason: reason.into() }
    }
}

impl AudioSource for NoAudio {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn channels(&self) -> usize {
        1
    }
    fn read(&mut self, buf: &mut [f32]) -> Result<Option<AudioRead>> {
        let n = buf.len().min(self.total - self.pos);
        if n == 0 {
            return Ok(None);
        }
        buf[..n].fill(0.0);
        let t = self.pos as f64 / self.rate as f64;
        self.pos += n;
        Ok(Some(AudioRead { frames: n, t }))
    }
    fn describe(&self) -> String {
        format!("no audio ({}), {:.2} s of video time", self.reason, self.total as f64 / self.rate as f64)
    }
    fn absent(&self) -> Option<&str> {
        Some(&self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_audio_interleaves_and_ends() {
        let audio = Audio { sample_rate: 4, channels: vec![vec![1.0, 2.0, 3.0], vec![-1.0, -2.0, -3.0]] };
        let mut s = ClipAudio::new(audio, "x").unwrap();
        let mut buf = [0.0; 4];
        assert_eq!(s.read(&mut buf).unwrap(), Some(AudioRead { frames: 2, t: 0.0 }));
        assert_eq!(buf, [1.0, -1.0, 2.0, -2.0]);
        assert_eq!(s.read(&mut buf).unwrap(), Some(AudioRead { frames: 1, t: 0.5 }));
        assert_eq!(&buf[..2], &[3.0, -3.0]);
        assert_eq!(s.read(&mut buf).unwrap(), None);
    }

    #[test]
    fn image_folder_in_name_order_at_half_frame_times() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in ["b.png", "a.png", "notes.txt"].iter().enumerate() {
            let img = image::RgbImage::from_pixel(4, 2, image::Rgb([i as u8, 0, 0]));
            if name.ends_with(".png") {
                img.save(dir.path().join(name)).unwrap();
            } else {
                std::fs::write(dir.path().join(name), "x").unwrap();
            }
        }
        let mut f = ImageFolder::open(dir.path(), 2.0).unwrap();
        let a = f.next_frame().unwrap().unwrap();
        assert_eq!((a.t, a.image.data[0]), (0.25, 1));
        let b = f.next_frame().unwrap().unwrap();
        assert_eq!((b.t, b.image.data[0]), (0.75, 0));
        assert!(f.next_frame().unwrap().is_none());
        assert!(ImageFolder::open(&dir.path().join("none"), 2.0).is_err());
    }
}
