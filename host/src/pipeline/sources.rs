//! Content digests of a dataset's clips (audio file, video file or frame folder), so that
//! `train-all` re-prepares exactly the clips whose files changed.
//!
//! Hashing TAU's 12,291 clips (about 200 GB) on every run would cost minutes, so each file's
//! SHA-256 is kept in `OUT/stages/sources.json` with its size and modification time and
//! computed again only when either changed (as build systems keep a stat cache in front of
//! content hashes). A touched but unchanged file is hashed again and keeps its digest.

use super::stage::{file_digest, hex};
use crate::dataset::{Item, Visual};
use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    len: u64,
    mtime_ns: u128,
    sha256: String,
}

fn stat(path: &Path) -> Option<(u64, u128)> {
    let m = std::fs::metadata(path).ok()?;
    let t = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    Some((m.len(), t))
}

/// The files a clip is read from, in a fixed order.
fn files_of(item: &Item) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = item.audio.iter().cloned().collect();
    match &item.visual {
        Some(Visual::Video(p)) if !v.contains(p) => v.push(p.clone()),
        Some(Visual::Video(_)) => {}
        Some(Visual::Frames(dir)) => {
            let mut frames: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
                .unwrap_or_default();
            frames.sort();
            v.extend(frames);
        }
        None => {}
    }
    v
}

/// Digest per clip id: SHA-256 over each of its files' names and contents (a missing file
/// counts as "missing": `prepare` reports it). `cache_file` holds the stat cache.
pub fn clip_digests(items: &[Item], cache_file: &Path) -> Result<BTreeMap<String, String>> {
    let old: BTreeMap<String, Entry> =
        std::fs::read_to_string(cache_file).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    type Files = Vec<(PathBuf, Option<Entry>)>;
    let per_item: Vec<(String, Files)> = items
        .par_iter()
        .map(|it| -> Result<_> {
            let mut files = Vec::new();
            for p in files_of(it) {
                let key = p.display().to_string();
                let entry = match stat(&p) {
                    None => None,
                    Some((len, mtime_ns)) => match old.get(&key) {
                        Some(e) if e.len == len && e.mtime_ns == mtime_ns => Some(e.clone()),
                        _ => file_digest(&p)?.map(|sha256| Entry { len, mtime_ns, sha256 }),
                    },
                };
                files.push((p, entry));
            }
            Ok((it.id.clone(), files))
        })
        .collect::<Result<_>>()?;
    let mut cache = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (id, files) in per_item {
        let mut h = Sha256::new();
        for (p, e) in files {
            h.update(p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default().as_bytes());
            match e {
                Some(e) => {
                    h.update(e.sha256.as_bytes());
                    cache.insert(p.display().to_string(), e);
                }
                None => h.update(b"missing"),
            }
        }
        out.insert(id, hex(&h.finalize()));
    }
    if let Some(dir) = cache_file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    avsc_shared::write_atomic(cache_file, serde_json::to_string(&cache)?.as_bytes())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(dir: &Path) -> Item {
        Item {
            id: "a".into(),
            audio: Some(dir.join("a.wav")),
            visual: Some(Visual::Frames(dir.join("a"))),
            label: None,
            location: "x".into(),
            folds: vec![],
        }
    }

    #[test]
    fn a_clip_digest_follows_its_files_contents() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("a")).unwrap();
        std::fs::write(p.join("a.wav"), b"sound").unwrap();
        std::fs::write(p.join("a/frame_00.png"), b"pic0").unwrap();
        let cache = p.join("stages/sources.json");
        let it = [item(p)];
        let d1 = clip_digests(&it, &cache).unwrap()["a"].clone();
        // Rewritten with the same bytes (new mtime): same digest.
        std::fs::write(p.join("a.wav"), b"sound").unwrap();
        assert_eq!(clip_digests(&it, &cache).unwrap()["a"], d1);
        // A frame changed, same length: another digest (the mtime moved, so it is rehashed).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(p.join("a/frame_00.png"), b"pic1").unwrap();
        let d2 = clip_digests(&it, &cache).unwrap()["a"].clone();
        assert_ne!(d1, d2);
        // A frame added: another digest; a missing audio file: another again.
        std::fs::write(p.join("a/frame_01.png"), b"pic2").unwrap();
        let d3 = clip_digests(&it, &cache).unwrap()["a"].clone();
        assert_ne!(d2, d3);
        std::fs::remove_file(p.join("a.wav")).unwrap();
        assert_ne!(clip_digests(&it, &cache).unwrap()["a"], d3);
    }
}
