//! File-backed sources: decoded audio (WAV, or the AAC track of an MP4), the frames of an MP4
//! and folders of images. `classify` and the tests use them; they end when the file does.

use super::{AudioRead, AudioSource, Frame, FrameSource};
use anyhow::{bail, Context, Result};
use avsc_shared::image::{read_image, RgbImage};
use avsc_shared::wav::Audio;
use std::path::{Path, PathBuf};

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
    pub fn open(path: &Path) -> Result<ClipAudio> {
        let mut audio = avsc_shared::decode::decode_audio(path)?;
        let mut note = None;
        if audio.channels.len() > 2 {
            let (stereo, how) = audio.into_stereo()?;
            note = how.note("audio");
            audio = stereo;
        }
        let mut clip = ClipAudio::new(audio, path.display().to_string()).with_context(|| path.display().to_string())?;
        clip.note = note;
        Ok(clip)
    }

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
pub struct ClipFrames {
    frames: std::vec::IntoIter<(f64, RgbImage)>,
    name: String,
}

impl ClipFrames {
    pub fn new(frames: Vec<(f64, RgbImage)>, name: impl Into<String>) -> ClipFrames {
        ClipFrames { frames: frames.into_iter(), name: name.into() }
    }

    /// `size`: keep the frames resized to `size` x `size` (the networks' input, made with the
    /// same resizer the engine uses, whose resize of an image already at `size` is the
    /// identity), instead of at the video's resolution: 3 MB for a 10-s clip at 2 fps
    /// instead of 55 MB at 720p.
    pub fn open_video(path: &Path, fps: f64, size: Option<usize>) -> Result<ClipFrames> {
        let mut frames = avsc_shared::decode::decode_video_frames(path, fps, None)?;
        if let Some(size) = size {
            let mut resizer = avsc_shared::image::FrameResizer::new();
            for (_, img) in &mut frames {
                *img = resizer.resize(img, size);
            }
        }
        Ok(ClipFrames::new(frames, path.display().to_string()))
    }
}

impl FrameSource for ClipFrames {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        Ok(self.frames.next().map(|(t, image)| Frame { t, image }))
    }

    fn describe(&self) -> String {
        format!("{} ({} frames left)", self.name, self.frames.len())
    }
}

/// A folder of PNG/JPEG images in file-name order, frame k shown at (k + 0.5) / fps s: the
/// times at which the trainer sampled a clip's frames.
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
