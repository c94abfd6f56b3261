#!/usr/bin/env python3
"""Times PyTorch and xconv on the same shape suite in the same run and prints per-shape ratios.

    /usr/bin/python3 bench/compare_torch.py --bench build/bench/bench_conv \\
        [--threads 1,2] [--dtype float,double] [--pass forward,forward_backward] \\
        [--rounds 3] [--reps 5] [--only NAME,...] [--markdown out.md] [--csv out.csv] \\
        [--inprocess build/bench/libbench_conv_inprocess.so]

Every combination of the listed thread counts, element types and passes gives one table.
ratio = torch_time / xconv_time (> 1 means xconv is faster); the geometric mean is over the shapes.

Both sides use the same number of threads: OMP_NUM_THREADS=n (the script runs one child process
per thread count, with the variable set before PyTorch starts: some of PyTorch's kernels size
their thread pool from it and ignore torch.set_num_threads) and torch.set_num_threads(n) for
PyTorch, OMP_NUM_THREADS=n for bench_conv (built with XCONV_USE_OPENMP for n > 1). Each table
reports the largest CPU time / wall time ratio PyTorch's process showed while timed, as a check. The measurements are
interleaved so that a change in the machine's load hits both alike: in each of --rounds rounds,
every shape is timed with PyTorch (median of --reps calls after a warm-up) and then with xconv
(bench_conv --only, same; after a pause, since PyTorch's OpenMP threads spin on for a while after
its last call and would take the cores from bench_conv's), and each side's figure is the median
over the rounds. With --inprocess LIB, xconv is timed in the script's own process instead, through
the bench_conv_inprocess library built beside bench_conv (the same code, as a C function): each
shape's two sides then run a few milliseconds apart, PyTorch first in even rounds and second in
odd ones, which on a machine whose speed changes from second to second keeps far more of the
change out of the ratio. The load
average before and after each table is printed with it. Both processes start by allocating and
freeing one 31 MiB block, so that glibc serves the large tensors of the timed calls from its heap
on both sides (otherwise whichever side happens to allocate them with fresh mmaps pays a page
fault per 4 KiB, which dominates the memory-bound shapes).

GFLOP/s count a multiply-add as 2 flops and the forward work once; forward+backward counts it
three times (input, weight and bias gradients: two products of the forward's size, plus the
forward itself). The FMA ceiling is the machine's peak for the thread count: measured in each
round (`bench_conv --peak`: every thread runs a loop of independent fmas at once) and taken as
the median over the rounds, as the times are, since on a shared machine the peak itself moves
from minute to minute; --ceiling gives fixed per-core figures instead.
"""
import argparse
import math
import os
import statistics
import subprocess
import sys
import time



def read_suite(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            p = line.split()
            keys = "n c_in h w c_out kh kw sh sw ph pw dh dw groups oph opw".split()
            r = dict(zip(keys, (int(x) for x in p[2:])))
            r["name"], r["kind"] = p[0], p[1]
            rows.append(r)
    return rows


class TorchCase:
    """One shape, set up once per (dtype, pass): tensors, the op, and its forward FLOPs."""

    def __init__(self, r, dtype, passname):
        import torch
        import torch.nn.functional as F

        dt = torch.float32 if dtype == "float" else torch.float64
        g = torch.Generator().manual_seed(42)
        self.backward = passname == "forward_backward"
        x = torch.rand(r["n"], r["c_in"], r["h"], r["w"], dtype=dt, generator=g) * 2 - 1
        b = torch.rand(r["c_out"], dtype=dt, generator=g) * 2 - 1
        if r["kind"] == "conv":
            w = torch.rand(r["c_out"], r["c_in"] // r["groups"], r["kh"], r["kw"], dtype=dt, generator=g) * 2 - 1

            def op(x, w, b):
                return F.conv2d(x, w, b, (r["sh"], r["sw"]), (r["ph"], r["pw"]), (r["dh"], r["dw"]), r["groups"])
        else:
            w = torch.rand(r["c_in"], r["c_out"] // r["groups"], r["kh"], r["kw"], dtype=dt, generator=g) * 2 - 1

            def op(x, w, b):
                return F.conv_transpose2d(x, w, b, (r["sh"], r["sw"]), (r["ph"], r["pw"]), (r["oph"], r["opw"]),
                                          r["groups"], (r["dh"], r["dw"]))
        if self.backward:
            for t in (x, w, b):
                t.requires_grad_(True)
        with torch.no_grad():
            y = op(x, w, b)
            self.gy = torch.rand_like(y)
        if r["kind"] == "conv":
            self.flops = 2.0 * y.numel() * (r["c_in"] // r["groups"]) * r["kh"] * r["kw"]
        else:
            self.flops = 2.0 * x.numel() * (r["c_out"] // r["groups"]) * r["kh"] * r["kw"]
        self.x, self.w, self.b, self.op = x, w, b, op

    def once(self):
        import torch

        if self.backward:
            y = self.op(self.x, self.w, self.b)
            torch.autograd.grad(y, (self.x, self.w, self.b), self.gy)
        else:
            with torch.no_grad():
                self.op(self.x, self.w, self.b)

    def time(self, reps):
        """Median wall time of `reps` calls; also records the process's CPU time / wall time."""
        self.once()
        times = []
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(reps):
            t0 = time.perf_counter()
            self.once()
            times.append(time.perf_counter() - t0)
        self.cpu_per_wall = (time.process_time() - c0) / max(time.perf_counter() - w0, 1e-12)
        return statistics.median(times)


def xconv_time(bench, suite, name, dtype, passname, reps, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    out = subprocess.run([bench, suite, "--dtype", dtype, "--pass", passname, "--reps", str(reps), "--only", name],
                         env=env, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        p = line.split()
        if p and p[0] == name:
            if int(p[3]) != threads:
                print(f"warning: bench_conv ran {p[3]} thread(s), asked for {threads} "
                      "(build it with -DXCONV_USE_OPENMP=ON)", file=sys.stderr)
            return float(p[4])
    raise RuntimeError(f"bench_conv printed no line for {name}")


class InProcess:
    """bench_conv's timing loaded into this process (the bench_conv_inprocess library): xconv and
    PyTorch then share one OpenMP runtime and its threads, and a shape's two sides are timed right
    after each other, without starting a process in between."""

    def __init__(self, path, threads):
        import ctypes

        self.lib = ctypes.CDLL(os.path.abspath(path))
        self.lib.xconv_bench_time.restype = ctypes.c_double
        self.lib.xconv_bench_time.argtypes = [ctypes.c_char_p] * 4 + [ctypes.c_int]
        self.lib.xconv_bench_threads.restype = ctypes.c_int
        got = self.lib.xconv_bench_threads()
        if got != threads:
            print(f"warning: xconv runs {got} thread(s) in this process, asked for {threads} "
                  "(build the library with -DXCONV_USE_OPENMP=ON)", file=sys.stderr)

    def time(self, suite, name, dtype, passname, reps):
        t = self.lib.xconv_bench_time(suite.encode(), name.encode(), dtype.encode(), passname.encode(), reps)
        if t < 0:
            raise RuntimeError(f"xconv_bench_time failed for {name}")
        return t


def alternate(case, xconv, suite, name, dtype, passname, reps, pause, torch_first):
    """Median wall times of `reps` calls of each side in this process, one side's calls after the
    other's (each after a warm-up call), PyTorch first or second as asked: the two medians are
    taken a few milliseconds apart, so that a change in the machine's speed hits both alike. Also
    returns PyTorch's CPU time / wall time over its calls. `pause` seconds before each side:
    with several threads, the worker threads of the side that ran last (OpenBLAS's, which
    PyTorch calls for some layers, spin for about 0.1 s after a call) must not take the cores
    from the other side's."""
    tt = tx = cpu = None
    for side in ((0, 1) if torch_first else (1, 0)):
        time.sleep(pause)
        if side == 0:
            tt = case.time(reps)
            cpu = case.cpu_per_wall
        else:
            xconv.time(suite, name, dtype, passname, 1)
            tx = xconv.time(suite, name, dtype, passname, reps)
    return tt, tx, cpu


def fma_peak(bench, dtype, threads):
    """The FMA ceiling of `threads` threads now, GFLOP/s (bench_conv --peak)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([bench, "--peak", dtype], env=env, check=True, capture_output=True, text=True).stdout
    p = out.split()
    if len(p) != 4 or p[0] != "fma_peak":
        raise RuntimeError(f"bench_conv --peak printed {out!r}")
    return float(p[3])


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def run_table(args, suite, dtype, passname, threads):
    import torch

    torch.set_num_threads(threads)
    cases = {r["name"]: TorchCase(r, dtype, passname) for r in suite}
    xconv = InProcess(args.inprocess, threads) if args.inprocess else None
    t_torch = {r["name"]: [] for r in suite}
    t_xconv = {r["name"]: [] for r in suite}
    load_before = loadavg()
    cpu_per_wall = 0.0
    peaks = []
    for round_ in range(args.rounds):
        if dtype not in args.ceiling:
            time.sleep(0.5 if threads > 1 else 0.05)
            peaks.append(fma_peak(args.bench, dtype, threads))
        for r in suite:
            name = r["name"]
            if xconv is not None:
                tt, tx, cpu = alternate(cases[name], xconv, args.suite, name, dtype, passname, args.reps,
                                        0.15 if threads > 1 else 0.0, round_ % 2 == 0)
                t_torch[name].append(tt)
                t_xconv[name].append(tx)
                cpu_per_wall = max(cpu_per_wall, cpu)
                continue
            t_torch[name].append(cases[name].time(args.reps))
            cpu_per_wall = max(cpu_per_wall, cases[name].cpu_per_wall)
            # PyTorch's OpenMP threads keep spinning for a while after its last call; left alone,
            # they would take the cores from bench_conv's threads (a 0.8 ms call measured 8 ms).
            time.sleep(0.5 if threads > 1 else 0.05)
            t_xconv[name].append(xconv_time(args.bench, args.suite, name, dtype, passname, args.reps, threads))
    load_after = loadavg()
    mult = 3.0 if passname == "forward_backward" else 1.0
    ceiling = args.ceiling[dtype] * threads if dtype in args.ceiling else statistics.median(peaks)
    rows = []
    for r in suite:
        name = r["name"]
        tt = statistics.median(t_torch[name])
        xt = statistics.median(t_xconv[name])
        work = mult * cases[name].flops
        rows.append(dict(shape=name, dtype=dtype, passname=passname, threads=threads, torch_ms=tt * 1e3,
                         xconv_ms=xt * 1e3, torch_gflops=work / tt * 1e-9, xconv_gflops=work / xt * 1e-9,
                         ceiling_gflops=ceiling, ratio=tt / xt))
    geo = math.exp(sum(math.log(x["ratio"]) for x in rows) / len(rows))
    return rows, geo, load_before, load_after, cpu_per_wall, peaks


def markdown(rows, geo, title):
    lines = [f"### {title}", "",
             "| shape | torch ms | xconv ms | torch GFLOP/s | xconv GFLOP/s | xconv / ceiling | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for x in rows:
        lines.append(f"| {x['shape']} | {x['torch_ms']:.3f} | {x['xconv_ms']:.3f} | {x['torch_gflops']:.1f} | "
                     f"{x['xconv_gflops']:.1f} | {100 * x['xconv_gflops'] / x['ceiling_gflops']:.0f}% | "
                     f"{x['ratio']:.2f} |")
    lines.append(f"| **geometric mean** | | | | | | **{geo:.2f}** |")
    return "\n".join(lines) + "\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", required=True, help="path of the bench_conv executable")
    ap.add_argument("--suite", default=os.path.join(here, "suite.txt"))
    ap.add_argument("--threads", default="1", help="comma-separated thread counts")
    ap.add_argument("--dtype", default="float", help="comma-separated: float, double")
    ap.add_argument("--pass", dest="passname", default="forward", help="comma-separated: forward, forward_backward")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median over them is reported")
    ap.add_argument("--reps", type=int, default=5, help="timed calls per round and side (median)")
    ap.add_argument("--inprocess", metavar="LIB", help="time xconv in this process through the bench_conv_inprocess "
                    "library (build-dir/bench/libbench_conv_inprocess.so), each shape's two sides right after "
                    "each other (in turn first), instead of running bench_conv")
    ap.add_argument("--only", help="comma-separated shape names")
    ap.add_argument("--ceiling", default="", help="fixed per-core FMA ceilings instead of measuring them, "
                    "e.g. float=116,double=58")
    ap.add_argument("--markdown", help="append the tables as markdown to this file")
    ap.add_argument("--csv", help="append one line per shape and table to this CSV file")
    args = ap.parse_args()
    args.ceiling = {k: float(v) for k, v in (kv.split("=") for kv in args.ceiling.split(",") if kv)}

    suite = read_suite(args.suite)
    if args.only:
        keep = set(args.only.split(","))
        suite = [r for r in suite if r["name"] in keep]
    fields = ["shape", "dtype", "passname", "threads", "torch_ms", "xconv_ms", "torch_gflops", "xconv_gflops",
              "ceiling_gflops", "ratio"]
    if args.csv and not os.path.exists(args.csv):
        with open(args.csv, "w") as f:
            f.write(",".join(fields) + "\n")
    thread_counts = [int(t) for t in args.threads.split(",")]
    if os.environ.get("OMP_NUM_THREADS") != str(thread_counts[0]) or len(thread_counts) > 1:
        # PyTorch sizes its OpenMP pool from OMP_NUM_THREADS when it starts, and some of its
        # kernels (oneDNN's deconvolution and depthwise convolution among them) use that pool
        # whatever torch.set_num_threads says: run one child process per thread count, with
        # OMP_NUM_THREADS set before torch is imported.
        for threads in thread_counts:
            argv = [a for a in sys.argv[1:]]
            i = argv.index("--threads") if "--threads" in argv else -1
            if i >= 0:
                argv[i + 1] = str(threads)
            else:
                argv += ["--threads", str(threads)]
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                       OPENBLAS_NUM_THREADS=str(threads))
            subprocess.run([sys.executable, os.path.abspath(__file__)] + argv, env=env, check=True)
        return
    # The same allocator state on both sides: bench_conv allocates and frees one 31 MiB block at
    # start, which raises glibc's mmap threshold so that large tensors are reused from the heap
    # instead of being fresh mmaps (page faults) every call; do the same here for PyTorch.
    import torch
    block = torch.empty(31 << 20, dtype=torch.uint8)
    del block

    for threads in thread_counts:
        for dtype in args.dtype.split(","):
            for passname in args.passname.split(","):
                rows, geo, l0, l1, cpu_wall, peaks = run_table(args, suite, dtype, passname, threads)
                label = "forward" if passname == "forward" else "forward+backward"
                title = f"{dtype}, {label}, {threads} thread{'s' if threads > 1 else ''}"
                text = markdown(rows, geo, title)
                text += (f"\nload average {l0:.2f} before, {l1:.2f} after; {args.rounds} rounds x {args.reps} reps"
                         f"{' (both sides in one process, in turn)' if args.inprocess else ''}; "
                         f"PyTorch's CPU time / wall time at most {cpu_wall:.2f}\n")
                if peaks:
                    text += (f"FMA ceiling of {threads} thread{'s' if threads > 1 else ''} measured in the rounds: "
                             f"median {statistics.median(peaks):.1f} GFLOP/s (lowest {min(peaks):.1f}, "
                             f"highest {max(peaks):.1f})\n")
                else:
                    text += f"FMA ceiling as given: {rows[0]['ceiling_gflops']:.1f} GFLOP/s\n"
                print(text, flush=True)
                if args.markdown:
                    with open(args.markdown, "a") as f:
                        f.write(text + "\n")
                if args.csv:
                    with open(args.csv, "a") as f:
                        for x in rows:
                            f.write(",".join(str(x[k]) if not isinstance(x[k], float) else f"{x[k]:.6g}"
                                             for k in fields) + "\n")


if __name__ == "__main__":
    main()
