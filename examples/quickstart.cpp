#include <array>
#include <iostream>
#include <stdexcept>

#include <xconv/xconv.hpp>
#include <xtensor/xio.hpp>

int main()
{
    // A batch of one 3x3 image with one channel (N, C, H, W) and one 2x2 filter (C_out, C_in, kh, kw).
    xt::xtensor<float, 4> x = {{{{0, 1, 2}, {3, 4, 5}, {6, 7, 8}}}};
    xt::xtensor<float, 4> w = {{{{0, 1}, {2, 3}}}};

    // Convolution: unfold the input into columns, multiply by the weight matrix.
    xt::xtensor<float, 4> y = xconv::conv2d(x, w);
    std::cout << "conv2d:\n" << y << "\n";  // {{{{19, 25}, {37, 43}}}}

    // Transposed convolution: multiply, then fold the patches back, summing where they overlap.
    xt::xtensor<float, 4> small = {{{{0, 1}, {2, 3}}}};
    std::cout << "conv_transpose2d:\n" << xconv::conv_transpose2d(small, w) << "\n";  // centre: 4

    // Layers own their parameters and have hand-written backward passes.
    xconv::manual_seed(42);
    xconv::conv2d_options options;
    options.padding = 1;
    xconv::Conv2d<float> conv(1, 4, 3, options);  // 1 -> 4 channels, 3x3 kernel, 'same' size
    xt::xtensor<float, 4> out = conv.forward(x);   // (1, 4, 3, 3)
    xt::xtensor<float, 4> grad_out = xt::ones_like(out);
    xt::xtensor<float, 4> grad_x = conv.backward(grad_out);  // dL/dx for L = sum(out)
    std::cout << "dL/dw at the centre tap: " << conv.weight_grad()(0, 0, 1, 1)  // 0 + 1 + ... + 8 = 36
              << ", dL/db: " << conv.bias_grad()(0) << "\n";                     // 9 output pixels
    for (auto& p : conv.parameters())
    {
        p.value -= 0.01f * p.grad;  // one step of plain gradient descent
    }

    // Invalid arguments throw std::invalid_argument naming the values involved.
    try
    {
        xconv::conv2d(x, xt::xtensor<float, 4>(std::array<std::size_t, 4>{1, 2, 2, 2}));
    }
    catch (const std::invalid_argument& e)
    {
        std::cout << "error: " << e.what() << "\n";
    }
    return grad_x.shape() == x.shape() ? 0 : 1;
}
