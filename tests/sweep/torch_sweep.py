#!/usr/bin/env python3
"""Randomized cases for the live sweep of xconv against PyTorch.

Usage: torch_sweep.py --seed S --count N --out DIR

Draws N random configurations of conv2d, conv_transpose2d, unfold and fold (float32 and float64,
batched and unbatched, groups incl. depthwise, bias on/off, the four padding modes, 'same' /
'valid', per-axis stride / padding / dilation, output_padding incl. >= stride but < dilation,
requested output sizes) of which roughly 30 % are built to be invalid. Every case is run through
PyTorch (forward, then backward with a random grad_output). PyTorch decides what is invalid: a
case counts as an expected error only if PyTorch rejects it, whatever it was built to be.

For case i the directory DIR/<i>/ holds
  params.txt        one `key value...` line per parameter (see write_params); for rejected
                    cases also torch_error (PyTorch's message) and, for conv cases,
                    reject_without_bias (whether PyTorch also rejects them without the bias)
  input.npy, weight.npy, bias.npy     the arguments (weight / bias only where they apply)
  grad_output.npy   the random gradient fed to backward        (valid cases only)
  output.npy, grad_input.npy, grad_weight.npy, grad_bias.npy   PyTorch's results (valid cases only)
and DIR/cases.txt holds `count N` and `seed S`.

The reference for each operation is PyTorch's functional API called the way the corresponding
module calls it:
  conv2d            F.conv2d; for padding_mode != 'zeros', F.pad(input, pads, mode) followed by
                    F.conv2d with padding 0, exactly as torch.nn.Conv2d._conv_forward does, with
                    the pads that torch.nn.Conv2d.__init__ derives (also for 'same').
  conv_transpose2d  F.conv_transpose2d; a requested output size goes through
                    torch.nn.ConvTranspose2d._output_padding as in ConvTranspose2d.forward.
  unfold / fold     F.unfold / F.fold.

Deliberately not generated (PyTorch's behaviour there is not a meaningful reference):
  * negative padding with padding_mode reflect / replicate / circular: nn.Conv2d hands it to
    F.pad, which silently crops the input instead of rejecting it (F.conv2d itself rejects
    negative padding, and so does xconv in every mode);
  * zero channels (C_in = 0 with a (C_out, 0, kh, kw) weight): F.conv2d returns the bias
    broadcast over an output computed from nothing instead of rejecting the empty weight;
  * negative groups: xconv takes groups as std::size_t, so it cannot be expressed;
  * invalid conv2d / conv_transpose2d cases with an empty batch (N = 0): PyTorch 1.13 then skips
    part of its checks and returns an empty output for a non-positive dilation, an empty spatial
    input or a too large output_padding (F.conv2d(torch.randn(0, 2, 5, 5), w, dilation=(0, 1))
    gives shape (0, 3, 5, 3)), while it rejects the same arguments for N >= 1. Valid cases do
    use N = 0.
One PyTorch 1.13 defect is worked around rather than excluded: F.pad with mode='circular' reads a
4-element pad of a 3-D (C, H, W) tensor as invalid, so nn.Conv2d(padding_mode='circular') cannot
run an unbatched input at all; the reference for such a case is the batched computation of its
one sample.
"""

import argparse
import os
import random
import sys
import warnings

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MODES = ["zeros", "reflect", "replicate", "circular"]
# Share of the valid conv cases made large enough that the GEMMs span more than one packed block
# (depth > 384, rows > 96); the others stay tiny so that the whole sweep runs in seconds.
LARGE_SHARE = 0.05


# ---------------------------------------------------------------------------- helpers


def pair(rng, lo, hi):
    return [rng.randint(lo, hi), rng.randint(lo, hi)]


def dilated(k, d):
    return d * (k - 1) + 1


def bad_value(rng):
    """A value that is not positive: 0 or negative."""
    return rng.choice([0, 0, -1, -2])


def spoil_axis(rng, v, value):
    """Replace one or both axes of the pair v by value."""
    v = list(v)
    which = rng.randint(0, 2)
    if which in (0, 2):
        v[0] = value
    if which in (1, 2):
        v[1] = value
    return v


def blocks(size, pad_total, k, s, d):
    """Number of sliding blocks with floor division (what PyTorch computes)."""
    return (size + pad_total - dilated(k, d)) // s + 1


def batch_size(rng):
    return 0 if rng.random() < 0.04 else rng.randint(1, 3)


def channel_plan(rng):
    """(groups, in per group, out per group); a quarter of the plans are depthwise."""
    r = rng.random()
    if r < 0.5:
        return 1, rng.randint(1, 3), rng.randint(1, 3)
    if r < 0.75:
        return rng.randint(2, 3), rng.randint(1, 2), rng.randint(1, 2)
    return rng.randint(1, 4), 1, rng.randint(1, 2)  # depthwise: groups = C_in


# ---------------------------------------------------------------------------- conv2d


def conv2d_pads(case, kernel):
    """(top, bottom, left, right) as nn.Conv2d derives them (same / valid / explicit)."""
    if case["auto_padding"] == "same":
        out = []
        for k, d in zip(kernel, case["dilation"]):
            total = d * (k - 1)
            out += [total // 2, total - total // 2]
        return out
    if case["auto_padding"] == "valid":
        return [0, 0, 0, 0]
    ph, pw = case["padding"]
    return [ph, ph, pw, pw]


def min_extent(case, axis, kernel, pads):
    """Smallest input size along axis that the configuration accepts."""
    k, d = kernel[axis], case["dilation"][axis]
    lo, hi = pads[2 * axis], pads[2 * axis + 1]
    need = max(1, dilated(k, d) - lo - hi)
    if case["padding_mode"] == "reflect":
        need = max(need, max(lo, hi) + 1)
    if case["padding_mode"] == "circular":
        need = max(need, max(lo, hi))
    return need


def gen_conv2d(rng, invalid):
    g, cpg, opg = channel_plan(rng)
    kernel = pair(rng, 1, 4)
    large = not invalid and rng.random() < LARGE_SHARE
    if large:
        # GEMM depth C_in/g*kh*kw past one packed block, C_out/g past one block of rows.
        g, kernel = rng.randint(1, 2), pair(rng, 2, 3)
        cpg = -(-rng.randint(300, 600) // (kernel[0] * kernel[1]))
        opg = rng.randint(70, 130)
    case = {
        "op": "conv2d",
        "batched": rng.random() < 0.75,
        "n": batch_size(rng),
        "groups": g,
        "c_in": g * cpg,
        "w_in": cpg,
        "c_out": g * opg,
        "kernel": kernel,
        "padding_mode": rng.choice(MODES + ["zeros"]),
        "auto_padding": rng.choices(["none", "same", "valid"], [0.7, 0.15, 0.15])[0],
        "dilation": [rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2, 3])],
        "stride": pair(rng, 1, 3),
        "padding": pair(rng, 0, 3),
        "bias": rng.random() < 0.6,
        "bias_size": None,
        "label": "valid (large)" if large else "valid",
    }
    if large:
        case["batched"], case["n"] = True, rng.randint(1, 2)
    if case["auto_padding"] == "same":
        case["stride"] = [1, 1]
    if case["auto_padding"] != "none":
        case["padding"] = [0, 0]
    size = [0, 0]
    pads = conv2d_pads(case, kernel)
    for a in range(2):
        lo = min_extent(case, a, kernel, pads)
        size[a] = rng.randint(lo, lo + (16 if large else 5))
    case["size"] = size

    if invalid:
        kind = rng.choice(
            [
                "negative padding",
                "non-positive stride",
                "non-positive dilation",
                "zero groups",
                "groups do not divide C_out",
                "groups do not divide C_in",
                "channel mismatch",
                "bias of wrong size",
                "kernel larger than padded input",
                "kernel larger than padded input (hidden by truncating division)",
                "reflect padding >= input",
                "circular padding > input",
                "'same' with stride",
                "empty spatial input",
                "wrong input rank",
            ]
        )
        case["label"] = "invalid: " + kind
        if kind == "negative padding":
            case["padding_mode"] = "zeros"  # see the module docstring
            case["auto_padding"] = "none"
            case["padding"] = spoil_axis(rng, case["padding"], -rng.randint(1, 2))
        elif kind == "non-positive stride":
            case["auto_padding"] = rng.choice(["none", "valid"])
            case["stride"] = spoil_axis(rng, case["stride"], bad_value(rng))
        elif kind == "non-positive dilation":
            case["auto_padding"] = "none"
            case["dilation"] = spoil_axis(rng, case["dilation"], bad_value(rng))
        elif kind == "zero groups":
            case["groups"] = 0
        elif kind == "groups do not divide C_out":
            g = rng.randint(2, 3)
            case["groups"], case["w_in"] = g, rng.randint(1, 2)
            case["c_in"] = g * case["w_in"]
            case["c_out"] = g * rng.randint(1, 2) + rng.randint(1, g - 1)
        elif kind == "groups do not divide C_in":
            g = rng.randint(2, 3)
            case["groups"], case["w_in"] = g, rng.randint(1, 2)
            case["c_out"] = g * rng.randint(1, 2)
            case["c_in"] = g * case["w_in"] + rng.randint(1, g - 1)
        elif kind == "channel mismatch":
            case["c_in"] = max(1, case["c_in"] + rng.choice([-1, 1, 2]))
            if case["c_in"] == case["groups"] * case["w_in"]:
                case["c_in"] += 1
        elif kind == "bias of wrong size":
            case["bias"] = True
            case["bias_size"] = max(0, case["c_out"] + rng.choice([-1, 1, 2]))
        elif kind.startswith("kernel larger"):
            case["auto_padding"] = "none"
            case["padding_mode"] = rng.choice(["zeros", "zeros", "replicate"])
            a = rng.randint(0, 1)
            hidden = "hidden" in kind
            while True:
                k = rng.randint(2, 5)
                d = rng.randint(1, 2)
                p = rng.randint(0, 1)
                s = rng.randint(2, 3) if hidden else rng.randint(1, 3)
                short = rng.randint(1, s - 1) if hidden else rng.randint(1, 3)
                h = dilated(k, d) - 2 * p - short
                if h >= 1:
                    break
            case["kernel"][a], case["dilation"][a], case["padding"][a] = k, d, p
            case["stride"][a], case["size"][a] = s, h
        elif kind == "reflect padding >= input":
            case["padding_mode"] = "reflect"
            case["auto_padding"] = "none"
            a = rng.randint(0, 1)
            case["size"][a] = rng.randint(1, 3)
            case["padding"][a] = case["size"][a] + rng.randint(0, 1)
        elif kind == "circular padding > input":
            case["padding_mode"] = "circular"
            case["auto_padding"] = "none"
            a = rng.randint(0, 1)
            case["size"][a] = rng.randint(1, 3)
            case["padding"][a] = case["size"][a] + rng.randint(1, 2)
        elif kind == "'same' with stride":
            case["auto_padding"] = "same"
            case["padding"] = [0, 0]
            case["stride"] = spoil_axis(rng, [1, 1], rng.randint(2, 3))
        elif kind == "empty spatial input":
            case["auto_padding"] = "none"
            case["padding_mode"] = "zeros"
            # The kernel fits the padded input, so that only the empty axis is wrong.
            a = rng.randint(0, 1)
            for ax in range(2):
                case["padding"][ax] = dilated(case["kernel"][ax], case["dilation"][ax])
            case["size"][a] = 0
        elif kind == "wrong input rank":
            case["rank"] = rng.choice([2, 5])
    return case


def torch_conv2d(case, x, w, b):
    stride, dilation, groups = case["stride"], case["dilation"], case["groups"]
    mode, auto = case["padding_mode"], case["auto_padding"]
    if mode == "zeros":
        padding = auto if auto != "none" else case["padding"]
        return F.conv2d(x, w, b, stride, padding, dilation, groups)
    # nn.Conv2d with a non-zeros padding_mode: its constructor's checks, then _conv_forward.
    if groups <= 0:
        raise ValueError("groups must be a positive integer")
    if auto == "same" and any(s != 1 for s in stride):
        raise ValueError("padding='same' is not supported for strided convolutions")
    t, btm, lft, rgt = conv2d_pads(case, list(w.shape[2:]))
    unbatched_circular = mode == "circular" and x.dim() == 3
    xin = x.unsqueeze(0) if unbatched_circular else x
    y = F.conv2d(F.pad(xin, [lft, rgt, t, btm], mode=mode), w, b, stride, 0, dilation, groups)
    return y.squeeze(0) if unbatched_circular else y


# ---------------------------------------------------------------------------- conv_transpose2d


def convt_min(size, stride, padding, k, d):
    return (size - 1) * stride - 2 * padding + d * (k - 1) + 1


def gen_conv_transpose2d(rng, invalid):
    g, ipg, opg = channel_plan(rng)
    large = not invalid and rng.random() < LARGE_SHARE
    if large:
        # GEMM depth C_in/g past one packed block, C_out/g*kh*kw rows past one block of rows.
        g, ipg, opg = rng.randint(1, 2), rng.randint(260, 420), rng.randint(8, 16)
    case = {
        "op": "conv_transpose2d",
        "batched": rng.random() < 0.75,
        "n": batch_size(rng),
        "groups": g,
        "c_in": g * ipg,
        "w_in": g * ipg,
        "w_out": opg,
        "kernel": pair(rng, 2, 3) if large else pair(rng, 1, 4),
        "stride": pair(rng, 1, 3),
        "dilation": [rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2, 3])],
        "padding": [0, 0],
        "output_padding": [0, 0],
        "output_size": None,
        "size": pair(rng, 4, 14) if large else pair(rng, 1, 6),
        "bias": rng.random() < 0.6,
        "bias_size": None,
        "label": "valid (large)" if large else "valid",
    }
    if large:
        case["batched"], case["n"] = True, rng.randint(1, 2)
    for a in range(2):
        s, d = case["stride"][a], case["dilation"][a]
        if d > s and rng.random() < 0.4:
            # PyTorch accepts output_padding >= stride as long as it is below the dilation.
            case["output_padding"][a] = rng.randint(s, d - 1)
        elif rng.random() < 0.5:
            case["output_padding"][a] = rng.randint(0, max(s, d) - 1)
        k, h = case["kernel"][a], case["size"][a]
        for _ in range(20):
            p = rng.randint(0, 3)
            if convt_min(h, s, p, k, d) + case["output_padding"][a] > 0:
                case["padding"][a] = p
                break
    if rng.random() < 0.25:
        mins = [convt_min(case["size"][a], case["stride"][a], case["padding"][a], case["kernel"][a],
                          case["dilation"][a]) for a in range(2)]
        if min(mins) > 0:
            case["output_size"] = [mins[a] + rng.randint(0, case["stride"][a] - 1) for a in range(2)]
            # The requested size overrides the output_padding field, even a too large one.
            case["output_padding"] = [rng.randint(0, 4), rng.randint(0, 4)]

    if invalid:
        kind = rng.choice(
            [
                "negative padding",
                "negative output_padding",
                "non-positive stride",
                "non-positive dilation",
                "zero groups",
                "groups do not divide C_in",
                "channel mismatch",
                "bias of wrong size",
                "output_padding >= stride and >= dilation",
                "output size <= 0",
                "requested output_size out of range",
                "empty spatial input",
                "wrong input rank",
            ]
        )
        case["label"] = "invalid: " + kind
        if kind != "requested output_size out of range":
            case["output_size"] = None
            case["output_padding"] = [0, 0]
        if kind == "negative padding":
            case["padding"] = spoil_axis(rng, case["padding"], -rng.randint(1, 2))
        elif kind == "negative output_padding":
            case["output_padding"] = spoil_axis(rng, case["output_padding"], -1)
        elif kind == "non-positive stride":
            case["stride"] = spoil_axis(rng, case["stride"], bad_value(rng))
        elif kind == "non-positive dilation":
            case["dilation"] = spoil_axis(rng, case["dilation"], bad_value(rng))
        elif kind == "zero groups":
            case["groups"] = 0
        elif kind == "groups do not divide C_in":
            g = rng.randint(2, 3)
            case["groups"] = g
            case["w_in"] = g * rng.randint(1, 2) + rng.randint(1, g - 1)
            case["c_in"] = case["w_in"]
        elif kind == "channel mismatch":
            case["c_in"] = case["w_in"] + rng.choice([-1, 1, 2])
            if case["c_in"] <= 0:
                case["c_in"] = case["w_in"] + 1
        elif kind == "bias of wrong size":
            case["bias"] = True
            case["bias_size"] = max(0, case["groups"] * case["w_out"] + rng.choice([-1, 1, 2]))
        elif kind == "output_padding >= stride and >= dilation":
            a = rng.randint(0, 1)
            case["output_padding"][a] = max(case["stride"][a], case["dilation"][a]) + rng.randint(0, 1)
        elif kind == "output size <= 0":
            a = rng.randint(0, 1)
            s, k, d, h = case["stride"][a], case["kernel"][a], case["dilation"][a], case["size"][a]
            full = convt_min(h, s, 0, k, d)
            case["padding"][a] = (full + 1) // 2 + rng.randint(0, 1)
        elif kind == "requested output_size out of range":
            a = rng.randint(0, 1)
            mins = [convt_min(case["size"][i], case["stride"][i], case["padding"][i], case["kernel"][i],
                              case["dilation"][i]) for i in range(2)]
            req = [m + rng.randint(0, case["stride"][i] - 1) for i, m in enumerate(mins)]
            if rng.random() < 0.5:
                req[a] = mins[a] - rng.randint(1, 2)
            else:
                req[a] = mins[a] + case["stride"][a] - 1 + rng.randint(1, 2)
            case["output_size"] = req
        elif kind == "empty spatial input":
            case["size"][rng.randint(0, 1)] = 0
        elif kind == "wrong input rank":
            case["rank"] = rng.choice([2, 5])
    return case


def torch_conv_transpose2d(case, x, w, b):
    output_padding = case["output_padding"]
    if case["output_size"] is not None:
        # What nn.ConvTranspose2d.forward(input, output_size) does (self is not used there).
        output_padding = nn.ConvTranspose2d._output_padding(
            None, x, list(case["output_size"]), case["stride"], case["padding"], list(w.shape[2:]), 2,
            case["dilation"])
    return F.conv_transpose2d(x, w, b, case["stride"], case["padding"], output_padding, case["groups"],
                              case["dilation"])


# ---------------------------------------------------------------------------- unfold / fold


def gen_window(rng):
    return {
        "kernel": pair(rng, 1, 4),
        "stride": pair(rng, 1, 3),
        "padding": pair(rng, 0, 2),
        "dilation": [rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2, 3])],
    }


def window_extent(rng, case, a):
    lo = max(1, dilated(case["kernel"][a], case["dilation"][a]) - 2 * case["padding"][a])
    return rng.randint(lo, lo + 5)


def spoil_window(rng, case, kind):
    """Apply one of the invalid kinds shared by unfold and fold; returns True if it applied."""
    if kind == "non-positive kernel_size":
        case["kernel"] = spoil_axis(rng, case["kernel"], bad_value(rng))
    elif kind == "non-positive stride":
        case["stride"] = spoil_axis(rng, case["stride"], bad_value(rng))
    elif kind == "non-positive dilation":
        case["dilation"] = spoil_axis(rng, case["dilation"], bad_value(rng))
    elif kind == "negative padding":
        case["padding"] = spoil_axis(rng, case["padding"], -rng.randint(1, 2))
    elif kind.startswith("kernel larger"):
        a = rng.randint(0, 1)
        hidden = "hidden" in kind
        while True:
            k, d, p = rng.randint(2, 5), rng.randint(1, 2), rng.randint(0, 1)
            s = rng.randint(2, 3) if hidden else rng.randint(1, 3)
            short = rng.randint(1, s - 1) if hidden else rng.randint(1, 3)
            h = dilated(k, d) - 2 * p - short
            if h >= 1:
                break
        case["kernel"][a], case["dilation"][a], case["padding"][a], case["stride"][a] = k, d, p, s
        case["size"][a] = h
    else:
        return False
    return True


WINDOW_KINDS = [
    "non-positive kernel_size",
    "non-positive stride",
    "non-positive dilation",
    "negative padding",
    "kernel larger than padded input",
    "kernel larger than padded input (hidden by truncating division)",
]


def gen_unfold(rng, invalid):
    case = {"op": "unfold", "batched": rng.random() < 0.75, "n": batch_size(rng), "c_in": rng.randint(1, 4),
            "label": "valid"}
    case.update(gen_window(rng))
    case["size"] = [window_extent(rng, case, 0), window_extent(rng, case, 1)]
    if invalid:
        kind = rng.choice(WINDOW_KINDS + ["zero channels", "wrong input rank"])
        case["label"] = "invalid: " + kind
        if not spoil_window(rng, case, kind):
            if kind == "zero channels":
                case["c_in"] = 0
            elif kind == "wrong input rank":
                case["rank"] = rng.choice([2, 5])
    return case


def gen_fold(rng, invalid):
    case = {"op": "fold", "batched": rng.random() < 0.75, "n": batch_size(rng), "c_in": rng.randint(1, 4),
            "label": "valid"}
    case.update(gen_window(rng))
    case["size"] = [window_extent(rng, case, 0), window_extent(rng, case, 1)]  # output_size
    case["rows_extra"] = 0
    case["cols_extra"] = 0
    if invalid:
        kind = rng.choice(WINDOW_KINDS + ["rows not a multiple of kh*kw", "columns != number of blocks",
                                          "zero rows", "non-positive output_size", "wrong input rank"])
        case["label"] = "invalid: " + kind
        # The column count is derived from the configuration before it is spoilt.
        case["blocks"] = columns_of(case)
        if not spoil_window(rng, case, kind):
            if kind == "rows not a multiple of kh*kw":
                if case["kernel"][0] * case["kernel"][1] == 1:
                    case["kernel"] = [2, 1]
                    case["size"][0] = max(case["size"][0], dilated(2, case["dilation"][0]))
                    case["blocks"] = columns_of(case)
                case["rows_extra"] = rng.randint(1, case["kernel"][0] * case["kernel"][1] - 1)
            elif kind == "columns != number of blocks":
                case["cols_extra"] = rng.choice([-1, 1, 2]) if case["blocks"] > 1 else rng.choice([1, 2])
            elif kind == "zero rows":
                case["c_in"] = 0
            elif kind == "non-positive output_size":
                case["size"] = spoil_axis(rng, case["size"], bad_value(rng))
            elif kind == "wrong input rank":
                case["rank"] = rng.choice([1, 4])
    else:
        case["blocks"] = columns_of(case)
    return case


def columns_of(case):
    bh = blocks(case["size"][0], 2 * case["padding"][0], case["kernel"][0], case["stride"][0], case["dilation"][0])
    bw = blocks(case["size"][1], 2 * case["padding"][1], case["kernel"][1], case["stride"][1], case["dilation"][1])
    return max(bh, 0) * max(bw, 0)


# ---------------------------------------------------------------------------- running a case


def shaped(case, batched_shape):
    """Drop the batch axis for unbatched cases; for the wrong-rank cases, add leading 1s or drop
    leading axes until the rank is case["rank"]."""
    rank = case.get("rank")
    if rank is None:
        return list(batched_shape) if case["batched"] else list(batched_shape[1:])
    if rank > len(batched_shape):
        return [1] * (rank - len(batched_shape)) + list(batched_shape)
    return list(batched_shape[len(batched_shape) - rank:])


def make_tensors(case, dtype, gen):
    def randn(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)

    op = case["op"]
    t = {}
    n, c = case["n"], case["c_in"]
    h, w = case["size"]
    if op in ("conv2d", "unfold", "conv_transpose2d"):
        t["input"] = randn(shaped(case, [n, c, h, w]))
    if op == "conv2d":
        t["weight"] = randn([case["c_out"], case["w_in"]] + case["kernel"])
        c_out = case["c_out"]
    if op == "conv_transpose2d":
        t["weight"] = randn([case["w_in"], case["w_out"]] + case["kernel"])
        c_out = case["w_out"] * max(case["groups"], 1)
    if op in ("conv2d", "conv_transpose2d") and case["bias"]:
        t["bias"] = randn([case["bias_size"] if case["bias_size"] is not None else c_out])
    if op == "fold":
        kk = max(case["kernel"][0], 0) * max(case["kernel"][1], 0)
        rows = c * kk + case["rows_extra"]
        cols = max(case["blocks"] + case["cols_extra"], 0)
        t["input"] = randn(shaped(case, [n, rows, cols]))
    return t


def run_torch(case, t):
    x = t["input"]
    op = case["op"]
    if op == "conv2d":
        return torch_conv2d(case, x, t["weight"], t.get("bias"))
    if op == "conv_transpose2d":
        return torch_conv_transpose2d(case, x, t["weight"], t.get("bias"))
    if op == "unfold":
        return F.unfold(x, case["kernel"], case["dilation"], case["padding"], case["stride"])
    return F.fold(x, case["size"], case["kernel"], case["dilation"], case["padding"], case["stride"])


def save(path, tensor):
    np.save(path, np.ascontiguousarray(tensor.detach().numpy()))


def rejects_without_bias(case, t):
    """Whether PyTorch still rejects a conv case once the bias is left out: the backward pass,
    which takes no bias, must then reject the arguments too."""
    if case["op"] not in ("conv2d", "conv_transpose2d"):
        return None
    try:
        run_torch(case, {k: v for k, v in t.items() if k != "bias"})
    except (RuntimeError, ValueError, IndexError):
        return True
    return False


def write_params(path, case, dtype_name, error, reject_without_bias=None):
    lines = [
        "op " + case["op"],
        "dtype " + dtype_name,
        "label " + case["label"],
        "expect_error " + ("1" if error is not None else "0"),
    ]

    def pr(key, v):
        lines.append("%s %d %d" % (key, v[0], v[1]))

    pr("stride", case["stride"])
    pr("padding", case["padding"])
    pr("dilation", case["dilation"])
    if case["op"] in ("unfold", "fold"):
        pr("kernel_size", case["kernel"])
    if case["op"] == "fold":
        pr("output_size", case["size"])
    if case["op"] in ("conv2d", "conv_transpose2d"):
        lines.append("groups %d" % case["groups"])
        lines.append("bias %d" % (1 if case["bias"] else 0))
        lines.append("mask %d %d %d" % tuple(case["mask"]))
    if case["op"] == "conv2d":
        lines.append("padding_mode " + case["padding_mode"])
        lines.append("auto_padding " + case["auto_padding"])
    if case["op"] == "conv_transpose2d":
        pr("output_padding", case["output_padding"])
        if case["output_size"] is None:
            lines.append("output_size none")
        else:
            pr("output_size", case["output_size"])
    if error is not None:
        lines.append("torch_error " + " ".join(error.split()))
    if reject_without_bias is not None:
        lines.append("reject_without_bias %d" % (1 if reject_without_bias else 0))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def run_case(i, case, dtype, gen, out_dir):
    d = os.path.join(out_dir, str(i))
    os.makedirs(d, exist_ok=True)
    t = make_tensors(case, dtype, gen)
    for name, v in t.items():
        save(os.path.join(d, name + ".npy"), v)
    dtype_name = "float32" if dtype == torch.float32 else "float64"
    try:
        y = run_torch(case, t)
    except (RuntimeError, ValueError, IndexError) as e:
        write_params(os.path.join(d, "params.txt"), case, dtype_name, "%s: %s" % (type(e).__name__, e),
                     rejects_without_bias(case, t))
        return False
    write_params(os.path.join(d, "params.txt"), case, dtype_name, None)

    # Backward with a random grad_output, every gradient PyTorch can give.
    grad_output = torch.randn(list(y.shape), generator=gen, dtype=torch.float64).to(dtype)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in t.items()}
    if case["op"] in ("conv2d", "conv_transpose2d") and "bias" not in leaves:
        # A bias-free layer's bias gradient is still asked for (output_mask); PyTorch gives it
        # for an all-zero bias, which leaves the output unchanged.
        c_out = y.shape[1] if y.dim() == 4 else y.shape[0]
        leaves["bias"] = torch.zeros([c_out], dtype=dtype, requires_grad=True)
    y2 = run_torch(case, leaves)
    if not torch.equal(y2.detach(), y.detach()) and not torch.allclose(y2.detach(), y.detach()):
        raise AssertionError("case %d: forward differs between the two runs" % i)
    names = list(leaves)
    grads = torch.autograd.grad(y2, [leaves[k] for k in names], grad_output, allow_unused=True)
    save(os.path.join(d, "output.npy"), y)
    save(os.path.join(d, "grad_output.npy"), grad_output)
    for name, g in zip(names, grads):
        if g is None:
            g = torch.zeros_like(leaves[name])
        save(os.path.join(d, "grad_" + name + ".npy"), g)
    return True


GENERATORS = [
    (gen_conv2d, 0.40),
    (gen_conv_transpose2d, 0.30),
    (gen_unfold, 0.15),
    (gen_fold, 0.15),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, default=320)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    invalid_count = 0
    for i in range(args.count):
        maker = rng.choices([g for g, _ in GENERATORS], [w for _, w in GENERATORS])[0]
        invalid = rng.random() < 0.3
        case = maker(rng, invalid)
        if invalid and case["op"] in ("conv2d", "conv_transpose2d") and case["n"] == 0:
            case["n"] = 1  # see the module docstring
        case["mask"] = [1, 1, 1] if rng.random() < 0.7 else [rng.randint(0, 1) for _ in range(3)]
        dtype = rng.choice([torch.float32, torch.float64])
        if not run_case(i, case, dtype, gen, args.out):
            invalid_count += 1
    with open(os.path.join(args.out, "cases.txt"), "w") as f:
        f.write("count %d\nseed %d\ninvalid %d\n" % (args.count, args.seed, invalid_count))
    print("torch_sweep: %d cases (%d rejected by PyTorch) in %s" % (args.count, invalid_count, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
