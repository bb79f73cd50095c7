"""Random requantization cases for QLinearMatMul and QLinearConv, computed by ONNX's own
reference implementation (onnx.reference), for tests/requant.rs.

Each case is one single-node model run by onnx.reference.ReferenceEvaluator; the inputs
and ONNX's output codes are written as JSON lines to tests/data/requant/. The cases
cover odd shapes, int8 and uint8 (each operand independently), per-tensor and
per-channel weight scales, zero points across the range, scales from 1e-6 to 1e3,
outputs spread over the code range, and constructed ties (multipliers that are powers
of two, so accumulators land exactly on .5).

    python tools/requant/requant_cases.py [--cases 1000] [--seed 1]

Needs: onnx (1.23 used), numpy.
"""

import argparse
import json
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "requant"
TYPES = {"int8": (np.int8, TensorProto.INT8), "uint8": (np.uint8, TensorProto.UINT8)}


def codes(rng, dtype, shape):
    info = np.iinfo(TYPES[dtype][0])
    v = rng.integers(info.min, info.max + 1, size=shape)
    # Some cases at the extremes of the range.
    if rng.random() < 0.2:
        v = np.where(rng.random(shape) < 0.5, info.min, info.max)
    return v.astype(TYPES[dtype][0])


def zero_point(rng, dtype, n=None):
    info = np.iinfo(TYPES[dtype][0])
    size = () if n is None else (n,)
    r = rng.random()
    if r < 0.15:
        v = np.full(size, info.min)
    elif r < 0.3:
        v = np.full(size, info.max)
    elif r < 0.45:
        v = np.zeros(size)
    else:
        v = rng.integers(info.min, info.max + 1, size=size)
    return np.asarray(v).astype(TYPES[dtype][0])


def log_uniform(rng, lo, hi, size=None):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size=size)).astype(np.float32)


def scales(rng, acc_rms, n_w):
    """(sa, sw [n_w or scalar], sy) in one of three modes: fully random in [1e-6, 1e3],
    outputs spread over the code range, or powers of two (exact ties)."""
    mode = rng.choice(["random", "spread", "ties"], p=[0.35, 0.45, 0.2])
    if mode == "random":
        sa = log_uniform(rng, 1e-6, 1e3)
        sw = log_uniform(rng, 1e-6, 1e3, size=n_w)
        sy = log_uniform(rng, 1e-6, 1e3)
    elif mode == "spread":
        sa = log_uniform(rng, 1e-4, 1.0)
        sw = log_uniform(rng, 1e-4, 1.0, size=n_w)
        target = max(acc_rms, 1.0) / rng.uniform(10, 120)
        sy = np.float32(sa * np.max(np.atleast_1d(sw)) * target)
    else:
        sa = np.float32(2.0 ** rng.integers(-8, 3))
        sw = (2.0 ** rng.integers(-8, 3, size=n_w)).astype(np.float32)
        if n_w is None:
            sw = np.float32(sw)
        sy = np.float32(2.0 ** rng.integers(-3, 8))
    return np.float32(sa), sw, np.float32(sy), str(mode)


def run(node, inputs):
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(k, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    (y,) = ReferenceEvaluator(model).run(None, inputs)
    return y


def matmul_case(rng):
    m, k, n = int(rng.integers(1, 10)), int(rng.integers(1, 48)), int(rng.integers(1, 10))
    if rng.random() < 0.15:
        k = int(rng.integers(100, 400))
    ta, tb, ty = (str(rng.choice(["int8", "uint8"])) for _ in range(3))
    per_col = rng.random() < 0.5
    a, b = codes(rng, ta, (m, k)), codes(rng, tb, (k, n))
    za = zero_point(rng, ta)
    zb = zero_point(rng, tb, n if per_col else None)
    zy = zero_point(rng, ty)
    acc = (a.astype(np.int64) - za) @ (b.astype(np.int64) - zb)
    sa, sb, sy, mode = scales(rng, float(np.sqrt(np.mean(acc.astype(np.float64) ** 2))), n if per_col else None)
    inputs = {"a": a, "a_scale": np.asarray(sa), "a_zero_point": np.asarray(za),
              "b": b, "b_scale": np.asarray(sb), "b_zero_point": np.asarray(zb),
              "y_scale": np.asarray(sy), "y_zero_point": np.asarray(zy)}
    node = helper.make_node("QLinearMatMul", list(inputs), ["y"])
    y = run(node, inputs)
    return {
        "m": m, "k": k, "n": n, "a_type": ta, "b_type": tb, "y_type": ty, "mode": mode,
        "a": a.ravel().tolist(), "a_scale": float(sa), "a_zero": int(za),
        "b": b.ravel().tolist(), "b_scale": np.atleast_1d(sb).astype(float).tolist(),
        "b_zero": np.atleast_1d(zb).astype(int).tolist(),
        "y_scale": float(sy), "y_zero": int(zy), "y": y.ravel().astype(int).tolist(),
    }


def conv_case(rng):
    while True:
        groups = int(rng.choice([1, 1, 2, 3]))
        depthwise = rng.random() < 0.25
        c = int(rng.integers(1, 5)) * groups
        if depthwise:
            groups = c
        oc = groups * int(rng.integers(1, 4))
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        h, w = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        sh, sw_ = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        dh, dw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        pads = [int(p) for p in rng.integers(0, 2, size=4)]
        oh = (h + pads[0] + pads[2] - dh * (kh - 1) - 1) // sh + 1
        ow = (w + pads[1] + pads[3] - dw * (kw - 1) - 1) // sw_ + 1
        if oh >= 1 and ow >= 1:
            break
    tx, tw, ty = (str(rng.choice(["int8", "uint8"])) for _ in range(3))
    per_ch = rng.random() < 0.5
    x = codes(rng, tx, (1, c, h, w))
    wt = codes(rng, tw, (oc, c // groups, kh, kw))
    zx = zero_point(rng, tx)
    # ONNX's reference subtracts a per-channel weight zero point; ORT requires 0 for int8.
    zw = zero_point(rng, tw, oc if per_ch else None)
    zy = zero_point(rng, ty)
    taps = (c // groups) * kh * kw
    rms = 70.0 * np.sqrt(taps) * 70.0
    sx, sww, sy, mode = scales(rng, rms, oc if per_ch else None)
    inputs = {"x": x, "x_scale": np.asarray(sx), "x_zero_point": np.asarray(zx),
              "w": wt, "w_scale": np.asarray(sww), "w_zero_point": np.asarray(zw),
              "y_scale": np.asarray(sy), "y_zero_point": np.asarray(zy)}
    bias = None
    if rng.random() < 0.6:
        bias = rng.integers(-(1 << 14), 1 << 14, size=oc).astype(np.int32)
        inputs["B"] = bias
    node = helper.make_node(
        "QLinearConv", list(inputs), ["y"], group=groups, kernel_shape=[kh, kw],
        strides=[sh, sw_], dilations=[dh, dw], pads=pads)
    y = run(node, inputs)
    return {
        "c": c, "h": h, "w": w, "oc": oc, "kernel": [kh, kw], "groups": groups,
        "strides": [sh, sw_], "dilations": [dh, dw], "pads": pads,
        "x_type": tx, "w_type": tw, "y_type": ty, "mode": mode,
        "x": x.ravel().tolist(), "x_scale": float(sx), "x_zero": int(zx),
        "weight": wt.ravel().tolist(), "w_scale": np.atleast_1d(sww).astype(float).tolist(),
        "w_zero": np.atleast_1d(zw).astype(int).tolist(),
        "bias": None if bias is None else bias.tolist(),
        "y_scale": float(sy), "y_zero": int(zy), "y_shape": list(y.shape),
        "y": y.ravel().astype(int).tolist(),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in [("qlinear_matmul", matmul_case), ("qlinear_conv", conv_case)]:
        path = OUT / f"{name}.jsonl"
        with open(path, "w") as f:
            for _ in range(args.cases):
                f.write(json.dumps(make(rng), separators=(",", ":")) + "\n")
        print(f"wrote {args.cases} cases to {path}")


if __name__ == "__main__":
    main()
