#!/usr/bin/env python3
"""Times the Python references (librosa 0.11, gammatone 1.0.3) on the same 10-s stereo
clip and `paper` parameters as `cargo bench -p avsc-shared --bench features`, single
thread, median of N runs after a warm-up. Filterbanks are rebuilt per call, as librosa does.

    pip install librosa==0.11.0 gammatone==1.0.3 soxr numpy scipy threadpoolctl
    python3 shared/benches/reference_librosa.py [--runs 15]
"""
import argparse
import os
import pathlib
import statistics
import time

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[v] = "1"

import numpy as np  # noqa: E402
import librosa  # noqa: E402
from gammatone import fftweight  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

SR, NFFT, WIN, HOP, FMIN, NB = 32000, 4096, 2560, 1024, 10.0, 128


def db(p):
    return np.stack([librosa.power_to_db(c, ref=1.0, amin=1e-10, top_db=80.0) for c in p])


def mel(y):
    return db(np.stack([librosa.feature.melspectrogram(y=c, sr=SR, n_fft=NFFT, win_length=WIN, hop_length=HOP,
                                                         center=False, n_mels=NB, fmin=FMIN, fmax=SR / 2) for c in y]))


def gam(y):
    w, _ = fftweight.fft_weights(NFFT, SR, NB, 1, FMIN, SR / 2, NFFT // 2 + 1)
    out = []
    for c in y:
        sg = fftweight.specgram(c, NFFT, SR, WIN, HOP)
        out.append((w @ np.abs(sg) / NFFT) ** 2)
    return db(np.stack(out))


def cqt(y):
    c = np.abs(librosa.cqt(y, sr=SR, hop_length=HOP, fmin=FMIN, n_bins=NB, bins_per_octave=24, tuning=0.0))
    return db(c[..., 2:-2] ** 2)


def deltas(s):
    d1 = librosa.feature.delta(s, width=5, order=1, axis=-1)[..., 2:-2]
    d2 = librosa.feature.delta(s, width=5, order=2, axis=-1)[..., 2:-2]
    return np.concatenate([s[..., 2:-2], d1, d2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--input", default=str(pathlib.Path(__file__).resolve().parents[3] / "shared/golden/input_scene_10s.npy"))
    a = ap.parse_args()
    y = np.load(a.input).astype(np.float32)
    s = mel(y)
    cases = [("mel_db", lambda: mel(y)), ("gam_db", lambda: gam(y)), ("cqt_db", lambda: cqt(y)), ("deltas", lambda: deltas(s))]
    total = 0.0
    with threadpool_limits(1):
        for name, f in cases:
            f()
            ts = []
            for _ in range(a.runs):
                t0 = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t0)
            med = statistics.median(ts) * 1e3
            total += med
            print(f"{name:8s} median {med:8.2f} ms  min {min(ts) * 1e3:8.2f} ms")
    print(f"{'sum':8s} median {total:8.2f} ms")


if __name__ == "__main__":
    main()
