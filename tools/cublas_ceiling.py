#!/usr/bin/env python3
"""cuBLAS through PyTorch on the same linear shapes as `wgpu-quant bench` (gemm and
models suites): the ceiling to print beside our kernels on an NVIDIA GPU.

For each shape MxNxK (x [M, K] times weights [N, K]^T) it times FP32 (TF32 off, as our
FP32 kernels do plain f32 arithmetic), FP16 and INT8 (`torch._int_mm`, int8 x int8 ->
int32, which needs M > 16 and K, N multiples of 8; smaller M is reported as n/a). The time
is the median of 20 runs measured with CUDA events, after 5 warm-ups. Each result is
checked against an f64 (integers: exact int64) product on a sample of rows first.

    python3 tools/cublas_ceiling.py [--json out.json] [--shapes 256x256x256 ...]
"""

import argparse
import json
import sys

import torch

DEFAULT = ["256x256x256", "512x512x512", "1024x1024x1024", "2048x2048x2048", "4096x4096x4096",
           "128x768x768", "128x3072x768", "128x768x3072", "1x4096x4096", "1x11008x4096"]


def timed(fn, runs=20, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json")
    ap.add_argument("--shapes", nargs="*", default=DEFAULT)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    g = torch.Generator(device="cpu").manual_seed(0)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    print()
    print("| shape | dtype | median ms | TOP/s | vs FP32 |")
    print("|---|---|---:|---:|---:|")
    records = []
    for s in args.shapes:
        m, n, k = (int(v) for v in s.split("x"))
        ops = 2.0 * m * n * k
        xf = torch.rand(m, k, generator=g) * 2 - 1
        wf = torch.rand(n, k, generator=g) * 2 - 1
        xi = torch.randint(-128, 128, (m, k), generator=g, dtype=torch.int8)
        wi = torch.randint(-128, 128, (n, k), generator=g, dtype=torch.int8)
        rows = list(range(0, m, max(1, m // 8)))
        base = None
        for dtype in ["fp32", "fp16", "int8"]:
            if dtype == "int8":
                if m <= 16 or k % 8 or n % 8:
                    print(f"| {s} | int8 | n/a (torch._int_mm needs M > 16) | | |")
                    continue
                x, wt = xi.to(dev), wi.to(dev).t()
                fn = lambda: torch._int_mm(x, wt)  # noqa: E731
                got = fn()[rows].cpu().to(torch.int64)
                want = xi[rows].to(torch.int64) @ wi.to(torch.int64).t()
                ok = bool(torch.equal(got, want))
            else:
                t = torch.float32 if dtype == "fp32" else torch.float16
                x, wt = xf.to(dev, t), wf.to(dev, t).t()
                fn = lambda: x @ wt  # noqa: E731
                got = fn()[rows].cpu().double()
                want = x[rows].cpu().double() @ wt.cpu().double()
                err = (got - want).abs().max().item() / max(want.abs().max().item(), 1e-30)
                ok = err < (1e-5 if dtype == "fp32" else 5e-3)
            if not ok:
                sys.exit(f"{s} {dtype}: result does not match the reference")
            ms = timed(fn)
            if dtype == "fp32":
                base = ms
            vs = base / ms
            print(f"| {s} | {dtype} | {ms:.4f} | {ops / ms / 1e9:.2f} | {vs:.2f}x |")
            records.append({"shape": {"m": m, "n": n, "k": k}, "dtype": dtype, "median_ms": ms,
                            "tops": ops / ms / 1e9, "vs_fp32": vs, "verified": True})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
