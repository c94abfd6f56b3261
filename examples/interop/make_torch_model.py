#!/usr/bin/env python3
"""Builds a small PyTorch model, runs it forward and backward, and saves everything as .npy.

The model is the one examples/interop/interop.cpp rebuilds with xconv's layers:

    Conv2d(3, 8, 3, stride=2, padding=1, padding_mode="reflect")
    ReLU
    ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1, groups=2)

Files written to OUT_DIR (all float32):
    conv_weight.npy, conv_bias.npy   the Conv2d's parameters, (8, 3, 3, 3) and (8,)
    up_weight.npy, up_bias.npy       the ConvTranspose2d's parameters, (8, 2, 3, 3) and (4,)
    input.npy                        a batch of inputs, (2, 3, 16, 16)
    output.npy                       the model's output for it, (2, 4, 16, 16)
    grad_output.npy                  a random upstream gradient g, shaped like the output
    grad_input.npy, conv_weight_grad.npy, conv_bias_grad.npy, up_weight_grad.npy, up_bias_grad.npy
                                     the gradients of sum(output * g)

Usage: make_torch_model.py OUT_DIR    (exits with 77 when torch or numpy cannot be imported)
"""
import os
import sys

try:
    import numpy as np
    import torch
except ImportError as e:  # the interop test is skipped, not failed, on a machine without torch
    print("skipping: %s" % e)
    sys.exit(77)


def save(out_dir, name, tensor):
    np.save(os.path.join(out_dir, name + ".npy"), tensor.detach().numpy().astype(np.float32))


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, padding_mode="reflect")
    up = torch.nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1, groups=2)
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), up)

    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    y = model(x)
    g = torch.randn_like(y)
    (y * g).sum().backward()

    save(out_dir, "conv_weight", conv.weight)
    save(out_dir, "conv_bias", conv.bias)
    save(out_dir, "up_weight", up.weight)
    save(out_dir, "up_bias", up.bias)
    save(out_dir, "input", x)
    save(out_dir, "output", y)
    save(out_dir, "grad_output", g)
    save(out_dir, "grad_input", x.grad)
    save(out_dir, "conv_weight_grad", conv.weight.grad)
    save(out_dir, "conv_bias_grad", conv.bias.grad)
    save(out_dir, "up_weight_grad", up.weight.grad)
    save(out_dir, "up_bias_grad", up.bias.grad)
    print("torch %s: wrote the model, an input (%s), its output (%s) and gradients to %s"
          % (torch.__version__, tuple(x.shape), tuple(y.shape), out_dir))


if __name__ == "__main__":
    main()
