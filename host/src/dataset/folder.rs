//! The plain folder layout for users' own recordings:
//! `<root>/<label>/<clip>.mp4` (or `.mov`), `<root>/<label>/<clip>.wav` (or any audio file the
//! shared decoder reads: FLAC, OGG, MP3, ...), or audio plus a folder of frame images
//! `<root>/<label>/<clip>/`. Users record several takes per place, so a clip's
//! location is its stem up to a trailing `-<number>` take suffix (`walk-003` -> `walk`):
//! validation splits then keep all takes of a place on one side.

use super::{Item, Listing, Visual};
use anyhow::{Context, Result};
use avsc_shared::{Label, LABELS};
use std::collections::BTreeMap;
use std::path::Path;

pub fn looks_like(root: &Path) -> bool {
    LABELS.iter().any(|l| root.join(l).is_dir())
}

/// The location of a clip: its stem up to the last '-' (the take number), or the stem.
fn location_of(stem: &str) -> String {
    match stem.rsplit_once('-') {
        Some((place, take)) if !place.is_empty() && take.chars().all(|c| c.is_ascii_digit()) => place.to_string(),
        _ => stem.to_string(),
    }
}

pub fn list(root: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    for label in Label::all() {
        let dir = root.join(label.name());
        if !dir.is_dir() {
            continue;
        }
        // stem -> (wav, mp4, frames folder)
        let mut clips: BTreeMap<String, [Option<std::path::PathBuf>; 3]> = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list", dir.display()))? {
            let path = entry?.path();
            let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
            let slot = match (path.is_dir(), ext.as_deref()) {
                (true, _) => 2,
                (false, Some(e)) if avsc_shared::decode::VIDEO_EXTENSIONS.contains(&e) => 1,
                (false, Some(e)) if avsc_shared::decode::AUDIO_EXTENSIONS.contains(&e) => 0,
                _ => continue,
            };
            let name = if slot == 2 { path.file_name().unwrap().to_string_lossy().into_owned() } else { stem };
            clips.entry(name).or_default()[slot] = Some(path);
        }
        for (stem, [wav, mp4, frames]) in clips {
            let visual = match (&mp4, frames) {
                (Some(v), _) => Some(Visual::Video(v.clone())),
                (None, Some(f)) => Some(Visual::Frames(f)),
                (None, None) => None,
            };
            let audio = wav.or(mp4);
            if audio.is_none() {
                listing
                    .errors
                    .push(format!("{}: frame folder without a WAV or MP4 beside it", dir.join(&stem).display()));
                continue;
            }
            listing.items.push(Item {
                id: format!("{}-{stem}", label.name()),
                location: format!("{}/{}", label.name(), location_of(&stem)),
                audio,
                visual,
                label: Some(label),
                folds: Vec::new(),
            });
        }
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Dataset, Layout, Split};

    #[test]
    fn folder_layout_pairs_wav_mp4_and_frame_folders() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("park/walk-001")).unwrap();
        std::fs::create_dir_all(r.join("tram")).unwrap();
        std::fs::write(r.join("park/walk-001.wav"), b"").unwrap();
        std::fs::write(r.join("park/walk-002.wav"), b"").unwrap();
        std::fs::write(r.join("tram/line4.mp4"), b"").unwrap();
        std::fs::write(r.join("tram/notes.txt"), b"").unwrap();
        let ds = Dataset::open(r).unwrap();
        assert_eq!(ds.layout, Layout::Folder);
        let l = ds.list(Split::All).unwrap();
        assert!(l.errors.is_empty());
        let ids: Vec<_> = l.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["park-walk-001", "park-walk-002", "tram-line4"]);
        assert_eq!(l.items[0].visual, Some(Visual::Frames(r.join("park/walk-001"))));
        assert_eq!(l.items[1].visual, None);
        assert_eq!(l.items[2].visual, Some(Visual::Video(r.join("tram/line4.mp4"))));
        assert_eq!(l.items[2].audio.as_deref(), Some(r.join("tram/line4.mp4").as_path()));
        assert_eq!(l.items[0].location, l.items[1].location, "takes of one place share a location");
        assert_eq!(l.items[0].location, "park/walk");
    }

    #[test]
    fn an_empty_folder_is_not_a_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let err = Dataset::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("not a dataset"), "{err}");
    }
}
