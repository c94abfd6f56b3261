// xconv: the forward convolution and the weight gradient as implicit GEMMs, the im2col matrix read
// where it lies.
//
// For one group, over the output positions q of a tile of samples and rows:
//
//   C^T [q, Cg] = cols^T [q, K] x W^T [K, Cg]        K = Cp * kh * kw
//
// Element (q, k) of cols^T, k = (c, i, j), is the input pixel under tap (i, j) of channel c in
// position q's window. In a plane with a zero border wide enough for every window (a padded copy
// of the rows the tile reads, or the input itself when nothing is padded), that pixel is at
//
//   base(q) + off(k),   base(q) = oh * sh * row + ow * sw,   off(k) = c * plane + i * dh * row + j * dw
//
// so the register tile's implicit_mr positions are as many pointers and its depth index one
// table of offsets: the micro-kernel broadcasts A straight from the image, and no im2col copy and
// no A packing is made. Only the weight is packed (W^T as the GEMM's B panels, once per call
// when it serves several samples). The tile of C^T stays in cache over the depth blocks and is stored back
// transposed, plus the bias, when its last block is done.
//
// Every element of C is the GEMM's one fma chain over k = 0 .. K-1 (the contract of
// gemm_kernel.hpp), with the border's zeros where im2col would have put them: the result is bit
// for bit that of the packed paths, whatever the tiles, the cap or the threads.
//
// The weight gradient runs on the same micro-kernel with the roles turned around
// (implicit_backward_weight, at the end of this file): Wgrad^T = cols x grid^T, the register
// tile's rows being columns k of the weight (pointers to their taps' pixels) and its depth the
// positions q (the table base(q)).
#ifndef XCONV_DETAIL_CONV_IMPLICIT_HPP
#define XCONV_DETAIL_CONV_IMPLICIT_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#if defined(XCONV_USE_OPENMP)
#include <omp.h>
#endif

#include "../options.hpp"
#include "aligned_buffer.hpp"
#include "conv_pack.hpp"
#include "conv_parallel.hpp"
#include "conv_scratch.hpp"
#include "gemm_driver.hpp"
#include "gemm_kernel.hpp"
#include "gemm_pack.hpp"
#include "gemm_traits.hpp"
#include "gemm_transpose.hpp"
#include "gemm_view.hpp"
#include "simd512.hpp"

namespace xconv
{
    namespace detail
    {
        /// Taps ahead at which the micro-kernel prefetches its pixels; the offset table has as
        /// many entries (zeros) past its end. Measured on the suite: 1 x 1 layers +16% (float) and
        /// +21% (double), the 7 x 7 stem +9% (double), 3 x 3 layers unchanged.
        constexpr std::size_t implicit_prefetch_distance = 24;

        /// One implicit_mr x (NV * lanes) tile of C^T (gemm_traits.hpp): row r of A is read at
        /// rows[r][off[k]] (see the top of this file; off has implicit_prefetch_distance readable
        /// entries past kc), B is a packed micro-panel (gemm_pack.hpp); otherwise the contract of
        /// gemm_microkernel, with M = implicit_mr.
        template <class T, class Arch, std::size_t NV>
        inline void implicit_microkernel(std::size_t kc,
                                         const T* const* rows,
                                         const std::int32_t* XCONV_GEMM_RESTRICT off,
                                         const T* XCONV_GEMM_RESTRICT b,
                                         T* XCONV_GEMM_RESTRICT c,
                                         std::ptrdiff_t ldc,
                                         bool load_c) noexcept
        {
            using traits = gemm_traits<T, Arch>;
            constexpr std::size_t MR = traits::implicit_mr;
            constexpr std::size_t NR = traits::nr;

            const T* p[MR];
            XCONV_GEMM_UNROLL
            for (std::size_t r = 0; r < MR; ++r)
            {
                p[r] = rows[r];
            }
            gemm_register_tile<T, Arch, MR, NV> tile;
            tile.start(c, ldc, load_c);
            for (std::size_t k = 0; k < kc; ++k)
            {
                const std::ptrdiff_t o = off[k];
                {
                    // The pixels of a tap further on: the hardware cannot foresee this pattern,
                    // and in place (1 x 1 layers) they come from memory.
                    const std::ptrdiff_t ahead = off[k + implicit_prefetch_distance];
                    XCONV_GEMM_PREFETCH_READ(p[0] + ahead);
                    XCONV_GEMM_PREFETCH_READ(p[MR - 1] + ahead + 64 / sizeof(T));
                }
                tile.update([&p, o](std::size_t r) { return p[r][o]; }, b);
                b += NR;
            }
            tile.store(c, ldc);
        }

        template <class T>
        using implicit_microkernel_fn = void (*)(std::size_t, const T* const*, const std::int32_t*, const T*, T*, std::ptrdiff_t,
                                                 bool);

        /// implicit_microkernel for nv = 1 .. traits::nv vectors of columns.
        template <class T, class Arch>
        struct implicit_microkernel_table
        {
            template <std::size_t... NVs>
            static constexpr auto make(std::index_sequence<NVs...>)
            {
                return std::array<implicit_microkernel_fn<T>, sizeof...(NVs)>{&implicit_microkernel<T, Arch, NVs + 1>...};
            }

            static implicit_microkernel_fn<T> get(std::size_t nv) noexcept
            {
                static constexpr auto table = make(std::make_index_sequence<gemm_traits<T, Arch>::nv>{});
                return table[nv - 1];
            }
        };

        /// Whether B packers of type P can say where W^T lies when its columns are contiguous
        /// along k: p.k_contiguous(k0, j0, ld) returns the address of element (k0, j0), element
        /// (k, j) then being at [(j - j0) * ld + (k - k0)], or null when the columns are not so.
        template <class P, class = void>
        struct has_k_contiguous : std::false_type
        {
        };
        template <class P>
        struct has_k_contiguous<P,
                                std::void_t<decltype(std::declval<const P&>().k_contiguous(std::size_t{}, std::size_t{},
                                                                                           std::declval<std::ptrdiff_t&>()))>>
            : std::true_type
        {
        };

#if defined(XCONV_HAS_SIMD512) && defined(XCONV_GEMM_HAS_TRANSPOSE)
        /// Whether implicit_packing_microkernel serves T with the build's register tile: float,
        /// 16-lane vectors, whole 16 x 16 register transposes.
        template <class T>
        constexpr bool implicit_packs_in_kernel() noexcept
        {
            return std::is_same<T, float>::value && gemm_traits<T>::lanes == 16 && gemm_traits<T>::nr % 16 == 0
                   && gemm_transpose_tile<T>::size == 16;
        }

        /// The first row panel of a B micro-panel that is not packed yet, its packing done on the
        /// way: w is W^T's element (0, 0) of the panel, its columns contiguous along k (column j at
        /// w + j * ldw), kc a multiple of 16, the panel whole (nr columns). Each 16 x 16 block of
        /// W^T is transposed in registers, stored into the packed micro-panel b (gemm_pack.hpp's
        /// layout, for the other row panels' implicit_microkernel) and used at once, 16 columns
        /// at a time. Each element of C^T is the same fma chain over k as implicit_microkernel's,
        /// so the bits are the same; what changes is that the transposition's memory traffic runs
        /// beside the fmas instead of before them (resnet_3x3_7_b1, one sample, 9.4 MB of
        /// weight: the transposition took 17 % of the call when done first). Written with the
        /// intrinsics rather than gemm_register_tile: a version on the register tile (its start,
        /// store and fma) spilled more and measured 0.96 to 0.99 times as fast on that layer.
        inline void implicit_packing_microkernel(std::size_t kc,
                                                 const float* const* rows,
                                                 const std::int32_t* XCONV_GEMM_RESTRICT off,
                                                 const float* w,
                                                 std::ptrdiff_t ldw,
                                                 float* XCONV_GEMM_RESTRICT b,
                                                 float* XCONV_GEMM_RESTRICT c,
                                                 std::ptrdiff_t ldc,
                                                 bool load_c) noexcept
        {
            constexpr std::size_t MR = gemm_traits<float>::implicit_mr, NR = gemm_traits<float>::nr;
            const float* p[MR];
            XCONV_GEMM_UNROLL
            for (std::size_t r = 0; r < MR; ++r)
            {
                p[r] = rows[r];
            }
            for (std::size_t g = 0; g < NR; g += 16)
            {
                __m512 acc[MR];
                XCONV_GEMM_UNROLL
                for (std::size_t r = 0; r < MR; ++r)
                {
                    acc[r] = load_c ? _mm512_loadu_ps(c + static_cast<std::ptrdiff_t>(r) * ldc + g) : _mm512_setzero_ps();
                }
                const float* wg = w + static_cast<std::ptrdiff_t>(g) * ldw;
                for (std::size_t k0 = 0; k0 < kc; k0 += 16)
                {
                    __m512 bt[16];
                    gemm_transpose_tile<float>::transposed(wg + k0, ldw, bt);
                    XCONV_GEMM_UNROLL
                    for (std::size_t i = 0; i < 16; ++i)
                    {
                        _mm512_store_ps(b + (k0 + i) * NR + g, bt[i]);
                        const std::ptrdiff_t o = off[k0 + i];
                        XCONV_GEMM_UNROLL
                        for (std::size_t r = 0; r < MR; ++r)
                        {
                            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(p[r][o]), bt[i], acc[r]);
                        }
                    }
                }
                XCONV_GEMM_UNROLL
                for (std::size_t r = 0; r < MR; ++r)
                {
                    _mm512_storeu_ps(c + static_cast<std::ptrdiff_t>(r) * ldc + g, acc[r]);
                }
            }
        }
#else
        template <class T>
        constexpr bool implicit_packs_in_kernel() noexcept
        {
            return false;
        }
        // Declared only, so that implicit_forward reads the same either way: without AVX-512 it is
        // never called (implicit_packs_in_kernel is false) and has no definition.
        void implicit_packing_microkernel(std::size_t, const float* const*, const std::int32_t*, const float*, std::ptrdiff_t, float*,
                                          float*, std::ptrdiff_t, bool) noexcept;
#endif

        /// The thread's buffers of the implicit pass (beside conv_workspace's). The three large
        /// ones are the GEMM driver's (gemm_workspace): a pass runs either the implicit GEMM or
        /// the packed one, never one inside the other, so they need not both stay resident.
        template <class T>
        struct implicit_workspace
        {
            aligned_buffer<T>& source;  // zero-bordered copy of the rows a tile reads
            aligned_buffer<T>& ct;      // the tile of C^T
            aligned_buffer<T>& b;       // a packed micro-panel of W^T, when not packed per call
            aligned_buffer<std::int32_t> off{scratch_kind::per_thread};     // off(k)
            aligned_buffer<std::ptrdiff_t> base{scratch_kind::per_thread};  // base(q), rows of the last panel repeated

            explicit implicit_workspace(gemm_workspace<T>& shared) noexcept : source(shared.b), ct(shared.a), b(shared.c) {}

            /// The elements a tile uses of each buffer (source 0: the tile reads the input itself).
            struct need
            {
                std::size_t ct = 0, base = 0, off = 0, source = 0;
            };

            /// The buffers of a tile.
            struct tile
            {
                T* ct = nullptr;
                std::ptrdiff_t* base = nullptr;
                std::int32_t* off = nullptr;
                T* source = nullptr;
            };

            /// The buffers for tiles needing `n`. What an earlier step of the running pass left
            /// in them past `n` is not used again (not even an unused source: no step holds
            /// these buffers across an implicit GEMM), so it may be given back if room runs
            /// short.
            tile get(const need& n)
            {
                // Every mark first: a buffer that grows may then take the room the others hold
                // past their new need (lowering each mark just before its own get would leave
                // the later buffers' old marks standing while the earlier ones grow).
                ct.shrink_asked(n.ct * sizeof(T));
                base.shrink_asked(n.base * sizeof(std::ptrdiff_t));
                off.shrink_asked(n.off * sizeof(std::int32_t));
                source.shrink_asked(n.source * sizeof(T));
                return tile{ct.get(n.ct), base.get(n.base), off.get(n.off), n.source > 0 ? source.get(n.source) : nullptr};
            }

            static implicit_workspace& local()
            {
                thread_local implicit_workspace ws(gemm_workspace<T>::local());
                return ws;
            }
        };

        /// Where the windows of a convolution read: whether a zero border has to be added, and
        /// the extent of the bordered plane (the rows and columns some window touches).
        struct implicit_geometry
        {
            std::int64_t height = 0, width = 0;  // bordered plane
            bool bordered = false;               // a copy with a zero border is needed

            explicit implicit_geometry(const window2d& w) noexcept
                : height((w.blocks_h - 1) * w.stride_h + (w.kernel_h - 1) * w.dil_h + 1),
                  width((w.blocks_w - 1) * w.stride_w + (w.kernel_w - 1) * w.dil_w + 1),
                  bordered(w.pad_top != 0 || w.pad_left != 0 || height > w.height || width > w.width)
            {
            }

            /// Rows of the bordered plane that the output rows [oh0, oh1) read.
            std::int64_t band_rows(const window2d& w, std::int64_t oh0, std::int64_t oh1) const noexcept
            {
                return (oh1 - oh0 - 1) * w.stride_h + (w.kernel_h - 1) * w.dil_h + 1;
            }
        };

        /// Stores the channels [j0, j1) of a tile of C^T (`rows` positions, ct[q * ldct + j]) into
        /// the grids [channels, L], adding bias[j] when there is a bias: row q is position
        /// q % per_sample of sample q / per_sample, whose positions start at out + sample *
        /// grid_stride. 16 x 16 blocks go through an in-register transpose where the build has one,
        /// which adds the bias on the way.
        template <class T>
        void implicit_store(const T* ct,
                            std::int64_t ldct,
                            std::int64_t rows,
                            std::int64_t per_sample,
                            T* out,
                            std::int64_t grid_stride,
                            std::int64_t L,
                            const T* bias,
                            std::int64_t j0,
                            std::int64_t j1) noexcept
        {
            // Channels [j, j_end) of the rows [q, q1), one channel after the other.
            const auto scalar = [&](T* o, std::int64_t j, std::int64_t j_end, std::int64_t q, std::int64_t q1) {
                for (; j < j_end; ++j)
                {
                    T* dst = o + j * L;
                    if (bias != nullptr)
                    {
                        const T b = bias[j];
                        for (std::int64_t r = q; r < q1; ++r)
                        {
                            dst[r] = ct[r * ldct + j] + b;
                        }
                    }
                    else
                    {
                        for (std::int64_t r = q; r < q1; ++r)
                        {
                            dst[r] = ct[r * ldct + j];
                        }
                    }
                }
            };
            constexpr auto S = static_cast<std::int64_t>(gemm_transpose_tile<T>::size);
            for (std::int64_t q0 = 0; q0 < rows; q0 += per_sample)
            {
                const std::int64_t q1 = std::min(rows, q0 + per_sample);
                T* o = out + (q0 / per_sample) * grid_stride - q0;  // o[j * L + q] for the rows q of this sample
                std::int64_t j = j0;
                if constexpr (S > 0)
                {
                    for (; j + S <= j1; j += S)
                    {
                        std::int64_t q = q0;
                        for (; q + S <= q1; q += S)
                        {
                            gemm_transpose_tile<T>::run(ct + q * ldct + j, ldct, o + j * L + q, L, bias != nullptr ? bias + j : nullptr);
                        }
                        scalar(o, j, j + S, q, q1);
                    }
                }
                scalar(o, j, j1, q0, q1);
            }
        }

        /// d[0, rs) = x_begin zeros, the x_end - x_begin elements at src, zeros: a row of a
        /// zero-bordered copy. Rows of a few dozen elements are most of what the implicit GEMM
        /// copies, so with AVX-512 each vector of the row is one load (masked at the borders, and
        /// moved up to the left border's width by a permute) and one store, instead of three
        /// library calls a row.
        template <class T>
        inline void bordered_row(T* d, std::int64_t rs, const T* src, std::int64_t x_begin, std::int64_t x_end) noexcept
        {
#if defined(XCONV_HAS_SIMD512)
            using S = simd512<T>;
            for (std::int64_t x0 = 0; x0 < rs; x0 += S::lanes)
            {
                const std::int64_t first = std::max(x_begin, x0);  // the first element of the row in this vector
                const std::int64_t shift = first - x0;               // its lane
                typename S::V v;
                if (shift == 0 && x0 + S::lanes <= x_end)
                {
                    v = S::loadu(src + (x0 - x_begin));
                }
                else if (shift >= S::lanes || first >= x_end)
                {
                    v = S::zero();
                }
                else
                {
                    // x_end - first elements (at most the vector's) from src[first - x_begin], moved
                    // up to lanes shift, shift + 1, ...
                    v = S::load(S::mask(x_end - first), src + (first - x_begin));
                    if (shift > 0)
                    {
                        v = S::shift_up(v, shift);
                    }
                }
                S::store(d + x0, S::mask(rs - x0), v);
            }
#else
            std::fill(d, d + x_begin, T(0));
            std::copy(src, src + (x_end - x_begin), d + x_begin);
            std::fill(d + x_end, d + rs, T(0));
#endif
        }

        /// dst [rows, rs] = rows [y0, y0 + rows) of the plane `in` (win.height x win.width) in its
        /// zero-bordered copy: win.pad_left zero columns, the row, zeros to rs; rows outside the
        /// plane all zeros.
        template <class T>
        void bordered_rows(const window2d& win, const T* in, std::int64_t y0, std::int64_t rows, std::int64_t rs, T* dst) noexcept
        {
            const std::int64_t x_begin = std::clamp<std::int64_t>(win.pad_left, 0, rs);
            const std::int64_t x_end = std::clamp<std::int64_t>(win.pad_left + win.width, x_begin, rs);
            for (std::int64_t y = 0; y < rows; ++y)
            {
                T* d = dst + y * rs;
                const std::int64_t iy = y0 + y;
                if (iy < 0 || iy >= win.height)
                {
                    std::fill(d, d + rs, T(0));
                    continue;
                }
                bordered_row(d, rs, in + iy * win.width + (x_begin - win.pad_left), x_begin, x_end);
            }
        }

        /// Bytes of the tile of C^T and the bordered rows it reads: they stay in a 1 MiB L2 cache
        /// beside the B micro-panel streaming through (640 KiB measured a little faster on the
        /// suite's 3 x 3 layers than 384 KiB, which splits a 14 x 14 sample of 256 channels in two).
        constexpr std::size_t implicit_tile_bytes = std::size_t(640) << 10;

        /// Whether the implicit GEMM computes this forward pass: channels enough per group to
        /// fill the register tile's columns (fewer waste most of it; prefer_direct handles the
        /// fewest), and offsets that fit the table's 32 bits.
        template <class T>
        bool implicit_forward_applies(const window2d& win, std::int64_t Cp, std::int64_t Cg) noexcept
        {
            const implicit_geometry geo(win);
            const std::int64_t plane = geo.bordered ? geo.height * geo.width : win.height * win.width;
            return Cg >= static_cast<std::int64_t>(gemm_traits<T>::nr) && Cp * plane < std::numeric_limits<std::int32_t>::max()
                   && win.blocks() > 0;
        }

        /// The B operand of the backward-data pass of a stride-1 convolution run as a forward one
        /// (conv2d_backward_data_as_forward): B [K', Cp] with K' = Cg * kh * kw, B((c, t), p) =
        /// W[c, p, taps - 1 - t] for the weight W [Cg, Cp, kh, kw] of a group, i.e. the kernel
        /// turned by 180 degrees with its two channel axes swapped. Packs the layout of
        /// gemm_pack.hpp.
        template <class T, class Arch = gemm_arch>
        struct flipped_weight_b_packer
        {
            const T* W;
            std::int64_t Cp, taps;

            void operator()(std::size_t k0, std::size_t kc, std::size_t j0, std::size_t nc, T* dst) const noexcept
            {
                constexpr std::size_t NR = gemm_traits<T, Arch>::nr;
                for (std::size_t q = 0; q * NR < nc; ++q)
                {
                    const std::size_t n = std::min(NR, nc - q * NR);
                    T* d = dst + q * kc * NR;
                    for (std::size_t k = 0; k < kc; ++k)
                    {
                        const auto kk = static_cast<std::int64_t>(k0 + k);
                        const std::int64_t c = kk / taps, t = taps - 1 - (kk - c * taps);
                        const T* w = W + (c * Cp + static_cast<std::int64_t>(j0 + q * NR)) * taps + t;
                        for (std::size_t j = 0; j < n; ++j)
                        {
                            d[k * NR + j] = w[static_cast<std::int64_t>(j) * taps];
                        }
                        gemm_pack_zero_tail<T, NR>(d + k * NR, n);
                    }
                }
            }
        };

        /// The bytes a thread's implicit_forward holds: besides a tile's rows (rows of C^T with
        /// their window bases, and the rows of the bordered copy they read) a micro-panel of W^T
        /// when it packs its own, the offsets of the K taps, and the last register panel's spare
        /// rows.
        template <class T>
        struct implicit_bytes
        {
            std::size_t ldct;            // row length of the C^T tile
            std::size_t fixed;           // per thread, whatever the tile
            std::size_t sample_bytes;    // a whole sample, its bordered copy included
            std::size_t row_bytes;       // one more output row of a band
            std::size_t halo_bytes;      // the bordered rows a band reads beyond its own

            implicit_bytes(const window2d& win, std::int64_t Cp, std::int64_t Cg, bool packed_wt) noexcept
            {
                using traits = gemm_traits<T>;
                constexpr std::size_t MR = traits::implicit_mr, NR = traits::nr, KC = traits::kc;
                const implicit_geometry geo(win);
                const auto uK = static_cast<std::size_t>(Cp * win.taps()), uCg = static_cast<std::size_t>(Cg);
                // Rows of the C^T tile a cache line longer than the panels: rows a power of two
                // apart would share the cache's sets.
                ldct = (uCg + NR - 1) / NR * NR + 64 / sizeof(T);
                fixed = (packed_wt ? 0 : std::min(KC, uK) * NR * sizeof(T)) + (uK + implicit_prefetch_distance) * sizeof(std::int32_t)
                        + MR * (ldct * sizeof(T) + sizeof(std::ptrdiff_t));
                const std::size_t sample_source = geo.bordered ? static_cast<std::size_t>(Cp * geo.height * geo.width) * sizeof(T) : 0;
                const std::size_t position_bytes = ldct * sizeof(T) + sizeof(std::ptrdiff_t);
                sample_bytes = static_cast<std::size_t>(win.blocks()) * position_bytes + sample_source;
                // r output rows: r * bw rows of C^T, and r * sh + halo rows of the bordered copy
                row_bytes = static_cast<std::size_t>(win.blocks_w) * position_bytes
                            + (geo.bordered ? static_cast<std::size_t>(Cp * win.stride_h * geo.width) * sizeof(T) : 0);
                const std::int64_t halo = std::max<std::int64_t>(0, (win.kernel_h - 1) * win.dil_h + 1 - win.stride_h);
                halo_bytes = geo.bordered ? static_cast<std::size_t>(Cp * halo * geo.width) * sizeof(T) : 0;
            }

            /// The least a thread holds: tiles of one output row.
            std::size_t floor() const noexcept { return fixed + halo_bytes + row_bytes; }
        };

        /// Whether the implicit GEMMs of all the threads of a call fit the scratch limit at their
        /// smallest tiles (one output row each, each thread packing its own micro-panels of W^T;
        /// a weight packed for the call only takes the room they leave: implicit_over_batch).
        /// Not so for many channels of wide rows under a small limit; the column tiles of the
        /// lowered passes, which tile finer, then run instead.
        template <class T>
        bool implicit_fits_limit(const window2d& win, std::int64_t Cp, std::int64_t Cg) noexcept
        {
            return static_cast<std::size_t>(conv_threads()) * implicit_bytes<T>(win, Cp, Cg, false).floor() <= scratch_limit();
        }

        /// grid_s [Cg, L] = W [Cg, K] x cols(plane_s) [K, L] (+ bias per row) for the samples s in
        /// [0, N): plane of sample s at plane + s * plane_stride, its grid at grid + s *
        /// grid_stride. The GEMM's B = W^T [K, Cg] is `packed_wt`, packed whole by prepack_b, or,
        /// when that is null, packed micro-panel by micro-panel here by `pack_w` (a B packer of
        /// gemm_pack.hpp). With OpenMP, when not called from inside a parallel region, each
        /// thread takes whole tiles (bands of output rows) when a sample spans several and the
        /// tiles come out even between the threads; else the threads share each tile's row panels
        /// (or channel panels). One parallel region a call.
        template <class T, class PackW>
        void implicit_forward(const window2d& win,
                              std::int64_t Cp,
                              std::int64_t Cg,
                              const PackW& pack_w,
                              const T* plane,
                              std::int64_t plane_stride,
                              T* grid,
                              std::int64_t grid_stride,
                              std::int64_t N,
                              const T* bias,
                              std::size_t budget,
                              const T* packed_wt = nullptr)
        {
            using traits = gemm_traits<T>;
            constexpr std::size_t MR = traits::implicit_mr, NR = traits::nr, KC = traits::kc, LANES = traits::lanes;
            const std::int64_t taps = win.taps();
            const std::int64_t K = Cp * taps;
            const std::int64_t L = win.blocks();
            const std::int64_t bw = win.blocks_w;
            const auto uK = static_cast<std::size_t>(K), uCg = static_cast<std::size_t>(Cg);
            const implicit_bytes<T> bytes(win, Cp, Cg, packed_wt != nullptr);
            const std::size_t ldct = bytes.ldct;
            const implicit_geometry geo(win);
            if (N <= 0 || L <= 0 || Cg <= 0)
            {
                return;
            }

            // Tiles: whole samples when one fits the cache with its bordered copy, else bands of
            // output rows of one sample (implicit_bytes).
            const std::size_t fixed = bytes.fixed, sample_bytes = bytes.sample_bytes, row_bytes = bytes.row_bytes,
                              halo_bytes = bytes.halo_bytes;
            const std::int64_t threads = conv_threads();
            const auto bands_for = [&](std::size_t room) {
                const std::int64_t rows = std::clamp<std::int64_t>(
                    static_cast<std::int64_t>((room > halo_bytes ? room - halo_bytes : 0) / row_bytes), 1, win.blocks_h);
                return (win.blocks_h + rows - 1) / rows;
            };
            struct tiling
            {
                std::int64_t chunk = 1, n_bands = 1;
                // With several threads and samples too large for one tile, each thread takes
                // whole tiles (bands of rows), when they come out even: no barrier between tiles.
                // Else the threads share each tile.
                bool by_tiles = false;
                std::int64_t rows_per_tile = 0;
                typename implicit_workspace<T>::need need;
            };
            // A buffer the calling thread's pass asked for more than this call needs (an earlier
            // call of other geometry, e.g. another sub-pixel phase) is not counted: get() lowers
            // the pass's mark on it to this call's need, so what it holds past that may be given
            // back when room runs short.
            const tiling tl = [&]() {
                tiling p;
                const std::size_t own = budget > fixed ? budget - fixed : 0;
                const std::size_t room = std::min(own, implicit_tile_bytes);
                if (sample_bytes <= room)
                {
                    p.chunk = std::clamp<std::int64_t>(static_cast<std::int64_t>(room / sample_bytes), 1, N);
                }
                else
                {
                    p.n_bands = bands_for(room);
                    const std::size_t share = budget / static_cast<std::size_t>(threads);
                    const std::size_t thread_room = std::min(share > fixed ? share - fixed : 0, implicit_tile_bytes);
                    if (threads > 1 && sample_bytes > thread_room)
                    {
                        std::int64_t bands = bands_for(thread_room);
                        while (bands < win.blocks_h && (N * bands) % threads != 0)
                        {
                            ++bands;
                        }
                        if ((N * bands) % threads == 0)
                        {
                            p.by_tiles = true;
                            p.n_bands = bands;
                        }
                    }
                }
                p.rows_per_tile = (win.blocks_h + p.n_bands - 1) / p.n_bands;
                const auto max_rows = static_cast<std::size_t>(p.chunk * p.rows_per_tile * bw + static_cast<std::int64_t>(MR));
                p.need.ct = max_rows * ldct;
                p.need.base = max_rows;
                p.need.off = uK + implicit_prefetch_distance;
                p.need.source =
                    geo.bordered ? static_cast<std::size_t>(p.chunk * Cp * geo.band_rows(win, 0, p.rows_per_tile) * geo.width) : 0;
                return p;
            }();
            const std::int64_t chunk = tl.chunk;
            [[maybe_unused]] const bool by_tiles = tl.by_tiles;  // read only with OpenMP
            const std::int64_t rows_per_tile = tl.rows_per_tile;
            const std::int64_t n_chunks = (N + chunk - 1) / chunk, bands_per_chunk = (win.blocks_h + rows_per_tile - 1) / rows_per_tile;
            const std::int64_t n_tiles = n_chunks * bands_per_chunk;

            using buffers = typename implicit_workspace<T>::tile;
            /// The calling thread's buffers for a tile.
            const auto own_buffers = [&]() {
                buffers r = implicit_workspace<T>::local().get(tl.need);
                std::fill(r.off + uK, r.off + uK + implicit_prefetch_distance, 0);
                return r;
            };

            // Tile t: samples [s0, s1) and output rows [oh0, oh1), computed by part `part` of
            // `parts` threads sharing buf (a barrier after each step when parts > 1).
            const auto run_tile = [&](const buffers& buf, std::int64_t t, std::int64_t part, std::int64_t parts) {
                const auto sync = [parts]() {
                    if (parts > 1)
                    {
#if defined(XCONV_USE_OPENMP)
#pragma omp barrier
#endif
                    }
                };
                const auto share = [part, parts](std::int64_t n) {
                    return std::pair<std::int64_t, std::int64_t>(n * part / parts, n * (part + 1) / parts);
                };
                const std::int64_t s0 = t / bands_per_chunk * chunk, s1 = std::min(N, s0 + chunk);
                const std::int64_t oh0 = t % bands_per_chunk * rows_per_tile, oh1 = std::min(win.blocks_h, oh0 + rows_per_tile);
                const std::int64_t per_sample = (oh1 - oh0) * bw;
                const std::int64_t rows = (s1 - s0) * per_sample;
                const std::int64_t panels = (rows + static_cast<std::int64_t>(MR) - 1) / static_cast<std::int64_t>(MR);

                // The plane the windows read: strides of a row, a channel and a sample.
                const T* src = nullptr;
                std::int64_t rs = 0, ps = 0, ss = 0;
                const std::int64_t band = geo.band_rows(win, oh0, oh1);
                if (geo.bordered)
                {
                    rs = geo.width;
                    ps = band * rs;
                    ss = Cp * ps;
                    src = buf.source;
                }
                else
                {
                    rs = win.width;
                    ps = win.height * win.width;
                    ss = plane_stride;
                    src = plane + s0 * plane_stride + oh0 * win.stride_h * rs;
                }
                const std::int64_t y0 = oh0 * win.stride_h - win.pad_top;  // first image row of the band

                if (part == 0)
                {
                    for (std::int64_t c = 0, k = 0; c < Cp; ++c)
                    {
                        for (std::int64_t i = 0; i < win.kernel_h; ++i)
                        {
                            for (std::int64_t j = 0; j < win.kernel_w; ++j, ++k)
                            {
                                buf.off[k] = static_cast<std::int32_t>(c * ps + i * win.dil_h * rs + j * win.dil_w);
                            }
                        }
                    }
                    // Position q is (sample s, band row oh, column ow), stepped without divisions.
                    for (std::int64_t q = 0, s = 0, oh = 0, ow = 0; q < rows; ++q)
                    {
                        buf.base[q] = static_cast<std::ptrdiff_t>(s * ss + oh * win.stride_h * rs + ow * win.stride_w);
                        if (++ow == bw)
                        {
                            ow = 0;
                            if (++oh == oh1 - oh0)
                            {
                                oh = 0;
                                ++s;
                            }
                        }
                    }
                    std::fill(buf.base + rows, buf.base + panels * static_cast<std::int64_t>(MR), buf.base[0]);
                }
                if (geo.bordered)
                {
                    // The zero-bordered copy of rows [y0, y0 + band) of each sample's planes.
                    const auto [sc0, sc1] = share((s1 - s0) * Cp);
                    for (std::int64_t sc = sc0; sc < sc1; ++sc)
                    {
                        const std::int64_t s = sc / Cp, c = sc - s * Cp;
                        bordered_rows(win, plane + (s0 + s) * plane_stride + c * win.height * win.width, y0, band, rs,
                                      buf.source + s * ss + c * ps);
                    }
                }
                sync();

                const std::size_t n_jr = (uCg + NR - 1) / NR;
                // Without a weight packed per call each thread packs the B micro-panels it
                // uses, just before using them: the threads share the panels when there
                // are enough, else the row panels (and each packs every B panel).
                const bool by_columns = packed_wt == nullptr && static_cast<std::int64_t>(n_jr) >= parts;
                const std::int64_t tasks = by_columns ? static_cast<std::int64_t>(n_jr) : parts;
                for (std::size_t pc = 0; pc < uK; pc += KC)
                {
                    const std::size_t kc = std::min(KC, uK - pc);
                    const bool load_c = pc > 0;
                    // B micro-panel outer (it stays in L1 / L2), the row panels inner.
                    const auto [task0, task1] = share(tasks);
                    for (std::int64_t task = task0; task < task1; ++task)
                    {
                        const std::int64_t p_begin = by_columns ? 0 : panels * task / parts;
                        const std::int64_t p_end = by_columns ? panels : panels * (task + 1) / parts;
                        const std::size_t jr_begin = by_columns ? static_cast<std::size_t>(task) * NR : 0;
                        const std::size_t jr_end = by_columns ? jr_begin + NR : uCg;
                        for (std::size_t jr = jr_begin; jr < jr_end; jr += NR)
                        {
                            const std::size_t n = std::min(NR, uCg - jr);
                            const T* b_panel = nullptr;
                            T* own = nullptr;
                            // A whole panel of a weight contiguous along k, packed by the first
                            // row panel's kernel as it goes (implicit_packing_microkernel).
                            const T* w_source = nullptr;
                            std::ptrdiff_t ldw = 0;
                            if (packed_wt != nullptr)
                            {
                                b_panel = prepacked_b<T>{packed_wt, uCg}.block(pc, kc, 0) + jr * kc;
                            }
                            else
                            {
                                own = implicit_workspace<T>::local().b.get(kc * NR);
                                if constexpr (implicit_packs_in_kernel<T>() && has_k_contiguous<PackW>::value)
                                {
                                    if (n == NR && kc % 16 == 0 && p_end > p_begin)
                                    {
                                        w_source = pack_w.k_contiguous(pc, jr, ldw);
                                    }
                                }
                                if (w_source == nullptr)
                                {
                                    pack_w(pc, kc, jr, n, own);
                                }
                                b_panel = own;
                            }
                            const auto kernel = implicit_microkernel_table<T, gemm_arch>::get((n + LANES - 1) / LANES);
                            for (std::int64_t ip = p_begin; ip < p_end; ++ip)
                            {
                                const std::size_t ir = static_cast<std::size_t>(ip) * MR;
                                const T* ptr[MR];
                                for (std::size_t r = 0; r < MR; ++r)
                                {
                                    ptr[r] = src + buf.base[ir + r];
                                }
                                T* const c_tile = buf.ct + ir * ldct + jr;
                                if constexpr (implicit_packs_in_kernel<T>())
                                {
                                    if (w_source != nullptr && ip == p_begin)
                                    {
                                        implicit_packing_microkernel(kc, ptr, buf.off + pc, w_source, ldw, own, c_tile,
                                                                     static_cast<std::ptrdiff_t>(ldct), load_c);
                                        continue;
                                    }
                                }
                                kernel(kc, ptr, buf.off + pc, b_panel, c_tile, static_cast<std::ptrdiff_t>(ldct), load_c);
                            }
                        }
                    }
                    sync();
                }

                // C^T back into the grids, transposed, plus the bias: the threads share the
                // channels.
                const auto [jb0, jb1] = share((Cg + 15) / 16);
                for (std::int64_t jb = jb0; jb < jb1; ++jb)
                {
                    implicit_store(buf.ct, static_cast<std::int64_t>(ldct), rows, per_sample, grid + s0 * grid_stride + oh0 * bw, grid_stride,
                                   L, bias, jb * 16, std::min(Cg, jb * 16 + 16));
                }
                sync();
            };

#if defined(XCONV_USE_OPENMP)
            const bool parallel = threads > 1
                                  && (by_tiles
                                      || static_cast<double>(chunk * rows_per_tile * bw) * static_cast<double>(K) * static_cast<double>(Cg)
                                             >= 2097152.0);
            const buffers shared = parallel && !by_tiles ? own_buffers() : buffers{};
            const std::uint64_t epoch = current_scratch_epoch();
            if (parallel)
            {
#pragma omp parallel
                {
                    const scratch_join join(epoch);
                    const std::int64_t parts = omp_get_num_threads(), me = omp_get_thread_num();
                    if (by_tiles)
                    {
                        // Each thread its own tiles, in its own buffers.
                        const buffers mine = own_buffers();
                        for (std::int64_t t = n_tiles * me / parts; t < n_tiles * (me + 1) / parts; ++t)
                        {
                            run_tile(mine, t, 0, 1);
                        }
                    }
                    else
                    {
                        for (std::int64_t t = 0; t < n_tiles; ++t)
                        {
                            run_tile(shared, t, me, parts);
                        }
                    }
                }
                return;
            }
#endif
            const buffers mine = own_buffers();
            for (std::int64_t t = 0; t < n_tiles; ++t)
            {
                run_tile(mine, t, 0, 1);
            }
        }

        /// The fewest positions over the batch (N * L) for which implicit_backward_weight runs.
        /// Its C^T tile is stored back transposed once per column block, a pass over the gradient
        /// that costs as much as a few dozen positions' fmas when the gradient is larger than the
        /// cache. Measured at 1 thread, forward + backward against the column tiles' GEMMs, on a
        /// 512-channel 7 x 7 layer (a 9 MiB gradient): slower with 49 and 98 positions (batch 1
        /// and 2), level with 147 and 196; the suite's other layers, 240 positions or more, were
        /// 5 to 27 % faster.
        constexpr std::int64_t implicit_wgrad_min_depth = 128;

        /// Wgrad [Cg, k_begin : k_end] = sum over the samples n = 0 .. N - 1 of
        /// grid_n [Cg, L] x cols(plane_n)^T [L, k_begin : k_end] (Wgrad has leading dimension
        /// K = Cp * kh * kw), computed transposed as one implicit GEMM per sample,
        ///
        ///   C^T [kn, Cg] += cols(plane_n) [kn, L] x grid_n^T [L, Cg],
        ///
        /// the roles of the forward pass's operands turned around: the register tile's rows are
        /// implicit_mr columns k of the weight, pointers to their taps' pixels (off(k) of the top
        /// of this file), and its depth walks the positions through the table base(q); the B
        /// panels are grid_n^T packed a depth block at a time. The C^T tile stays in cache over
        /// the whole batch and is stored back transposed at the end, so no column matrix is
        /// written. plane_of(n) and grid_of(n) give sample n's plane (Cp channels of win.height x
        /// win.width) and grid; they are asked in increasing n, one sample at a time.
        ///
        /// Every element is one fma chain over (n, q) in order, the chain of the lowered pass's
        /// GEMMs (lowered_backward_weight over n with accumulation): the result is bit for bit
        /// theirs. Returns false, having done nothing, when the pass does not apply: fewer output
        /// channels than a register panel's columns, fewer than implicit_wgrad_min_depth positions
        /// in the batch, a 1 x 1 window read in place (a plain GEMM), offsets over 32 bits, or
        /// buffers over `budget` bytes.
        template <class T, class PlaneOf, class GridOf>
        bool implicit_backward_weight(const window2d& win,
                                      std::int64_t Cp,
                                      std::int64_t Cg,
                                      std::int64_t N,
                                      PlaneOf&& plane_of,
                                      GridOf&& grid_of,
                                      T* Wgrad,
                                      std::int64_t k_begin,
                                      std::int64_t k_end,
                                      std::size_t budget)
        {
            using traits = gemm_traits<T>;
            constexpr std::size_t MR = traits::implicit_mr, NR = traits::nr, KC = traits::kc, LANES = traits::lanes;
            const std::int64_t taps = win.taps();
            const std::int64_t K = Cp * taps;
            const std::int64_t L = win.blocks();
            const std::int64_t kn = k_end - k_begin;
            const implicit_geometry geo(win);
            const bool in_place_1x1 = !geo.bordered && taps == 1 && win.stride_h == 1 && win.stride_w == 1;
            if (N <= 0 || L <= 0 || kn <= 0 || N * L < implicit_wgrad_min_depth || Cg < static_cast<std::int64_t>(NR) || in_place_1x1)
            {
                return false;
            }
            // The channels of the plane that the columns [k_begin, k_end) read.
            const std::int64_t c_lo = k_begin / taps, c_hi = (k_end - 1) / taps + 1;
            const std::int64_t rs = geo.bordered ? geo.width : win.width;
            const std::int64_t ps = geo.bordered ? geo.height * geo.width : win.height * win.width;
            if ((c_hi - c_lo) * ps >= std::numeric_limits<std::int32_t>::max())
            {
                return false;
            }
            const auto uCg = static_cast<std::size_t>(Cg), uL = static_cast<std::size_t>(L);
            const std::size_t ldct = (uCg + NR - 1) / NR * NR + 64 / sizeof(T);
            const std::size_t panels = (static_cast<std::size_t>(kn) + MR - 1) / MR;
            const std::size_t ct_elements = panels * MR * ldct;
            const std::size_t b_elements = std::min(KC, uL) * ((uCg + NR - 1) / NR * NR);
            const std::size_t source_elements = geo.bordered ? static_cast<std::size_t>((c_hi - c_lo) * ps) : 0;
            const std::size_t bytes = (ct_elements + b_elements + source_elements) * sizeof(T)
                                      + (uL + implicit_prefetch_distance) * sizeof(std::int32_t) + panels * MR * sizeof(std::ptrdiff_t);
            if (bytes > budget)
            {
                return false;
            }

            implicit_workspace<T>& ws = implicit_workspace<T>::local();
            T* ct = ws.ct.get(ct_elements);
            T* b = ws.b.get(b_elements);
            T* source = geo.bordered ? ws.source.get(source_elements) : nullptr;
            std::int32_t* base = ws.off.get(uL + implicit_prefetch_distance);  // the depth: positions
            std::ptrdiff_t* rows = ws.base.get(panels * MR);                     // the tile's rows: columns k

            // Column k = (c, i, j) reads channel c - c_lo of the plane at tap (i, j); rows past
            // kn in the last panel repeat the last column.
            for (std::size_t r = 0; r < panels * MR; ++r)
            {
                const std::int64_t k = k_begin + std::min<std::int64_t>(static_cast<std::int64_t>(r), kn - 1);
                const std::int64_t c = k / taps, t = k - c * taps;
                const std::int64_t i = t / win.kernel_w, j = t - i * win.kernel_w;
                rows[r] = static_cast<std::ptrdiff_t>((c - c_lo) * ps + i * win.dil_h * rs + j * win.dil_w);
            }
            for (std::int64_t q = 0, oh = 0, ow = 0; q < L; ++q)
            {
                base[q] = static_cast<std::int32_t>(oh * win.stride_h * rs + ow * win.stride_w);
                if (++ow == win.blocks_w)
                {
                    ow = 0;
                    ++oh;
                }
            }
            std::fill(base + L, base + L + static_cast<std::int64_t>(implicit_prefetch_distance), 0);

            for (std::int64_t n = 0; n < N; ++n)
            {
                const T* plane = plane_of(n);
                const T* grid = grid_of(n);
                const T* src = plane + c_lo * win.height * win.width;
                if (geo.bordered)
                {
                    // The zero-bordered copy of the channels [c_lo, c_hi).
                    for (std::int64_t c = c_lo; c < c_hi; ++c)
                    {
                        bordered_rows(win, plane + c * win.height * win.width, -win.pad_top, geo.height, rs, source + (c - c_lo) * ps);
                    }
                    src = source;
                }
                const strided_b_packer<T> pack_grid{transposed(grid, L)};
                for (std::size_t pc = 0; pc < uL; pc += KC)
                {
                    const std::size_t kc = std::min(KC, uL - pc);
                    const bool load_c = n > 0 || pc > 0;
                    // B = grid_n^T [pc : pc + kc, Cg], panel after panel of NR channels
                    pack_grid(pc, kc, 0, uCg, b);
                    // B micro-panel outer (it stays in L1 / L2), the row panels inner.
                    for (std::size_t jr = 0; jr < uCg; jr += NR)
                    {
                        const std::size_t nj = std::min(NR, uCg - jr);
                        const auto kernel = implicit_microkernel_table<T, gemm_arch>::get((nj + LANES - 1) / LANES);
                        for (std::size_t ip = 0; ip < panels; ++ip)
                        {
                            const T* ptr[MR];
                            for (std::size_t r = 0; r < MR; ++r)
                            {
                                ptr[r] = src + rows[ip * MR + r];
                            }
                            // C^T [MR, nj] (+)= cols [MR rows of k, kc positions] x grid^T [kc, nj]
                            kernel(kc, ptr, base + pc, b + jr * kc, ct + ip * MR * ldct + jr, static_cast<std::ptrdiff_t>(ldct), load_c);
                        }
                    }
                }
            }
            // C^T [kn, Cg] into Wgrad [Cg, K] at column k_begin.
            implicit_store(static_cast<const T*>(ct), static_cast<std::int64_t>(ldct), kn, kn, Wgrad + k_begin, std::int64_t(0), K,
                           static_cast<const T*>(nullptr), std::int64_t(0), Cg);
            return true;
        }
    }  // namespace detail
}  // namespace xconv

#endif
