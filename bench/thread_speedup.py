#!/usr/bin/env python3
"""The speedup of xconv's passes from 1 to n threads, measured in one process.

    /usr/bin/python3 bench/thread_speedup.py --inprocess build/bench/libbench_conv_inprocess.so \\
        [--threads 2] [--dtype float] [--pass forward] [--rounds 9] [--reps 5] [--only NAME,...]

The library is bench_conv built as a C function (bench_conv_inprocess, in a build with
XCONV_BUILD_BENCHMARKS and XCONV_USE_OPENMP). In each of --rounds rounds, every shape is timed at
1 thread and at n threads right after each other (the median of --reps calls each; 1 thread
first in even rounds, n threads first in odd ones), and the speedup of the round is the ratio of
the two. Each shape's line gives the medians of the two times and of the speedups over the rounds,
and the lowest and highest speedup. Timing both thread counts seconds apart in one process keeps
most of a shared machine's swings in speed out of the ratio, unlike two tables taken minutes
apart.
"""
import argparse
import ctypes
import os
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inprocess", metavar="LIB", required=True, help="build-dir/bench/libbench_conv_inprocess.so")
    ap.add_argument("--suite", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "suite.txt"))
    ap.add_argument("--threads", type=int, default=2, help="the thread count compared with 1")
    ap.add_argument("--dtype", default="float", choices=["float", "double"])
    ap.add_argument("--pass", dest="passname", default="forward", choices=["forward", "forward_backward"])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", help="comma-separated shape names (default: the whole suite)")
    args = ap.parse_args()
    if args.threads < 2 or args.rounds < 1 or args.reps < 1:
        ap.error("--threads must be at least 2, --rounds and --reps at least 1")

    lib = ctypes.CDLL(os.path.abspath(args.inprocess))
    lib.xconv_bench_time.restype = ctypes.c_double
    lib.xconv_bench_time.argtypes = [ctypes.c_char_p] * 4 + [ctypes.c_int]
    lib.xconv_bench_set_threads.argtypes = [ctypes.c_int]
    lib.xconv_bench_threads.restype = ctypes.c_int
    lib.xconv_bench_set_threads(args.threads)
    if lib.xconv_bench_threads() != args.threads:
        sys.exit("the library does not run several threads: build it with XCONV_USE_OPENMP")

    if args.only:
        names = args.only.split(",")
    else:
        with open(args.suite) as f:
            names = [line.split()[0] for line in f if line.strip() and not line.startswith("#")]
    suite = args.suite.encode()

    def time_at(name, threads):
        lib.xconv_bench_set_threads(threads)
        t = lib.xconv_bench_time(suite, name.encode(), args.dtype.encode(), args.passname.encode(), args.reps)
        if t < 0:
            sys.exit(f"no shape {name} in {args.suite}")
        return t

    print(f"{args.dtype}, {args.passname}: 1 thread against {args.threads}, {args.rounds} rounds x {args.reps} reps")
    print(f"| shape | 1 thread ms | {args.threads} threads ms | speedup | lowest | highest |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        one, many, speedup = [], [], []
        for r in range(args.rounds):
            if r % 2 == 0:
                a = time_at(name, 1)
                b = time_at(name, args.threads)
            else:
                b = time_at(name, args.threads)
                a = time_at(name, 1)
            one.append(a)
            many.append(b)
            speedup.append(a / b)
        print(f"| {name} | {statistics.median(one) * 1e3:.3f} | {statistics.median(many) * 1e3:.3f} | "
              f"{statistics.median(speedup):.2f} | {min(speedup):.2f} | {max(speedup):.2f} |", flush=True)


if __name__ == "__main__":
    main()
