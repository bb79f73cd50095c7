#!/usr/bin/env python3
"""Records ONNX Runtime's outputs on the models the importer is checked against, for
tests/onnx_models.rs (ONNX Runtime runs here, never in the Rust tests).

Inputs are written as raw RGB u8 bytes at the model's resolution
(tests/data/onnx_models/inputs/NAME.rgb), so both sides start from the same pixels: the
bundled photos (examples/data/photos) center-cropped to a square and resized to 224x224
with Pillow's bilinear filter, and text lines drawn with Pillow's default font (upright
and turned 180 degrees) at 48x192, and text lines at 48x320 for the recognizer (whose
greedy CTC reading, with the dictionary in the model's metadata, goes in the manifest). For each model, ONNX Runtime's CPU output on
(x - mean) / std in NCHW is written as little-endian f32
(tests/data/onnx_models/MODEL/NAME.f32), with a manifest holding the sha256 of every
file read, the preprocessing and the versions used.

    python3 -m pip install onnx onnxruntime pillow numpy
    python3 tools/onnx_models/reference.py
"""
import hashlib
import json
import os

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests/data/onnx_models")
PHOTOS = ["chelsea.png", "coffee.png", "rocket.jpg"]
TEXT = {"text_upright": "Hello 2026", "text_flipped": "Hello 2026"}
PAGE = ["wgpu-quant", "INT8 on any GPU", "0123456789"]
# Text lines for the recognizer, drawn at 320x48.
REC_TEXT = {"rec_line_a": "INT8 on any GPU", "rec_line_b": "wgpu-quant 2026"}
# model: (file, inputs, mean, std) with (x - mean) / std on 0..255 pixels.
MODELS = {
    "efficientnet_lite0": ("examples/data/efficientnet_lite0/efficientnet_lite0.onnx",
                           ["chelsea", "coffee", "rocket"], 127.0, 128.0),
    "efficientnet_lite0_qdq": ("examples/data/efficientnet_lite0/efficientnet_lite0_qdq.onnx",
                               ["chelsea", "coffee", "rocket"], 127.0, 128.0),
    "efficientnet_lite0_qop": ("examples/data/efficientnet_lite0/efficientnet_lite0_qop.onnx",
                               ["chelsea", "coffee", "rocket"], 127.0, 128.0),
    "efficientnet_lite0_dyn": ("examples/data/efficientnet_lite0/efficientnet_lite0_dyn.onnx",
                               ["chelsea", "coffee", "rocket"], 127.0, 128.0),
    "ppocr_cls": ("examples/data/ppocr/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                  ["text_upright", "text_flipped"], 127.5, 127.5),
    # ImageNet's mean and standard deviation per channel, as PaddleOCR's detector takes.
    "ppocr_det": ("examples/data/ppocr/ch_PP-OCRv4_det_infer.onnx", ["text_page"],
                  [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
    "ppocr_v5_det": ("examples/data/ppocr/PP-OCRv5_mobile_det.onnx", ["text_page"],
                     [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
    # ONNX Runtime's own static INT8 of the two (tools/onnx_models/quantize_ppocr.py).
    "ppocr_cls_qdq": ("examples/data/ppocr/ch_ppocr_mobile_v2.0_cls_qdq.onnx",
                      ["text_upright", "text_flipped"], 127.5, 127.5),
    "ppocr_det_qdq": ("examples/data/ppocr/ch_PP-OCRv4_det_qdq.onnx", ["text_page"],
                      [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
    "ppocr_rec": ("examples/data/ppocr/ch_PP-OCRv4_rec_infer.onnx", list(REC_TEXT),
                  127.5, 127.5),
    "ppocr_rec_qdq": ("examples/data/ppocr/ch_PP-OCRv4_rec_qdq.onnx", list(REC_TEXT),
                      127.5, 127.5),
}


def ctc_text(model_path, probs):
    """Greedy CTC decoding of [1, T, classes] with the dictionary in the file's metadata
    (class 0 the blank, class k the dictionary's line k - 1; PaddleOCR appends a space as
    the last class)."""
    import onnx
    meta = {p.key: p.value for p in onnx.load(model_path, load_external_data=False).metadata_props}
    chars = meta["character"].split("\n") + [" "]
    best = probs[0].argmax(-1)
    out, prev = [], 0
    for k in best.tolist():
        if k != prev and k != 0:
            out.append(chars[k - 1])
        prev = k
    return "".join(out), best.tolist()


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def pixels(path):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(im.resize((224, 224), Image.BILINEAR), dtype=np.uint8)


def text_line(text, flip):
    im = Image.new("RGB", (192, 48), "white")
    ImageDraw.Draw(im).text((8, 6), text, fill="black", font=ImageFont.load_default(size=30))
    if flip:
        im = im.rotate(180)
    return np.asarray(im, dtype=np.uint8)


def rec_line(text):
    im = Image.new("RGB", (320, 48), "white")
    ImageDraw.Draw(im).text((10, 8), text, fill="black", font=ImageFont.load_default(size=28))
    return np.asarray(im, dtype=np.uint8)


def text_page():
    im = Image.new("RGB", (256, 256), (250, 248, 240))
    d = ImageDraw.Draw(im)
    for i, line in enumerate(PAGE):
        d.text((12, 30 + 70 * i), line, fill=(20, 20, 60), font=ImageFont.load_default(size=28))
    return np.asarray(im, dtype=np.uint8)


# Small Resize models (ORT's outputs are the reference for the importer's modes):
# name: (opset, mode, coordinate mode, scales or None, sizes or None).
RESIZE = {
    "linear_half_pixel_x2": (13, "linear", "half_pixel", [1, 1, 2, 2], None),
    "linear_align_corners_sizes": (13, "linear", "align_corners", None, [1, 3, 9, 4]),
    "linear_asymmetric_mixed": (13, "linear", "asymmetric", [1, 1, 0.5, 1.5], None),
    "linear_pytorch_half_pixel_1row": (13, "linear", "pytorch_half_pixel", None, [1, 3, 1, 13]),
    "nearest_half_pixel_x3x2": (13, "nearest", "half_pixel", [1, 1, 3, 2], None),
    "linear_opset10": (10, "linear", None, [1, 1, 2, 3], None),
}


def resize_models(manifest):
    import onnx
    from onnx import TensorProto, helper
    out = os.path.join(OUT, "resize")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (1, 3, 5, 7)).astype("<f4")
    x.tofile(os.path.join(out, "input.f32"))
    for name, (opset, mode, coords, scales, sizes) in RESIZE.items():
        attrs = {"mode": mode}
        inits = []
        if opset < 11:
            inputs = ["x", "scales"]
            inits.append(helper.make_tensor("scales", TensorProto.FLOAT, [4], scales))
        else:
            attrs["coordinate_transformation_mode"] = coords
            inputs = ["x", "", "scales" if scales else "", "sizes" if sizes else ""]
            if scales:
                inits.append(helper.make_tensor("scales", TensorProto.FLOAT, [4], scales))
            if sizes:
                inits.append(helper.make_tensor("sizes", TensorProto.INT64, [4], sizes))
        node = helper.make_node("Resize", inputs, ["y"], **attrs)
        g = helper.make_graph([node], name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 7
        path = os.path.join(out, name + ".onnx")
        onnx.save(m, path)
        y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        y.astype("<f4").tofile(os.path.join(out, name + ".f32"))
        manifest["resize"][name] = {"shape": list(y.shape), "sha256": sha(path)}


def main():
    os.makedirs(os.path.join(OUT, "inputs"), exist_ok=True)
    manifest = {"onnxruntime": ort.__version__, "pillow": Image.__version__, "inputs": {}, "models": {},
                "resize": {}}
    resize_models(manifest)
    inputs = {}
    for p in PHOTOS:
        src = os.path.join(ROOT, "examples/data/photos", p)
        name = os.path.splitext(p)[0]
        inputs[name] = pixels(src)
        manifest["inputs"][name] = {"photo": p, "photo_sha256": sha(src)}
    # The calibration images, as tools/onnx_models/quantize_qdq.py feeds them to ONNX
    # Runtime's quantizer, so that our own post-training quantization sees the same.
    for p in sorted(os.listdir(os.path.join(ROOT, "examples/data/calibration"))):
        src = os.path.join(ROOT, "examples/data/calibration", p)
        name = "cal_" + os.path.splitext(p)[0]
        inputs[name] = pixels(src)
        manifest["inputs"][name] = {"photo": "calibration/" + p, "photo_sha256": sha(src)}
    for name, text in TEXT.items():
        inputs[name] = text_line(text, name.endswith("flipped"))
        manifest["inputs"][name] = {"text": text, "turned_180": name.endswith("flipped")}
    for name, text in REC_TEXT.items():
        inputs[name] = rec_line(text)
        manifest["inputs"][name] = {"text": text}
    inputs["text_page"] = text_page()
    manifest["inputs"]["text_page"] = {"text": PAGE}
    for name, rgb in inputs.items():
        dst = os.path.join(OUT, "inputs", name + ".rgb")
        rgb.tofile(dst)
        manifest["inputs"][name].update({"shape_hwc": list(rgb.shape), "sha256": sha(dst)})
    for model, (rel, names, mean, std) in MODELS.items():
        path = os.path.join(ROOT, rel)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        iname = sess.get_inputs()[0].name
        os.makedirs(os.path.join(OUT, model), exist_ok=True)
        entry = {"file": rel, "sha256": sha(path), "mean": mean, "std": std, "outputs": {}}
        for name in names:
            rgb = inputs[name]
            m = np.asarray(mean, dtype=np.float32)
            sd = np.asarray(std, dtype=np.float32)
            x = ((rgb.astype(np.float32) - m) / sd).transpose(2, 0, 1)[None]
            y = sess.run(None, {iname: x})[0].astype("<f4")
            y.tofile(os.path.join(OUT, model, name + ".f32"))
            top = np.argsort(-y.ravel(), kind="stable")[:5].tolist()
            entry["outputs"][name] = {"shape": list(y.shape), "top5": top}
            if model.startswith("ppocr_rec"):
                # The dictionary is in the float model's metadata.
                text, best = ctc_text(os.path.join(ROOT, MODELS["ppocr_rec"][0]), y)
                entry["outputs"][name].update({"text": text, "argmax": best})
        manifest["models"][model] = entry
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
