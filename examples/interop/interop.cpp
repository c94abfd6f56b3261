// Loads a model trained or built in PyTorch into xconv's layers and checks that both compute
// the same thing, forward and backward. examples/interop/make_torch_model.py writes the files.
//
// Usage: interop DIR     (DIR holds the .npy files; exit 77 when they are missing)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include <xconv/xconv.hpp>
#include <xtensor/xnpy.hpp>

namespace
{
    template <std::size_t N>
    xt::xtensor<float, N> load(const std::string& path)
    {
        return xt::xtensor<float, N>(xt::load_npy<float>(path));
    }

    /// |got - want| <= 1e-4 + 1e-4 * |want| everywhere; prints the largest difference.
    template <class A, class B>
    bool close(const char* what, const A& got, const B& want)
    {
        if (got.shape().size() != want.shape().size()
            || !std::equal(got.shape().begin(), got.shape().end(), want.shape().begin()))
        {
            std::printf("  %-18s MISMATCH: shapes differ\n", what);
            return false;
        }
        double worst = 0;
        bool ok = true;
        for (std::size_t i = 0; i < got.size(); ++i)
        {
            const double g = got.flat(i), w = want.flat(i), d = std::abs(g - w);
            worst = std::max(worst, d);
            ok = ok && d <= 1e-4 + 1e-4 * std::abs(w);
        }
        std::printf("  %-18s max |xconv - torch| = %.2g  %s\n", what, worst, ok ? "ok" : "MISMATCH");
        return ok;
    }
}  // namespace

int main(int argc, char** argv)
{
    if (argc != 2)
    {
        std::fprintf(stderr, "usage: interop DIR (written by make_torch_model.py)\n");
        return 2;
    }
    const std::string dir = std::string(argv[1]) + "/";
    if (!std::ifstream(dir + "conv_weight.npy"))
    {
        std::printf("skipping: %sconv_weight.npy does not exist (run make_torch_model.py first)\n", dir.c_str());
        return 77;
    }

    // The same layers as the PyTorch model, then its parameters.
    xconv::conv2d_options down;
    down.stride = 2;
    down.padding = 1;
    down.padding_mode = xconv::padding_mode::reflect;
    xconv::Conv2d<float> conv(3, 8, 3, down);
    conv.load(dir + "conv_");  // conv_weight.npy, conv_bias.npy

    xconv::conv_transpose2d_options up_options;
    up_options.stride = 2;
    up_options.padding = 1;
    up_options.output_padding = 1;
    up_options.groups = 2;
    xconv::ConvTranspose2d<float> up(8, 4, 3, up_options);
    up.load(dir + "up_");  // up_weight.npy, up_bias.npy

    // Forward: conv -> ReLU -> transposed conv.
    const auto x = load<4>(dir + "input.npy");
    const xt::xtensor<float, 4> h = conv.forward(x);
    const xt::xtensor<float, 4> y = up.forward(xt::xtensor<float, 4>(xt::maximum(h, 0.0f)));

    // Backward of sum(y * g): through the transposed conv, the ReLU and the conv.
    const auto g = load<4>(dir + "grad_output.npy");
    const xt::xtensor<float, 4> grad_relu = up.backward(g);
    const xt::xtensor<float, 4> grad_h = xt::where(h > 0.0f, grad_relu, 0.0f);
    const xt::xtensor<float, 4> grad_x = conv.backward(grad_h);

    std::printf("xconv %s against PyTorch (tolerance 1e-4 absolute + 1e-4 relative):\n", xconv::version);
    bool ok = close("output", y, load<4>(dir + "output.npy"));
    ok = close("grad input", grad_x, load<4>(dir + "grad_input.npy")) && ok;
    ok = close("conv weight grad", conv.weight_grad(), load<4>(dir + "conv_weight_grad.npy")) && ok;
    ok = close("conv bias grad", conv.bias_grad(), load<1>(dir + "conv_bias_grad.npy")) && ok;
    ok = close("up weight grad", up.weight_grad(), load<4>(dir + "up_weight_grad.npy")) && ok;
    ok = close("up bias grad", up.bias_grad(), load<1>(dir + "up_bias_grad.npy")) && ok;
    std::printf(ok ? "xconv and PyTorch agree\n" : "FAIL: xconv and PyTorch disagree\n");
    return ok ? 0 : 1;
}
