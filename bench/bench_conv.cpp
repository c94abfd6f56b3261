// Times xconv's functional convolutions on the shape suite (bench/suite.txt).
//
//   bench_conv <suite.txt> [--dtype float|double] [--pass forward|forward_backward]
//              [--reps N] [--only NAME] [--scratch BYTES] [--maker amd|intel|other] [--memory 1]
//   bench_conv --peak float|double
//   bench_conv --stream MIB
//
// Prints one line per shape: name, pass, dtype, threads, median seconds, GFLOP/s (forward FLOPs;
// a forward+backward pass is counted as three times the forward work). Threads: OMP_NUM_THREADS
// when built with XCONV_USE_OPENMP, else 1. --scratch sets xconv::set_scratch_limit. --maker
// makes the choices of route that were measured per processor maker follow that maker's
// (detail::set_route_maker; today the GEMM of 1 x 1 layers read in place), so that both routes
// can be timed on one machine: the results are the same, only the speed differs.
//
// --memory 1: no timing; each shape runs one forward and one backward pass (all three gradients)
// and the line gives the bytes of every tensor the program then holds (input, weight, bias,
// output, output gradient, the three gradients), the scratch limit and the most bytes xconv's
// scratch buffers held at once, to compare with the peak resident memory that
// `/usr/bin/time -v` reports.
//
// --peak: no convolution; every thread runs a loop of independent fused multiply-adds on the
// vectors of the GEMM's instruction set (the FMA ceiling), and one line gives the GFLOP/s of all
// the threads together: "fma_peak <dtype> <threads> <GFLOP/s>". compare_torch.py measures it in
// every round, so that the share of the ceiling is taken against the machine as it ran then.
//
// --stream MIB: no convolution; the threads copy a buffer of MIB mebibytes into another, each a
// contiguous share, reading with vector loads and writing with non-temporal stores (as the
// direct passes write large outputs), the best of five copies: "stream_copy <MiB> <threads>
// <ms> <GB/s moved>", the bytes read plus those written. The memory ceiling of a layer that
// reads and writes that much once, such as the depthwise one.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <xconv/xconv.hpp>

#if defined(__SSE__)
#include <immintrin.h>
#endif

#ifdef XCONV_USE_OPENMP
#include <omp.h>
#endif

namespace
{
    struct shape_row
    {
        std::string name, kind;
        std::size_t n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw, groups, oph, opw;
    };

    std::vector<shape_row> read_suite(const std::string& path)
    {
        std::ifstream in(path);
        if (!in)
        {
            throw std::runtime_error("cannot open " + path);
        }
        std::vector<shape_row> rows;
        std::string line;
        while (std::getline(in, line))
        {
            if (line.empty() || line[0] == '#')
            {
                continue;
            }
            std::istringstream is(line);
            shape_row r;
            is >> r.name >> r.kind >> r.n >> r.c_in >> r.h >> r.w >> r.c_out >> r.kh >> r.kw >> r.sh >> r.sw >> r.ph
                >> r.pw >> r.dh >> r.dw >> r.groups >> r.oph >> r.opw;
            if (!is)
            {
                throw std::runtime_error("bad suite line: " + line);
            }
            rows.push_back(r);
        }
        return rows;
    }

    template <class T, std::size_t N>
    xt::xtensor<T, N> random_tensor(const std::array<std::size_t, N>& shape, std::mt19937& gen)
    {
        xt::xtensor<T, N> t(shape);
        std::uniform_real_distribution<T> u(-1, 1);
        for (auto& v : t)
        {
            v = u(gen);
        }
        return t;
    }

    template <class F>
    double median_seconds(F&& f, int reps)
    {
        f();  // warm-up
        std::vector<double> times;
        for (int i = 0; i < reps; ++i)
        {
            const auto t0 = std::chrono::steady_clock::now();
            f();
            const auto t1 = std::chrono::steady_clock::now();
            times.push_back(std::chrono::duration<double>(t1 - t0).count());
        }
        std::sort(times.begin(), times.end());
        return times[times.size() / 2];
    }

    /// Prints the bytes of the tensors a --memory run holds (element counts in `sizes`).
    template <class T>
    void report_memory(const shape_row& r, std::initializer_list<std::size_t> sizes)
    {
        std::size_t elements = 0;
        for (const std::size_t n : sizes)
        {
            elements += n;
        }
        std::printf("%-16s memory tensors %.1f MiB (input, weight, bias, output, output gradient, three gradients), "
                    "scratch limit %.1f MiB, scratch held at most %.2f MiB\n",
                    r.name.c_str(), double(elements * sizeof(T)) / (1 << 20), double(xconv::scratch_limit()) / (1 << 20),
                    double(xconv::detail::scratch_bytes().peak.load()) / (1 << 20));
        std::fflush(stdout);
    }

    /// GFLOP/s of one thread's loop of independent fmas (12 accumulators: more than the fma
    /// units' latency times their number on the machines measured), the best of three tries of
    /// 48 million fmas each (about 10 ms with two 512-bit fma units).
    template <class T>
    double fma_peak_one_thread()
    {
        using vec = xconv::detail::gemm_vec<T, xconv::detail::gemm_arch>;
        using V = typename vec::type;
        constexpr int n_acc = 12;
        const long iterations = 4000000;
        double best = 0;
        for (int attempt = 0; attempt < 3; ++attempt)
        {
            V acc[n_acc];
            for (int i = 0; i < n_acc; ++i)
            {
                acc[i] = vec::broadcast(T(1) + T(i) / T(64));
            }
            const V m = vec::broadcast(T(0.999)), c = vec::broadcast(T(0.001));  // stays near 1
            const auto t0 = std::chrono::steady_clock::now();
            for (long it = 0; it < iterations; ++it)
            {
                for (int i = 0; i < n_acc; ++i)
                {
                    acc[i] = vec::fma(acc[i], m, c);
                }
            }
            const auto t1 = std::chrono::steady_clock::now();
            T lanes[vec::lanes];
            T sum = 0;
            for (int i = 0; i < n_acc; ++i)
            {
                vec::store(lanes, acc[i]);
                sum += lanes[0];
            }
            if (sum == T(-1))
            {
                std::printf("unreachable\n");
            }
            const double s = std::chrono::duration<double>(t1 - t0).count();
            best = std::max(best, 2.0 * double(iterations) * n_acc * double(vec::lanes) / s * 1e-9);
        }
        return best;
    }

    /// Milliseconds of the best of five copies of `mib` MiB by all the threads (see --stream).
    double stream_copy_ms(std::size_t mib)
    {
        const std::size_t n = (mib << 20) / sizeof(float);
        float* src = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
        float* dst = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
        if (src == nullptr || dst == nullptr)
        {
            throw std::runtime_error("out of memory");
        }
        const auto copy = [&](bool first) {
#ifdef XCONV_USE_OPENMP
#pragma omp parallel
#endif
            {
                std::size_t part = 0, parts = 1;
#ifdef XCONV_USE_OPENMP
                part = static_cast<std::size_t>(omp_get_thread_num());
                parts = static_cast<std::size_t>(omp_get_num_threads());
#endif
                // shares of whole 64-byte lines
                const std::size_t lines = n / 16, l0 = lines * part / parts, l1 = lines * (part + 1) / parts;
                if (first)
                {
                    for (std::size_t i = l0 * 16; i < l1 * 16; ++i)
                    {
                        src[i] = float(i % 1000);
                        dst[i] = 0.0f;
                    }
                }
                else
                {
                    for (std::size_t l = l0; l < l1; ++l)
                    {
#if defined(__AVX512F__)
                        _mm512_stream_ps(dst + l * 16, _mm512_load_ps(src + l * 16));
#else
                        std::copy(src + l * 16, src + l * 16 + 16, dst + l * 16);
#endif
                    }
#if defined(__SSE__)
                    _mm_sfence();
#endif
                }
            }
        };
        copy(true);  // first touch, by the threads that copy
        double best = 1e300;
        for (int attempt = 0; attempt < 5; ++attempt)
        {
            const auto t0 = std::chrono::steady_clock::now();
            copy(false);
            best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        std::free(src);
        std::free(dst);
        return best * 1e3;
    }

    /// The FMA ceiling of all the threads, run at once.
    template <class T>
    double fma_peak(int threads)
    {
        std::vector<double> per_thread(static_cast<std::size_t>(threads), 0.0);
#ifdef XCONV_USE_OPENMP
#pragma omp parallel num_threads(threads)
        per_thread[static_cast<std::size_t>(omp_get_thread_num())] = fma_peak_one_thread<T>();
#else
        per_thread[0] = fma_peak_one_thread<T>();
#endif
        double total = 0;
        for (const double g : per_thread)
        {
            total += g;
        }
        return total;
    }

    /// One shape of the suite, set up once: its tensors, options and forward FLOPs, and one timed
    /// unit of work (the forward pass, or forward and backward).
    template <class T>
    struct bench_case
    {
        shape_row r;
        bool backward = false;
        xt::xtensor<T, 4> x, w, gy;
        xt::xtensor<T, 1> b;
        xconv::conv2d_options o;
        xconv::conv_transpose2d_options ot;
        double flops = 0;

        bench_case(const shape_row& row, bool with_backward) : r(row), backward(with_backward)
        {
            std::mt19937 gen(42);
            const auto g = r.groups;
            x = random_tensor<T, 4>({r.n, r.c_in, r.h, r.w}, gen);
            b = random_tensor<T, 1>({r.c_out}, gen);
            const auto window = [&](auto& opt) {
                opt.stride = {r.sh, r.sw};
                opt.padding = {r.ph, r.pw};
                opt.dilation = {r.dh, r.dw};
                opt.groups = g;
            };
            const bool conv = r.kind == "conv";
            if (conv)
            {
                window(o);
                w = random_tensor<T, 4>({r.c_out, r.c_in / g, r.kh, r.kw}, gen);
            }
            else
            {
                window(ot);
                ot.output_padding = {r.oph, r.opw};
                w = random_tensor<T, 4>({r.c_in, r.c_out / g, r.kh, r.kw}, gen);
            }
            const auto y = forward();
            // a multiply-add per weight tap and output position (conv) or input position (transposed)
            flops = 2.0 * double(conv ? y.size() : x.size()) * double(conv ? r.c_in / g * r.kh * r.kw : r.c_out / g * r.kh * r.kw);
            gy = random_tensor<T, 4>({y.shape()[0], y.shape()[1], y.shape()[2], y.shape()[3]}, gen);
        }

        xt::xtensor<T, 4> forward() const
        {
            return r.kind == "conv" ? xconv::conv2d(x, w, b, o) : xconv::conv_transpose2d(x, w, b, ot);
        }

        xconv::conv_gradients<T, 4> backward_pass() const
        {
            return r.kind == "conv" ? xconv::conv2d_backward(gy, x, w, o) : xconv::conv_transpose2d_backward(gy, x, w, ot);
        }

        /// The timed work: the forward pass, and the backward pass (all three gradients) after it.
        void once() const
        {
            auto out = forward();
            if (backward)
            {
                auto grads = backward_pass();
            }
        }

        /// One forward and one backward pass, then the --memory line.
        void memory() const
        {
            const auto y = forward();
            const auto grads = backward_pass();
            report_memory<T>(r, {x.size(), w.size(), b.size(), y.size(), gy.size(), grads.grad_input.size(), grads.grad_weight.size(),
                                 grads.grad_bias.size()});
        }
    };

    template <class T>
    void run(const shape_row& r, bool backward, int reps, int threads, const char* dtype)
    {
        bench_case<T> c(r, backward);
        if (reps == 0)
        {
            c.memory();
            return;
        }
        const double seconds = median_seconds([&] { c.once(); }, reps);
        const double work = backward ? 3 * c.flops : c.flops;
        std::printf("%-16s %-16s %-6s %d %.6e %.2f\n", r.name.c_str(), backward ? "forward_backward" : "forward", dtype,
                    threads, seconds, work / seconds * 1e-9);
        std::fflush(stdout);
    }

    /// The median seconds of `reps` calls of a shape's timed work, its case set up (and run once)
    /// on the first call with these arguments and kept for the later ones.
    template <class T>
    double cached_time(const std::string& suite, const std::string& name, bool backward, int reps)
    {
        static std::map<std::string, std::unique_ptr<bench_case<T>>> cases;
        std::unique_ptr<bench_case<T>>& c = cases[suite + "\n" + name + (backward ? "\nb" : "\nf")];
        if (!c)
        {
            for (const auto& r : read_suite(suite))
            {
                if (r.name == name)
                {
                    c.reset(new bench_case<T>(r, backward));
                    c->once();  // warm-up
                }
            }
            if (!c)
            {
                return -1.0;
            }
        }
        std::vector<double> times;
        for (int i = 0; i < std::max(reps, 1); ++i)
        {
            const auto t0 = std::chrono::steady_clock::now();
            c->once();
            times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(times.begin(), times.end());
        return times[times.size() / 2];
    }
}

/// For compare_torch.py --inprocess (the shared library bench_conv_inprocess, built from this file
/// with XCONV_BENCH_LIBRARY): the median seconds of `reps` calls of the shape `name` of the suite
/// file, the element type "float" or "double", the pass "forward" or "forward_backward"; -1 when
/// the suite has no such shape. The case is set up on the first call and kept.
extern "C" double xconv_bench_time(const char* suite, const char* name, const char* dtype, const char* pass, int reps)
{
    try
    {
        const bool backward = std::string(pass) == "forward_backward";
        return std::string(dtype) == "double" ? cached_time<double>(suite, name, backward, reps)
                                              : cached_time<float>(suite, name, backward, reps);
    }
    catch (const std::exception& e)
    {
        std::fprintf(stderr, "xconv_bench_time: %s\n", e.what());
        return -1.0;
    }
}

/// The threads xconv's passes start from the calling thread (1 without OpenMP).
extern "C" int xconv_bench_threads()
{
#ifdef XCONV_USE_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/// Sets the threads xconv's passes start from the calling thread (omp_set_num_threads; without
/// OpenMP nothing changes). For thread_speedup.py, which times 1 and n threads in turn.
extern "C" void xconv_bench_set_threads(int threads)
{
#ifdef XCONV_USE_OPENMP
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
}

#if !defined(XCONV_BENCH_LIBRARY)
int main(int argc, char** argv)
{
    int threads = 1;
#ifdef XCONV_USE_OPENMP
    threads = omp_get_max_threads();
#endif
    if (argc == 3 && std::string(argv[1]) == "--peak")
    {
        const std::string dtype = argv[2];
        const double g = dtype == "double" ? fma_peak<double>(threads) : fma_peak<float>(threads);
        std::printf("fma_peak %s %d %.2f\n", dtype == "double" ? "double" : "float", threads, g);
        return 0;
    }
    if (argc == 3 && std::string(argv[1]) == "--stream")
    {
        const std::size_t mib = std::strtoull(argv[2], nullptr, 10);
        const double ms = stream_copy_ms(std::max<std::size_t>(mib, 1));
        std::printf("stream_copy %zu %d %.3f %.1f\n", std::max<std::size_t>(mib, 1), threads, ms,
                    2.0 * double(std::max<std::size_t>(mib, 1) << 20) / (ms * 1e-3) * 1e-9);
        return 0;
    }
    if (argc < 2)
    {
        std::cerr << "usage: bench_conv <suite.txt> [--dtype float|double] [--pass forward|forward_backward] "
                     "[--reps N] [--only NAME] [--scratch BYTES] [--maker amd|intel|other] [--memory 1]\n"
                     "       bench_conv --peak float|double\n"
                     "       bench_conv --stream MIB\n";
        return 2;
    }
    std::string dtype = "float", pass = "forward", only;
    int reps = 5;
    bool memory = false;
    for (int i = 2; i + 1 < argc; i += 2)
    {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--dtype") dtype = v;
        else if (k == "--pass") pass = v;
        else if (k == "--reps") reps = std::atoi(v.c_str());
        else if (k == "--only") only = v;
        else if (k == "--scratch") xconv::set_scratch_limit(std::strtoull(v.c_str(), nullptr, 10));
        else if (k == "--memory") memory = std::atoi(v.c_str()) != 0;
        else if (k == "--maker")
        {
            using xconv::detail::cpu_maker;
            if (v != "amd" && v != "intel" && v != "other")
            {
                std::cerr << "--maker takes amd, intel or other, not " << v << "\n";
                return 2;
            }
            xconv::detail::set_route_maker(v == "amd" ? cpu_maker::amd : v == "intel" ? cpu_maker::intel : cpu_maker::other);
        }
        else
        {
            std::cerr << "unknown option " << k << "\n";
            return 2;
        }
    }
    // Allocate and free one 31 MiB block first. glibc then raises its mmap threshold (to at most
    // 32 MiB), so the output tensors of the timed calls come from the heap and are reused, as in
    // any long-running process (the Python interpreter running PyTorch is one). Without it, every
    // large output is a fresh mmap whose page faults (about 3 us per 4 KiB page on the reference
    // machine) dominate the memory-bound shapes. Not for --memory: freed heap blocks stay
    // resident, and the peak resident set would count them.
    if (!memory)
    {
        static void* volatile block = nullptr;
        block = std::malloc(std::size_t(31) << 20);
        std::free(block);
    }
    const bool backward = pass == "forward_backward";
    for (const auto& r : read_suite(argv[1]))
    {
        if (!only.empty() && r.name != only)
        {
            continue;
        }
        if (dtype == "double")
        {
            run<double>(r, backward, memory ? 0 : std::max(reps, 1), threads, "double");
        }
        else
        {
            run<float>(r, backward, memory ? 0 : std::max(reps, 1), threads, "float");
        }
    }
    return 0;
}
#endif
