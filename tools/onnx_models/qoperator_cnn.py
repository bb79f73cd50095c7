#!/usr/bin/env python3
"""Writes a small CNN whose QOperator form holds the operators ONNX Runtime's quantizer
emits for common classifier blocks, and ONNX Runtime's outputs on it, for
tests/onnx_models.rs (`qoperator_operators_match_onnx_runtime`):

- qop_cnn.onnx: the float model (random weights, seeded): Conv/Relu, a zero Pad before a
  MaxPool, a strided Conv, LeakyRelu, a nearest Resize, Concat, AveragePool, Sigmoid and
  Mul (a swish), Split, Add, GlobalAveragePool, Flatten, Gemm;
- qop_cnn_qop.onnx and qop_cnn_qdq.onnx: quantize_static on 16 seeded random inputs
  (MinMax, uint8 activations, int8 weights per channel), QOperator format (QLinearConv,
  com.microsoft QLinearLeakyRelu/QLinearConcat/QLinearAveragePool/QLinearSigmoid/
  QLinearMul/QLinearAdd/QLinearGlobalAveragePool/QGemm, and Pad, MaxPool, Resize,
  Split applied to the uint8 codes directly) and QDQ format;
- input.f32: 4 seeded inputs [4, 3, 16, 16] (little-endian f32), run one at a time;
- float.f32, qop.f32, qdq.f32: ONNX Runtime's (CPU) outputs [4, 10] on the float,
  QOperator and QDQ files; manifest.json: versions and the sha256 of every file.

The two quantized files are not the same quantization: ORT's QDQ format gives an
AveragePool's output its input's scale, its QOperator format a calibrated one.

    python3 -m pip install onnx onnxruntime numpy
    python3 tools/onnx_models/qoperator_cnn.py
"""
import hashlib
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests/data/onnx_models/qop_cnn")


def float_model():
    rng = np.random.default_rng(7)

    def w(name, *shape, s=0.3):
        return nh.from_array((rng.standard_normal(shape) * s).astype(np.float32), name)

    inits = [
        w("w1", 8, 3, 3, 3), w("b1", 8, s=0.1),
        w("w2", 8, 8, 1, 1), w("b2", 8, s=0.1),
        w("w3", 8, 8, 3, 3), w("b3", 8, s=0.1),
        w("w4", 16, 16, 1, 1), w("b4", 16, s=0.1),
        w("fc", 10, 8), w("fcb", 10, s=0.1),
        nh.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
        nh.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        nh.from_array(np.array([8, 8], np.int64), "split"),
    ]
    nodes = [
        h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c1"], ["r1"]),
        h.make_node("Pad", ["r1", "pads"], ["p0"], mode="constant"),
        h.make_node("MaxPool", ["p0"], ["p1"], kernel_shape=[3, 3], strides=[2, 2]),
        h.make_node("Conv", ["p1", "w2", "b2"], ["c2"]),
        h.make_node("Relu", ["c2"], ["r2"]),
        h.make_node("Conv", ["p1", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1], strides=[2, 2]),
        h.make_node("LeakyRelu", ["c3"], ["r3"], alpha=0.1),
        h.make_node("Resize", ["r3", "", "scales"], ["u3"], mode="nearest"),
        h.make_node("Concat", ["r2", "u3"], ["cat"], axis=1),
        h.make_node("AveragePool", ["cat"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        h.make_node("Conv", ["ap", "w4", "b4"], ["c4"]),
        h.make_node("Sigmoid", ["c4"], ["s4"]),
        h.make_node("Mul", ["c4", "s4"], ["m4"]),
        h.make_node("Split", ["m4", "split"], ["h1", "h2"], axis=1),
        h.make_node("Add", ["h1", "h2"], ["a5"]),
        h.make_node("GlobalAveragePool", ["a5"], ["g"]),
        h.make_node("Flatten", ["g"], ["f"]),
        h.make_node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1),
    ]
    g = h.make_graph(nodes, "qop_cnn", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 16, 16])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 10])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


class Random(CalibrationDataReader):
    def __init__(self):
        rng = np.random.default_rng(11)
        self.it = iter([{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
                        for _ in range(16)])

    def get_next(self):
        return next(self.it, None)


def run(path, xs):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"x": x[None]})[0] for x in xs])


def main():
    os.makedirs(OUT, exist_ok=True)
    fp = os.path.join(OUT, "qop_cnn.onnx")
    onnx.save(float_model(), fp)
    for fmt, suffix in ((QuantFormat.QOperator, "qop"), (QuantFormat.QDQ, "qdq")):
        quantize_static(fp, os.path.join(OUT, f"qop_cnn_{suffix}.onnx"), Random(),
                        quant_format=fmt, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    xs = np.random.default_rng(5).standard_normal((4, 3, 16, 16)).astype(np.float32)
    xs.tofile(os.path.join(OUT, "input.f32"))
    run(fp, xs).astype("<f4").tofile(os.path.join(OUT, "float.f32"))
    for suffix in ("qop", "qdq"):
        y = run(os.path.join(OUT, f"qop_cnn_{suffix}.onnx"), xs)
        y.astype("<f4").tofile(os.path.join(OUT, f"{suffix}.f32"))
    q = onnx.load(os.path.join(OUT, "qop_cnn_qop.onnx"))
    files = sorted(f for f in os.listdir(OUT) if f != "manifest.json")
    manifest = {
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "qop_nodes": [f"{n.domain + ':' if n.domain else ''}{n.op_type}" for n in q.graph.node],
        "sha256": {f: hashlib.sha256(open(os.path.join(OUT, f), "rb").read()).hexdigest()
                   for f in files},
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(json.dumps(manifest["qop_nodes"]))


if __name__ == "__main__":
    main()
