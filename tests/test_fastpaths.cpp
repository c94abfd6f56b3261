// The fast paths of the convolution passes, against independent naive loops
// (tests/support/reference.hpp):
//   * the packers that fuse im2col into the GEMM's packing, element by element against the
//     reference unfold, for many geometries, blocks, offsets and both register-tile shapes;
//   * im2col_tile and col2im_tile (tiles of any size, both layouts), and col2im_tile's claim
//     that the tiling changes no bit;
//   * the paths a geometry selects: narrow outputs computed transposed, 1x1 kernels without
//     im2col, the direct (depthwise) kernels with row tails, flipped backward-data and large
//     paddings;
//   * the scratch limit: any cap gives bitwise the same outputs and gradients.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <xconv/xconv.hpp>

#include "support/options.hpp"
#include "support/random.hpp"
#include "support/reference.hpp"

namespace
{
    using xconv_test::engine;
    using xconv_test::random_int;
    using xconv_test::random_tensor;
    using index_t = std::int64_t;

    /// A random unfold geometry (zero padding) and the window2d the library plans for it.
    struct unfold_case
    {
        index_t C, H, W;
        xconv_test::window_geometry g;
        xconv::detail::window2d win;
        std::string text;
    };

    unfold_case random_unfold_case(engine& gen)
    {
        for (;;)
        {
            unfold_case c;
            c.C = random_int(gen, 1, 3);
            c.H = random_int(gen, 1, 13);
            c.W = random_int(gen, 1, 40);
            c.g.kernel_h = random_int(gen, 1, 4);
            c.g.kernel_w = random_int(gen, 1, 4);
            c.g.stride_h = random_int(gen, 1, 3);
            c.g.stride_w = random_int(gen, 1, 5);
            c.g.pad_h = random_int(gen, 0, 2);
            c.g.pad_w = random_int(gen, 0, 2);
            c.g.dil_h = random_int(gen, 1, 2);
            c.g.dil_w = random_int(gen, 1, 2);
            const index_t bh = xconv_test::conv_out_extent(c.H, c.g.pad_h, c.g.pad_h, c.g.kernel_h, c.g.stride_h, c.g.dil_h);
            const index_t bw = xconv_test::conv_out_extent(c.W, c.g.pad_w, c.g.pad_w, c.g.kernel_w, c.g.stride_w, c.g.dil_w);
            if (bh < 1 || bw < 1)
            {
                continue;
            }
            xconv::unfold_options o;
            o.stride = {c.g.stride_h, c.g.stride_w};
            o.padding = {c.g.pad_h, c.g.pad_w};
            o.dilation = {c.g.dil_h, c.g.dil_w};
            const std::array<index_t, 4> shape{1, c.C, c.H, c.W};
            c.win = xconv::detail::plan_unfold(shape, {c.g.kernel_h, c.g.kernel_w}, o).win;
            std::ostringstream os;
            os << "C=" << c.C << " H=" << c.H << " W=" << c.W << " k=(" << c.g.kernel_h << "," << c.g.kernel_w << ") s=("
               << c.g.stride_h << "," << c.g.stride_w << ") p=(" << c.g.pad_h << "," << c.g.pad_w << ") d=(" << c.g.dil_h
               << "," << c.g.dil_w << ") blocks=" << bh << "x" << bw;
            c.text = os.str();
            return c;
        }
    }

    /// The reference columns [K, L] of one image.
    template <class T>
    xt::xtensor<T, 2> reference_columns(const xt::xtensor<T, 4>& x, const xconv_test::window_geometry& g)
    {
        const xt::xtensor<T, 3> cols = xconv_test::unfold(x, g);
        xt::xtensor<T, 2> out({cols.shape(1), cols.shape(2)});
        std::copy(cols.begin(), cols.end(), out.begin());
        return out;
    }

    template <class T, class Arch>
    void check_b_packer(engine& gen, int cases)
    {
        constexpr std::size_t NR = xconv::detail::gemm_traits<T, Arch>::nr;
        for (int t = 0; t < cases; ++t)
        {
            const unfold_case c = random_unfold_case(gen);
            const auto x = random_tensor<T, 4>({1, std::size_t(c.C), std::size_t(c.H), std::size_t(c.W)}, gen);
            const auto cols = reference_columns(x, c.g);
            const index_t K = static_cast<index_t>(cols.shape(0)), L = static_cast<index_t>(cols.shape(1));
            const xconv::detail::conv_taps taps(c.win);
            // A block anywhere: rows [k0, k0 + kc), columns j0 + [0, nc) of a tile starting at l_offset.
            const index_t l_offset = random_int(gen, 0, L - 1);
            const index_t panels_left = (L - l_offset - 1) / static_cast<index_t>(NR);
            const index_t j0 = random_int(gen, 0, panels_left) * static_cast<index_t>(NR);
            const index_t nc = random_int(gen, 1, L - l_offset - j0);
            const index_t k0 = random_int(gen, 0, K - 1);
            const index_t kc = random_int(gen, 1, K - k0);
            const std::size_t panels = (std::size_t(nc) + NR - 1) / NR;
            std::vector<T> dst(panels * NR * std::size_t(kc), std::numeric_limits<T>::quiet_NaN());
            const xconv::detail::im2col_b_packer<T, Arch> pack{x.data(), &c.win, &taps, l_offset};
            pack(std::size_t(k0), std::size_t(kc), std::size_t(j0), std::size_t(nc), dst.data());
            index_t bad = 0;
            std::string first;
            for (std::size_t q = 0; q < panels; ++q)
            {
                for (index_t k = 0; k < kc; ++k)
                {
                    for (std::size_t j = 0; j < NR; ++j)
                    {
                        const index_t col = index_t(q * NR + j);
                        const T expected = col < nc ? cols(std::size_t(k0 + k), std::size_t(l_offset + j0 + col)) : T(0);
                        const T got = dst[q * std::size_t(kc) * NR + std::size_t(k) * NR + j];
                        if (!(got == expected) && bad++ == 0)
                        {
                            std::ostringstream os;
                            os << "panel " << q << " row " << k << " col " << j << ": got " << got << ", expected " << expected;
                            first = os.str();
                        }
                    }
                }
            }
            INFO(c.text << " l_offset=" << l_offset << " j0=" << j0 << " nc=" << nc << " k0=" << k0 << " kc=" << kc
                        << " nr=" << NR << ": " << first);
            REQUIRE(bad == 0);
        }
    }

    template <class T, class Arch>
    void check_t_a_packer(engine& gen, int cases)
    {
        constexpr std::size_t MR = xconv::detail::gemm_traits<T, Arch>::mr;
        for (int t = 0; t < cases; ++t)
        {
            const unfold_case c = random_unfold_case(gen);
            const auto x = random_tensor<T, 4>({1, std::size_t(c.C), std::size_t(c.H), std::size_t(c.W)}, gen);
            const auto cols = reference_columns(x, c.g);
            const index_t K = static_cast<index_t>(cols.shape(0)), L = static_cast<index_t>(cols.shape(1));
            const xconv::detail::conv_taps taps(c.win);
            const index_t l_offset = random_int(gen, 0, L - 1);
            const index_t i0 = random_int(gen, 0, L - l_offset - 1);
            const index_t mc = random_int(gen, 1, std::min<index_t>(L - l_offset - i0, 40));
            const index_t k0 = random_int(gen, 0, K - 1);
            const index_t kc = random_int(gen, 1, K - k0);
            const std::size_t panels = (std::size_t(mc) + MR - 1) / MR;
            std::vector<T> dst(panels * MR * std::size_t(kc), std::numeric_limits<T>::quiet_NaN());
            const xconv::detail::im2col_t_a_packer<T, Arch> pack{x.data(), &c.win, &taps, l_offset};
            pack(std::size_t(i0), std::size_t(mc), std::size_t(k0), std::size_t(kc), dst.data());
            index_t bad = 0;
            for (std::size_t p = 0; p < panels; ++p)
            {
                for (index_t k = 0; k < kc; ++k)
                {
                    for (std::size_t r = 0; r < MR; ++r)
                    {
                        const index_t row = index_t(p * MR + r);
                        const T expected = row < mc ? cols(std::size_t(k0 + k), std::size_t(l_offset + i0 + row)) : T(0);
                        const T got = dst[p * MR * std::size_t(kc) + std::size_t(k) * MR + r];
                        bad += !(got == expected);
                    }
                }
            }
            INFO(c.text << " l_offset=" << l_offset << " i0=" << i0 << " mc=" << mc << " k0=" << k0 << " kc=" << kc
                        << " mr=" << MR);
            REQUIRE(bad == 0);
        }
    }

    template <class T>
    void bitwise_equal(const xt::xtensor<T, 4>& a, const xt::xtensor<T, 4>& b, const char* what)
    {
        INFO(what);
        REQUIRE(a.shape() == b.shape());
        REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
    }

    template <class T>
    void bitwise_equal(const xt::xtensor<T, 1>& a, const xt::xtensor<T, 1>& b, const char* what)
    {
        INFO(what);
        REQUIRE(a.shape() == b.shape());
        REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
    }

    template <class A, class B>
    void close(const A& got, const B& expected, double tol, const std::string& what)
    {
        const auto r = xconv_test::compare(got, expected, tol);
        INFO(what << ": " << r.message);
        CHECK(r.ok);
    }

    /// Restores the scratch limit at the end of a scope.
    struct scratch_limit_guard
    {
        std::size_t saved = xconv::scratch_limit();
        ~scratch_limit_guard() { xconv::set_scratch_limit(saved); }
    };

    /// One conv2d case run through the library and the reference, every gradient compared.
    struct conv_case
    {
        index_t N, Cin, Cout, H, W, kh, kw, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
        xconv::padding_mode mode = xconv::padding_mode::zeros;
    };

    std::string describe(const conv_case& c)
    {
        std::ostringstream os;
        os << "N=" << c.N << " " << c.Cin << "->" << c.Cout << " " << c.H << "x" << c.W << " k=(" << c.kh << "," << c.kw
           << ") s=(" << c.sh << "," << c.sw << ") p=(" << c.ph << "," << c.pw << ") d=(" << c.dh << "," << c.dw
           << ") groups=" << c.groups << " mode=" << int(c.mode);
        return os.str();
    }

    /// R: the element type the reference computes in (double for float cases whose sums are
    /// too long for a float oracle).
    template <class T, class R = T>
    void check_conv_case(const conv_case& c, engine& gen, double tol)
    {
        const auto x = random_tensor<T, 4>({std::size_t(c.N), std::size_t(c.Cin), std::size_t(c.H), std::size_t(c.W)}, gen);
        const auto w = random_tensor<T, 4>(
            {std::size_t(c.Cout), std::size_t(c.Cin / c.groups), std::size_t(c.kh), std::size_t(c.kw)}, gen);
        const auto b = random_tensor<T, 1>({std::size_t(c.Cout)}, gen);
        const xconv::conv2d_options o = xconv_test::conv2d_options_of(c);
        xconv_test::conv_geometry g;
        g.stride_h = c.sh;
        g.stride_w = c.sw;
        g.pad_top = g.pad_bottom = c.ph;
        g.pad_left = g.pad_right = c.pw;
        g.dil_h = c.dh;
        g.dil_w = c.dw;
        g.groups = c.groups;
        g.mode = static_cast<xconv_test::pad_mode>(static_cast<int>(c.mode));
        const std::string what = describe(c);
        const xt::xtensor<R, 4> xr = xt::cast<R>(x), wr = xt::cast<R>(w);
        const xt::xtensor<R, 1> br = xt::cast<R>(b);
        const auto y = xconv::conv2d(x, w, b, o);
        const auto y_ref = xconv_test::conv2d(xr, wr, &br, g);
        close(y, y_ref, tol, what + " forward");
        const auto gy = random_tensor<T, 4>({y.shape(0), y.shape(1), y.shape(2), y.shape(3)}, gen);
        const auto grads = xconv::conv2d_backward(gy, x, w, o);
        const xt::xtensor<R, 4> gyr = xt::cast<R>(gy);
        const auto ref = xconv_test::conv2d_backward(gyr, xr, wr, g);
        close(grads.grad_input, ref.input, tol, what + " grad_input");
        close(grads.grad_weight, ref.weight, tol, what + " grad_weight");
        close(grads.grad_bias, ref.bias, tol, what + " grad_bias");
    }

    struct transpose_case
    {
        index_t N, Cin, Cout, H, W, kh, kw, sh = 1, sw = 1, ph = 0, pw = 0, oph = 0, opw = 0, dh = 1, dw = 1, groups = 1;
    };

    template <class T, class R = T>
    void check_transpose_case(const transpose_case& c, engine& gen, double tol)
    {
        const auto x = random_tensor<T, 4>({std::size_t(c.N), std::size_t(c.Cin), std::size_t(c.H), std::size_t(c.W)}, gen);
        const auto w = random_tensor<T, 4>(
            {std::size_t(c.Cin), std::size_t(c.Cout / c.groups), std::size_t(c.kh), std::size_t(c.kw)}, gen);
        const auto b = random_tensor<T, 1>({std::size_t(c.Cout)}, gen);
        xconv::conv_transpose2d_options o;
        o.stride = {c.sh, c.sw};
        o.padding = {c.ph, c.pw};
        o.output_padding = {c.oph, c.opw};
        o.dilation = {c.dh, c.dw};
        o.groups = std::size_t(c.groups);
        xconv_test::transpose_geometry g;
        g.stride_h = c.sh;
        g.stride_w = c.sw;
        g.pad_h = c.ph;
        g.pad_w = c.pw;
        g.out_pad_h = c.oph;
        g.out_pad_w = c.opw;
        g.dil_h = c.dh;
        g.dil_w = c.dw;
        g.groups = c.groups;
        std::ostringstream os;
        os << "transposed N=" << c.N << " " << c.Cin << "->" << c.Cout << " " << c.H << "x" << c.W << " k=(" << c.kh
           << "," << c.kw << ") s=(" << c.sh << "," << c.sw << ") p=(" << c.ph << "," << c.pw << ") d=(" << c.dh << ","
           << c.dw << ") groups=" << c.groups;
        const std::string what = os.str();
        const xt::xtensor<R, 4> xr = xt::cast<R>(x), wr = xt::cast<R>(w);
        const xt::xtensor<R, 1> br = xt::cast<R>(b);
        const auto y = xconv::conv_transpose2d(x, w, b, o);
        const auto y_ref = xconv_test::conv_transpose2d(xr, wr, &br, g);
        close(y, y_ref, tol, what + " forward");
        const auto gy = random_tensor<T, 4>({y.shape(0), y.shape(1), y.shape(2), y.shape(3)}, gen);
        const auto grads = xconv::conv_transpose2d_backward(gy, x, w, o);
        const xt::xtensor<R, 4> gyr = xt::cast<R>(gy);
        const auto ref = xconv_test::conv_transpose2d_backward(gyr, xr, wr, g);
        close(grads.grad_input, ref.input, tol, what + " grad_input");
        close(grads.grad_weight, ref.weight, tol, what + " grad_weight");
        close(grads.grad_bias, ref.bias, tol, what + " grad_bias");
    }
}  // namespace

TEST_CASE("im2col_b_packer packs exactly the reference columns", "[fastpaths]")
{
    engine gen(101);
    SECTION("the build's register tile") { check_b_packer<float, xconv::detail::gemm_arch>(gen, 300); }
    SECTION("the build's register tile, double") { check_b_packer<double, xconv::detail::gemm_arch>(gen, 150); }
    SECTION("the scalar register tile") { check_b_packer<float, xconv::detail::gemm_scalar_arch>(gen, 150); }
}

TEST_CASE("im2col_t_a_packer packs exactly the reference columns, transposed", "[fastpaths]")
{
    engine gen(202);
    SECTION("the build's register tile") { check_t_a_packer<float, xconv::detail::gemm_arch>(gen, 300); }
    SECTION("the build's register tile, double") { check_t_a_packer<double, xconv::detail::gemm_arch>(gen, 150); }
    SECTION("the scalar register tile") { check_t_a_packer<float, xconv::detail::gemm_scalar_arch>(gen, 150); }
}

TEST_CASE("im2col_tile copies any block of the reference columns", "[fastpaths]")
{
    engine gen(303);
    for (int t = 0; t < 300; ++t)
    {
        const unfold_case c = random_unfold_case(gen);
        const auto x = random_tensor<double, 4>({1, std::size_t(c.C), std::size_t(c.H), std::size_t(c.W)}, gen);
        const auto cols = reference_columns(x, c.g);
        const index_t K = static_cast<index_t>(cols.shape(0)), L = static_cast<index_t>(cols.shape(1));
        const xconv::detail::conv_taps taps(c.win);
        const index_t k0 = random_int(gen, 0, K - 1), k1 = random_int(gen, k0 + 1, K);
        const index_t l0 = random_int(gen, 0, L - 1), l1 = random_int(gen, l0 + 1, L);
        const index_t ld = (l1 - l0) + random_int(gen, 0, 3);
        std::vector<double> dst(std::size_t((k1 - k0) * ld), std::numeric_limits<double>::quiet_NaN());
        std::vector<xconv::detail::conv_segment> segs(std::size_t(xconv::detail::max_segments(l1 - l0, c.win.blocks_w)));
        xconv::detail::im2col_tile(x.data(), c.win, taps, k0, k1, l0, l1, segs.data(), dst.data(), ld);
        index_t bad = 0;
        for (index_t k = k0; k < k1; ++k)
        {
            for (index_t l = l0; l < l1; ++l)
            {
                bad += !(dst[std::size_t((k - k0) * ld + (l - l0))] == cols(std::size_t(k), std::size_t(l)));
            }
        }
        INFO(c.text << " rows [" << k0 << ", " << k1 << ") positions [" << l0 << ", " << l1 << ")");
        REQUIRE(bad == 0);
    }
}

TEST_CASE("col2im_tile sums like the reference fold, bitwise the same for any tiling", "[fastpaths]")
{
    engine gen(404);
    for (int t = 0; t < 200; ++t)
    {
        const unfold_case c = random_unfold_case(gen);
        const index_t K = c.C * c.g.kernel_h * c.g.kernel_w, L = c.win.blocks();
        const auto cols3 = random_tensor<float, 3>({1, std::size_t(K), std::size_t(L)}, gen);
        const auto expected = xconv_test::fold(cols3, c.H, c.W, c.g);
        const xconv::detail::conv_taps taps(c.win);
        std::vector<xconv::detail::conv_segment> segs(std::size_t(xconv::detail::max_segments(L, c.win.blocks_w)));
        std::vector<xt::xtensor<float, 4>> results;
        // Whole range row-major, then random tile sizes in both layouts.
        for (int variant = 0; variant < 4; ++variant)
        {
            const index_t tile = variant == 0 ? L : random_int(gen, 1, L);
            const bool position_major = variant >= 2;
            xt::xtensor<float, 4> plane = xt::zeros<float>({std::size_t(1), std::size_t(c.C), std::size_t(c.H), std::size_t(c.W)});
            std::vector<float> buf(std::size_t(K * tile));
            for (index_t l0 = 0; l0 < L; l0 += tile)
            {
                const index_t n = std::min(tile, L - l0);
                for (index_t k = 0; k < K; ++k)
                {
                    for (index_t l = 0; l < n; ++l)
                    {
                        buf[std::size_t(position_major ? l * K + k : k * n + l)] = cols3(0, std::size_t(k), std::size_t(l0 + l));
                    }
                }
                const std::size_t n_segs = xconv::detail::split_positions(c.win, l0, l0 + n, segs.data());
                xconv::detail::col2im_tile(buf.data(), position_major ? 1 : n, position_major ? K : 1, c.win, taps,
                                           index_t(0), c.C, segs.data(), n_segs, plane.data(), false);
            }
            close(plane, expected, 1e-5, c.text + " tile " + std::to_string(tile));
            results.push_back(plane);
        }
        for (std::size_t v = 1; v < results.size(); ++v)
        {
            INFO(c.text);
            bitwise_equal(results[v], results[0], "col2im_tile with another tiling");
        }

        // Started by the first tile (col2im_start): the planes, garbage before, begin from the
        // bias (or zero), bit for bit as when set beforehand.
        const auto bias = random_tensor<float, 1>({std::size_t(c.C)}, gen);
        for (const bool with_bias : {false, true})
        {
            const index_t tile = random_int(gen, 1, L);
            xt::xtensor<float, 4> started({std::size_t(1), std::size_t(c.C), std::size_t(c.H), std::size_t(c.W)},
                                          std::numeric_limits<float>::quiet_NaN());
            xt::xtensor<float, 4> preset({std::size_t(1), std::size_t(c.C), std::size_t(c.H), std::size_t(c.W)});
            for (index_t ch = 0; ch < c.C; ++ch)
            {
                std::fill(preset.data() + ch * c.H * c.W, preset.data() + (ch + 1) * c.H * c.W, with_bias ? bias(std::size_t(ch)) : 0.0f);
            }
            std::vector<float> buf(std::size_t(K * tile));
            for (index_t l0 = 0; l0 < L; l0 += tile)
            {
                const index_t n = std::min(tile, L - l0);
                for (index_t k = 0; k < K; ++k)
                {
                    for (index_t l = 0; l < n; ++l)
                    {
                        buf[std::size_t(k * n + l)] = cols3(0, std::size_t(k), std::size_t(l0 + l));
                    }
                }
                const std::size_t n_segs = xconv::detail::split_positions(c.win, l0, l0 + n, segs.data());
                xconv::detail::col2im_tile(buf.data(), n, index_t(1), c.win, taps, index_t(0), c.C, segs.data(), n_segs, started.data(),
                                           false, xconv::detail::col2im_start<float>{l0 == 0, with_bias ? bias.data() : nullptr});
                xconv::detail::col2im_tile(buf.data(), n, index_t(1), c.win, taps, index_t(0), c.C, segs.data(), n_segs, preset.data(),
                                           false);
            }
            INFO(c.text << " tile " << tile << (with_bias ? " with bias" : " without bias"));
            auto expected_started = expected;  // the reference fold, plus the bias
            for (index_t ch = 0; with_bias && ch < c.C; ++ch)
            {
                for (index_t px = 0; px < c.H * c.W; ++px)
                {
                    expected_started.data()[ch * c.H * c.W + px] += bias(std::size_t(ch));
                }
            }
            close(started, expected_started, 1e-5, c.text + " started by its first tile");
            bitwise_equal(started, preset, "col2im_tile started by its first tile");
            if (!with_bias)
            {
                bitwise_equal(started, results[0], "col2im_tile started from zero");
            }
        }
    }
}

TEST_CASE("conv2d paths: narrow outputs, 1x1 kernels, direct kernels, large paddings", "[fastpaths]")
{
    engine gen(505);
    // The transposed forward of a narrow output needs at least one register panel of output
    // channels; the build's panel width decides how many that is.
    const index_t nr = static_cast<index_t>(xconv::detail::gemm_traits<float>::nr);
    const index_t nr_d = static_cast<index_t>(xconv::detail::gemm_traits<double>::nr);
    std::vector<conv_case> cases = {
        // narrow outputs (L < 2 nr), computed transposed
        {2, 6, nr, 3, 4, 3, 3, 1, 1, 1, 1},
        {1, 5, nr + 3, 7, 7, 3, 3, 1, 1, 1, 1},
        {3, 4, 2 * nr + 1, 6, 5, 3, 2, 2, 3, 1, 0, 3, 1},
        {2, 2 * nr, nr, 4, 4, 1, 1},                  // narrow and 1x1: the plane is cols
        // 1x1, stride 1, no padding: no im2col, grouped too
        {2, 12, 10, 9, 11, 1, 1},
        {2, 12, 10, 9, 11, 1, 1, 1, 1, 0, 0, 1, 1, 2},
        {1, 8, 6, 5, 7, 1, 1, 2, 2},                  // 1x1 with stride: general path
        {1, 128, nr, 17, 16, 1, 1},                   // 1x1, a panel of outputs, depth 128, wide: implicit or packed GEMM (by maker)
        // padding larger than the kernel (negative offsets in the direct backward-data)
        {2, 3, 4, 5, 6, 2, 2, 1, 1, 3, 2},
        // direct kernels: depthwise 3x3 / 5x5 / 1x1 at widths around the vector width, multipliers
        {2, 4, 4, 9, 1, 3, 3, 1, 1, 1, 1, 1, 1, 4},
        {2, 4, 4, 7, 15, 3, 3, 1, 1, 1, 1, 1, 1, 4},
        {1, 3, 3, 11, 17, 3, 3, 1, 1, 1, 1, 1, 1, 3},
        {1, 2, 2, 10, 33, 3, 3, 1, 1, 1, 1, 1, 1, 2},
        {1, 2, 2, 13, 40, 3, 3, 1, 1, 0, 0, 1, 1, 2},
        {2, 3, 3, 12, 21, 5, 5, 1, 1, 2, 2, 1, 1, 3},
        {1, 3, 3, 6, 19, 1, 1, 1, 1, 0, 0, 1, 1, 3},
        {1, 3, 3, 6, 19, 1, 1, 1, 1, 1, 1, 1, 1, 3},
        {2, 4, 8, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 4},  // depth multiplier 2
        {2, 8, 4, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 4},  // two input channels per group
        {1, 4, 4, 12, 13, 3, 3, 2, 2, 1, 1, 1, 1, 4}, // strided depthwise: generic kernels
        {1, 4, 4, 12, 13, 3, 3, 1, 1, 2, 2, 2, 2, 4}, // dilated depthwise
        {1, 4, 4, 12, 13, 3, 2, 1, 2, 0, 1, 1, 1, 4},
        {1, 2, 2, 8, 9, 3, 3, 1, 1, 5, 4, 1, 1, 2},   // padding beyond the kernel
        {2, 4, 4, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 4, xconv::padding_mode::reflect},
        {2, 4, 4, 9, 10, 3, 3, 1, 1, 2, 1, 1, 1, 4, xconv::padding_mode::circular},
        {2, 4, 6, 9, 10, 3, 3, 1, 1, 1, 2, 1, 1, 2, xconv::padding_mode::replicate},
    };
    for (const auto& c : cases)
    {
        check_conv_case<float>(c, gen, 1e-4);
    }
    std::vector<conv_case> double_cases = {
        {2, 6, nr_d, 3, 4, 3, 3, 1, 1, 1, 1},
        {1, 128, nr_d, 9, 15, 1, 1},
        {1, 3, 3, 11, 17, 3, 3, 1, 1, 1, 1, 1, 1, 3},
        {2, 3, 3, 12, 21, 5, 5, 1, 1, 2, 2, 1, 1, 3},
    };
    for (const auto& c : double_cases)
    {
        check_conv_case<double>(c, gen, 1e-10);
    }
}

namespace
{
    /// Sets the processor maker whose measured route choices apply, for one scope.
    struct route_maker_scope
    {
        explicit route_maker_scope(xconv::detail::cpu_maker maker) noexcept { xconv::detail::set_route_maker(maker); }
        ~route_maker_scope() { xconv::detail::reset_route_maker(); }
        route_maker_scope(const route_maker_scope&) = delete;
        route_maker_scope& operator=(const route_maker_scope&) = delete;
    };

    /// A deep 1x1 layer read in place (stride 1, no padding; 128 channels each way, so that the
    /// input gradient is deep too; 323 positions, not a narrow output in either type) runs on
    /// the implicit GEMM with AMD's choices and on the packed GEMM with Intel's
    /// (detail::use_implicit): the same bits either way, and the reference's values.
    template <class T>
    void check_1x1_routes(engine& gen, double tol)
    {
        using xconv::detail::cpu_maker;
        const auto x = random_tensor<T, 4>({2, 128, 17, 19}, gen);
        const auto w = random_tensor<T, 4>({128, 128, 1, 1}, gen);
        const auto b = random_tensor<T, 1>({128}, gen);
        const auto gy = random_tensor<T, 4>({2, 128, 17, 19}, gen);
        const xconv::conv2d_options o;
        xt::xtensor<T, 4> y[2];
        xconv::conv_gradients<T, 4> grads[2];
        const cpu_maker makers[2] = {cpu_maker::amd, cpu_maker::intel};
        for (int m = 0; m < 2; ++m)
        {
            const route_maker_scope scope(makers[m]);
            y[m] = xconv::conv2d(x, w, b, o);
            grads[m] = xconv::conv2d_backward(gy, x, w, o);
        }
        bitwise_equal(y[0], y[1], "1x1 forward, implicit and packed GEMM");
        bitwise_equal(grads[0].grad_input, grads[1].grad_input, "1x1 grad_input, implicit and packed GEMM");
        bitwise_equal(grads[0].grad_weight, grads[1].grad_weight, "1x1 grad_weight");
        bitwise_equal(grads[0].grad_bias, grads[1].grad_bias, "1x1 grad_bias");
        const xconv_test::conv_geometry g;
        close(y[0], xconv_test::conv2d(x, w, &b, g), tol, "1x1 forward");
        const auto ref = xconv_test::conv2d_backward(gy, x, w, g);
        close(grads[0].grad_input, ref.input, tol, "1x1 grad_input");
        close(grads[0].grad_weight, ref.weight, tol, "1x1 grad_weight");
    }
}

TEST_CASE("1x1 layers read in place: the implicit and the packed GEMM give the same bits", "[fastpaths]")
{
    engine gen(516);
    check_1x1_routes<float>(gen, 1e-4);
    check_1x1_routes<double>(gen, 1e-10);
}

TEST_CASE("tensors over the huge-page advice size are computed like small ones", "[fastpaths]")
{
    // Outputs of at least huge_page_advice_bytes (32 MiB) are advised onto transparent huge
    // pages before they are written; their values must not notice.
    engine gen(515);
    constexpr std::size_t big = xconv::detail::huge_page_advice_bytes;
    // grad_input of a 1x1 layer: 4 x 1024 x 1100 doubles = 34.4 MiB, the advice path and its
    // unaligned tail; the forward output is small. (Double: the weight gradient sums 1.1 million
    // products, too many for a float tolerance.)
    const conv_case c{1, 4, 2, 1024, 1100, 1, 1};
    REQUIRE(std::size_t(c.Cin * c.H * c.W) * sizeof(double) >= big);
    check_conv_case<double>(c, gen, 1e-10);
    // unfold's columns: 9 x 1030 x 1000 floats = 33.2 MiB.
    const auto x = random_tensor<float, 4>({1, 1, 1030, 1000}, gen);
    const xconv_test::window_geometry g{3, 3, 1, 1, 1, 1, 1, 1};
    xconv::unfold_options o;
    o.padding = {1, 1};
    const auto cols = xconv::unfold(x, {3, 3}, o);
    REQUIRE(cols.size() * sizeof(float) >= big);
    CHECK(cols == xconv_test::unfold<float>(x, g));
    // The advice itself on ranges that are too small, unaligned or empty is a no-op.
    std::vector<char> bytes(big + 3 * xconv::detail::huge_page_bytes + 1, 'x');
    xconv::detail::advise_huge_pages(bytes.data() + 1, bytes.size() - 1);
    xconv::detail::advise_huge_pages(bytes.data(), 100);
    xconv::detail::advise_huge_pages(nullptr, big);
    CHECK(std::all_of(bytes.begin(), bytes.end(), [](char v) { return v == 'x'; }));
}

TEST_CASE("implicit GEMM forward: the reference convolution, bitwise the packed path's result for any tiling", "[fastpaths]")
{
    scratch_limit_guard guard;
    engine gen(515);
    const index_t nr = static_cast<index_t>(xconv::detail::gemm_traits<float>::nr);
    const index_t nr_d = static_cast<index_t>(xconv::detail::gemm_traits<double>::nr);

    // Through conv2d: shapes that take the implicit GEMM (at least nr output channels per group,
    // and a depth of 512 or a narrow output), with every gradient against the reference.
    const std::vector<conv_case> cases = {
        {3, 60, nr, 9, 11, 3, 3, 1, 1, 1, 1},          // narrow and deep: two depth blocks
        {2, 64, nr + 5, 17, 18, 3, 3, 1, 1, 1, 1},     // a partial panel of channels
        {2, 64, nr, 20, 21, 3, 2, 2, 3, 2, 0, 2, 1},   // stride, dilation, padding on one axis
        {1, 16, nr, 30, 31, 7, 7, 2, 2, 3, 3},         // one sample: the weight packed panel by panel
        {2, 16, 2 * nr, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 2},  // groups
        {1, 64, nr, 5, 5, 3, 3, 1, 1, 4, 3},           // windows entirely in the padding
        {2, 64, nr, 9, 10, 3, 3, 2, 2},                // no padding: read in place
        // stride 1, several samples: the backward-data pass is the flipped kernel's forward pass
        {2, 2 * nr, 2 * nr, 7, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2},  // groups
        {3, nr, 32, 9, 10, 3, 2, 1, 1, 2, 0, 2, 1},            // dilation; padding at the kernel's reach and none
        {2, nr + 3, 20, 6, 6, 3, 3},                           // no padding: a full correlation back
    };
    for (const auto& c : cases)
    {
        check_conv_case<float>(c, gen, 1e-4);
    }
    const std::vector<conv_case> double_cases = {
        {2, 64, nr_d, 9, 11, 3, 3, 1, 1, 1, 1},
        {1, 64, nr_d + 3, 12, 13, 3, 3, 2, 1, 1, 2, 1, 2},
        {2, nr_d, 16, 7, 7, 3, 3, 1, 1, 1, 1},
    };
    for (const auto& c : double_cases)
    {
        check_conv_case<double>(c, gen, 1e-10);
    }

    // Directly: implicit_forward against lowered_forward_batch (im2col packed into the same GEMM)
    // on random geometries, at a roomy budget and at one small enough to tile the rows.
    for (int trial = 0; trial < 60; ++trial)
    {
        const unfold_case u = random_unfold_case(gen);
        const index_t N = random_int(gen, 1, 3);
        const index_t Cg = nr + random_int(gen, -3, 20) * (trial % 3 == 0 ? 0 : 1);
        const index_t K = u.C * u.g.kernel_h * u.g.kernel_w, L = u.win.blocks(), P = u.H * u.W;
        const auto x = random_tensor<float, 4>({std::size_t(N), std::size_t(u.C), std::size_t(u.H), std::size_t(u.W)}, gen);
        const auto w = random_tensor<float, 1>({std::size_t(Cg * K)}, gen);
        const auto b = random_tensor<float, 1>({std::size_t(Cg)}, gen);
        const xconv::detail::conv_taps taps(u.win);
        xt::xtensor<float, 1> packed = xt::zeros<float>({std::size_t(N * Cg * L)});
        xconv::detail::lowered_forward_batch(u.win, taps, u.C, Cg, w.data(), x.data(), u.C * P, packed.data(), Cg * L, N, b.data(),
                                             std::size_t(4) << 20);
        for (const std::size_t budget : {std::size_t(4) << 20, std::size_t(2048)})
        {
            INFO(u.text << " N=" << N << " Cg=" << Cg << " budget=" << budget);
            xt::xtensor<float, 1> got = xt::zeros<float>({std::size_t(N * Cg * L)});
            xconv::detail::implicit_forward(u.win, u.C, Cg, xconv::detail::strided_b_packer<float>{xconv::transposed(w.data(), K)},
                                            x.data(), u.C * P, got.data(), Cg * L, N, b.data(), budget);
            REQUIRE(std::memcmp(got.data(), packed.data(), got.size() * sizeof(float)) == 0);
        }
        // and the result is the convolution of the last sample (through the reference unfold)
        const auto cols = xconv_test::unfold(x, u.g);
        const std::size_t n = std::size_t(N - 1);
        for (index_t c = 0; c < Cg; c += 7)
        {
            for (index_t l = 0; l < L; l += 3)
            {
                double expected = b(std::size_t(c));
                for (index_t k = 0; k < K; ++k)
                {
                    expected += double(w(std::size_t(c * K + k))) * double(cols(n, std::size_t(k), std::size_t(l)));
                }
                const float v = packed(n * std::size_t(Cg * L) + std::size_t(c * L + l));
                INFO(u.text << " channel " << c << " position " << l);
                CHECK(std::abs(double(v) - expected) <= 1e-4 * (1.0 + std::abs(expected)));
            }
        }
    }
}

TEST_CASE("implicit GEMM forward: weight panels packed by the first row panel's kernel give the bits of panels packed first",
          "[fastpaths]")
{
    // Without a weight packed for the call, implicit_forward packs W^T micro-panel by micro-panel.
    // In float with AVX-512 (implicit_packs_in_kernel) a whole panel of a weight contiguous along
    // k, in depth blocks of a multiple of 16, is transposed by the first row panel's micro-kernel
    // as it computes (implicit_packing_microkernel); other blocks and partial panels are packed
    // first. Depths 16 * 9 = 144 (one block), 48 * 9 = 432 = 384 + 48 (two blocks, both through
    // the packing kernel when kc is 384) and 45 * 9 = 405 = 384 + 21 (a tail of 21, packed first);
    // channels: two whole panels and part of a third.
    engine gen(530);
    const index_t nr = static_cast<index_t>(xconv::detail::gemm_traits<float>::nr);
    const index_t Cg = 2 * nr + 16, H = 7, W = 9;
    xconv::unfold_options uo;
    uo.padding = {1, 1};
    xconv_test::conv_geometry g;
    g.pad_top = g.pad_bottom = g.pad_left = g.pad_right = 1;
    for (const index_t C : {16, 48, 45})
    {
        for (const index_t N : {1, 2})
        {
            INFO("C=" << C << " N=" << N);
            const index_t K = C * 9, P = H * W;
            const auto win = xconv::detail::plan_unfold(std::array<index_t, 4>{N, C, H, W}, {3, 3}, uo).win;
            const index_t L = win.blocks();
            const auto x = random_tensor<float, 4>({std::size_t(N), std::size_t(C), std::size_t(H), std::size_t(W)}, gen);
            const auto w = random_tensor<float, 4>({std::size_t(Cg), std::size_t(C), 3, 3}, gen);
            const auto b = random_tensor<float, 1>({std::size_t(Cg)}, gen);
            const xconv::detail::strided_b_packer<float> packer{xconv::transposed(w.data(), K)};
            // W^T packed whole first, then the implicit GEMM on the packed panels
            // (aligned to 64 bytes, as the library's own buffers are)
            const std::size_t packed_size = xconv::detail::prepacked_b_size<float>(std::size_t(K), std::size_t(Cg));
            std::vector<float> storage(packed_size + 16);
            void* start = storage.data();
            std::size_t room = storage.size() * sizeof(float);
            float* const packed_wt = static_cast<float*>(std::align(64, packed_size * sizeof(float), start, room));
            REQUIRE(packed_wt != nullptr);
            xconv::detail::prepack_b<float>(packer, std::size_t(K), std::size_t(Cg), packed_wt);
            xt::xtensor<float, 4> first = xt::zeros<float>({std::size_t(N), std::size_t(Cg), std::size_t(H), std::size_t(W)});
            xconv::detail::implicit_forward(win, C, Cg, packer, x.data(), C * P, first.data(), Cg * L, N, b.data(), std::size_t(4) << 20,
                                            packed_wt);
            // panel by panel inside the GEMM, at a roomy budget and at one that tiles the rows
            for (const std::size_t budget : {std::size_t(4) << 20, std::size_t(2048)})
            {
                INFO("budget " << budget);
                xt::xtensor<float, 4> got = xt::zeros<float>({std::size_t(N), std::size_t(Cg), std::size_t(H), std::size_t(W)});
                xconv::detail::implicit_forward(win, C, Cg, packer, x.data(), C * P, got.data(), Cg * L, N, b.data(), budget);
                bitwise_equal(got, first, "implicit GEMM, panels packed on the way against packed first");
            }
            close(first, xconv_test::conv2d(x, w, &b, g), 1e-4, "implicit GEMM against the reference");
        }
    }
}

namespace
{
    /// Whether conv2d's forward pass of case c reads the weight in place (weight_stream_applies).
    template <class T>
    bool takes_weight_stream(const conv_case& c)
    {
        xconv::unfold_options uo;
        uo.stride = {c.sh, c.sw};
        uo.padding = {c.ph, c.pw};
        uo.dilation = {c.dh, c.dw};
        const auto win = xconv::detail::plan_unfold(std::array<index_t, 4>{c.N, c.Cin / c.groups, c.H, c.W}, {c.kh, c.kw}, uo).win;
        return xconv::detail::weight_stream_applies<T>(win, c.Cin / c.groups, c.Cout / c.groups, c.N);
    }

    /// Case c (one sample) through conv2d: against the reference; bitwise the same under a cap
    /// small enough for short depth blocks; and, on the positions of whole vectors, bitwise the
    /// result of the same sample inside a batch of two (another route: the other routes' chain).
    template <class T>
    void check_weight_stream_case(const conv_case& c, engine& gen, double tol)
    {
        const std::string what = describe(c);
        INFO(what);
#if defined(XCONV_HAS_SIMD512)
        REQUIRE(takes_weight_stream<T>(c));
#else
        REQUIRE_FALSE(takes_weight_stream<T>(c));
#endif
        check_conv_case<T, double>(c, gen, tol);

        const auto x = random_tensor<T, 4>({1, std::size_t(c.Cin), std::size_t(c.H), std::size_t(c.W)}, gen);
        const auto w = random_tensor<T, 4>({std::size_t(c.Cout), std::size_t(c.Cin / c.groups), std::size_t(c.kh), std::size_t(c.kw)}, gen);
        const auto b = random_tensor<T, 1>({std::size_t(c.Cout)}, gen);
        const xconv::conv2d_options o = xconv_test::conv2d_options_of(c);
        const xt::xtensor<T, 4> y = xconv::conv2d(x, w, b, o);
        const xt::xtensor<T, 4> y_nobias = xconv::conv2d(x, w, o);
        {
            scratch_limit_guard guard;
            xconv::set_scratch_limit(std::size_t(16) << 10);
            bitwise_equal(xt::xtensor<T, 4>(xconv::conv2d(x, w, b, o)), y, "a 16 KiB cap");
            bitwise_equal(xt::xtensor<T, 4>(xconv::conv2d(x, w, o)), y_nobias, "a 16 KiB cap, no bias");
        }
        xt::xtensor<T, 4> x2({2, std::size_t(c.Cin), std::size_t(c.H), std::size_t(c.W)});
        std::copy(x.begin(), x.end(), x2.begin());
        std::copy(x.begin(), x.end(), x2.begin() + std::ptrdiff_t(x.size()));
        REQUIRE_FALSE(takes_weight_stream<T>(conv_case{2, c.Cin, c.Cout, c.H, c.W, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw, c.groups}));
        const xt::xtensor<T, 4> y2 = xconv::conv2d(x2, w, b, o);
        const std::size_t L = y.shape(2) * y.shape(3), whole = L / std::size_t(64 / sizeof(T)) * std::size_t(64 / sizeof(T));
        std::size_t differ = 0;
        for (std::size_t ch = 0; ch < y.shape(1); ++ch)
        {
            for (std::size_t l = 0; l < L; ++l)
            {
                const T one = y.data()[ch * L + l], batched = y2.data()[ch * L + l];
                if (l < whole)
                {
                    differ += std::memcmp(&one, &batched, sizeof(T)) != 0;
                }
                else
                {
                    CHECK(std::abs(double(one) - double(batched)) <= tol * (1.0 + std::abs(double(batched))));
                }
            }
        }
        CHECK(differ == 0);
    }
}

TEST_CASE("weight read in place (one sample, few positions): the reference, the other routes' bits, any cap", "[fastpaths]")
{
    // weight_stream_forward (conv_weight_stream.hpp): one sample, a vector to 64 positions with
    // at most one past the whole vectors (whose dot products ride in the kernel), a register
    // panel of output channels, a depth of 256 or more; in float only with the columns packed by
    // shifting the plane and a weight of 1 MiB or more per group.
    engine gen(540);
    const std::vector<conv_case> cases = {
        {1, 253, 130, 7, 7, 3, 3, 1, 1, 1, 1},             // 49 = 3 vectors + 1; depth 2277 (a tail of 5); a partial channel panel
        {1, 256, 128, 8, 8, 3, 3, 1, 1, 1, 1},             // 64: 4 whole vectors
        {1, 512, 64, 4, 4, 3, 3, 1, 1, 1, 1},              // 16: one vector
        {1, 1024, 256, 7, 7, 1, 1},                        // 1 x 1
        {1, 256, 120, 7, 7, 3, 3, 1, 1, 2, 2, 2, 2},       // dilation 2
        {1, 512, 256, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 2},    // two groups of 128 channels
    };
    for (const auto& c : cases)
    {
        check_weight_stream_case<float>(c, gen, 1e-4);
    }
    const std::vector<conv_case> double_cases = {
        {1, 40, 20, 7, 7, 3, 3, 1, 1, 1, 1},     // 49 = 4 + 2 vectors + 1
        {1, 30, 9, 3, 3, 3, 3, 1, 1, 1, 1},      // 9 = 1 vector + 1
        {1, 32, 24, 13, 13, 3, 3, 2, 2, 1, 1},   // stride 2: columns packed run by run
        {1, 36, 13, 9, 9, 3, 3},                 // no padding: output rows narrower than the plane's
    };
    for (const auto& c : double_cases)
    {
        check_weight_stream_case<double>(c, gen, 1e-10);
    }
    // conv_transpose2d's input gradient is the forward pass over the output gradient: one sample
    // whose input is 7 x 7 takes the route (in double, at stride 1 and 2), against the reference
    check_transpose_case<double>({1, 16, 32, 7, 7, 3, 3, 1, 1, 1, 1}, gen, 1e-10);
    check_transpose_case<double>({1, 24, 32, 7, 7, 3, 3, 2, 2, 1, 1}, gen, 1e-10);
    // and the shapes the rule leaves to the other routes
    CHECK_FALSE(takes_weight_stream<float>({1, 256, 256, 13, 13, 3, 3, 2, 2, 1, 1}));  // float, stride 2
    CHECK_FALSE(takes_weight_stream<float>({1, 64, 64, 7, 7, 3, 3, 1, 1, 1, 1}));      // float, a weight of 144 KiB
    CHECK_FALSE(takes_weight_stream<float>({1, 256, 256, 5, 5, 3, 3, 1, 1, 1, 1}));    // 25 = 16 + 9
    CHECK_FALSE(takes_weight_stream<double>({2, 40, 20, 7, 7, 3, 3, 1, 1, 1, 1}));     // two samples
    CHECK_FALSE(takes_weight_stream<double>({1, 40, 20, 9, 9, 3, 3, 1, 1, 1, 1}));     // 81 positions
}

TEST_CASE("implicit GEMM over a batch: a weight too large to pack once goes in blocks of channels, bitwise the same", "[fastpaths]")
{
    scratch_limit_guard guard;
    engine gen(525);
    using xconv::detail::implicit_column_block;
    constexpr auto nr = static_cast<index_t>(xconv::detail::gemm_traits<float>::nr);
    constexpr std::size_t nr_u = static_cast<std::size_t>(nr);

    // The block rule: whole register panels, as few even blocks as fit 3/4 of the cap.
    const std::size_t panel = 72 * nr_u * sizeof(float);  // K = 72
    CHECK(implicit_column_block<float>(72, 3 * nr, 1, panel * 4) == 3 * nr);           // all three fit
    CHECK(implicit_column_block<float>(72, 3 * nr, 1, panel * 8 / 3) == 2 * nr);       // two fit: blocks of 2 + 1
    CHECK(implicit_column_block<float>(72, 3 * nr - 5, 1, panel * 4 / 3) == nr);       // one fits
    CHECK(implicit_column_block<float>(72, 3 * nr, 1, panel) == 3 * nr);               // none fits: no blocks
    CHECK(implicit_column_block<float>(72, 5 * nr, 2, panel * 2 * 3 * 4 / 3) == 3 * nr);  // two groups: 5 panels in 2 blocks

    // The forward pass under caps that split its weight into one, two and three blocks of
    // channels, and under caps that pack it whole or panel by panel: bitwise the same, and the
    // reference convolution.
    const index_t Cout = 3 * nr - 5;
    const auto x = random_tensor<float, 4>({3, 8, 7, 9}, gen);
    const auto w = random_tensor<float, 4>({std::size_t(Cout), 8, 3, 3}, gen);
    const auto b = random_tensor<float, 1>({std::size_t(Cout)}, gen);
    xconv::conv2d_options o;
    o.padding = 1;
    xconv::set_scratch_limit(std::size_t(4) << 20);
    const auto y = xconv::conv2d(x, w, b, o);
    xconv_test::conv_geometry g;
    g.pad_top = g.pad_bottom = g.pad_left = g.pad_right = 1;
    close(y, xconv_test::conv2d(x, w, &b, g), 1e-4, "conv2d, weight packed whole");
    for (const std::size_t limit : {panel * 4 / 3 + 64, panel * 8 / 3 + 64, std::size_t(0), std::size_t(4) << 10})
    {
        INFO("scratch limit " << limit);
        xconv::set_scratch_limit(limit);
        bitwise_equal(xconv::conv2d(x, w, b, o), y, "conv2d");
    }

    // The stride-1 input gradient as the flipped kernel's forward pass, which the default cap
    // packs in blocks only (the flipped kernel [Cout * 9, Cin] takes over 3 MiB): that route, not
    // col2im's, at every cap, and the reference gradient.
    xconv::set_scratch_limit(xconv::detail::default_scratch_limit);
    const index_t C = 320;
    const auto xb = random_tensor<float, 4>({2, std::size_t(C), 3, 3}, gen);
    const auto wb = random_tensor<float, 4>({std::size_t(C), std::size_t(C), 3, 3}, gen);
    const auto gy = random_tensor<float, 4>({2, std::size_t(C), 3, 3}, gen);
    const std::size_t K = std::size_t(C) * 9;
    REQUIRE(xconv::detail::prepacked_b_size<float>(K, std::size_t(C)) * sizeof(float) > xconv::detail::default_scratch_limit / 4 * 3);
    REQUIRE(implicit_column_block<float>(K, C, 1, xconv::detail::default_scratch_limit) < C);
    const auto gx = xconv::conv2d_backward(gy, xb, wb, o, {true, false, false}).grad_input;
    close(gx, xconv_test::conv2d_backward(gy, xb, wb, g).input, 1e-3, "conv2d grad_input, flipped kernel in blocks");
    xconv::detail::window2d back;  // the flipped kernel's forward pass over dy, computed directly
    back.height = back.width = 3;
    back.kernel_h = back.kernel_w = 3;
    back.pad_top = back.pad_left = 1;
    back.blocks_h = back.blocks_w = 3;
    xt::xtensor<float, 4> direct(gx.shape());
    xconv::detail::implicit_forward(back, C, C, xconv::detail::flipped_weight_b_packer<float>{wb.data(), C, 9}, gy.data(), C * 9,
                                    direct.data(), C * 9, 2, static_cast<const float*>(nullptr), std::size_t(4) << 20);
    bitwise_equal(direct, gx, "conv2d grad_input is the flipped kernel's forward pass");
    for (const std::size_t limit : {std::size_t(0), std::size_t(64) << 10, std::size_t(64) << 20})
    {
        INFO("scratch limit " << limit);
        xconv::set_scratch_limit(limit);
        bitwise_equal(xconv::conv2d_backward(gy, xb, wb, o, {true, false, false}).grad_input, gx, "conv2d grad_input");
    }
}

namespace
{
    /// implicit_backward_weight on random geometries: it runs when it applies, writes only its
    /// columns, bitwise what the column tiles' GEMMs (lowered_backward_weight over the samples)
    /// write, and the reference sums.
    template <class T>
    void check_implicit_wgrad(engine& gen, int trials, double tol)
    {
        constexpr auto nr = static_cast<index_t>(xconv::detail::gemm_traits<T>::nr);
        const index_t min_depth = xconv::detail::implicit_wgrad_min_depth;
        for (int trial = 0; trial < trials; ++trial)
        {
            const unfold_case u = random_unfold_case(gen);
            const index_t K = u.C * u.g.kernel_h * u.g.kernel_w, L = u.win.blocks(), P = u.H * u.W;
            // enough samples for the implicit pass to apply, at times one more
            const index_t N = (min_depth + L - 1) / L + random_int(gen, 0, 1);
            const index_t Cg = trial % 4 == 0 ? 2 * nr : nr + random_int(gen, 0, 20);
            const index_t k_begin = random_int(gen, 0, K - 1), k_end = random_int(gen, k_begin + 1, K);
            const auto x = random_tensor<T, 1>({std::size_t(N * u.C * P)}, gen);
            const auto gy = random_tensor<T, 1>({std::size_t(N * Cg * L)}, gen);
            const xconv::detail::conv_taps taps(u.win);
            const auto plane_of = [&](index_t n) { return x.data() + n * u.C * P; };
            const auto grid_of = [&](index_t n) { return gy.data() + n * Cg * L; };
            INFO(u.text << " N=" << N << " Cg=" << Cg << " columns [" << k_begin << ", " << k_end << ")");

            std::vector<T> got(std::size_t(Cg * K), std::numeric_limits<T>::quiet_NaN()), tiles = got;
            REQUIRE(xconv::detail::implicit_backward_weight<T>(u.win, u.C, Cg, N, plane_of, grid_of, got.data(), k_begin, k_end,
                                                               std::size_t(4) << 20));
            for (index_t n = 0; n < N; ++n)
            {
                xconv::detail::lowered_backward_weight(u.win, taps, u.C, Cg, grid_of(n), plane_of(n), tiles.data(), k_begin, k_end,
                                                       std::size_t(4) << 20, n > 0);
            }
            REQUIRE(std::memcmp(got.data(), tiles.data(), got.size() * sizeof(T)) == 0);  // the NaNs outside too

            // the reference: sum over samples and positions of dy x the reference columns
            index_t bad = 0;
            std::string first;
            std::vector<double> expected(std::size_t(Cg * K), 0.0);
            for (index_t n = 0; n < N; ++n)
            {
                xt::xtensor<T, 4> xn({1, std::size_t(u.C), std::size_t(u.H), std::size_t(u.W)});
                std::copy(plane_of(n), plane_of(n) + u.C * P, xn.begin());
                const auto cols = reference_columns(xn, u.g);
                for (index_t c = 0; c < Cg; ++c)
                {
                    for (index_t k = k_begin; k < k_end; ++k)
                    {
                        double sum = 0.0;
                        for (index_t l = 0; l < L; ++l)
                        {
                            sum += double(grid_of(n)[c * L + l]) * double(cols(std::size_t(k), std::size_t(l)));
                        }
                        expected[std::size_t(c * K + k)] += sum;
                    }
                }
            }
            for (index_t c = 0; c < Cg; ++c)
            {
                for (index_t k = k_begin; k < k_end; ++k)
                {
                    const double e = expected[std::size_t(c * K + k)], v = double(got[std::size_t(c * K + k)]);
                    if (!(std::abs(v - e) <= tol * (1.0 + std::abs(e))) && bad++ == 0)
                    {
                        std::ostringstream os;
                        os << "channel " << c << " column " << k << ": got " << v << ", expected " << e;
                        first = os.str();
                    }
                }
            }
            INFO(first);
            REQUIRE(bad == 0);
        }
    }
}  // namespace

TEST_CASE("implicit GEMM weight gradient: bitwise the column tiles' GEMMs, and the reference", "[fastpaths]")
{
    scratch_limit_guard guard;
    engine gen(533);
    check_implicit_wgrad<float>(gen, 40, 1e-4);
    check_implicit_wgrad<double>(gen, 20, 1e-10);

    // Where it does not apply it does nothing: too few positions, too few channels, no room.
    constexpr auto nr = static_cast<index_t>(xconv::detail::gemm_traits<float>::nr);
    xconv::detail::window2d win;
    win.height = win.width = 8;
    win.kernel_h = win.kernel_w = 3;
    win.pad_top = win.pad_left = 1;
    win.blocks_h = win.blocks_w = 8;  // L = 64
    const auto x = random_tensor<float, 1>({2 * 3 * 64}, gen);
    const auto gy = random_tensor<float, 1>({2 * 2 * nr * 64}, gen);
    const auto plane_of = [&](index_t n) { return x.data() + n * 3 * 64; };
    const auto grid_of = [&](index_t n) { return gy.data() + n * 2 * nr * 64; };
    std::vector<float> w(std::size_t(2 * nr * 27), -1.0f);
    // The channel counts pass through volatiles: with constants, GCC 12 warns of an overflow on
    // paths these calls never take (-Waggressive-loop-optimizations).
    volatile index_t enough_channels = 2 * nr, too_few_channels = nr - 1;
    const index_t cg = enough_channels, few = too_few_channels;
    CHECK_FALSE(xconv::detail::implicit_backward_weight<float>(win, 3, cg, 1, plane_of, grid_of, w.data(), 0, 27, std::size_t(4) << 20));
    CHECK_FALSE(xconv::detail::implicit_backward_weight<float>(win, 3, few, 2, plane_of, grid_of, w.data(), 0, 27, std::size_t(4) << 20));
    CHECK_FALSE(xconv::detail::implicit_backward_weight<float>(win, 3, cg, 2, plane_of, grid_of, w.data(), 0, 27, std::size_t(1024)));
    CHECK(std::all_of(w.begin(), w.end(), [](float v) { return v == -1.0f; }));
    CHECK(xconv::detail::implicit_backward_weight<float>(win, 3, cg, 2, plane_of, grid_of, w.data(), 0, 27, std::size_t(4) << 20));

    // Through conv2d with padding modes other than zeros (the pass reads each sample's padded
    // copy, staged in the thread's buffer): every gradient against the reference.
    check_conv_case<float>({3, 6, nr + 6, 9, 11, 3, 3, 1, 1, 2, 1, 1, 1, 1, xconv::padding_mode::reflect}, gen, 1e-4);
    check_conv_case<float>({2, 5, nr, 8, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1, xconv::padding_mode::circular}, gen, 1e-4);

    // Through conv2d_backward and conv_transpose2d_backward: the reference gradient, and bitwise
    // the same under caps that leave no room for the implicit pass (the column tiles' route).
    // (5 samples of 5 x 6 positions: over implicit_wgrad_min_depth)
    const auto xs = random_tensor<float, 4>({5, 5, 9, 11}, gen);
    const auto ws = random_tensor<float, 4>({std::size_t(nr + 3), 5, 3, 3}, gen);
    const auto gys = random_tensor<float, 4>({5, std::size_t(nr + 3), 5, 6}, gen);
    xconv::conv2d_options o;
    o.stride = 2;
    o.padding = 1;
    xconv_test::conv_geometry g;
    g.stride_h = g.stride_w = 2;
    g.pad_top = g.pad_bottom = g.pad_left = g.pad_right = 1;
    // conv_transpose2d's weight [C_in, C_out, kh, kw]: its gradient's rows are the input's channels
    const auto wt = random_tensor<float, 4>({std::size_t(nr + 3), 5, 3, 3}, gen);
    const auto xt_in = random_tensor<float, 4>({5, std::size_t(nr + 3), 5, 6}, gen);
    const auto gyt = random_tensor<float, 4>({5, 5, 9, 11}, gen);
    xconv::conv_transpose2d_options ot;
    ot.stride = 2;
    ot.padding = 1;
    xconv::set_scratch_limit(xconv::detail::default_scratch_limit);
    const auto gw = xconv::conv2d_backward(gys, xs, ws, o, {false, true, false}).grad_weight;
    close(gw, xconv_test::conv2d_backward(gys, xs, ws, g).weight, 1e-4, "conv2d grad_weight");
    // conv_transpose2d's weight gradient is conv2d's with the roles of x and dy exchanged
    const auto gwt = xconv::conv_transpose2d_backward(gyt, xt_in, wt, ot, {false, true, false}).grad_weight;
    const xt::xtensor<float, 4> unused_weight = xt::ones<float>({std::size_t(nr + 3), std::size_t(5), std::size_t(3), std::size_t(3)});
    close(gwt, xconv_test::conv2d_backward(xt_in, gyt, unused_weight, g).weight, 1e-4,
          "conv_transpose2d grad_weight");
    for (const std::size_t limit : {std::size_t(0), std::size_t(16) << 10})
    {
        INFO("scratch limit " << limit);
        xconv::set_scratch_limit(limit);
        bitwise_equal(xconv::conv2d_backward(gys, xs, ws, o, {false, true, false}).grad_weight, gw, "conv2d grad_weight");
        bitwise_equal(xconv::conv_transpose2d_backward(gyt, xt_in, wt, ot, {false, true, false}).grad_weight, gwt,
                      "conv_transpose2d grad_weight");
    }
}

TEST_CASE("conv_transpose2d paths: depthwise, narrow, 1x1", "[fastpaths]")
{
    engine gen(606);
    const index_t nr = static_cast<index_t>(xconv::detail::gemm_traits<float>::nr);
    const std::vector<transpose_case> cases = {
        {2, 4, 4, 9, 10, 3, 3, 1, 1, 1, 1, 0, 0, 1, 1, 4},   // depthwise, stride 1
        {2, 4, 4, 9, 10, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 4},   // depthwise, stride 2
        {1, 3, 3, 8, 21, 5, 5, 1, 1, 1, 2, 0, 0, 1, 1, 3},
        {2, nr, 6, 3, 3, 3, 3, 1, 1, 1, 1},                  // backward-data narrow
        {2, 8, 6, 5, 7, 1, 1},                               // 1x1
        {2, 8, 6, 5, 4, 3, 2, 2, 3, 1, 0, 1, 2, 3, 1, 2},    // like the suite's seed_test_T, grouped
        // stride 1, several samples, a register panel of output channels: the forward pass is the
        // flipped kernel's correlation through the implicit GEMM
        {2, 16, nr, 6, 7, 3, 3},
        {3, 32, nr + 2, 5, 6, 3, 3, 1, 1, 1, 2, 1, 1, 2, 2},  // padding, dilation, output padding
        {2, 2 * 32, 2 * nr, 4, 5, 3, 2, 1, 1, 1, 0, 0, 0, 1, 1, 2},  // groups
    };
    for (const auto& c : cases)
    {
        check_transpose_case<float>(c, gen, 1e-4);
    }
}

TEST_CASE("depthwise outputs over the streaming size are computed like small ones", "[fastpaths]")
{
    // Outputs (and input gradients) of at least 8 MiB are written with non-temporal stores, the
    // forward pass a block of rows at a time. Widths that are not a whole number of vectors put the
    // blocks' edges off the 64-byte lines; 3x3 and 5x5 run the AVX-512 kernels where built.
    engine gen(611);
    // N, Cin, Cout, H, W, kh, kw, sh, sw, ph, pw, dh, dw, groups
    // Many channels and planes of moderate size: a float weight-gradient element sums 33,000
    // products (two samples of 127 x 131), which float keeps to the tolerance; the reference
    // sums in double.
    const conv_case c3{2, 64, 64, 127, 131, 3, 3, 1, 1, 1, 1, 1, 1, 64};
    const conv_case c5{2, 8, 8, 260, 257, 5, 5, 1, 1, 2, 2, 1, 1, 8};
    REQUIRE(xconv::detail::stream_output(std::size_t(c3.N * c3.Cout * c3.H * c3.W) * sizeof(float)));
    REQUIRE(xconv::detail::stream_output(std::size_t(c5.N * c5.Cout * c5.H * c5.W) * sizeof(double)));
    check_conv_case<float, double>(c3, gen, 1e-4);
    check_conv_case<double>(c5, gen, 1e-10);
    // the transposed layer's forward pass is the flipped kernel's correlation, streamed too
    const transpose_case t{2, 64, 64, 127, 131, 3, 3, 1, 1, 1, 1, 0, 0, 1, 1, 64};
    check_transpose_case<float, double>(t, gen, 1e-4);
}

TEST_CASE("a prefetch range belongs to the call that set it", "[fastpaths]")
{
    // The direct kernels fetch the planes of the next (sample, group) a few lines at a time; what
    // a call leaves unfetched must not be fetched by the next call's kernels.
    std::vector<float> planes(4096);  // 16 KiB: 256 lines
    xconv::detail::prefetch_cursor& ahead = xconv::detail::direct_ahead();
    {
        const xconv::detail::scratch_call call;
        ahead.set(0, planes.data(), planes.size() * sizeof(float));
        ahead.spread(4);
        REQUIRE(ahead.pending() == 256);
        ahead.advance();  // about a quarter of it
        const std::int64_t left = ahead.pending();
        CHECK(left > 0);
        CHECK(left < 256);
        ahead.spread(3);  // the next kernel of the same call goes on with the rest
        CHECK(ahead.pending() == left);
    }
    {
        const xconv::detail::scratch_call call;
        ahead.spread(3);
        CHECK(ahead.pending() == 0);
    }
}

TEST_CASE("sub-pixel phases: strided backward-data and transposed forward without col2im", "[fastpaths]")
{
    // Strides above 1 with more taps than phases and at least 16 plane channels: each phase of
    // the plane is a stride-1 correlation of the grid, through the implicit GEMM when the plane
    // channels fill a register panel (nr), else through the packed GEMM.
    scratch_limit_guard guard;
    engine gen(616);
    const index_t nr = static_cast<index_t>(xconv::detail::gemm_traits<float>::nr);
    const index_t nr_d = static_cast<index_t>(xconv::detail::gemm_traits<double>::nr);
    // N, Cin, Cout, H, W, kh, kw, sh, sw, ph, pw, oph, opw, dh, dw, groups
    const std::vector<transpose_case> transposed = {
        {2, 8, 16, 5, 6, 4, 4, 2, 2, 1, 1},                    // like dcgan_up, packed GEMM
        {2, 8, nr, 5, 6, 4, 4, 2, 2, 1, 1},                    // implicit GEMM
        {1, 6, nr + 5, 4, 5, 5, 5, 3, 3, 2, 2, 2, 2},          // stride 3, output padding
        {2, 5, 20, 6, 5, 3, 4, 2, 3, 1, 2, 1, 0, 2, 1},        // dilation sharing a factor with the stride
        {1, 4, 18, 7, 6, 3, 3, 2, 2, 2, 1, 1, 0, 3, 3},        // dilation 3 at stride 2
        {2, 8, 32, 5, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2},     // groups
        {1, 3, 16, 4, 4, 3, 3, 2, 2, 0, 0, 2, 2, 3, 3},        // output padding beyond the grid's reach
        {1, 4, 16, 5, 4, 5, 2, 1, 3, 2, 0},                    // a column phase no tap reaches
    };
    for (const auto& c : transposed)
    {
        check_transpose_case<float>(c, gen, 1e-4);
    }
    check_transpose_case<double>({2, 6, nr_d, 5, 4, 4, 4, 2, 2, 1, 1}, gen, 1e-10);
    check_transpose_case<double>({1, 5, 17, 6, 5, 3, 3, 2, 2, 1, 1, 1, 0}, gen, 1e-10);
    // conv2d's input gradient: the plane channels are the input's.
    const std::vector<conv_case> convs = {
        {2, 16, 8, 11, 12, 3, 3, 2, 2, 1, 1},
        {2, nr, 8, 9, 10, 3, 3, 2, 2, 1, 1},
        {1, 20, 6, 13, 11, 5, 3, 3, 2, 2, 1, 2, 1},
        {2, 32, 8, 9, 9, 3, 3, 2, 2, 1, 1, 1, 1, 2},
        {1, 16, 4, 9, 10, 3, 3, 2, 2, 1, 1, 1, 1, 1, xconv::padding_mode::reflect},
        {1, 16, 4, 8, 12, 5, 2, 1, 3, 2, 0},
    };
    for (const auto& c : convs)
    {
        check_conv_case<float>(c, gen, 1e-4);
    }
    check_conv_case<double>({2, nr_d, 6, 9, 8, 3, 3, 2, 2, 1, 1}, gen, 1e-10);

    // The scratch cap changes the bands and whether the phase weights are packed once, never a bit.
    const auto x = random_tensor<float, 4>({2, 24, 9, 11}, gen);
    const auto wt = random_tensor<float, 4>({24, nr + 3, 4, 3}, gen);
    const auto bt = random_tensor<float, 1>({std::size_t(nr + 3)}, gen);
    const auto wc = random_tensor<float, 4>({16, 24, 3, 3}, gen);
    xconv::conv_transpose2d_options ot;
    ot.stride = {2, 3};
    ot.padding = {1, 1};
    xconv::conv2d_options oc;
    oc.stride = 2;
    oc.padding = 1;
    const auto yt = xconv::conv_transpose2d(x, wt, bt, ot);
    const auto gy = random_tensor<float, 4>({2, 16, 5, 6}, gen);
    const auto gx = xconv::conv2d_backward(gy, x, wc, oc, {true, false, false}).grad_input;
    xconv_test::transpose_geometry gt;
    gt.stride_h = 2;
    gt.stride_w = 3;
    gt.pad_h = gt.pad_w = 1;
    close(yt, xconv_test::conv_transpose2d(x, wt, &bt, gt), 1e-4, "conv_transpose2d, all phases packed once");
    xconv_test::conv_geometry gc;
    gc.stride_h = gc.stride_w = 2;
    gc.pad_top = gc.pad_bottom = gc.pad_left = gc.pad_right = 1;
    close(gx, xconv_test::conv2d_backward(gy, x, wc, gc).input, 1e-4, "conv2d grad_input, all phases packed once");
    // Caps between one phase's packed weights and all of them: the passes then run phase by
    // phase over the batch, each phase packed once (the transposed layer's six; the conv2d
    // gradient's four).
    // (0: no phases, as for the transposed layer where the register panel is narrower than 13
    // channels and its nr + 3 plane channels are fewer than the phases want.)
    const auto by_phase_cap = [](const xconv::detail::window2d& win, index_t Cp, index_t Cg) -> std::size_t {
        if (!xconv::detail::phases_apply(win, Cp, Cg))
        {
            return 0;
        }
        const std::size_t largest = xconv::detail::phase_by_phase_bytes<float>(win, Cp, Cg);
        const std::size_t all = xconv::detail::phase_layout<float>(win, Cp, Cg).per_group * sizeof(float);
        REQUIRE(largest < all);
        return (largest + all) / 2 / 3 * 4;  // three quarters of it lie between the two
    };
    const std::array<std::int64_t, 4> x_shape{2, 24, 9, 11};
    const auto pt = xconv::detail::plan_conv_transpose2d("test", x_shape, wt.shape(), std::optional<std::size_t>(nr + 3), ot);
    const auto pc = xconv::detail::plan_conv2d("test", x_shape, wc.shape(), std::nullopt, oc);
    const std::size_t cap_t = by_phase_cap(pt.win, nr + 3, 24), cap_c = by_phase_cap(pc.win, 24, 16);
    REQUIRE(cap_c > 0);
    for (const std::size_t limit : {std::size_t(0), std::size_t(16) << 10, cap_t, cap_c})
    {
        INFO("scratch limit " << limit);
        xconv::set_scratch_limit(limit);
        bitwise_equal(xconv::conv_transpose2d(x, wt, bt, ot), yt, "conv_transpose2d");
        bitwise_equal(xconv::conv2d_backward(gy, x, wc, oc, {true, false, false}).grad_input, gx, "conv2d grad_input");
    }
}

TEST_CASE("scratch limit: set and read back, and any cap gives bitwise the same results", "[fastpaths]")
{
    scratch_limit_guard guard;
    xconv::set_scratch_limit(123456);
    CHECK(xconv::scratch_limit() == 123456);

    engine gen(707);
    const auto x = random_tensor<float, 4>({2, 8, 23, 21}, gen);
    const auto w = random_tensor<float, 4>({16, 8, 3, 3}, gen);
    const auto wd = random_tensor<float, 4>({8, 1, 3, 3}, gen);
    const auto wt = random_tensor<float, 4>({8, 6, 4, 4}, gen);
    const auto b16 = random_tensor<float, 1>({16}, gen);
    const auto b8 = random_tensor<float, 1>({8}, gen);
    const auto b6 = random_tensor<float, 1>({6}, gen);
    xconv::conv2d_options o;
    o.padding = 1;
    xconv::conv2d_options od = o;
    od.groups = 8;
    xconv::conv2d_options orf = o;
    orf.padding = {2, 1};
    orf.padding_mode = xconv::padding_mode::reflect;
    xconv::conv_transpose2d_options ot;
    ot.stride = 2;
    ot.padding = 1;

    struct results
    {
        xt::xtensor<float, 4> y, gx, gw, yd, gxd, gwd, yr, gxr, gwr, yt, gxt, gwt;
        xt::xtensor<float, 1> gb, gbt;
    };
    const auto run = [&](std::size_t limit) {
        xconv::set_scratch_limit(limit);
        results r;
        r.y = xconv::conv2d(x, w, b16, o);
        auto g = xconv::conv2d_backward(r.y, x, w, o);
        r.gx = g.grad_input;
        r.gw = g.grad_weight;
        r.gb = g.grad_bias;
        r.yd = xconv::conv2d(x, wd, b8, od);
        auto gd = xconv::conv2d_backward(r.yd, x, wd, od);
        r.gxd = gd.grad_input;
        r.gwd = gd.grad_weight;
        r.yr = xconv::conv2d(x, w, b16, orf);
        auto gr = xconv::conv2d_backward(r.yr, x, w, orf);
        r.gxr = gr.grad_input;
        r.gwr = gr.grad_weight;
        r.yt = xconv::conv_transpose2d(x, wt, b6, ot);
        auto gt = xconv::conv_transpose2d_backward(r.yt, x, wt, ot);
        r.gxt = gt.grad_input;
        r.gwt = gt.grad_weight;
        r.gbt = gt.grad_bias;
        return r;
    };
    const results base = run(std::size_t(4) << 20);
    // The reference for one of them, so that a wrong but tiling-independent result fails too.
    xconv_test::conv_geometry g;
    g.pad_top = g.pad_bottom = g.pad_left = g.pad_right = 1;
    close(base.y, xconv_test::conv2d(x, w, &b16, g), 1e-4, "conv2d forward");
    for (const std::size_t limit : {std::size_t(0), std::size_t(16) << 10, std::size_t(200) << 10, std::size_t(256) << 20})
    {
        INFO("scratch limit " << limit);
        const results r = run(limit);
        bitwise_equal(r.y, base.y, "conv2d");
        bitwise_equal(r.gx, base.gx, "conv2d grad_input");
        bitwise_equal(r.gw, base.gw, "conv2d grad_weight");
        bitwise_equal(r.gb, base.gb, "conv2d grad_bias");
        bitwise_equal(r.yd, base.yd, "depthwise");
        bitwise_equal(r.gxd, base.gxd, "depthwise grad_input");
        bitwise_equal(r.gwd, base.gwd, "depthwise grad_weight");
        bitwise_equal(r.yr, base.yr, "reflect");
        bitwise_equal(r.gxr, base.gxr, "reflect grad_input");
        bitwise_equal(r.gwr, base.gwr, "reflect grad_weight");
        bitwise_equal(r.yt, base.yt, "conv_transpose2d");
        bitwise_equal(r.gxt, base.gxt, "conv_transpose2d grad_input");
        bitwise_equal(r.gwt, base.gwt, "conv_transpose2d grad_weight");
        bitwise_equal(r.gbt, base.gbt, "conv_transpose2d grad_bias");
    }

    // A stride-1 input gradient that the flipped kernel's implicit GEMM computes (a register
    // panel of input channels): under a cap too small to pack that kernel once, the same route,
    // packed panel by panel, not col2im's (whose sums run in another order).
    const index_t nr = static_cast<index_t>(xconv::detail::gemm_traits<float>::nr);
    const auto x64 = random_tensor<float, 4>({2, std::size_t(nr), 9, 10}, gen);
    const auto w64 = random_tensor<float, 4>({16, std::size_t(nr), 3, 3}, gen);
    const auto gy64 = random_tensor<float, 4>({2, 16, 9, 10}, gen);
    xconv::set_scratch_limit(std::size_t(4) << 20);
    const auto gx64 = xconv::conv2d_backward(gy64, x64, w64, o, {true, false, false}).grad_input;
    for (const std::size_t limit : {std::size_t(0), std::size_t(16) << 10})
    {
        INFO("scratch limit " << limit);
        xconv::set_scratch_limit(limit);
        bitwise_equal(xconv::conv2d_backward(gy64, x64, w64, o, {true, false, false}).grad_input, gx64, "stride-1 grad_input");
    }
}
