// Invalid arguments: every one throws std::invalid_argument, and the message names the offending
// values. Also the edge cases that must not throw (an empty batch).
#include <array>
#include <cstddef>
#include <stdexcept>

#include <catch2/catch.hpp>

#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include <xconv/xconv.hpp>

namespace
{
    using Catch::Contains;

    xt::xtensor<double, 4> t4(std::size_t a, std::size_t b, std::size_t c, std::size_t d)
    {
        return xt::xtensor<double, 4>(std::array<std::size_t, 4>{a, b, c, d}, 0.5);
    }

    xt::xtensor<double, 3> t3(std::size_t a, std::size_t b, std::size_t c)
    {
        return xt::xtensor<double, 3>(std::array<std::size_t, 3>{a, b, c}, 0.5);
    }

    xt::xtensor<double, 1> t1(std::size_t a)
    {
        return xt::xtensor<double, 1>(std::array<std::size_t, 1>{a}, 0.5);
    }

    xconv::conv2d_options with_stride(xconv::size2 s)
    {
        xconv::conv2d_options o;
        o.stride = s;
        return o;
    }

    xconv::conv2d_options with_dilation(xconv::size2 d)
    {
        xconv::conv2d_options o;
        o.dilation = d;
        return o;
    }

    xconv::conv2d_options with_padding(xconv::size2 p, xconv::padding_mode m = xconv::padding_mode::zeros)
    {
        xconv::conv2d_options o;
        o.padding = p;
        o.padding_mode = m;
        return o;
    }

    xconv::conv2d_options with_groups(std::size_t g)
    {
        xconv::conv2d_options o;
        o.groups = g;
        return o;
    }
}  // namespace

// Both the type and the message: CHECK_THROWS_WITH alone would accept any exception type.
#define CHECK_INVALID(expr, matcher)                                                                                 \
    do                                                                                                                \
    {                                                                                                                 \
        CHECK_THROWS_AS(expr, std::invalid_argument);                                                                 \
        CHECK_THROWS_WITH(expr, matcher);                                                                             \
    } while (false)

// ------------------------------------------------------------------------ non-positive geometry

TEST_CASE("stride must be positive", "[errors]")
{
    const auto x = t4(1, 1, 5, 5);
    const auto w = t4(1, 1, 3, 3);
    CHECK_INVALID(xconv::conv2d(x, w, with_stride({0, 1})), Contains("stride") && Contains("(0, 1)"));
    CHECK_INVALID(xconv::conv2d(x, w, with_stride({1, -2})), Contains("stride") && Contains("(1, -2)"));
    xconv::conv_transpose2d_options t;
    t.stride = {3, 0};
    CHECK_INVALID(xconv::conv_transpose2d(x, w, t), Contains("stride") && Contains("(3, 0)"));
    xconv::unfold_options u;
    u.stride = {0, 0};
    CHECK_INVALID(xconv::unfold(x, 2, u), Contains("stride") && Contains("(0, 0)"));
    CHECK_INVALID(xconv::fold(xconv::unfold(x, 2), {5, 5}, 2, u), Contains("stride") && Contains("(0, 0)"));
}

TEST_CASE("dilation must be positive", "[errors]")
{
    const auto x = t4(1, 1, 5, 5);
    const auto w = t4(1, 1, 3, 3);
    CHECK_INVALID(xconv::conv2d(x, w, with_dilation({1, 0})), Contains("dilation") && Contains("(1, 0)"));
    xconv::conv_transpose2d_options t;
    t.dilation = {-1, 1};
    CHECK_INVALID(xconv::conv_transpose2d(x, w, t), Contains("dilation") && Contains("(-1, 1)"));
    xconv::unfold_options u;
    u.dilation = {0, 2};
    CHECK_INVALID(xconv::unfold(x, 2, u), Contains("dilation") && Contains("(0, 2)"));
}

TEST_CASE("groups must be positive", "[errors]")
{
    const auto x = t4(1, 2, 5, 5);
    const auto w = t4(2, 2, 3, 3);
    CHECK_INVALID(xconv::conv2d(x, w, with_groups(0)), Contains("groups") && Contains("0"));
    xconv::conv_transpose2d_options t;
    t.groups = 0;
    CHECK_INVALID(xconv::conv_transpose2d(x, w, t), Contains("groups") && Contains("0"));
}

TEST_CASE("kernel size must be positive", "[errors]")
{
    const auto x = t4(1, 1, 5, 5);
    CHECK_INVALID(xconv::conv2d(x, t4(1, 1, 0, 3)), Contains("kernel") && Contains("(0, 3)"));
    CHECK_INVALID(xconv::conv_transpose2d(x, t4(1, 1, 2, 0)), Contains("kernel") && Contains("(2, 0)"));
    CHECK_INVALID(xconv::unfold(x, {0, 2}), Contains("kernel_size") && Contains("(0, 2)"));
    CHECK_INVALID(xconv::unfold(x, {2, -1}), Contains("kernel_size") && Contains("(2, -1)"));
    CHECK_INVALID(xconv::fold(xt::xtensor<double, 3>(std::array<std::size_t, 3>{1, 4, 4}, 1.0), {3, 3}, {-2, 2}),
                  Contains("kernel_size") && Contains("(-2, 2)"));
}

TEST_CASE("padding must be non-negative", "[errors]")
{
    const auto x = t4(1, 1, 5, 5);
    const auto w = t4(1, 1, 3, 3);
    CHECK_INVALID(xconv::conv2d(x, w, with_padding({-1, 0})), Contains("padding") && Contains("(-1, 0)"));
    xconv::conv_transpose2d_options t;
    t.padding = {0, -3};
    CHECK_INVALID(xconv::conv_transpose2d(x, w, t), Contains("padding") && Contains("(0, -3)"));
    xconv::conv_transpose2d_options op;
    op.output_padding = {-1, 0};
    op.stride = 2;
    CHECK_INVALID(xconv::conv_transpose2d(x, w, op), Contains("output_padding") && Contains("(-1, 0)"));
    xconv::unfold_options u;
    u.padding = {-2, -2};
    CHECK_INVALID(xconv::unfold(x, 2, u), Contains("padding") && Contains("(-2, -2)"));
}

// ----------------------------------------------------------------------------- channel counts

TEST_CASE("channels must be divisible by groups", "[errors]")
{
    // C_out = 3 is not a multiple of groups = 2.
    CHECK_INVALID(xconv::conv2d(t4(1, 4, 5, 5), t4(3, 2, 3, 3), with_groups(2)),
                  Contains("C_out = 3") && Contains("groups = 2"));
    // C_in = 3 with groups = 2: no weight can match.
    CHECK_INVALID(xconv::conv2d(t4(1, 3, 5, 5), t4(2, 1, 3, 3), with_groups(2)),
                  Contains("3 channels") && Contains("groups = 2"));
    // Transposed: weight dimension 0 (C_in = 3) not a multiple of groups = 2.
    xconv::conv_transpose2d_options t;
    t.groups = 2;
    CHECK_INVALID(xconv::conv_transpose2d(t4(1, 3, 4, 4), t4(3, 1, 3, 3), t),
                  Contains("C_in = 3") && Contains("groups = 2"));
}

TEST_CASE("input channels must match the weight", "[errors]")
{
    CHECK_INVALID(xconv::conv2d(t4(2, 3, 5, 5), t4(4, 2, 3, 3)),
                  Contains("3 channels") && Contains("[4, 2, 3, 3]") && Contains("expects 2"));
    CHECK_INVALID(xconv::conv2d(t3(5, 6, 6), t4(4, 2, 3, 3), with_groups(2)),
                  Contains("5 channels") && Contains("expects 4"));
    CHECK_INVALID(xconv::conv_transpose2d(t4(1, 2, 4, 4), t4(3, 1, 3, 3)),
                  Contains("2 channels") && Contains("[3, 1, 3, 3]") && Contains("expects 3"));
    CHECK_INVALID(xconv::conv2d_backward(t4(1, 4, 3, 3), t4(1, 3, 5, 5), t4(4, 2, 3, 3)),
                  Contains("3 channels") && Contains("expects 2"));
}

TEST_CASE("bias size must equal C_out", "[errors]")
{
    CHECK_INVALID(xconv::conv2d(t4(1, 2, 5, 5), t4(4, 2, 3, 3), t1(3)),
                  Contains("C_out = 4") && Contains("got 3"));
    xconv::conv_transpose2d_options t;
    t.groups = 2;
    // transposed C_out = weight.shape(1) * groups = 3 * 2 = 6
    CHECK_INVALID(xconv::conv_transpose2d(t4(1, 2, 4, 4), t4(2, 3, 3, 3), t1(3), t),
                  Contains("C_out = 6") && Contains("got 3"));
}

// ---------------------------------------------------------------------- sizes that do not fit

TEST_CASE("dilated kernel larger than the padded input", "[errors]")
{
    // 3x3 input, kernel 5: no block fits. With stride 3 a truncating (3 - 5) / 3 + 1 would say 1.
    CHECK_INVALID(xconv::conv2d(t4(1, 1, 3, 3), t4(1, 1, 5, 5), with_stride(3)),
                  Contains("(3, 3)") && Contains("(5, 5)"));
    // Dilation makes a 2x2 kernel span 5x5; padding 1 makes the input 5x4.
    xconv::conv2d_options o;
    o.dilation = 4;
    o.padding = 1;
    CHECK_INVALID(xconv::conv2d(t4(1, 1, 3, 2), t4(1, 1, 2, 2), o), Contains("(5, 4)") && Contains("(5, 5)"));
    xconv::unfold_options u;
    u.stride = 3;
    CHECK_INVALID(xconv::unfold(t4(1, 1, 3, 3), 5, u),
                  Contains("(3, 3)") && Contains("kernel_size (5, 5)") && Contains("stride (3, 3)"));
    // fold with an output of 3x3 and kernel 5: no block, even if the columns claim one.
    CHECK_INVALID(xconv::fold(xt::xtensor<double, 3>(std::array<std::size_t, 3>{1, 25, 1}, 1.0), {3, 3}, 5, u),
                  Contains("(3, 3)") && Contains("(5, 5)"));
    // conv2d_output_size checks the same.
    CHECK_INVALID(xconv::conv2d_output_size({3, 3}, {5, 5}, with_stride(3)), Contains("(3, 3)") && Contains("(5, 5)"));
}

TEST_CASE("output_padding must be smaller than stride or dilation", "[errors]")
{
    const auto x = t4(1, 1, 3, 3);
    const auto w = t4(1, 1, 3, 3);
    xconv::conv_transpose2d_options t;
    t.stride = 2;
    t.output_padding = {2, 0};
    CHECK_INVALID(xconv::conv_transpose2d(x, w, t),
                  Contains("output_padding (2, 0)") && Contains("stride (2, 2)") && Contains("dilation (1, 1)"));
    t.stride = 1;
    t.dilation = {1, 2};
    t.output_padding = {0, 2};
    CHECK_INVALID(xconv::conv_transpose2d(x, w, t), Contains("output_padding (0, 2)") && Contains("dilation (1, 2)"));
    CHECK_INVALID(xconv::conv_transpose2d_output_size({3, 3}, {3, 3}, t), Contains("output_padding (0, 2)"));
}

TEST_CASE("transposed convolution output size must be positive", "[errors]")
{
    // (1 - 1)*1 - 2*1 + 1*(1 - 1) + 1 = -1
    xconv::conv_transpose2d_options t;
    t.padding = 1;
    CHECK_INVALID(xconv::conv_transpose2d(t4(1, 1, 1, 1), t4(1, 1, 1, 1), t), Contains("(-1, -1)"));
    // Height fine, width 0: (2-1)*1 - 2*1 + 0 + 1 = 0.
    t.padding = {0, 1};
    CHECK_INVALID(xconv::conv_transpose2d(t4(1, 1, 2, 2), t4(1, 1, 1, 1), t), Contains("(2, 0)"));
    CHECK_INVALID(xconv::conv_transpose2d_output_size({2, 2}, {1, 1}, t), Contains("(2, 0)"));
}

TEST_CASE("fold columns must match the kernel and the number of blocks", "[errors]")
{
    // dimension 1 = 5 is not a multiple of kh*kw = 4
    CHECK_INVALID(xconv::fold(xt::xtensor<double, 3>(std::array<std::size_t, 3>{1, 5, 4}, 1.0), {3, 3}, 2),
                  Contains("(5)") && Contains("2*2 = 4"));
    // output 3x3 with kernel 2 has 2*2 = 4 blocks, not 5
    CHECK_INVALID(xconv::fold(xt::xtensor<double, 3>(std::array<std::size_t, 3>{1, 4, 5}, 1.0), {3, 3}, 2),
                  Contains("(5)") && Contains("2*2 = 4"));
    // unbatched columns go through the same check
    CHECK_INVALID(xconv::fold(xt::xtensor<double, 2>(std::array<std::size_t, 2>{8, 3}, 1.0), {3, 3}, 2),
                  Contains("(3)") && Contains("= 4"));
    // zero rows are not a positive multiple
    CHECK_INVALID(xconv::fold(xt::xtensor<double, 3>(std::array<std::size_t, 3>{1, 0, 4}, 1.0), {3, 3}, 2),
                  Contains("(0)"));
}

TEST_CASE("reflect padding must be smaller than the input", "[errors]")
{
    const auto w = t4(1, 1, 1, 1);
    CHECK_INVALID(xconv::conv2d(t4(1, 1, 3, 4), w, with_padding({3, 0}, xconv::padding_mode::reflect)),
                  Contains("(3, 3, 0, 0)") && Contains("(3, 4)"));
    CHECK_INVALID(xconv::conv2d(t4(1, 1, 3, 4), w, with_padding({0, 4}, xconv::padding_mode::reflect)),
                  Contains("(0, 0, 4, 4)") && Contains("(3, 4)"));
    // 'same' with kernel 4: padding 1 on top, 2 at the bottom; 2 >= H = 2.
    xconv::conv2d_options o;
    o.auto_padding = xconv::auto_padding::same;
    o.padding_mode = xconv::padding_mode::reflect;
    CHECK_INVALID(xconv::conv2d(t4(1, 1, 2, 5), t4(1, 1, 4, 1), o), Contains("(1, 2, 0, 0)") && Contains("(2, 5)"));
    // The largest valid reflect padding is H - 1: no throw.
    CHECK_NOTHROW(xconv::conv2d(t4(1, 1, 3, 4), w, with_padding({2, 3}, xconv::padding_mode::reflect)));
}

TEST_CASE("circular padding may not exceed the input", "[errors]")
{
    const auto w = t4(1, 1, 1, 1);
    CHECK_INVALID(xconv::conv2d(t4(1, 1, 3, 4), w, with_padding({4, 0}, xconv::padding_mode::circular)),
                  Contains("(4, 4, 0, 0)") && Contains("(3, 4)"));
    CHECK_INVALID(xconv::conv2d(t4(1, 1, 3, 4), w, with_padding({1, 5}, xconv::padding_mode::circular)),
                  Contains("(1, 1, 5, 5)") && Contains("(3, 4)"));
    // Padding equal to the size wraps around exactly once: allowed.
    CHECK_NOTHROW(xconv::conv2d(t4(1, 1, 3, 4), w, with_padding({3, 4}, xconv::padding_mode::circular)));
    // Replicate has no limit.
    CHECK_NOTHROW(xconv::conv2d(t4(1, 1, 3, 4), w, with_padding({7, 9}, xconv::padding_mode::replicate)));
}

// ------------------------------------------------------------------------------------ ranks

TEST_CASE("wrong ranks through the dynamic-rank overloads", "[errors]")
{
    const xt::xarray<double> x5 = xt::xarray<double>::from_shape({1, 1, 1, 5, 5});
    const xt::xarray<double> x2 = xt::xarray<double>::from_shape({5, 5});
    const xt::xarray<double> x4 = xt::xarray<double>::from_shape({1, 1, 5, 5});
    const xt::xarray<double> w4 = xt::xarray<double>::from_shape({1, 1, 3, 3});
    const xt::xarray<double> w3 = xt::xarray<double>::from_shape({1, 3, 3});
    const xt::xarray<double> b2 = xt::xarray<double>::from_shape({1, 1});

    CHECK_INVALID(xconv::conv2d(x5, w4), Contains("[1, 1, 1, 5, 5]"));
    CHECK_INVALID(xconv::conv2d(x2, w4), Contains("[5, 5]"));
    CHECK_INVALID(xconv::conv2d(x4, w3), Contains("[1, 3, 3]"));
    CHECK_INVALID(xconv::conv2d(x4, w4, b2), Contains("[1, 1]"));
    CHECK_INVALID(xconv::conv_transpose2d(x5, w4), Contains("[1, 1, 1, 5, 5]"));
    CHECK_INVALID(xconv::conv_transpose2d(x4, w3), Contains("[1, 3, 3]"));
    CHECK_INVALID(xconv::unfold(x5, 2), Contains("[1, 1, 1, 5, 5]"));
    CHECK_INVALID(xconv::unfold(x2, 2), Contains("[5, 5]"));
    CHECK_INVALID(xconv::fold(x4, {3, 3}, 2), Contains("[1, 1, 5, 5]"));
    // backward: grad_output and input of different ranks
    const xt::xarray<double> g3 = xt::xarray<double>::from_shape({1, 3, 3});
    CHECK_INVALID(xconv::conv2d_backward(g3, x4, w4), Contains("[1, 3, 3]") && Contains("[1, 1, 5, 5]"));

    // The dynamic-rank overloads still accept the valid ranks.
    xt::xarray<double> x3 = xt::xarray<double>::from_shape({1, 5, 5});
    x3.fill(1.0);
    xt::xarray<double> w = w4;
    w.fill(1.0);
    const auto y = xconv::conv2d(x3, w);
    REQUIRE(y.dimension() == 3);
    CHECK(y.shape()[0] == 1);
    CHECK(y.shape()[1] == 3);
    CHECK(y.shape()[2] == 3);
    CHECK(y(0, 1, 1) == 9.0);
}

TEST_CASE("grad_output must have the forward output's shape", "[errors]")
{
    // conv2d of (1, 2, 5, 5) with (3, 2, 3, 3) gives (1, 3, 3, 3).
    CHECK_INVALID(xconv::conv2d_backward(t4(1, 3, 4, 3), t4(1, 2, 5, 5), t4(3, 2, 3, 3)),
                  Contains("[1, 3, 3, 3]") && Contains("[1, 3, 4, 3]"));
    // conv_transpose2d of (1, 2, 3, 3) with (2, 1, 2, 2) gives (1, 1, 4, 4).
    CHECK_INVALID(xconv::conv_transpose2d_backward(t4(1, 2, 4, 4), t4(1, 2, 3, 3), t4(2, 1, 2, 2)),
                  Contains("[1, 1, 4, 4]") && Contains("[1, 2, 4, 4]"));
}

// ------------------------------------------------------------------------ output_size, 'same'

TEST_CASE("requested output_size out of range", "[errors]")
{
    // 3x3 input, kernel 3, stride 3, padding 1: valid sizes 7..9 per axis.
    const auto x = t4(1, 1, 3, 3);
    const auto w = t4(1, 1, 3, 3);
    xconv::conv_transpose2d_options t;
    t.stride = 3;
    t.padding = 1;
    t.output_size = xconv::size2{10, 8};
    CHECK_INVALID(xconv::conv_transpose2d(x, w, t), Contains("(10, 8)") && Contains("(7, 7)") && Contains("(9, 9)"));
    t.output_size = xconv::size2{8, 6};
    CHECK_INVALID(xconv::conv_transpose2d(x, w, t), Contains("(8, 6)") && Contains("(7, 7)") && Contains("(9, 9)"));
    t.output_size = xconv::size2{9, 7};
    CHECK_NOTHROW(xconv::conv_transpose2d(x, w, t));

    xconv::ConvTranspose2d<double> layer(1, 1, 3, t);
    CHECK_INVALID(layer.forward(x, {6, 7}), Contains("(6, 7)") && Contains("(7, 7)") && Contains("(9, 9)"));
}

TEST_CASE("'same' padding with a stride other than 1", "[errors]")
{
    xconv::conv2d_options o;
    o.auto_padding = xconv::auto_padding::same;
    o.stride = {2, 1};
    CHECK_INVALID(xconv::conv2d(t4(1, 1, 5, 5), t4(1, 1, 3, 3), o), Contains("same") && Contains("(2, 1)"));
    CHECK_INVALID(xconv::conv2d_output_size({5, 5}, {3, 3}, o), Contains("(2, 1)"));
}

TEST_CASE("'same' or 'valid' together with explicit padding", "[errors]")
{
    xconv::conv2d_options o;
    o.auto_padding = xconv::auto_padding::same;
    o.padding = {1, 0};
    CHECK_INVALID(xconv::conv2d(t4(1, 1, 5, 5), t4(1, 1, 3, 3), o), Contains("(1, 0)"));
    o.auto_padding = xconv::auto_padding::valid;
    o.padding = {0, 2};
    CHECK_INVALID(xconv::conv2d(t4(1, 1, 5, 5), t4(1, 1, 3, 3), o), Contains("(0, 2)"));
}

TEST_CASE("input with an empty spatial or channel dimension", "[errors]")
{
    CHECK_INVALID(xconv::conv2d(t4(1, 1, 0, 5), t4(1, 1, 1, 1)), Contains("[1, 1, 0, 5]"));
    CHECK_INVALID(xconv::conv_transpose2d(t4(1, 1, 4, 0), t4(1, 1, 1, 1)), Contains("[1, 1, 4, 0]"));
    CHECK_INVALID(xconv::unfold(t4(1, 0, 4, 4), 2), Contains("[1, 0, 4, 4]"));
    CHECK_INVALID(xconv::fold(xt::xtensor<double, 3>(std::array<std::size_t, 3>{1, 4, 4}, 1.0), {0, 3}, 2),
                  Contains("output_size") && Contains("(0, 3)"));
}

TEST_CASE("layer construction and parameter setters check their arguments", "[errors]")
{
    xconv::conv2d_options g2;
    g2.groups = 2;
    CHECK_INVALID(xconv::Conv2d<float>(3, 4, 3, g2), Contains("in_channels (3)") && Contains("groups (2)"));
    CHECK_INVALID(xconv::Conv2d<float>(4, 3, 3, g2), Contains("out_channels (3)") && Contains("groups (2)"));
    xconv::conv_transpose2d_options tg3;
    tg3.groups = 3;
    CHECK_INVALID(xconv::ConvTranspose2d<float>(3, 4, 3, tg3), Contains("out_channels (4)") && Contains("groups (3)"));
    CHECK_INVALID(xconv::Conv2d<float>(4, 4, {0, 3}), Contains("(0, 3)"));
    xconv::Conv2d<double> conv(2, 3, {3, 2});
    CHECK_INVALID(conv.set_weight(t4(3, 2, 2, 3)), Contains("[3, 2, 3, 2]") && Contains("[3, 2, 2, 3]"));
    CHECK_INVALID(conv.set_bias(t1(2)), Contains("[3]") && Contains("[2]"));
    xconv::Conv2d<double> no_bias(2, 3, 3, {}, false);
    CHECK_THROWS_AS(no_bias.set_bias(t1(3)), std::invalid_argument);
}

// ------------------------------------------------------------------ edge cases that must work

TEST_CASE("an empty batch gives an empty output of the right shape", "[errors][edge]")
{
    const auto x = t4(0, 2, 6, 5);
    xconv::conv2d_options o;
    o.stride = 2;
    o.padding = 1;
    const auto y = xconv::conv2d(x, t4(4, 2, 3, 3), t1(4), o);
    CHECK(y.shape() == std::array<std::size_t, 4>{0, 4, 3, 3});

    o.padding_mode = xconv::padding_mode::reflect;
    CHECK(xconv::conv2d(x, t4(4, 2, 3, 3), o).shape() == std::array<std::size_t, 4>{0, 4, 3, 3});

    const auto g = xconv::conv2d_backward(t4(0, 4, 3, 3), x, t4(4, 2, 3, 3), o);
    CHECK(g.grad_input.shape() == x.shape());
    CHECK(g.grad_weight.shape() == std::array<std::size_t, 4>{4, 2, 3, 3});
    CHECK(g.grad_bias.shape() == std::array<std::size_t, 1>{4});
    // Nothing flows back from an empty batch: the sums over N are zero.
    CHECK(xt::all(xt::equal(g.grad_weight, 0.0)));
    CHECK(xt::all(xt::equal(g.grad_bias, 0.0)));

    xconv::conv_transpose2d_options t;
    t.stride = 2;
    const auto z = xconv::conv_transpose2d(t4(0, 2, 3, 3), t4(2, 3, 2, 2), t1(3), t);
    CHECK(z.shape() == std::array<std::size_t, 4>{0, 3, 6, 6});
    const auto tg = xconv::conv_transpose2d_backward(t4(0, 3, 6, 6), t4(0, 2, 3, 3), t4(2, 3, 2, 2), t);
    CHECK(tg.grad_input.shape() == std::array<std::size_t, 4>{0, 2, 3, 3});
    CHECK(xt::all(xt::equal(tg.grad_weight, 0.0)));
    CHECK(xt::all(xt::equal(tg.grad_bias, 0.0)));

    const auto cols = xconv::unfold(x, 3);
    CHECK(cols.shape() == std::array<std::size_t, 3>{0, 18, 12});
    const auto img = xconv::fold(cols, {6, 5}, 3);
    CHECK(img.shape() == x.shape());
}
