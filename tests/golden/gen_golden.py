#!/usr/bin/python3
"""Generate the golden test fixtures of xconv from PyTorch.

Regenerate (from the repository root) with:

    /usr/bin/python3 tests/golden/gen_golden.py

The script deletes and rewrites tests/golden/data/. Every case gets its own directory
tests/golden/data/<case>/ holding

    params.txt       one `key value...` line per parameter (read by tests/test_golden.cpp)
    input.npy        the input of the operation
    weight.npy       conv2d / conv_transpose2d only
    bias.npy         only when the case has a bias
    grad_output.npy  the gradient fed to out.backward()
    output.npy       the result of the forward pass
    grad_input.npy   d(loss)/d(input)
    grad_weight.npy  conv2d / conv_transpose2d only
    grad_bias.npy    only when the case has a bias

Gradients come from autograd: `out.backward(grad_output)` with a random grad_output. All
arrays are C-ordered little-endian float32 (<f4) or float64 (<f8), written with np.save.
data/MANIFEST.txt lists the case names, one per line, so the C++ test can check that every
case is present.

The output is deterministic: every case seeds torch from a CRC of its own name, so adding or
removing a case leaves the data of the others unchanged, and torch runs on one thread.
"""

import os
import shutil
import zlib

import numpy as np
import torch
import torch.nn.functional as F

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class Case:
    """One operation with its parameters; `build` turns it into arrays."""

    def __init__(self, name, op, dtypes=("float32", "float64"), **kw):
        self.name = name
        self.op = op
        self.dtypes = dtypes
        self.kw = kw


# ----------------------------------------------------------------------------- cases

CASES = [
    # --- conv2d -------------------------------------------------------------------------
    # The configuration of the original Python tests (N shrunk from 8 to 2).
    Case("conv2d_seed", "conv2d", dtypes=("float32",), n=2, c_in=32, c_out=64, hw=(16, 16),
         kernel=(3, 2), stride=(2, 3), padding=(1, 0), dilation=(3, 1)),
    Case("conv2d_basic", "conv2d", n=2, c_in=3, c_out=2, hw=(5, 4), kernel=3),
    Case("conv2d_nobias", "conv2d", n=2, c_in=2, c_out=3, hw=(4, 5), kernel=(2, 3), bias=False),
    Case("conv2d_stride_asym", "conv2d", n=2, c_in=2, c_out=2, hw=(7, 8), kernel=(3, 2), stride=(2, 3)),
    Case("conv2d_padding_asym", "conv2d", n=2, c_in=2, c_out=2, hw=(4, 5), kernel=(3, 3), padding=(2, 1)),
    Case("conv2d_dilation_asym", "conv2d", n=2, c_in=2, c_out=2, hw=(7, 5), kernel=(3, 2), dilation=(3, 2)),
    Case("conv2d_all_asym", "conv2d", n=2, c_in=2, c_out=2, hw=(8, 7), kernel=(2, 3), stride=(3, 2),
         padding=(1, 2), dilation=(2, 3), bias=False),
    # stride > kernel: some input rows/columns are never read, their gradient is zero
    Case("conv2d_stride_gaps", "conv2d", n=2, c_in=2, c_out=2, hw=(6, 7), kernel=(2, 1), stride=(3, 4)),
    # padding larger than the kernel: border outputs see only padding (bias alone)
    Case("conv2d_big_padding", "conv2d", n=1, c_in=2, c_out=3, hw=(4, 5), kernel=(2, 2), padding=(3, 2)),
    Case("conv2d_kernel1x1_stride2", "conv2d", n=2, c_in=3, c_out=2, hw=(5, 4), kernel=1, stride=2),
    Case("conv2d_kernel_is_input", "conv2d", n=3, c_in=2, c_out=2, hw=(3, 2), kernel=(3, 2)),
    Case("conv2d_groups2", "conv2d", n=2, c_in=4, c_out=6, hw=(4, 5), kernel=(2, 3), stride=(1, 2),
         padding=(1, 1), groups=2),
    Case("conv2d_groups2_nobias", "conv2d", n=1, c_in=6, c_out=4, hw=(4, 5), kernel=3, dilation=(1, 2),
         padding=(1, 2), groups=2, bias=False),
    Case("conv2d_depthwise", "conv2d", n=2, c_in=3, c_out=3, hw=(4, 4), kernel=3, padding=1, groups=3),
    Case("conv2d_depthwise_mult2", "conv2d", n=2, c_in=3, c_out=6, hw=(5, 4), kernel=(3, 2), stride=(2, 1),
         padding=(1, 0), dilation=(1, 2), groups=3),
    # 'same' with an even kernel: total padding (3, 1) -> top 1, bottom 2, left 0, right 1
    Case("conv2d_same_even", "conv2d", n=2, c_in=2, c_out=2, hw=(5, 4), kernel=(4, 2), auto_padding="same"),
    # 'same' with dilation: total padding (4, 9) -> top 2, bottom 2, left 4, right 5
    Case("conv2d_same_dilated", "conv2d", n=2, c_in=2, c_out=2, hw=(5, 6), kernel=(3, 4), dilation=(2, 3),
         auto_padding="same"),
    Case("conv2d_same_groups", "conv2d", n=2, c_in=4, c_out=2, hw=(4, 4), kernel=(2, 3), groups=2,
         auto_padding="same", bias=False),
    Case("conv2d_valid", "conv2d", n=2, c_in=2, c_out=2, hw=(5, 6), kernel=(3, 2), stride=(1, 2),
         auto_padding="valid"),
    Case("conv2d_reflect", "conv2d", n=2, c_in=2, c_out=2, hw=(4, 5), kernel=3, padding=(2, 1),
         padding_mode="reflect"),
    Case("conv2d_reflect_strided", "conv2d", n=2, c_in=2, c_out=2, hw=(5, 7), kernel=(2, 3), stride=(2, 3),
         padding=(1, 3), dilation=(2, 1), padding_mode="reflect"),
    Case("conv2d_replicate", "conv2d", n=2, c_in=2, c_out=2, hw=(4, 4), kernel=(3, 2), padding=(1, 3),
         padding_mode="replicate"),
    Case("conv2d_replicate_strided", "conv2d", n=2, c_in=4, c_out=2, hw=(5, 4), kernel=3, stride=(2, 1),
         padding=(3, 2), dilation=(1, 2), groups=2, padding_mode="replicate", bias=False),
    Case("conv2d_circular", "conv2d", n=2, c_in=2, c_out=2, hw=(4, 5), kernel=3, padding=(2, 1),
         padding_mode="circular"),
    # circular padding equal to the input size: wraps around exactly once
    Case("conv2d_circular_full_wrap", "conv2d", n=1, c_in=2, c_out=2, hw=(3, 4), kernel=(2, 3), stride=(1, 2),
         padding=(3, 2), dilation=(2, 1), padding_mode="circular"),
    Case("conv2d_same_reflect", "conv2d", n=2, c_in=2, c_out=2, hw=(5, 4), kernel=(4, 2), auto_padding="same",
         padding_mode="reflect"),
    Case("conv2d_same_replicate_dilated", "conv2d", n=1, c_in=2, c_out=2, hw=(5, 6), kernel=(2, 3),
         dilation=(3, 2), auto_padding="same", padding_mode="replicate"),
    Case("conv2d_same_circular", "conv2d", n=2, c_in=2, c_out=2, hw=(4, 5), kernel=(2, 4), auto_padding="same",
         padding_mode="circular"),
    Case("conv2d_unbatched", "conv2d", c_in=3, c_out=2, hw=(5, 4), kernel=(3, 2), stride=(2, 1),
         padding=(1, 1), unbatched=True),
    Case("conv2d_unbatched_reflect_groups", "conv2d", c_in=4, c_out=2, hw=(5, 6), kernel=3, padding=(1, 2),
         groups=2, padding_mode="reflect", unbatched=True, bias=False),

    # --- conv_transpose2d ---------------------------------------------------------------
    # The configuration of the original Python tests (N shrunk from 8 to 1: the output is large).
    Case("conv_transpose2d_seed", "conv_transpose2d", dtypes=("float32",), n=1, c_in=32, c_out=64,
         hw=(16, 16), kernel=(3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(3, 1)),
    Case("conv_transpose2d_basic", "conv_transpose2d", n=2, c_in=3, c_out=2, hw=(3, 4), kernel=3),
    Case("conv_transpose2d_nobias", "conv_transpose2d", n=2, c_in=2, c_out=2, hw=(4, 3), kernel=(2, 3),
         bias=False),
    Case("conv_transpose2d_stride_asym", "conv_transpose2d", n=2, c_in=2, c_out=2, hw=(3, 3), kernel=(3, 2),
         stride=(2, 3)),
    Case("conv_transpose2d_padding_asym", "conv_transpose2d", n=2, c_in=2, c_out=2, hw=(4, 4), kernel=(3, 4),
         padding=(1, 2)),
    Case("conv_transpose2d_dilation_asym", "conv_transpose2d", n=2, c_in=2, c_out=2, hw=(3, 3), kernel=(3, 2),
         dilation=(2, 3)),
    Case("conv_transpose2d_all_asym", "conv_transpose2d", n=2, c_in=2, c_out=2, hw=(3, 3), kernel=(3, 2),
         stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(2, 1)),
    # stride > kernel: output pixels between the kernel footprints get only the bias
    Case("conv_transpose2d_stride_gaps", "conv_transpose2d", n=2, c_in=2, c_out=2, hw=(2, 3), kernel=(1, 2),
         stride=(3, 3), output_padding=(2, 1)),
    # padding crops the full output on every side
    Case("conv_transpose2d_big_padding", "conv_transpose2d", n=2, c_in=2, c_out=2, hw=(4, 4), kernel=(3, 4),
         stride=(1, 2), padding=(2, 3)),
    Case("conv_transpose2d_groups2", "conv_transpose2d", n=2, c_in=4, c_out=6, hw=(3, 3), kernel=(2, 3),
         stride=(2, 1), padding=(0, 1), groups=2),
    Case("conv_transpose2d_groups2_nobias", "conv_transpose2d", n=1, c_in=6, c_out=4, hw=(3, 3), kernel=3,
         stride=2, dilation=(1, 2), output_padding=(1, 0), groups=2, bias=False),
    Case("conv_transpose2d_depthwise", "conv_transpose2d", n=2, c_in=3, c_out=3, hw=(3, 3), kernel=3,
         padding=1, groups=3),
    Case("conv_transpose2d_depthwise_mult2", "conv_transpose2d", n=2, c_in=3, c_out=6, hw=(2, 3), kernel=(2, 3),
         stride=(2, 1), dilation=(1, 2), groups=3),
    # output_padding >= stride but < dilation: the last output row / column gets only the bias
    Case("conv_transpose2d_outpad_dilation", "conv_transpose2d", n=2, c_in=2, c_out=2, hw=(3, 4), kernel=3,
         stride=1, dilation=2, output_padding=1),
    Case("conv_transpose2d_outpad_dilation_asym", "conv_transpose2d", n=2, c_in=2, c_out=2, hw=(3, 4),
         kernel=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(3, 1), output_padding=(2, 1)),
    # output_size picks output_padding = (1, 2)
    Case("conv_transpose2d_output_size", "conv_transpose2d", n=2, c_in=2, c_out=2, hw=(3, 3), kernel=(3, 2),
         stride=(2, 3), padding=(1, 0), output_size="max"),
    # output_size equal to the smallest size: output_padding = 0
    Case("conv_transpose2d_output_size_min", "conv_transpose2d", n=1, c_in=3, c_out=2, hw=(3, 4), kernel=3,
         stride=(3, 2), dilation=(1, 2), output_size="min", bias=False),
    Case("conv_transpose2d_unbatched", "conv_transpose2d", c_in=3, c_out=2, hw=(3, 3), kernel=(2, 3),
         stride=(2, 1), padding=(0, 1), output_padding=(1, 0), unbatched=True),
    Case("conv_transpose2d_unbatched_output_size", "conv_transpose2d", c_in=4, c_out=2, hw=(3, 3), kernel=2,
         stride=(2, 3), groups=2, output_size="max", unbatched=True),

    # --- unfold -------------------------------------------------------------------------
    Case("unfold_basic", "unfold", n=2, c_in=2, hw=(3, 4), kernel=(2, 3)),
    Case("unfold_stride_padding_dilation", "unfold", n=2, c_in=2, hw=(5, 4), kernel=(3, 2), stride=(2, 1),
         padding=(1, 2), dilation=(2, 1)),
    # stride > kernel: skipped pixels get a zero gradient
    Case("unfold_stride_gaps", "unfold", n=1, c_in=3, hw=(7, 8), kernel=(2, 1), stride=(3, 4), padding=(0, 1)),
    Case("unfold_unbatched", "unfold", c_in=2, hw=(5, 4), kernel=2, stride=(1, 2), padding=(1, 0),
         dilation=(1, 2), unbatched=True),

    # --- fold ---------------------------------------------------------------------------
    Case("fold_basic", "fold", n=2, c_in=2, output_size=(3, 4), kernel=(2, 2)),
    Case("fold_stride_padding_dilation", "fold", n=2, c_in=1, output_size=(6, 5), kernel=(3, 2), stride=(2, 1),
         padding=(1, 2), dilation=(1, 2)),
    # stride > kernel: some output pixels receive no block
    Case("fold_stride_gaps", "fold", n=1, c_in=2, output_size=(7, 6), kernel=(2, 2), stride=(3, 3)),
    Case("fold_unbatched", "fold", c_in=2, output_size=(5, 4), kernel=(2, 3), stride=(1, 2), padding=(1, 1),
         dilation=(2, 1), unbatched=True),
]


# ----------------------------------------------------------------------------- generation


def seed_for(name):
    return zlib.crc32(name.encode("utf-8"))


def randn(shape, dtype):
    return torch.randn(*shape, dtype=dtype)


def leaf(t):
    return t.detach().clone().requires_grad_(True)


def fmt(v):
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (tuple, list)):
        return " ".join(str(int(x)) for x in v)
    return str(v)


def build_conv2d(kw, dtype):
    n = kw.get("n")
    unbatched = kw.get("unbatched", False)
    c_in, c_out = kw["c_in"], kw["c_out"]
    kernel = pair(kw["kernel"])
    groups = kw.get("groups", 1)
    has_bias = kw.get("bias", True)
    auto = kw.get("auto_padding", "none")
    padding = pair(kw.get("padding", 0))
    params = {
        "kernel": kernel,
        "stride": pair(kw.get("stride", 1)),
        "padding": padding,
        "dilation": pair(kw.get("dilation", 1)),
        "groups": groups,
        "padding_mode": kw.get("padding_mode", "zeros"),
        "auto_padding": auto,
        "output_padding": (0, 0),
        "output_size": None,
        "bias": has_bias,
        "unbatched": unbatched,
    }
    in_shape = (c_in,) + tuple(kw["hw"]) if unbatched else (n, c_in) + tuple(kw["hw"])
    module = torch.nn.Conv2d(c_in, c_out, kernel, stride=params["stride"],
                             padding=(auto if auto != "none" else padding), dilation=params["dilation"],
                             groups=groups, bias=has_bias, padding_mode=params["padding_mode"], dtype=dtype)
    x = leaf(randn(in_shape, dtype))
    with torch.no_grad():
        module.weight.copy_(randn(module.weight.shape, dtype))
        if has_bias:
            module.bias.copy_(randn(module.bias.shape, dtype))
    out = module(x)
    grad_output = randn(out.shape, dtype)
    out.backward(grad_output)
    arrays = {"input": x, "weight": module.weight, "grad_output": grad_output, "output": out,
              "grad_input": x.grad, "grad_weight": module.weight.grad}
    if has_bias:
        arrays.update(bias=module.bias, grad_bias=module.bias.grad)
    return params, arrays


def build_conv_transpose2d(kw, dtype):
    n = kw.get("n")
    unbatched = kw.get("unbatched", False)
    c_in, c_out = kw["c_in"], kw["c_out"]
    kernel = pair(kw["kernel"])
    stride = pair(kw.get("stride", 1))
    padding = pair(kw.get("padding", 0))
    dilation = pair(kw.get("dilation", 1))
    output_padding = pair(kw.get("output_padding", 0))
    groups = kw.get("groups", 1)
    has_bias = kw.get("bias", True)
    hw = tuple(kw["hw"])
    in_shape = (c_in,) + hw if unbatched else (n, c_in) + hw

    output_size = None
    request = kw.get("output_size")
    if request is not None:
        assert output_padding == (0, 0)
        smallest = [(hw[a] - 1) * stride[a] - 2 * padding[a] + dilation[a] * (kernel[a] - 1) + 1 for a in (0, 1)]
        if request == "min":
            output_size = tuple(smallest)
        else:
            output_size = tuple(smallest[a] + stride[a] - 1 for a in (0, 1))

    params = {
        "kernel": kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": "zeros",
        "auto_padding": "none",
        "output_padding": output_padding,
        "output_size": output_size,
        "bias": has_bias,
        "unbatched": unbatched,
    }
    module = torch.nn.ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=padding,
                                      output_padding=output_padding, groups=groups, bias=has_bias,
                                      dilation=dilation, dtype=dtype)
    x = leaf(randn(in_shape, dtype))
    with torch.no_grad():
        module.weight.copy_(randn(module.weight.shape, dtype))
        if has_bias:
            module.bias.copy_(randn(module.bias.shape, dtype))
    out = module(x, output_size=list(output_size)) if output_size is not None else module(x)
    if output_size is not None:
        assert tuple(out.shape[-2:]) == output_size
    grad_output = randn(out.shape, dtype)
    out.backward(grad_output)
    arrays = {"input": x, "weight": module.weight, "grad_output": grad_output, "output": out,
              "grad_input": x.grad, "grad_weight": module.weight.grad}
    if has_bias:
        arrays.update(bias=module.bias, grad_bias=module.bias.grad)
    return params, arrays


def window_params(kw):
    return {
        "kernel": pair(kw["kernel"]),
        "stride": pair(kw.get("stride", 1)),
        "padding": pair(kw.get("padding", 0)),
        "dilation": pair(kw.get("dilation", 1)),
        "groups": 1,
        "padding_mode": "zeros",
        "auto_padding": "none",
        "output_padding": (0, 0),
        "output_size": None,
        "bias": False,
        "unbatched": kw.get("unbatched", False),
    }


def build_unfold(kw, dtype):
    params = window_params(kw)
    hw = tuple(kw["hw"])
    in_shape = (kw["c_in"],) + hw if params["unbatched"] else (kw["n"], kw["c_in"]) + hw
    x = leaf(randn(in_shape, dtype))
    out = F.unfold(x, params["kernel"], dilation=params["dilation"], padding=params["padding"],
                   stride=params["stride"])
    grad_output = randn(out.shape, dtype)
    out.backward(grad_output)
    return params, {"input": x, "grad_output": grad_output, "output": out, "grad_input": x.grad}


def build_fold(kw, dtype):
    params = window_params(kw)
    params["output_size"] = tuple(kw["output_size"])
    k, s, p, d = params["kernel"], params["stride"], params["padding"], params["dilation"]
    blocks = 1
    for a in (0, 1):
        blocks *= (params["output_size"][a] + 2 * p[a] - d[a] * (k[a] - 1) - 1) // s[a] + 1
    rows = kw["c_in"] * k[0] * k[1]
    in_shape = (rows, blocks) if params["unbatched"] else (kw["n"], rows, blocks)
    x = leaf(randn(in_shape, dtype))
    out = F.fold(x, params["output_size"], k, dilation=d, padding=p, stride=s)
    grad_output = randn(out.shape, dtype)
    out.backward(grad_output)
    return params, {"input": x, "grad_output": grad_output, "output": out, "grad_input": x.grad}


BUILDERS = {
    "conv2d": build_conv2d,
    "conv_transpose2d": build_conv_transpose2d,
    "unfold": build_unfold,
    "fold": build_fold,
}

PARAM_ORDER = ["op", "dtype", "kernel", "stride", "padding", "dilation", "groups", "padding_mode",
               "auto_padding", "output_padding", "output_size", "bias", "unbatched"]

SHORT = {"float32": "f32", "float64": "f64"}


def write_case(name, op, dtype_name, params, arrays):
    case_dir = os.path.join(DATA_DIR, name)
    os.makedirs(case_dir)
    params = dict(params, op=op, dtype=dtype_name)
    with open(os.path.join(case_dir, "params.txt"), "w") as f:
        for key in PARAM_ORDER:
            f.write(f"{key} {fmt(params[key])}\n")
    np_dtype = np.dtype("<f4") if dtype_name == "float32" else np.dtype("<f8")
    for key, tensor in arrays.items():
        array = np.ascontiguousarray(tensor.detach().numpy()).astype(np_dtype, copy=False)
        assert np.all(np.isfinite(array)), (name, key)
        np.save(os.path.join(case_dir, key + ".npy"), array)


def main():
    torch.set_num_threads(1)
    if os.path.isdir(DATA_DIR):
        shutil.rmtree(DATA_DIR)
    os.makedirs(DATA_DIR)
    names = []
    for case in CASES:
        for dtype_name in case.dtypes:
            name = f"{case.name}_{SHORT[dtype_name]}"
            torch.manual_seed(seed_for(name))
            params, arrays = BUILDERS[case.op](case.kw, DTYPES[dtype_name])
            write_case(name, case.op, dtype_name, params, arrays)
            names.append(name)
    assert len(names) == len(set(names))
    with open(os.path.join(DATA_DIR, "MANIFEST.txt"), "w") as f:
        for name in names:
            f.write(name + "\n")
    print(f"wrote {len(names)} cases to {DATA_DIR}")


if __name__ == "__main__":
    main()
