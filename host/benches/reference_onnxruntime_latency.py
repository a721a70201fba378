"""Batch-1 latency of every backbone of a model bundle under onnxruntime, one thread: the
reference next to tract's numbers (`cargo test -p avsc-host --test export_int8 -- --ignored
--nocapture latency`, and the device's per-stage milliseconds).

    python3 host/benches/reference_onnxruntime_latency.py BUNDLE_DIR [--runs 5]

Symbolic dimensions are fixed to one 10-s window: N = 1, T = 305 (the paper preset's frames
after the deltas). Needs: pip install onnxruntime numpy.
"""

import argparse
import json
import pathlib
import statistics
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle", type=pathlib.Path)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--frames", type=int, default=305, help="value of the symbolic T")
    args = ap.parse_args()
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    print(f"onnxruntime {ort.__version__}, 1 thread, batch 1, median of {args.runs}")
    for f in manifest["files"]:
        if f["role"].startswith("fusion"):
            continue
        sess = ort.InferenceSession(str(args.bundle / f["path"]), opts, providers=["CPUExecutionProvider"])
        feeds = {}
        for i in f["inputs"]:
            shape = [1 if d == "N" else args.frames if d == "T" else d for d in i["shape"]]
            feeds[i["name"]] = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        sess.run(None, feeds)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - t0) * 1e3)
        print(f"{f['path']}: {statistics.median(times):.1f} ms")


if __name__ == "__main__":
    main()
