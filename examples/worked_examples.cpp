// The two pictures this library grew from, computed step by step with xconv's own pieces:
//
//   1. convolution            = unfold (im2col)  -> matrix product
//   2. transposed convolution = matrix product   -> fold (col2im)
//
// Every number printed comes from xconv::unfold / xconv::fold and a plain matrix product; each
// result is checked against xconv::conv2d / xconv::conv_transpose2d and against a direct loop
// over the definition. The program exits non-zero if anything disagrees.
#include <cstddef>
#include <cstdio>
#include <string>

#include <xconv/xconv.hpp>

namespace
{
    int failures = 0;

    void check(bool ok, const std::string& what)
    {
        if (!ok)
        {
            std::printf("MISMATCH: %s\n", what.c_str());
            ++failures;
        }
    }

    // Prints a (C = 1, H, W) tensor as a grid of integers.
    void print_plane(const char* title, const xt::xtensor<float, 3>& t)
    {
        std::printf("%s (%zu x %zu):\n", title, t.shape()[1], t.shape()[2]);
        for (std::size_t i = 0; i < t.shape()[1]; ++i)
        {
            std::printf("    ");
            for (std::size_t j = 0; j < t.shape()[2]; ++j)
            {
                std::printf("%4g", static_cast<double>(t(0, i, j)));
            }
            std::printf("\n");
        }
    }

    // Prints a (rows, L) column matrix: one column per sliding block, one row per kernel tap.
    void print_columns(const char* title, const xt::xtensor<float, 2>& cols, std::size_t blocks_w)
    {
        std::printf("%s (%zu x %zu): one column per block, one row per kernel tap\n", title, cols.shape()[0],
                    cols.shape()[1]);
        std::printf("            ");
        for (std::size_t l = 0; l < cols.shape()[1]; ++l)
        {
            std::printf("  (%zu,%zu)", l / blocks_w, l % blocks_w);
        }
        std::printf("\n");
        for (std::size_t r = 0; r < cols.shape()[0]; ++r)
        {
            std::printf("    tap %zu   ", r);
            for (std::size_t l = 0; l < cols.shape()[1]; ++l)
            {
                std::printf("%7g", static_cast<double>(cols(r, l)));
            }
            std::printf("\n");
        }
    }

    void convolution()
    {
        std::printf("== 1. Convolution: unfold, then a matrix product ==\n\n");
        const xt::xtensor<float, 3> x = {{{0, 1, 2}, {3, 4, 5}, {6, 7, 8}}};
        const xt::xtensor<float, 4> w = {{{{0, 1}, {2, 3}}}};
        print_plane("input", x);
        print_plane("kernel", xt::xtensor<float, 3>{{{0, 1}, {2, 3}}});

        // Step 1: every 2x2 window of the input becomes one column.
        const xt::xtensor<float, 2> cols = xconv::unfold(x, 2);
        std::printf("\nstep 1, xconv::unfold(input, kernel_size = 2):\n");
        print_columns("columns", cols, 2);

        // Step 2: the kernel, flattened to a row [0 1 2 3], times the columns.
        std::printf("\nstep 2, kernel row [0 1 2 3] x columns, one dot product per block:\n");
        xt::xtensor<float, 3> y = xt::zeros<float>({std::size_t(1), std::size_t(2), std::size_t(2)});
        for (std::size_t l = 0; l < cols.shape()[1]; ++l)
        {
            float sum = 0;
            std::string terms;
            for (std::size_t r = 0; r < cols.shape()[0]; ++r)
            {
                const float k = w(0, 0, r / 2, r % 2);
                sum += k * cols(r, l);
                char buf[48];
                std::snprintf(buf, sizeof buf, "%s%g·%g", r ? " + " : "", static_cast<double>(k),
                              static_cast<double>(cols(r, l)));
                terms += buf;
            }
            y(0, l / 2, l % 2) = sum;
            std::printf("    block (%zu,%zu): %s = %g\n", l / 2, l % 2, terms.c_str(), static_cast<double>(sum));
        }

        // Step 3: the row of results, reshaped to the output grid.
        std::printf("\nstep 3, reshape the results to the 2x2 output grid:\n");
        print_plane("output", y);

        // The same through the library's conv2d and through the definition.
        const xt::xtensor<float, 3> y_lib = xconv::conv2d(x, w);
        for (std::size_t i = 0; i < 2; ++i)
        {
            for (std::size_t j = 0; j < 2; ++j)
            {
                float direct = 0;
                for (std::size_t a = 0; a < 2; ++a)
                {
                    for (std::size_t b = 0; b < 2; ++b)
                    {
                        direct += x(0, i + a, j + b) * w(0, 0, a, b);
                    }
                }
                check(y(0, i, j) == direct, "unfold x matmul vs the definition");
                check(y_lib(0, i, j) == direct, "xconv::conv2d vs the definition");
            }
        }
        const float expected[2][2] = {{19, 25}, {37, 43}};
        for (std::size_t i = 0; i < 2; ++i)
        {
            for (std::size_t j = 0; j < 2; ++j)
            {
                check(y(0, i, j) == expected[i][j], "output vs [[19, 25], [37, 43]]");
            }
        }
        std::printf("xconv::conv2d(input, kernel) gives the same: [[%g, %g], [%g, %g]]\n\n",
                    static_cast<double>(y_lib(0, 0, 0)), static_cast<double>(y_lib(0, 0, 1)),
                    static_cast<double>(y_lib(0, 1, 0)), static_cast<double>(y_lib(0, 1, 1)));
    }

    void transposed_convolution()
    {
        std::printf("== 2. Transposed convolution: a matrix product, then fold ==\n\n");
        const xt::xtensor<float, 3> x = {{{0, 1}, {2, 3}}};
        const xt::xtensor<float, 4> w = {{{{0, 1}, {2, 3}}}};
        print_plane("input", x);
        print_plane("kernel", xt::xtensor<float, 3>{{{0, 1}, {2, 3}}});

        // Step 1: each input value times the whole kernel gives one 2x2 patch, stored as a column:
        // columns [taps, L] = kernel column [taps, 1] x input row [1, L].
        std::printf("\nstep 1, every input value times the kernel gives a 2x2 patch:\n");
        xt::xtensor<float, 2> cols = xt::zeros<float>({std::size_t(4), std::size_t(4)});
        for (std::size_t l = 0; l < 4; ++l)
        {
            const float v = x(0, l / 2, l % 2);
            std::string terms;
            for (std::size_t r = 0; r < 4; ++r)
            {
                const float k = w(0, 0, r / 2, r % 2);
                cols(r, l) = k * v;
                char buf[48];
                std::snprintf(buf, sizeof buf, "%s%gx%g=%g", r ? ", " : "", static_cast<double>(k),
                              static_cast<double>(v), static_cast<double>(cols(r, l)));
                terms += buf;
            }
            std::printf("    input (%zu,%zu) = %g: %s -> patch [[%g, %g], [%g, %g]]\n", l / 2, l % 2,
                        static_cast<double>(v), terms.c_str(), static_cast<double>(cols(0, l)),
                        static_cast<double>(cols(1, l)), static_cast<double>(cols(2, l)),
                        static_cast<double>(cols(3, l)));
        }
        print_columns("columns", cols, 2);

        // Step 2: fold puts each patch back where its input value sits, stride 1, and sums overlaps.
        const xt::xtensor<float, 3> y = xconv::fold(cols, {3, 3}, 2);
        std::printf("\nstep 2, xconv::fold(columns, output_size = 3x3, kernel_size = 2) sums the overlapping patches:\n");
        print_plane("output", y);

        // Which patch values land on each output pixel: pixel (i, j) receives tap (i - a, j - b) of
        // the patch of input (a, b).
        for (std::size_t i = 0; i < 3; ++i)
        {
            for (std::size_t j = 0; j < 3; ++j)
            {
                std::string terms;
                float sum = 0;
                for (std::size_t l = 0; l < 4; ++l)
                {
                    const std::size_t a = l / 2, b = l % 2;
                    if (i >= a && i - a < 2 && j >= b && j - b < 2)
                    {
                        const float v = cols((i - a) * 2 + (j - b), l);
                        sum += v;
                        char buf[24];
                        std::snprintf(buf, sizeof buf, "%s%g", terms.empty() ? "" : " + ", static_cast<double>(v));
                        terms += buf;
                    }
                }
                check(y(0, i, j) == sum, "fold vs the sum of the overlapping patch values");
                std::printf("    output (%zu,%zu) = %s = %g%s\n", i, j, terms.c_str(), static_cast<double>(sum),
                            i == 1 && j == 1 ? "   <- the centre" : "");
            }
        }

        const xt::xtensor<float, 3> y_lib = xconv::conv_transpose2d(x, w);
        const float expected[3][3] = {{0, 0, 1}, {0, 4, 6}, {4, 12, 9}};
        for (std::size_t i = 0; i < 3; ++i)
        {
            for (std::size_t j = 0; j < 3; ++j)
            {
                check(y(0, i, j) == expected[i][j], "fold output vs [[0, 0, 1], [0, 4, 6], [4, 12, 9]]");
                check(y_lib(0, i, j) == expected[i][j], "xconv::conv_transpose2d vs [[0, 0, 1], [0, 4, 6], [4, 12, 9]]");
            }
        }
        std::printf("xconv::conv_transpose2d(input, kernel) gives the same; its centre value is %g\n",
                    static_cast<double>(y_lib(0, 1, 1)));
    }
}  // namespace

int main()
{
    convolution();
    transposed_convolution();
    if (failures != 0)
    {
        std::printf("%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("\nall checks passed\n");
    return 0;
}
