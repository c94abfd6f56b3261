// Times xconv::gemm against OpenBLAS (cblas_sgemm / cblas_dgemm) on square products and on the
// matrix products of typical convolution layers, single-threaded, in the same run.
//
//   OPENBLAS_NUM_THREADS=1 bench_gemm [--reps N] [--dtype float|double|both] [--only NAME]
//
// Prints, per shape and element type, the GFLOP/s of both (2*M*N*K flops per product, median
// over the samples) and xconv / OpenBLAS. Time is the calling thread's CPU time (OpenBLAS is held
// to one thread), so time slices lost to other processes on a shared machine do not count; the
// two are sampled alternately, so cache and memory contention hits both alike.
// xconv::gemm here is the built-in kernel (the benchmark calls detail::gemm_strided, which
// XCONV_USE_BLAS does not reroute).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <time.h>

#include <cblas.h>

#include <xconv/gemm.hpp>

namespace
{
    struct shape
    {
        const char* name;
        std::size_t m, n, k;
    };

    // Squares, then [C_out, C_in*kh*kw] x [C_in*kh*kw, H_out*W_out] products of conv layers.
    const shape shapes[] = {
        {"square_512", 512, 512, 512},
        {"square_1024", 1024, 1024, 1024},
        {"square_2048", 2048, 2048, 2048},
        {"conv3x3_64x56x56", 64, 3136, 576},
        {"conv3x3_256x14x14", 256, 196, 2304},
        {"conv1x1_64x56x56", 64, 3136, 256},
        {"conv3x3_512x7x7", 512, 49, 4608},
    };

    template <class T>
    void blas_gemm(const shape& s, const T* a, const T* b, T* c)
    {
        const int m = static_cast<int>(s.m), n = static_cast<int>(s.n), k = static_cast<int>(s.k);
        if constexpr (std::is_same<T, float>::value)
        {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        }
        else
        {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0, a, k, b, n, 0.0, c, n);
        }
    }

    template <class T>
    void xconv_gemm(const shape& s, const T* a, const T* b, T* c)
    {
        xconv::detail::gemm_strided<T>(s.m, s.n, s.k, xconv::row_major(a, static_cast<std::ptrdiff_t>(s.k)),
                                       xconv::row_major(b, static_cast<std::ptrdiff_t>(s.n)),
                                       xconv::row_major(c, static_cast<std::ptrdiff_t>(s.n)), false);
    }

    double median(std::vector<double> v)
    {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    }

    double thread_seconds()
    {
        timespec t{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
    }

    template <class F>
    double seconds(F&& f, std::size_t inner)
    {
        const double t0 = thread_seconds();
        for (std::size_t i = 0; i < inner; ++i)
        {
            f();
        }
        return (thread_seconds() - t0) / static_cast<double>(inner);
    }

    template <class T>
    double run(const shape& s, int reps, const char* dtype)
    {
        std::mt19937 gen(42);
        std::uniform_real_distribution<T> dist(T(-1), T(1));
        std::vector<T> a(s.m * s.k), b(s.k * s.n), c1(s.m * s.n), c2(s.m * s.n);
        for (auto& x : a)
        {
            x = dist(gen);
        }
        for (auto& x : b)
        {
            x = dist(gen);
        }
        const double flops = 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k);
        // Enough calls per sample for ~20 ms.
        const std::size_t inner = std::max<std::size_t>(1, static_cast<std::size_t>(2e9 / flops));
        (void) dtype;

        auto ours = [&] { xconv_gemm<T>(s, a.data(), b.data(), c1.data()); };
        auto theirs = [&] { blas_gemm<T>(s, a.data(), b.data(), c2.data()); };
        ours();
        theirs();
        std::vector<double> t_ours, t_theirs;
        for (int r = 0; r < reps; ++r)
        {
            t_ours.push_back(seconds(ours, inner));
            t_theirs.push_back(seconds(theirs, inner));
        }
        double err = 0;
        for (std::size_t i = 0; i < c1.size(); ++i)
        {
            err = std::max(err, static_cast<double>(std::abs(c1[i] - c2[i])));
        }
        const double g_ours = flops / median(t_ours) * 1e-9;
        const double g_theirs = flops / median(t_theirs) * 1e-9;
        std::printf("%-20s %-6s %5zu %5zu %5zu %10.1f %10.1f %7.3f %9.1e\n", s.name, dtype, s.m, s.n, s.k, g_ours,
                    g_theirs, g_ours / g_theirs, err);
        std::fflush(stdout);
        return g_ours / g_theirs;
    }
}  // namespace

int main(int argc, char** argv)
{
    int reps = 7;
    std::string dtype = "both";
    std::string only;
    for (int i = 1; i < argc; ++i)
    {
        const std::string arg = argv[i];
        if (arg == "--reps" && i + 1 < argc)
        {
            reps = std::max(1, std::atoi(argv[++i]));
        }
        else if (arg == "--dtype" && i + 1 < argc)
        {
            dtype = argv[++i];
        }
        else if (arg == "--only" && i + 1 < argc)
        {
            only = argv[++i];
        }
        else
        {
            std::fprintf(stderr, "usage: %s [--reps N] [--dtype float|double|both] [--only NAME]\n", argv[0]);
            return 2;
        }
    }
    openblas_set_num_threads(1);
    std::printf("xconv gemm kernel: %s, mr x nr = %zu x %zu (float), %zu x %zu (double)\n",
                xconv::detail::gemm_arch::name(), xconv::detail::gemm_traits<float>::mr,
                xconv::detail::gemm_traits<float>::nr, xconv::detail::gemm_traits<double>::mr,
                xconv::detail::gemm_traits<double>::nr);
    std::printf("%-20s %-6s %5s %5s %5s %10s %10s %7s %9s\n", "shape", "dtype", "M", "N", "K", "xconv", "OpenBLAS",
                "ratio", "max|diff|");
    double log_sum = 0;
    int count = 0;
    for (const char* t : {"float", "double"})
    {
        if (dtype != "both" && dtype != t)
        {
            continue;
        }
        for (const shape& s : shapes)
        {
            if (!only.empty() && only != s.name)
            {
                continue;
            }
            const double ratio = std::strcmp(t, "float") == 0 ? run<float>(s, reps, t) : run<double>(s, reps, t);
            log_sum += std::log(ratio);
            ++count;
        }
    }
    if (count > 0)
    {
        std::printf("geometric mean of xconv / OpenBLAS: %.3f\n", std::exp(log_sum / count));
    }
    return 0;
}
