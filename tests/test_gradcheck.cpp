// Finite-difference checks of every hand-written gradient, in double.
//
// For a fixed random R the scalar loss L = sum(R * f(x, w, b)) is differentiated numerically by
// central differences, one element at a time, using only xconv's forward functions, and compared
// with the backward functions. Convolutions are linear in each argument, so the central difference
// has no truncation error; what remains is rounding, about eps * sum|R * f| / step ~ 1e-16 * 10 /
// 1e-6 = 1e-9. The tolerance 1e-6 (absolute + relative) leaves three orders of margin for that and
// still catches any wrong or missing contribution (those are O(0.1) or larger here).
//
// Also: the adjoint identities <unfold(x), y> = <x, fold(y)> and
// <conv2d(x, w), y> = <x, conv_transpose2d(y, w)> on many random geometries.
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include <xtensor/xtensor.hpp>

#include <xconv/xconv.hpp>

#include "support/random.hpp"
#include "support/reference.hpp"

namespace
{
    namespace ref = xconv_test;
    using ref::index_t;

    constexpr double fd_step = 1e-6;
    constexpr double fd_tolerance = 1e-6;

    std::size_t sz(index_t v)
    {
        return static_cast<std::size_t>(v);
    }

    template <class A, class B>
    double dot(const A& a, const B& b)
    {
        REQUIRE(a.size() == b.size());
        long double s = 0;
        auto ib = b.cbegin();
        for (auto ia = a.cbegin(); ia != a.cend(); ++ia, ++ib)
        {
            s += static_cast<long double>(*ia) * static_cast<long double>(*ib);
        }
        return static_cast<double>(s);
    }

    template <class A, class B>
    double abs_dot(const A& a, const B& b)
    {
        REQUIRE(a.size() == b.size());
        long double s = 0;
        auto ib = b.cbegin();
        for (auto ia = a.cbegin(); ia != a.cend(); ++ia, ++ib)
        {
            s += std::abs(static_cast<long double>(*ia) * static_cast<long double>(*ib));
        }
        return static_cast<double>(s);
    }

    /// Central differences of loss() with respect to every element of `param` (perturbed in
    /// place and restored). Returns an array of param's shape.
    template <class Tensor>
    Tensor numeric_gradient(Tensor& param, const std::function<double()>& loss)
    {
        Tensor grad(param.shape());
        auto g = grad.begin();
        for (auto p = param.begin(); p != param.end(); ++p, ++g)
        {
            const double saved = *p;
            *p = saved + fd_step;
            const double up = loss();
            *p = saved - fd_step;
            const double down = loss();
            *p = saved;
            *g = (up - down) / (2 * fd_step);
        }
        return grad;
    }

#define XCONV_CHECK_CLOSE(got, expected, tol)                                                                        \
    do                                                                                                                \
    {                                                                                                                 \
        const auto xconv_cmp_ = xconv_test::compare((got), (expected), (tol));                                        \
        INFO(#got " vs " #expected ": " << xconv_cmp_.message);                                                       \
        CHECK(xconv_cmp_.ok);                                                                                         \
    } while (false)

    struct conv_setup
    {
        std::string name;
        index_t n, c_in, c_out, h, w, kh, kw;
        xconv::conv2d_options opt;
    };

    xconv::conv2d_options conv_opts(xconv::size2 stride, xconv::size2 padding, xconv::size2 dilation,
                                    std::size_t groups, xconv::padding_mode mode,
                                    xconv::auto_padding autopad = xconv::auto_padding::none)
    {
        xconv::conv2d_options o;
        o.stride = stride;
        o.padding = padding;
        o.dilation = dilation;
        o.groups = groups;
        o.padding_mode = mode;
        o.auto_padding = autopad;
        return o;
    }

    std::vector<conv_setup> conv_setups()
    {
        using pm = xconv::padding_mode;
        using ap = xconv::auto_padding;
        return {
            {"plain", 2, 2, 3, 5, 4, 3, 2, conv_opts(1, 0, 1, 1, pm::zeros)},
            {"zeros stride/padding/dilation", 2, 2, 2, 6, 5, 2, 3, conv_opts({2, 1}, {1, 2}, {2, 1}, 1, pm::zeros)},
            {"reflect", 1, 2, 2, 5, 4, 3, 3, conv_opts(1, {2, 1}, 1, 1, pm::reflect)},
            {"reflect strided", 2, 1, 2, 5, 5, 2, 2, conv_opts(2, 1, {1, 2}, 1, pm::reflect)},
            {"replicate", 1, 2, 2, 4, 5, 3, 2, conv_opts({1, 2}, {2, 3}, 1, 1, pm::replicate)},
            {"circular", 1, 2, 2, 4, 4, 3, 3, conv_opts(1, {4, 2}, 1, 1, pm::circular)},
            {"circular dilated", 2, 1, 1, 5, 3, 2, 2, conv_opts({2, 1}, {1, 3}, 2, 1, pm::circular)},
            {"groups", 2, 4, 6, 4, 4, 2, 2, conv_opts(1, 1, 1, 2, pm::zeros)},
            {"depthwise", 1, 3, 6, 5, 4, 3, 3, conv_opts(1, 1, 1, 3, pm::zeros)},
            {"groups reflect", 1, 4, 2, 5, 5, 3, 2, conv_opts(2, 1, 1, 2, pm::reflect)},
            {"same even kernel zeros", 1, 2, 2, 5, 4, 2, 4, conv_opts(1, 0, 1, 1, pm::zeros, ap::same)},
            {"same dilated reflect", 1, 2, 2, 6, 5, 2, 3, conv_opts(1, 0, {3, 1}, 1, pm::reflect, ap::same)},
            {"same replicate groups", 2, 2, 2, 4, 4, 4, 2, conv_opts(1, 0, 1, 2, pm::replicate, ap::same)},
            {"same circular", 1, 1, 2, 4, 5, 3, 4, conv_opts(1, 0, 1, 1, pm::circular, ap::same)},
            {"valid", 1, 2, 2, 4, 5, 3, 2, conv_opts(1, 0, 1, 1, pm::reflect, ap::valid)},
        };
    }

    struct tconv_setup
    {
        std::string name;
        index_t n, c_in, c_out, h, w, kh, kw;
        xconv::conv_transpose2d_options opt;
    };

    xconv::conv_transpose2d_options tconv_opts(xconv::size2 stride, xconv::size2 padding, xconv::size2 out_pad,
                                               xconv::size2 dilation, std::size_t groups)
    {
        xconv::conv_transpose2d_options o;
        o.stride = stride;
        o.padding = padding;
        o.output_padding = out_pad;
        o.dilation = dilation;
        o.groups = groups;
        return o;
    }

    std::vector<tconv_setup> tconv_setups()
    {
        std::vector<tconv_setup> s{
            {"plain", 2, 2, 3, 3, 4, 2, 3, tconv_opts(1, 0, 0, 1, 1)},
            {"strided padded", 1, 2, 2, 3, 3, 3, 3, tconv_opts({2, 3}, {1, 2}, {1, 2}, 1, 1)},
            {"dilated", 2, 1, 2, 3, 2, 2, 3, tconv_opts(2, {0, 1}, 0, {2, 3}, 1)},
            {"output_padding >= stride", 1, 2, 2, 3, 3, 2, 2, tconv_opts(1, 0, {2, 1}, 3, 1)},
            {"output_padding >= stride, strided", 1, 1, 2, 2, 3, 3, 2, tconv_opts(2, 1, {3, 2}, 4, 1)},
            {"groups", 2, 4, 4, 3, 3, 2, 2, tconv_opts(2, 1, 1, 1, 2)},
            {"depthwise", 1, 3, 6, 3, 2, 3, 2, tconv_opts(1, 1, 0, 1, 3)},
        };
        tconv_setup by_size{"output_size", 1, 2, 2, 3, 3, 3, 2, tconv_opts(3, 1, 0, 1, 1)};
        by_size.opt.output_size = xconv::size2{8, 7};  // minimum (7, 6), both + 1
        s.push_back(by_size);
        return s;
    }
}  // namespace

TEST_CASE("conv2d gradients agree with central differences", "[gradcheck][conv2d]")
{
    ref::engine gen(101);
    for (const auto& s : conv_setups())
    {
        INFO("conv2d setup: " << s.name);
        auto x = ref::random_tensor<double, 4>({sz(s.n), sz(s.c_in), sz(s.h), sz(s.w)}, gen);
        auto w = ref::random_tensor<double, 4>({sz(s.c_out), sz(s.c_in) / s.opt.groups, sz(s.kh), sz(s.kw)}, gen);
        auto b = ref::random_tensor<double, 1>({sz(s.c_out)}, gen);
        const auto out = xconv::conv2d(x, w, b, s.opt);
        const auto r = ref::random_tensor<double, 4>({out.shape(0), out.shape(1), out.shape(2), out.shape(3)}, gen);
        const std::function<double()> loss = [&] { return dot(r, xconv::conv2d(x, w, b, s.opt)); };

        const auto analytic = xconv::conv2d_backward(r, x, w, s.opt);
        XCONV_CHECK_CLOSE(analytic.grad_input, numeric_gradient(x, loss), fd_tolerance);
        XCONV_CHECK_CLOSE(analytic.grad_weight, numeric_gradient(w, loss), fd_tolerance);
        XCONV_CHECK_CLOSE(analytic.grad_bias, numeric_gradient(b, loss), fd_tolerance);
    }
}

TEST_CASE("conv_transpose2d gradients agree with central differences", "[gradcheck][conv_transpose2d]")
{
    ref::engine gen(102);
    for (const auto& s : tconv_setups())
    {
        INFO("conv_transpose2d setup: " << s.name);
        auto x = ref::random_tensor<double, 4>({sz(s.n), sz(s.c_in), sz(s.h), sz(s.w)}, gen);
        auto w = ref::random_tensor<double, 4>({sz(s.c_in), sz(s.c_out) / s.opt.groups, sz(s.kh), sz(s.kw)}, gen);
        auto b = ref::random_tensor<double, 1>({sz(s.c_out)}, gen);
        const auto out = xconv::conv_transpose2d(x, w, b, s.opt);
        const auto r = ref::random_tensor<double, 4>({out.shape(0), out.shape(1), out.shape(2), out.shape(3)}, gen);
        const std::function<double()> loss = [&] { return dot(r, xconv::conv_transpose2d(x, w, b, s.opt)); };

        const auto analytic = xconv::conv_transpose2d_backward(r, x, w, s.opt);
        XCONV_CHECK_CLOSE(analytic.grad_input, numeric_gradient(x, loss), fd_tolerance);
        XCONV_CHECK_CLOSE(analytic.grad_weight, numeric_gradient(w, loss), fd_tolerance);
        XCONV_CHECK_CLOSE(analytic.grad_bias, numeric_gradient(b, loss), fd_tolerance);
    }
}

TEST_CASE("unfold and fold are each other's gradient (central differences)", "[gradcheck][unfold][fold]")
{
    ref::engine gen(103);
    struct setup
    {
        index_t c, h, w;
        xconv::size2 kernel;
        xconv::unfold_options opt;
    };
    const std::vector<setup> setups{
        {2, 4, 5, {2, 3}, {1, 0, 1}},
        {1, 6, 5, {3, 2}, {{2, 1}, {1, 2}, {1, 2}}},
        {2, 5, 5, {2, 2}, {3, 1, 2}},
        {1, 7, 4, {3, 3}, {{1, 2}, {2, 0}, {2, 1}}},
    };
    for (const auto& s : setups)
    {
        INFO("C=" << s.c << " HxW=" << s.h << "x" << s.w << " kernel " << s.kernel << " stride " << s.opt.stride
                  << " padding " << s.opt.padding << " dilation " << s.opt.dilation);
        auto x = ref::random_tensor<double, 4>({2, sz(s.c), sz(s.h), sz(s.w)}, gen);
        const auto cols_shape = xconv::unfold(x, s.kernel, s.opt).shape();
        const auto r_cols = ref::random_tensor<double, 3>({cols_shape[0], cols_shape[1], cols_shape[2]}, gen);
        // d/dx <r, unfold(x)> = fold(r)
        const std::function<double()> unfold_loss = [&] { return dot(r_cols, xconv::unfold(x, s.kernel, s.opt)); };
        XCONV_CHECK_CLOSE(xconv::fold(r_cols, {s.h, s.w}, s.kernel, s.opt), numeric_gradient(x, unfold_loss),
                          fd_tolerance);
        // d/dc <r, fold(c)> = unfold(r)
        auto cols = ref::random_tensor<double, 3>({cols_shape[0], cols_shape[1], cols_shape[2]}, gen);
        const auto r_img = ref::random_tensor<double, 4>({2, sz(s.c), sz(s.h), sz(s.w)}, gen);
        const std::function<double()> fold_loss = [&] {
            return dot(r_img, xconv::fold(cols, {s.h, s.w}, s.kernel, s.opt));
        };
        XCONV_CHECK_CLOSE(xconv::unfold(r_img, s.kernel, s.opt), numeric_gradient(cols, fold_loss), fd_tolerance);
    }
}

TEST_CASE("adjoint identity <unfold(x), y> = <x, fold(y)> on random geometries", "[gradcheck][unfold][fold]")
{
    ref::engine gen(104);
    std::size_t tested = 0;
    while (tested < 200)
    {
        const index_t c = ref::random_int(gen, 1, 3), h = ref::random_int(gen, 1, 10), w = ref::random_int(gen, 1, 10);
        const xconv::size2 kernel{ref::random_int(gen, 1, 4), ref::random_int(gen, 1, 4)};
        xconv::unfold_options opt;
        opt.stride = {ref::random_int(gen, 1, 3), ref::random_int(gen, 1, 3)};
        opt.padding = {ref::random_int(gen, 0, 3), ref::random_int(gen, 0, 3)};
        opt.dilation = {ref::random_int(gen, 1, 3), ref::random_int(gen, 1, 3)};
        if (ref::conv_out_extent(h, opt.padding.h, opt.padding.h, kernel.h, opt.stride.h, opt.dilation.h) < 1
            || ref::conv_out_extent(w, opt.padding.w, opt.padding.w, kernel.w, opt.stride.w, opt.dilation.w) < 1)
        {
            continue;
        }
        ++tested;
        INFO("C=" << c << " HxW=" << h << "x" << w << " kernel " << kernel << " stride " << opt.stride << " padding "
                  << opt.padding << " dilation " << opt.dilation);
        const auto x = ref::random_tensor<double, 4>({2, sz(c), sz(h), sz(w)}, gen);
        const auto ux = xconv::unfold(x, kernel, opt);
        const auto y = ref::random_tensor<double, 3>({ux.shape(0), ux.shape(1), ux.shape(2)}, gen);
        const auto fy = xconv::fold(y, {h, w}, kernel, opt);
        const double lhs = dot(ux, y);
        const double rhs = dot(x, fy);
        // Scale: the sum of |terms| of the inner product (a cancellation-free magnitude).
        const double scale = abs_dot(ux, y) + 1e-300;
        CHECK(std::abs(lhs - rhs) <= 1e-10 * scale);
    }
}

TEST_CASE("adjoint identity <conv2d(x, w), y> = <x, conv_transpose2d(y, w)> on random geometries",
          "[gradcheck][conv2d][conv_transpose2d]")
{
    // conv2d's weight (C_out, C_in/g, kh, kw) read as a transposed weight (C_in_t = C_out,
    // C_out_t/g = C_in/g, kh, kw) is exactly the adjoint map, when output_padding makes the
    // transposed output as large as conv2d's input.
    ref::engine gen(105);
    std::size_t tested = 0;
    while (tested < 150)
    {
        const index_t g = ref::random_int(gen, 1, 3);
        const index_t cin_g = ref::random_int(gen, 1, 2), cout_g = ref::random_int(gen, 1, 2);
        const index_t h = ref::random_int(gen, 1, 8), w = ref::random_int(gen, 1, 8);
        const index_t kh = ref::random_int(gen, 1, 3), kw = ref::random_int(gen, 1, 3);
        xconv::conv2d_options opt;
        opt.stride = {ref::random_int(gen, 1, 3), ref::random_int(gen, 1, 3)};
        opt.padding = {ref::random_int(gen, 0, 2), ref::random_int(gen, 0, 2)};
        opt.dilation = {ref::random_int(gen, 1, 2), ref::random_int(gen, 1, 2)};
        opt.groups = sz(g);
        const index_t oh = ref::conv_out_extent(h, opt.padding.h, opt.padding.h, kh, opt.stride.h, opt.dilation.h);
        const index_t ow = ref::conv_out_extent(w, opt.padding.w, opt.padding.w, kw, opt.stride.w, opt.dilation.w);
        if (oh < 1 || ow < 1)
        {
            continue;
        }
        ++tested;
        xconv::conv_transpose2d_options topt;
        topt.stride = opt.stride;
        topt.padding = opt.padding;
        topt.dilation = opt.dilation;
        topt.groups = opt.groups;
        topt.output_padding = {
            h - ref::transpose_out_extent(oh, kh, opt.stride.h, opt.padding.h, 0, opt.dilation.h),
            w - ref::transpose_out_extent(ow, kw, opt.stride.w, opt.padding.w, 0, opt.dilation.w)};
        INFO("groups " << g << " C_in " << g * cin_g << " C_out " << g * cout_g << " HxW " << h << "x" << w
                       << " kernel " << kh << "x" << kw << " stride " << opt.stride << " padding " << opt.padding
                       << " dilation " << opt.dilation << " output_padding " << topt.output_padding);
        const auto x = ref::random_tensor<double, 4>({2, sz(g * cin_g), sz(h), sz(w)}, gen);
        const auto wt = ref::random_tensor<double, 4>({sz(g * cout_g), sz(cin_g), sz(kh), sz(kw)}, gen);
        const auto y = ref::random_tensor<double, 4>({2, sz(g * cout_g), sz(oh), sz(ow)}, gen);
        const auto cx = xconv::conv2d(x, wt, opt);
        const auto ty = xconv::conv_transpose2d(y, wt, topt);
        REQUIRE(ty.shape() == x.shape());
        const double lhs = dot(cx, y);
        const double rhs = dot(x, ty);
        CHECK(std::abs(lhs - rhs) <= 1e-10 * (abs_dot(cx, y) + 1e-300));
    }
}
