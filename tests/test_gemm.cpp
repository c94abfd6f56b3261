// The blocked GEMM (packing, micro-kernel, edge tiles, epilogues) against the plain-loop
// reference, evaluated in higher precision (double for float, long double for double).
//
// Tolerance per element: |got - ref| <= rtol * (|C0(i, j)| + sum_k |A(i, k) B(k, j)|), the scale
// of the rounding error of any summation order; a missing, repeated or misplaced term is of
// order 1/K of that scale and is caught.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <xconv/gemm.hpp>

#if defined(XCONV_USE_OPENMP)
#include <omp.h>
#endif

namespace
{
    using xconv::matrix_view;

    template <class T>
    struct wide;
    template <>
    struct wide<float>
    {
        using type = double;
        static constexpr double rtol = 1e-5;
    };
    template <>
    struct wide<double>
    {
        using type = long double;
        static constexpr double rtol = 1e-12;
    };

    /// A rows x cols matrix stored row-major (ld >= cols) or column-major (ld >= rows) with `pad`
    /// unused elements per line, filled with a sentinel to catch stray writes.
    template <class T>
    struct test_matrix
    {
        std::size_t rows, cols;
        bool col_major;
        std::ptrdiff_t ld;
        std::vector<T> storage;

        test_matrix(std::size_t r, std::size_t c, bool cm, std::size_t pad, T fill)
            : rows(r)
            , cols(c)
            , col_major(cm)
            , ld(static_cast<std::ptrdiff_t>((cm ? r : c) + pad))
            , storage(static_cast<std::size_t>(ld) * (cm ? c : r) + 1, fill)
        {
        }

        matrix_view<T> view() { return col_major ? matrix_view<T>{storage.data(), 1, ld} : matrix_view<T>{storage.data(), ld, 1}; }
        matrix_view<const T> cview() const
        {
            return col_major ? matrix_view<const T>{storage.data(), 1, ld} : matrix_view<const T>{storage.data(), ld, 1};
        }
        T& at(std::size_t i, std::size_t j) { return view()(static_cast<std::ptrdiff_t>(i), static_cast<std::ptrdiff_t>(j)); }
        T at(std::size_t i, std::size_t j) const { return cview()(static_cast<std::ptrdiff_t>(i), static_cast<std::ptrdiff_t>(j)); }
        bool inside(std::size_t index) const
        {
            if (index >= static_cast<std::size_t>(ld) * (col_major ? cols : rows))
            {
                return false;
            }
            const std::size_t inner = index % static_cast<std::size_t>(ld);
            return inner < (col_major ? rows : cols);
        }
    };

    template <class T>
    void fill_random(test_matrix<T>& m, std::mt19937_64& gen)
    {
        std::uniform_real_distribution<double> dist(-1.0, 1.0);
        for (std::size_t i = 0; i < m.rows; ++i)
        {
            for (std::size_t j = 0; j < m.cols; ++j)
            {
                m.at(i, j) = static_cast<T>(dist(gen));
            }
        }
    }

    /// The expected C and its error scale, from the reference kernel in wider precision.
    template <class T>
    void reference(const test_matrix<T>& a,
                   const test_matrix<T>& b,
                   const test_matrix<T>& c0,
                   bool accumulate,
                   std::vector<typename wide<T>::type>& expected,
                   std::vector<typename wide<T>::type>& scale)
    {
        using W = typename wide<T>::type;
        const std::size_t M = a.rows, K = a.cols, N = b.cols;
        std::vector<W> aw(M * K), bw(K * N), aa(M * K), ba(K * N);
        for (std::size_t i = 0; i < M; ++i)
        {
            for (std::size_t k = 0; k < K; ++k)
            {
                aw[i * K + k] = static_cast<W>(a.at(i, k));
                aa[i * K + k] = std::abs(aw[i * K + k]);
            }
        }
        for (std::size_t k = 0; k < K; ++k)
        {
            for (std::size_t j = 0; j < N; ++j)
            {
                bw[k * N + j] = static_cast<W>(b.at(k, j));
                ba[k * N + j] = std::abs(bw[k * N + j]);
            }
        }
        expected.assign(M * N, W(0));
        scale.assign(M * N, W(0));
        if (accumulate)
        {
            for (std::size_t i = 0; i < M; ++i)
            {
                for (std::size_t j = 0; j < N; ++j)
                {
                    expected[i * N + j] = static_cast<W>(c0.at(i, j));
                    scale[i * N + j] = std::abs(expected[i * N + j]);
                }
            }
        }
        const auto K_ = static_cast<std::ptrdiff_t>(K), N_ = static_cast<std::ptrdiff_t>(N);
        xconv::detail::gemm_reference<W>(M, N, K, xconv::row_major<const W>(aw.data(), K_),
                                         xconv::row_major<const W>(bw.data(), N_), xconv::row_major(expected.data(), N_),
                                         accumulate);
        xconv::detail::gemm_reference<W>(M, N, K, xconv::row_major<const W>(aa.data(), K_),
                                         xconv::row_major<const W>(ba.data(), N_), xconv::row_major(scale.data(), N_),
                                         true);
    }

    /// Checks C against the reference and the padding of C against its sentinel; returns the
    /// number of failures and describes the first one.
    template <class T>
    std::size_t compare(const test_matrix<T>& c,
                        const std::vector<typename wide<T>::type>& expected,
                        const std::vector<typename wide<T>::type>& scale,
                        T sentinel,
                        std::string& first)
    {
        std::size_t failures = 0;
        const std::size_t N = c.cols;
        for (std::size_t i = 0; i < c.rows; ++i)
        {
            for (std::size_t j = 0; j < N; ++j)
            {
                const auto got = static_cast<typename wide<T>::type>(c.at(i, j));
                const auto want = expected[i * N + j];
                const auto tol = wide<T>::rtol * scale[i * N + j] + std::numeric_limits<T>::min();
                if (!(std::abs(got - want) <= tol))
                {
                    if (failures++ == 0)
                    {
                        first = "C(" + std::to_string(i) + ", " + std::to_string(j) + ") = " +
                                std::to_string(static_cast<double>(got)) + ", expected " +
                                std::to_string(static_cast<double>(want)) + " +- " + std::to_string(static_cast<double>(tol));
                    }
                }
            }
        }
        for (std::size_t index = 0; index < c.storage.size(); ++index)
        {
            if (!c.inside(index) && std::memcmp(&c.storage[index], &sentinel, sizeof(T)) != 0)
            {
                if (failures++ == 0)
                {
                    first = "padding element " + std::to_string(index) + " of C was written";
                }
            }
        }
        return failures;
    }

    enum class kernel
    {
        public_gemm,  // xconv::gemm (BLAS when XCONV_USE_BLAS is defined)
        built_in,     // detail::gemm_strided with the compile-time instruction set
        scalar,       // detail::gemm_strided with the portable scalar kernel
        oriented      // detail::gemm_strided_oriented: no orientation choice, strided C via scratch
    };

    template <class T>
    void run_gemm(kernel which, std::size_t M, std::size_t N, std::size_t K, matrix_view<const T> A, matrix_view<const T> B,
                  matrix_view<T> C, bool accumulate)
    {
        switch (which)
        {
        case kernel::public_gemm:
            xconv::gemm<T>(M, N, K, A, B, C, accumulate);
            break;
        case kernel::built_in:
            xconv::detail::gemm_strided<T>(M, N, K, A, B, C, accumulate);
            break;
        case kernel::scalar:
            xconv::detail::gemm_strided<T, xconv::detail::gemm_scalar_arch>(M, N, K, A, B, C, accumulate);
            break;
        case kernel::oriented:
            xconv::detail::gemm_strided_oriented<T>(M, N, K, A, B, C, accumulate);
            break;
        }
    }

    struct case_shape
    {
        std::size_t m, n, k;
    };

    /// One product with layouts given by `layout` bits (1: A column-major, 2: B column-major,
    /// 4: C column-major). Accumulating products start from random C; overwriting ones from NaN,
    /// so any read of C shows up.
    template <class T>
    void check_case(kernel which, case_shape s, unsigned layout, bool accumulate, std::mt19937_64& gen)
    {
        const T sentinel = T(-12345.0);
        test_matrix<T> a(s.m, s.k, (layout & 1) != 0, 3, sentinel);
        test_matrix<T> b(s.k, s.n, (layout & 2) != 0, 2, sentinel);
        test_matrix<T> c(s.m, s.n, (layout & 4) != 0, 5, sentinel);
        fill_random(a, gen);
        fill_random(b, gen);
        if (accumulate)
        {
            fill_random(c, gen);
        }
        else
        {
            for (std::size_t i = 0; i < s.m; ++i)
            {
                for (std::size_t j = 0; j < s.n; ++j)
                {
                    c.at(i, j) = std::numeric_limits<T>::quiet_NaN();
                }
            }
        }
        std::vector<typename wide<T>::type> expected, scale;
        reference(a, b, c, accumulate, expected, scale);
        run_gemm<T>(which, s.m, s.n, s.k, a.cview(), b.cview(), c.view(), accumulate);
        std::string first;
        const std::size_t failures = compare(c, expected, scale, sentinel, first);
        INFO("M=" << s.m << " N=" << s.n << " K=" << s.k << " A " << ((layout & 1) ? "col" : "row") << "-major, B "
                  << ((layout & 2) ? "col" : "row") << "-major, C " << ((layout & 4) ? "col" : "row")
                  << "-major, accumulate=" << accumulate << ": " << first);
        CHECK(failures == 0);
    }

    template <class T>
    void check_many_shapes(kernel which)
    {
        std::mt19937_64 gen(20240611);
        // Small shapes: every layout of A, B and C, with and without accumulation.
        const case_shape small[] = {{1, 1, 1},   {1, 1, 7},   {1, 17, 1},  {5, 1, 3},   {2, 3, 4},   {6, 16, 8},
                                    {7, 17, 9},  {13, 31, 2}, {6, 64, 5},  {11, 65, 19}, {23, 29, 37}, {64, 33, 1},
                                    {3, 97, 41}, {41, 5, 53}, {67, 70, 3}, {12, 128, 16}};
        for (const case_shape& s : small)
        {
            for (unsigned layout = 0; layout < 8; ++layout)
            {
                for (const bool accumulate : {false, true})
                {
                    check_case<T>(which, s, layout, accumulate, gen);
                }
            }
        }
        // Larger shapes, past one block in every dimension (mc, kc, and the transposed-product
        // choice for narrow C): each with two of the layouts.
        const case_shape large[] = {{97, 101, 103}, {131, 127, 389}, {257, 3, 300},  {300, 211, 17}, {193, 49, 517},
                                    {64, 300, 131}, {2, 300, 601},   {199, 263, 97}, {111, 1, 450}, {1, 293, 257}};
        unsigned layout = 0;
        for (const case_shape& s : large)
        {
            check_case<T>(which, s, layout % 8, layout % 2 == 0, gen);
            check_case<T>(which, s, (layout + 5) % 8, layout % 2 == 1, gen);
            ++layout;
        }
    }
}  // namespace

TEST_CASE("gemm: blocked kernel matches the reference over shapes and layouts", "[gemm]")
{
    SECTION("float, built-in instruction set") { check_many_shapes<float>(kernel::built_in); }
    SECTION("double, built-in instruction set") { check_many_shapes<double>(kernel::built_in); }
    SECTION("float, scalar kernel") { check_many_shapes<float>(kernel::scalar); }
    SECTION("double, scalar kernel") { check_many_shapes<double>(kernel::scalar); }
}

TEST_CASE("gemm: a C without unit column stride goes through the scratch in blocks", "[gemm]")
{
    // Column-major C: rows of C in bands (2000 rows of 300 columns exceed the scratch), and a
    // very wide C in column blocks.
    std::mt19937_64 gen(11);
    for (const bool accumulate : {false, true})
    {
        check_case<float>(kernel::oriented, {2000, 300, 5}, 4, accumulate, gen);
        check_case<double>(kernel::oriented, {7, 5000, 4}, 4 | 1, accumulate, gen);
        check_case<float>(kernel::oriented, {130, 7, 33}, 4 | 2, accumulate, gen);
    }
}

TEST_CASE("gemm: the public entry point matches the reference", "[gemm]")
{
    std::mt19937_64 gen(7);
    for (unsigned layout = 0; layout < 8; ++layout)
    {
        check_case<float>(kernel::public_gemm, {37, 71, 45}, layout, layout % 2 == 0, gen);
        check_case<double>(kernel::public_gemm, {71, 37, 45}, layout, layout % 2 == 1, gen);
    }
}

TEST_CASE("gemm: views with negative strides", "[gemm]")
{
    // A read bottom-up and B right-to-left (as for a flipped kernel): the general packing path.
    std::mt19937_64 gen(5);
    const std::size_t M = 37, N = 70, K = 29;
    test_matrix<double> a(M, K, false, 0, 0.0), b(K, N, false, 0, 0.0);
    fill_random(a, gen);
    fill_random(b, gen);
    const auto K_ = static_cast<std::ptrdiff_t>(K), N_ = static_cast<std::ptrdiff_t>(N);
    const matrix_view<const double> A{a.storage.data() + (M - 1) * K, -K_, 1};
    const matrix_view<const double> B{b.storage.data() + N - 1, N_, -1};
    std::vector<double> got(M * N, std::numeric_limits<double>::quiet_NaN()), want(M * N);
    xconv::gemm<double>(M, N, K, A, B, xconv::row_major(got.data(), N_), false);
    xconv::detail::gemm_reference<double>(M, N, K, A, B, xconv::row_major(want.data(), N_), false);
    std::size_t off = 0;  // NaN-safe: a NaN counts as off
    for (std::size_t i = 0; i < M * N; ++i)
    {
        off += !(std::abs(got[i] - want[i]) <= 1e-12 * static_cast<double>(K));
    }
    CHECK(off == 0);
}

TEST_CASE("gemm: degenerate sizes", "[gemm]")
{
    std::vector<float> a(12, 1.0f), b(12, 2.0f), c(12, 5.0f);
    const auto A = xconv::row_major<const float>(a.data(), 3);
    const auto B = xconv::row_major<const float>(b.data(), 4);
    const auto C = xconv::row_major(c.data(), 4);

    SECTION("M or N zero: C untouched")
    {
        xconv::gemm<float>(0, 4, 3, A, B, C, false);
        xconv::gemm<float>(3, 0, 3, A, B, C, false);
        CHECK(c == std::vector<float>(12, 5.0f));
    }
    SECTION("K zero, overwrite: C becomes zero")
    {
        xconv::gemm<float>(3, 4, 0, A, B, C, false);
        CHECK(c == std::vector<float>(12, 0.0f));
    }
    SECTION("K zero, accumulate: C unchanged")
    {
        xconv::gemm<float>(3, 4, 0, A, B, C, true);
        CHECK(c == std::vector<float>(12, 5.0f));
    }
}

TEST_CASE("gemm: results do not depend on the orientation, blocking or threads", "[gemm]")
{
    // Every element is one accumulator chain in increasing k, so C = A B and (C^T = B^T A^T) agree
    // bit for bit, and so do K-blocked and unblocked evaluations.
    std::mt19937_64 gen(99);
    const std::size_t M = 53, N = 130, K = 900;  // K spans several k-blocks
    test_matrix<float> a(M, K, false, 0, 0.0f), b(K, N, false, 0, 0.0f);
    fill_random(a, gen);
    fill_random(b, gen);
    test_matrix<float> c1(M, N, false, 0, 0.0f), c2(M, N, true, 0, 0.0f), c3(M, N, false, 0, 0.0f);

    xconv::detail::gemm_driver<float>(M, N, K, xconv::detail::strided_a_packer<float>{a.cview()},
                                      xconv::detail::strided_b_packer<float>{b.cview()}, c1.view(), false);
    // Transposed product into a column-major C: the same elements, computed as rows of C^T.
    xconv::detail::gemm_driver<float>(N, M, K, xconv::detail::strided_a_packer<float>{xconv::detail::gemm_transpose_view(b.cview())},
                                      xconv::detail::strided_b_packer<float>{xconv::detail::gemm_transpose_view(a.cview())},
                                      xconv::detail::gemm_transpose_view(c2.view()), false);
    // K in two calls: the first 301 terms, then the rest accumulated on top.
    const auto a_view = a.cview();
    const auto b_view = b.cview();
    xconv::detail::gemm_strided<float>(M, N, 301, a_view, b_view, c3.view(), false);
    xconv::detail::gemm_strided<float>(M, N, K - 301, {a_view.data + 301 * a_view.cs, a_view.rs, a_view.cs},
                                       {b_view.data + 301 * b_view.rs, b_view.rs, b_view.cs}, c3.view(), true);
    std::size_t differ_transposed = 0, differ_split = 0;
    for (std::size_t i = 0; i < M; ++i)
    {
        for (std::size_t j = 0; j < N; ++j)
        {
            differ_transposed += c1.at(i, j) != c2.at(i, j);
            differ_split += c1.at(i, j) != c3.at(i, j);
        }
    }
    CHECK(differ_transposed == 0);
    CHECK(differ_split == 0);

#if defined(XCONV_USE_OPENMP)
    const int saved = omp_get_max_threads();
    for (const int threads : {1, 2, 3})
    {
        omp_set_num_threads(threads);
        test_matrix<float> ct(M, N, false, 0, 0.0f);
        xconv::detail::gemm_strided<float>(M, N, K, a.cview(), b.cview(), ct.view(), false);
        CHECK(ct.storage == c1.storage);
    }
    omp_set_num_threads(saved);
#endif
}

TEST_CASE("gemm: driver with a row-segment B packer and a bias epilogue", "[gemm]")
{
    // B(k, j) = sin(0.37 k + 0.11 j) generated on the fly, row segment by row segment, as a
    // convolution's fused im2col would; the epilogue adds bias[i].
    std::mt19937_64 gen(3);
    for (const case_shape s : {case_shape{70, 4100, 3}, case_shape{13, 211, 777}, case_shape{200, 97, 40}})
    {
        test_matrix<double> a(s.m, s.k, false, 0, 0.0), b(s.k, s.n, false, 0, 0.0), c(s.m, s.n, false, 1, 0.0);
        fill_random(a, gen);
        for (std::size_t k = 0; k < s.k; ++k)
        {
            for (std::size_t j = 0; j < s.n; ++j)
            {
                b.at(k, j) = std::sin(0.37 * static_cast<double>(k) + 0.11 * static_cast<double>(j));
            }
        }
        std::vector<double> bias(s.m);
        for (std::size_t i = 0; i < s.m; ++i)
        {
            bias[i] = 0.5 + static_cast<double>(i);
        }
        auto row = [](std::size_t k, std::size_t j, std::size_t n, double* out) {
            for (std::size_t t = 0; t < n; ++t)
            {
                out[t] = std::sin(0.37 * static_cast<double>(k) + 0.11 * static_cast<double>(j + t));
            }
        };
        xconv::detail::gemm_driver<double>(s.m, s.n, s.k, xconv::detail::strided_a_packer<double>{a.cview()},
                                           xconv::detail::make_row_segment_b_packer<double>(row), c.view(), false,
                                           xconv::detail::gemm_row_bias_epilogue<double>{bias.data()});

        test_matrix<double> c0(s.m, s.n, false, 1, 0.0);
        std::vector<long double> expected, scale;
        reference(a, b, c0, false, expected, scale);
        for (std::size_t i = 0; i < s.m; ++i)
        {
            for (std::size_t j = 0; j < s.n; ++j)
            {
                expected[i * s.n + j] += bias[i];
                scale[i * s.n + j] += std::abs(bias[i]);
            }
        }
        std::string first;
        const std::size_t failures = compare(c, expected, scale, 0.0, first);
        INFO("M=" << s.m << " N=" << s.n << " K=" << s.k << ": " << first);
        CHECK(failures == 0);
    }
}

TEST_CASE("gemm: the epilogue sees every element of C exactly once, after its last k-block", "[gemm]")
{
    const std::size_t M = 100, N = 4200, K = 400;  // several row blocks, column blocks and k-blocks
    std::vector<float> a(M * K, 1.0f), b(K * N, 1.0f), c(M * N, 0.0f);
    // Per-element records only: with OpenMP the epilogue runs on several threads at once (on
    // disjoint tiles).
    std::vector<int> visits(M * N, 0);
    std::vector<float> seen(M * N, 0.0f);
    std::vector<char> wrong_address(M * N, 0);
    auto epilogue = [&](std::size_t i0, std::size_t j0, std::size_t m, std::size_t n, matrix_view<float> tile) {
        for (std::size_t r = 0; r < m; ++r)
        {
            for (std::size_t j = 0; j < n; ++j)
            {
                const std::size_t index = (i0 + r) * N + j0 + j;
                const float& element = tile(static_cast<std::ptrdiff_t>(r), static_cast<std::ptrdiff_t>(j));
                ++visits[index];
                seen[index] = element;
                wrong_address[index] = &element != &c[index];
            }
        }
    };
    xconv::detail::gemm_driver<float>(M, N, K, xconv::detail::strided_a_packer<float>{xconv::row_major<const float>(a.data(), K)},
                                      xconv::detail::strided_b_packer<float>{xconv::row_major<const float>(b.data(), N)},
                                      xconv::row_major(c.data(), N), false, epilogue);
    CHECK(std::count(seen.begin(), seen.end(), static_cast<float>(K)) == static_cast<std::ptrdiff_t>(M * N));
    CHECK(std::count(wrong_address.begin(), wrong_address.end(), 1) == 0);
    CHECK(std::count(visits.begin(), visits.end(), 1) == static_cast<std::ptrdiff_t>(M * N));
}

TEST_CASE("gemm: an operand packed whole in shares of panels is the operand packed at once", "[gemm]")
{
    // Sizes with partial panels and several depth and row/column blocks, shares of 1 to 9 parts
    // (more parts than panels included). Each share is packed into a buffer filled with a
    // sentinel: every element must be written by exactly one share, with the whole packing's value.
    using T = float;
    const float sentinel = -7.5f;
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (const auto& mk : {std::pair<std::size_t, std::size_t>{37, 900}, {5, 70}, {130, 385}})
    {
        const std::size_t M = mk.first, K = mk.second;
        std::vector<T> a(M * K);
        for (auto& v : a)
        {
            v = dist(rng);
        }
        const xconv::detail::strided_a_packer<T> pack_a{xconv::row_major<const T>(a.data(), static_cast<std::ptrdiff_t>(K))};
        // The same matrix as a K x M operand B (its transpose).
        const xconv::detail::strided_b_packer<T> pack_b{xconv::detail::gemm_transpose_view(xconv::row_major<const T>(a.data(), static_cast<std::ptrdiff_t>(K)))};
        const std::size_t size_a = xconv::detail::prepacked_a_size<T>(M, K), size_b = xconv::detail::prepacked_b_size<T>(K, M);
        std::vector<T> whole_a(size_a, sentinel), whole_b(size_b, sentinel);
        xconv::detail::prepack_a<T>(pack_a, M, K, whole_a.data());
        xconv::detail::prepack_b<T>(pack_b, K, M, whole_b.data());
        for (std::size_t parts = 1; parts <= 9; ++parts)
        {
            CAPTURE(M, K, parts);
            std::vector<T> shares_a(size_a, sentinel), shares_b(size_b, sentinel);
            std::vector<int> writes_a(size_a, 0), writes_b(size_b, 0);
            for (std::size_t part = 0; part < parts; ++part)
            {
                std::vector<T> one_a(size_a, sentinel), one_b(size_b, sentinel);
                xconv::detail::prepack_a<T>(pack_a, M, K, one_a.data(), part, parts);
                xconv::detail::prepack_b<T>(pack_b, K, M, one_b.data(), part, parts);
                for (std::size_t i = 0; i < size_a; ++i)
                {
                    if (std::memcmp(&one_a[i], &sentinel, sizeof(T)) != 0)
                    {
                        ++writes_a[i];
                        shares_a[i] = one_a[i];
                    }
                }
                for (std::size_t i = 0; i < size_b; ++i)
                {
                    if (std::memcmp(&one_b[i], &sentinel, sizeof(T)) != 0)
                    {
                        ++writes_b[i];
                        shares_b[i] = one_b[i];
                    }
                }
            }
            CHECK(std::count(writes_a.begin(), writes_a.end(), 1) == static_cast<std::ptrdiff_t>(size_a));
            CHECK(std::count(writes_b.begin(), writes_b.end(), 1) == static_cast<std::ptrdiff_t>(size_b));
            CHECK(std::memcmp(shares_a.data(), whole_a.data(), size_a * sizeof(T)) == 0);
            CHECK(std::memcmp(shares_b.data(), whole_b.data(), size_b * sizeof(T)) == 0);
        }
    }
}
