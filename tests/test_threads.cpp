// Reproducibility under threads: conv2d and conv_transpose2d, forward and all three gradients,
// must come out byte for byte the same with 1, 2 and 3 OpenMP threads, on small shapes shaped like
// the benchmark suite's (plain, strided and dilated, 1x1, narrow outputs, grouped, depthwise,
// padding modes, transposed), each also checked against the naive reference so that a result
// that is reproducible but wrong fails too. Built without OpenMP (XCONV_USE_OPENMP), the test
// runs the single-thread path twice, says so, and compares the two runs.
//
// Scratch memory under threads: the per-thread buffers that calls leave for later calls, plus a
// call's weights packed once, stay within the scratch limit over forward and backward passes of
// layers that pack their weights once; release_scratch frees them all and changes no result.
// With plain threads (std::thread, any build): a buffer kept by another thread is freed when the
// cap needs its room and no running pass uses it; a running pass keeps its buffers, but gives
// back the part an earlier, larger pass grew and it did not ask for.
#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <xtensor/xview.hpp>
#include <xconv/xconv.hpp>

#if defined(XCONV_USE_OPENMP)
#include <omp.h>
#endif

#include "support/options.hpp"
#include "support/random.hpp"
#include "support/reference.hpp"

namespace
{
    using index_t = std::int64_t;

    struct thread_case
    {
        const char* name;
        bool transposed;
        index_t N, Cin, Cout, H, W, kh, kw, sh, sw, ph, pw, dh, dw, groups;
        xconv::padding_mode mode = xconv::padding_mode::zeros;
        index_t oph = 0, opw = 0;
    };

    struct outputs
    {
        xt::xtensor<float, 4> y, gx, gw;
        xt::xtensor<float, 1> gb;
    };

    /// The inputs of a case, drawn once so that every thread count sees the same numbers.
    struct inputs
    {
        xt::xtensor<float, 4> x, w, gy;
        xt::xtensor<float, 1> b;
    };

    xconv::conv_transpose2d_options transpose_options(const thread_case& c)
    {
        xconv::conv_transpose2d_options o;
        o.stride = {c.sh, c.sw};
        o.padding = {c.ph, c.pw};
        o.dilation = {c.dh, c.dw};
        o.groups = std::size_t(c.groups);
        o.output_padding = {c.oph, c.opw};
        return o;
    }

    inputs make_inputs(const thread_case& c, xconv_test::engine& gen)
    {
        inputs in;
        in.x = xconv_test::random_tensor<float, 4>({std::size_t(c.N), std::size_t(c.Cin), std::size_t(c.H), std::size_t(c.W)}, gen);
        in.b = xconv_test::random_tensor<float, 1>({std::size_t(c.Cout)}, gen);
        if (c.transposed)
        {
            in.w = xconv_test::random_tensor<float, 4>(
                {std::size_t(c.Cin), std::size_t(c.Cout / c.groups), std::size_t(c.kh), std::size_t(c.kw)}, gen);
            const auto y = xconv::conv_transpose2d(in.x, in.w, in.b, transpose_options(c));
            in.gy = xconv_test::random_tensor<float, 4>({y.shape(0), y.shape(1), y.shape(2), y.shape(3)}, gen);
        }
        else
        {
            in.w = xconv_test::random_tensor<float, 4>(
                {std::size_t(c.Cout), std::size_t(c.Cin / c.groups), std::size_t(c.kh), std::size_t(c.kw)}, gen);
            const auto y = xconv::conv2d(in.x, in.w, in.b, xconv_test::conv2d_options_of(c));
            in.gy = xconv_test::random_tensor<float, 4>({y.shape(0), y.shape(1), y.shape(2), y.shape(3)}, gen);
        }
        return in;
    }

    outputs run(const thread_case& c, const inputs& in)
    {
        outputs out;
        if (c.transposed)
        {
            const auto o = transpose_options(c);
            out.y = xconv::conv_transpose2d(in.x, in.w, in.b, o);
            auto g = xconv::conv_transpose2d_backward(in.gy, in.x, in.w, o);
            out.gx = g.grad_input;
            out.gw = g.grad_weight;
            out.gb = g.grad_bias;
        }
        else
        {
            const auto o = xconv_test::conv2d_options_of(c);
            out.y = xconv::conv2d(in.x, in.w, in.b, o);
            auto g = xconv::conv2d_backward(in.gy, in.x, in.w, o);
            out.gx = g.grad_input;
            out.gw = g.grad_weight;
            out.gb = g.grad_bias;
        }
        return out;
    }

    /// The reference results of a case (independent naive loops).
    outputs reference(const thread_case& c, const inputs& in)
    {
        outputs out;
        if (c.transposed)
        {
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
            out.y = xconv_test::conv_transpose2d(in.x, in.w, &in.b, g);
            auto r = xconv_test::conv_transpose2d_backward(in.gy, in.x, in.w, g);
            out.gx = r.input;
            out.gw = r.weight;
            out.gb = r.bias;
        }
        else
        {
            xconv_test::conv_geometry g;
            g.stride_h = c.sh;
            g.stride_w = c.sw;
            g.pad_top = g.pad_bottom = c.ph;
            g.pad_left = g.pad_right = c.pw;
            g.dil_h = c.dh;
            g.dil_w = c.dw;
            g.groups = c.groups;
            g.mode = static_cast<xconv_test::pad_mode>(static_cast<int>(c.mode));
            out.y = xconv_test::conv2d(in.x, in.w, &in.b, g);
            auto r = xconv_test::conv2d_backward(in.gy, in.x, in.w, g);
            out.gx = r.input;
            out.gw = r.weight;
            out.gb = r.bias;
        }
        return out;
    }

    template <class A>
    bool same_bytes(const A& a, const A& b)
    {
        return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(*a.data())) == 0;
    }

    void require_same(const outputs& got, const outputs& base, const std::string& what)
    {
        INFO(what);
        CHECK(same_bytes(got.y, base.y));
        CHECK(same_bytes(got.gx, base.gx));
        CHECK(same_bytes(got.gw, base.gw));
        CHECK(same_bytes(got.gb, base.gb));
    }

    void require_close(const outputs& got, const outputs& ref, const std::string& what)
    {
        const double tol = 1e-4;
        const auto y = xconv_test::compare(got.y, ref.y, tol);
        const auto gx = xconv_test::compare(got.gx, ref.gx, tol);
        const auto gw = xconv_test::compare(got.gw, ref.gw, tol);
        const auto gb = xconv_test::compare(got.gb, ref.gb, tol);
        INFO(what << "\n output " << y.message << "\n grad_input " << gx.message << "\n grad_weight " << gw.message
                  << "\n grad_bias " << gb.message);
        CHECK((y.ok && gx.ok && gw.ok && gb.ok));
    }

    // N, C_in, C_out, H, W, kh, kw, sh, sw, ph, pw, dh, dw, groups (, mode, output padding)
    const std::vector<thread_case> cases = {
        {"3x3 pad 1", false, 4, 16, 32, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"3x3 pad 1, one sample (threads inside the GEMM)", false, 1, 32, 64, 24, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"narrow output (computed transposed)", false, 3, 16, 72, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"narrow output, one sample", false, 1, 24, 136, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"strided and dilated (seed_test)", false, 3, 8, 16, 16, 16, 3, 2, 2, 3, 1, 0, 3, 1, 1},
        {"1x1", false, 2, 32, 16, 12, 12, 1, 1, 1, 1, 0, 0, 1, 1, 1},
        {"1x1, one sample", false, 1, 64, 64, 16, 16, 1, 1, 1, 1, 0, 0, 1, 1, 1},
        {"stride 2 (downsample)", false, 2, 16, 32, 13, 13, 3, 3, 2, 2, 1, 1, 1, 1, 1},
        {"grouped", false, 3, 16, 32, 10, 10, 3, 3, 1, 1, 1, 1, 1, 1, 4},
        {"depthwise", false, 3, 16, 16, 17, 19, 3, 3, 1, 1, 1, 1, 1, 1, 16},
        {"depthwise, stride 2", false, 2, 6, 6, 15, 14, 3, 3, 2, 2, 1, 1, 1, 1, 6},
        {"depthwise, 4 groups", false, 2, 4, 8, 9, 40, 3, 3, 1, 1, 1, 1, 1, 1, 4},
        {"reflect padding", false, 2, 8, 8, 9, 10, 3, 3, 1, 1, 2, 1, 1, 1, 1, xconv::padding_mode::reflect},
        {"circular padding, one sample", false, 1, 8, 12, 11, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, xconv::padding_mode::circular},
        {"replicate padding, depthwise", false, 2, 6, 6, 9, 10, 3, 3, 1, 1, 1, 2, 1, 1, 6, xconv::padding_mode::replicate},
        {"transposed 4x4 stride 2 (dcgan_up)", true, 3, 8, 4, 7, 6, 4, 4, 2, 2, 1, 1, 1, 1, 1},
        {"transposed like seed_test_T", true, 2, 8, 16, 6, 5, 3, 2, 2, 3, 1, 0, 3, 1, 1, xconv::padding_mode::zeros, 1, 2},
        {"transposed 2x2 stride 2 (unet_up2x2)", true, 2, 16, 8, 8, 8, 2, 2, 2, 2, 0, 0, 1, 1, 1},
        {"transposed grouped", true, 2, 8, 12, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2},
        {"transposed depthwise", true, 3, 8, 8, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1, 8},
        {"transposed, one sample", true, 1, 32, 32, 12, 12, 4, 4, 2, 2, 1, 1, 1, 1, 1},
        {"few input channels, one sample (col2im in bands of rows)", false, 1, 3, 16, 21, 20, 7, 7, 2, 2, 3, 3, 1, 1, 1},
        {"transposed, two output channels, one sample (col2im in bands of rows)", true, 1, 16, 2, 9, 8, 4, 4, 2, 2, 1, 1, 1, 1, 1},
        {"implicit GEMM, one sample (threads share the row panels)", false, 1, 64, 64, 12, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"implicit GEMM, one sample, two channel panels (threads share them)", false, 1, 64, 128, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"weight read in place, one sample at 7 x 7 (threads share the channel panels)", false, 1, 256, 124, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"implicit GEMM, several samples", false, 4, 64, 64, 10, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"implicit GEMM, one sample larger than a tile (the threads take whole bands of rows)", false, 1, 3, 64, 96, 96, 7, 7, 2, 2, 3, 3, 1, 1, 1},
        {"transposed, deep backward-input (implicit GEMM)", true, 2, 64, 64, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"transposed by sub-pixel phases (implicit GEMM), one sample", true, 1, 16, 64, 7, 6, 4, 4, 2, 2, 1, 1, 1, 1, 1},
        {"grouped, weight gradient by the implicit GEMM", false, 2, 16, 128, 10, 10, 3, 3, 1, 1, 1, 1, 1, 1, 2},
        {"transposed, weight gradient by the implicit GEMM", true, 4, 64, 16, 6, 6, 4, 4, 2, 2, 1, 1, 1, 1, 1},
        {"input gradient by sub-pixel phases (implicit GEMM), stride 2", false, 3, 64, 16, 11, 10, 3, 3, 2, 2, 1, 1, 1, 1, 1},
        {"implicit GEMM, a weight of 576 KiB packed once by all the threads", false, 2, 128, 128, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {"transposed by sub-pixel phases, 1 MiB of phase weights packed by all the threads", true, 2, 128, 128, 5, 5, 4, 4, 2, 2, 1, 1, 1, 1, 1},
    };

    /// Frees the buffers of every thread this program's tests run on (at most 3).
    void release_all()
    {
#if defined(XCONV_USE_OPENMP)
        const int threads = omp_get_max_threads();
        omp_set_num_threads(3);
        xconv::release_scratch();
        omp_set_num_threads(threads);
#else
        xconv::release_scratch();
#endif
    }
}  // namespace

TEST_CASE("threads: outputs and gradients are bitwise the same for 1, 2 and 3 threads", "[threads]")
{
    xconv_test::engine gen(20240611);
#if defined(XCONV_USE_OPENMP)
    const int saved = omp_get_max_threads();
    for (const auto& c : cases)
    {
        const inputs in = make_inputs(c, gen);
        omp_set_num_threads(1);
        const outputs base = run(c, in);
        require_close(base, reference(c, in), std::string(c.name) + ", 1 thread, against the reference");
        for (const int threads : {2, 3})
        {
            omp_set_num_threads(threads);
            const outputs got = run(c, in);
            require_same(got, base, std::string(c.name) + ": " + std::to_string(threads) + " threads against 1");
        }
    }
    omp_set_num_threads(saved);
#else
    WARN("xconv was built without OpenMP (XCONV_USE_OPENMP): only the single-thread path runs here, "
         "twice, and the two runs are compared");
    for (const auto& c : cases)
    {
        const inputs in = make_inputs(c, gen);
        const outputs base = run(c, in);
        require_close(base, reference(c, in), std::string(c.name) + " against the reference");
        require_same(run(c, in), base, std::string(c.name) + ": a second run");
    }
#endif
}

TEST_CASE("scratch: kept buffers and packed weights stay within the limit, and release_scratch frees them", "[threads]")
{
    xconv_test::engine gen(4242);
    // A 1 MiB limit, and layers whose weights (512 and 576 KiB in float) are packed once per call,
    // next to the buffers every thread keeps from the passes before.
    const std::size_t saved_limit = xconv::scratch_limit();
    xconv::set_scratch_limit(std::size_t(1) << 20);
    const auto xt8 = xconv_test::random_tensor<float, 4>({2, 128, 8, 8}, gen);
    const auto wt = xconv_test::random_tensor<float, 4>({128, 64, 4, 4}, gen);
    const auto x7 = xconv_test::random_tensor<float, 4>({2, 128, 7, 7}, gen);
    const auto w3 = xconv_test::random_tensor<float, 4>({128, 128, 3, 3}, gen);
    // One sample with few positions and a wide weight: the input gradient's tiles are computed
    // transposed, and the GEMM packs a block of that weight (1.7 MiB) per tile.
    const auto x5 = xconv_test::random_tensor<float, 4>({1, 128, 5, 5}, gen);
    const auto w5 = xconv_test::random_tensor<float, 4>({384, 128, 3, 3}, gen);
    // A transposed layer to few channels by sub-pixel phases: each phase's GEMM packs a block of
    // the positions of a band of rows.
    const auto x28 = xconv_test::random_tensor<float, 4>({2, 128, 28, 28}, gen);
    const auto w16 = xconv_test::random_tensor<float, 4>({128, 16, 3, 3}, gen);
    xconv::conv_transpose2d_options ot;
    ot.stride = 2;
    ot.padding = 1;
    xconv::conv2d_options o;
    o.padding = 1;
    xconv::conv2d_options od;
    od.padding = 2;
    od.dilation = 2;
    const auto run = [&] {
        std::vector<xt::xtensor<float, 4>> r;
        for (int pass = 0; pass < 2; ++pass)
        {
            r.push_back(xconv::conv_transpose2d(xt8, wt, ot));
            r.push_back(xconv::conv_transpose2d_backward(r.back(), xt8, wt, ot).grad_weight);
            r.push_back(xconv::conv2d(x7, w3, o));
            r.push_back(xconv::conv2d_backward(r.back(), x7, w3, o).grad_input);
            r.push_back(xconv::conv2d(x7, w3, od));
            r.push_back(xconv::conv2d_backward(r.back(), x7, w3, od).grad_weight);
            r.push_back(xconv::conv2d(x5, w5, o));
            r.push_back(xconv::conv2d_backward(r.back(), x5, w5, o).grad_input);
            r.push_back(xconv::conv_transpose2d(x28, w16, ot));
        }
        return r;
    };
    const auto check = [&](const std::string& what) {
        release_all();
        CHECK(xconv::scratch_held() == 0);
        xconv::detail::scratch_bytes().reset_peak();
        const auto first = run();
        INFO(what << ": most scratch held at once " << xconv::detail::scratch_bytes().peak.load() << " bytes, limit "
                  << xconv::scratch_limit());
        CHECK(xconv::detail::scratch_bytes().peak.load() <= xconv::scratch_limit());
        CHECK(xconv::scratch_held() > 0);
        // Freed between calls, the buffers are allocated anew: the same results.
        release_all();
        CHECK(xconv::scratch_held() == 0);
        const auto second = run();
        for (std::size_t i = 0; i < first.size(); ++i)
        {
            CHECK(same_bytes(first[i], second[i]));
        }
    };
#if defined(XCONV_USE_OPENMP)
    const int saved = omp_get_max_threads();
    for (const int threads : {1, 2, 3})
    {
        omp_set_num_threads(threads);
        check(std::to_string(threads) + " threads");
    }
    omp_set_num_threads(saved);
#else
    check("1 thread");
#endif
    xconv::set_scratch_limit(saved_limit);
}

namespace
{
    /// Runs f() from no scratch held, with 1, 2 and 3 threads (1 without OpenMP) under a limit
    /// of `limit_mib` MiB (the default limit: 4), and checks the most scratch held at once.
    template <class F>
    void check_scratch_peak(const std::string& what, F&& f, std::size_t limit_mib = 4)
    {
        const std::size_t saved_limit = xconv::scratch_limit();
        xconv::set_scratch_limit(limit_mib << 20);
#if defined(XCONV_USE_OPENMP)
        const int saved = omp_get_max_threads();
        const std::vector<int> thread_counts = {1, 2, 3};
#else
        const std::vector<int> thread_counts = {1};
#endif
        for (const int threads : thread_counts)
        {
            release_all();
#if defined(XCONV_USE_OPENMP)
            omp_set_num_threads(threads);
#endif
            xconv::detail::scratch_bytes().reset_peak();
            f();
            INFO(what << ", " << threads << " threads: most scratch held at once " << xconv::detail::scratch_bytes().peak.load()
                      << " bytes");
            CHECK(xconv::detail::scratch_bytes().peak.load() <= xconv::scratch_limit());
        }
#if defined(XCONV_USE_OPENMP)
        omp_set_num_threads(saved);
#endif
        xconv::set_scratch_limit(saved_limit);
    }
}  // namespace

namespace
{
    /// check_scratch_peak of a stride-2 conv_transpose2d (padding 1, no bias) of x by w, whose
    /// 28 x 28 planes become 55 x 55 by sub-pixel phases.
    template <class T>
    void check_phases_forward_peak(const std::string& what, const xt::xtensor<T, 4>& x, const xt::xtensor<T, 4>& w)
    {
        xconv::conv_transpose2d_options ot;
        ot.stride = 2;
        ot.padding = 1;
        check_scratch_peak(what, [&] { CHECK(xconv::conv_transpose2d(x, w, ot).shape()[2] == 55); });
    }

    /// A random input and weight of these shapes and a random output gradient of the shape of
    /// conv2d's output, drawn in that order from an engine seeded with `seed`.
    template <class T>
    struct backward_inputs
    {
        xt::xtensor<T, 4> x, w, gy;

        backward_inputs(unsigned seed,
                        const std::array<std::size_t, 4>& x_shape,
                        const std::array<std::size_t, 4>& w_shape,
                        const xconv::conv2d_options& o)
        {
            xconv_test::engine gen(seed);
            x = xconv_test::random_tensor<T, 4>(x_shape, gen);
            w = xconv_test::random_tensor<T, 4>(w_shape, gen);
            const auto y = xconv::conv2d(x, w, o);
            gy = xconv_test::random_tensor<T, 4>({y.shape()[0], y.shape()[1], y.shape()[2], y.shape()[3]}, gen);
        }
    };

    /// check_scratch_peak of conv2d_backward under `limit_mib` MiB on backward_inputs, computing
    /// the gradients in `mask`.
    template <class T>
    void check_backward_peak(const std::string& what,
                             unsigned seed,
                             const std::array<std::size_t, 4>& x_shape,
                             const std::array<std::size_t, 4>& w_shape,
                             const xconv::conv2d_options& o,
                             xconv::output_mask mask,
                             std::size_t limit_mib)
    {
        const backward_inputs<T> in(seed, x_shape, w_shape, o);
        check_scratch_peak(
            what,
            [&] {
                const auto g = xconv::conv2d_backward(in.gy, in.x, in.w, o, mask);
                CHECK(g.grad_input.shape()[1] == (mask[0] ? x_shape[1] : 0));
                CHECK(g.grad_weight.shape()[1] == (mask[1] ? w_shape[1] : 0));
            },
            limit_mib);
    }
}  // namespace

TEST_CASE("scratch: a weight gradient split in column blocks keeps one route's buffers per thread, within the default limit", "[threads]")
{
    // 128 -> 384 channels at 56 x 56, one sample: each thread's columns of the weight gradient are
    // cut into blocks that stay in cache. A last block narrower than the others fitted the
    // implicit GEMM where the others did not, and the thread then held both routes' buffers
    // (4.59 MiB at 3 threads under the default 4 MiB).
    xconv::conv2d_options o;
    o.padding = 1;
    check_backward_peak<float>("weight gradient", 777, {1, 128, 56, 56}, {384, 128, 3, 3}, o, {false, true, false}, 4);
}

TEST_CASE("scratch: the implicit GEMM's tiles leave room for the buffers a thread keeps from the pass's earlier calls", "[threads]")
{
    // 512 -> 128 channels, 28 x 28 -> 56 x 56 by sub-pixel phases, one sample per thread at 2
    // threads: a phase without border keeps a large tile of C^T, the next phase's tiles had to
    // leave room for it beside their bordered copy (4.14 MiB under the default 4 MiB).
    xconv_test::engine gen(778);
    const auto x = xconv_test::random_tensor<float, 4>({2, 512, 28, 28}, gen);
    const auto w = xconv_test::random_tensor<float, 4>({512, 128, 3, 3}, gen);
    check_phases_forward_peak("transposed forward by phases", x, w);
    // The same layer in float64 at 3 threads runs phase by phase, the threads sharing each
    // sample: the tiles of their own an earlier phase left them are not used again, and are
    // freed for the next phase's (4.07 MiB held before).
    const xt::xtensor<double, 4> xd = xt::cast<double>(x), wd = xt::cast<double>(w);
    check_phases_forward_peak("transposed forward phase by phase, float64", xd, wd);
    // 384 -> 512 channels at 7 x 7, the input gradient of 8 samples: besides its tile of C^T and
    // its bordered copy, each thread holds the offsets of the 512 x 9 taps and the window bases
    // of its positions (4.01 MiB at 3 threads, depending on which thread took which samples).
    const auto x7 = xconv_test::random_tensor<float, 4>({8, 512, 7, 7}, gen);
    const auto w7 = xconv_test::random_tensor<float, 4>({384, 512, 3, 3}, gen);
    const auto gy7 = xconv_test::random_tensor<float, 4>({8, 384, 7, 7}, gen);
    xconv::conv2d_options o;
    o.padding = 1;
    check_scratch_peak("input gradient", [&] {
        const auto g = xconv::conv2d_backward(gy7, x7, w7, o, {true, false, false});
        CHECK(g.grad_input.shape()[1] == 512);
    });
}

TEST_CASE("scratch: the implicit GEMM lowers the marks of all its buffers before it takes any", "[threads]")
{
    // 512 -> 384 channels, 28 x 28 -> 55 x 55 by sub-pixel phases, 2 samples: a phase that reads
    // the input in place needs no bordered copy, but an earlier phase's copy stayed marked as
    // needed while this phase's tile of C^T grew (4.08 MiB at 1 thread under the default 4 MiB).
    xconv_test::engine gen(783);
    const auto x = xconv_test::random_tensor<float, 4>({2, 512, 28, 28}, gen);
    const auto w = xconv_test::random_tensor<float, 4>({512, 384, 3, 3}, gen);
    check_phases_forward_peak("transposed forward by phases", x, w);
}

TEST_CASE("scratch: a step of a pass gives up what an earlier step left in its buffers past its own need", "[threads]")
{
    // The input gradient of a stride-2 layer, 128 -> 384 channels, 56 x 56 -> 28 x 28, 2 samples,
    // under a 2 MiB limit, runs by row phases: the band one row phase asked of a buffer stayed
    // marked as needed beside the tile of C^T a later step sized for itself (2.13 MiB held at
    // 2 threads).
    xconv::conv2d_options o;
    o.stride = 2;
    o.padding = 1;
    check_backward_peak<float>("input gradient under 2 MiB", 779, {2, 128, 56, 56}, {384, 128, 3, 3}, o, {true, false, false}, 2);
}

TEST_CASE("scratch: a weight gradient's column blocks fit a tight limit: narrow enough for one panel of positions, one route's buffers at a time", "[threads]")
{
    // 512 -> 16 channels at 28 x 28: 4608 columns of the weight gradient, shared between the
    // threads. The lowered pass's smallest tile (one register panel of positions) and its packed
    // copy, over a thread's 2304 columns, took 1.1 MiB per thread (2.13 MiB held at 2 threads
    // under 2 MiB).
    xconv::conv2d_options o;
    o.padding = 1;
    check_backward_peak<float>("weight gradient under 2 MiB", 780, {1, 512, 28, 28}, {16, 512, 3, 3}, o, {false, true, false}, 2);
    // 128 -> 384 channels, 28 x 28 -> 14 x 14, 2 samples, float64: a thread's blocks of columns
    // differ by up to a vector in width, and took different routes (the lowered pass, then the
    // implicit GEMM); the buffers of the first route stayed marked as needed beside the second's
    // (2.47 MiB held at 2 threads under 2 MiB).
    o.stride = 2;
    check_backward_peak<double>("weight gradient by blocks of two routes under 2 MiB, float64", 781, {2, 128, 28, 28}, {384, 128, 3, 3}, o,
                                {false, true, false}, 2);
}

TEST_CASE("scratch: a forward pass whose implicit GEMM cannot fit a tight limit runs on column tiles, with the same result", "[threads]")
{
    // 384 -> 32 channels, stride 2, rows 111 wide, float64: the implicit GEMM's smallest tile, one
    // output row, reads a bordered copy of 3 rows x 113 columns x 384 channels, 1.0 MiB per thread
    // (2.90 MiB held at 2 threads under 2 MiB). Under such a limit the column tiles of the lowered
    // pass run instead; they sum each output in the same order, so the result is the same bits.
    xconv_test::engine gen(782);
    const auto x = xconv_test::random_tensor<double, 4>({2, 384, 9, 111}, gen);
    const auto w = xconv_test::random_tensor<double, 4>({32, 384, 3, 3}, gen);
    const auto b = xconv_test::random_tensor<double, 1>({32}, gen);
    xconv::conv2d_options o;
    o.stride = 2;
    o.padding = 1;
    const auto y = xconv::conv2d(x, w, b, o);  // the default limit: the implicit GEMM
    xconv_test::conv_geometry g;
    g.stride_h = g.stride_w = 2;
    g.pad_top = g.pad_bottom = g.pad_left = g.pad_right = 1;
    const auto r = xconv_test::compare(y, xconv_test::conv2d(x, w, &b, g), 1e-10);
    INFO("conv2d under the default limit against the reference: " << r.message);
    CHECK(r.ok);
    check_scratch_peak(
        "forward pass under 2 MiB, float64",
        [&] {
            const auto y2 = xconv::conv2d(x, w, b, o);
            CHECK(same_bytes(y2, y));
        },
        2);
}

TEST_CASE("scratch: a weight packed for the call leaves room for the threads' smallest implicit tiles", "[threads]")
{
    // The stride-1 input gradient of a 32 -> 384 layer, rows 56 wide, 8 samples, float64: the
    // flipped kernel's forward pass, whose tiles read a bordered copy of 384 channels (at least
    // 0.5 MiB per thread). The flipped kernel (0.84 MiB) was packed for the call beside three
    // threads' smallest tiles (2.47 MiB held at 3 threads under 2 MiB); it is now packed in blocks,
    // or panel by panel, when the tiles leave too little room. The same bits either way.
    xconv::conv2d_options o;
    o.padding = 1;
    const backward_inputs<double> in(784, {8, 32, 4, 56}, {384, 32, 3, 3}, o);
    const auto &x = in.x, &w = in.w, &gy = in.gy;
    // First under 2 MiB, from no scratch held (what an earlier call leaves in the threads'
    // buffers changes how they add up), then under the default limit.
    std::vector<xt::xtensor<double, 4>> under_2mib;
    check_scratch_peak(
        "input gradient under 2 MiB, float64",
        [&] { under_2mib.push_back(xconv::conv2d_backward(gy, x, w, o, {true, false, false}).grad_input); }, 2);
    const auto gx = xconv::conv2d_backward(gy, x, w, o, {true, false, false}).grad_input;
    xconv_test::conv_geometry g;
    g.pad_top = g.pad_bottom = g.pad_left = g.pad_right = 1;
    // the reference on the first sample (each sample's input gradient is its own)
    const xt::xtensor<double, 4> x0 = xt::view(x, xt::range(0, 1)), gy0 = xt::view(gy, xt::range(0, 1));
    const xt::xtensor<double, 4> gx0 = xt::view(gx, xt::range(0, 1));
    const auto r = xconv_test::compare(gx0, xconv_test::conv2d_backward(gy0, x0, w, g).input, 1e-10);
    INFO("grad_input of sample 0 under the default limit against the reference: " << r.message);
    CHECK(r.ok);
    for (const auto& gx2 : under_2mib)
    {
        CHECK(same_bytes(gx2, gx));
    }
}

namespace
{
    /// A thread that runs the steps it is given one at a time, each when asked, so that a test can
    /// interleave it with the main thread in a fixed order.
    class stepper
    {
    public:
        stepper() : m_thread([this] { loop(); }) {}
        ~stepper()
        {
            run({});
            m_thread.join();
        }
        /// Runs f on the thread and waits until it is done (an empty f ends the thread).
        void run(std::function<void()> f)
        {
            std::unique_lock<std::mutex> lock(m_mutex);
            m_step = std::move(f);
            m_pending = true;
            m_cv.notify_all();
            m_cv.wait(lock, [this] { return !m_pending; });
        }

    private:
        void loop()
        {
            for (;;)
            {
                std::function<void()> f;
                {
                    std::unique_lock<std::mutex> lock(m_mutex);
                    m_cv.wait(lock, [this] { return m_pending; });
                    f = std::move(m_step);
                }
                const bool last = !f;
                if (f)
                {
                    f();
                }
                std::lock_guard<std::mutex> lock(m_mutex);
                m_pending = false;
                m_cv.notify_all();
                if (last)
                {
                    return;
                }
            }
        }

        std::mutex m_mutex;
        std::condition_variable m_cv;
        std::function<void()> m_step;
        bool m_pending = false;
        std::thread m_thread;
    };

    /// A per-thread buffer of the calling thread, as the workspaces hold them.
    xconv::detail::aligned_buffer<float>& kept_buffer()
    {
        thread_local xconv::detail::aligned_buffer<float> b{xconv::detail::scratch_kind::per_thread};
        return b;
    }

    /// The calling thread's kept buffer, asked for n floats, filled with v.
    float* fill_kept(std::size_t n, float v)
    {
        float* p = kept_buffer().get(n);
        std::fill(p, p + n, v);
        return p;
    }

    bool holds(const float* p, std::size_t n, float v)
    {
        for (std::size_t i = 0; i < n; ++i)
        {
            if (p[i] != v)
            {
                return false;
            }
        }
        return true;
    }
}  // namespace

TEST_CASE("scratch: another thread's kept buffers are freed for room, a running pass's only trimmed to what it asked for", "[threads]")
{
    const std::size_t saved_limit = xconv::scratch_limit();
    constexpr std::size_t limit = std::size_t(1) << 20, big = 600 << 10, small = 100 << 10;  // bytes
    constexpr std::size_t n_big = big / sizeof(float), n_small = small / sizeof(float);
    xconv::set_scratch_limit(limit);
    xconv::release_scratch();
    REQUIRE(xconv::scratch_held() == 0);
    stepper other;
    float* theirs = nullptr;

    SECTION("a pass that has ended: its buffer is freed")
    {
        other.run([&] {
            const xconv::detail::scratch_call call;
            theirs = fill_kept(n_big, 1.0f);
        });
        CHECK(xconv::scratch_held() == big);
        xconv::detail::scratch_bytes().reset_peak();
        {
            const xconv::detail::scratch_call call;
            fill_kept(n_big, 2.0f);
            CHECK(xconv::scratch_held() == big);  // theirs freed, mine allocated
        }
        CHECK(xconv::detail::scratch_bytes().peak.load() <= limit);
        // The other thread's next pass allocates anew.
        other.run([&] {
            const xconv::detail::scratch_call call;
            theirs = fill_kept(n_small, 3.0f);
        });
        CHECK(xconv::scratch_held() == big + small);
    }

    SECTION("a running pass: its buffer stays, whole as far as it asked")
    {
        // The other thread's pass is still running (its scope is open) when the main thread grows.
        std::unique_ptr<xconv::detail::scratch_call> open;
        other.run([&] {
            open = std::make_unique<xconv::detail::scratch_call>();
            theirs = fill_kept(n_big, 1.0f);
        });
        {
            const xconv::detail::scratch_call call;
            fill_kept(n_big, 2.0f);
            CHECK(xconv::scratch_held() == 2 * big);  // over the cap: nothing could be freed
            CHECK(holds(theirs, n_big, 1.0f));
        }
        other.run([&] {
            CHECK(kept_buffer().get(n_big) == theirs);
            open.reset();
        });
    }

    SECTION("a running pass that asked for less than its buffer holds: the rest is given back")
    {
        std::unique_ptr<xconv::detail::scratch_call> open;
        other.run([&] {
            {
                const xconv::detail::scratch_call call;
                kept_buffer().get(n_big);  // an earlier, larger pass
            }
            open = std::make_unique<xconv::detail::scratch_call>();
            theirs = fill_kept(n_small, 1.0f);
        });
        CHECK(xconv::scratch_held() == big);
        xconv::detail::scratch_bytes().reset_peak();
        {
            const xconv::detail::scratch_call call;
            fill_kept(n_big, 2.0f);
            CHECK(xconv::scratch_held() == big + small);
        }
        CHECK(xconv::detail::scratch_bytes().peak.load() <= limit);
        other.run([&] {
            CHECK(holds(theirs, n_small, 1.0f));
            CHECK(kept_buffer().get(n_small) == theirs);  // the part asked for is still its own
            open.reset();
        });
    }

    other.run([] { xconv::release_scratch(); });
    xconv::release_scratch();
    CHECK(xconv::scratch_held() == 0);
    xconv::set_scratch_limit(saved_limit);
}
