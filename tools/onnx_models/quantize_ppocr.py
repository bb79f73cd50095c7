#!/usr/bin/env python3
"""Quantizes PaddleOCR's orientation classifier, PP-OCRv4 text detector and recognizer with ONNX
Runtime's post-training quantizer, the way its documentation asks: first
`quant_pre_process` (which folds each BatchNorm into its convolution; symbolic shape
inference is skipped, it fails on these paddle2onnx graphs), then the opset raised to
13 (per-channel `DequantizeLinear` needs its `axis`, which opsets 11 and 12 lack: ORT
refuses to load per-channel files of those opsets), then `quantize_static` (QDQ,
MinMax, int8 weights per output channel, uint8 activations) calibrated on the inputs
that tools/onnx_models/reference.py records (the two text lines for the classifier,
the text page for the detector, the two recognizer lines for the recognizer). Writes examples/data/ppocr/*_qdq.onnx, which
tests/onnx_models.rs runs with the files' own scales against ORT's outputs on the same
files (recorded by reference.py; run this first).

    python3 -m pip install onnx onnxruntime pillow numpy
    python3 tools/onnx_models/quantize_ppocr.py [cls] [det] [rec]   (all three by default)
"""
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DIR = os.path.join(ROOT, "examples/data/ppocr")
INPUTS = os.path.join(ROOT, "tests/data/onnx_models/inputs")
# model: (float file, quantized file, calibration inputs, (h, w), mean, std)
MODELS = {
    "cls": ("ch_ppocr_mobile_v2.0_cls_infer.onnx", "ch_ppocr_mobile_v2.0_cls_qdq.onnx",
            ["text_upright", "text_flipped"], (48, 192), 127.5, 127.5),
    "det": ("ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_det_qdq.onnx", ["text_page"],
            (256, 256), [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
    "rec": ("ch_PP-OCRv4_rec_infer.onnx", "ch_PP-OCRv4_rec_qdq.onnx",
            ["rec_line_a", "rec_line_b"], (48, 320), 127.5, 127.5),
}


def nchw(name, hw, mean, std):
    rgb = np.fromfile(os.path.join(INPUTS, name + ".rgb"), dtype=np.uint8).reshape(*hw, 3)
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return ((rgb.astype(np.float32) - m) / s).transpose(2, 0, 1)[None].astype(np.float32)


class Inputs(CalibrationDataReader):
    def __init__(self, name, xs):
        self.it = iter([{name: x} for x in xs])

    def get_next(self):
        return next(self.it, None)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for key in sys.argv[1:] or list(MODELS):
            src, dst, names, hw, mean, std = MODELS[key]
            pre = os.path.join(tmp, key + "_pre.onnx")
            quant_pre_process(os.path.join(DIR, src), pre, skip_symbolic_shape=True)
            m13 = version_converter.convert_version(onnx.load(pre), 13)
            pre13 = os.path.join(tmp, key + "_pre13.onnx")
            onnx.save(m13, pre13)
            iname = m13.graph.input[0].name
            xs = [nchw(n, hw, mean, std) for n in names]
            out = os.path.join(DIR, dst)
            quantize_static(pre13, out, Inputs(iname, xs), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
            print(f"{out}: {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
