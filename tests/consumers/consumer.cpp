// The program every consumer project builds: one conv2d call with default options on the
// seed's 3x3 example, checked against numbers computed by hand.
#include <cstdio>
#include <xconv/xconv.hpp>

#ifndef XCONV_CONSUMER_KIND
#define XCONV_CONSUMER_KIND "unknown"
#endif

int main()
{
    const xt::xtensor<float, 4> x = {{{{0, 1, 2}, {3, 4, 5}, {6, 7, 8}}}};
    const xt::xtensor<float, 4> w = {{{{0, 1}, {2, 3}}}};
    const xt::xtensor<float, 4> y = xconv::conv2d(x, w);

    // y(i, j) = sum over (a, b) of x(i + a, j + b) * w(a, b):
    //   y(0, 0) = 0*0 + 1*1 + 3*2 + 4*3 = 19     y(0, 1) = 1*0 + 2*1 + 4*2 + 5*3 = 25
    //   y(1, 0) = 3*0 + 4*1 + 6*2 + 7*3 = 37     y(1, 1) = 4*0 + 5*1 + 7*2 + 8*3 = 43
    const float expected[2][2] = {{19.f, 25.f}, {37.f, 43.f}};

    const auto& s = y.shape();
    if (s[0] != 1 || s[1] != 1 || s[2] != 2 || s[3] != 2)
    {
        std::printf("FAIL: expected shape (1, 1, 2, 2), got (%zu, %zu, %zu, %zu)\n", s[0], s[1], s[2], s[3]);
        return 1;
    }
    for (std::size_t i = 0; i < 2; ++i)
    {
        for (std::size_t j = 0; j < 2; ++j)
        {
            if (y(0, 0, i, j) != expected[i][j])
            {
                std::printf("FAIL: y(0, 0, %zu, %zu) = %g, expected %g\n", i, j, static_cast<double>(y(0, 0, i, j)),
                            static_cast<double>(expected[i][j]));
                return 1;
            }
        }
    }
    std::printf("xconv %s via %s: conv2d gives [[19, 25], [37, 43]]\n", xconv::version, XCONV_CONSUMER_KIND);
    return 0;
}
