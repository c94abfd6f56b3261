// xconv: the instruction set the GEMM kernel is built for, and its block sizes.
//
// The instruction set is fixed at compile time by the architecture flags of the translation unit
// (xsimd::default_arch: -march=native on an AVX-512 machine gives avx512, -mavx2 -mfma gives
// fma3<avx2>, plain x86-64 gives sse2). xsimd is used when XCONV_USE_XSIMD is defined or its
// header is found; defining XCONV_GEMM_NO_SIMD, or compiling for a target xsimd does not support,
// selects the portable scalar kernel instead.
//
// Every block size of the GEMM lives in gemm_traits below and nowhere else.
#ifndef XCONV_DETAIL_GEMM_TRAITS_HPP
#define XCONV_DETAIL_GEMM_TRAITS_HPP

#include <atomic>
#include <cstddef>
#include <type_traits>

#if !defined(XCONV_GEMM_NO_SIMD)
#if defined(XCONV_USE_XSIMD) || !defined(__has_include)
#include <xsimd/xsimd.hpp>
#elif __has_include(<xsimd/xsimd.hpp>)
#include <xsimd/xsimd.hpp>
#else
#define XCONV_GEMM_NO_SIMD
#endif
#endif
#if !defined(XCONV_GEMM_NO_SIMD) && defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
#define XCONV_GEMM_NO_SIMD
#endif

namespace xconv
{
    namespace detail
    {
        /// Tag of the scalar kernel: one "vector" is one T.
        struct gemm_scalar_arch
        {
            static constexpr const char* name() noexcept { return "scalar"; }
        };

#if defined(XCONV_GEMM_NO_SIMD)
        using gemm_arch = gemm_scalar_arch;
#else
        using gemm_arch = xsimd::default_arch;
#endif

        /// Register file of an instruction set, as the block sizes see it.
        enum class gemm_isa_class
        {
            scalar,     // no SIMD
            simd16,     // 16 vector registers (SSE, AVX, AVX2, NEON)
            simd32_512  // 32 vector registers of 512 bits (AVX-512)
        };

        template <class Arch>
        constexpr gemm_isa_class gemm_isa_class_of() noexcept
        {
#if defined(XCONV_GEMM_NO_SIMD)
            return gemm_isa_class::scalar;
#else
            if (std::is_same<Arch, gemm_scalar_arch>::value)
            {
                return gemm_isa_class::scalar;
            }
            return std::is_base_of<xsimd::avx512f, Arch>::value ? gemm_isa_class::simd32_512
                                                                 : gemm_isa_class::simd16;
#endif
        }

        /// Lanes of one vector register holding T.
        template <class T, class Arch>
        struct gemm_lanes
        {
#if defined(XCONV_GEMM_NO_SIMD)
            static constexpr std::size_t value = 1;
#else
            static constexpr std::size_t value = xsimd::batch<T, Arch>::size;
#endif
        };
        template <class T>
        struct gemm_lanes<T, gemm_scalar_arch>
        {
            static constexpr std::size_t value = 1;
        };

        /// Makers of processors whose cores were measured to want different choices of route
        /// (not block sizes: those follow the instruction set alone).
        enum class cpu_maker
        {
            amd,
            intel,
            other
        };

        /// The maker of the processor running the program, read once (cpuid); `other` off x86
        /// or with a compiler that cannot tell.
        inline cpu_maker running_cpu_maker() noexcept
        {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
            static const cpu_maker maker = [] {
                __builtin_cpu_init();
                return __builtin_cpu_is("amd") ? cpu_maker::amd : __builtin_cpu_is("intel") ? cpu_maker::intel : cpu_maker::other;
            }();
            return maker;
#else
            return cpu_maker::other;
#endif
        }

        /// The maker set by set_route_maker, as an int (-1: none).
        inline std::atomic<int>& route_maker_override() noexcept
        {
            static std::atomic<int> maker{-1};
            return maker;
        }

        /// Makes the choices of route measured per maker follow `maker` instead of the running
        /// processor (reset_route_maker undoes it): so that a test can run both routes of such a
        /// choice on one machine, and a benchmark compare them. Results do not depend on it; only
        /// speed does.
        inline void set_route_maker(cpu_maker maker) noexcept
        {
            route_maker_override().store(static_cast<int>(maker), std::memory_order_relaxed);
        }
        inline void reset_route_maker() noexcept
        {
            route_maker_override().store(-1, std::memory_order_relaxed);
        }

        /// The maker whose measured choices of route apply: set_route_maker's, else the running
        /// processor's.
        inline cpu_maker route_maker() noexcept
        {
            const int maker = route_maker_override().load(std::memory_order_relaxed);
            return maker < 0 ? running_cpu_maker() : static_cast<cpu_maker>(maker);
        }

        /// Block sizes of the GEMM loop nest for element type T on instruction set Arch.
        ///
        ///   mr, nr   register tile of the micro-kernel: mr rows of C by nr = nv * lanes columns,
        ///            held in mr * nv vector accumulators.
        ///   kc       depth of one packed block (rows of a packed B panel, columns of packed A).
        ///   mc       rows of A packed at once (a multiple of mr).
        ///   nc       columns of B packed at once (a multiple of nr).
        ///   fused_panels   B micro-panels packed at a time in the first row block, where the
        ///            packing of B is fused with the multiplication (their kc x nr x fused_panels
        ///            elements should stay in L2 until used).
        ///   a_panel_outer  loop order of the macro-kernel: A micro-panel outer (kept in L1, B
        ///            micro-panels streamed) or B micro-panel outer (the other way round).
        ///   implicit_mr   rows of the implicit GEMM's register tile (conv_implicit.hpp), whose A
        ///            is broadcast straight from the image: mr, or more where registers allow.
        ///
        /// The loop nest (gemm_driver.hpp) is: jc over N by nc, pc over K by kc (pack B), ic over
        /// M by mc (pack A), jr over nc by nr, ir over mc by mr (micro-kernel). The packed A block
        /// (mc x kc) is meant to stay in L2, one packed B micro-panel (kc x nr) in L1/L2, the
        /// packed B block (kc x nc) in L3.
        template <class T, class Arch = gemm_arch, gemm_isa_class Isa = gemm_isa_class_of<Arch>()>
        struct gemm_traits;

        // AVX-512 (measured on Zen 4: 1 MiB L2 and 32 KiB L1 per core): 6 x 64 floats / 6 x 32
        // doubles = 24 accumulators of the 32 zmm registers, 4 for B, 1 for the broadcast of A.
        // kc x nc is the packed B buffer: 3 MiB (float) / 2 MiB (double); a larger nc measured
        // no faster.
        template <class T, class Arch>
        struct gemm_traits<T, Arch, gemm_isa_class::simd32_512>
        {
            static constexpr std::size_t lanes = gemm_lanes<T, Arch>::value;
            static constexpr std::size_t mr = 6;
            static constexpr std::size_t nv = 4;
            static constexpr std::size_t nr = nv * lanes;
            static constexpr std::size_t kc = sizeof(T) == 4 ? 384 : 256;
            static constexpr std::size_t mc = sizeof(T) == 4 ? 96 : 72;
            static constexpr std::size_t nc = sizeof(T) == 4 ? 2048 : 1024;
            static constexpr bool a_panel_outer = false;
            static constexpr std::size_t fused_panels = 4;
            // 7 x 4 float vectors: 28 accumulators, 4 for B, the broadcasts folded into the fmas.
            // Measured against 6 x 4 on the suite's float layers: 3 x 3 at 7 x 7, one sample (49
            // positions, 7 whole panels instead of 8 and a row), +10%; bottleneck_1x1 and
            // downsample_s2 +6..8%; the others level. In float64 it measured -3..+5%, so it stays
            // at mr there.
            static constexpr std::size_t implicit_mr = sizeof(T) == 4 ? 7 : mr;
        };

        // 16 vector registers: 6 x 2 vectors = 12 accumulators, 2 for B, 1 for the broadcast.
        template <class T, class Arch>
        struct gemm_traits<T, Arch, gemm_isa_class::simd16>
        {
            static constexpr std::size_t lanes = gemm_lanes<T, Arch>::value;
            static constexpr std::size_t mr = 6;
            static constexpr std::size_t nv = 2;
            static constexpr std::size_t nr = nv * lanes;
            static constexpr std::size_t kc = 256;
            static constexpr std::size_t mc = 96;
            static constexpr std::size_t nc = 2048;
            static constexpr bool a_panel_outer = false;
            static constexpr std::size_t fused_panels = 8;
            static constexpr std::size_t implicit_mr = mr;
        };

        // Portable scalar kernel: 6 x 8 accumulators. Written without vectors, but the rows of 8
        // are what compilers vectorise best (measured with GCC 12: 6 x 8 beat 4 x 4, 4 x 8 and
        // 8 x 8 with SSE2 and with AVX-512 code generation alike).
        template <class T, class Arch>
        struct gemm_traits<T, Arch, gemm_isa_class::scalar>
        {
            static constexpr std::size_t lanes = 1;
            static constexpr std::size_t mr = 6;
            static constexpr std::size_t nv = 8;
            static constexpr std::size_t nr = nv;
            static constexpr std::size_t kc = 256;
            static constexpr std::size_t mc = 96;
            static constexpr std::size_t nc = 1024;
            static constexpr bool a_panel_outer = false;
            static constexpr std::size_t fused_panels = 4;
            static constexpr std::size_t implicit_mr = mr;
        };
    }  // namespace detail
}  // namespace xconv

#endif
