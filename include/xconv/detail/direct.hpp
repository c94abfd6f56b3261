// xconv: GEMM-free ("direct") versions of the three lowered passes, for groups with so few
// channels that the GEMM degenerates (depthwise convolutions: one input channel per group).
//
// Same contract as the lowered passes (conv_lowered.hpp): the plane is Cp channels of
// win.height x win.width, the grid is Cg rows of win.blocks() values, the weight is
// [Cg, Cp*kh*kw] row-major.
//
// Each channel plane is first staged, a band of rows at a time, into a zero-bordered copy q that
// covers every pixel the windows read (and a vector's width more on the right), so the loops
// below never test a bound; except for the AVX-512 3x3 / 5x5 stride-1 kernels (forward,
// backward-data and weight gradient), which read the plane's rows in place and make the border
// with masked loads (direct_plane_rows: the masks of a vector column are worked out once for all
// rows, and a row outside the plane is an empty mask, not a branch). Then:
//   * 3x3 (and 5x5, 1x1) kernels with stride 1 and dilation 1: register-blocked vector kernels;
//     forward keeps 4 output rows x 2 vectors of accumulators while each staged input row is
//     loaded once per kernel column, backward-weights keeps one accumulator vector per tap. The
//     row tail goes through a vector-wide temporary.
//   * backward-data with stride 1 is a forward pass over the staged gradient with the kernel
//     flipped (a "full" correlation), so it runs on the same kernels;
//   * everything else: per output row, one strided axpy (or dot product) per tap.
// In every case an output element is the sum of its initial value (bias or zero) and the taps in
// the order (input channel, i, j) or, for backward-data, its reverse; a weight-gradient element is
// the sum over rows of blocks of fixed-width vector partial sums, reduced in lane order. The
// order depends only on the shapes (and the vector width of the build), never on threads.
#ifndef XCONV_DETAIL_DIRECT_HPP
#define XCONV_DETAIL_DIRECT_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "../options.hpp"
#include "../unfold.hpp"
#include "conv_parallel.hpp"
#include "conv_scratch.hpp"
#include "gemm_kernel.hpp"
#include "gemm_traits.hpp"
#include "simd512.hpp"

namespace xconv
{
    namespace detail
    {
        /// Memory to fetch into the cache a little at a time while a kernel runs (a hint): a
        /// burst of prefetches of a whole plane stalls on the misses it has in flight. A range
        /// belongs to the pass that set it (conv_scratch.hpp's epochs): what a pass leaves
        /// unfetched, the kernels of a later call do not fetch.
        struct prefetch_cursor
        {
            struct range
            {
                const char* p = nullptr;
                const char* end = nullptr;
                std::int64_t lines = 0;  // per step
                std::uint64_t epoch = 0;
            };
            range r[2];

            /// Fetch [p, p + bytes) as range k (0 or 1), replacing what it had left.
            void set(int k, const void* p, std::size_t bytes) noexcept
            {
                r[k].p = static_cast<const char*>(p);
                r[k].end = r[k].p + bytes;
                r[k].lines = 0;
                r[k].epoch = current_scratch_epoch();
            }

            /// Spread what is left of the calling pass's ranges over `steps` calls of advance.
            void spread(std::int64_t steps) noexcept
            {
                const std::uint64_t epoch = current_scratch_epoch();
                for (range& q : r)
                {
                    if (q.epoch != epoch)
                    {
                        q.p = q.end;
                    }
                    q.lines = q.p < q.end ? ((q.end - q.p) / 64 + steps) / std::max<std::int64_t>(steps, 1) : 0;
                }
            }

            /// Lines still to fetch.
            std::int64_t pending() const noexcept
            {
                std::int64_t n = 0;
                for (const range& q : r)
                {
                    n += q.p < q.end ? (q.end - q.p + 63) / 64 : 0;
                }
                return n;
            }

            void advance() noexcept
            {
#if defined(__GNUC__) || defined(__clang__)
                for (range& q : r)
                {
                    for (std::int64_t k = 0; k < q.lines && q.p < q.end; ++k, q.p += 64)
                    {
                        __builtin_prefetch(q.p, 0, 2);
                    }
                }
#endif
            }
        };

        /// The calling thread's cursor: a pass sets the planes of its next (sample, group) before
        /// the kernels of this one, which spend it (the AVX-512 kernels a few lines per vector
        /// column, the others all at once).
        inline prefetch_cursor& direct_ahead() noexcept
        {
            static thread_local prefetch_cursor c;
            return c;
        }

        /// How many groups ahead a direct forward pass prefetches its input planes.
        constexpr std::int64_t direct_prefetch_distance = 2;

        /// Whether a pass writing `bytes` of output in all should write it with non-temporal stores
        /// (where it can): outputs much larger than the caches are not read back soon, and
        /// streaming saves reading each line before it is overwritten.
        inline bool stream_output(std::size_t bytes) noexcept
        {
            return bytes >= (std::size_t(8) << 20);
        }

        /// Whether the direct passes beat a GEMM for a group of Cp plane and Cg grid channels.
        inline bool prefer_direct(std::int64_t Cp, std::int64_t Cg) noexcept
        {
            return Cp * Cg <= 4;
        }

        /// Vector operations of the direct kernels: the GEMM micro-kernel's (xsimd batches for the
        /// build's instruction set, or plain T without SIMD).
        template <class T>
        using direct_vec = gemm_vec<T, gemm_arch>;

        /// A band of a channel plane staged with zero borders: q[r * ld + x] holds the plane pixel
        /// (row0 + r - top, x - left) for x < cols, or 0 outside the plane or past cols, for
        /// r < rows and x < ld.
        template <class T>
        void stage_rows(const T* src,
                        std::int64_t height,
                        std::int64_t width,
                        std::int64_t top,
                        std::int64_t left,
                        std::int64_t row0,
                        std::int64_t rows,
                        std::int64_t cols,
                        std::int64_t ld,
                        T* q) noexcept
        {
            const std::int64_t x_lo = std::clamp<std::int64_t>(left, 0, cols);
            const std::int64_t x_hi = std::clamp<std::int64_t>(left + width, x_lo, cols);
            for (std::int64_t r = 0; r < rows; ++r)
            {
                T* d = q + r * ld;
                const std::int64_t y = row0 + r - top;
                if (static_cast<std::uint64_t>(y) >= static_cast<std::uint64_t>(height))
                {
                    std::fill(d, d + ld, T(0));
                    continue;
                }
                std::fill(d, d + x_lo, T(0));
                const T* s = src + y * width + (x_lo - left);
                std::copy(s, s + (x_hi - x_lo), d + x_lo);
                std::fill(d + x_hi, d + ld, T(0));
            }
        }

        /// Geometry of a direct pass on one plane: output rows x cols read the staged plane at
        /// rows oy*sh + i*dh and columns ox*sw + j*dw.
        struct direct_geometry
        {
            std::int64_t out_h, out_w;        // output (grid) size
            std::int64_t kh, kw, sh, sw, dh, dw;
            std::int64_t src_h, src_w;        // the plane that is staged
            std::int64_t top, left;           // its offset inside the staged coordinates
            std::int64_t q_cols;              // staged columns read: (out_w-1)*sw + (kw-1)*dw + 1
            std::int64_t ld;                  // staged row length, with a vector of margin

            bool fast() const noexcept { return sh == 1 && sw == 1 && dh == 1 && dw == 1; }

            /// Staged rows needed by output rows [oy0, oy1).
            std::int64_t rows_for(std::int64_t oy0, std::int64_t oy1) const noexcept
            {
                return (oy1 - 1 - oy0) * sh + (kh - 1) * dh + 1;
            }
        };

        template <class T>
        direct_geometry make_direct_geometry(std::int64_t out_h,
                                             std::int64_t out_w,
                                             std::int64_t kh,
                                             std::int64_t kw,
                                             std::int64_t sh,
                                             std::int64_t sw,
                                             std::int64_t dh,
                                             std::int64_t dw,
                                             std::int64_t src_h,
                                             std::int64_t src_w,
                                             std::int64_t top,
                                             std::int64_t left) noexcept
        {
            direct_geometry g{out_h, out_w, kh, kw, sh, sw, dh, dw, src_h, src_w, top, left, 0, 0};
            g.q_cols = (out_w - 1) * sw + (kw - 1) * dw + 1;
            const auto lanes = static_cast<std::int64_t>(direct_vec<T>::lanes);
            g.ld = (g.q_cols + lanes + lanes - 1) / lanes * lanes;
            return g;
        }

        /// Output rows the register-blocked kernels compute at once.
        constexpr std::int64_t direct_row_block = 8;

        /// Output rows per band: the staged band of rows fits in the scratch budget.
        template <class T>
        std::int64_t direct_band(const direct_geometry& g, std::size_t budget) noexcept
        {
            const std::size_t row_bytes = static_cast<std::size_t>(g.ld) * sizeof(T);
            const auto fit = static_cast<std::int64_t>(budget / std::max<std::size_t>(row_bytes, 1));
            // staged rows of a band of b output rows: (b - 1)*sh + (kh - 1)*dh + 1
            // Whole blocks of direct_row_block rows, so that the row blocks of the kernels sit at
            // the same rows whatever the band size.
            const std::int64_t b = ((fit - (g.kh - 1) * g.dh - 1) / g.sh + 1) / direct_row_block * direct_row_block;
            return std::clamp<std::int64_t>(b, std::min(direct_row_block, g.out_h), g.out_h);
        }

        // ------------------------------------------------------------------ vector kernels

        /// R output rows x NV vectors at column ox: out = start + taps over the staged band q, with
        /// start the value out holds (Load) or `init`.
        template <class T, int KH, int KW, int R, int NV, bool Load>
        XCONV_GEMM_ALWAYS_INLINE void direct_block(const T* q,
                                                   std::int64_t ld,
                                                   const typename direct_vec<T>::type* w,
                                                   const typename direct_vec<T>::type& init,
                                                   T* out,
                                                   std::int64_t out_w,
                                                   std::int64_t ox) noexcept
        {
            using vec = direct_vec<T>;
            using V = typename vec::type;
            constexpr auto L = static_cast<std::int64_t>(vec::lanes);
            V acc[R][NV];
            XCONV_GEMM_UNROLL
            for (int r = 0; r < R; ++r)
            {
                XCONV_GEMM_UNROLL
                for (int v = 0; v < NV; ++v)
                {
                    if constexpr (Load)
                    {
                        acc[r][v] = vec::load(out + r * out_w + ox + v * L);
                    }
                    else
                    {
                        acc[r][v] = init;
                    }
                }
            }
            XCONV_GEMM_UNROLL
            for (int r = 0; r < R; ++r)
            {
                XCONV_GEMM_UNROLL
                for (int i = 0; i < KH; ++i)
                {
                    const T* row = q + (r + i) * ld + ox;
                    XCONV_GEMM_UNROLL
                    for (int j = 0; j < KW; ++j)
                    {
                        XCONV_GEMM_UNROLL
                        for (int v = 0; v < NV; ++v)
                        {
                            acc[r][v] = vec::fma(w[i * KW + j], vec::load(row + j + v * L), acc[r][v]);
                        }
                    }
                }
            }
            XCONV_GEMM_UNROLL
            for (int r = 0; r < R; ++r)
            {
                XCONV_GEMM_UNROLL
                for (int v = 0; v < NV; ++v)
                {
                    vec::store(out + r * out_w + ox + v * L, acc[r][v]);
                }
            }
        }

        /// R output rows of out (row length out_w) = start + the KH x KW taps over the staged band
        /// q (stride 1, dilation 1): two vectors at a time, then one, then the tail through a
        /// vector-wide temporary.
        template <class T, int KH, int KW, int R, bool Load>
        void direct_rows(const T* q,
                         std::int64_t ld,
                         const typename direct_vec<T>::type* w,
                         const typename direct_vec<T>::type& init,
                         T* out,
                         std::int64_t out_w) noexcept
        {
            using vec = direct_vec<T>;
            constexpr auto L = static_cast<std::int64_t>(vec::lanes);
            std::int64_t ox = 0;
            for (; ox + 2 * L <= out_w; ox += 2 * L)
            {
                direct_block<T, KH, KW, R, 2, Load>(q, ld, w, init, out, out_w, ox);
            }
            for (; ox + L <= out_w; ox += L)
            {
                direct_block<T, KH, KW, R, 1, Load>(q, ld, w, init, out, out_w, ox);
            }
            if (ox < out_w)
            {
                const std::int64_t n = out_w - ox;
                alignas(64) T tmp[R * L];
                if constexpr (Load)
                {
                    for (int r = 0; r < R; ++r)
                    {
                        std::copy(out + r * out_w + ox, out + r * out_w + out_w, tmp + r * L);
                        std::fill(tmp + r * L + n, tmp + (r + 1) * L, T(0));
                    }
                }
                direct_block<T, KH, KW, R, 1, Load>(q + ox, ld, w, init, tmp, L, 0);
                for (int r = 0; r < R; ++r)
                {
                    std::copy(tmp + r * L, tmp + r * L + n, out + r * out_w + ox);
                }
            }
        }

        /// out [rows, out_w] = start + KH x KW stride-1 correlation of the staged band q with wt,
        /// start being out's values (init null) or *init.
        template <class T, int KH, int KW>
        void direct_plane_fixed(const T* q,
                                std::int64_t ld,
                                const T* wt,
                                const T* init,
                                T* out,
                                std::int64_t rows,
                                std::int64_t out_w) noexcept
        {
            using vec = direct_vec<T>;
            typename vec::type w[KH * KW];
            for (int t = 0; t < KH * KW; ++t)
            {
                w[t] = vec::broadcast(wt[t]);
            }
            const typename vec::type start = vec::broadcast(init != nullptr ? *init : T(0));
            constexpr int R = 4;
            const auto run = [&](auto load) {
                constexpr bool Load = decltype(load)::value;
                std::int64_t oy = 0;
                for (; oy + R <= rows; oy += R)
                {
                    direct_rows<T, KH, KW, R, Load>(q + oy * ld, ld, w, start, out + oy * out_w, out_w);
                }
                for (; oy < rows; ++oy)
                {
                    direct_rows<T, KH, KW, 1, Load>(q + oy * ld, ld, w, start, out + oy * out_w, out_w);
                }
            };
            if (init == nullptr)
            {
                run(std::true_type{});
            }
            else
            {
                run(std::false_type{});
            }
        }

        /// acc[t] += grid rows x staged rows shifted by tap t (stride 1, dilation 1), for every tap,
        /// one vector of partial sums per tap.
        template <class T, int KH, int KW>
        void direct_wgrad_fixed(const T* q,
                                std::int64_t ld,
                                const T* grid,
                                std::int64_t rows,
                                std::int64_t out_w,
                                typename direct_vec<T>::type* acc) noexcept
        {
            using vec = direct_vec<T>;
            using V = typename vec::type;
            constexpr auto L = static_cast<std::int64_t>(vec::lanes);
            V a[KH * KW];
            const auto step = [&](const V& g, const T* qrow) {
                XCONV_GEMM_UNROLL
                for (int i = 0; i < KH; ++i)
                {
                    XCONV_GEMM_UNROLL
                    for (int j = 0; j < KW; ++j)
                    {
                        a[i * KW + j] = vec::fma(g, vec::load(qrow + i * ld + j), a[i * KW + j]);
                    }
                }
            };
            // Each block of direct_row_block rows is summed on its own, then added to acc: a long
            // reduction (a whole batch of planes) in two levels loses far less to rounding than
            // one running sum. (Bands start at multiples of the block: the same blocks whatever
            // the band size.)
            for (std::int64_t oy0 = 0; oy0 < rows; oy0 += direct_row_block)
            {
                for (int t = 0; t < KH * KW; ++t)
                {
                    a[t] = vec::zero();
                }
                for (std::int64_t oy = oy0; oy < std::min(rows, oy0 + direct_row_block); ++oy)
                {
                    const T* g = grid + oy * out_w;
                    const T* qrow = q + oy * ld;
                    std::int64_t ox = 0;
                    for (; ox + L <= out_w; ox += L)
                    {
                        step(vec::load(g + ox), qrow + ox);
                    }
                    if (ox < out_w)
                    {
                        alignas(64) T tmp[L];
                        std::fill(tmp, tmp + L, T(0));
                        std::copy(g + ox, g + out_w, tmp);
                        step(vec::load(tmp), qrow + ox);
                    }
                }
                for (int t = 0; t < KH * KW; ++t)
                {
                    acc[t] = acc[t] + a[t];
                }
            }
        }

#if defined(XCONV_HAS_SIMD512)
#define XCONV_DIRECT_AVX512 1
#if defined(__GNUC__) && !defined(__clang__)
        // GCC 12's AVX-512 intrinsics initialise their "undefined" operand from itself, which
        // -Wuninitialized reports at every use.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
        // ------------------------------------------------------------------ AVX-512 kernels
        //
        // The AVX-512 kernels read the rows of the plane in place (direct_plane_rows), the zero
        // border made by masked loads. The shifted windows j = 0, 1, ... of a row are either
        // formed from two neighbouring vectors with one valign each (the weight gradient) or
        // loaded each on its own, unaligned (the correlation: loads cost a load port, and two
        // when they straddle a cache line, but leave the vector pipes to the FMAs; measured
        // faster there). Row tails use masked loads and stores.

        template <class T>
        struct direct_avx512;

        template <>
        struct direct_avx512<float> : simd512<float>
        {
            /// Lanes j .. j + 15 of the 32 lanes lo:hi.
            template <int J>
            static V window(V lo, V hi) noexcept
            {
                if constexpr (J == 0)
                {
                    return lo;
                }
                else
                {
                    return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(hi), _mm512_castps_si512(lo), J));
                }
            }
            /// dst[0 .. n) = src[0 .. n), src 64-byte aligned, with non-temporal stores for the
            /// 64-byte aligned part of dst; the caller sets streamed_stores_pending (conv_parallel.hpp).
            static void stream_copy(const float* src, float* dst, std::int64_t n) noexcept
            {
                std::int64_t head = static_cast<std::int64_t>((64 - reinterpret_cast<std::uintptr_t>(dst) % 64) % 64) / std::int64_t(sizeof(float));
                head = std::min(head, n);
                if (reinterpret_cast<std::uintptr_t>(dst) % sizeof(float) != 0)
                {
                    head = n;  // not even element-aligned: no streaming
                }
                std::copy(src, src + head, dst);
                std::int64_t i = head;
                for (; i + lanes <= n; i += lanes)
                {
                    _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
                }
                std::copy(src + i, src + n, dst + i);
            }

            static float sum(V v) noexcept
            {
                alignas(64) float l[16];
                _mm512_store_ps(l, v);
                float s = 0.0f;
                for (float x : l)
                {
                    s += x;
                }
                return s;
            }
        };

        template <>
        struct direct_avx512<double> : simd512<double>
        {
            template <int J>
            static V window(V lo, V hi) noexcept
            {
                if constexpr (J == 0)
                {
                    return lo;
                }
                else
                {
                    return _mm512_castsi512_pd(_mm512_alignr_epi64(_mm512_castpd_si512(hi), _mm512_castpd_si512(lo), J));
                }
            }
            /// dst[0 .. n) = src[0 .. n), src 64-byte aligned, with non-temporal stores for the
            /// 64-byte aligned part of dst; the caller sets streamed_stores_pending (conv_parallel.hpp).
            static void stream_copy(const double* src, double* dst, std::int64_t n) noexcept
            {
                std::int64_t head = static_cast<std::int64_t>((64 - reinterpret_cast<std::uintptr_t>(dst) % 64) % 64) / std::int64_t(sizeof(double));
                head = std::min(head, n);
                if (reinterpret_cast<std::uintptr_t>(dst) % sizeof(double) != 0)
                {
                    head = n;  // not even element-aligned: no streaming
                }
                std::copy(src, src + head, dst);
                std::int64_t i = head;
                for (; i + lanes <= n; i += lanes)
                {
                    _mm512_stream_pd(dst + i, _mm512_loadu_pd(src + i));
                }
                std::copy(src + i, src + n, dst + i);
            }

            static double sum(V v) noexcept
            {
                alignas(64) double l[8];
                _mm512_store_pd(l, v);
                double s = 0.0;
                for (double x : l)
                {
                    s += x;
                }
                return s;
            }
        };

        template <class T, int... J>
        XCONV_GEMM_ALWAYS_INLINE void direct_avx512_windows(typename direct_avx512<T>::V lo,
                                                            typename direct_avx512<T>::V hi,
                                                            typename direct_avx512<T>::V* s,
                                                            std::integer_sequence<int, J...>) noexcept
        {
            ((s[J] = direct_avx512<T>::template window<J>(lo, hi)), ...);
        }

        /// The vector columns x row blocks an AVX-512 kernel walks over `rows` rows.
        template <class T>
        std::int64_t direct_avx512_steps(std::int64_t rows, std::int64_t out_w) noexcept
        {
            const auto lanes = static_cast<std::int64_t>(direct_avx512<T>::lanes);
            return (rows + direct_row_block - 1) / direct_row_block * ((out_w + lanes - 1) / lanes);
        }

        /// The rows a stride-1 AVX-512 kernel reads, straight from the plane, the zero border made
        /// by masked loads (which do not touch the lanes they leave out): row t, column x is the
        /// plane pixel (y0 + t, x - left), 0 outside the plane. Saves staging a copy of every row.
        template <class T>
        struct direct_plane_rows
        {
            const T* src;
            std::int64_t height, width, y0, left;
            prefetch_cursor* ahead = nullptr;

            direct_plane_rows from(std::int64_t r) const noexcept { return {src, height, width, y0 + r, left, ahead}; }

            /// A vector column of every row: the masks of the in-plane lanes of the two vectors
            /// lo:hi that start at output column ox, and the byte offset of lane 0 in a row. The
            /// same for all rows, so worked out once per column.
            struct column
            {
                typename direct_avx512<T>::M lo, hi;
                typename direct_avx512<T>::M shift[5];  // the in-plane lanes of window j = 0 .. 4
                std::intptr_t offset;
            };

            column at(std::int64_t ox) const noexcept
            {
                using A = direct_avx512<T>;
                const std::int64_t x0 = ox - left;  // plane column of lane 0
                // lanes l of the vector starting at x0 + first with 0 <= x0 + first + l < width
                const auto lanes_in = [&](std::int64_t first) {
                    const std::int64_t a = std::clamp<std::int64_t>(-(x0 + first), 0, A::lanes);
                    const std::int64_t b = std::clamp<std::int64_t>(width - (x0 + first), 0, A::lanes);
                    return static_cast<typename A::M>(A::mask(b) & ~A::mask(a));
                };
                return {lanes_in(0), lanes_in(A::lanes), {lanes_in(0), lanes_in(1), lanes_in(2), lanes_in(3), lanes_in(4)},
                        static_cast<std::intptr_t>(x0) * static_cast<std::intptr_t>(sizeof(T))};
            }

            /// The KW windows of row t at column c: shifted out of two vectors with valignd, or
            /// (Loaded) each loaded on its own, unaligned, which leaves the vector pipes to the
            /// FMAs (the correlation's choice; the weight gradient's kernel is faster with
            /// valignd). A row outside the plane reads nothing (empty masks) rather than
            /// branching, so that the accumulators of the caller stay in registers.
            template <int KW, bool Loaded>
            XCONV_GEMM_ALWAYS_INLINE void windows(int t, const column& c, typename direct_avx512<T>::V* s) const noexcept
            {
                using A = direct_avx512<T>;
                using M = typename A::M;
                const std::int64_t y = y0 + t;
                const bool in = static_cast<std::uint64_t>(y) < static_cast<std::uint64_t>(height);
                const T* row = src + (in ? y : 0) * width;
                // may lie before the row: only in-plane lanes are read
                const T* p = reinterpret_cast<const T*>(reinterpret_cast<std::uintptr_t>(row) + static_cast<std::uintptr_t>(c.offset));
                if constexpr (Loaded)
                {
                    XCONV_GEMM_UNROLL
                    for (int j = 0; j < KW; ++j)
                    {
                        s[j] = A::load(in ? c.shift[j] : M(0), p + j);
                    }
                }
                else
                {
                    const M lo = in ? c.lo : M(0), hi = in ? c.hi : M(0);
                    direct_avx512_windows<T>(A::load(lo, p), A::load(hi, p + A::lanes), s, std::make_integer_sequence<int, KW>{});
                }
            }
        };

        /// R output rows (row length out_w) = start + KH x KW stride-1 correlation of the rows of
        /// `src` (R + KH - 1 of them), start being out's values (Load) or init.
        template <class T, int KH, int KW, int R, bool Load, class Src>
        void direct_avx512_rows(const Src& src,
                                const typename direct_avx512<T>::V* w,
                                typename direct_avx512<T>::V init,
                                T* out,
                                std::int64_t out_w) noexcept
        {
            using A = direct_avx512<T>;
            using V = typename A::V;
            for (std::int64_t ox = 0; ox < out_w; ox += A::lanes)
            {
                if (src.ahead != nullptr)
                {
                    src.ahead->advance();
                }
                const auto m = A::mask(out_w - ox);
                const auto column = src.at(ox);
                V acc[R];
                XCONV_GEMM_UNROLL
                for (int r = 0; r < R; ++r)
                {
                    acc[r] = Load ? A::load(m, out + r * out_w + ox) : init;
                }
                XCONV_GEMM_UNROLL
                for (int t = 0; t < R + KH - 1; ++t)
                {
                    V s[KW];
                    src.template windows<KW, true>(t, column, s);
                    XCONV_GEMM_UNROLL
                    for (int i = 0; i < KH; ++i)
                    {
                        const int r = t - i;
                        if (r >= 0 && r < R)
                        {
                            XCONV_GEMM_UNROLL
                            for (int j = 0; j < KW; ++j)
                            {
                                acc[r] = A::fma(w[i * KW + j], s[j], acc[r]);
                            }
                        }
                    }
                }
                XCONV_GEMM_UNROLL
                for (int r = 0; r < R; ++r)
                {
                    A::store(out + r * out_w + ox, m, acc[r]);
                }
            }
        }

        /// out [rows, out_w] = start + KH x KW stride-1 correlation of the rows of src (a
        /// direct_plane_rows) with wt.
        template <class T, int KH, int KW, class Src>
        void direct_avx512_plane(const Src& src, const T* wt, const T* init, T* out, std::int64_t rows, std::int64_t out_w) noexcept
        {
            using A = direct_avx512<T>;
            typename A::V w[KH * KW];
            for (int t = 0; t < KH * KW; ++t)
            {
                w[t] = A::set1(wt[t]);
            }
            const typename A::V start = A::set1(init != nullptr ? *init : T(0));
            const auto run = [&](auto load) {
                constexpr bool Load = decltype(load)::value;
                constexpr int R = static_cast<int>(direct_row_block);
                std::int64_t oy = 0;
                for (; oy + R <= rows; oy += R)
                {
                    direct_avx512_rows<T, KH, KW, R, Load>(src.from(oy), w, start, out + oy * out_w, out_w);
                }
                for (; oy + 2 <= rows; oy += 2)
                {
                    direct_avx512_rows<T, KH, KW, 2, Load>(src.from(oy), w, start, out + oy * out_w, out_w);
                }
                for (; oy < rows; ++oy)
                {
                    direct_avx512_rows<T, KH, KW, 1, Load>(src.from(oy), w, start, out + oy * out_w, out_w);
                }
            };
            if (init == nullptr)
            {
                run(std::true_type{});
            }
            else
            {
                run(std::false_type{});
            }
        }

        /// acc[i*KW + j] += R grid rows x the staged rows they read through tap (i, j).
        template <class T, int KH, int KW, int R, class Src>
        void direct_avx512_wgrad_rows(const Src& src, const T* grid, std::int64_t out_w, typename direct_avx512<T>::V* acc_out) noexcept
        {
            using A = direct_avx512<T>;
            using V = typename A::V;
            // In registers for the whole block (through the pointer, every update would be stored).
            V acc[KH * KW];
            for (int t = 0; t < KH * KW; ++t)
            {
                acc[t] = acc_out[t];
            }
            for (std::int64_t ox = 0; ox < out_w; ox += A::lanes)
            {
                if (src.ahead != nullptr)
                {
                    src.ahead->advance();
                }
                const auto m = A::mask(out_w - ox);
                const auto column = src.at(ox);
                V g[R];
                XCONV_GEMM_UNROLL
                for (int r = 0; r < R; ++r)
                {
                    g[r] = A::load(m, grid + r * out_w + ox);
                }
                XCONV_GEMM_UNROLL
                for (int t = 0; t < R + KH - 1; ++t)
                {
                    V s[KW];
                    src.template windows<KW, false>(t, column, s);
                    XCONV_GEMM_UNROLL
                    for (int i = 0; i < KH; ++i)
                    {
                        const int r = t - i;
                        if (r >= 0 && r < R)
                        {
                            XCONV_GEMM_UNROLL
                            for (int j = 0; j < KW; ++j)
                            {
                                acc[i * KW + j] = A::fma(g[r], s[j], acc[i * KW + j]);
                            }
                        }
                    }
                }
            }
            for (int t = 0; t < KH * KW; ++t)
            {
                acc_out[t] = acc[t];
            }
        }

        /// wgrad[i*KW + j] accumulators over `rows` grid rows (stride 1, dilation 1), the plane
        /// read in place (a direct_plane_rows).
        template <class T, int KH, int KW, class Src>
        void direct_avx512_wgrad(const Src& src, const T* grid, std::int64_t rows, std::int64_t out_w, typename direct_avx512<T>::V* acc) noexcept
        {
            constexpr int R = static_cast<int>(direct_row_block);
            std::int64_t oy = 0;
            for (; oy + R <= rows; oy += R)
            {
                direct_avx512_wgrad_rows<T, KH, KW, R>(src.from(oy), grid + oy * out_w, out_w, acc);
            }
            for (; oy < rows; ++oy)
            {
                direct_avx512_wgrad_rows<T, KH, KW, 1>(src.from(oy), grid + oy * out_w, out_w, acc);
            }
        }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

        // ------------------------------------------------------------------ generic kernels

        /// out [rows, out_w] = start + correlation of the staged band q with the kh x kw kernel wt
        /// at any stride and dilation (start: out's values, or *init): one strided axpy per tap and
        /// output row.
        template <class T>
        void direct_plane_generic(const direct_geometry& g, const T* q, const T* wt, const T* init, T* out, std::int64_t rows) noexcept
        {
            for (std::int64_t oy = 0; oy < rows; ++oy)
            {
                T* o = out + oy * g.out_w;
                if (init != nullptr)
                {
                    std::fill(o, o + g.out_w, *init);
                }
                for (std::int64_t i = 0; i < g.kh; ++i)
                {
                    const T* qrow = q + (oy * g.sh + i * g.dh) * g.ld;
                    for (std::int64_t j = 0; j < g.kw; ++j)
                    {
                        const T w = wt[i * g.kw + j];
                        const T* s = qrow + j * g.dw;
                        if (g.sw == 1)
                        {
                            for (std::int64_t ox = 0; ox < g.out_w; ++ox)
                            {
                                o[ox] += w * s[ox];
                            }
                        }
                        else
                        {
                            for (std::int64_t ox = 0; ox < g.out_w; ++ox)
                            {
                                o[ox] += w * s[ox * g.sw];
                            }
                        }
                    }
                }
            }
        }

        /// Partial sums of the generic weight-gradient kernel per tap.
        constexpr std::int64_t direct_wgrad_lanes = 8;

        /// acc[t * stride + l] += partial sums over the band of grid x staged pixels of tap t, any
        /// stride / dilation: eight interleaved partial sums per tap.
        template <class T>
        void direct_wgrad_generic(const direct_geometry& g, const T* q, const T* grid, std::int64_t rows, T* acc, std::int64_t stride) noexcept
        {
            constexpr std::int64_t lanes = direct_wgrad_lanes;
            for (std::int64_t i = 0; i < g.kh; ++i)
            {
                for (std::int64_t j = 0; j < g.kw; ++j)
                {
                    T* a = acc + (i * g.kw + j) * stride;
                    for (std::int64_t oy = 0; oy < rows; ++oy)
                    {
                        const T* gr = grid + oy * g.out_w;
                        const T* s = q + (oy * g.sh + i * g.dh) * g.ld + j * g.dw;
                        std::int64_t ox = 0;
                        if (g.sw == 1)
                        {
                            for (; ox + lanes <= g.out_w; ox += lanes)
                            {
                                for (std::int64_t l = 0; l < lanes; ++l)
                                {
                                    a[l] += gr[ox + l] * s[ox + l];
                                }
                            }
                        }
                        for (; ox < g.out_w; ++ox)
                        {
                            a[0] += gr[ox] * s[ox * g.sw];
                        }
                    }
                }
            }
        }

        // ------------------------------------------------------------------ one plane

        /// out [out_h, out_w] = start + correlation of plane src with the kernel wt (kh*kw values),
        /// start being out's values (init null) or *init, band by band of output rows through the
        /// calling thread's staging buffer. `stream`: write out with non-temporal stores where the
        /// kernels can; `interleave`: stream each block of direct_row_block rows as soon as it is
        /// computed rather than each band (measured: the forward pass gains, backward-data, whose
        /// streamed stores meet the weight gradient's loads, does not).
        template <class T>
        void direct_correlate(const direct_geometry& g,
                              const T* src,
                              const T* wt,
                              const T* init,
                              T* out,
                              std::size_t budget,
                              bool stream = false,
                              bool interleave = false)
        {
            const std::int64_t band = direct_band<T>(g, budget);
            conv_workspace<T>& ws = conv_workspace<T>::local();
            T* q = ws.stage.get(static_cast<std::size_t>(g.rows_for(0, band) * g.ld));
            (void)stream;  // only the AVX-512 kernels stream
            (void)interleave;
            for (std::int64_t oy0 = 0; oy0 < g.out_h; oy0 += band)
            {
                const std::int64_t oy1 = std::min(g.out_h, oy0 + band);
                T* o = out + oy0 * g.out_w;
                const std::int64_t rows = oy1 - oy0;
#if defined(XCONV_DIRECT_AVX512)
                if (g.fast() && ((g.kh == 3 && g.kw == 3) || (g.kh == 5 && g.kw == 5)))
                {
                    // Read straight from the plane (masked loads make the border), no staging.
                    prefetch_cursor& ahead = direct_ahead();
                    // what is left to fetch: over the row blocks x vector columns of this band
                    ahead.spread(direct_avx512_steps<T>(rows, g.out_w));
                    const direct_plane_rows<T> plane_rows{src, g.src_h, g.src_w, oy0 - g.top, g.left, &ahead};
                    const auto plane = [&](T* dst, std::int64_t r0, std::int64_t n) {
                        if (g.kh == 3)
                        {
                            direct_avx512_plane<T, 3, 3>(plane_rows.from(r0), wt, init, dst, n, g.out_w);
                        }
                        else
                        {
                            direct_avx512_plane<T, 5, 5>(plane_rows.from(r0), wt, init, dst, n, g.out_w);
                        }
                    };
                    if (!(stream && init != nullptr))
                    {
                        plane(o, 0, rows);
                        continue;
                    }
                    // With `stream`, the rows are computed in cache and written out with
                    // non-temporal stores: the output is not read first (no read-for-ownership).
                    // Interleaved, the stores of one block drain while the next is computed.
                    const std::int64_t chunk = interleave ? direct_row_block : rows;
                    T* dst = ws.band.get(static_cast<std::size_t>(chunk * g.out_w));
                    for (std::int64_t r0 = 0; r0 < rows; r0 += chunk)
                    {
                        const std::int64_t n = std::min(chunk, rows - r0);
                        plane(dst, r0, n);
                        direct_avx512<T>::stream_copy(dst, o + r0 * g.out_w, n * g.out_w);
                    }
                    streamed_stores_pending() = true;  // fenced when the thread's share of the pass is done
                    continue;
                }
#endif
                direct_ahead().spread(1);
                direct_ahead().advance();
                stage_rows(src, g.src_h, g.src_w, g.top, g.left, oy0 * g.sh, g.rows_for(oy0, oy1), g.q_cols, g.ld, q);
                if (g.fast() && g.kh == 3 && g.kw == 3)
                {
                    direct_plane_fixed<T, 3, 3>(q, g.ld, wt, init, o, rows, g.out_w);
                }
                else if (g.fast() && g.kh == 5 && g.kw == 5)
                {
                    direct_plane_fixed<T, 5, 5>(q, g.ld, wt, init, o, rows, g.out_w);
                }
                else if (g.fast() && g.kh == 1 && g.kw == 1)
                {
                    direct_plane_fixed<T, 1, 1>(q, g.ld, wt, init, o, rows, g.out_w);
                }
                else
                {
                    direct_plane_generic(g, q, wt, init, o, rows);
                }
            }
        }

        /// Partial sums a weight-gradient kernel keeps per tap (room for the widest vector).
        constexpr std::int64_t direct_wgrad_slots = 16;

        /// Which weight-gradient kernel a geometry runs.
        enum class direct_wgrad_kind
        {
            fixed3,
            fixed5,
            generic
        };

        inline direct_wgrad_kind wgrad_kind(const direct_geometry& g) noexcept
        {
            if (g.fast() && g.kh == 3 && g.kw == 3)
            {
                return direct_wgrad_kind::fixed3;
            }
            if (g.fast() && g.kh == 5 && g.kw == 5)
            {
                return direct_wgrad_kind::fixed5;
            }
            return direct_wgrad_kind::generic;
        }

        /// Partial sums of one weight-gradient kernel per tap, in use.
        template <class T>
        std::int64_t wgrad_lanes(direct_wgrad_kind kind) noexcept
        {
            if (kind == direct_wgrad_kind::generic)
            {
                return direct_wgrad_lanes;
            }
#if defined(XCONV_DIRECT_AVX512)
            return direct_avx512<T>::lanes;
#else
            return static_cast<std::int64_t>(direct_vec<T>::lanes);
#endif
        }

        /// partial [taps x direct_wgrad_slots] += the partial sums of grid x the plane pixels each
        /// tap reads: the accumulation of one plane's weight gradient, to be continued over the
        /// batch and reduced once by direct_weight_grad_finish (so neither the band size nor the
        /// way the batch is walked changes the result).
        template <class T>
        void direct_weight_grad(const direct_geometry& g, const T* src, const T* grid, T* partial, std::size_t budget)
        {
            const direct_wgrad_kind kind = wgrad_kind(g);
            constexpr std::int64_t S = direct_wgrad_slots;
#if defined(XCONV_DIRECT_AVX512)
            if (kind != direct_wgrad_kind::generic)
            {
                // Read straight from the plane (masked loads make the border), no staging.
                // The plane's sums start from zero and are then added to the partial sums of the
                // batch: two levels, which round far less over a long batch than one running sum.
                using A = direct_avx512<T>;
                const std::int64_t taps = g.kh * g.kw;
                typename A::V acc[25];
                for (std::int64_t t = 0; t < taps; ++t)
                {
                    acc[t] = A::zero();
                }
                prefetch_cursor& ahead = direct_ahead();
                ahead.spread(direct_avx512_steps<T>(g.out_h, g.out_w));
                const direct_plane_rows<T> plane_rows{src, g.src_h, g.src_w, -g.top, g.left, &ahead};
                if (kind == direct_wgrad_kind::fixed3)
                {
                    direct_avx512_wgrad<T, 3, 3>(plane_rows, grid, g.out_h, g.out_w, acc);
                }
                else
                {
                    direct_avx512_wgrad<T, 5, 5>(plane_rows, grid, g.out_h, g.out_w, acc);
                }
                for (std::int64_t t = 0; t < taps; ++t)
                {
                    A::store(partial + t * S, A::mask(A::lanes), A::add(A::load(partial + t * S), acc[t]));
                }
                return;
            }
#endif
            direct_ahead().spread(1);
            direct_ahead().advance();
            const std::int64_t band = direct_band<T>(g, budget);
            T* q = conv_workspace<T>::local().stage.get(static_cast<std::size_t>(g.rows_for(0, band) * g.ld));
#if !defined(XCONV_DIRECT_AVX512)
            using vec = direct_vec<T>;
            typename vec::type acc[25];
            const auto load = [&](std::int64_t taps) {
                for (std::int64_t t = 0; t < taps; ++t)
                {
                    acc[t] = vec::load(partial + t * S);
                }
            };
            const auto store = [&](std::int64_t taps) {
                for (std::int64_t t = 0; t < taps; ++t)
                {
                    vec::store(partial + t * S, acc[t]);
                }
            };
            if (kind != direct_wgrad_kind::generic)
            {
                load(g.kh * g.kw);
            }
#endif
            for (std::int64_t oy0 = 0; oy0 < g.out_h; oy0 += band)
            {
                const std::int64_t oy1 = std::min(g.out_h, oy0 + band);
                stage_rows(src, g.src_h, g.src_w, g.top, g.left, oy0 * g.sh, g.rows_for(oy0, oy1), g.q_cols, g.ld, q);
                const T* gr = grid + oy0 * g.out_w;
                const std::int64_t rows = oy1 - oy0;
                switch (kind)
                {
#if !defined(XCONV_DIRECT_AVX512)
                    case direct_wgrad_kind::fixed3:
                        direct_wgrad_fixed<T, 3, 3>(q, g.ld, gr, rows, g.out_w, acc);
                        break;
                    case direct_wgrad_kind::fixed5:
                        direct_wgrad_fixed<T, 5, 5>(q, g.ld, gr, rows, g.out_w, acc);
                        break;
#else
                    case direct_wgrad_kind::fixed3:
                    case direct_wgrad_kind::fixed5:
                        break;  // done above
#endif
                    case direct_wgrad_kind::generic:
                        direct_wgrad_generic(g, q, gr, rows, partial, S);
                        break;
                }
            }
#if !defined(XCONV_DIRECT_AVX512)
            if (kind != direct_wgrad_kind::generic)
            {
                store(g.kh * g.kw);
            }
#endif
        }

        /// wgrad[t] += the partial sums of tap t, added in lane order.
        template <class T>
        void direct_weight_grad_finish(const direct_geometry& g, const T* partial, T* wgrad) noexcept
        {
            const std::int64_t lanes = wgrad_lanes<T>(wgrad_kind(g));
            for (std::int64_t t = 0; t < g.kh * g.kw; ++t)
            {
                T s = T(0);
                for (std::int64_t l = 0; l < lanes; ++l)
                {
                    s += partial[t * direct_wgrad_slots + l];
                }
                wgrad[t] += s;
            }
        }

        /// The forward geometry of a window: the grid reads the plane.
        template <class T>
        direct_geometry forward_geometry(const window2d& w) noexcept
        {
            return make_direct_geometry<T>(w.blocks_h, w.blocks_w, w.kernel_h, w.kernel_w, w.stride_h, w.stride_w, w.dil_h,
                                           w.dil_w, w.height, w.width, w.pad_top, w.pad_left);
        }

        // ------------------------------------------------------------------ the three passes

        /// grid [Cg, L] = W [Cg, Cp*taps] (*) plane, plus bias[c] on grid row c when not null.
        template <class T>
        void direct_forward(const window2d& w,
                            std::int64_t Cp,
                            std::int64_t Cg,
                            const T* W,
                            const T* plane,
                            T* grid,
                            const T* bias,
                            std::size_t budget,
                            bool stream = false)
        {
            const std::int64_t L = w.blocks(), P = w.plane(), taps = w.taps();
            const direct_geometry g = forward_geometry<T>(w);
            const T zero = T(0);
            for (std::int64_t cg = 0; cg < Cg; ++cg)
            {
                // The first input channel starts from the bias, the others from the running sum.
                const T* init = bias != nullptr ? bias + cg : &zero;
                for (std::int64_t cp = 0; cp < Cp; ++cp)
                {
                    direct_correlate(g, plane + cp * P, W + (cg * Cp + cp) * taps, cp == 0 ? init : nullptr, grid + cg * L,
                                     budget, stream && Cp == 1, true);
                }
            }
        }

        /// plane += the grid row of one output channel scattered back through one kernel wt
        /// (kh*kw values) at any stride: each block adds wt[i, j] x its value to the pixel tap
        /// (i, j) read.
        template <class T>
        void direct_scatter(const window2d& w, const T* wt, const T* grid, T* plane) noexcept
        {
            const std::int64_t sw = w.stride_w;
            for (std::int64_t i = 0; i < w.kernel_h; ++i)
            {
                const std::int64_t y_off = i * w.dil_h - w.pad_top;
                std::int64_t oy_lo, oy_hi;
                valid_block_range(w.blocks_h, w.stride_h, y_off, w.height, oy_lo, oy_hi);
                for (std::int64_t j = 0; j < w.kernel_w; ++j)
                {
                    const T wt_ij = wt[i * w.kernel_w + j];
                    const std::int64_t x_off = j * w.dil_w - w.pad_left;
                    std::int64_t lo, hi;
                    valid_block_range(w.blocks_w, sw, x_off, w.width, lo, hi);
                    for (std::int64_t oy = oy_lo; oy < oy_hi && lo < hi; ++oy)
                    {
                        const T* g = grid + oy * w.blocks_w;
                        T* d = plane + (oy * w.stride_h + y_off) * w.width + x_off;
                        for (std::int64_t ox = lo; ox < hi; ++ox)
                        {
                            d[ox * sw] += wt_ij * g[ox];
                        }
                    }
                }
            }
        }

        /// plane = W^T [Cp*taps, Cg] x grid scattered back (col2im without the columns), plus
        /// bias[c] on plane channel c when not null.
        template <class T>
        void direct_backward_data(const window2d& w,
                                  std::int64_t Cp,
                                  std::int64_t Cg,
                                  const T* W,
                                  const T* grid,
                                  T* plane,
                                  const T* bias,
                                  std::size_t budget,
                                  bool stream = false)
        {
            const std::int64_t L = w.blocks(), P = w.plane(), taps = w.taps();
            constexpr std::int64_t max_flipped = 64;
            if (w.stride_h == 1 && w.stride_w == 1 && taps <= max_flipped)
            {
                // plane[y, x] = start + sum_ij W[i, j] grid[y + pad_top - i*dil_h, x + pad_left - j*dil_w]:
                // a forward pass over the grid (zero outside) with the kernel flipped.
                const direct_geometry g =
                    make_direct_geometry<T>(w.height, w.width, w.kernel_h, w.kernel_w, 1, 1, w.dil_h, w.dil_w, w.blocks_h,
                                            w.blocks_w, (w.kernel_h - 1) * w.dil_h - w.pad_top,
                                            (w.kernel_w - 1) * w.dil_w - w.pad_left);
                T flipped[max_flipped];
                const T zero = T(0);
                for (std::int64_t cp = 0; cp < Cp; ++cp)
                {
                    for (std::int64_t cg = 0; cg < Cg; ++cg)
                    {
                        const T* wt = W + (cg * Cp + cp) * taps;
                        std::reverse_copy(wt, wt + taps, flipped);
                        const T* init = cg == 0 ? (bias != nullptr ? bias + cp : &zero) : nullptr;
                        direct_correlate(g, grid + cg * L, flipped, init, plane + cp * P, budget, stream && Cg == 1);
                    }
                }
                return;
            }
            for (std::int64_t cp = 0; cp < Cp; ++cp)
            {
                std::fill(plane + cp * P, plane + (cp + 1) * P, bias != nullptr ? bias[cp] : T(0));
            }
            for (std::int64_t cp = 0; cp < Cp; ++cp)
            {
                for (std::int64_t cg = 0; cg < Cg; ++cg)
                {
                    direct_scatter(w, W + (cg * Cp + cp) * taps, grid + cg * L, plane + cp * P);
                }
            }
        }

        /// Elements of the partial sums of one group's weight gradient (Cg x Cp kernels).
        inline std::int64_t direct_wgrad_partial_size(const window2d& w, std::int64_t Cp, std::int64_t Cg) noexcept
        {
            return Cg * Cp * w.taps() * direct_wgrad_slots;
        }

        /// partial += the weight gradient of one sample of a group: grid [Cg, L] x cols(plane)^T,
        /// as partial sums (direct_wgrad_partial_size elements, zero before the first sample).
        template <class T>
        void direct_backward_weight(const window2d& w,
                                    std::int64_t Cp,
                                    std::int64_t Cg,
                                    const T* grid,
                                    const T* plane,
                                    T* partial,
                                    std::size_t budget)
        {
            const std::int64_t L = w.blocks(), P = w.plane(), taps = w.taps();
            const direct_geometry g = forward_geometry<T>(w);
            for (std::int64_t cg = 0; cg < Cg; ++cg)
            {
                for (std::int64_t cp = 0; cp < Cp; ++cp)
                {
                    direct_weight_grad(g, plane + cp * P, grid + cg * L, partial + (cg * Cp + cp) * taps * direct_wgrad_slots,
                                       budget);
                }
            }
        }

        /// Wgrad [Cg, Cp*taps] += the partial sums accumulated over the batch.
        template <class T>
        void direct_backward_weight_finish(const window2d& w, std::int64_t Cp, std::int64_t Cg, const T* partial, T* Wgrad) noexcept
        {
            const direct_geometry g = forward_geometry<T>(w);
            const std::int64_t taps = w.taps();
            for (std::int64_t k = 0; k < Cg * Cp; ++k)
            {
                direct_weight_grad_finish(g, partial + k * taps * direct_wgrad_slots, Wgrad + k * taps);
            }
        }
    }  // namespace detail
}  // namespace xconv

#endif
