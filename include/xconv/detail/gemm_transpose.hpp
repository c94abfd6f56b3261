// xconv: square in-register transposes for the packing routines.
//
// gemm_transpose_tile<T>::run(src, lds, dst, ldd) writes dst[t * ldd + r] = src[r * lds + t] for
// r, t < size: it turns `size` rows of a matrix that is contiguous along k into `size` rows of a
// packed panel. Pure data movement, so which instruction set does it has no effect on results.
// Provided for AVX-512 (16 x 16 float, 8 x 8 double) and AVX (8 x 8 float, 4 x 4 double); elsewhere,
// or with XCONV_GEMM_NO_SIMD, `size` is 0 and the packers use their scalar loops.
//
// run(src, lds, dst, ldd, add) writes dst[t * ldd + r] = src[r * lds + t] + add[t] instead: one
// value added per destination row (a convolution's bias per output channel), in the same
// rounding as adding it afterwards.
#ifndef XCONV_DETAIL_GEMM_TRANSPOSE_HPP
#define XCONV_DETAIL_GEMM_TRANSPOSE_HPP

#include <cstddef>

#if !defined(XCONV_GEMM_NO_SIMD) && (defined(__AVX512F__) || defined(__AVX__))
#include <immintrin.h>
#define XCONV_GEMM_HAS_TRANSPOSE 1
#endif

namespace xconv
{
    namespace detail
    {
        template <class T>
        struct gemm_transpose_tile
        {
            static constexpr std::size_t size = 0;
            static void run(const T*, std::ptrdiff_t, T*, std::ptrdiff_t, const T* = nullptr) noexcept {}
        };

#if defined(__GNUC__)
#define XCONV_TRANSPOSE_INLINE inline __attribute__((always_inline))
#else
#define XCONV_TRANSPOSE_INLINE inline
#endif

#if defined(XCONV_GEMM_HAS_TRANSPOSE) && defined(__GNUC__) && !defined(__clang__)
        // GCC 12's AVX-512 intrinsics initialise their "undefined" operand from itself, which
        // -Wuninitialized reports at every use.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#if defined(XCONV_GEMM_HAS_TRANSPOSE)
        /// Row t of a transposed tile, plus add[t] when add is not null.
        inline void transpose_store_row(float* p, __m256 v, const float* add, int t) noexcept
        {
            _mm256_storeu_ps(p, add == nullptr ? v : _mm256_add_ps(v, _mm256_set1_ps(add[t])));
        }
        inline void transpose_store_row(double* p, __m256d v, const double* add, int t) noexcept
        {
            _mm256_storeu_pd(p, add == nullptr ? v : _mm256_add_pd(v, _mm256_set1_pd(add[t])));
        }
#if defined(__AVX512F__)
        inline void transpose_store_row(float* p, __m512 v, const float* add, int t) noexcept
        {
            _mm512_storeu_ps(p, add == nullptr ? v : _mm512_add_ps(v, _mm512_set1_ps(add[t])));
        }
        inline void transpose_store_row(double* p, __m512d v, const double* add, int t) noexcept
        {
            _mm512_storeu_pd(p, add == nullptr ? v : _mm512_add_pd(v, _mm512_set1_pd(add[t])));
        }
#endif
#endif
#if defined(XCONV_GEMM_HAS_TRANSPOSE) && defined(__AVX512F__)
        template <>
        struct gemm_transpose_tile<float>
        {
            static constexpr std::size_t size = 16;

            /// out[t] = column t of the 16 rows src + r * lds (r < 16): the tile transposed, in
            /// registers.
            static XCONV_TRANSPOSE_INLINE void transposed(const float* src, std::ptrdiff_t lds, __m512 (&out)[16]) noexcept
            {
                __m512 t[16];
                __m512 u[16];
                // Interleave pairs of rows (32-bit), then pairs of pairs (64-bit): afterwards, 128-bit
                // lane j of u[4 * g + c] holds column 4 * j + c of rows 4 * g .. 4 * g + 3.
                for (int i = 0; i < 16; i += 2)
                {
                    const __m512 a = _mm512_loadu_ps(src + i * lds);
                    const __m512 b = _mm512_loadu_ps(src + (i + 1) * lds);
                    t[i] = _mm512_unpacklo_ps(a, b);
                    t[i + 1] = _mm512_unpackhi_ps(a, b);
                }
                for (int g = 0; g < 4; ++g)
                {
                    const __m512d lo0 = _mm512_castps_pd(t[4 * g]);
                    const __m512d hi0 = _mm512_castps_pd(t[4 * g + 1]);
                    const __m512d lo1 = _mm512_castps_pd(t[4 * g + 2]);
                    const __m512d hi1 = _mm512_castps_pd(t[4 * g + 3]);
                    u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo0, lo1));
                    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo0, lo1));
                    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi0, hi1));
                    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi0, hi1));
                }
                // Gather lane j of the four row groups: column 4 * j + c.
                for (int c = 0; c < 4; ++c)
                {
                    const __m512 s0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
                    const __m512 s1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
                    const __m512 s2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
                    const __m512 s3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
                    out[0 + c] = _mm512_shuffle_f32x4(s0, s2, 0x88);
                    out[4 + c] = _mm512_shuffle_f32x4(s0, s2, 0xDD);
                    out[8 + c] = _mm512_shuffle_f32x4(s1, s3, 0x88);
                    out[12 + c] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
                }
            }

            static void run(const float* src, std::ptrdiff_t lds, float* dst, std::ptrdiff_t ldd, const float* add = nullptr) noexcept
            {
                __m512 out[16];
                transposed(src, lds, out);
                for (int t = 0; t < 16; ++t)
                {
                    transpose_store_row(dst + t * ldd, out[t], add, t);
                }
            }
        };

        template <>
        struct gemm_transpose_tile<double>
        {
            static constexpr std::size_t size = 8;

            static void run(const double* src, std::ptrdiff_t lds, double* dst, std::ptrdiff_t ldd, const double* add = nullptr) noexcept
            {
                // After the 64-bit interleave, 128-bit lane j of t[2 * g + c] holds column
                // 2 * j + c of rows 2 * g, 2 * g + 1.
                __m512d t[8];
                for (int i = 0; i < 8; i += 2)
                {
                    const __m512d a = _mm512_loadu_pd(src + i * lds);
                    const __m512d b = _mm512_loadu_pd(src + (i + 1) * lds);
                    t[i] = _mm512_unpacklo_pd(a, b);
                    t[i + 1] = _mm512_unpackhi_pd(a, b);
                }
                for (int c = 0; c < 2; ++c)
                {
                    const __m512d s0 = _mm512_shuffle_f64x2(t[c], t[2 + c], 0x44);
                    const __m512d s1 = _mm512_shuffle_f64x2(t[c], t[2 + c], 0xEE);
                    const __m512d s2 = _mm512_shuffle_f64x2(t[4 + c], t[6 + c], 0x44);
                    const __m512d s3 = _mm512_shuffle_f64x2(t[4 + c], t[6 + c], 0xEE);
                    transpose_store_row(dst + (0 + c) * ldd, _mm512_shuffle_f64x2(s0, s2, 0x88), add, 0 + c);
                    transpose_store_row(dst + (2 + c) * ldd, _mm512_shuffle_f64x2(s0, s2, 0xDD), add, 2 + c);
                    transpose_store_row(dst + (4 + c) * ldd, _mm512_shuffle_f64x2(s1, s3, 0x88), add, 4 + c);
                    transpose_store_row(dst + (6 + c) * ldd, _mm512_shuffle_f64x2(s1, s3, 0xDD), add, 6 + c);
                }
            }
        };
#elif defined(XCONV_GEMM_HAS_TRANSPOSE)
        template <>
        struct gemm_transpose_tile<float>
        {
            static constexpr std::size_t size = 8;

            static void run(const float* src, std::ptrdiff_t lds, float* dst, std::ptrdiff_t ldd, const float* add = nullptr) noexcept
            {
                __m256 r[8];
                for (int i = 0; i < 8; ++i)
                {
                    r[i] = _mm256_loadu_ps(src + i * lds);
                }
                // 32-bit then 64-bit interleaves inside 128-bit halves, then swap the halves.
                __m256 t[8];
                for (int i = 0; i < 8; i += 2)
                {
                    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
                }
                __m256 u[8];
                for (int g = 0; g < 2; ++g)
                {
                    const __m256 lo0 = t[4 * g], hi0 = t[4 * g + 1], lo1 = t[4 * g + 2], hi1 = t[4 * g + 3];
                    u[4 * g + 0] = _mm256_shuffle_ps(lo0, lo1, 0x44);
                    u[4 * g + 1] = _mm256_shuffle_ps(lo0, lo1, 0xEE);
                    u[4 * g + 2] = _mm256_shuffle_ps(hi0, hi1, 0x44);
                    u[4 * g + 3] = _mm256_shuffle_ps(hi0, hi1, 0xEE);
                }
                // Half j of u[4 * g + c] holds column 4 * j + c of rows 4 * g .. 4 * g + 3.
                for (int c = 0; c < 4; ++c)
                {
                    transpose_store_row(dst + c * ldd, _mm256_permute2f128_ps(u[c], u[4 + c], 0x20), add, c);
                    transpose_store_row(dst + (4 + c) * ldd, _mm256_permute2f128_ps(u[c], u[4 + c], 0x31), add, 4 + c);
                }
            }
        };

        template <>
        struct gemm_transpose_tile<double>
        {
            static constexpr std::size_t size = 4;

            static void run(const double* src, std::ptrdiff_t lds, double* dst, std::ptrdiff_t ldd, const double* add = nullptr) noexcept
            {
                const __m256d r0 = _mm256_loadu_pd(src);
                const __m256d r1 = _mm256_loadu_pd(src + lds);
                const __m256d r2 = _mm256_loadu_pd(src + 2 * lds);
                const __m256d r3 = _mm256_loadu_pd(src + 3 * lds);
                // Half j of t0 / t1 holds column 2 * j / 2 * j + 1 of rows 0, 1; t2 / t3 of rows 2, 3.
                const __m256d t0 = _mm256_unpacklo_pd(r0, r1);
                const __m256d t1 = _mm256_unpackhi_pd(r0, r1);
                const __m256d t2 = _mm256_unpacklo_pd(r2, r3);
                const __m256d t3 = _mm256_unpackhi_pd(r2, r3);
                transpose_store_row(dst, _mm256_permute2f128_pd(t0, t2, 0x20), add, 0);
                transpose_store_row(dst + ldd, _mm256_permute2f128_pd(t1, t3, 0x20), add, 1);
                transpose_store_row(dst + 2 * ldd, _mm256_permute2f128_pd(t0, t2, 0x31), add, 2);
                transpose_store_row(dst + 3 * ldd, _mm256_permute2f128_pd(t1, t3, 0x31), add, 3);
            }
        };
#endif
#if defined(XCONV_GEMM_HAS_TRANSPOSE) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
    }  // namespace detail
}  // namespace xconv

#endif
