#!/usr/bin/env python3
"""Write decode_reference.json: what ffmpeg decodes from each tau-mini clip, for
shared/tests/decode.rs to check avsc's own MP4/H.264 decoding against.

Per clip: the presentation times of the frames chosen at 2 fps (targets (k + 0.5) / 2 s,
nearest presentation timestamp, the earlier on a tie), the mean R, G, B of each chosen
frame, a 32x18 thumbnail (block means) of frame 10, and the RMS of each second of each
channel of ffmpeg's AAC decode (plus, for the first clip, 128 raw samples from 1 s on).

Frames are taken from ffmpeg as Y'CbCr and converted here with the textbook BT.601
limited-range matrix, chroma repeated over each 2x2 block: ffmpeg's own unscaled
yuv420p -> rgb24 path truncates and reads 0.5-2 levels low, which would hide real errors
under the tolerance it forces.

Needs ffmpeg/ffprobe and numpy; not run in CI. Usage:
    python3 decode_reference.py ../../../../shared/media/tau-mini/video > decode_reference.json
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

FPS = 2
THUMB = (32, 18)
THUMB_FRAME = 10


def probe(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height,time_base,duration:frame=pts", "-of", "json", str(path)],
        check=True, capture_output=True, text=True).stdout
    j = json.loads(out)
    s = j["streams"][0]
    num, den = map(int, s["time_base"].split("/"))
    pts = [f["pts"] for f in j["frames"]]
    return s["width"], s["height"], num, den, float(s["duration"]), pts


def to_rgb(yuv, w, h):
    y = (yuv[: w * h].reshape(h, w).astype(np.float64) - 16) * 255 / 219
    cw, ch = (w + 1) // 2, (h + 1) // 2
    u = yuv[w * h: w * h + cw * ch].reshape(ch, cw).astype(np.float64) - 128
    v = yuv[w * h + cw * ch:].reshape(ch, cw).astype(np.float64) - 128
    u = u.repeat(2, 0).repeat(2, 1)[:h, :w] * 255 / 224
    v = v.repeat(2, 0).repeat(2, 1)[:h, :w] * 255 / 224
    kr, kb = 0.299, 0.114
    kg = 1 - kr - kb
    r = y + 2 * (1 - kr) * v
    g = y - 2 * (1 - kb) * kb / kg * u - 2 * (1 - kr) * kr / kg * v
    b = y + 2 * (1 - kb) * u
    return np.clip(np.round(np.stack([r, g, b], -1)), 0, 255).astype(np.uint8)


def choose(pts, num, den, duration):
    # |pts * num / den - (2k + 1) / (2 FPS)| compared exactly in integers.
    chosen, k = [], 0
    while (k + 0.5) / FPS < duration:
        target = (2 * k + 1) * den
        best = min(range(len(pts)), key=lambda i: (abs(2 * FPS * pts[i] * num - target), pts[i]))
        chosen.append(best)
        k += 1
    return chosen


def main():
    folder = Path(sys.argv[1])
    clips = {}
    for path in sorted(folder.glob("*.mp4")):
        w, h, num, den, duration, pts = probe(path)
        assert pts == sorted(pts), f"{path}: frames not in presentation order"
        chosen = choose(pts, num, den, duration)
        sel = "+".join(f"eq(n\\,{i})" for i in sorted(set(chosen)))
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(path), "-an", "-vf", f"select='{sel}'",
             "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
            check=True, capture_output=True).stdout
        frames = [to_rgb(f, w, h) for f in np.frombuffer(raw, np.uint8).reshape(-1, w * h * 3 // 2)]
        assert len(frames) == len(set(chosen)), f"{path}: got {len(frames)} frames"
        by_index = dict(zip(sorted(set(chosen)), frames))
        picked = [by_index[i] for i in chosen]
        bw, bh = w // THUMB[0], h // THUMB[1]
        f = picked[THUMB_FRAME][: bh * THUMB[1], : bw * THUMB[0]].astype(np.float64)
        thumb = f.reshape(THUMB[1], bh, THUMB[0], bw, 3).mean(axis=(1, 3))
        pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vn", "-f", "f32le", "-"],
                             check=True, capture_output=True).stdout
        audio = np.frombuffer(pcm, np.float32).reshape(-1, 2)[:480000].astype(np.float64)
        rms = [[float(np.sqrt((audio[s * 48000:(s + 1) * 48000, c] ** 2).mean())) for s in range(10)]
               for c in range(2)]
        clips[path.stem] = {
            "pts": [round(pts[i] * num / den, 6) for i in chosen],
            "mean_rgb": [[round(float(c), 3) for c in p.reshape(-1, 3).mean(axis=0)] for p in picked],
            "thumb_frame": THUMB_FRAME,
            "thumb": [int(round(v)) for v in thumb.reshape(-1)],
            "audio_rms": [[round(v, 6) for v in c] for c in rms],
        }
        if len(clips) == 1:
            clips[path.stem]["audio_1s"] = [[round(float(v), 6) for v in audio[48000:48128, c]] for c in range(2)]
    version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    json.dump({"generator": version, "fps": FPS, "thumb_size": list(THUMB), "clips": clips},
              sys.stdout, separators=(",", ":"))
    print()


if __name__ == "__main__":
    main()
