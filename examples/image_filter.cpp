// Classic image filters as convolutions with fixed weights: a Gaussian blur and Sobel edges,
// both with reflect padding so that the output keeps the input's size and the border is not
// darkened by zeros.
//
// Usage: image_filter [INPUT.pgm] [OUTPUT_DIR]
// Reads a greyscale PGM (by default the scene shipped in examples/data), writes
// OUTPUT_DIR/blurred.pgm and OUTPUT_DIR/edges.pgm, and checks both results against a direct loop
// over the definition (exit code 1 on a mismatch).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include <xconv/xconv.hpp>
#include <xtensor/xview.hpp>

#ifndef XCONV_EXAMPLE_DATA_DIR
#define XCONV_EXAMPLE_DATA_DIR "examples/data"
#endif

namespace
{
    using image = xt::xtensor<float, 4>;  // (1, C, H, W), values in [0, 1]

    // ------------------------------------------------------------------ PGM input / output

    image read_pgm(const std::string& path)
    {
        std::ifstream f(path, std::ios::binary);
        if (!f)
        {
            throw std::runtime_error("cannot open " + path);
        }
        auto token = [&]() {
            std::string t;
            char c;
            while (f.get(c))
            {
                if (c == '#')
                {
                    std::string comment;
                    std::getline(f, comment);
                }
                else if (std::isspace(static_cast<unsigned char>(c)))
                {
                    if (!t.empty())
                    {
                        break;
                    }
                }
                else
                {
                    t += c;
                }
            }
            return t;
        };
        const std::string magic = token();
        const std::size_t width = std::stoul(token()), height = std::stoul(token());
        const float maxval = std::stof(token());
        image img(std::array<std::size_t, 4>{1, 1, height, width});
        if (magic == "P5" && maxval <= 255)
        {
            std::vector<unsigned char> bytes(width * height);
            f.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
            if (static_cast<std::size_t>(f.gcount()) != bytes.size())
            {
                throw std::runtime_error(path + ": truncated PGM");
            }
            std::transform(bytes.begin(), bytes.end(), img.begin(), [&](unsigned char b) { return b / maxval; });
        }
        else if (magic == "P2")
        {
            for (auto& v : img)
            {
                v = std::stof(token()) / maxval;
            }
        }
        else
        {
            throw std::runtime_error(path + ": not an 8-bit PGM (P5) or plain PGM (P2) file");
        }
        return img;
    }

    /// Writes channel 0 of img, mapping [lo, hi] to [0, 255].
    void write_pgm(const std::string& path, const image& img, float lo, float hi)
    {
        const std::size_t h = img.shape()[2], w = img.shape()[3];
        std::vector<unsigned char> bytes(h * w);
        for (std::size_t y = 0; y < h; ++y)
        {
            for (std::size_t x = 0; x < w; ++x)
            {
                const float v = std::clamp((img(0, 0, y, x) - lo) / (hi - lo), 0.0f, 1.0f);
                bytes[y * w + x] = static_cast<unsigned char>(std::lround(v * 255.0f));
            }
        }
        std::ofstream f(path, std::ios::binary);
        f << "P5\n" << w << ' ' << h << "\n255\n";
        f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        if (!f)
        {
            throw std::runtime_error("cannot write " + path);
        }
    }

    // ------------------------------------------------------------------ the filters

    /// A normalised 2-D Gaussian of the given size and standard deviation, as a (1, 1, k, k) weight.
    xt::xtensor<float, 4> gaussian_kernel(std::size_t k, double sigma)
    {
        xt::xtensor<float, 4> g(std::array<std::size_t, 4>{1, 1, k, k});
        const double c = (static_cast<double>(k) - 1) / 2;
        double sum = 0;
        for (std::size_t i = 0; i < k; ++i)
        {
            for (std::size_t j = 0; j < k; ++j)
            {
                const double d2 = (i - c) * (i - c) + (j - c) * (j - c);
                sum += std::exp(-d2 / (2 * sigma * sigma));
            }
        }
        for (std::size_t i = 0; i < k; ++i)
        {
            for (std::size_t j = 0; j < k; ++j)
            {
                const double d2 = (i - c) * (i - c) + (j - c) * (j - c);
                g(0, 0, i, j) = static_cast<float>(std::exp(-d2 / (2 * sigma * sigma)) / sum);
            }
        }
        return g;
    }

    /// The two Sobel derivative filters as one (2, 1, 3, 3) weight: channel 0 responds to
    /// horizontal change (d/dx), channel 1 to vertical change (d/dy).
    xt::xtensor<float, 4> sobel_kernels()
    {
        return {{{{-1, 0, 1}, {-2, 0, 2}, {-1, 0, 1}}}, {{{-1, -2, -1}, {0, 0, 0}, {1, 2, 1}}}};
    }

    xconv::conv2d_options reflect_same(std::int64_t k)
    {
        xconv::conv2d_options o;
        o.padding = k / 2;
        o.padding_mode = xconv::padding_mode::reflect;
        return o;
    }

    // ------------------------------------------------------------------ the check

    /// Reflect padding's source index: -1 -> 1, n -> n - 2.
    std::ptrdiff_t reflect(std::ptrdiff_t i, std::ptrdiff_t n)
    {
        return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
    }

    /// out(co, y, x) = sum over (i, j) of in(0, reflect(y + i - p), reflect(x + j - p)) * w(co, 0, i, j)
    image direct_conv_reflect(const image& in, const xt::xtensor<float, 4>& w)
    {
        const auto h = static_cast<std::ptrdiff_t>(in.shape()[2]), wd = static_cast<std::ptrdiff_t>(in.shape()[3]);
        const auto k = static_cast<std::ptrdiff_t>(w.shape()[2]), p = k / 2;
        image out = xt::zeros<float>({std::size_t(1), w.shape()[0], in.shape()[2], in.shape()[3]});
        for (std::size_t co = 0; co < w.shape()[0]; ++co)
        {
            for (std::ptrdiff_t y = 0; y < h; ++y)
            {
                for (std::ptrdiff_t x = 0; x < wd; ++x)
                {
                    double acc = 0;
                    for (std::ptrdiff_t i = 0; i < k; ++i)
                    {
                        for (std::ptrdiff_t j = 0; j < k; ++j)
                        {
                            acc += static_cast<double>(in(0, 0, reflect(y + i - p, h), reflect(x + j - p, wd)))
                                   * static_cast<double>(w(co, 0, i, j));
                        }
                    }
                    out(0, co, y, x) = static_cast<float>(acc);
                }
            }
        }
        return out;
    }

    bool agrees(const char* name, const image& got, const image& want)
    {
        if (got.shape() != want.shape())
        {
            std::printf("%s: MISMATCH: shapes differ\n", name);
            return false;
        }
        float worst = 0;
        bool ok = true;
        for (std::size_t i = 0; i < got.size(); ++i)
        {
            const float err = std::abs(got.flat(i) - want.flat(i));
            worst = std::max(worst, err);
            ok = ok && err <= 1e-4f * std::max(1.0f, std::abs(want.flat(i)));
        }
        std::printf("%s: max |xconv - direct loop| = %.2g (%s)\n", name, static_cast<double>(worst),
                    ok ? "agrees" : "MISMATCH");
        return ok;
    }
}  // namespace

int main(int argc, char** argv)
{
    const std::string input = argc > 1 ? argv[1] : XCONV_EXAMPLE_DATA_DIR "/scene.pgm";
    const std::string out_dir = argc > 2 ? argv[2] : ".";
    try
    {
        const image img = read_pgm(input);
        std::printf("read %s: %zu x %zu\n", input.c_str(), img.shape()[3], img.shape()[2]);

        // Gaussian blur: one 5x5 filter, sigma 1, no bias.
        xconv::Conv2d<float> blur(1, 1, 5, reflect_same(5), /*bias=*/false);
        blur.set_weight(gaussian_kernel(5, 1.0));
        const image blurred = blur.forward(img);

        // Sobel: two 3x3 filters in one layer, then the gradient magnitude per pixel.
        xconv::Conv2d<float> sobel(1, 2, 3, reflect_same(3), /*bias=*/false);
        sobel.set_weight(sobel_kernels());
        const image d = sobel.forward(img);
        const auto dx = xt::view(d, xt::all(), xt::range(0, 1), xt::all(), xt::all());
        const auto dy = xt::view(d, xt::all(), xt::range(1, 2), xt::all(), xt::all());
        const image magnitude = xt::sqrt(dx * dx + dy * dy);
        const float max_magnitude = xt::amax(magnitude)();

        write_pgm(out_dir + "/blurred.pgm", blurred, 0.0f, 1.0f);
        write_pgm(out_dir + "/edges.pgm", magnitude, 0.0f, max_magnitude);
        std::printf("wrote %s/blurred.pgm and %s/edges.pgm (edge strength up to %.3f)\n", out_dir.c_str(),
                    out_dir.c_str(), static_cast<double>(max_magnitude));

        const bool ok = agrees("blur", blurred, direct_conv_reflect(img, gaussian_kernel(5, 1.0)))
                        & agrees("sobel", d, direct_conv_reflect(img, sobel_kernels()));
        if (!ok)
        {
            return 1;
        }
        std::printf("both filters agree with the direct loop\n");
        return 0;
    }
    catch (const std::exception& e)
    {
        std::fprintf(stderr, "image_filter: %s\n", e.what());
        return 1;
    }
}
