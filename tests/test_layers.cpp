// Conv2d and ConvTranspose2d layers: parameter layout, initialisation, seeding, forward and
// backward against the naive reference, gradient accumulation, SGD through parameters(),
// save / load.
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <xconv/xconv.hpp>

#include "support/random.hpp"
#include "support/reference.hpp"

namespace
{
    namespace ref = xconv_test;
    namespace fs = std::filesystem;
    using shape4 = std::array<std::size_t, 4>;
    using shape1 = std::array<std::size_t, 1>;

#define XCONV_CHECK_CLOSE(got, expected, tol)                                                                        \
    do                                                                                                                \
    {                                                                                                                 \
        const auto xconv_cmp_ = xconv_test::compare((got), (expected), (tol));                                        \
        INFO(#got " vs " #expected ": " << xconv_cmp_.message);                                                       \
        CHECK(xconv_cmp_.ok);                                                                                         \
    } while (false)

    /// Checks that every value lies in [-bound, bound] and that the values spread over the whole
    /// interval (the extremes come within 10% of both ends, the mean is near 0).
    template <class E>
    void check_uniform_init(const E& values, double bound)
    {
        REQUIRE(values.size() > 0);
        double lo = 1e300, hi = -1e300, sum = 0;
        for (auto v : values)
        {
            lo = std::min(lo, static_cast<double>(v));
            hi = std::max(hi, static_cast<double>(v));
            sum += static_cast<double>(v);
        }
        INFO("bound " << bound << ", min " << lo << ", max " << hi << ", n " << values.size());
        CHECK(lo >= -bound);
        CHECK(hi <= bound);
        CHECK(hi > 0.9 * bound);
        CHECK(lo < -0.9 * bound);
        // The mean of n U(-b, b) values has standard deviation b / sqrt(3n); allow 6 of them.
        CHECK(std::abs(sum / static_cast<double>(values.size())) < 6 * bound / std::sqrt(3.0 * values.size()));
    }

    /// A scratch directory for save / load, removed at the end of the scope.
    struct scratch_dir
    {
        fs::path path;
        explicit scratch_dir(const std::string& name)
        {
            std::random_device rd;
            path = fs::temp_directory_path() / (name + "_" + std::to_string(rd()));
            fs::create_directories(path);
        }
        ~scratch_dir()
        {
            std::error_code ec;
            fs::remove_all(path, ec);
        }
        std::string prefix(const std::string& p) const { return (path / p).string(); }
    };

    template <class T>
    double half_squared_error(const xt::xtensor<T, 4>& y, const xt::xtensor<T, 4>& target)
    {
        double s = 0;
        for (std::size_t k = 0; k < y.size(); ++k)
        {
            const double d = static_cast<double>(y.data()[k]) - static_cast<double>(target.data()[k]);
            s += 0.5 * d * d;
        }
        return s;
    }
}  // namespace

// ------------------------------------------------------------------------------- parameters

TEST_CASE("layer parameters have PyTorch's shapes", "[layers]")
{
    xconv::conv2d_options o;
    o.groups = 2;
    xconv::Conv2d<float> conv(4, 6, {3, 2}, o);
    CHECK(conv.weight().shape() == shape4{6, 2, 3, 2});  // (C_out, C_in/groups, kh, kw)
    CHECK(conv.bias().shape() == shape1{6});
    CHECK(conv.weight_grad().shape() == conv.weight().shape());
    CHECK(conv.bias_grad().shape() == conv.bias().shape());
    CHECK(conv.has_bias());

    xconv::conv_transpose2d_options t;
    t.groups = 2;
    xconv::ConvTranspose2d<float> tconv(4, 6, {3, 2}, t);
    CHECK(tconv.weight().shape() == shape4{4, 3, 3, 2});  // (C_in, C_out/groups, kh, kw)
    CHECK(tconv.bias().shape() == shape1{6});

    xconv::Conv2d<double> no_bias(3, 5, 1, {}, false);
    CHECK_FALSE(no_bias.has_bias());
    CHECK(no_bias.weight().shape() == shape4{5, 3, 1, 1});
    CHECK(no_bias.bias().size() == 0);

    // Gradients start at zero.
    CHECK(xt::all(xt::equal(conv.weight_grad(), 0.0f)));
    CHECK(xt::all(xt::equal(conv.bias_grad(), 0.0f)));

    // parameters(): named flat views, the bias only when present.
    auto ps = conv.parameters();
    REQUIRE(ps.size() == 2);
    CHECK(ps[0].name == "weight");
    CHECK(ps[0].value.size() == 6 * 2 * 3 * 2);
    CHECK(ps[0].grad.size() == 6 * 2 * 3 * 2);
    CHECK(ps[1].name == "bias");
    CHECK(ps[1].value.size() == 6);
    REQUIRE(no_bias.parameters().size() == 1);
    CHECK(no_bias.parameters()[0].name == "weight");

    // The views write through to the layer.
    ps[0].value(5) = 42.0f;
    CHECK(conv.weight().data()[5] == 42.0f);
    ps[1].value(2) = -7.0f;
    CHECK(conv.bias()(2) == -7.0f);
}

TEST_CASE("layer initialisation is U(-1/sqrt(fan_in), 1/sqrt(fan_in))", "[layers]")
{
    std::mt19937_64 gen(2024);
    SECTION("Conv2d: fan_in = C_in/groups * kh * kw")
    {
        xconv::Conv2d<double> conv(8, 16, 3, {}, true, gen);  // fan_in = 8*9 = 72
        check_uniform_init(conv.weight(), 1.0 / std::sqrt(72.0));
        xconv::conv2d_options o;
        o.groups = 4;
        xconv::Conv2d<float> grouped(8, 32, {3, 2}, o, true, gen);  // fan_in = 2*3*2 = 12
        check_uniform_init(grouped.weight(), 1.0 / std::sqrt(12.0));
        // Many output channels so that the bias spreads too; fan_in = 2*1*1 = 2.
        xconv::Conv2d<double> wide(2, 500, 1, {}, true, gen);
        check_uniform_init(wide.bias(), 1.0 / std::sqrt(2.0));
        check_uniform_init(wide.weight(), 1.0 / std::sqrt(2.0));
    }
    SECTION("ConvTranspose2d: fan_in = C_out/groups * kh * kw (weight dimension 1)")
    {
        // C_in = 16 and C_out = 2 differ, so using the wrong dimension would change the bound by 8x.
        xconv::ConvTranspose2d<double> tconv(16, 2, 3, {}, true, gen);  // fan_in = 2*9 = 18
        check_uniform_init(tconv.weight(), 1.0 / std::sqrt(18.0));
        xconv::conv_transpose2d_options t;
        t.groups = 3;
        xconv::ConvTranspose2d<float> grouped(6, 12, 2, t, true, gen);  // fan_in = 4*2*2 = 16
        check_uniform_init(grouped.weight(), 0.25);
        xconv::ConvTranspose2d<double> wide(3, 400, 1, {}, true, gen);  // fan_in = 400
        check_uniform_init(wide.bias(), 0.05);
    }
}

TEST_CASE("layer initialisation is reproducible from a seed", "[layers]")
{
    SECTION("explicit generator")
    {
        std::mt19937_64 a(7), b(7), c(8);
        xconv::Conv2d<float> la(3, 4, 3, {}, true, a);
        xconv::Conv2d<float> lb(3, 4, 3, {}, true, b);
        xconv::Conv2d<float> lc(3, 4, 3, {}, true, c);
        CHECK(la.weight() == lb.weight());
        CHECK(la.bias() == lb.bias());
        CHECK(la.weight() != lc.weight());
        CHECK(la.bias() != lc.bias());
    }
    SECTION("manual_seed and the default generator")
    {
        xconv::manual_seed(123);
        xconv::ConvTranspose2d<double> l1(3, 4, 2);
        xconv::ConvTranspose2d<double> l2(3, 4, 2);  // continues the stream: different
        xconv::manual_seed(123);
        xconv::ConvTranspose2d<double> l3(3, 4, 2);
        xconv::manual_seed(124);
        xconv::ConvTranspose2d<double> l4(3, 4, 2);
        CHECK(l1.weight() == l3.weight());
        CHECK(l1.bias() == l3.bias());
        CHECK(l1.weight() != l2.weight());
        CHECK(l1.weight() != l4.weight());
    }
}

// ------------------------------------------------------------------------- forward / backward

TEST_CASE("Conv2d forward equals the functional conv2d and the reference", "[layers]")
{
    ref::engine gen(301);
    std::mt19937_64 init(5);
    xconv::conv2d_options o;
    o.stride = {2, 1};
    o.padding = {1, 2};
    o.groups = 2;
    o.padding_mode = xconv::padding_mode::reflect;
    xconv::Conv2d<double> layer(4, 6, {3, 2}, o, true, init);
    const auto x = ref::random_tensor<double, 4>({2, 4, 5, 6}, gen);
    const auto y = layer.forward(x);
    XCONV_CHECK_CLOSE(y, xconv::conv2d(x, layer.weight(), layer.bias(), o), 0.0);

    ref::conv_geometry g;
    g.stride_h = 2;
    g.pad_top = g.pad_bottom = 1;
    g.pad_left = g.pad_right = 2;
    g.groups = 2;
    g.mode = ref::pad_mode::reflect;
    XCONV_CHECK_CLOSE(y, ref::conv2d<double>(x, layer.weight(), &layer.bias(), g), 1e-10);

    // Unbatched forward.
    const xt::xtensor<double, 3> x3 = xt::view(x, 1, xt::all(), xt::all(), xt::all());
    const xt::xtensor<double, 3> y1 = xt::view(y, 1, xt::all(), xt::all(), xt::all());
    XCONV_CHECK_CLOSE(layer.forward(x3), y1, 1e-10);

    // float layer against the reference in float tolerance
    std::mt19937_64 init_f(5);
    xconv::Conv2d<float> layer_f(4, 6, {3, 2}, o, false, init_f);
    const auto xf = ref::random_tensor<float, 4>({1, 4, 4, 4}, gen);
    XCONV_CHECK_CLOSE(layer_f.forward(xf), ref::conv2d<float>(xf, layer_f.weight(), nullptr, g), 1e-4);
}

TEST_CASE("ConvTranspose2d forward equals the functional conv_transpose2d and the reference", "[layers]")
{
    ref::engine gen(302);
    std::mt19937_64 init(6);
    xconv::conv_transpose2d_options t;
    t.stride = 2;
    t.padding = {1, 0};
    t.output_padding = {1, 0};
    t.groups = 3;
    xconv::ConvTranspose2d<double> layer(3, 6, 3, t, true, init);
    const auto x = ref::random_tensor<double, 4>({2, 3, 3, 4}, gen);
    const auto y = layer.forward(x);
    XCONV_CHECK_CLOSE(y, xconv::conv_transpose2d(x, layer.weight(), layer.bias(), t), 0.0);

    ref::transpose_geometry g;
    g.stride_h = g.stride_w = 2;
    g.pad_h = 1;
    g.out_pad_h = 1;
    g.groups = 3;
    XCONV_CHECK_CLOSE(y, ref::conv_transpose2d<double>(x, layer.weight(), &layer.bias(), g), 1e-10);

    // forward(x, output_size): 3x4 input, minimum (3-1)*2 - 2 + 2 + 1 = 5 by (4-1)*2 + 2 + 1 = 9;
    // ask for (5, 10), i.e. output_padding (0, 1).
    const auto y2 = layer.forward(x, {5, 10});
    ref::transpose_geometry g2 = g;
    g2.out_pad_h = 0;
    g2.out_pad_w = 1;
    XCONV_CHECK_CLOSE(y2, ref::conv_transpose2d<double>(x, layer.weight(), &layer.bias(), g2), 1e-10);

    // backward after forward(x, output_size) differentiates that call.
    const auto go = ref::random_tensor<double, 4>({2, 6, 5, 10}, gen);
    const auto gi = layer.backward(go);
    const auto expected = ref::conv_transpose2d_backward<double>(go, x, layer.weight(), g2);
    XCONV_CHECK_CLOSE(gi, expected.input, 1e-10);
    XCONV_CHECK_CLOSE(layer.weight_grad(), expected.weight, 1e-10);
    XCONV_CHECK_CLOSE(layer.bias_grad(), expected.bias, 1e-10);
}

TEST_CASE("layer backward returns grad_input and accumulates parameter gradients", "[layers]")
{
    ref::engine gen(303);
    SECTION("Conv2d")
    {
        std::mt19937_64 init(9);
        xconv::conv2d_options o;
        o.auto_padding = xconv::auto_padding::same;
        o.padding_mode = xconv::padding_mode::circular;
        o.dilation = {1, 2};
        xconv::Conv2d<double> layer(2, 3, {2, 3}, o, true, init);
        const auto x = ref::random_tensor<double, 4>({2, 2, 5, 6}, gen);
        const auto y = layer.forward(x);
        const auto go = ref::random_tensor<double, 4>({y.shape(0), y.shape(1), y.shape(2), y.shape(3)}, gen);

        ref::conv_geometry g;
        ref::same_padding(2, 1, g.pad_top, g.pad_bottom);
        ref::same_padding(3, 2, g.pad_left, g.pad_right);
        g.dil_w = 2;
        g.mode = ref::pad_mode::circular;
        const auto expected = ref::conv2d_backward<double>(go, x, layer.weight(), g);

        XCONV_CHECK_CLOSE(layer.backward(go), expected.input, 1e-10);
        XCONV_CHECK_CLOSE(layer.weight_grad(), expected.weight, 1e-10);
        XCONV_CHECK_CLOSE(layer.bias_grad(), expected.bias, 1e-10);

        // A second identical backward adds the same again.
        XCONV_CHECK_CLOSE(layer.backward(go), expected.input, 1e-10);
        const xt::xtensor<double, 4> w2 = 2.0 * expected.weight;
        const xt::xtensor<double, 1> b2 = 2.0 * expected.bias;
        XCONV_CHECK_CLOSE(layer.weight_grad(), w2, 1e-10);
        XCONV_CHECK_CLOSE(layer.bias_grad(), b2, 1e-10);

        // The parameter views see the accumulated gradients.
        auto ps = layer.parameters();
        REQUIRE(ps.size() == 2);
        XCONV_CHECK_CLOSE(ps[0].grad, xt::flatten(w2), 1e-10);
        XCONV_CHECK_CLOSE(ps[1].grad, b2, 1e-10);

        layer.zero_grad();
        CHECK(xt::all(xt::equal(layer.weight_grad(), 0.0)));
        CHECK(xt::all(xt::equal(layer.bias_grad(), 0.0)));

        // Unbatched forward / backward.
        const xt::xtensor<double, 3> x3 = xt::view(x, 0, xt::all(), xt::all(), xt::all());
        const xt::xtensor<double, 3> go3 = xt::view(go, 0, xt::all(), xt::all(), xt::all());
        layer.forward(x3);
        const xt::xtensor<double, 4> x1 = xt::view(x, xt::range(0, 1), xt::all(), xt::all(), xt::all());
        const xt::xtensor<double, 4> go1 = xt::view(go, xt::range(0, 1), xt::all(), xt::all(), xt::all());
        const auto expected1 = ref::conv2d_backward<double>(go1, x1, layer.weight(), g);
        const xt::xtensor<double, 3> gi3_expected = xt::view(expected1.input, 0, xt::all(), xt::all(), xt::all());
        XCONV_CHECK_CLOSE(layer.backward(go3), gi3_expected, 1e-10);
        XCONV_CHECK_CLOSE(layer.weight_grad(), expected1.weight, 1e-10);
        XCONV_CHECK_CLOSE(layer.bias_grad(), expected1.bias, 1e-10);
    }
    SECTION("ConvTranspose2d without bias")
    {
        std::mt19937_64 init(10);
        xconv::conv_transpose2d_options t;
        t.stride = {1, 2};
        t.dilation = {3, 1};
        t.output_padding = {2, 1};  // 2 >= stride 1, allowed by dilation 3
        xconv::ConvTranspose2d<double> layer(2, 3, 2, t, false, init);
        const auto x = ref::random_tensor<double, 4>({3, 2, 3, 3}, gen);
        const auto y = layer.forward(x);
        const auto go = ref::random_tensor<double, 4>({y.shape(0), y.shape(1), y.shape(2), y.shape(3)}, gen);
        ref::transpose_geometry g;
        g.stride_w = 2;
        g.dil_h = 3;
        g.out_pad_h = 2;
        g.out_pad_w = 1;
        XCONV_CHECK_CLOSE(y, ref::conv_transpose2d<double>(x, layer.weight(), nullptr, g), 1e-10);
        const auto expected = ref::conv_transpose2d_backward<double>(go, x, layer.weight(), g);
        XCONV_CHECK_CLOSE(layer.backward(go), expected.input, 1e-10);
        XCONV_CHECK_CLOSE(layer.backward(go), expected.input, 1e-10);
        const xt::xtensor<double, 4> w2 = 2.0 * expected.weight;
        XCONV_CHECK_CLOSE(layer.weight_grad(), w2, 1e-10);
        CHECK(layer.bias_grad().size() == 0);
        layer.zero_grad();
        CHECK(xt::all(xt::equal(layer.weight_grad(), 0.0)));
    }
}

TEST_CASE("layer backward without a matching forward throws", "[layers]")
{
    xconv::Conv2d<float> conv(1, 2, 3);
    const xt::xtensor<float, 4> go(shape4{1, 2, 3, 3}, 1.0f);
    CHECK_THROWS_AS(conv.backward(go), std::logic_error);
    xconv::ConvTranspose2d<double> tconv(2, 1, 2);
    CHECK_THROWS_AS(tconv.backward(xt::xtensor<double, 4>(shape4{1, 1, 3, 3}, 1.0)), std::logic_error);

    // An unbatched backward after a batched forward has nothing to differentiate either.
    conv.forward(xt::xtensor<float, 4>(shape4{1, 1, 5, 5}, 1.0f));
    CHECK_THROWS_AS(conv.backward(xt::xtensor<float, 3>(std::array<std::size_t, 3>{2, 3, 3}, 1.0f)), std::logic_error);
    CHECK_NOTHROW(conv.backward(go));
    // grad_output of the wrong shape for the cached input
    CHECK_THROWS_AS(conv.backward(xt::xtensor<float, 4>(shape4{1, 2, 4, 3}, 1.0f)), std::invalid_argument);
}

// ------------------------------------------------------------------------------------ training

TEST_CASE("a few SGD steps through parameters() reduce a regression loss", "[layers]")
{
    ref::engine gen(304);
    SECTION("Conv2d")
    {
        std::mt19937_64 init(11), teacher_init(12);
        xconv::conv2d_options o;
        o.padding = 1;
        xconv::Conv2d<double> student(2, 3, 3, o, true, init);
        xconv::Conv2d<double> teacher(2, 3, 3, o, true, teacher_init);
        const auto x = ref::random_tensor<double, 4>({4, 2, 6, 6}, gen);
        const auto target = teacher.forward(x);
        const double lr = 2e-3;
        std::vector<double> losses;
        for (int step = 0; step < 30; ++step)
        {
            const auto y = student.forward(x);
            losses.push_back(half_squared_error(y, target));
            student.zero_grad();
            student.backward(xt::xtensor<double, 4>(y - target));
            for (auto& p : student.parameters())
            {
                p.value -= lr * p.grad;
            }
        }
        INFO("loss " << losses.front() << " -> " << losses.back());
        for (std::size_t k = 1; k < losses.size(); ++k)
        {
            CHECK(losses[k] < losses[k - 1]);
        }
        CHECK(losses.back() < 0.25 * losses.front());
    }
    SECTION("ConvTranspose2d")
    {
        std::mt19937_64 init(13), teacher_init(14);
        xconv::conv_transpose2d_options t;
        t.stride = 2;
        t.padding = 1;
        t.output_padding = 1;
        xconv::ConvTranspose2d<float> student(3, 2, 3, t, true, init);
        xconv::ConvTranspose2d<float> teacher(3, 2, 3, t, true, teacher_init);
        const auto x = ref::random_tensor<float, 4>({4, 3, 4, 4}, gen);
        const auto target = teacher.forward(x);
        const float lr = 5e-3f;
        std::vector<double> losses;
        for (int step = 0; step < 30; ++step)
        {
            const auto y = student.forward(x);
            losses.push_back(half_squared_error(y, target));
            student.zero_grad();
            student.backward(xt::xtensor<float, 4>(y - target));
            for (auto& p : student.parameters())
            {
                p.value -= lr * p.grad;
            }
        }
        INFO("loss " << losses.front() << " -> " << losses.back());
        for (std::size_t k = 1; k < losses.size(); ++k)
        {
            CHECK(losses[k] < losses[k - 1]);
        }
        CHECK(losses.back() < 0.25 * losses.front());
    }
}

TEST_CASE("parameters() views taken once stay valid across backward, set_weight and load", "[layers]")
{
    std::mt19937_64 init(21);
    xconv::Conv2d<float> c(1, 2, 3, {}, true, init);
    auto params = c.parameters();  // taken before any forward / backward
    const xt::xtensor<float, 4> x = xt::ones<float>({1, 1, 5, 5});
    const auto y = c.forward(x);
    c.backward(xt::xtensor<float, 4>(xt::ones<float>(y.shape())));
    // d(sum y)/dw = sum of the 3x3 input patch over the 3x3 output grid = 9; d/db = 9.
    for (std::size_t i = 0; i < params[0].grad.size(); ++i)
    {
        CHECK(params[0].grad(i) == 9.f);
    }
    CHECK(params[1].grad(0) == 9.f);
    CHECK(params[1].grad(1) == 9.f);
    c.backward(xt::xtensor<float, 4>(xt::ones<float>(y.shape())));
    CHECK(params[0].grad(0) == 18.f);

    xt::xtensor<float, 4> w = xt::zeros<float>({2, 1, 3, 3});
    w(1, 0, 2, 2) = 5.f;
    c.set_weight(w);
    CHECK(params[0].value(17) == 5.f);
    params[0].value(17) = 6.f;
    CHECK(c.weight()(1, 0, 2, 2) == 6.f);

    const auto dir = fs::temp_directory_path() / "xconv_test_views";
    fs::create_directories(dir);
    const std::string prefix = (dir / "v_").string();
    xconv::Conv2d<float> other(1, 2, 3, {}, true, init);
    other.save(prefix);
    c.load(prefix);
    CHECK(params[0].value(0) == other.weight()(0, 0, 0, 0));
    CHECK(params[1].value(1) == other.bias()(1));
    fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------- save / load

TEST_CASE("layer save / load round-trips through .npy files", "[layers]")
{
    scratch_dir dir("xconv_layers");
    SECTION("Conv2d with bias")
    {
        std::mt19937_64 a(21), b(22);
        xconv::Conv2d<float> saved(3, 4, {3, 2}, {}, true, a);
        xconv::Conv2d<float> loaded(3, 4, {3, 2}, {}, true, b);
        REQUIRE(saved.weight() != loaded.weight());
        saved.save(dir.prefix("conv_"));
        CHECK(fs::exists(dir.path / "conv_weight.npy"));
        CHECK(fs::exists(dir.path / "conv_bias.npy"));
        loaded.load(dir.prefix("conv_"));
        CHECK(loaded.weight() == saved.weight());
        CHECK(loaded.bias() == saved.bias());
    }
    SECTION("ConvTranspose2d without bias, double")
    {
        std::mt19937_64 a(23), b(24);
        xconv::conv_transpose2d_options t;
        t.groups = 2;
        xconv::ConvTranspose2d<double> saved(4, 2, 3, t, false, a);
        xconv::ConvTranspose2d<double> loaded(4, 2, 3, t, false, b);
        saved.save(dir.prefix("tconv_"));
        CHECK(fs::exists(dir.path / "tconv_weight.npy"));
        CHECK_FALSE(fs::exists(dir.path / "tconv_bias.npy"));
        loaded.load(dir.prefix("tconv_"));
        CHECK(loaded.weight() == saved.weight());
    }
    SECTION("shape, dtype and missing-file errors leave the layer unchanged")
    {
        std::mt19937_64 a(25), b(26);
        xconv::Conv2d<float> saved(3, 4, 3, {}, true, a);
        saved.save(dir.prefix("c3x3_"));

        xconv::Conv2d<float> other_kernel(3, 4, {3, 2}, {}, true, b);
        const auto before = other_kernel.weight();
        CHECK_THROWS_AS(other_kernel.load(dir.prefix("c3x3_")), std::invalid_argument);
        CHECK_THROWS_WITH(other_kernel.load(dir.prefix("c3x3_")),
                          Catch::Contains("[4, 3, 3, 2]") && Catch::Contains("[4, 3, 3, 3]"));
        CHECK(other_kernel.weight() == before);

        // C_out = 5: the saved weight is for C_out = 4.
        xconv::Conv2d<float> five_out(3, 5, 3, {}, true, b);
        CHECK_THROWS_AS(five_out.load(dir.prefix("c3x3_")), std::invalid_argument);

        // A float file into a double layer.
        xconv::Conv2d<double> as_double(3, 4, 3, {}, true, b);
        CHECK_THROWS_AS(as_double.load(dir.prefix("c3x3_")), std::invalid_argument);

        // Nothing there.
        CHECK_THROWS_AS(other_kernel.load(dir.prefix("missing_")), std::invalid_argument);
        CHECK_THROWS_WITH(other_kernel.load(dir.prefix("missing_")), Catch::Contains("missing_weight.npy"));
    }
}
