// The two small examples the project started from, with every expected number worked out by hand.
//
// Convolution: input 0..8 as a 3x3 image, kernel 0..3 as 2x2, no padding, stride 1:
//     0 1 2                         out(0,0) = 0*0 + 1*1 + 2*3 + 3*4 = 19
//     3 4 5   (*)  0 1      ->      out(0,1) = 0*1 + 1*2 + 2*4 + 3*5 = 25
//     6 7 8        2 3              out(1,0) = 0*3 + 1*4 + 2*6 + 3*7 = 37
//                                   out(1,1) = 0*4 + 1*5 + 2*7 + 3*8 = 43
//
// Transposed convolution: input [[0, 1], [2, 3]], kernel [[0, 1], [2, 3]]: every input value
// stamps value * kernel into the 3x3 output at its own offset, overlaps add up:
//     from 1 at (0,1): (0,1)+=0 (0,2)+=1 (1,1)+=2 (1,2)+=3
//     from 2 at (1,0): (1,0)+=0 (1,1)+=2 (2,0)+=4 (2,1)+=6
//     from 3 at (1,1): (1,1)+=0 (1,2)+=3 (2,1)+=6 (2,2)+=9
//     (0 at (0,0) adds nothing)
//   =>  0  0  1
//       0  4  6      centre 4 = 0 + 2 + 2 + 0
//       4 12  9
#include <array>
#include <cstddef>

#include <catch2/catch.hpp>

#include <xtensor/xtensor.hpp>

#include <xconv/xconv.hpp>

namespace
{
    template <class T>
    xt::xtensor<T, 4> iota4(std::size_t n, std::size_t c, std::size_t h, std::size_t w)
    {
        xt::xtensor<T, 4> t(std::array<std::size_t, 4>{n, c, h, w});
        T v = 0;
        for (auto& e : t)
        {
            e = v;
            v += 1;
        }
        return t;
    }

    template <class A, class B>
    void check_exact(const A& got, const B& expected)
    {
        REQUIRE(got.shape().size() == expected.shape().size());
        for (std::size_t d = 0; d < got.shape().size(); ++d)
        {
            REQUIRE(got.shape()[d] == expected.shape()[d]);
        }
        auto e = expected.cbegin();
        std::size_t k = 0;
        for (auto g = got.cbegin(); g != got.cend(); ++g, ++e, ++k)
        {
            INFO("flat index " << k);
            // Small integers: every path computes them exactly.
            CHECK(static_cast<double>(*g) == static_cast<double>(*e));
        }
    }
}  // namespace

TEMPLATE_TEST_CASE("worked example: 3x3 input convolved with a 2x2 kernel", "[examples]", float, double)
{
    using T = TestType;
    const auto x = iota4<T>(1, 1, 3, 3);
    const auto w = iota4<T>(1, 1, 2, 2);

    const xt::xtensor<T, 4> expected{{{{19, 25}, {37, 43}}}};
    check_exact(xconv::conv2d(x, w), expected);

    // The blocks, one column each (block order (0,0), (0,1), (1,0), (1,1)); row = kernel tap.
    const xt::xtensor<T, 3> expected_columns{{{0, 1, 3, 4},  // tap (0,0)
                                              {1, 2, 4, 5},  // tap (0,1)
                                              {3, 4, 6, 7},  // tap (1,0)
                                              {4, 5, 7, 8}}};  // tap (1,1)
    const auto columns = xconv::unfold(x, 2);
    check_exact(columns, expected_columns);
    // Block (1,0) is the highlighted patch 3, 4, 6, 7 that gives 37.
    CHECK(columns(0, 0, 2) == 3);
    CHECK(columns(0, 1, 2) == 4);
    CHECK(columns(0, 2, 2) == 6);
    CHECK(columns(0, 3, 2) == 7);

    // Unbatched input and a bias shift every output by the bias.
    const xt::xtensor<T, 3> x3{{{0, 1, 2}, {3, 4, 5}, {6, 7, 8}}};
    const xt::xtensor<T, 1> b{10};
    const xt::xtensor<T, 3> expected_biased{{{29, 35}, {47, 53}}};
    check_exact(xconv::conv2d(x3, w, b), expected_biased);

    // The layer computes the same once given this kernel.
    xconv::Conv2d<T> layer(1, 1, 2, {}, false);
    layer.set_weight(w);
    check_exact(layer.forward(x), expected);
}

TEMPLATE_TEST_CASE("worked example: 2x2 input, transposed convolution with a 2x2 kernel", "[examples]", float,
                   double)
{
    using T = TestType;
    const auto x = iota4<T>(1, 1, 2, 2);
    const auto w = iota4<T>(1, 1, 2, 2);

    const xt::xtensor<T, 4> expected{{{{0, 0, 1}, {0, 4, 6}, {4, 12, 9}}}};
    const auto y = xconv::conv_transpose2d(x, w);
    check_exact(y, expected);
    CHECK(y(0, 0, 1, 1) == 4);

    // Each input value times the kernel, one column per input pixel, folded into 3x3.
    const xt::xtensor<T, 3> stamps{{{0, 0, 0, 0},  // kernel tap 0 (value 0) times inputs 0, 1, 2, 3
                                    {0, 1, 2, 3},  // tap 1
                                    {0, 2, 4, 6},  // tap 2
                                    {0, 3, 6, 9}}};  // tap 3
    check_exact(xconv::fold(stamps, {3, 3}, 2), expected);

    xconv::ConvTranspose2d<T> layer(1, 1, 2, {}, false);
    layer.set_weight(w);
    check_exact(layer.forward(x), expected);
}

TEST_CASE("worked example: gradients of the 3x3 convolution", "[examples]")
{
    // L = sum(out): dL/dw(i,j) = sum of the 2x2 block of inputs shifted by (i,j);
    // dL/dx(y,x) = sum of the kernel taps that touch (y,x).
    const auto x = iota4<double>(1, 1, 3, 3);
    const auto w = iota4<double>(1, 1, 2, 2);
    const xt::xtensor<double, 4> ones(std::array<std::size_t, 4>{1, 1, 2, 2}, 1.0);
    const auto g = xconv::conv2d_backward(ones, x, w);
    // w(0,0): 0+1+3+4 = 8, w(0,1): 1+2+4+5 = 12, w(1,0): 3+4+6+7 = 20, w(1,1): 4+5+7+8 = 24
    check_exact(g.grad_weight, xt::xtensor<double, 4>{{{{8, 12}, {20, 24}}}});
    // corners touch one tap, edges two, the centre all four (0+1+2+3 = 6)
    check_exact(g.grad_input, xt::xtensor<double, 4>{{{{0, 1, 1}, {2, 6, 4}, {2, 5, 3}}}});
    check_exact(g.grad_bias, xt::xtensor<double, 1>{4});
}
