#!/usr/bin/env python3
"""Turn host/gpu/bench.sh's results.jsonl into the Markdown table of host/gpu/README.md:
step time at batch 32 per network and backend next to PyTorch's, the ratio, inference
throughput, and the projected wall time of the paper recipe's Phase I on DCASE fold 1.

    python3 host/gpu/summarize.py OUT/results.jsonl
"""
import json
import math
import sys

# The projection: fold-1 training clips, Phase I's defaults (TrainConfig::default()).
FOLD1_CLIPS = 8646
VAL_FRACTION = 0.2
EPOCHS = 30
BATCH = 32
FRAMES_PER_CLIP = 20  # 2 per second, 10-s clips: the paper trains the visual networks on all
AUDIO_NETS = 3        # Aud-MEL, Aud-GAM, Aud-CQT share one architecture

NETS = ["audio", "inception-v3", "convnext-tiny"]


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    step, fwd, failed, parity, cold = {}, {}, [], [], {}
    for r in rows:
        label = r["label"]
        if "failed" in r:
            failed.append(f"{label}: exit {r['failed']} after {r['seconds']} s")
            continue
        res = r["result"]
        if res.get("what") == "parity":
            fused = " +fusion" if label.startswith("avsc-host-fusion") else ""
            e1 = res["epochs"][0] if res["epochs"] else None
            detail = (f"epoch-1 train KL {e1[0]:.6f} (cpu) / {e1[1]:.6f}, validation log loss "
                      f"{e1[2]:.5f} / {e1[3]:.5f}" if e1 else "no epochs")
            parity.append(f"- burn {res['device']}{fused}: {'passed' if res['passed'] else 'FAILED'} ({detail})")
            continue
        backend = label.split(" ")[0]  # torch, avsc-host, avsc-host-fusion
        if backend == "torch":
            backend = "pytorch" + (" cudnn.benchmark" if "cudnn-benchmark" in label else "")
        else:
            backend = ("burn " + res["device"]) + (" +fusion" if backend.endswith("fusion") else "")
        if " cold " in label:
            cold[(backend, res["net"])] = res
            continue
        table = step if res["what"] == "step" else fwd
        table[(backend, res["net"])] = res

    backends = sorted({b for b, _ in step}, key=lambda b: (not b.startswith("pytorch"), b))
    ref = "pytorch"
    out = ["| step, batch 32 (ms) | " + " | ".join(backends) + " |",
           "|---|" + "---|" * len(backends)]
    for net in NETS:
        cells = []
        for b in backends:
            r = step.get((b, net))
            if r is None:
                cells.append("—")
                continue
            cell = f"{r['median_ms']:.1f}"
            base = step.get((ref, net))
            if base and b != ref:
                cell += f" ({r['median_ms'] / base['median_ms']:.2f}x)"
            cells.append(cell)
        out.append(f"| {net} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("Ratios are to PyTorch with its defaults.")
    if cold:
        out.append("First iteration in a fresh process with empty caches (kernel compilation, autotune), s: "
                   + ", ".join(f"{b} {n} {r['first_s']:.1f}" for (b, n), r in sorted(cold.items())))
    warm = [(k, r) for k, r in sorted(step.items()) if "first_s" in r]
    if warm:
        out.append("First iteration of the timed process (caches filled), s: "
                   + ", ".join(f"{b} {n} {r['first_s']:.1f}" for (b, n), r in warm))
    fb = sorted({b for b, _ in fwd}, key=lambda b: (not b.startswith("pytorch"), b))
    if fb:
        out += ["", "| inference, batch 64 (examples/s) | " + " | ".join(fb) + " |", "|---|" + "---|" * len(fb)]
        for net in NETS:
            out.append(f"| {net} | " + " | ".join(
                f"{fwd[(b, net)]['per_second']:.0f}" if (b, net) in fwd else "—" for b in fb) + " |")
    # Phase I on fold 1 with each backend's measured step and inference times.
    train_clips = round(FOLD1_CLIPS * (1 - VAL_FRACTION))
    val_clips = FOLD1_CLIPS - train_clips
    out += ["", f"Projected Phase I on fold 1 ({FOLD1_CLIPS} clips, {EPOCHS} epochs, batch {BATCH}, "
            f"{FRAMES_PER_CLIP} frames per clip, validation {val_clips} clips every epoch):", ""]
    for b in backends:
        hours, missing = 0.0, []
        for net in NETS:
            r = step.get((b, net))
            if r is None:
                missing.append(net)
                continue
            views = 1 if net == "audio" else FRAMES_PER_CLIP
            copies = AUDIO_NETS if net == "audio" else 1
            steps = math.ceil(train_clips * views / BATCH)
            f = fwd.get((b, net))
            val_s = val_clips * views / f["per_second"] if f else 0.0
            hours += copies * EPOCHS * (steps * r["median_ms"] / 1e3 + val_s) / 3600
        note = f" (without {', '.join(missing)})" if missing else ""
        out.append(f"- {b}: {hours:.1f} h{note}")
    if parity:
        out += ["", "CPU/GPU parity (`avsc-host bench --what parity`):", ""] + parity
    if failed:
        out += ["", "Failed or timed out: " + "; ".join(failed)]
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
