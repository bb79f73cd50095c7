#!/usr/bin/env python3
"""Records ONNX Runtime's outputs on the models the importer is checked against, for
tests/onnx_models.rs (ONNX Runtime runs here, never in the Rust tests).

For each bundled photo (examples/data/photos) it writes the network input as raw bytes,
224x224 RGB u8 after a center crop to a square and a bilinear resize with Pillow
(tests/data/onnx_models/inputs/NAME.rgb), so both sides start from the same pixels; then,
for each model, ONNX Runtime's CPU output on (x - 127) / 128 in NCHW, as little-endian
f32 (tests/data/onnx_models/MODEL/NAME.f32), and a manifest with the sha256 of every
file read and the versions used.

    python3 -m pip install onnx onnxruntime pillow numpy
    python3 tools/onnx_models/reference.py
"""
import hashlib
import json
import os

import numpy as np
import onnxruntime as ort
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests/data/onnx_models")
PHOTOS = ["chelsea.png", "coffee.png", "rocket.jpg"]
MODELS = {
    "efficientnet_lite0": "examples/data/efficientnet_lite0/efficientnet_lite0.onnx",
}


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def pixels(path):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(im.resize((224, 224), Image.BILINEAR), dtype=np.uint8)


def main():
    os.makedirs(os.path.join(OUT, "inputs"), exist_ok=True)
    manifest = {"onnxruntime": ort.__version__, "inputs": {}, "models": {}}
    inputs = {}
    for p in PHOTOS:
        src = os.path.join(ROOT, "examples/data/photos", p)
        name = os.path.splitext(p)[0]
        rgb = pixels(src)
        dst = os.path.join(OUT, "inputs", name + ".rgb")
        rgb.tofile(dst)
        manifest["inputs"][name] = {"photo": p, "photo_sha256": sha(src), "sha256": sha(dst)}
        inputs[name] = ((rgb.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
    for model, rel in MODELS.items():
        path = os.path.join(ROOT, rel)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        iname = sess.get_inputs()[0].name
        os.makedirs(os.path.join(OUT, model), exist_ok=True)
        entry = {"file": rel, "sha256": sha(path), "outputs": {}}
        for name, x in inputs.items():
            y = sess.run(None, {iname: x})[0].astype("<f4")
            y.tofile(os.path.join(OUT, model, name + ".f32"))
            top = np.argsort(-y.ravel())[:5].tolist()
            entry["outputs"][name] = {"shape": list(y.shape), "top5": top}
        manifest["models"][model] = entry
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
