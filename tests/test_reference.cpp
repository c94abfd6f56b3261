// xconv against the naive loop implementations of tests/support/reference.hpp, on randomly drawn
// small geometries (fixed seeds): conv2d (groups, depthwise, every padding mode, 'same' / 'valid',
// unbatched), conv_transpose2d (groups, output_padding up to max(stride, dilation) - 1,
// output_size), unfold, fold, and the backward passes of both convolutions.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <xconv/xconv.hpp>

#include "support/random.hpp"
#include "support/reference.hpp"

namespace
{
    namespace ref = xconv_test;
    using ref::index_t;

    template <class T>
    constexpr double tolerance()
    {
        return std::is_same<T, float>::value ? 1e-4 : 1e-10;
    }

    std::size_t sz(index_t v)
    {
        return static_cast<std::size_t>(v);
    }

    template <class T>
    xt::xtensor<T, 3> first_sample(const xt::xtensor<T, 4>& t)
    {
        return xt::view(t, 0, xt::all(), xt::all(), xt::all());
    }

    template <class T>
    xt::xtensor<T, 2> first_sample(const xt::xtensor<T, 3>& t)
    {
        return xt::view(t, 0, xt::all(), xt::all());
    }

    const char* mode_name(ref::pad_mode m)
    {
        switch (m)
        {
            case ref::pad_mode::zeros:
                return "zeros";
            case ref::pad_mode::reflect:
                return "reflect";
            case ref::pad_mode::replicate:
                return "replicate";
            case ref::pad_mode::circular:
                return "circular";
        }
        return "?";
    }

    xconv::padding_mode to_xconv(ref::pad_mode m)
    {
        switch (m)
        {
            case ref::pad_mode::zeros:
                return xconv::padding_mode::zeros;
            case ref::pad_mode::reflect:
                return xconv::padding_mode::reflect;
            case ref::pad_mode::replicate:
                return xconv::padding_mode::replicate;
            case ref::pad_mode::circular:
                return xconv::padding_mode::circular;
        }
        return xconv::padding_mode::zeros;
    }

    // ------------------------------------------------------------------------------ conv2d cases

    struct conv_case
    {
        index_t n = 1, groups = 1, cin_g = 1, cout_g = 1, h = 1, w = 1, kh = 1, kw = 1;
        ref::conv_geometry geo;
        xconv::conv2d_options opt;
        bool bias = true;
        bool unbatched = false;
        std::string text;
    };

    /// Draws a random conv2d geometry; nullopt when it is invalid (the caller draws again).
    std::optional<conv_case> draw_conv_case(ref::engine& gen)
    {
        conv_case c;
        c.n = ref::random_int(gen, 1, 3);
        c.groups = ref::random_int(gen, 1, 3);
        c.cin_g = ref::random_int(gen, 1, 3);
        c.cout_g = ref::random_int(gen, 1, 3);
        c.h = ref::random_int(gen, 1, 8);
        c.w = ref::random_int(gen, 1, 8);
        c.kh = ref::random_int(gen, 1, 4);
        c.kw = ref::random_int(gen, 1, 4);
        c.bias = ref::random_bool(gen, 0.7);
        c.unbatched = ref::random_bool(gen, 0.15);
        if (c.unbatched)
        {
            c.n = 1;
        }
        const index_t mode_draw = ref::random_int(gen, 0, 9);
        c.geo.mode = mode_draw < 4 ? ref::pad_mode::zeros : static_cast<ref::pad_mode>(1 + (mode_draw - 4) % 3);
        c.geo.groups = c.groups;
        c.geo.dil_h = ref::random_int(gen, 1, 3);
        c.geo.dil_w = ref::random_int(gen, 1, 3);
        c.geo.stride_h = ref::random_int(gen, 1, 3);
        c.geo.stride_w = ref::random_int(gen, 1, 3);

        const index_t pad_draw = ref::random_int(gen, 0, 9);
        c.opt.groups = sz(c.groups);
        c.opt.padding_mode = to_xconv(c.geo.mode);
        c.opt.dilation = {c.geo.dil_h, c.geo.dil_w};
        std::string pad_text;
        if (pad_draw < 2)  // 'same'
        {
            c.geo.stride_h = c.geo.stride_w = 1;
            ref::same_padding(c.kh, c.geo.dil_h, c.geo.pad_top, c.geo.pad_bottom);
            ref::same_padding(c.kw, c.geo.dil_w, c.geo.pad_left, c.geo.pad_right);
            c.opt.auto_padding = xconv::auto_padding::same;
            pad_text = "same";
        }
        else if (pad_draw < 3)  // 'valid'
        {
            c.opt.auto_padding = xconv::auto_padding::valid;
            pad_text = "valid";
        }
        else
        {
            const index_t ph = ref::random_int(gen, 0, 2);
            const index_t pw = ref::random_int(gen, 0, 2);
            c.geo.pad_top = c.geo.pad_bottom = ph;
            c.geo.pad_left = c.geo.pad_right = pw;
            c.opt.padding = {ph, pw};
            pad_text = "explicit";
        }
        c.opt.stride = {c.geo.stride_h, c.geo.stride_w};

        const auto& g = c.geo;
        if (g.mode == ref::pad_mode::reflect
            && (g.pad_top >= c.h || g.pad_bottom >= c.h || g.pad_left >= c.w || g.pad_right >= c.w))
        {
            return std::nullopt;
        }
        if (g.mode == ref::pad_mode::circular
            && (g.pad_top > c.h || g.pad_bottom > c.h || g.pad_left > c.w || g.pad_right > c.w))
        {
            return std::nullopt;
        }
        if (ref::conv_out_extent(c.h, g.pad_top, g.pad_bottom, c.kh, g.stride_h, g.dil_h) < 1
            || ref::conv_out_extent(c.w, g.pad_left, g.pad_right, c.kw, g.stride_w, g.dil_w) < 1)
        {
            return std::nullopt;
        }
        std::ostringstream os;
        os << "conv2d N=" << c.n << (c.unbatched ? " (unbatched)" : "") << " groups=" << c.groups
           << " C_in=" << c.groups * c.cin_g << " C_out=" << c.groups * c.cout_g << " HxW=" << c.h << "x" << c.w
           << " kernel=" << c.kh << "x" << c.kw << " stride=" << g.stride_h << "," << g.stride_w << " dilation="
           << g.dil_h << "," << g.dil_w << " padding(" << pad_text << ")=t" << g.pad_top << ",b" << g.pad_bottom
           << ",l" << g.pad_left << ",r" << g.pad_right << " mode=" << mode_name(g.mode) << " bias=" << c.bias;
        c.text = os.str();
        return c;
    }

    std::vector<conv_case> conv_cases(std::uint64_t seed, std::size_t count)
    {
        ref::engine gen(seed);
        std::vector<conv_case> cases;
        while (cases.size() < count)
        {
            if (auto c = draw_conv_case(gen))
            {
                cases.push_back(*c);
            }
        }
        return cases;
    }

    // -------------------------------------------------------------------- conv_transpose2d cases

    struct tconv_case
    {
        index_t n = 1, groups = 1, cin_g = 1, cout_g = 1, h = 1, w = 1, kh = 1, kw = 1;
        ref::transpose_geometry geo;
        xconv::conv_transpose2d_options opt;
        bool bias = true;
        bool unbatched = false;
        bool by_output_size = false;
        std::string text;
    };

    std::optional<tconv_case> draw_tconv_case(ref::engine& gen)
    {
        tconv_case c;
        c.n = ref::random_int(gen, 1, 3);
        c.groups = ref::random_int(gen, 1, 3);
        c.cin_g = ref::random_int(gen, 1, 3);
        c.cout_g = ref::random_int(gen, 1, 3);
        c.h = ref::random_int(gen, 1, 6);
        c.w = ref::random_int(gen, 1, 6);
        c.kh = ref::random_int(gen, 1, 4);
        c.kw = ref::random_int(gen, 1, 4);
        c.bias = ref::random_bool(gen, 0.7);
        c.unbatched = ref::random_bool(gen, 0.15);
        if (c.unbatched)
        {
            c.n = 1;
        }
        auto& g = c.geo;
        g.groups = c.groups;
        g.stride_h = ref::random_int(gen, 1, 3);
        g.stride_w = ref::random_int(gen, 1, 3);
        g.dil_h = ref::random_int(gen, 1, 3);
        g.dil_w = ref::random_int(gen, 1, 3);
        g.pad_h = ref::random_int(gen, 0, 3);
        g.pad_w = ref::random_int(gen, 0, 3);
        // Any output_padding below max(stride, dilation) is valid.
        g.out_pad_h = ref::random_int(gen, 0, std::max(g.stride_h, g.dil_h) - 1);
        g.out_pad_w = ref::random_int(gen, 0, std::max(g.stride_w, g.dil_w) - 1);
        if (ref::transpose_out_extent(c.h, c.kh, g.stride_h, g.pad_h, g.out_pad_h, g.dil_h) < 1
            || ref::transpose_out_extent(c.w, c.kw, g.stride_w, g.pad_w, g.out_pad_w, g.dil_w) < 1)
        {
            return std::nullopt;
        }
        c.opt.stride = {g.stride_h, g.stride_w};
        c.opt.dilation = {g.dil_h, g.dil_w};
        c.opt.padding = {g.pad_h, g.pad_w};
        c.opt.groups = sz(c.groups);
        // output_size may only add up to stride - 1 to the minimal size.
        c.by_output_size = g.out_pad_h < g.stride_h && g.out_pad_w < g.stride_w && ref::random_bool(gen, 0.3);
        if (c.by_output_size)
        {
            c.opt.output_size = xconv::size2{
                ref::transpose_out_extent(c.h, c.kh, g.stride_h, g.pad_h, g.out_pad_h, g.dil_h),
                ref::transpose_out_extent(c.w, c.kw, g.stride_w, g.pad_w, g.out_pad_w, g.dil_w)};
        }
        else
        {
            c.opt.output_padding = {g.out_pad_h, g.out_pad_w};
        }
        std::ostringstream os;
        os << "conv_transpose2d N=" << c.n << (c.unbatched ? " (unbatched)" : "") << " groups=" << c.groups
           << " C_in=" << c.groups * c.cin_g << " C_out=" << c.groups * c.cout_g << " HxW=" << c.h << "x" << c.w
           << " kernel=" << c.kh << "x" << c.kw << " stride=" << g.stride_h << "," << g.stride_w
           << " dilation=" << g.dil_h << "," << g.dil_w << " padding=" << g.pad_h << "," << g.pad_w
           << " output_padding=" << g.out_pad_h << "," << g.out_pad_w << (c.by_output_size ? " (via output_size)" : "")
           << " bias=" << c.bias;
        c.text = os.str();
        return c;
    }

    std::vector<tconv_case> tconv_cases(std::uint64_t seed, std::size_t count)
    {
        ref::engine gen(seed);
        std::vector<tconv_case> cases;
        while (cases.size() < count)
        {
            if (auto c = draw_tconv_case(gen))
            {
                cases.push_back(*c);
            }
        }
        return cases;
    }

    // ----------------------------------------------------------------------- unfold / fold cases

    struct window_case
    {
        index_t n = 1, c = 1, h = 1, w = 1;
        ref::window_geometry geo;
        xconv::size2 kernel;
        xconv::unfold_options opt;
        bool unbatched = false;
        std::string text;
    };

    std::optional<window_case> draw_window_case(ref::engine& gen)
    {
        window_case c;
        c.n = ref::random_int(gen, 1, 3);
        c.c = ref::random_int(gen, 1, 4);
        c.h = ref::random_int(gen, 1, 9);
        c.w = ref::random_int(gen, 1, 9);
        c.unbatched = ref::random_bool(gen, 0.2);
        if (c.unbatched)
        {
            c.n = 1;
        }
        auto& g = c.geo;
        g.kernel_h = ref::random_int(gen, 1, 4);
        g.kernel_w = ref::random_int(gen, 1, 4);
        g.stride_h = ref::random_int(gen, 1, 3);
        g.stride_w = ref::random_int(gen, 1, 3);
        g.pad_h = ref::random_int(gen, 0, 2);
        g.pad_w = ref::random_int(gen, 0, 2);
        g.dil_h = ref::random_int(gen, 1, 3);
        g.dil_w = ref::random_int(gen, 1, 3);
        if (ref::conv_out_extent(c.h, g.pad_h, g.pad_h, g.kernel_h, g.stride_h, g.dil_h) < 1
            || ref::conv_out_extent(c.w, g.pad_w, g.pad_w, g.kernel_w, g.stride_w, g.dil_w) < 1)
        {
            return std::nullopt;
        }
        c.kernel = {g.kernel_h, g.kernel_w};
        c.opt.stride = {g.stride_h, g.stride_w};
        c.opt.padding = {g.pad_h, g.pad_w};
        c.opt.dilation = {g.dil_h, g.dil_w};
        std::ostringstream os;
        os << "unfold/fold N=" << c.n << (c.unbatched ? " (unbatched)" : "") << " C=" << c.c << " HxW=" << c.h << "x"
           << c.w << " kernel=" << g.kernel_h << "x" << g.kernel_w << " stride=" << g.stride_h << "," << g.stride_w
           << " padding=" << g.pad_h << "," << g.pad_w << " dilation=" << g.dil_h << "," << g.dil_w;
        c.text = os.str();
        return c;
    }

    std::vector<window_case> window_cases(std::uint64_t seed, std::size_t count)
    {
        ref::engine gen(seed);
        std::vector<window_case> cases;
        while (cases.size() < count)
        {
            if (auto c = draw_window_case(gen))
            {
                cases.push_back(*c);
            }
        }
        return cases;
    }

    template <class T>
    struct conv_data
    {
        xt::xtensor<T, 4> input, weight;
        xt::xtensor<T, 1> bias;
    };

    template <class T>
    conv_data<T> make_conv_data(const conv_case& c, ref::engine& gen)
    {
        conv_data<T> d;
        d.input = ref::random_tensor<T, 4>({sz(c.n), sz(c.groups * c.cin_g), sz(c.h), sz(c.w)}, gen);
        d.weight = ref::random_tensor<T, 4>({sz(c.groups * c.cout_g), sz(c.cin_g), sz(c.kh), sz(c.kw)}, gen);
        d.bias = ref::random_tensor<T, 1>({sz(c.groups * c.cout_g)}, gen);
        return d;
    }

    template <class T>
    conv_data<T> make_tconv_data(const tconv_case& c, ref::engine& gen)
    {
        conv_data<T> d;
        d.input = ref::random_tensor<T, 4>({sz(c.n), sz(c.groups * c.cin_g), sz(c.h), sz(c.w)}, gen);
        d.weight = ref::random_tensor<T, 4>({sz(c.groups * c.cin_g), sz(c.cout_g), sz(c.kh), sz(c.kw)}, gen);
        d.bias = ref::random_tensor<T, 1>({sz(c.groups * c.cout_g)}, gen);
        return d;
    }

#define XCONV_CHECK_CLOSE(got, expected, tol)                                                                        \
    do                                                                                                                \
    {                                                                                                                 \
        const auto xconv_cmp_ = xconv_test::compare((got), (expected), (tol));                                        \
        INFO(#got " vs " #expected ": " << xconv_cmp_.message);                                                       \
        CHECK(xconv_cmp_.ok);                                                                                         \
    } while (false)
}  // namespace

// ============================================================================== conv2d forward

TEMPLATE_TEST_CASE("conv2d matches the naive loops on random geometries", "[reference][conv2d]", float, double)
{
    using T = TestType;
    const auto cases = conv_cases(20240601, 400);
    ref::engine gen(7);
    std::size_t n_same = 0, n_valid = 0, n_groups = 0, n_depthwise = 0, n_unbatched = 0, n_asym = 0;
    std::array<std::size_t, 4> n_mode{};
    for (const auto& c : cases)
    {
        INFO(c.text);
        const auto d = make_conv_data<T>(c, gen);
        const auto expected = ref::conv2d<T>(d.input, d.weight, c.bias ? &d.bias : nullptr, c.geo);
        if (c.unbatched)
        {
            const xt::xtensor<T, 3> x3 = first_sample(d.input);
            const xt::xtensor<T, 3> got = c.bias ? xconv::conv2d(x3, d.weight, d.bias, c.opt)
                                                 : xconv::conv2d(x3, d.weight, c.opt);
            XCONV_CHECK_CLOSE(got, first_sample(expected), tolerance<T>());
        }
        else
        {
            const xt::xtensor<T, 4> got = c.bias ? xconv::conv2d(d.input, d.weight, d.bias, c.opt)
                                                 : xconv::conv2d(d.input, d.weight, c.opt);
            XCONV_CHECK_CLOSE(got, expected, tolerance<T>());
        }
        const auto size = xconv::conv2d_output_size({c.h, c.w}, {c.kh, c.kw}, c.opt);
        CHECK(size.h == static_cast<index_t>(expected.shape(2)));
        CHECK(size.w == static_cast<index_t>(expected.shape(3)));

        n_same += c.opt.auto_padding == xconv::auto_padding::same;
        n_valid += c.opt.auto_padding == xconv::auto_padding::valid;
        n_groups += c.groups > 1;
        n_depthwise += c.groups > 1 && c.cin_g == 1;
        n_unbatched += c.unbatched;
        n_asym += c.geo.pad_top != c.geo.pad_bottom || c.geo.pad_left != c.geo.pad_right;
        ++n_mode[static_cast<std::size_t>(c.geo.mode)];
    }
    // The draw must actually exercise every feature.
    CHECK(n_same >= 40);
    CHECK(n_valid >= 20);
    CHECK(n_groups >= 150);
    CHECK(n_depthwise >= 40);
    CHECK(n_unbatched >= 25);
    CHECK(n_asym >= 25);
    for (auto m : n_mode)
    {
        CHECK(m >= 50);
    }
}

TEMPLATE_TEST_CASE("conv2d 'same' with asymmetric padding in every padding mode", "[reference][conv2d]", float,
                   double)
{
    using T = TestType;
    ref::engine gen(11);
    // Even kernels and odd dilation*(k-1) put the extra row / column at the bottom / right.
    const std::array<std::array<index_t, 4>, 5> geoms{{{2, 2, 1, 1}, {4, 2, 1, 3}, {2, 3, 3, 1}, {4, 4, 1, 1},
                                                      {3, 2, 2, 1}}};  // kh, kw, dil_h, dil_w
    for (const auto mode : {ref::pad_mode::zeros, ref::pad_mode::reflect, ref::pad_mode::replicate,
                            ref::pad_mode::circular})
    {
        for (const auto& k : geoms)
        {
            conv_case c;
            c.n = 2;
            c.groups = 2;
            c.cin_g = 2;
            c.cout_g = 1;
            c.h = 6;
            c.w = 7;
            c.kh = k[0];
            c.kw = k[1];
            c.geo.groups = 2;
            c.geo.dil_h = k[2];
            c.geo.dil_w = k[3];
            c.geo.mode = mode;
            ref::same_padding(c.kh, c.geo.dil_h, c.geo.pad_top, c.geo.pad_bottom);
            ref::same_padding(c.kw, c.geo.dil_w, c.geo.pad_left, c.geo.pad_right);
            c.opt.groups = 2;
            c.opt.dilation = {k[2], k[3]};
            c.opt.padding_mode = to_xconv(mode);
            c.opt.auto_padding = xconv::auto_padding::same;
            INFO("mode " << mode_name(mode) << " kernel " << c.kh << "x" << c.kw << " dilation " << k[2] << ","
                         << k[3] << " pads t" << c.geo.pad_top << " b" << c.geo.pad_bottom << " l" << c.geo.pad_left
                         << " r" << c.geo.pad_right);
            const auto d = make_conv_data<T>(c, gen);
            const auto expected = ref::conv2d<T>(d.input, d.weight, &d.bias, c.geo);
            REQUIRE(expected.shape(2) == 6);
            REQUIRE(expected.shape(3) == 7);
            XCONV_CHECK_CLOSE(xconv::conv2d(d.input, d.weight, d.bias, c.opt), expected, tolerance<T>());
        }
    }
}

// ==================================================================== conv_transpose2d forward

TEMPLATE_TEST_CASE("conv_transpose2d matches the naive scatter on random geometries",
                   "[reference][conv_transpose2d]", float, double)
{
    using T = TestType;
    const auto cases = tconv_cases(777, 400);
    ref::engine gen(8);
    std::size_t n_big_opad = 0, n_by_size = 0, n_groups = 0, n_unbatched = 0;
    for (const auto& c : cases)
    {
        INFO(c.text);
        const auto d = make_tconv_data<T>(c, gen);
        const auto expected = ref::conv_transpose2d<T>(d.input, d.weight, c.bias ? &d.bias : nullptr, c.geo);
        if (c.unbatched)
        {
            const xt::xtensor<T, 3> x3 = first_sample(d.input);
            const xt::xtensor<T, 3> got = c.bias ? xconv::conv_transpose2d(x3, d.weight, d.bias, c.opt)
                                                 : xconv::conv_transpose2d(x3, d.weight, c.opt);
            XCONV_CHECK_CLOSE(got, first_sample(expected), tolerance<T>());
        }
        else
        {
            const xt::xtensor<T, 4> got = c.bias ? xconv::conv_transpose2d(d.input, d.weight, d.bias, c.opt)
                                                 : xconv::conv_transpose2d(d.input, d.weight, c.opt);
            XCONV_CHECK_CLOSE(got, expected, tolerance<T>());
        }
        const auto size = xconv::conv_transpose2d_output_size({c.h, c.w}, {c.kh, c.kw}, c.opt);
        CHECK(size.h == static_cast<index_t>(expected.shape(2)));
        CHECK(size.w == static_cast<index_t>(expected.shape(3)));

        n_big_opad += c.geo.out_pad_h >= c.geo.stride_h || c.geo.out_pad_w >= c.geo.stride_w;
        n_by_size += c.by_output_size;
        n_groups += c.groups > 1;
        n_unbatched += c.unbatched;
    }
    CHECK(n_big_opad >= 40);
    CHECK(n_by_size >= 40);
    CHECK(n_groups >= 150);
    CHECK(n_unbatched >= 25);
}

TEMPLATE_TEST_CASE("conv_transpose2d output_padding >= stride (allowed by a larger dilation)",
                   "[reference][conv_transpose2d]", float, double)
{
    using T = TestType;
    ref::engine gen(12);
    // stride 1 with dilation 3 admits output_padding 1 and 2; stride 2 with dilation 4 admits up to 3.
    const std::array<std::array<index_t, 4>, 4> geoms{
        {{1, 3, 2, 1}, {2, 4, 3, 2}, {1, 2, 1, 0}, {2, 3, 2, 1}}};  // stride, dilation, out_pad_h, out_pad_w
    for (const auto& k : geoms)
    {
        tconv_case c;
        c.n = 2;
        c.groups = 1;
        c.cin_g = 2;
        c.cout_g = 3;
        c.h = 3;
        c.w = 4;
        c.kh = 3;
        c.kw = 2;
        c.geo.stride_h = c.geo.stride_w = k[0];
        c.geo.dil_h = c.geo.dil_w = k[1];
        c.geo.out_pad_h = k[2];
        c.geo.out_pad_w = k[3];
        c.geo.pad_h = 1;
        c.opt.stride = k[0];
        c.opt.dilation = k[1];
        c.opt.output_padding = {k[2], k[3]};
        c.opt.padding = {1, 0};
        INFO("stride " << k[0] << " dilation " << k[1] << " output_padding " << k[2] << "," << k[3]);
        const auto d = make_tconv_data<T>(c, gen);
        const auto expected = ref::conv_transpose2d<T>(d.input, d.weight, &d.bias, c.geo);
        XCONV_CHECK_CLOSE(xconv::conv_transpose2d(d.input, d.weight, d.bias, c.opt), expected, tolerance<T>());
    }
}

TEST_CASE("conv_transpose2d output_size picks the output_padding and overrides the field",
          "[reference][conv_transpose2d]")
{
    ref::engine gen(13);
    // H = W = 3, kernel 3, stride 3, padding 1: minimal size (3-1)*3 - 2 + 2 + 1 = 7, sizes 7..9 allowed.
    const auto x = ref::random_tensor<double, 4>({2, 2, 3, 3}, gen);
    const auto w = ref::random_tensor<double, 4>({2, 2, 3, 3}, gen);
    const auto b = ref::random_tensor<double, 1>({2}, gen);
    for (index_t oh = 7; oh <= 9; ++oh)
    {
        for (index_t ow = 7; ow <= 9; ++ow)
        {
            ref::transpose_geometry g;
            g.stride_h = g.stride_w = 3;
            g.pad_h = g.pad_w = 1;
            g.out_pad_h = oh - 7;
            g.out_pad_w = ow - 7;
            xconv::conv_transpose2d_options opt;
            opt.stride = 3;
            opt.padding = 1;
            opt.output_padding = {2 - g.out_pad_h, 1};  // ignored: output_size wins
            opt.output_size = xconv::size2{oh, ow};
            INFO("output_size " << oh << "x" << ow);
            const auto expected = ref::conv_transpose2d<double>(x, w, &b, g);
            REQUIRE(expected.shape(2) == sz(oh));
            REQUIRE(expected.shape(3) == sz(ow));
            XCONV_CHECK_CLOSE(xconv::conv_transpose2d(x, w, b, opt), expected, 1e-10);
        }
    }
}

// ================================================================================ unfold / fold

TEMPLATE_TEST_CASE("unfold and fold match the naive loops on random geometries", "[reference][unfold][fold]", float,
                   double)
{
    using T = TestType;
    const auto cases = window_cases(4242, 400);
    ref::engine gen(9);
    for (const auto& c : cases)
    {
        INFO(c.text);
        const auto x = ref::random_tensor<T, 4>({sz(c.n), sz(c.c), sz(c.h), sz(c.w)}, gen);
        const auto expected_cols = ref::unfold<T>(x, c.geo);
        const auto cols = ref::random_tensor<T, 3>(
            {expected_cols.shape(0), expected_cols.shape(1), expected_cols.shape(2)}, gen);
        const auto expected_img = ref::fold<T>(cols, c.h, c.w, c.geo);
        if (c.unbatched)
        {
            XCONV_CHECK_CLOSE(xconv::unfold(first_sample(x), c.kernel, c.opt), first_sample(expected_cols),
                              tolerance<T>());
            XCONV_CHECK_CLOSE(xconv::fold(first_sample(cols), {c.h, c.w}, c.kernel, c.opt),
                              first_sample(expected_img), tolerance<T>());
        }
        else
        {
            XCONV_CHECK_CLOSE(xconv::unfold(x, c.kernel, c.opt), expected_cols, tolerance<T>());
            XCONV_CHECK_CLOSE(xconv::fold(cols, {c.h, c.w}, c.kernel, c.opt), expected_img, tolerance<T>());
        }
    }
}

TEST_CASE("fold of unfold multiplies each pixel by the number of blocks covering it", "[reference][unfold][fold]")
{
    // An independent property: fold(unfold(ones)) counts, per pixel, the (block, tap) pairs that
    // read it. Counted here by brute force over the block grid.
    const auto cases = window_cases(99, 40);
    for (const auto& c : cases)
    {
        INFO(c.text);
        const auto& g = c.geo;
        xt::xtensor<double, 4> ones(std::array<std::size_t, 4>{1, sz(c.c), sz(c.h), sz(c.w)}, 1.0);
        const auto counted = xconv::fold(xconv::unfold(ones, c.kernel, c.opt), {c.h, c.w}, c.kernel, c.opt);
        const index_t bh = ref::conv_out_extent(c.h, g.pad_h, g.pad_h, g.kernel_h, g.stride_h, g.dil_h);
        const index_t bw = ref::conv_out_extent(c.w, g.pad_w, g.pad_w, g.kernel_w, g.stride_w, g.dil_w);
        xt::xtensor<double, 4> expected(ones.shape(), 0.0);
        for (index_t y = 0; y < c.h; ++y)
            for (index_t x = 0; x < c.w; ++x)
            {
                double k = 0;
                for (index_t by = 0; by < bh; ++by)
                    for (index_t i = 0; i < g.kernel_h; ++i)
                        for (index_t bx = 0; bx < bw; ++bx)
                            for (index_t j = 0; j < g.kernel_w; ++j)
                                k += (by * g.stride_h - g.pad_h + i * g.dil_h == y)
                                     && (bx * g.stride_w - g.pad_w + j * g.dil_w == x);
                for (index_t ch = 0; ch < c.c; ++ch)
                    expected(0, ch, y, x) = k;
            }
        XCONV_CHECK_CLOSE(counted, expected, 0.0);
    }
}

// ============================================================================== backward passes

TEMPLATE_TEST_CASE("conv2d_backward matches the naive derivative loops", "[reference][conv2d][backward]", float,
                   double)
{
    using T = TestType;
    const auto cases = conv_cases(31337, 300);
    ref::engine gen(10);
    for (const auto& c : cases)
    {
        INFO(c.text);
        const auto d = make_conv_data<T>(c, gen);
        const auto out = ref::conv2d<T>(d.input, d.weight, nullptr, c.geo);
        const auto go = ref::random_tensor<T, 4>({out.shape(0), out.shape(1), out.shape(2), out.shape(3)}, gen);
        const auto expected = ref::conv2d_backward<T>(go, d.input, d.weight, c.geo);
        if (c.unbatched)
        {
            const auto got = xconv::conv2d_backward(first_sample(go), first_sample(d.input), d.weight, c.opt);
            XCONV_CHECK_CLOSE(got.grad_input, first_sample(expected.input), tolerance<T>());
            XCONV_CHECK_CLOSE(got.grad_weight, expected.weight, tolerance<T>());
            XCONV_CHECK_CLOSE(got.grad_bias, expected.bias, tolerance<T>());
        }
        else
        {
            const auto got = xconv::conv2d_backward(go, d.input, d.weight, c.opt);
            XCONV_CHECK_CLOSE(got.grad_input, expected.input, tolerance<T>());
            XCONV_CHECK_CLOSE(got.grad_weight, expected.weight, tolerance<T>());
            XCONV_CHECK_CLOSE(got.grad_bias, expected.bias, tolerance<T>());
        }
    }
}

TEMPLATE_TEST_CASE("conv_transpose2d_backward matches the naive derivative loops",
                   "[reference][conv_transpose2d][backward]", float, double)
{
    using T = TestType;
    const auto cases = tconv_cases(4711, 300);
    ref::engine gen(14);
    for (const auto& c : cases)
    {
        INFO(c.text);
        const auto d = make_tconv_data<T>(c, gen);
        const auto out = ref::conv_transpose2d<T>(d.input, d.weight, nullptr, c.geo);
        const auto go = ref::random_tensor<T, 4>({out.shape(0), out.shape(1), out.shape(2), out.shape(3)}, gen);
        const auto expected = ref::conv_transpose2d_backward<T>(go, d.input, d.weight, c.geo);
        if (c.unbatched)
        {
            const auto got = xconv::conv_transpose2d_backward(first_sample(go), first_sample(d.input), d.weight, c.opt);
            XCONV_CHECK_CLOSE(got.grad_input, first_sample(expected.input), tolerance<T>());
            XCONV_CHECK_CLOSE(got.grad_weight, expected.weight, tolerance<T>());
            XCONV_CHECK_CLOSE(got.grad_bias, expected.bias, tolerance<T>());
        }
        else
        {
            const auto got = xconv::conv_transpose2d_backward(go, d.input, d.weight, c.opt);
            XCONV_CHECK_CLOSE(got.grad_input, expected.input, tolerance<T>());
            XCONV_CHECK_CLOSE(got.grad_weight, expected.weight, tolerance<T>());
            XCONV_CHECK_CLOSE(got.grad_bias, expected.bias, tolerance<T>());
        }
    }
}

TEST_CASE("backward output_mask: unrequested gradients are empty, requested ones unchanged",
          "[reference][backward]")
{
    const auto cases = conv_cases(555, 6);
    ref::engine gen(15);
    for (const auto& c : cases)
    {
        INFO(c.text);
        const auto d = make_conv_data<double>(c, gen);
        const auto out = ref::conv2d<double>(d.input, d.weight, nullptr, c.geo);
        const auto go = ref::random_tensor<double, 4>({out.shape(0), out.shape(1), out.shape(2), out.shape(3)}, gen);
        const auto expected = ref::conv2d_backward<double>(go, d.input, d.weight, c.geo);
        for (int m = 0; m < 8; ++m)
        {
            const xconv::output_mask mask{(m & 1) != 0, (m & 2) != 0, (m & 4) != 0};
            INFO("mask " << mask[0] << mask[1] << mask[2]);
            const auto got = xconv::conv2d_backward(go, d.input, d.weight, c.opt, mask);
            if (mask[0])
                XCONV_CHECK_CLOSE(got.grad_input, expected.input, 1e-10);
            else
                CHECK(got.grad_input.size() == 0);
            if (mask[1])
                XCONV_CHECK_CLOSE(got.grad_weight, expected.weight, 1e-10);
            else
                CHECK(got.grad_weight.size() == 0);
            if (mask[2])
                XCONV_CHECK_CLOSE(got.grad_bias, expected.bias, 1e-10);
            else
                CHECK(got.grad_bias.size() == 0);
        }
    }
    const auto tcases = tconv_cases(556, 6);
    for (const auto& c : tcases)
    {
        INFO(c.text);
        const auto d = make_tconv_data<double>(c, gen);
        const auto out = ref::conv_transpose2d<double>(d.input, d.weight, nullptr, c.geo);
        const auto go = ref::random_tensor<double, 4>({out.shape(0), out.shape(1), out.shape(2), out.shape(3)}, gen);
        const auto expected = ref::conv_transpose2d_backward<double>(go, d.input, d.weight, c.geo);
        for (int m = 0; m < 8; ++m)
        {
            const xconv::output_mask mask{(m & 1) != 0, (m & 2) != 0, (m & 4) != 0};
            INFO("mask " << mask[0] << mask[1] << mask[2]);
            const auto got = xconv::conv_transpose2d_backward(go, d.input, d.weight, c.opt, mask);
            if (mask[0])
                XCONV_CHECK_CLOSE(got.grad_input, expected.input, 1e-10);
            else
                CHECK(got.grad_input.size() == 0);
            if (mask[1])
                XCONV_CHECK_CLOSE(got.grad_weight, expected.weight, 1e-10);
            else
                CHECK(got.grad_weight.size() == 0);
            if (mask[2])
                XCONV_CHECK_CLOSE(got.grad_bias, expected.bias, 1e-10);
            else
                CHECK(got.grad_bias.size() == 0);
        }
    }
}
