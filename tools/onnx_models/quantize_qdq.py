#!/usr/bin/env python3
"""Quantizes the EfficientNet-Lite0 ONNX model with ONNX Runtime's post-training
quantizer (onnxruntime.quantization.quantize_static: QDQ format, MinMax calibration on
the five images of examples/data/calibration, int8 weights per output channel, uint8
activations), writing examples/data/efficientnet_lite0/efficientnet_lite0_qdq.onnx and
efficientnet_lite0_qop.onnx: realistic quantized inputs for the importer, whose integer kernels run it with the file's own
scales and zero points (tests/onnx_models.rs compares with ONNX Runtime's outputs on the
same file, recorded by reference.py).

    python3 -m pip install onnx onnxruntime pillow numpy
    python3 tools/onnx_models/quantize_qdq.py
"""
import os

import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DIR = os.path.join(ROOT, "examples/data/efficientnet_lite0")


def prep(path):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    rgb = np.asarray(im.resize((224, 224), Image.BILINEAR), dtype=np.float32)
    return ((rgb - 127.0) / 128.0).transpose(2, 0, 1)[None]


class Images(CalibrationDataReader):
    def __init__(self):
        cal = os.path.join(ROOT, "examples/data/calibration")
        self.it = iter([{"input": prep(os.path.join(cal, f))} for f in sorted(os.listdir(cal))])

    def get_next(self):
        return next(self.it, None)


def main():
    # The same quantization in both of ONNX Runtime's formats: QDQ pairs around float
    # ops, and QOperator nodes (QLinearConv, com.microsoft QLinearAdd, QGemm, ...).
    for fmt, suffix in ((QuantFormat.QDQ, "qdq"), (QuantFormat.QOperator, "qop")):
        out = os.path.join(DIR, f"efficientnet_lite0_{suffix}.onnx")
        quantize_static(os.path.join(DIR, "efficientnet_lite0.onnx"), out, Images(),
                        quant_format=fmt, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        print(f"{out}: {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
