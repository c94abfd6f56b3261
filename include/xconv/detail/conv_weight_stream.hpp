// xconv: the forward convolution of a layer with few output positions, the weight read where it
// lies.
//
// Per sample and group:
//
//   grid [Cg, L] = W [Cg, K] x cols(plane) [K, L]  (+ bias per row)      K = Cp * kh * kw
//
// With few positions (a 7 x 7 output at one sample: L = 49) each weight element serves only L
// multiply-adds, and the weight is most of the memory a call reads (9.4 MB for 512 -> 512
// channels, 3 x 3). The other routes pack it first: the implicit GEMM transposes it into W^T
// panels, which took 17 % of that layer's call, and fused into its first row panel's kernel still
// left the layer at 83 % of the FMA ceiling. Here the weight is not packed at all: the rows of
// the register tile are rows of W, broadcast from where they lie, so each weight element is read
// once, in order along its row, and the columns (few) are what gets packed.
//
//   * Positions [0, Lf), Lf = L rounded down to whole vectors: a register tile of
//     weight_stream_mr rows of W by up to 4 vectors of positions (weight_stream_microkernel),
//     whose B is the packed columns cols [kc, nr], writing the grid in place. Each of these
//     outputs is the GEMM's one fma chain over k = 0 .. K-1 (gemm_kernel.hpp's contract): the
//     bits of the other routes.
//   * A last position past the whole vectors (L = 49 = 3 * 16 + 1): dot products along k in the
//     same kernel, while the rows are in L1, lane l of a vector accumulator summing the terms
//     k = l (mod lanes) in order of k, the lanes added at the end. That is another order than
//     the chain, so this position may differ from the other routes' in the last bits.
//
// The route is chosen from the shape alone (weight_stream_applies), never from the thread count
// or the scratch limit, and its depth blocks (which the limit sets) change no bit: the chain runs
// over k in order whatever the blocks, and a block starts at a multiple of the lanes. So its
// results are bitwise the same for any threads and any limit. Threads share the register panels
// of output channels, each thread packing the columns for itself (at most a few hundred KiB): no
// barrier inside the call.
#ifndef XCONV_DETAIL_CONV_WEIGHT_STREAM_HPP
#define XCONV_DETAIL_CONV_WEIGHT_STREAM_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(XCONV_USE_OPENMP)
#include <omp.h>
#endif

#include "../options.hpp"
#include "aligned_buffer.hpp"
#include "conv_pack.hpp"
#include "conv_parallel.hpp"
#include "conv_scratch.hpp"
#include "gemm_kernel.hpp"
#include "gemm_traits.hpp"
#include "simd512.hpp"

namespace xconv
{
    namespace detail
    {
        /// Rows of weight_stream_forward's register tile: 6 x 3 vectors of positions = 18
        /// accumulators, and 6 more for the dot products of a last position beside them
        /// (weight_stream_microkernel), 3 for B, one broadcast, a row's vector and a's: 30 of the
        /// 32 registers.
        constexpr std::size_t weight_stream_mr = 6;

        /// Most positions weight_stream_forward serves.
        constexpr std::int64_t weight_stream_max_positions = 64;

        /// Whether the columns of a window are packed by shifting the plane (shifted_plane_packer):
        /// stride 1 and output rows as wide as the plane's ("same" padding, or a 1 x 1 kernel).
        inline bool packs_by_shifting(const window2d& w) noexcept
        {
            return w.stride_h == 1 && w.stride_w == 1 && w.blocks_w == w.width;
        }

        /// Whether weight_stream_forward serves this forward pass: from T, the build's instruction
        /// set and the layer's shape alone, never the threads or the scratch limit. Measured on
        /// Zen 4 against the route the layer takes otherwise (the implicit GEMM; docs/performance.md,
        /// "What the passes do"):
        ///   * AVX-512, one sample, a register panel of output channels, a depth of 256 or more;
        ///   * a vector to 64 positions, with at most one past the whole vectors (it rides in the
        ///     kernel; with more of them in a loop of their own, 5 x 5 = 16 + 9 in float measured
        ///     0.81 times as fast as the implicit GEMM);
        ///   * in float, only where the columns are packed by shifting the plane and the weight
        ///     of a group is 1 MiB or more: elsewhere the implicit GEMM, which packs W^T in its
        ///     first row panel's kernel, measured as fast or faster (stride 2: 0.99; 9 x 9 without
        ///     padding: 0.95; 64 -> 64 channels at 7 x 7: 0.98), and within it 1.01 to 1.46 times
        ///     as fast. In double every such layer measured faster (1.07 to 1.49).
        template <class T>
        bool weight_stream_applies(const window2d& win, std::int64_t Cp, std::int64_t Cg, std::int64_t N) noexcept
        {
#if defined(XCONV_HAS_SIMD512)
            using traits = gemm_traits<T>;
            constexpr auto lanes = static_cast<std::int64_t>(traits::lanes), nr = static_cast<std::int64_t>(traits::nr);
            const std::int64_t L = win.blocks(), K = Cp * win.taps();
            const std::int64_t Lf = L / lanes * lanes;
            // the last whole vectors' panel keeps registers for the dots of a last position
            const bool fits = L == Lf || ((Lf - 1) % nr + 1) / lanes <= 3;
            const bool worth = std::is_same<T, double>::value
                               || (packs_by_shifting(win) && static_cast<double>(Cg) * static_cast<double>(K) * sizeof(T) >= 1048576.0);
            return gemm_isa_class_of<gemm_arch>() == gemm_isa_class::simd32_512 && N == 1 && L >= lanes
                   && L <= weight_stream_max_positions && L - Lf <= 1 && fits && Cg >= static_cast<std::int64_t>(weight_stream_mr)
                   && K >= 256 && worth;
#else
            (void)win;
            (void)Cp;
            (void)Cg;
            (void)N;
            return false;
#endif
        }

#if defined(XCONV_HAS_SIMD512)
        /// Depth of the blocks of weight_stream_forward when each thread may hold `room` bytes:
        /// the traits' kc, or fewer (a multiple of the lanes, at least one vector) to fit.
        template <class T>
        std::size_t weight_stream_kc(std::size_t per_k_bytes, std::size_t room) noexcept
        {
            using traits = gemm_traits<T>;
            const std::size_t fit = room / std::max<std::size_t>(per_k_bytes, 1) / traits::lanes * traits::lanes;
            return std::clamp(fit, traits::lanes, traits::kc);
        }

        /// One weight_stream_mr x (NV * lanes) tile of the grid: c[r, 0 .. NV * lanes) (+)=
        /// sum over k < kc of rows[r][k] * b[k, .], b a packed panel (gemm_pack.hpp's layout, nr
        /// wide), each element the fma chain over k in order (the GEMM's contract). With DOT, also
        /// dot[r] (+)= rows[r][k0 .. k0 + lanes) * a[k0 .. k0 + lanes) for k0 = 0, lanes, ... (a
        /// vector per row; a has zeros from kc up to a whole vector): the dot products of one
        /// more position, whose columns a along k lie contiguous, computed while the rows are in
        /// L1. The rows are read where they lie (broadcast, and as vectors for the dots). With
        /// `bias` (the last depth block), the epilogue adds bias[r] to row r of the tile as it
        /// stores it: the chain, then the bias, as the other routes' epilogues do.
        template <class T, std::size_t NV, bool DOT>
        void weight_stream_microkernel(std::size_t kc,
                                       const T* const* rows,
                                       const T* XCONV_GEMM_RESTRICT b,
                                       T* XCONV_GEMM_RESTRICT c,
                                       std::ptrdiff_t ldc,
                                       bool load_c,
                                       const T* XCONV_GEMM_RESTRICT a,
                                       T* XCONV_GEMM_RESTRICT dot,
                                       const T* bias) noexcept
        {
            using V = simd512<T>;
            using vec = typename V::V;
            constexpr std::size_t MR = weight_stream_mr, NR = gemm_traits<T>::nr, LANES = static_cast<std::size_t>(V::lanes);
            const T* p[MR];
            for (std::size_t r = 0; r < MR; ++r)
            {
                p[r] = rows[r];
            }
            vec acc[MR][NV];
            vec d[DOT ? MR : 1];
            for (std::size_t r = 0; r < MR; ++r)
            {
                for (std::size_t v = 0; v < NV; ++v)
                {
                    acc[r][v] = load_c ? V::loadu(c + static_cast<std::ptrdiff_t>(r) * ldc + static_cast<std::ptrdiff_t>(v * LANES)) : V::zero();
                }
                if constexpr (DOT)
                {
                    d[r] = load_c ? V::loadu(dot + r * LANES) : V::zero();
                }
            }
            const auto step = [&](std::size_t k) {
                vec bv[NV];
                for (std::size_t v = 0; v < NV; ++v)
                {
                    bv[v] = V::load(b + k * NR + v * LANES);
                }
                for (std::size_t r = 0; r < MR; ++r)
                {
                    const vec w = V::set1(p[r][k]);
                    for (std::size_t v = 0; v < NV; ++v)
                    {
                        acc[r][v] = V::fma(w, bv[v], acc[r][v]);
                    }
                }
            };
            const std::size_t whole = kc / LANES * LANES;
            for (std::size_t k0 = 0; k0 < whole; k0 += LANES)
            {
                if constexpr (DOT)
                {
                    const vec av = V::load(a + k0);
                    for (std::size_t r = 0; r < MR; ++r)
                    {
                        d[r] = V::fma(V::loadu(p[r] + k0), av, d[r]);
                    }
                }
                for (std::size_t kk = 0; kk < LANES; ++kk)
                {
                    step(k0 + kk);
                }
            }
            if (whole < kc)
            {
                if constexpr (DOT)
                {
                    const vec av = V::load(a + whole);
                    const auto m = V::mask(static_cast<std::int64_t>(kc - whole));
                    for (std::size_t r = 0; r < MR; ++r)
                    {
                        d[r] = V::fma(V::load(m, p[r] + whole), av, d[r]);
                    }
                }
                for (std::size_t k = whole; k < kc; ++k)
                {
                    step(k);
                }
            }
            for (std::size_t r = 0; r < MR; ++r)
            {
                for (std::size_t v = 0; v < NV; ++v)
                {
                    const vec out = bias != nullptr ? V::add(acc[r][v], V::set1(bias[r])) : acc[r][v];
                    V::storeu(c + static_cast<std::ptrdiff_t>(r) * ldc + static_cast<std::ptrdiff_t>(v * LANES), out);
                }
                if constexpr (DOT)
                {
                    V::storeu(dot + r * LANES, d[r]);
                }
            }
        }

        template <class T>
        using weight_stream_microkernel_fn = void (*)(std::size_t, const T* const*, const T*, T*, std::ptrdiff_t, bool, const T*, T*, const T*);

        /// weight_stream_microkernel for nv = 1 .. 4 vectors (the AVX-512 traits' nv), with the
        /// dots or without (with them only up to 3 vectors, where the registers hold them).
        template <class T>
        weight_stream_microkernel_fn<T> weight_stream_kernel(std::size_t nv, bool dot) noexcept
        {
            static constexpr weight_stream_microkernel_fn<T> plain[] = {&weight_stream_microkernel<T, 1, false>, &weight_stream_microkernel<T, 2, false>,
                                                                        &weight_stream_microkernel<T, 3, false>, &weight_stream_microkernel<T, 4, false>};
            static constexpr weight_stream_microkernel_fn<T> with_dot[] = {&weight_stream_microkernel<T, 1, true>, &weight_stream_microkernel<T, 2, true>,
                                                                           &weight_stream_microkernel<T, 3, true>};
            return dot ? with_dot[nv - 1] : plain[nv - 1];
        }

        /// The packed panels of cols(plane) [kc, nr] where packs_by_shifting: position q's pixel under tap (i, j)
        /// is then at q + y_off[i] * width + x_off[j] of its channel's plane, so a panel's row is
        /// the plane shifted, read with a masked load per vector (lanes inside the image and the
        /// positions), the masks computed once. Writes the same values as im2col_b_packer.
        template <class T>
        struct shifted_plane_packer
        {
            using V = simd512<T>;
            static constexpr std::int64_t vectors = static_cast<std::int64_t>(gemm_traits<T>::nr) / V::lanes;

            const window2d* win = nullptr;
            std::vector<std::int64_t> shift;     // [tap]
            std::vector<typename V::M> masks;    // [panel][tap][vector]

                        shifted_plane_packer(const window2d& w, const conv_taps& taps, std::int64_t panels)
                : win(&w), shift(static_cast<std::size_t>(w.taps())), masks(static_cast<std::size_t>(panels * w.taps() * vectors))
            {
                const std::int64_t L = w.blocks();
                for (std::int64_t t = 0; t < w.taps(); ++t)
                {
                    const auto i = static_cast<std::size_t>(t / w.kernel_w), j = static_cast<std::size_t>(t % w.kernel_w);
                    shift[static_cast<std::size_t>(t)] = taps.y_off[i] * w.width + taps.x_off[j];
                    for (std::int64_t p = 0; p < panels; ++p)
                    {
                        for (std::int64_t v = 0; v < vectors; ++v)
                        {
                            std::uint32_t m = 0;
                            for (std::int64_t lane = 0; lane < V::lanes; ++lane)
                            {
                                const std::int64_t q = (p * vectors + v) * V::lanes + lane;
                                const std::int64_t y = q / w.width + taps.y_off[i], x = q % w.width + taps.x_off[j];
                                if (q < L && y >= 0 && y < w.height && x >= 0 && x < w.width)
                                {
                                    m |= std::uint32_t(1) << lane;
                                }
                            }
                            masks[static_cast<std::size_t>((p * w.taps() + t) * vectors + v)] = static_cast<typename V::M>(m);
                        }
                    }
                }
            }

            /// Rows [k0, k0 + kc) of panel p (positions [p * nr, p * nr + nr)) into dst [kc, nr].
            void operator()(const T* src, std::size_t k0, std::size_t kc, std::int64_t p, T* dst) const noexcept
            {
                const std::int64_t taps = win->taps(), P = win->plane();
                std::int64_t c = static_cast<std::int64_t>(k0) / taps, t = static_cast<std::int64_t>(k0) - c * taps;
                for (std::size_t k = 0; k < kc; ++k)
                {
                    // (may point before the plane: only the lanes inside it are read)
                    const auto from = reinterpret_cast<std::uintptr_t>(src + c * P + p * vectors * V::lanes)
                                      + static_cast<std::uintptr_t>(shift[static_cast<std::size_t>(t)] * static_cast<std::int64_t>(sizeof(T)));
                    const typename V::M* m = masks.data() + (p * taps + t) * vectors;
                    for (std::int64_t v = 0; v < vectors; ++v)
                    {
                        V::store(dst + k * gemm_traits<T>::nr + static_cast<std::size_t>(v * V::lanes), static_cast<typename V::M>(~typename V::M(0)),
                                 V::load(m[v], reinterpret_cast<const T*>(from) + v * V::lanes));
                    }
                    if (++t == taps)
                    {
                        t = 0;
                        ++c;
                    }
                }
            }
        };

        /// grid_s [Cg, L] for the samples s in [0, N) and groups g in [0, G) as described at the
        /// top of this file: W [G * Cg, K] row-major, sample s's group g reading the plane at
        /// plane + s * plane_stride + g * Cp * win.plane() and writing the grid at
        /// grid + s * grid_stride + g * Cg * L; bias [G * Cg] or null. Requires
        /// weight_stream_applies but for N.
        template <class T>
        void weight_stream_forward(const window2d& win,
                                   const conv_taps& taps,
                                   std::int64_t Cp,
                                   std::int64_t Cg,
                                   std::int64_t G,
                                   std::int64_t N,
                                   const T* W,
                                   const T* plane,
                                   std::int64_t plane_stride,
                                   T* grid,
                                   std::int64_t grid_stride,
                                   const T* bias)
        {
            using traits = gemm_traits<T>;
            using V = simd512<T>;
            constexpr std::size_t MR = weight_stream_mr, NR = traits::nr, LANES = traits::lanes;
            constexpr auto mr = static_cast<std::int64_t>(MR), nr = static_cast<std::int64_t>(NR), lanes = static_cast<std::int64_t>(LANES);
            const std::int64_t K = Cp * win.taps(), L = win.blocks();
            const std::int64_t Lf = L / lanes * lanes;
            const bool last = L > Lf;                              // one position past the whole vectors
            const std::int64_t q_panels = (L + nr - 1) / nr;       // packed panels of columns, the last position's included
            const std::int64_t main_panels = (Lf + nr - 1) / nr;   // those with whole vectors
            const std::int64_t panels = (Cg + mr - 1) / mr;        // register panels of channels
            const bool edge = Cg % mr != 0;
            const std::int64_t ld_edge = main_panels * nr;
            if (N <= 0 || G <= 0 || Lf == 0)  // (the rule leaves no layer without a whole vector)
            {
                return;
            }

            // Per thread and unit of depth: the packed columns, and the last position's along k.
            const std::size_t per_k = static_cast<std::size_t>(q_panels * nr + (last ? 1 : 0)) * sizeof(T);
            const std::int64_t threads = conv_threads();
            const bool parallel = threads > 1 && panels >= 2 * threads
                                  && static_cast<double>(Cg) * static_cast<double>(K) * static_cast<double>(L) >= 2097152.0;
            const std::int64_t parts = parallel ? threads : 1;
            // The call's own buffers: the last position's vector accumulators ([Cg + mr][lanes],
            // the last channel panel's rows past Cg landing in the spare rows), and the rows past
            // Cg of the last channel panel.
            const std::size_t dots_n = last ? static_cast<std::size_t>((Cg + mr) * lanes) : 0, edge_n = edge ? MR * static_cast<std::size_t>(ld_edge) : 0;
            const std::size_t shared_bytes = (dots_n + edge_n) * sizeof(T);
            const std::size_t limit = scratch_limit();
            const std::size_t room = (limit > shared_bytes ? limit - shared_bytes : 0) / static_cast<std::size_t>(parts);
            const std::size_t KC = weight_stream_kc<T>(per_k, room);
            const bool shifted = packs_by_shifting(win);
            const shifted_plane_packer<T> shifted_packer(win, taps, shifted ? q_panels : 0);
            aligned_buffer<T> shared_buf;
            T* const dots = shared_buf.get(dots_n + edge_n);
            T* const edge_tile = dots + dots_n;

            // The channel panels [p0, p1) of every sample and group, by one thread.
            const auto run = [&](std::int64_t p0, std::int64_t p1) {
                if (p0 >= p1)
                {
                    return;
                }
                const auto uK = static_cast<std::size_t>(K);
                const std::size_t kc_max = std::min(KC, (uK + LANES - 1) / LANES * LANES);
                T* const cols = conv_workspace<T>::local().tile.get_for_step(kc_max * static_cast<std::size_t>(q_panels * nr + (last ? 1 : 0)));
                T* const cols_last = cols + kc_max * static_cast<std::size_t>(q_panels * nr);
                for (std::int64_t n = 0; n < N; ++n)
                {
                    for (std::int64_t g = 0; g < G; ++g)
                    {
                        const T* Wg = W + g * Cg * K;
                        T* out = grid + n * grid_stride + g * Cg * L;
                        const T* const src = plane + n * plane_stride + g * Cp * win.plane();
                        for (std::size_t pc = 0; pc < uK; pc += KC)
                        {
                            const std::size_t kc = std::min(KC, uK - pc);
                            const bool load_c = pc > 0;
                            // cols [kc, L] as packed panels of nr positions (the last one
                            // included), then the last position's column along k (zeros up to a
                            // whole vector).
                            for (std::int64_t qp = 0; qp < q_panels; ++qp)
                            {
                                T* const panel = cols + static_cast<std::size_t>(qp) * kc_max * NR;
                                if (shifted)
                                {
                                    shifted_packer(src, pc, kc, qp, panel);
                                }
                                else
                                {
                                    im2col_b_packer<T>{src, &win, &taps, 0}(pc, kc, static_cast<std::size_t>(qp * nr),
                                                                            static_cast<std::size_t>(std::min(nr, L - qp * nr)), panel);
                                }
                            }
                            if (last)
                            {
                                const T* col = cols + static_cast<std::size_t>(Lf / nr) * kc_max * NR + static_cast<std::size_t>(Lf % nr);
                                for (std::size_t k = 0; k < kc; ++k)
                                {
                                    cols_last[k] = col[k * NR];
                                }
                                std::fill(cols_last + kc, cols_last + (kc + LANES - 1) / LANES * LANES, T(0));
                            }
                            for (std::int64_t p = p0; p < p1; ++p)
                            {
                                const std::int64_t c0 = p * mr, valid = std::min(mr, Cg - c0);
                                const T* rows[MR];
                                for (std::int64_t r = 0; r < mr; ++r)
                                {
                                    // Rows past Cg (last panel) repeat the last row; their results
                                    // go to the edge tile and the spare rows of dots.
                                    rows[r] = Wg + (c0 + std::min(r, valid - 1)) * K + static_cast<std::int64_t>(pc);
                                }
                                // the panel's bias, added by the kernels' epilogue in the last depth block
                                const bool last_block = bias != nullptr && pc + kc == uK;
                                T bias_rows[MR] = {};
                                for (std::int64_t r = 0; last_block && r < mr; ++r)
                                {
                                    bias_rows[r] = bias[g * Cg + c0 + std::min(r, valid - 1)];
                                }
                                T* const c = valid == mr ? out + c0 * L : edge_tile;
                                const std::int64_t ldc = valid == mr ? L : ld_edge;
                                // [mr, nv * lanes] (+)= W rows [mr, kc] x cols panel [kc, nv * lanes],
                                // and in the last panel [mr] (+)= W rows [mr, kc] . cols_last [kc]
                                for (std::int64_t qp = 0; qp < main_panels; ++qp)
                                {
                                    const auto nv = static_cast<std::size_t>(std::min(nr, Lf - qp * nr) / lanes);
                                    const bool dot = last && qp == main_panels - 1;
                                    weight_stream_kernel<T>(nv, dot)(kc, rows, cols + static_cast<std::size_t>(qp) * kc_max * NR, c + qp * nr, ldc,
                                                                     load_c, cols_last, dots + c0 * lanes, last_block ? bias_rows : nullptr);
                                }
                            }
                        }
                        // The edge rows into the grid; the last position's lanes added, plus the bias.
                        for (std::int64_t p = p0; p < p1; ++p)
                        {
                            const std::int64_t c0 = p * mr, valid = std::min(mr, Cg - c0);
                            for (std::int64_t r = 0; r < valid; ++r)
                            {
                                const std::int64_t ch = c0 + r;
                                T* row = out + ch * L;
                                if (valid < mr)
                                {
                                    std::copy(edge_tile + r * ld_edge, edge_tile + r * ld_edge + Lf, row);
                                }
                                if (last)
                                {
                                    row[Lf] = V::reduce_add(V::loadu(dots + ch * lanes)) + (bias != nullptr ? bias[g * Cg + ch] : T(0));
                                }
                            }
                        }
                    }
                }
            };

#if defined(XCONV_USE_OPENMP)
            if (parallel)
            {
                const std::uint64_t epoch = current_scratch_epoch();
#pragma omp parallel num_threads(static_cast<int>(parts))
                {
                    const scratch_join join(epoch);
                    const std::int64_t me = omp_get_thread_num(), n_threads = omp_get_num_threads();
                    run(panels * me / n_threads, panels * (me + 1) / n_threads);
                }
                return;
            }
#endif
            run(0, panels);
        }
#endif
    }  // namespace detail
}  // namespace xconv

#endif
