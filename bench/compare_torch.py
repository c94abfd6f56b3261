#!/usr/bin/env python3
"""Times PyTorch and xconv on the same shape suite in the same run and prints per-shape ratios.

    /usr/bin/python3 bench/compare_torch.py --bench build/bench/bench_conv \
        [--threads 1] [--dtype float] [--pass forward] [--reps 7] [--markdown out.md] [--svg out.svg]

ratio = torch_time / xconv_time (> 1 means xconv is faster); the geometric mean is over the suite.
Both sides use the same number of threads: torch.set_num_threads(n) and OMP_NUM_THREADS=n.
"""
import argparse
import math
import os
import statistics
import subprocess
import sys
import time

FMA_CEILING_PER_CORE = {"float": 116.0, "double": 58.0}  # GFLOP/s on the reference machine (see docs)


def read_suite(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            p = line.split()
            name, kind = p[0], p[1]
            v = [int(x) for x in p[2:]]
            keys = "n c_in h w c_out kh kw sh sw ph pw dh dw groups oph opw".split()
            r = dict(zip(keys, v))
            r["name"], r["kind"] = name, kind
            rows.append(r)
    return rows


def torch_time(r, dtype, passname, reps):
    import torch
    import torch.nn.functional as F

    dt = torch.float32 if dtype == "float" else torch.float64
    g = torch.Generator().manual_seed(42)
    x = torch.rand(r["n"], r["c_in"], r["h"], r["w"], dtype=dt, generator=g) * 2 - 1
    b = torch.rand(r["c_out"], dtype=dt, generator=g) * 2 - 1
    backward = passname == "forward_backward"
    if r["kind"] == "conv":
        w = torch.rand(r["c_out"], r["c_in"] // r["groups"], r["kh"], r["kw"], dtype=dt, generator=g) * 2 - 1

        def op(x, w, b):
            return F.conv2d(x, w, b, (r["sh"], r["sw"]), (r["ph"], r["pw"]), (r["dh"], r["dw"]), r["groups"])
    else:
        w = torch.rand(r["c_in"], r["c_out"] // r["groups"], r["kh"], r["kw"], dtype=dt, generator=g) * 2 - 1

        def op(x, w, b):
            return F.conv_transpose2d(x, w, b, (r["sh"], r["sw"]), (r["ph"], r["pw"]), (r["oph"], r["opw"]),
                                      r["groups"], (r["dh"], r["dw"]))
    if backward:
        x.requires_grad_(True)
        w.requires_grad_(True)
        b.requires_grad_(True)
    with torch.no_grad():
        gy = torch.rand_like(op(x, w, b))

    def once():
        if backward:
            y = op(x, w, b)
            torch.autograd.grad(y, (x, w, b), gy)
        else:
            with torch.no_grad():
                op(x, w, b)

    once()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    y = op(x, w, b)
    if r["kind"] == "conv":
        flops = 2.0 * y.numel() * (r["c_in"] // r["groups"]) * r["kh"] * r["kw"]
    else:
        flops = 2.0 * x.numel() * (r["c_out"] // r["groups"]) * r["kh"] * r["kw"]
    return statistics.median(times), flops


def xconv_times(bench, suite, dtype, passname, reps, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    out = subprocess.run([bench, suite, "--dtype", dtype, "--pass", passname, "--reps", str(reps)], env=env,
                         check=True, capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        p = line.split()
        res[p[0]] = (float(p[4]), int(p[3]))
    return res


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--suite", default=os.path.join(here, "suite.txt"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float", choices=["float", "double"])
    ap.add_argument("--pass", dest="passname", default="forward", choices=["forward", "forward_backward"])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--markdown", help="append the table as markdown to this file")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    suite = read_suite(args.suite)
    xc = xconv_times(args.bench, args.suite, args.dtype, args.passname, args.reps, args.threads)
    lines = []
    title = f"{args.dtype}, {args.passname}, {args.threads} thread(s)"
    lines.append(f"| shape | torch ms | xconv ms | torch GFLOP/s | xconv GFLOP/s | ratio |")
    lines.append("|---|---|---|---|---|---|")
    ratios = []
    mult = 3.0 if args.passname == "forward_backward" else 1.0
    for r in suite:
        tt, flops = torch_time(r, args.dtype, args.passname, args.reps)
        xt, xthreads = xc[r["name"]]
        if xthreads != args.threads:
            print(f"warning: xconv ran {xthreads} thread(s), torch {args.threads}", file=sys.stderr)
        ratio = tt / xt
        ratios.append(ratio)
        lines.append(f"| {r['name']} | {tt*1e3:.3f} | {xt*1e3:.3f} | {mult*flops/tt*1e-9:.1f} | "
                     f"{mult*flops/xt*1e-9:.1f} | {ratio:.2f} |")
    geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    lines.append(f"| **geometric mean** | | | | | **{geo:.2f}** |")
    text = f"### {title}\n\n" + "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
