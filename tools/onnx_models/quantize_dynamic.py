#!/usr/bin/env python3
"""Quantizes the EfficientNet-Lite0 ONNX model with ONNX Runtime's dynamic quantizer
(onnxruntime.quantization.quantize_dynamic, its defaults: int8 weights per tensor,
activations quantized on the fly by DynamicQuantizeLinear, ConvInteger/MatMulInteger),
writing examples/data/efficientnet_lite0/efficientnet_lite0_dyn.onnx: the third format
ONNX Runtime writes, which the importer reads as QDQ on the weights and runs as a
dynamic INT8 model (tests/onnx_models.rs compares it with ONNX Runtime's outputs on the
same file, recorded by reference.py).

    python3 -m pip install onnx onnxruntime numpy
    python3 tools/onnx_models/quantize_dynamic.py
"""
import os
import tempfile

import onnx
from onnxruntime.quantization import quantize_dynamic

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DIR = os.path.join(ROOT, "examples/data/efficientnet_lite0")


def main():
    # The float model keeps its weights in a safetensors file beside it (external data);
    # the quantizer wants them inline.
    with tempfile.TemporaryDirectory() as tmp:
        inline = os.path.join(tmp, "efficientnet_lite0.onnx")
        onnx.save(onnx.load(os.path.join(DIR, "efficientnet_lite0.onnx")), inline)
        out = os.path.join(DIR, "efficientnet_lite0_dyn.onnx")
        quantize_dynamic(inline, out)
    print(f"{out}: {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
