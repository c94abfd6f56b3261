// xconv: im2col fused into the GEMM's packing, and the tiled im2col / col2im around it.
//
// The column matrix cols(plane) [Cp*kh*kw, L] is never built whole. Its row k = (c*kh + i)*kw + j
// holds tap (i, j) of channel c for every block (output position) l = oy*blocks_w + ox: the pixel
// (oy*stride_h - pad_top + i*dil_h, ox*stride_w - pad_left + j*dil_w) of plane c, or zero outside
// it. What is built instead, each a small piece at a time:
//   im2col_b_packer     packed B panels of cols (forward: the GEMM's right operand), straight
//                       from the plane;
//   im2col_t_a_packer   packed A panels of cols^T (forward of a narrow output, computed
//                       transposed), through one L1-sized row at a time;
//   im2col_tile         a [rows, positions] block of cols (backward-weights);
//   col2im_tile         the adjoint of im2col on a block of positions (backward-data).
//
// A run of positions along one output row reads one image row at a fixed stride: split_positions
// cuts a range of positions into such runs once, and every row k of the columns is then filled
// run by run, with the valid part of each run found by two clamps (the range of ox whose tap
// lies inside the image along x is precomputed per kernel column j), so no division or bounds
// check is left per element.
#ifndef XCONV_DETAIL_CONV_PACK_HPP
#define XCONV_DETAIL_CONV_PACK_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "../options.hpp"
#include "../unfold.hpp"
#include "conv_parallel.hpp"
#include "conv_scratch.hpp"
#include "gemm_traits.hpp"
#include "gemm_view.hpp"
#include "simd512.hpp"

namespace xconv
{
    namespace detail
    {
        /// Offsets and valid ranges of the kernel taps of a window, computed once per call.
        /// Tap row i reads image row oy*stride_h + y_off[i]; tap column j reads image column
        /// ox*stride_w + x_off[j], inside the image exactly for ox in [x_lo[j], x_hi[j]).
        struct conv_taps
        {
            std::vector<std::int64_t> y_off, x_off, x_lo, x_hi;

            explicit conv_taps(const window2d& w)
                : y_off(static_cast<std::size_t>(w.kernel_h))
                , x_off(static_cast<std::size_t>(w.kernel_w))
                , x_lo(static_cast<std::size_t>(w.kernel_w))
                , x_hi(static_cast<std::size_t>(w.kernel_w))
            {
                for (std::int64_t i = 0; i < w.kernel_h; ++i)
                {
                    y_off[static_cast<std::size_t>(i)] = i * w.dil_h - w.pad_top;
                }
                for (std::int64_t j = 0; j < w.kernel_w; ++j)
                {
                    const auto s = static_cast<std::size_t>(j);
                    x_off[s] = j * w.dil_w - w.pad_left;
                    valid_block_range(w.blocks_w, w.stride_w, x_off[s], w.width, x_lo[s], x_hi[s]);
                }
            }
        };

        /// A run of positions along one output row: blocks (oy, ox) for ox in [ox_begin, ox_end),
        /// stored from offset `dst` of a row of the destination.
        struct conv_segment
        {
            std::int64_t oy, ox_begin, ox_end, dst;
            std::int64_t plane = 0;  // offset of the run's plane from the packer's (batched packing)
        };

        /// Most runs a range of n positions can be cut into.
        inline std::int64_t max_segments(std::int64_t n, std::int64_t blocks_w) noexcept
        {
            return n / blocks_w + 2;
        }

        /// The two users of a thread's run buffer: the passes, and the packers the GEMM calls
        /// while a pass holds its own runs.
        enum class conv_segment_slot
        {
            pass,
            packer
        };

        /// The calling thread's buffer of at least n runs for one of the two users.
        inline conv_segment* conv_segments(conv_segment_slot slot, std::size_t n)
        {
            thread_local std::vector<conv_segment> buffers[2];
            std::vector<conv_segment>& v = buffers[slot == conv_segment_slot::pass ? 0 : 1];
            if (v.size() < n)
            {
                v.resize(n);
            }
            return v.data();
        }

        /// Cuts the positions [l_begin, l_end) (row-major over the grid) into runs along output
        /// rows; returns how many runs were written to segs.
        inline std::size_t split_positions(const window2d& w, std::int64_t l_begin, std::int64_t l_end, conv_segment* segs) noexcept
        {
            std::size_t n = 0;
            std::int64_t oy = l_begin / w.blocks_w;
            std::int64_t ox = l_begin - oy * w.blocks_w;
            std::int64_t pos = 0;
            for (std::int64_t left = l_end - l_begin; left > 0; ++oy, ox = 0)
            {
                const std::int64_t len = std::min(w.blocks_w - ox, left);
                segs[n++] = conv_segment{oy, ox, ox + len, pos};
                pos += len;
                left -= len;
            }
            return n;
        }

        /// Most runs a range of n positions over several samples of L positions can be cut into.
        inline std::int64_t max_segments_batched(std::int64_t n, std::int64_t L, std::int64_t blocks_w) noexcept
        {
            return max_segments(n, blocks_w) + 2 * (n / L + 2);
        }

        /// split_positions over a batch: positions [p_begin, p_end) count L per sample, and the
        /// runs of sample s read the plane at offset s * plane_stride.
        inline std::size_t split_positions_batched(const window2d& w,
                                                   std::int64_t L,
                                                   std::int64_t plane_stride,
                                                   std::int64_t p_begin,
                                                   std::int64_t p_end,
                                                   conv_segment* segs) noexcept
        {
            std::size_t n = 0;
            for (std::int64_t p = p_begin; p < p_end;)
            {
                const std::int64_t sample = p / L, l = p - sample * L;
                const std::int64_t end = std::min(p_end, (sample + 1) * L);
                const std::size_t m = split_positions(w, l, l + (end - p), segs + n);
                for (std::size_t k = n; k < n + m; ++k)
                {
                    segs[k].dst += p - p_begin;
                    segs[k].plane = sample * plane_stride;
                }
                n += m;
                p = end;
            }
            return n;
        }

#if defined(XCONV_HAS_SIMD512)
        /// The lowest min(max(n, 0), 16) (or 8) lanes.
        inline __mmask16 lane_mask16(std::int64_t n) noexcept { return simd512<float>::mask(n); }
        inline __mmask8 lane_mask8(std::int64_t n) noexcept { return simd512<double>::mask(n); }

        /// d[t] = s[t] for t < n; short runs (the rows of narrow images) in one masked vector
        /// operation per 16 floats (8 doubles) with AVX-512.
        template <class T>
        inline void copy_run(const T* s, T* d, std::int64_t n) noexcept
        {
            std::int64_t t = 0;
            if constexpr (std::is_same<T, float>::value)
            {
                for (; t + 16 <= n; t += 16)
                {
                    _mm512_storeu_ps(d + t, _mm512_loadu_ps(s + t));
                }
                if (t < n)
                {
                    const __mmask16 m = lane_mask16(n - t);
                    _mm512_mask_storeu_ps(d + t, m, _mm512_maskz_loadu_ps(m, s + t));
                }
                return;
            }
            else if constexpr (std::is_same<T, double>::value)
            {
                for (; t + 8 <= n; t += 8)
                {
                    _mm512_storeu_pd(d + t, _mm512_loadu_pd(s + t));
                }
                if (t < n)
                {
                    const __mmask8 m = lane_mask8(n - t);
                    _mm512_mask_storeu_pd(d + t, m, _mm512_maskz_loadu_pd(m, s + t));
                }
                return;
            }
            for (; t < n; ++t)
            {
                d[t] = s[t];
            }
        }

        /// d[t] = 0 for t < n, like copy_run.
        template <class T>
        inline void zero_run(T* d, std::int64_t n) noexcept
        {
            std::int64_t t = 0;
            if constexpr (std::is_same<T, float>::value)
            {
                for (; t + 16 <= n; t += 16)
                {
                    _mm512_storeu_ps(d + t, _mm512_setzero_ps());
                }
                if (t < n)
                {
                    _mm512_mask_storeu_ps(d + t, lane_mask16(n - t), _mm512_setzero_ps());
                }
                return;
            }
            else if constexpr (std::is_same<T, double>::value)
            {
                for (; t + 8 <= n; t += 8)
                {
                    _mm512_storeu_pd(d + t, _mm512_setzero_pd());
                }
                if (t < n)
                {
                    _mm512_mask_storeu_pd(d + t, lane_mask8(n - t), _mm512_setzero_pd());
                }
                return;
            }
            for (; t < n; ++t)
            {
                d[t] = T(0);
            }
        }
#else
        template <class T>
        inline void copy_run(const T* s, T* d, std::int64_t n) noexcept
        {
            for (std::int64_t t = 0; t < n; ++t)
            {
                d[t] = s[t];
            }
        }

        template <class T>
        inline void zero_run(T* d, std::int64_t n) noexcept
        {
            for (std::int64_t t = 0; t < n; ++t)
            {
                d[t] = T(0);
            }
        }
#endif

        /// o[t] = row[t * stride] for t < n. With AVX-512, strides 2 and 3 gather 16 floats (8
        /// doubles) at a time with two or three loads and permutes (the last load masked, so
        /// nothing past row[(n - 1) * stride] is touched).
        template <class T>
        inline void strided_copy(const T* row, std::int64_t stride, T* o, std::int64_t n) noexcept
        {
            std::int64_t t = 0;
#if defined(__AVX512F__) && !defined(XCONV_GEMM_NO_SIMD)
            if constexpr (std::is_same<T, float>::value)
            {
                if (stride == 2)
                {
                    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                    for (; t + 16 <= n; t += 16)
                    {
                        const float* r = row + 2 * t;
                        const __m512 v0 = _mm512_loadu_ps(r);
                        const __m512 v1 = _mm512_maskz_loadu_ps(__mmask16(0x7FFF), r + 16);
                        _mm512_storeu_ps(o + t, _mm512_permutex2var_ps(v0, idx, v1));
                    }
                    if (t < n)
                    {
                        // The tail: masked loads of exactly the elements read, a masked store.
                        const float* r = row + 2 * t;
                        const std::int64_t used = 2 * (n - t - 1) + 1;
                        const __m512 v0 = _mm512_maskz_loadu_ps(lane_mask16(used), r);
                        const __m512 v1 = _mm512_maskz_loadu_ps(lane_mask16(used - 16), r + 16);
                        _mm512_mask_storeu_ps(o + t, lane_mask16(n - t), _mm512_permutex2var_ps(v0, idx, v1));
                        return;
                    }
                }
                else if (stride == 3)
                {
                    const __m512i idx1 = _mm512_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0, 0, 0, 0, 0);
                    const __m512i idx2 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 20, 23, 26, 29);
                    for (; t + 16 <= n; t += 16)
                    {
                        const float* r = row + 3 * t;
                        const __m512 v0 = _mm512_loadu_ps(r);
                        const __m512 v1 = _mm512_loadu_ps(r + 16);
                        const __m512 v2 = _mm512_maskz_loadu_ps(__mmask16(0x3FFF), r + 32);
                        const __m512 a = _mm512_permutex2var_ps(v0, idx1, v1);
                        _mm512_storeu_ps(o + t, _mm512_permutex2var_ps(a, idx2, v2));
                    }
                    if (t < n)
                    {
                        const float* r = row + 3 * t;
                        const std::int64_t used = 3 * (n - t - 1) + 1;
                        const __m512 v0 = _mm512_maskz_loadu_ps(lane_mask16(used), r);
                        const __m512 v1 = _mm512_maskz_loadu_ps(lane_mask16(used - 16), r + 16);
                        const __m512 v2 = _mm512_maskz_loadu_ps(lane_mask16(used - 32), r + 32);
                        const __m512 a = _mm512_permutex2var_ps(v0, idx1, v1);
                        _mm512_mask_storeu_ps(o + t, lane_mask16(n - t), _mm512_permutex2var_ps(a, idx2, v2));
                        return;
                    }
                }
            }
            else if constexpr (std::is_same<T, double>::value)
            {
                if (stride == 2)
                {
                    const __m512i idx = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
                    for (; t + 8 <= n; t += 8)
                    {
                        const double* r = row + 2 * t;
                        const __m512d v0 = _mm512_loadu_pd(r);
                        const __m512d v1 = _mm512_maskz_loadu_pd(__mmask8(0x7F), r + 8);
                        _mm512_storeu_pd(o + t, _mm512_permutex2var_pd(v0, idx, v1));
                    }
                    if (t < n)
                    {
                        const double* r = row + 2 * t;
                        const std::int64_t used = 2 * (n - t - 1) + 1;
                        const __m512d v0 = _mm512_maskz_loadu_pd(lane_mask8(used), r);
                        const __m512d v1 = _mm512_maskz_loadu_pd(lane_mask8(used - 8), r + 8);
                        _mm512_mask_storeu_pd(o + t, lane_mask8(n - t), _mm512_permutex2var_pd(v0, idx, v1));
                        return;
                    }
                }
                else if (stride == 3)
                {
                    const __m512i idx1 = _mm512_setr_epi64(0, 3, 6, 9, 12, 15, 0, 0);
                    const __m512i idx2 = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 10, 13);
                    for (; t + 8 <= n; t += 8)
                    {
                        const double* r = row + 3 * t;
                        const __m512d v0 = _mm512_loadu_pd(r);
                        const __m512d v1 = _mm512_loadu_pd(r + 8);
                        const __m512d v2 = _mm512_maskz_loadu_pd(__mmask8(0x3F), r + 16);
                        const __m512d a = _mm512_permutex2var_pd(v0, idx1, v1);
                        _mm512_storeu_pd(o + t, _mm512_permutex2var_pd(a, idx2, v2));
                    }
                    if (t < n)
                    {
                        const double* r = row + 3 * t;
                        const std::int64_t used = 3 * (n - t - 1) + 1;
                        const __m512d v0 = _mm512_maskz_loadu_pd(lane_mask8(used), r);
                        const __m512d v1 = _mm512_maskz_loadu_pd(lane_mask8(used - 8), r + 8);
                        const __m512d v2 = _mm512_maskz_loadu_pd(lane_mask8(used - 16), r + 16);
                        const __m512d a = _mm512_permutex2var_pd(v0, idx1, v1);
                        _mm512_mask_storeu_pd(o + t, lane_mask8(n - t), _mm512_permutex2var_pd(a, idx2, v2));
                        return;
                    }
                }
            }
#endif
            for (; t < n; ++t)
            {
                o[t] = row[t * stride];
            }
        }

        /// Fills one row of columns, tap (i, j) of the channel plane `src`, over the runs segs:
        /// drow[s.dst + t] for the run's t-th position.
        template <class T>
        inline void im2col_row(const T* src,
                               const window2d& w,
                               std::int64_t y_off,
                               std::int64_t x_off,
                               std::int64_t x_lo,
                               std::int64_t x_hi,
                               const conv_segment* segs,
                               std::size_t n_segs,
                               T* drow) noexcept
        {
            const std::int64_t sw = w.stride_w;
            for (std::size_t s = 0; s < n_segs; ++s)
            {
                const conv_segment& sg = segs[s];
                T* d = drow + sg.dst;
                const std::int64_t len = sg.ox_end - sg.ox_begin;
                const std::int64_t y = sg.oy * w.stride_h + y_off;
                if (static_cast<std::uint64_t>(y) >= static_cast<std::uint64_t>(w.height))
                {
                    zero_run(d, len);
                    continue;
                }
                const std::int64_t a = std::clamp(x_lo, sg.ox_begin, sg.ox_end) - sg.ox_begin;
                const std::int64_t b = std::clamp(x_hi, sg.ox_begin + a, sg.ox_end) - sg.ox_begin;
                zero_run(d, a);
                if (b > a)
                {
                    const T* row = src + sg.plane + y * w.width + (sg.ox_begin + a) * sw + x_off;
                    T* o = d + a;
                    const std::int64_t n = b - a;
                    if (sw == 1)
                    {
                        copy_run(row, o, n);
                    }
                    else
                    {
                        strided_copy(row, sw, o, n);
                    }
                }
                zero_run(d + b, len - b);
            }
        }

        /// Walks the rows k = (c*kh + i)*kw + j of the columns in order.
        /// The largest distance, in elements of a plane, between a block's origin and one of its
        /// taps (bounds the indices of a gather).
        inline std::int64_t tap_reach(const conv_taps& taps, const window2d& w) noexcept
        {
            std::int64_t dy = 0, dx = 0;
            for (const std::int64_t v : taps.y_off)
            {
                dy = std::max(dy, v < 0 ? -v : v);
            }
            for (const std::int64_t v : taps.x_off)
            {
                dx = std::max(dx, v < 0 ? -v : v);
            }
            return dy > (std::int64_t(1) << 30) / std::max<std::int64_t>(w.width, 1) ? std::int64_t(1) << 30 : dy * w.width + dx;
        }

        /// The calling thread's buffer of at least n 32-bit indices (the gathering packer's).
        inline std::int32_t* conv_index_buffer(std::size_t n)
        {
            thread_local std::vector<std::int32_t> buffer;
            if (buffer.size() < n)
            {
                buffer.resize(n);
            }
            return buffer.data();
        }

        struct conv_tap_cursor
        {
            std::int64_t c, i, j;

            conv_tap_cursor(const window2d& w, std::int64_t k) noexcept
            {
                const std::int64_t taps = w.taps();
                c = k / taps;
                const std::int64_t r = k - c * taps;
                i = r / w.kernel_w;
                j = r - i * w.kernel_w;
            }

            void next(const window2d& w) noexcept
            {
                if (++j == w.kernel_w)
                {
                    j = 0;
                    if (++i == w.kernel_h)
                    {
                        i = 0;
                        ++c;
                    }
                }
            }
        };

        /// What row `at` of the columns reads on the run sg of im2col_runs (base: the plane at the
        /// run's first position, y0: the run's output row times the stride): the image row y, the
        /// run's positions [a, b) (counted from its first) whose tap lies inside the image along
        /// x, whether any pixel of the run is inside the image, and then the address of the
        /// pixel under the tap of the run's first position, which may lie before the row (only
        /// the positions [a, b) of it are read).
        template <class T>
        struct run_tap
        {
            std::int64_t y, a, b;
            bool inside;
            const T* first;

            run_tap(const T* base, const window2d& w, const conv_taps& taps, const conv_tap_cursor& at, const conv_segment& sg,
                    std::int64_t y0) noexcept
            {
                const auto i = static_cast<std::size_t>(at.i), j = static_cast<std::size_t>(at.j);
                y = y0 + taps.y_off[i];
                a = std::clamp(taps.x_lo[j], sg.ox_begin, sg.ox_end) - sg.ox_begin;
                b = std::clamp(taps.x_hi[j], sg.ox_begin + a, sg.ox_end) - sg.ox_begin;
                inside = static_cast<std::uint64_t>(y) < static_cast<std::uint64_t>(w.height) && b > a;
                first = inside ? reinterpret_cast<const T*>(reinterpret_cast<std::uintptr_t>(base + at.c * w.plane() + y * w.width)
                                                            + static_cast<std::uintptr_t>(taps.x_off[j] * static_cast<std::int64_t>(sizeof(T))))
                               : nullptr;
            }
        };

        /// Rows [k0, k0 + kc) of cols(plane) on the positions of the runs segs: row k - k0 at
        /// dst + (k - k0) * ld, each run at its offset `dst` there. Run by run, all the rows for
        /// each, so that the run's place in the image stays in registers while the taps change.
        template <class T>
        void im2col_runs(const T* plane,
                         const window2d& w,
                         const conv_taps& taps,
                         std::int64_t k0,
                         std::int64_t kc,
                         const conv_segment* segs,
                         std::size_t n_segs,
                         T* dst,
                         std::int64_t ld) noexcept
        {
            const std::int64_t P = w.plane(), sw = w.stride_w;
            for (std::size_t s = 0; s < n_segs; ++s)
            {
                const conv_segment& sg = segs[s];
                const std::int64_t len = sg.ox_end - sg.ox_begin;
                const std::int64_t y0 = sg.oy * w.stride_h;
                const T* base = plane + sg.plane + sg.ox_begin * sw;
                T* dcol = dst + sg.dst;
                conv_tap_cursor at(w, k0);
#if defined(XCONV_HAS_SIMD512)
                if constexpr (std::is_same<T, float>::value || std::is_same<T, double>::value)
                {
                    using V = simd512<T>;
                    if (sw == 1 && len <= V::lanes)
                    {
                        // A run of at most one vector at stride 1 (narrow outputs): each row is one
                        // masked load of the pixels inside the image and one masked store, the
                        // padding's lanes zero.
                        const typename V::M all = V::mask(len);
                        for (std::int64_t k = 0; k < kc; ++k, at.next(w))
                        {
                            T* o = dcol + k * ld;
                            const run_tap<T> t(base, w, taps, at, sg, y0);
                            // lanes a .. b - 1 from the run's first position's pixel on
                            const auto keep = static_cast<typename V::M>(t.inside ? V::mask(t.b) & ~V::mask(t.a) : 0);
                            V::store(o, all, t.inside ? V::load(keep, t.first) : V::zero());
                        }
                        continue;
                    }
                }
                if constexpr (std::is_same<T, float>::value)
                {
                    if (sw == 2 && len <= 16)
                    {
                        // A run of at most one vector at stride 2: each row is two masked loads
                        // of the pixels it reads, one permute that also zeroes the padding, and
                        // one masked store.
                        const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                        const __mmask16 all = lane_mask16(len);
                        for (std::int64_t k = 0; k < kc; ++k, at.next(w))
                        {
                            T* o = dcol + k * ld;
                            const run_tap<T> t(base, w, taps, at, sg, y0);
                            if (!t.inside)
                            {
                                _mm512_mask_storeu_ps(o, all, _mm512_setzero_ps());
                                continue;
                            }
                            const std::int64_t a = t.a, b = t.b;
                            // elements 2a .. 2(b - 1) of the row from the run's first position
                            // (which may lie before the row: only those elements are read); with
                            // b <= len <= 16 the highest is bit 30
                            const std::uint32_t span = ((1u << (2 * (b - a) - 1)) - 1u) << (2 * a);
                            const T* src = t.first;
                            const __m512 v0 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(span), src);
                            const __m512 v1 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(span >> 16), src + 16);
                            const __mmask16 keep = static_cast<__mmask16>(lane_mask16(b) & ~lane_mask16(a));
                            _mm512_mask_storeu_ps(o, all, _mm512_maskz_permutex2var_ps(keep, v0, idx, v1));
                        }
                        continue;
                    }
                }
#endif
                for (std::int64_t k = 0; k < kc; ++k, at.next(w))
                {
                    const auto i = static_cast<std::size_t>(at.i), j = static_cast<std::size_t>(at.j);
                    T* o = dcol + k * ld;
                    const std::int64_t y = y0 + taps.y_off[i];
                    if (static_cast<std::uint64_t>(y) >= static_cast<std::uint64_t>(w.height))
                    {
                        zero_run(o, len);
                        continue;
                    }
                    const std::int64_t a = std::clamp(taps.x_lo[j], sg.ox_begin, sg.ox_end) - sg.ox_begin;
                    const std::int64_t b = std::clamp(taps.x_hi[j], sg.ox_begin + a, sg.ox_end) - sg.ox_begin;
                    zero_run(o, a);
                    if (b > a)
                    {
                        const T* src = base + at.c * P + y * w.width + taps.x_off[j] + a * sw;
                        if (sw == 1)
                        {
                            copy_run(src, o + a, b - a);
                        }
                        else
                        {
                            strided_copy(src, sw, o + a, b - a);
                        }
                    }
                    zero_run(o + b, len - b);
                }
            }
        }

        /// Packed B panels of cols(plane) (see gemm_pack.hpp for the layout): B(k, j) is row k of
        /// the columns at position l_offset + j. Reads the plane directly; no column matrix.
        template <class T, class Arch = gemm_arch>
        struct im2col_b_packer
        {
            const T* plane;
            const window2d* win;
            const conv_taps* taps;
            std::int64_t l_offset;

            void operator()(std::size_t k0, std::size_t kc, std::size_t j0, std::size_t nc, T* dst) const noexcept
            {
                constexpr std::size_t NR = gemm_traits<T, Arch>::nr;
                const window2d& w = *win;
                conv_segment segs[NR + 2];
                for (std::size_t q = 0; q < nc; q += NR)
                {
                    const std::size_t n = std::min(NR, nc - q);
                    const std::int64_t l0 = l_offset + static_cast<std::int64_t>(j0 + q);
                    const std::size_t n_segs = split_positions(w, l0, l0 + static_cast<std::int64_t>(n), segs);
                    T* d = dst + q * kc;
                    im2col_runs(plane, w, *taps, static_cast<std::int64_t>(k0), static_cast<std::int64_t>(kc), segs, n_segs, d,
                                static_cast<std::int64_t>(NR));
                    if (n < NR)
                    {
                        for (std::size_t k = 0; k < kc; ++k)
                        {
                            zero_run(d + k * NR + n, static_cast<std::int64_t>(NR - n));
                        }
                    }
                }
            }
        };

        /// Packed A panels of cols(plane)^T (see gemm_pack.hpp for the layout): A(r, k) is row k of
        /// the columns at position l_offset + r. Each row k of the block is gathered into an
        /// L1-sized row of the calling thread's stage buffer, then dealt out to the mr-row panels.
        /// Output widths below which im2col_t_a_packer and im2col_tile gather (AVX-512).
        constexpr std::int64_t t_a_gather_width = 8;

#if defined(__AVX512F__) && defined(__AVX512VL__) && !defined(XCONV_GEMM_NO_SIMD)
        /// Rows of cols(plane) on the positions [l0, l0 + n) gathered 16 floats (8 doubles) at a
        /// time from per-position offsets computed once, instead of run by run: for short runs
        /// (narrow outputs). Batched: positions count win.blocks() per sample, sample s reading
        /// the plane at offset s * plane_stride (zero: one sample).
        template <class T>
        struct im2col_gather
        {
            static constexpr std::int64_t VL = 64 / static_cast<std::int64_t>(sizeof(T));
            const T* plane;
            const window2d& w;
            const conv_taps& taps;
            std::int64_t n;
            std::int32_t* pos_y;
            std::int32_t* pos_x;
            std::int32_t* pos_off;

            /// Whether the offsets of rows [k0, k0 + kc) fit the 32-bit indices of a gather.
            static bool applies(const window2d& w, const conv_taps& taps, std::int64_t samples, std::int64_t plane_stride,
                                std::int64_t c0, std::int64_t kc) noexcept
            {
                return (std::is_same<T, float>::value || std::is_same<T, double>::value) && w.blocks_w < t_a_gather_width
                       && (samples - 1) * std::max<std::int64_t>(plane_stride, 0) + (c0 + 1 + kc / w.taps()) * w.plane()
                              < (std::int64_t(1) << 30)
                       && w.height < (std::int64_t(1) << 30) && w.width < (std::int64_t(1) << 30)
                       && tap_reach(taps, w) < (std::int64_t(1) << 29);
            }

            im2col_gather(const T* plane_, const window2d& w_, const conv_taps& taps_, std::int64_t l0, std::int64_t n_,
                          std::int64_t plane_stride)
                : plane(plane_), w(w_), taps(taps_), n(n_)
            {
                const std::size_t lanes_total = static_cast<std::size_t>((n + VL - 1) / VL * VL);
                std::int32_t* pos = conv_index_buffer(3 * lanes_total);
                pos_y = pos;
                pos_x = pos + lanes_total;
                pos_off = pos + 2 * lanes_total;
                for (std::int64_t r = 0; r < n; ++r)
                {
                    const std::int64_t l = l0 + r;
                    const std::int64_t sample = plane_stride != 0 ? l / w.blocks() : 0;
                    const std::int64_t ll = l - sample * (plane_stride != 0 ? w.blocks() : 0);
                    const std::int64_t oy = ll / w.blocks_w, ox = ll - oy * w.blocks_w;
                    pos_y[r] = static_cast<std::int32_t>(oy * w.stride_h);
                    pos_x[r] = static_cast<std::int32_t>(ox * w.stride_w);
                    pos_off[r] = static_cast<std::int32_t>(sample * plane_stride + oy * w.stride_h * w.width + ox * w.stride_w);
                }
                for (std::int64_t r = n; r < static_cast<std::int64_t>(lanes_total); ++r)
                {
                    pos_y[r] = -(std::int32_t(1) << 30);  // outside the image whatever the tap: masked off
                    pos_x[r] = 0;
                    pos_off[r] = 0;
                }
            }

            /// out[0 .. n) = row `at` of the columns; with `whole`, out has room for n rounded up
            /// to whole vectors (the lanes past n get zeros), else nothing past n is written.
            void row(const conv_tap_cursor& at, T* out, bool whole) const noexcept
            {
                const auto i = static_cast<std::size_t>(at.i), j = static_cast<std::size_t>(at.j);
                const std::int64_t dy = taps.y_off[i], dx = taps.x_off[j];
                const std::int64_t base = at.c * w.plane() + dy * w.width + dx;
                for (std::int64_t r = 0; r < n; r += VL)
                {
                    const std::int64_t left = n - r;
                    if constexpr (std::is_same<T, float>::value)
                    {
                        const __m512i y = _mm512_add_epi32(_mm512_loadu_si512(pos_y + r), _mm512_set1_epi32(static_cast<std::int32_t>(dy)));
                        const __m512i x = _mm512_add_epi32(_mm512_loadu_si512(pos_x + r), _mm512_set1_epi32(static_cast<std::int32_t>(dx)));
                        const __mmask16 inside = _mm512_cmplt_epu32_mask(y, _mm512_set1_epi32(static_cast<std::int32_t>(w.height)))
                                                 & _mm512_cmplt_epu32_mask(x, _mm512_set1_epi32(static_cast<std::int32_t>(w.width)));
                        const __m512i idx = _mm512_add_epi32(_mm512_loadu_si512(pos_off + r), _mm512_set1_epi32(static_cast<std::int32_t>(base)));
                        const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), inside, idx, plane, 4);
                        const __mmask16 keep = lane_mask16(whole ? VL : left);
                        _mm512_mask_storeu_ps(out + r, keep, v);
                    }
                    else
                    {
                        const __m256i y = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pos_y + r)),
                                                           _mm256_set1_epi32(static_cast<std::int32_t>(dy)));
                        const __m256i x = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pos_x + r)),
                                                           _mm256_set1_epi32(static_cast<std::int32_t>(dx)));
                        const __mmask8 inside = _mm256_cmplt_epu32_mask(y, _mm256_set1_epi32(static_cast<std::int32_t>(w.height)))
                                                & _mm256_cmplt_epu32_mask(x, _mm256_set1_epi32(static_cast<std::int32_t>(w.width)));
                        const __m256i idx = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pos_off + r)),
                                                             _mm256_set1_epi32(static_cast<std::int32_t>(base)));
                        const __m512d v = _mm512_mask_i32gather_pd(_mm512_setzero_pd(), inside, idx, plane, 8);
                        const __mmask8 keep = lane_mask8(whole ? VL : left);
                        _mm512_mask_storeu_pd(out + r, keep, v);
                    }
                }
            }
        };
#endif

        /// Rows of cols^T im2col_t_a_packer builds at a time (without gathers).
        constexpr std::size_t t_a_rows_per_block = 16;

        template <class T, class Arch = gemm_arch>
        struct im2col_t_a_packer
        {
            const T* plane;
            const window2d* win;
            const conv_taps* taps;
            std::int64_t l_offset;
            /// Batched packing: positions count win->blocks() per sample, sample s reading the
            /// plane at offset s * plane_stride. Zero: a single sample.
            std::int64_t plane_stride = 0;

            void operator()(std::size_t i0, std::size_t mc, std::size_t k0, std::size_t kc, T* dst) const
            {
                constexpr std::size_t MR = gemm_traits<T, Arch>::mr;
                const window2d& w = *win;
                const std::int64_t P = w.plane();
                const std::int64_t l0 = l_offset + static_cast<std::int64_t>(i0);
                const std::size_t panels = (mc + MR - 1) / MR;
                const auto imc = static_cast<std::int64_t>(mc);
                const auto seg_cap = static_cast<std::size_t>(
                    plane_stride != 0 ? max_segments_batched(imc, w.blocks(), w.blocks_w) : max_segments(imc, w.blocks_w));
                // One row of the block, padded to whole panels.
                const std::size_t row_len = panels * MR;
                T* row = conv_workspace<T>::local().stage.get(t_a_rows_per_block * row_len + 64 / sizeof(T));
                conv_segment* segs = conv_segments(conv_segment_slot::packer, seg_cap);
                const std::size_t n_segs = plane_stride != 0
                                               ? split_positions_batched(w, w.blocks(), plane_stride, l0, l0 + imc, segs)
                                               : split_positions(w, l0, l0 + imc, segs);
                std::fill(row + mc, row + row_len, T(0));
                conv_tap_cursor at(w, static_cast<std::int64_t>(k0));
#if defined(__AVX512F__) && defined(__AVX512VL__) && !defined(XCONV_GEMM_NO_SIMD)
                // Short runs (narrow images): each row is gathered 16 floats (8 doubles) at a time,
                // from per-position offsets computed once, instead of run by run.
                const std::int64_t samples = plane_stride != 0 ? (l0 + imc - 1) / w.blocks() + 1 : 1;
                if (im2col_gather<T>::applies(w, *taps, samples, plane_stride, at.c, static_cast<std::int64_t>(kc)))
                {
                    // rows of whole panels (row_len): the lanes past mc get zeros
                    const im2col_gather<T> gather(plane, w, *taps, l0, imc, plane_stride);
                    for (std::size_t k = 0; k < kc; ++k, at.next(w))
                    {
                        gather.row(at, row, true);
                        T* d = dst + k * MR;
                        for (std::size_t p = 0; p < panels; ++p)
                        {
                            copy_run(row + p * MR, d + p * MR * kc, static_cast<std::int64_t>(MR));
                        }
                    }
                    return;
                }
#endif
                // Blocks of rows built run by run (im2col_runs), then dealt out row by row.
                (void)P;
                for (std::size_t r = 1; r < t_a_rows_per_block; ++r)
                {
                    std::fill(row + r * row_len + mc, row + (r + 1) * row_len, T(0));
                }
                for (std::size_t kb = 0; kb < kc; kb += t_a_rows_per_block)
                {
                    const std::size_t nk = std::min<std::size_t>(t_a_rows_per_block, kc - kb);
                    im2col_runs(plane, w, *taps, static_cast<std::int64_t>(k0 + kb), static_cast<std::int64_t>(nk), segs, n_segs,
                                row, static_cast<std::int64_t>(row_len));
                    for (std::size_t kk = 0; kk < nk; ++kk)
                    {
                        const T* src = row + kk * row_len;
                        T* d = dst + (kb + kk) * MR;
                        for (std::size_t p = 0; p < panels; ++p)
                        {
                            copy_run(src + p * MR, d + p * MR * kc, static_cast<std::int64_t>(MR));
                        }
                    }
                }
            }
        };

        /// Rows [k_begin, k_end) and positions [l_begin, l_end) of cols(plane), into dst with
        /// leading dimension ld: dst[(k - k_begin) * ld + (l - l_begin)]. segs must hold
        /// max_segments(l_end - l_begin, blocks_w) runs.
        template <class T>
        void im2col_tile(const T* plane,
                         const window2d& w,
                         const conv_taps& taps,
                         std::int64_t k_begin,
                         std::int64_t k_end,
                         std::int64_t l_begin,
                         std::int64_t l_end,
                         conv_segment* segs,
                         T* dst,
                         std::int64_t ld) noexcept
        {
#if defined(__AVX512F__) && defined(__AVX512VL__) && !defined(XCONV_GEMM_NO_SIMD)
            conv_tap_cursor at(w, k_begin);
            if (im2col_gather<T>::applies(w, taps, 1, 0, at.c, k_end - k_begin))
            {
                const im2col_gather<T> gather(plane, w, taps, l_begin, l_end - l_begin, 0);
                for (std::int64_t k = k_begin; k < k_end; ++k, at.next(w))
                {
                    gather.row(at, dst + (k - k_begin) * ld, false);
                }
                return;
            }
#endif
            const std::size_t n_segs = split_positions(w, l_begin, l_end, segs);
            im2col_runs(plane, w, taps, k_begin, k_end - k_begin, segs, n_segs, dst, ld);
        }

        /// Two runs of n values interleaved into 2n contiguous ones: d[2e] += a[e] and d[2e + 1]
        /// += b[e] when `accumulate`, else d[2e] = a[e] + value and d[2e + 1] = b[e] + value (one
        /// addition per element either way). With AVX-512, 16 (8) positions a time through two
        /// two-source permutes and whole-vector stores.
        template <class T>
        void interleave_pairs(const T* a, const T* b, std::int64_t n, T* d, bool accumulate, T value) noexcept
        {
            std::int64_t e = 0;
#if defined(XCONV_HAS_SIMD512)
            using S = simd512<T>;
            const __m512i lo = S::interleave(false), hi = S::interleave(true);
            const typename S::V v = S::set1(value);
            for (; e + S::lanes <= n; e += S::lanes)
            {
                const typename S::V a0 = S::loadu(a + e), b0 = S::loadu(b + e);
                const typename S::V x0 = S::permute2(a0, lo, b0), x1 = S::permute2(a0, hi, b0);
                T* o = d + 2 * e;
                S::storeu(o, accumulate ? S::add(S::loadu(o), x0) : S::add(x0, v));
                S::storeu(o + S::lanes, accumulate ? S::add(S::loadu(o + S::lanes), x1) : S::add(x1, v));
            }
#endif
            for (; e < n; ++e)
            {
                d[2 * e] = accumulate ? d[2 * e] + a[e] : a[e] + value;
                d[2 * e + 1] = accumulate ? d[2 * e + 1] + b[e] : b[e] + value;
            }
        }

        /// col2im_tile's interleaved additions: largest stride.
        constexpr std::int64_t col2im_max_interleave_stride = 8;

        /// What col2im_tile does to a plane before adding: nothing (it holds the sums of earlier
        /// tiles), or set it to each channel's bias (zero without one) first, the first time a
        /// pass writes the channels: each channel is then set and summed in one go while it is in
        /// cache, rather than all set in a pass of their own and read back from further away.
        template <class T>
        struct col2im_start
        {
            bool set = false;
            const T* bias = nullptr;  // bias[c] for channel c, or zeros when null
        };

        /// col2im on the positions of the runs segs (from split_positions) and the channels
        /// [c_begin, c_end): adds element (k, t) of the tile, at tile[k * ks + t * ls] for row
        /// k = (c - c_begin)*kh*kw + i*kw + j and the t-th position of the runs, onto the pixel of
        /// plane c it was read from, in parallel over the channels when `parallel` is set; first
        /// sets the planes of the channels when start.set (see col2im_start).
        ///
        /// The taps of a channel are visited last to first, so that every pixel receives its
        /// contributions in increasing order of position l: the sum is the same whatever the
        /// tiling of the positions (and the channel split), bit for bit.
        template <class T>
        void col2im_tile(const T* tile,
                         std::int64_t ks,
                         std::int64_t ls,
                         const window2d& w,
                         const conv_taps& taps,
                         std::int64_t c_begin,
                         std::int64_t c_end,
                         const conv_segment* segs,
                         std::size_t n_segs,
                         T* plane,
                         bool parallel,
                         col2im_start<T> start = {})
        {
            const std::int64_t P = w.plane(), sw = w.stride_w, kw = w.kernel_w, kh = w.kernel_h;
            // Stride 2 without dilation: taps j and j - 1 write alternate pixels of the same run,
            // so they are added as one interleaved, contiguous (vectorisable) stream. Each pixel
            // still receives its contributions in the same order.
            const bool pairs = sw == 2 && w.dil_w == 1 && ls == 1;
#if defined(__AVX512F__) && !defined(XCONV_GEMM_NO_SIMD)
            // Strides 3 to 8 whose taps along x all land on different pixels of a stride period
            // ((kw - 1) * dil_w < stride): a run's taps are interleaved into one contiguous stream
            // in a buffer and added with masked vector additions, each pixel still receiving
            // exactly the contributions, in the same order, as tap by tap.
            const bool interleave = !pairs && ls == 1 && sw >= 3 && sw <= col2im_max_interleave_stride && kw >= 2
                                    && (kw - 1) * w.dil_w < sw && (std::is_same<T, float>::value || std::is_same<T, double>::value);
            using simd = simd512<T>;
            constexpr std::int64_t VL = simd::lanes;
            // For a vector of the interleaved stream that starts at offset r (mod sw) of a stride
            // period: the lanes that receive a tap (phase_mask), those of tap j (tap_mask[r][j]),
            // and the position of each lane's value relative to the vector's first (perm), plus
            // VL in the lanes of tap 1: a two-source permute then picks both taps of a 2-wide
            // kernel at once, and the one-source permutes of wider kernels ignore that bit.
            std::uint32_t phase_mask[col2im_max_interleave_stride] = {};
            std::uint32_t tap_mask[col2im_max_interleave_stride][col2im_max_interleave_stride] = {};
            alignas(64) typename simd::index perm[col2im_max_interleave_stride][VL] = {};
            if (interleave)
            {
                for (std::int64_t r = 0; r < sw; ++r)
                {
                    for (std::int64_t l = 0; l < VL; ++l)
                    {
                        const std::int64_t o = (r + l) % sw;
                        const bool second = o == w.dil_w;  // lane of tap 1
                        perm[r][l] = static_cast<typename simd::index>((r + l) / sw + (second ? VL : 0));
                        if (o % w.dil_w == 0 && o / w.dil_w < kw)
                        {
                            phase_mask[r] |= std::uint32_t(1) << l;
                            tap_mask[r][o / w.dil_w] |= std::uint32_t(1) << l;
                        }
                    }
                }
            }
#endif
            // Tasks: channels, and bands of rows of each when there are few channels for the
            // threads (a task adds only the contributions to its rows, in the same order).
            const std::int64_t channels = c_end - c_begin;
            std::int64_t bands = 1;
            if (parallel)
            {
                const std::int64_t threads = conv_threads();
                if (threads > 1 && channels < 4 * threads)
                {
                    bands = std::clamp<std::int64_t>((4 * threads + channels - 1) / channels, 1, w.height);
                }
            }
#if defined(__AVX512F__) && !defined(XCONV_GEMM_NO_SIMD)
            // The positions of each run where every tap is inside the image (the same for every
            // channel and kernel row), computed once.
            std::vector<std::int64_t> run_range(interleave ? 2 * n_segs : 0);
            const std::int64_t step_r = VL % sw, step_e = VL / sw;  // t0 += VL
            for (std::size_t s = 0; interleave && s < n_segs; ++s)
            {
                std::int64_t a = segs[s].ox_begin, b = segs[s].ox_end;
                for (std::int64_t j = 0; j < kw; ++j)
                {
                    a = std::max(a, taps.x_lo[static_cast<std::size_t>(j)]);
                    b = std::min(b, taps.x_hi[static_cast<std::size_t>(j)]);
                }
                run_range[2 * s] = a;
                run_range[2 * s + 1] = std::max(a, b);
            }
#endif
            conv_parallel_for(channels * bands, parallel, [&](std::int64_t t) {
                const std::int64_t c = c_begin + t / bands, band = t % bands;
                const std::int64_t y_lo = w.height * band / bands, y_hi = w.height * (band + 1) / bands;
                T* dst_plane = plane + c * P;
                if (start.set)
                {
                    std::fill(dst_plane + y_lo * w.width, dst_plane + y_hi * w.width, start.bias != nullptr ? start.bias[c] : T(0));
                }
                for (std::int64_t i = kh - 1; i >= 0; --i)
                {
                    const std::int64_t y_off = taps.y_off[static_cast<std::size_t>(i)];
                    const T* row_taps = tile + ((c - c_begin) * kh + i) * kw * ks;
                    // Adds tap j over positions [lo, hi) of run sg (row y of the plane).
                    const auto single = [&](std::int64_t j, const conv_segment& sg, std::int64_t y, std::int64_t lo,
                                            std::int64_t hi) {
                        if (hi <= lo)
                        {
                            return;
                        }
                        T* d = dst_plane + y * w.width + lo * sw + taps.x_off[static_cast<std::size_t>(j)];
                        const T* v = row_taps + j * ks + (sg.dst + lo - sg.ox_begin) * ls;
                        const std::int64_t n = hi - lo;
                        if (sw == 1 && ls == 1)
                        {
                            for (std::int64_t e = 0; e < n; ++e)
                            {
                                d[e] += v[e];
                            }
                        }
                        else
                        {
                            for (std::int64_t e = 0; e < n; ++e)
                            {
                                d[e * sw] += v[e * ls];
                            }
                        }
                    };
#if defined(__AVX512F__) && !defined(XCONV_GEMM_NO_SIMD)
                    if (interleave)
                    {
                        for (std::size_t s = 0; s < n_segs; ++s)
                        {
                            const conv_segment& sg = segs[s];
                            const std::int64_t y = sg.oy * w.stride_h + y_off;
                            if (y < y_lo || y >= y_hi)
                            {
                                continue;
                            }
                            // The positions where every tap is inside the image; the rest tap by tap.
                            const std::int64_t a = run_range[2 * s], b = run_range[2 * s + 1];
                            if (a != sg.ox_begin || b != sg.ox_end)
                            {
                                for (std::int64_t j = kw - 1; j >= 0; --j)
                                {
                                    const auto js = static_cast<std::size_t>(j);
                                    const std::int64_t aj = std::clamp(taps.x_lo[js], sg.ox_begin, sg.ox_end);
                                    const std::int64_t bj = std::clamp(taps.x_hi[js], aj, sg.ox_end);
                                    single(j, sg, y, aj, std::min(bj, a));
                                    single(j, sg, y, std::max(aj, b), bj);
                                }
                            }
                            if (b <= a)
                            {
                                continue;
                            }
                            // Vector t0 of the stream: lane l is pixel t0 + l of the run, i.e.
                            // tap (t0 + l) % sw of position (t0 + l) / sw, gathered from the taps'
                            // rows with one permute each.
                            const std::int64_t n = b - a;
                            const std::int64_t span = (n - 1) * sw + (kw - 1) * w.dil_w + 1;
                            const T* v0 = row_taps + (sg.dst + a - sg.ox_begin);
                            T* d = dst_plane + y * w.width + a * sw + taps.x_off[0];
                            // t0 = eb * sw + r0, stepped without dividing
                            std::int64_t r0 = 0, eb = 0;
                            for (std::int64_t t0 = 0; t0 < span; t0 += VL)
                            {
                                const std::uint32_t m =
                                    phase_mask[r0] & (span - t0 >= VL ? ~std::uint32_t(0) : (std::uint32_t(1) << (span - t0)) - 1u);
                                const __m512i idx = _mm512_load_si512(perm[r0]);
                                const typename simd::M valid = simd::mask(n - eb);
                                typename simd::V acc;
                                if (kw == 2)
                                {
                                    acc = simd::permute2(static_cast<typename simd::M>(phase_mask[r0]), simd::load(valid, v0 + eb), idx,
                                                         simd::load(valid, v0 + ks + eb));
                                }
                                else
                                {
                                    acc = simd::zero();
                                    for (std::int64_t j = 0; j < kw; ++j)
                                    {
                                        acc = simd::permute(acc, static_cast<typename simd::M>(tap_mask[r0][j]), idx, simd::load(valid, v0 + j * ks + eb));
                                    }
                                }
                                const auto k = static_cast<typename simd::M>(m);
                                simd::store(d + t0, k, simd::add(simd::load(k, d + t0), acc));
                                r0 += step_r;
                                eb += step_e;
                                if (r0 >= sw)
                                {
                                    r0 -= sw;
                                    ++eb;
                                }
                            }
                        }
                        continue;
                    }
#endif
                    for (std::int64_t j = kw - 1; j >= 0;)
                    {
                        const auto js = static_cast<std::size_t>(j);
                        const bool pair = pairs && j >= 1;
                        for (std::size_t s = 0; s < n_segs; ++s)
                        {
                            const conv_segment& sg = segs[s];
                            const std::int64_t y = sg.oy * w.stride_h + y_off;
                            if (y < y_lo || y >= y_hi)
                            {
                                continue;
                            }
                            const std::int64_t a1 = std::clamp(taps.x_lo[js], sg.ox_begin, sg.ox_end);
                            const std::int64_t b1 = std::clamp(taps.x_hi[js], a1, sg.ox_end);
                            if (!pair)
                            {
                                single(j, sg, y, a1, b1);
                                continue;
                            }
                            const std::int64_t a0 = std::clamp(taps.x_lo[js - 1], sg.ox_begin, sg.ox_end);
                            const std::int64_t b0 = std::clamp(taps.x_hi[js - 1], a0, sg.ox_end);
                            const std::int64_t a = std::max(a0, a1), b = std::max(a, std::min(b0, b1));
                            // Outside the common range, one tap at a time.
                            single(j, sg, y, a1, std::min(b1, a));
                            single(j, sg, y, std::max(a1, b), b1);
                            single(j - 1, sg, y, a0, std::min(b0, a));
                            single(j - 1, sg, y, std::max(a0, b), b0);
                            if (b > a)
                            {
                                // Tap j - 1 lands one pixel left of tap j: d[2e] from j - 1, d[2e + 1] from j.
                                interleave_pairs(row_taps + (j - 1) * ks + (sg.dst + a - sg.ox_begin),
                                                 row_taps + j * ks + (sg.dst + a - sg.ox_begin), b - a,
                                                 dst_plane + y * w.width + a * 2 + taps.x_off[js - 1], true, T(0));
                            }
                        }
                        j -= pair ? 2 : 1;
                    }
                }
            });
        }

        /// Epilogue adding bias[i] to row i of C, a row of contiguous elements at a time when C has
        /// unit column stride (so that the addition vectorises).
        template <class T>
        struct conv_bias_epilogue
        {
            const T* bias;

            void operator()(std::size_t i0, std::size_t, std::size_t m, std::size_t n, matrix_view<T> c) const noexcept
            {
                for (std::size_t r = 0; r < m; ++r)
                {
                    const T b = bias[i0 + r];
                    T* row = c.data + static_cast<std::ptrdiff_t>(r) * c.rs;
                    if (c.cs == 1)
                    {
                        for (std::size_t j = 0; j < n; ++j)
                        {
                            row[j] += b;
                        }
                    }
                    else
                    {
                        for (std::size_t j = 0; j < n; ++j)
                        {
                            row[static_cast<std::ptrdiff_t>(j) * c.cs] += b;
                        }
                    }
                }
            }
        };

        /// Epilogue of a forward GEMM computed transposed, C^T [positions, channels] in a scratch
        /// tile: stores each finished tile into the row-major output grid [channels, L] at
        /// positions l_offset + ..., adding the channel's bias when there is one.
        template <class T>
        struct transposed_store_epilogue
        {
            T* grid;
            std::int64_t L;
            std::int64_t l_offset;
            const T* bias;
            /// Batched: rows count L per sample, sample s stored at grid + s * grid_stride. Zero:
            /// a single sample.
            std::int64_t grid_stride = 0;

            void operator()(std::size_t i0, std::size_t j0, std::size_t m, std::size_t n, matrix_view<T> c) const noexcept
            {
                if (grid_stride != 0)
                {
                    for (std::size_t r = 0; r < m; ++r)
                    {
                        const std::int64_t p = l_offset + static_cast<std::int64_t>(i0 + r);
                        const std::int64_t sample = p / L;
                        T* o = grid + sample * grid_stride + (p - sample * L);
                        for (std::size_t j = 0; j < n; ++j)
                        {
                            const T v = c(static_cast<std::ptrdiff_t>(r), static_cast<std::ptrdiff_t>(j));
                            o[static_cast<std::int64_t>(j0 + j) * L] = bias != nullptr ? v + bias[j0 + j] : v;
                        }
                    }
                    return;
                }
                for (std::size_t j = 0; j < n; ++j)
                {
                    T* o = grid + static_cast<std::int64_t>(j0 + j) * L + l_offset + static_cast<std::int64_t>(i0);
                    const auto jj = static_cast<std::ptrdiff_t>(j);
                    if (bias != nullptr)
                    {
                        const T b = bias[j0 + j];
                        for (std::size_t r = 0; r < m; ++r)
                        {
                            o[r] = c(static_cast<std::ptrdiff_t>(r), jj) + b;
                        }
                    }
                    else
                    {
                        for (std::size_t r = 0; r < m; ++r)
                        {
                            o[r] = c(static_cast<std::ptrdiff_t>(r), jj);
                        }
                    }
                }
            }
        };
    }  // namespace detail
}  // namespace xconv

#endif
