// xconv: the GEMM micro-kernel, one register tile of C.
//
// Contract of gemm_microkernel<T, Arch, M, NV>(kc, a, b, c, ldc, load_c):
//   a   packed A micro-panel: element (r, k) at a[k * mr + r], r < M <= mr (mr = gemm_traits::mr)
//   b   packed B micro-panel: element (k, j) at b[k * nr + j], j < NV * lanes <= nr, aligned to
//       the vector width
//   c   M x (NV * lanes) tile of C, element (r, j) at c[r * ldc + j] (unit column stride; rows
//       need no alignment)
//   load_c == false: c[r, j] = sum_k a(r, k) * b(k, j)      (c is written, never read)
//   load_c == true:  c[r, j] = c[r, j] + sum_k a(r, k) * b(k, j)
// Every element is one accumulator chain, acc = fma(a(r, k), b(k, j), acc) for k = 0, 1, ...,
// kc - 1, started from c[r, j] (load_c) or from zero. Continuing a chain over several k-blocks
// with load_c == true therefore gives bit for bit the result of one chain over all of K, whatever
// the block sizes, the tile position of the element or the thread that computes it.
//
// The partial tiles (M < mr, NV < nv) are the same code with fewer accumulators, so the edges of
// C are computed exactly like the interior.
#ifndef XCONV_DETAIL_GEMM_KERNEL_HPP
#define XCONV_DETAIL_GEMM_KERNEL_HPP

#include <array>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "gemm_traits.hpp"

#if defined(__GNUC__) && !defined(__clang__)
#define XCONV_GEMM_UNROLL _Pragma("GCC unroll 64")
#elif defined(__clang__)
#define XCONV_GEMM_UNROLL _Pragma("unroll")
#else
#define XCONV_GEMM_UNROLL
#endif

#if defined(__GNUC__) || defined(__clang__)
#define XCONV_GEMM_RESTRICT __restrict__
#define XCONV_GEMM_ALWAYS_INLINE inline __attribute__((always_inline))
#define XCONV_GEMM_PREFETCH_WRITE(p) __builtin_prefetch((p), 1, 3)
#define XCONV_GEMM_PREFETCH_READ(p) __builtin_prefetch((p), 0, 3)
#else
#define XCONV_GEMM_RESTRICT
#define XCONV_GEMM_ALWAYS_INLINE inline
#define XCONV_GEMM_PREFETCH_WRITE(p)
#define XCONV_GEMM_PREFETCH_READ(p)
#endif

namespace xconv
{
    namespace detail
    {
        /// The few vector operations the micro-kernel needs, on xsimd batches (or on T itself for
        /// the scalar kernel).
        template <class T, class Arch>
        struct gemm_vec
        {
#if !defined(XCONV_GEMM_NO_SIMD)
            using type = xsimd::batch<T, Arch>;
            static constexpr std::size_t lanes = type::size;

            static XCONV_GEMM_ALWAYS_INLINE type zero() noexcept { return type(T(0)); }
            static XCONV_GEMM_ALWAYS_INLINE type broadcast(T v) noexcept { return type(v); }
            static XCONV_GEMM_ALWAYS_INLINE type load_aligned(const T* p) noexcept { return type::load_aligned(p); }
            static XCONV_GEMM_ALWAYS_INLINE type load(const T* p) noexcept { return type::load_unaligned(p); }
            static XCONV_GEMM_ALWAYS_INLINE void store(T* p, const type& v) noexcept { v.store_unaligned(p); }

            /// a * b + c, fused where the instruction set has an FMA (xsimd 8.1 leaves AVX-512's
            /// fma to the compiler's contraction, so it is spelled out here).
            static XCONV_GEMM_ALWAYS_INLINE type fma(const type& a, const type& b, const type& c) noexcept
            {
#if XSIMD_WITH_AVX512F
                if constexpr (std::is_base_of<xsimd::avx512f, Arch>::value)
                {
                    if constexpr (std::is_same<T, float>::value)
                    {
                        return _mm512_fmadd_ps(a, b, c);
                    }
                    else if constexpr (std::is_same<T, double>::value)
                    {
                        return _mm512_fmadd_pd(a, b, c);
                    }
                }
#endif
                return xsimd::fma(a, b, c);
            }
#endif
        };

        template <class T>
        struct gemm_vec<T, gemm_scalar_arch>
        {
            using type = T;
            static constexpr std::size_t lanes = 1;

            static XCONV_GEMM_ALWAYS_INLINE T zero() noexcept { return T(0); }
            static XCONV_GEMM_ALWAYS_INLINE T broadcast(T v) noexcept { return v; }
            static XCONV_GEMM_ALWAYS_INLINE T load_aligned(const T* p) noexcept { return *p; }
            static XCONV_GEMM_ALWAYS_INLINE T load(const T* p) noexcept { return *p; }
            static XCONV_GEMM_ALWAYS_INLINE void store(T* p, T v) noexcept { *p = v; }
            static XCONV_GEMM_ALWAYS_INLINE T fma(T a, T b, T c) noexcept { return a * b + c; }
        };

        /// The M x NV vector accumulators of a register tile, shared by the micro-kernels (this
        /// one and conv_implicit.hpp's): started from C or from zero, updated by rank-1 steps,
        /// stored back. Always inlined, so the accumulators live in registers.
        template <class T, class Arch, std::size_t M, std::size_t NV>
        struct gemm_register_tile
        {
            using vec = gemm_vec<T, Arch>;
            using V = typename vec::type;
            static constexpr std::size_t L = vec::lanes;

            V acc[M][NV];

            /// acc = the tile of C at c (load_c) or zero.
            XCONV_GEMM_ALWAYS_INLINE void start(const T* c, std::ptrdiff_t ldc, bool load_c) noexcept
            {
                if (load_c)
                {
                    XCONV_GEMM_UNROLL
                    for (std::size_t r = 0; r < M; ++r)
                    {
                        XCONV_GEMM_UNROLL
                        for (std::size_t v = 0; v < NV; ++v)
                        {
                            acc[r][v] = vec::load(c + static_cast<std::ptrdiff_t>(r) * ldc + v * L);
                        }
                    }
                }
                else
                {
                    XCONV_GEMM_UNROLL
                    for (std::size_t r = 0; r < M; ++r)
                    {
                        XCONV_GEMM_UNROLL
                        for (std::size_t v = 0; v < NV; ++v)
                        {
                            acc[r][v] = vec::zero();
                        }
                    }
                }
            }

            /// acc[r][j] = fma(a(r), b[j], acc[r][j]): one step k of every accumulator chain, b a
            /// row of a packed B panel (aligned).
            template <class A>
            XCONV_GEMM_ALWAYS_INLINE void update(const A& a, const T* XCONV_GEMM_RESTRICT b) noexcept
            {
                V bv[NV];
                XCONV_GEMM_UNROLL
                for (std::size_t v = 0; v < NV; ++v)
                {
                    bv[v] = vec::load_aligned(b + v * L);
                }
                XCONV_GEMM_UNROLL
                for (std::size_t r = 0; r < M; ++r)
                {
                    const V ar = vec::broadcast(a(r));
                    XCONV_GEMM_UNROLL
                    for (std::size_t v = 0; v < NV; ++v)
                    {
                        acc[r][v] = vec::fma(ar, bv[v], acc[r][v]);
                    }
                }
            }

            XCONV_GEMM_ALWAYS_INLINE void store(T* c, std::ptrdiff_t ldc) const noexcept
            {
                XCONV_GEMM_UNROLL
                for (std::size_t r = 0; r < M; ++r)
                {
                    XCONV_GEMM_UNROLL
                    for (std::size_t v = 0; v < NV; ++v)
                    {
                        vec::store(c + static_cast<std::ptrdiff_t>(r) * ldc + v * L, acc[r][v]);
                    }
                }
            }
        };

        /// One M x (NV * lanes) tile of C from packed panels; see the contract at the top.
        template <class T, class Arch, std::size_t M, std::size_t NV>
        inline void gemm_microkernel(std::size_t kc,
                                     const T* XCONV_GEMM_RESTRICT a,
                                     const T* XCONV_GEMM_RESTRICT b,
                                     T* XCONV_GEMM_RESTRICT c,
                                     std::ptrdiff_t ldc,
                                     bool load_c) noexcept
        {
            using traits = gemm_traits<T, Arch>;
            constexpr std::size_t MR = traits::mr;
            constexpr std::size_t NR = traits::nr;
            static_assert(M >= 1 && M <= MR && NV >= 1 && NV <= traits::nv, "tile larger than the register block");

            gemm_register_tile<T, Arch, M, NV> tile;
            tile.start(c, ldc, load_c);
            for (std::size_t k = 0; k < kc; ++k)
            {
                tile.update([a](std::size_t r) { return a[r]; }, b);
                a += MR;
                b += NR;
            }
            tile.store(c, ldc);
        }

        /// Pointer to a micro-kernel instantiation.
        template <class T>
        using gemm_microkernel_fn = void (*)(std::size_t, const T*, const T*, T*, std::ptrdiff_t, bool);

        /// Table of every tile shape: entry [m - 1][nv - 1] computes an m x (nv * lanes) tile.
        template <class T, class Arch>
        struct gemm_microkernel_table
        {
            using traits = gemm_traits<T, Arch>;

            template <std::size_t M, std::size_t... NVs>
            static constexpr auto row(std::index_sequence<NVs...>)
            {
                return std::array<gemm_microkernel_fn<T>, sizeof...(NVs)>{&gemm_microkernel<T, Arch, M, NVs + 1>...};
            }

            template <std::size_t... Ms>
            static constexpr auto make(std::index_sequence<Ms...>)
            {
                return std::array<std::array<gemm_microkernel_fn<T>, traits::nv>, sizeof...(Ms)>{
                    row<Ms + 1>(std::make_index_sequence<traits::nv>{})...};
            }

            static gemm_microkernel_fn<T> get(std::size_t m, std::size_t nv) noexcept
            {
                static constexpr auto table = make(std::make_index_sequence<traits::mr>{});
                return table[m - 1][nv - 1];
            }
        };
    }  // namespace detail
}  // namespace xconv

#endif
