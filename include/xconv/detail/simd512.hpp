// xconv: the AVX-512 vector operations shared by the hand-vectorised passes (the direct kernels
// of direct.hpp, col2im's interleaved additions in conv_pack.hpp), for float and double.
//
// simd512<T> is defined where the build has AVX-512 (and XCONV_GEMM_NO_SIMD is not set); the
// passes test XCONV_HAS_SIMD512 before using it. Masked loads read nothing outside their mask,
// masked stores write nothing outside it.
#ifndef XCONV_DETAIL_SIMD512_HPP
#define XCONV_DETAIL_SIMD512_HPP

#include <cstdint>

#if defined(__AVX512F__) && !defined(XCONV_GEMM_NO_SIMD)
#include <immintrin.h>
#define XCONV_HAS_SIMD512 1

namespace xconv
{
    namespace detail
    {
        template <class T>
        struct simd512;

        template <>
        struct simd512<float>
        {
            using V = __m512;
            using M = __mmask16;
            using index = std::int32_t;  // a permute's lane index
            static constexpr std::int64_t lanes = 16;
            /// The lowest min(max(n, 0), lanes) lanes.
            static M mask(std::int64_t n) noexcept { return n <= 0 ? M(0) : n >= lanes ? M(0xFFFF) : M((1u << n) - 1u); }
            static V load(const float* p) noexcept { return _mm512_load_ps(p); }
            static V load(M m, const float* p) noexcept { return _mm512_maskz_loadu_ps(m, p); }
            /// Lane l + s holds lane l of v (0 < s < lanes), the lowest s lanes zero.
            static V shift_up(V v, std::int64_t s) noexcept
            {
                const __m512i idx = _mm512_sub_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                     _mm512_set1_epi32(static_cast<int>(s)));
                return _mm512_maskz_permutexvar_ps(static_cast<M>(~mask(s)), idx, v);
            }
            static V loadu(const float* p) noexcept { return _mm512_loadu_ps(p); }
            static void store(float* p, M m, V v) noexcept { _mm512_mask_storeu_ps(p, m, v); }
            static void storeu(float* p, V v) noexcept { _mm512_storeu_ps(p, v); }
            static V set1(float v) noexcept { return _mm512_set1_ps(v); }
            static V zero() noexcept { return _mm512_setzero_ps(); }
            static V add(V a, V b) noexcept { return _mm512_add_ps(a, b); }
            static V fma(V a, V b, V c) noexcept { return _mm512_fmadd_ps(a, b, c); }
            /// The sum of the lanes in a fixed order: halves, then quarters, pairs and neighbours.
            /// (The zero-masked shuffles with every lane kept: GCC 12 warns of the unmasked ones'
            /// undefined pass-through.)
            static float reduce_add(V v) noexcept
            {
                const M all = mask(lanes);
                V t = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(all, v, v, 0x4E));
                t = _mm512_add_ps(t, _mm512_maskz_shuffle_f32x4(all, t, t, 0xB1));
                t = _mm512_add_ps(t, _mm512_maskz_permute_ps(all, t, 0x4E));
                t = _mm512_add_ps(t, _mm512_maskz_permute_ps(all, t, 0xB1));
                return _mm512_cvtss_f32(t);
            }
            /// acc, with lane l (in m) set to lane idx[l] of v (the bits of idx above the lanes ignored).
            static V permute(V acc, M m, __m512i idx, V v) noexcept { return _mm512_mask_permutexvar_ps(acc, m, idx, v); }
            /// Lane l (in m, else zero): lane idx[l] of a, or of b when idx[l] has the bit `lanes`.
            static V permute2(M m, V a, __m512i idx, V b) noexcept { return _mm512_maskz_permutex2var_ps(m, a, idx, b); }
            static V permute2(V a, __m512i idx, V b) noexcept { return _mm512_permutex2var_ps(a, idx, b); }
            /// permute2 indices that interleave a and b: a0 b0 a1 b1 ... from the lower (or upper) halves.
            static __m512i interleave(bool upper) noexcept
            {
                return upper ? _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)
                             : _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            }
        };

        template <>
        struct simd512<double>
        {
            using V = __m512d;
            using M = __mmask8;
            using index = std::int64_t;
            static constexpr std::int64_t lanes = 8;
            static M mask(std::int64_t n) noexcept { return n <= 0 ? M(0) : n >= lanes ? M(0xFF) : M((1u << n) - 1u); }
            static V load(const double* p) noexcept { return _mm512_load_pd(p); }
            static V load(M m, const double* p) noexcept { return _mm512_maskz_loadu_pd(m, p); }
            static V shift_up(V v, std::int64_t s) noexcept
            {
                const __m512i idx = _mm512_sub_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_epi64(s));
                return _mm512_maskz_permutexvar_pd(static_cast<M>(~mask(s)), idx, v);
            }
            static V loadu(const double* p) noexcept { return _mm512_loadu_pd(p); }
            static void store(double* p, M m, V v) noexcept { _mm512_mask_storeu_pd(p, m, v); }
            static void storeu(double* p, V v) noexcept { _mm512_storeu_pd(p, v); }
            static V set1(double v) noexcept { return _mm512_set1_pd(v); }
            static V zero() noexcept { return _mm512_setzero_pd(); }
            static V add(V a, V b) noexcept { return _mm512_add_pd(a, b); }
            static V fma(V a, V b, V c) noexcept { return _mm512_fmadd_pd(a, b, c); }
            static double reduce_add(V v) noexcept
            {
                const M all = mask(lanes);
                V t = _mm512_add_pd(v, _mm512_maskz_shuffle_f64x2(all, v, v, 0x4E));
                t = _mm512_add_pd(t, _mm512_maskz_shuffle_f64x2(all, t, t, 0xB1));
                t = _mm512_add_pd(t, _mm512_maskz_permute_pd(all, t, 0x55));
                return _mm512_cvtsd_f64(t);
            }
            static V permute(V acc, M m, __m512i idx, V v) noexcept { return _mm512_mask_permutexvar_pd(acc, m, idx, v); }
            static V permute2(M m, V a, __m512i idx, V b) noexcept { return _mm512_maskz_permutex2var_pd(m, a, idx, b); }
            static V permute2(V a, __m512i idx, V b) noexcept { return _mm512_permutex2var_pd(a, idx, b); }
            static __m512i interleave(bool upper) noexcept
            {
                return upper ? _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15) : _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
            }
        };
    }  // namespace detail
}  // namespace xconv

#endif

#endif
