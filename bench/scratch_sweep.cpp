// scratch_sweep: checks the scratch limit over a grid of layers.
//
//   scratch_sweep [--limit MIB] [--dtype float|double] [--threads 1,2,3]
//
// For every layer of the grid (conv2d and conv_transpose2d; 1, 2 and 8 samples; 3, 32, 128
// and 512 input channels; 16, 128 and 384 output channels; 3 x 3 to 56 x 56 planes; 1 x 1 and
// 3 x 3 kernels, strides 1 and 2, padding half the kernel; weights over 8 MiB and products over
// 3e9 multiply-adds left out) and every thread count, it frees all scratch, runs one forward
// and one backward pass (all three gradients) and records the most bytes xconv's scratch
// buffers held at once. Prints each call that passed the limit and a summary line; the exit
// status is 1 when any did. Thread counts other than 1 need a build with XCONV_USE_OPENMP.
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <xconv/xconv.hpp>

#if defined(XCONV_USE_OPENMP)
#include <omp.h>
#endif

namespace
{
    struct layer
    {
        bool transposed;
        int n, c, hw, c_out, k, stride;
    };

    std::string describe(const layer& l, int threads)
    {
        std::ostringstream s;
        s << (l.transposed ? "conv_transpose2d" : "conv2d") << " N" << l.n << " C" << l.c << " HW" << l.hw << " Co" << l.c_out << " k"
          << l.k << " s" << l.stride << " " << threads << "t";
        return s.str();
    }

    void set_threads(int threads)
    {
#if defined(XCONV_USE_OPENMP)
        omp_set_num_threads(threads);
#else
        (void)threads;
#endif
    }

    /// Frees the scratch of every thread the sweep runs on (the most threads asked for).
    void release_all(int most_threads, int threads)
    {
        set_threads(most_threads);
        xconv::release_scratch();
        set_threads(threads);
    }

    /// The most scratch bytes held at once by one forward and one backward pass of l.
    template <class T>
    std::size_t peak_of(const layer& l, std::mt19937& gen, int most_threads, int threads)
    {
        std::normal_distribution<T> d;
        const auto fill = [&](auto& t) {
            for (auto& v : t)
            {
                v = d(gen);
            }
        };
        const auto uz = [](int v) { return static_cast<std::size_t>(v); };
        xt::xtensor<T, 4> x({uz(l.n), uz(l.c), uz(l.hw), uz(l.hw)});
        fill(x);
        release_all(most_threads, threads);
        xconv::detail::scratch_bytes().reset_peak();
        // One forward and one backward pass with a weight of shape w_shape.
        const auto passes = [&](auto options, std::array<std::size_t, 4> w_shape, auto forward, auto backward) {
            xt::xtensor<T, 4> w(w_shape);
            fill(w);
            options.padding = l.k / 2;
            options.stride = l.stride;
            const auto y = forward(x, w, options);
            backward(y, x, w, options);
        };
        if (!l.transposed)
        {
            passes(xconv::conv2d_options{}, {uz(l.c_out), uz(l.c), uz(l.k), uz(l.k)},
                   [](const auto& x_, const auto& w_, const auto& o) { return xconv::conv2d(x_, w_, o); },
                   [](const auto& y_, const auto& x_, const auto& w_, const auto& o) { return xconv::conv2d_backward(y_, x_, w_, o); });
        }
        else
        {
            passes(xconv::conv_transpose2d_options{}, {uz(l.c), uz(l.c_out), uz(l.k), uz(l.k)},
                   [](const auto& x_, const auto& w_, const auto& o) { return xconv::conv_transpose2d(x_, w_, o); },
                   [](const auto& y_, const auto& x_, const auto& w_, const auto& o) {
                       return xconv::conv_transpose2d_backward(y_, x_, w_, o);
                   });
        }
        return xconv::detail::scratch_bytes().peak.load();
    }

    template <class T>
    int sweep(const std::vector<int>& thread_counts)
    {
        const int most_threads = *std::max_element(thread_counts.begin(), thread_counts.end());
        const double mib = 1 << 20;
        const std::size_t limit = xconv::scratch_limit();
        std::mt19937 gen(1);
        int calls = 0, over = 0;
        std::size_t most = 0;
        std::string most_where;
        for (const int n : {1, 2, 8})
            for (const int c : {3, 32, 128, 512})
                for (const int hw : {3, 7, 14, 28, 56})
                    for (const int c_out : {16, 128, 384})
                        for (const int k : {1, 3})
                            for (const int stride : {1, 2})
                                for (const bool transposed : {false, true})
                                {
                                    if (static_cast<double>(c) * c_out * k * k * 4 > 8.0 * mib
                                        || static_cast<double>(n) * c * hw * hw * c_out * k * k > 3e9)
                                    {
                                        continue;
                                    }
                                    const layer l{transposed, n, c, hw, c_out, k, stride};
                                    for (const int threads : thread_counts)
                                    {
                                        const std::size_t peak = peak_of<T>(l, gen, most_threads, threads);
                                        ++calls;
                                        if (peak > most)
                                        {
                                            most = peak;
                                            most_where = describe(l, threads);
                                        }
                                        if (peak > limit)
                                        {
                                            ++over;
                                            std::printf("over the limit: %s: %.2f MiB\n", describe(l, threads).c_str(), double(peak) / mib);
                                            std::fflush(stdout);
                                        }
                                    }
                                }
        std::printf("%d of %d calls over the limit of %.2f MiB; the most held: %.2f MiB (%s)\n", over, calls, double(limit) / mib,
                    double(most) / mib, most_where.c_str());
        return over > 0 ? 1 : 0;
    }
}  // namespace

int main(int argc, char** argv)
{
    std::string dtype = "float";
    std::vector<int> thread_counts = {1};
#if defined(XCONV_USE_OPENMP)
    thread_counts = {1, 2, 3};
#endif
    for (int i = 1; i + 1 < argc; i += 2)
    {
        const std::string key = argv[i], value = argv[i + 1];
        if (key == "--limit")
        {
            xconv::set_scratch_limit(static_cast<std::size_t>(std::atof(value.c_str()) * (1 << 20)));
        }
        else if (key == "--dtype")
        {
            dtype = value;
        }
        else if (key == "--threads")
        {
            thread_counts.clear();
            std::istringstream s(value);
            for (std::string t; std::getline(s, t, ',');)
            {
                thread_counts.push_back(std::max(1, std::atoi(t.c_str())));
            }
        }
        else
        {
            std::fprintf(stderr, "unknown option %s\nusage: scratch_sweep [--limit MIB] [--dtype float|double] [--threads 1,2,3]\n",
                         key.c_str());
            return 2;
        }
    }
    if (thread_counts.empty() || (dtype != "float" && dtype != "double"))
    {
        std::fprintf(stderr, "usage: scratch_sweep [--limit MIB] [--dtype float|double] [--threads 1,2,3]\n");
        return 2;
    }
#if !defined(XCONV_USE_OPENMP)
    if (std::any_of(thread_counts.begin(), thread_counts.end(), [](int t) { return t != 1; }))
    {
        std::fprintf(stderr, "scratch_sweep: built without XCONV_USE_OPENMP, so only 1 thread\n");
        return 2;
    }
#endif
    return dtype == "double" ? sweep<double>(thread_counts) : sweep<float>(thread_counts);
}
