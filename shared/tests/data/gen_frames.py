"""Pillow BILINEAR references for shared/tests/frames.rs (run once; outputs are committed).

The sources are synthetic so the test can rebuild them without storing them: the same
formula is spelled in frames.rs (`synthetic`). A ramp that wraps (hard edges), an XOR
texture (high frequency) and a checkerboard (sharp edges at odd phase) exercise the
filter's support, edge clamping and rounding.

    python3 shared/tests/data/gen_frames.py   # Pillow 13
"""

import os

import numpy as np
from PIL import Image

CASES = [
    # name, source width, source height, output side
    ("up_37x23", 37, 23, 224),  # upscaling on both axes
    ("down_300x500", 300, 500, 224),  # portrait, unequal downscale factors
    ("mixed_300x40", 300, 40, 96),  # down horizontally, up vertically
]


def synthetic(w, h):
    a = np.zeros((h, w, 3), np.uint8)
    for y in range(h):
        for x in range(w):
            a[y, x, 0] = (x * 255 // max(w - 1, 1) + y * 3) % 256
            a[y, x, 1] = ((x * 31 + y * 17) ^ (x * y)) & 255
            a[y, x, 2] = 255 if (x // 5 + y // 3) % 2 == 0 else 20
    return a


here = os.path.dirname(os.path.abspath(__file__))
for name, w, h, size in CASES:
    img = Image.fromarray(synthetic(w, h), "RGB")
    out = np.asarray(img.resize((size, size), Image.BILINEAR))
    np.save(os.path.join(here, f"{name}_{size}_pillow_bilinear.npy"), out)
    print(name, out.shape, out.dtype)
