// xconv: the three lowered passes every convolution is built from, each a sequence of GEMMs over
// tiles of output positions.
//
// One sample, one group. The "plane" is what im2col reads and col2im writes: Cp channels of
// win.height x win.width. The "grid" is Cg rows of L = win.blocks() values, one per sliding
// block. The weight is [Cg, K] row-major with K = Cp*kh*kw. For conv2d the plane is the input and
// the grid the output; for conv_transpose2d the other way round.
//
//   forward           grid [Cg, L]  = W [Cg, K] x cols(plane) [K, L]  (+ bias per row)
//   backward-data     plane         = col2im( W^T [K, Cg] x grid [Cg, L] )  (+ bias per channel)
//   backward-weights  Wgrad [Cg, K] += grid [Cg, L] x cols(plane)^T [L, K]
//
// How each runs:
//   * 1x1 kernels with stride 1 and no padding: cols(plane) is the plane itself, read (or, for
//     backward-data, written) directly by the GEMM.
//   * forward of one sample with few positions (weight_stream_applies): W read in place by the
//     micro-kernel, the few columns packed (conv_weight_stream.hpp; forward_over_batch).
//   * forward over a batch, when a group has a register panel of output channels: the implicit
//     GEMM of conv_implicit.hpp, C^T = cols^T W^T with cols^T read in place by the micro-kernel
//     (forward_over_batch; also conv_transpose2d's backward-input). Otherwise:
//   * forward: the im2col is done by the GEMM's B packer (im2col_b_packer), straight from the
//     plane into packed panels, tile by tile of positions; the bias is added by the GEMM's
//     epilogue. A narrow output (L below two register panels, e.g. 7 x 7) is computed transposed,
//     C^T = cols^T W^T, with the im2col in the A packer, so that the register tile is not mostly
//     padding; its epilogue stores the tile back transposed.
//   * backward-data: per tile of positions, the GEMM's output [K, tile] lands in scratch and is
//     scattered into the plane by col2im_tile (in parallel over channels when asked).
//   * backward-weights, over the batch, in blocks of columns [k_begin, k_end) of the weight (so
//     that threads can share one gradient by columns): the implicit GEMM of conv_implicit.hpp,
//     Wgrad^T = cols grid^T with cols read in place (implicit_backward_weight), when a group has
//     a register panel of grid channels and the batch enough positions. Otherwise, per sample
//     and tile of positions, im2col_tile builds [rows, tile] of the columns in scratch and the
//     GEMM accumulates. Both sum every element in the same order.
//   * few channels per group (prefer_direct, e.g. depthwise): the GEMM-free loops of direct.hpp.
//
// Every element of every result is one accumulation chain in a fixed order (the GEMM's contract;
// col2im_tile's tap order), so tile sizes, the scratch limit and the thread count change no bit.
// The passes call the built-in GEMM driver directly (the fused packers have no BLAS
// equivalent), with or without XCONV_USE_BLAS.
#ifndef XCONV_DETAIL_CONV_LOWERED_HPP
#define XCONV_DETAIL_CONV_LOWERED_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>

#include "../options.hpp"
#include "aligned_buffer.hpp"
#include "conv_pack.hpp"
#include "conv_implicit.hpp"
#include "conv_parallel.hpp"
#include "conv_scratch.hpp"
#include "conv_weight_stream.hpp"
#include "direct.hpp"
#include "gemm_driver.hpp"
#include "gemm_pack.hpp"
#include "gemm_traits.hpp"
#include "gemm_view.hpp"

namespace xconv
{
    namespace detail
    {
        /// True when im2col would copy the plane unchanged (1x1 kernel, stride 1, no padding).
        inline bool is_identity(const window2d& w) noexcept
        {
            return w.kernel_h == 1 && w.kernel_w == 1 && w.stride_h == 1 && w.stride_w == 1 && w.pad_top == 0
                   && w.pad_left == 0 && w.blocks_h == w.height && w.blocks_w == w.width;
        }

        /// Bytes of the GEMM's packed A block (one per thread taking part).
        template <class T>
        constexpr std::size_t gemm_a_block_bytes() noexcept
        {
            return gemm_traits<T>::mc * gemm_traits<T>::kc * sizeof(T);
        }

        /// Room for the GEMM's packed B block when half of `budget` holds a tile and the other
        /// half holds the packed A and B blocks.
        template <class T>
        constexpr std::size_t gemm_b_room(std::size_t budget) noexcept
        {
            return budget / 2 > gemm_a_block_bytes<T>() ? budget / 2 - gemm_a_block_bytes<T>() : 0;
        }

        /// Depth of the GEMM's packed blocks for a product of depth K.
        template <class T>
        constexpr std::size_t gemm_depth_block(std::int64_t K) noexcept
        {
            return std::min<std::size_t>(gemm_traits<T>::kc, static_cast<std::size_t>(K));
        }

        /// Tile of output positions: as many as `budget` bytes allow at `per_position` bytes each
        /// on top of `fixed`, whole register panels, at least one panel, the L positions split
        /// into tiles of equal size.
        template <class T>
        std::int64_t position_tile(std::int64_t L, std::size_t per_position, std::size_t fixed, std::size_t budget) noexcept
        {
            const auto NR = static_cast<std::int64_t>(gemm_traits<T>::nr);
            const std::size_t room = budget > fixed ? budget - fixed : 0;
            std::int64_t t = static_cast<std::int64_t>(room / std::max<std::size_t>(per_position, 1)) / NR * NR;
            t = std::max(t, NR);
            if (t >= L)
            {
                return L;
            }
            const std::int64_t tiles = (L + t - 1) / t;
            const std::int64_t even = (L + tiles - 1) / tiles;
            return std::min(L, (even + NR - 1) / NR * NR);
        }

        /// Whether a GEMM whose output has `L` columns is better computed transposed: fewer
        /// columns than four register panels (the last, partial one then costs a noticeable
        /// share; measured on 14 x 14 and 7 x 7 outputs), and rows enough to fill the transposed
        /// tile.
        template <class T>
        bool narrow_output(std::int64_t L, std::int64_t rows) noexcept
        {
            return L < 4 * static_cast<std::int64_t>(gemm_traits<T>::nr) && rows >= static_cast<std::int64_t>(gemm_traits<T>::nr);
        }

        /// How a pass reads the weight W_g [Cg, K] of a group when it is packed once per call
        /// (prepack_a / prepack_b of gemm_pack.hpp) rather than once per GEMM.
        enum class weight_operand
        {
            forward_a,        // lowered_forward: A = W_g [Cg, K]
            forward_batch_b,  // lowered_forward_batch: B = W_g^T [K, Cg]
            backward_data_a   // lowered_backward_data: A = W_g^T [K, Cg]
        };

        /// The weights of all groups of a call, packed once for the GEMMs of every sample (data
        /// null when they are not packed: the passes then pack per GEMM).
        /// The buffer is the call's own and is freed with it, so that it does not stay resident
        /// next to the per-thread buffers that later calls reuse.
        template <class T>
        struct packed_weights
        {
            aligned_buffer<T> storage;
            const T* data = nullptr;
            std::size_t group_elements = 0;
            std::size_t bytes = 0;  // scratch taken, to be left out of the passes' budgets

            const T* group(std::int64_t g) const noexcept
            {
                return data == nullptr ? nullptr : data + static_cast<std::size_t>(g) * group_elements;
            }
        };

        /// Whether weights of `bytes` (all groups, packed) are packed once for a call: when they
        /// serve more than one sample and reserve_call_scratch finds room for them (the values
        /// are the same either way: only the work of packing them per GEMM is saved).
        inline bool packs_once(std::size_t bytes, std::int64_t samples)
        {
            return samples > 1 && reserve_call_scratch(bytes);
        }

        /// Packed weights at least this large are packed by all the threads of the call, each a
        /// share of the panels (smaller ones cost less than starting the threads).
        inline constexpr std::size_t parallel_pack_bytes = std::size_t(512) << 10;

        /// Packs `units` pieces of a weight of `bytes` in all (groups, or groups x phases): calls
        /// pack(unit, part, parts) for every unit and every one of its `parts` shares (prepack_a /
        /// prepack_b's shares), over the threads when the weight is at least parallel_pack_bytes,
        /// else once per unit with parts = 1.
        template <class Pack>
        void pack_in_shares(std::int64_t units, std::size_t bytes, Pack&& pack)
        {
            const std::int64_t threads = conv_threads();
            const std::int64_t parts = threads > 1 && bytes >= parallel_pack_bytes ? 4 * threads : 1;
            conv_parallel_for(units * parts, parts > 1, [&](std::int64_t t) {
                pack(t / parts, static_cast<std::size_t>(t % parts), static_cast<std::size_t>(parts));
            });
        }

        /// The weights of G groups packed once for the call (packs_once), `per` elements a group:
        /// pack(g, part, parts, dst) writes the part-th of `parts` shares of group g's panels
        /// (prepack_a / prepack_b's shares) into dst, the start of group g's. Large weights are
        /// packed by the threads together (the same values: packing only moves them). Empty
        /// (data null) when they are not packed.
        template <class T, class Pack>
        packed_weights<T> pack_weights_once(std::int64_t G, std::size_t per, std::int64_t samples, Pack&& pack)
        {
            packed_weights<T> r;
            const std::size_t bytes = per * static_cast<std::size_t>(G) * sizeof(T);
            if (!packs_once(bytes, samples))
            {
                return r;
            }
            T* dst = r.storage.get(per * static_cast<std::size_t>(G));
            pack_in_shares(G, bytes, [&](std::int64_t g, std::size_t part, std::size_t parts) {
                pack(g, part, parts, dst + static_cast<std::size_t>(g) * per);
            });
            r.data = dst;
            r.group_elements = per;
            r.bytes = bytes;
            return r;
        }

        /// Packs the weight [G * Cg, K] (group g's W_g at W + g * Cg * K) as the operand `how` of
        /// the passes, into a buffer of the call's, when packs_once allows it.
        template <class T>
        packed_weights<T> pack_weights(weight_operand how, const T* W, std::int64_t G, std::int64_t Cg, std::int64_t K,
                                       std::int64_t samples)
        {
            const auto uK = static_cast<std::size_t>(K), uCg = static_cast<std::size_t>(Cg);
            const std::size_t per = how == weight_operand::forward_a ? prepacked_a_size<T>(uCg, uK)
                                    : how == weight_operand::forward_batch_b ? prepacked_b_size<T>(uK, uCg)
                                                                             : prepacked_a_size<T>(uK, uCg);
            return pack_weights_once<T>(G, per, samples, [&](std::int64_t g, std::size_t part, std::size_t parts, T* d) {
                const T* Wg = W + g * Cg * K;
                switch (how)
                {
                    case weight_operand::forward_a:
                        prepack_a<T>(strided_a_packer<T>{row_major(Wg, K)}, uCg, uK, d, part, parts);
                        break;
                    case weight_operand::forward_batch_b:
                        prepack_b<T>(strided_b_packer<T>{transposed(Wg, K)}, uK, uCg, d, part, parts);
                        break;
                    case weight_operand::backward_data_a:
                        prepack_a<T>(strided_a_packer<T>{transposed(Wg, K)}, uK, uCg, d, part, parts);
                        break;
                }
            });
        }

        /// grid [Cg, L] = W [Cg, K] x cols(plane) [K, L], plus bias[c] on row c when bias is not null.
        /// `stream`: the call's output is large (stream_output), write it past the caches where the
        /// pass can.
        template <class T>
        void lowered_forward(const window2d& win,
                             const conv_taps& taps,
                             std::int64_t Cp,
                             std::int64_t Cg,
                             const T* W,
                             const T* plane,
                             T* grid,
                             const T* bias,
                             std::size_t budget,
                             bool stream = false,
                             const T* packed_w = nullptr)
        {
            if (prefer_direct(Cp, Cg))
            {
                direct_forward(win, Cp, Cg, W, plane, grid, bias, budget, stream);
                return;
            }
            const std::int64_t K = Cp * win.taps();
            const std::int64_t L = win.blocks();
            const auto uK = static_cast<std::size_t>(K), uCg = static_cast<std::size_t>(Cg);
            const bool identity = is_identity(win);
            const std::size_t kc = gemm_depth_block<T>(K);

            const std::size_t transposed_bytes =
                static_cast<std::size_t>(L * Cg) * sizeof(T) + kc * uCg * sizeof(T) + 2 * gemm_a_block_bytes<T>();
            if (narrow_output<T>(L, Cg) && transposed_bytes <= std::max<std::size_t>(budget, 1 << 20))
            {
                // C^T [L, Cg] = cols^T [L, K] x W^T [K, Cg], stored back transposed (+ bias)
                const auto uL = static_cast<std::size_t>(L);
                T* ct = conv_workspace<T>::local().tile.get(uL * uCg);
                const strided_b_packer<T> pack_w{transposed(W, K)};
                const transposed_store_epilogue<T> store{grid, L, 0, bias};
                if (identity)
                {
                    gemm_driver<T>(uL, uCg, uK, strided_a_packer<T>{transposed(plane, L)}, pack_w, row_major(ct, Cg), false,
                                   store);
                }
                else
                {
                    gemm_driver<T>(uL, uCg, uK, im2col_t_a_packer<T>{plane, &win, &taps, 0}, pack_w, row_major(ct, Cg),
                                   false, store);
                }
                return;
            }

            const std::int64_t Lt = position_tile<T>(L, kc * sizeof(T), gemm_a_block_bytes<T>(), budget);
            const auto tiles = [&](const auto& pack_w) {
                for (std::int64_t l0 = 0; l0 < L; l0 += Lt)
                {
                    const auto n = static_cast<std::size_t>(std::min(Lt, L - l0));
                    const matrix_view<T> c = row_major(grid + l0, L);
                    // [Cg, K] x [K, n] -> [Cg, n], the positions l0 .. l0 + n
                    const auto run = [&](const auto& pack_b) {
                        if (bias != nullptr)
                        {
                            gemm_driver<T>(uCg, n, uK, pack_w, pack_b, c, false, conv_bias_epilogue<T>{bias});
                        }
                        else
                        {
                            gemm_driver<T>(uCg, n, uK, pack_w, pack_b, c, false);
                        }
                    };
                    if (identity)
                    {
                        run(strided_b_packer<T>{row_major(plane + l0, L)});
                    }
                    else
                    {
                        run(im2col_b_packer<T>{plane, &win, &taps, l0});
                    }
                }
            };
            if (packed_w != nullptr)
            {
                tiles(prepacked_a<T>{packed_w, uCg});
            }
            else
            {
                tiles(strided_a_packer<T>{row_major(W, K)});
            }
        }

        /// Whether lowered_forward_batch applies: a narrow output, several samples, no direct pass.
        template <class T>
        bool batch_narrow_forward(const window2d& win, std::int64_t Cp, std::int64_t Cg, std::int64_t N) noexcept
        {
            return N > 1 && !prefer_direct(Cp, Cg) && narrow_output<T>(win.blocks(), Cg);
        }

        /// lowered_forward for the samples [0, N) of one group at once, for narrow outputs: one GEMM
        /// C^T [N*L, Cg] = cols^T [N*L, K] x W^T [K, Cg] whose rows run over the samples (plane of
        /// sample s at plane + s * plane_stride, its grid at grid + s * grid_stride), so that the
        /// weight is packed once for all of them. In chunks of samples whose C^T fits the budget and
        /// the cache.
        /// Every element is the same accumulation chain as in lowered_forward.
        template <class T>
        void lowered_forward_batch(const window2d& win,
                                   const conv_taps& taps,
                                   std::int64_t Cp,
                                   std::int64_t Cg,
                                   const T* W,
                                   const T* plane,
                                   std::int64_t plane_stride,
                                   T* grid,
                                   std::int64_t grid_stride,
                                   std::int64_t N,
                                   const T* bias,
                                   std::size_t budget,
                                   const T* packed_wt = nullptr)
        {
            const std::int64_t K = Cp * win.taps();
            const std::int64_t L = win.blocks();
            const auto uK = static_cast<std::size_t>(K), uCg = static_cast<std::size_t>(Cg);
            const std::size_t fixed = gemm_depth_block<T>(K) * uCg * sizeof(T) + 2 * gemm_a_block_bytes<T>();
            // C^T is revisited for every depth block of the GEMM: keep a chunk's C^T in cache.
            const std::size_t room = std::min(budget > fixed ? budget - fixed : 0, cache_tile_bytes);
            const std::int64_t chunk =
                std::clamp<std::int64_t>(static_cast<std::int64_t>(room / (static_cast<std::size_t>(L) * uCg * sizeof(T))), 1, N);
            T* ct = conv_workspace<T>::local().tile.get(static_cast<std::size_t>(chunk * L) * uCg);
            const auto chunks = [&](const auto& pack_w) {
                for (std::int64_t s0 = 0; s0 < N; s0 += chunk)
                {
                    const std::int64_t s1 = std::min(N, s0 + chunk);
                    // C^T [(s1 - s0)*L, Cg] = cols^T [(s1 - s0)*L, K] x W^T [K, Cg], stored back transposed (+ bias)
                    im2col_t_a_packer<T> pack_cols{plane + s0 * plane_stride, &win, &taps, 0};
                    pack_cols.plane_stride = plane_stride;
                    transposed_store_epilogue<T> store{grid + s0 * grid_stride, L, 0, bias};
                    store.grid_stride = grid_stride;
                    gemm_driver<T>(static_cast<std::size_t>((s1 - s0) * L), uCg, uK, pack_cols, pack_w, row_major(ct, Cg),
                                   false, store);
                }
            };
            if (packed_wt != nullptr)
            {
                chunks(prepacked_b<T>{packed_wt, uCg});
            }
            else
            {
                chunks(strided_b_packer<T>{transposed(W, K)});
            }
        }

        /// Scratch budget of a pass run by one caller whose GEMMs use `threads` threads: the
        /// other threads each hold a packed A block.
        /// `reserved`: scratch bytes the call already holds (e.g. its packed weights).
        template <class T>
        std::size_t shared_budget(std::int64_t threads, std::size_t reserved = 0) noexcept
        {
            const std::size_t others = static_cast<std::size_t>(threads - 1) * gemm_a_block_bytes<T>() + reserved;
            const std::size_t limit = scratch_limit();
            return limit > others ? limit - others : 0;
        }

        /// The share of each of `threads` threads when a pass given shared_budget<T>(threads, .)
        /// splits its work between them instead: the budget with the other threads' A blocks
        /// (which shared_budget left out, and each thread's tiling counts its own) added back,
        /// divided between the threads.
        template <class T>
        std::size_t split_shared_budget(std::size_t budget, std::int64_t threads) noexcept
        {
            const auto n = static_cast<std::size_t>(std::max<std::int64_t>(threads, 1));
            return (budget + (n - 1) * gemm_a_block_bytes<T>()) / n;
        }

        /// plane = col2im( W^T [K, Cg] x grid [Cg, L] ), plane overwritten, plus bias[c] on
        /// channel c when bias is not null. With `parallel`, the threads share out blocks of
        /// channels when there are channels enough, each doing its blocks' GEMMs and col2im;
        /// else the GEMMs parallelise themselves and col2im splits the channels between the
        /// threads.
        template <class T>
        void lowered_backward_data(const window2d& win,
                                   const conv_taps& taps,
                                   std::int64_t Cp,
                                   std::int64_t Cg,
                                   const T* W,
                                   const T* grid,
                                   T* plane,
                                   const T* bias,
                                   std::size_t budget,
                                   bool parallel,
                                   bool stream = false,
                                   const T* packed_wt = nullptr)
        {
            if (prefer_direct(Cp, Cg))
            {
                direct_backward_data(win, Cp, Cg, W, grid, plane, bias, budget, stream);
                return;
            }
            const std::int64_t K = Cp * win.taps();
            const std::int64_t L = win.blocks();
            const std::int64_t P = win.plane();
            const auto uK = static_cast<std::size_t>(K), uCg = static_cast<std::size_t>(Cg);
            if (is_identity(win))
            {
                // [Cp, Cg] x [Cg, n] -> [Cp, n], written straight into the plane
                const std::size_t kc = gemm_depth_block<T>(Cg);
                const std::int64_t Lt = position_tile<T>(L, kc * sizeof(T), gemm_a_block_bytes<T>(), budget);
                const auto tiles = [&](const auto& pack_wt) {
                    for (std::int64_t l0 = 0; l0 < L; l0 += Lt)
                    {
                        const auto n = static_cast<std::size_t>(std::min(Lt, L - l0));
                        const strided_b_packer<T> pack_g{row_major(grid + l0, L)};
                        if (bias != nullptr)
                        {
                            gemm_driver<T>(uK, n, uCg, pack_wt, pack_g, row_major(plane + l0, L), false,
                                           conv_bias_epilogue<T>{bias});
                        }
                        else
                        {
                            gemm_driver<T>(uK, n, uCg, pack_wt, pack_g, row_major(plane + l0, L), false);
                        }
                    }
                };
                if (packed_wt != nullptr)
                {
                    tiles(prepacked_a<T>{packed_wt, uK});
                }
                else
                {
                    tiles(strided_a_packer<T>{transposed(W, K)});
                }
                return;
            }

            if (L == 0)
            {
                conv_parallel_for(Cp, parallel, [&](std::int64_t c) {
                    std::fill(plane + c * P, plane + (c + 1) * P, bias != nullptr ? bias[c] : T(0));
                });
                return;
            }
            // Tiles of Cb whole channels (Cb*taps rows) x Lt positions, small enough to stay in
            // cache between the GEMM that writes them and the col2im that reads them, and about
            // square when both are large: the GEMM packs its A block (the rows of W^T) and its B
            // block (the positions of the grid) again for every tile. With threads, the blocks of
            // channels are shared out, each thread running the GEMM and the col2im of its own
            // (the same sums, in the same order): a tile is then summed by the thread that wrote
            // it, and neighbouring channels' planes are written by one thread.
            const std::int64_t threads = parallel ? conv_threads() : 1;
            const bool split = conv_split_tasks(Cp, threads);
            // The caller's budget is a shared_budget (the GEMMs sharing the threads).
            const std::size_t thread_budget = split ? split_shared_budget<T>(budget, threads) : budget;
            const std::int64_t taps_n = win.taps();
            const bool transposed_tile = narrow_output<T>(L, K);
            const auto NR = static_cast<std::int64_t>(gemm_traits<T>::nr);
            const auto tile_elems = static_cast<std::int64_t>(
                std::max(std::min(thread_budget / 2, cache_tile_bytes) / sizeof(T), static_cast<std::size_t>(taps_n * NR)));
            // Besides the tile, the GEMM packs an A block and a B block of depth kc: the grid's
            // positions (B = grid [Cg, Lt]), or for a transposed tile the weight's columns.
            const std::size_t kc = gemm_depth_block<T>(Cg);
            std::int64_t Lt = L;
            if (!transposed_tile)
            {
                const auto side = static_cast<std::int64_t>(std::sqrt(static_cast<double>(tile_elems)));
                Lt = K * std::min(L, side) <= tile_elems ? tile_elems / K : side;
                Lt = std::min(Lt, static_cast<std::int64_t>(gemm_b_room<T>(thread_budget) / (kc * sizeof(T))));
                Lt = std::max(NR, Lt / NR * NR);
                if (Lt < L)
                {
                    const std::int64_t tiles = (L + Lt - 1) / Lt;
                    Lt = std::min(L, ((L + tiles - 1) / tiles + NR - 1) / NR * NR);
                }
                Lt = std::min(Lt, L);
            }
            std::int64_t Cb = std::clamp<std::int64_t>(tile_elems / (Lt * taps_n), 1, Cp);
            if (transposed_tile)
            {
                // The B block holds kc x (Cb * taps) weights: with the tile and the A block,
                // within the thread's budget.
                const std::size_t fixed = gemm_a_block_bytes<T>() + kc * static_cast<std::size_t>(NR) * sizeof(T);
                const std::size_t per_channel = static_cast<std::size_t>(taps_n) * (static_cast<std::size_t>(Lt) + kc) * sizeof(T);
                Cb = std::min(Cb, std::max<std::int64_t>(1, static_cast<std::int64_t>((thread_budget > fixed ? thread_budget - fixed : 0) / per_channel)));
            }
            if (split)
            {
                // A whole number of blocks per thread, as even as the channels allow.
                const std::int64_t rounds = (Cp + threads * Cb - 1) / (threads * Cb);
                Cb = std::max<std::int64_t>(1, (Cp + threads * rounds - 1) / (threads * rounds));
            }
            // A packed W^T is read from a row that starts a register panel: whole panels per block.
            const bool use_packed = packed_wt != nullptr && !transposed_tile;
            if (use_packed && Cb < Cp)
            {
                const auto MR = static_cast<std::int64_t>(gemm_traits<T>::mr);
                const std::int64_t step = MR / std::gcd(taps_n, MR);
                Cb = std::min(Cp, std::max(step, Cb / step * step));
            }
            const std::int64_t blocks = (Cp + Cb - 1) / Cb;
            conv_parallel_for(blocks, split, [&](std::int64_t b) {
                const std::int64_t c0 = b * Cb, c1 = std::min(Cp, c0 + Cb);
                const std::int64_t k0 = c0 * taps_n, kn = (c1 - c0) * taps_n;
                const auto ukn = static_cast<std::size_t>(kn);
                T* tile = conv_workspace<T>::local().tile.get(static_cast<std::size_t>(Cb * taps_n * Lt));
                conv_segment* segs = conv_segments(conv_segment_slot::pass, static_cast<std::size_t>(max_segments(Lt, win.blocks_w)));
                for (std::int64_t l0 = 0; l0 < L; l0 += Lt)
                {
                    const std::int64_t n = std::min(Lt, L - l0);
                    const auto un = static_cast<std::size_t>(n);
                    if (transposed_tile)
                    {
                        // tile^T [n, kn] = grid^T [n, Cg] x W [Cg, k0 : k0 + kn]
                        gemm_driver<T>(un, ukn, uCg, strided_a_packer<T>{transposed(grid + l0, L)},
                                       strided_b_packer<T>{row_major(W + k0, K)}, row_major(tile, kn), false);
                    }
                    else if (use_packed)
                    {
                        // tile [kn, n] = W^T [k0 : k0 + kn, Cg] x grid [Cg, n]
                        gemm_driver<T>(ukn, un, uCg, prepacked_a<T>{packed_wt, uK, static_cast<std::size_t>(k0)},
                                       strided_b_packer<T>{row_major(grid + l0, L)}, row_major(tile, n), false);
                    }
                    else
                    {
                        // tile [kn, n] = W^T [k0 : k0 + kn, Cg] x grid [Cg, n]
                        gemm_driver<T>(ukn, un, uCg, strided_a_packer<T>{transposed(W + k0, K)},
                                       strided_b_packer<T>{row_major(grid + l0, L)}, row_major(tile, n), false);
                    }
                    const std::size_t n_segs = split_positions(win, l0, l0 + n, segs);
                    // the plane starts from the bias, set by the first tile of its channels
                    col2im_tile(tile, transposed_tile ? 1 : n, transposed_tile ? kn : 1, win, taps, c0, c1, segs, n_segs,
                                plane, parallel && !split, col2im_start<T>{l0 == 0, bias});
                }
            });
        }

        /// Wgrad [Cg, k_begin : k_end] (+)= grid [Cg, L] x cols(plane)^T [L, k_begin : k_end]
        /// (Wgrad has leading dimension K = Cp*kh*kw), added to the block when `accumulate`, else
        /// written over it (L must then be > 0). Not for the direct case (prefer_direct), which
        /// direct_backward_batch handles over the whole batch.
        template <class T>
        void lowered_backward_weight(const window2d& win,
                                     const conv_taps& taps,
                                     std::int64_t Cp,
                                     std::int64_t Cg,
                                     const T* grid,
                                     const T* plane,
                                     T* Wgrad,
                                     std::int64_t k_begin,
                                     std::int64_t k_end,
                                     std::size_t budget,
                                     bool accumulate)
        {
            const std::int64_t K = Cp * win.taps();
            const std::int64_t L = win.blocks();
            const std::int64_t kn = k_end - k_begin;
            const auto ukn = static_cast<std::size_t>(kn), uCg = static_cast<std::size_t>(Cg);
            const matrix_view<T> c = row_major(Wgrad + k_begin, K);
            // Depth = positions: the packed blocks hold kc positions of [Cg] and of [kn] each.
            const std::size_t kc = gemm_traits<T>::kc;
            const std::size_t fixed = gemm_a_block_bytes<T>() + kc * ukn * sizeof(T);
            if (is_identity(win))
            {
                // [Cg, L] x [L, kn] -> [Cg, kn]
                gemm_driver<T>(uCg, ukn, static_cast<std::size_t>(L), strided_a_packer<T>{row_major(grid, L)},
                               strided_b_packer<T>{transposed(plane + k_begin * L, L)}, c, accumulate);
                return;
            }
            const std::int64_t Lt = position_tile<T>(L, ukn * sizeof(T), fixed, std::min(budget, fixed + cache_tile_bytes));
            T* cols = conv_workspace<T>::local().tile.get(ukn * static_cast<std::size_t>(Lt));
            conv_segment* segs = conv_segments(conv_segment_slot::pass, static_cast<std::size_t>(max_segments(Lt, win.blocks_w)));
            for (std::int64_t l0 = 0; l0 < L; l0 += Lt)
            {
                const std::int64_t n = std::min(Lt, L - l0);
                im2col_tile(plane, win, taps, k_begin, k_end, l0, l0 + n, segs, cols, n);
                // [Cg, n] x [n, kn] -> [Cg, kn], over the block for the first tile unless accumulating
                gemm_driver<T>(uCg, ukn, static_cast<std::size_t>(n), strided_a_packer<T>{row_major(grid + l0, L)},
                               strided_b_packer<T>{transposed(static_cast<const T*>(cols), n)}, c, accumulate || l0 > 0);
            }
        }

        /// Wgrad [Cg, k_begin : k_end] = sum over the samples n = 0 .. N - 1 of
        /// grid_of(n) [Cg, L] x cols(plane_of(n))^T [L, k_begin : k_end]: the implicit GEMM of
        /// conv_implicit.hpp when it applies, else lowered_backward_weight sample after sample
        /// (the same sums, bit for bit). N must be > 0.
        template <class T, class PlaneOf, class GridOf>
        void backward_weight_block(const window2d& win,
                                   const conv_taps& taps,
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
            {
                // A thread's blocks may take different routes (their widths differ by up to a
                // vector, and the implicit GEMM's buffers grow with the width): what an earlier
                // block's route asked of the thread's buffers is not used again, so it may be
                // given back when this block's route needs room.
                conv_workspace<T>::local().tile.shrink_asked(0);
                gemm_workspace<T>& gw = gemm_workspace<T>::local();
                gw.a.shrink_asked(0);
                gw.b.shrink_asked(0);
                gw.c.shrink_asked(0);
            }
            if (implicit_backward_weight<T>(win, Cp, Cg, N, plane_of, grid_of, Wgrad, k_begin, k_end, budget))
            {
                return;
            }
            for (std::int64_t n = 0; n < N; ++n)
            {
                const T* plane = plane_of(n);
                lowered_backward_weight(win, taps, Cp, Cg, grid_of(n), plane, Wgrad, k_begin, k_end, budget, n > 0);
            }
        }

        // ------------------------------------------------------------------ over a batch

        /// Scratch bytes of each of `threads` threads running one task each, when the call already
        /// holds `reserved` bytes.
        inline std::size_t split_budget(std::int64_t threads, std::size_t reserved = 0) noexcept
        {
            const std::size_t limit = scratch_limit();
            return (limit > reserved ? limit - reserved : 0) / static_cast<std::size_t>(std::max<std::int64_t>(threads, 1));
        }

        /// Calls f(n, g, budget, inner) for every sample n < N and group g < G: one task per
        /// thread when there are enough (each then runs serially), else one after the other with
        /// `inner` set when the pass should use the threads itself. `reserved`: scratch bytes the
        /// call already holds, left out of the budgets.
        template <class T, class F>
        void for_each_sample_group(std::int64_t N, std::int64_t G, F&& f, std::size_t reserved = 0)
        {
            const std::int64_t threads = conv_threads();
            const bool split = conv_split_tasks(N * G, threads);
            const std::size_t budget = split ? split_budget(threads, reserved) : shared_budget<T>(threads, reserved);
            const bool inner = !split && threads > 1;
            conv_parallel_for(N * G, split, [&](std::int64_t t) { f(t / G, t % G, budget, inner); });
        }

        /// Calls f(g, n0, n1, budget) for every group g < G and share [n0, n1) of the N samples:
        /// one share per thread when there are enough (groups x shares) tasks, each task then
        /// serial with `budget` bytes of scratch; else one share of all samples, the tasks one
        /// after the other, each free to use the threads itself. `reserved`: scratch bytes the
        /// call already holds (its packed weights), left out of the budgets.
        template <class T, class F>
        void for_each_sample_share(std::int64_t G, std::int64_t N, std::size_t reserved, F&& f)
        {
            const std::int64_t threads = conv_threads();
            const std::int64_t parts = std::min(threads, N);
            const bool split = conv_split_tasks(G * parts, threads);
            const std::size_t budget = split ? split_budget(threads, reserved) : shared_budget<T>(threads, reserved);
            const std::int64_t shares = split ? parts : 1;
            conv_parallel_for(G * shares, split, [&](std::int64_t t) {
                const std::int64_t g = t / shares, part = t % shares;
                f(g, N * part / shares, N * (part + 1) / shares, budget);
            });
        }

        /// Whether the implicit GEMM computes a forward pass over `win` with Cp plane channels and
        /// Cg grid channels per group. It saves the im2col packing but stores its result
        /// transposed: it pays unless the product is shallow (below 128, measured on the suite's
        /// 7 x 7 stem, K = 147), and for narrow outputs, computed transposed anyway. Few channels
        /// per group go to the direct passes instead.
        ///
        /// A 1 x 1 window read in place (is_identity) is the one case where the two makers'
        /// cores measured the other way round, so there the choice is the processor's
        /// (route_maker). The implicit tile's rows step through the channels a whole plane
        /// apart, where the packed GEMM copies each plane's run of positions once. Implicit time /
        /// packed time, in one process or alternating processes, medians:
        ///   Intel Xeon (AVX-512): the suite's 56 x 56 layer (256 -> 64 channels) 1.45 (float32,
        ///     1 thread), 1.41 to 1.68 at 2 threads and in float64; 28 x 28 (512 -> 128) 0.96 at
        ///     1 thread but 1.15 at 2 and 1.13 in float64; level at 14 x 14.
        ///   AMD Zen 4: 56 x 56 0.78 (float32, 1 thread), 0.71 at 2 threads, 0.77 and 0.81 in
        ///     float64; 28 x 28 0.90, 0.85, 0.88, 0.87; 14 x 14 (1024 -> 256) 1.05 and 1.03 in
        ///     float32, 0.92 and 0.89 in float64.
        /// So the implicit GEMM on AMD's cores, the packed one elsewhere; narrow outputs keep the
        /// implicit one everywhere.
        template <class T>
        bool use_implicit(const window2d& win, std::int64_t Cp, std::int64_t Cg) noexcept
        {
            const bool narrow = narrow_output<T>(win.blocks(), Cg);
            const bool deep = Cp * win.taps() >= 128 && (!is_identity(win) || route_maker() == cpu_maker::amd);
            return !prefer_direct(Cp, Cg) && implicit_forward_applies<T>(win, Cp, Cg) && (narrow || deep);
        }

        /// A B packer (gemm_pack.hpp) of the columns [col0, col0 + N) of another's operand.
        template <class Packer>
        struct column_block_packer
        {
            Packer inner;
            std::size_t col0;

            template <class T>
            void operator()(std::size_t k0, std::size_t kc, std::size_t j0, std::size_t nc, T* dst) const noexcept
            {
                inner(k0, kc, col0 + j0, nc, dst);
            }

            /// has_k_contiguous (conv_implicit.hpp), when the inner packer has it.
            template <class P = Packer, class = std::enable_if_t<has_k_contiguous<P>::value>>
            auto k_contiguous(std::size_t k0, std::size_t j0, std::ptrdiff_t& ld) const noexcept
            {
                return inner.k_contiguous(k0, col0 + j0, ld);
            }
        };

        /// Grid channels per block of a weight W^T [K, Cg] (G groups) too large to pack once for a
        /// call: whole register panels, as few even blocks as fit three quarters of the scratch
        /// `limit`; Cg (no blocks) when even one panel does not.
        template <class T>
        std::int64_t implicit_column_block(std::size_t K, std::int64_t Cg, std::int64_t G, std::size_t limit) noexcept
        {
            constexpr std::size_t NR = gemm_traits<T>::nr;
            const std::size_t panel = prepacked_b_size<T>(K, NR) * sizeof(T) * static_cast<std::size_t>(G);
            const std::size_t panels = (static_cast<std::size_t>(Cg) + NR - 1) / NR;
            const std::size_t fit = panel == 0 ? panels : limit / 4 * 3 / panel;
            if (fit == 0 || fit >= panels)
            {
                return Cg;
            }
            const std::size_t blocks = (panels + fit - 1) / fit;
            return static_cast<std::int64_t>((panels + blocks - 1) / blocks * NR);
        }

        /// implicit_forward over a batch: sample n's group g reads the plane at plane + n *
        /// plane_stride + g * Cp * win.plane() and writes the grid at grid + n * grid_stride + g *
        /// Cg * L (+ bias + g * Cg); packer(g) is the B packer of group g's W^T [Cp * taps, Cg].
        /// W^T is packed once for the call when packs_once allows it; else, for several samples,
        /// in blocks of grid channels, each packed once for the call (implicit_column_block), the
        /// blocks one after the other; else panel by panel inside the GEMMs. The same values
        /// every way: each grid element is one fma chain over the whole depth.
        template <class T, class MakePacker>
        void implicit_over_batch(const window2d& win,
                                 std::int64_t Cp,
                                 std::int64_t Cg,
                                 std::int64_t G,
                                 std::int64_t N,
                                 MakePacker&& packer,
                                 const T* plane,
                                 std::int64_t plane_stride,
                                 T* grid,
                                 std::int64_t grid_stride,
                                 const T* bias)
        {
            const auto uK = static_cast<std::size_t>(Cp * win.taps()), uCg = static_cast<std::size_t>(Cg);
            const std::int64_t L = win.blocks();
            // The weight is packed for the call only in the room the threads' smallest tiles
            // leave beside it (implicit_bytes::floor): under a small limit the tiles come first,
            // and the weight is packed in blocks of channels, or panel by panel in the GEMMs.
            const std::size_t limit = scratch_limit();
            const std::size_t floors = static_cast<std::size_t>(conv_threads()) * implicit_bytes<T>(win, Cp, Cg, true).floor();
            const std::size_t room = limit > floors ? limit - floors : 0;
            const std::size_t whole_size = prepacked_b_size<T>(uK, uCg);
            const packed_weights<T> whole =
                whole_size * sizeof(T) * static_cast<std::size_t>(G) > room
                    ? packed_weights<T>{}
                    : pack_weights_once<T>(G, whole_size, N, [&](std::int64_t g, std::size_t part, std::size_t parts, T* d) {
                          prepack_b<T>(packer(g), uK, uCg, d, part, parts);
                      });
            // A weight too large to pack once for the call: block after block of grid channels,
            // each packed once for the call, so that the samples share the packing (blocks of
            // at most three quarters of the limit, and of the room the tiles leave).
            const std::size_t block_limit = room >= limit / 4 * 3 ? limit : room / 3 * 4;
            const std::int64_t cols = whole.data == nullptr && N > 1 ? implicit_column_block<T>(uK, Cg, G, block_limit) : Cg;
            for (std::int64_t j0 = 0; j0 < Cg; j0 += cols)
            {
                const std::int64_t nc = std::min(cols, Cg - j0);
                const auto block_packer = [&](std::int64_t g) { return column_block_packer<decltype(packer(g))>{packer(g), static_cast<std::size_t>(j0)}; };
                const packed_weights<T> block =
                    nc == Cg ? packed_weights<T>{}
                             : pack_weights_once<T>(G, prepacked_b_size<T>(uK, static_cast<std::size_t>(nc)), N,
                                                    [&](std::int64_t g, std::size_t part, std::size_t parts, T* d) {
                                                        prepack_b<T>(block_packer(g), uK, static_cast<std::size_t>(nc), d, part, parts);
                                                    });
                const packed_weights<T>& pw = nc == Cg ? whole : block;
                for_each_sample_share<T>(G, N, pw.bytes, [&](std::int64_t g, std::int64_t n0, std::int64_t n1, std::size_t budget) {
                    implicit_forward(win, Cp, nc, block_packer(g), plane + n0 * plane_stride + g * Cp * win.plane(), plane_stride,
                                     grid + n0 * grid_stride + (g * Cg + j0) * L, grid_stride, n1 - n0,
                                     bias != nullptr ? bias + g * Cg + j0 : nullptr, budget, pw.group(g));
                });
            }
        }

        /// The forward pass of a whole batch, when it runs as one GEMM per group and share of the
        /// samples: with the weight read in place for few positions (weight_stream_applies,
        /// conv_weight_stream.hpp), else computed transposed: the implicit GEMM (conv_implicit.hpp) when use_implicit,
        /// else, for narrow outputs, lowered_forward_batch. Sample n's group g reads the plane at
        /// plane + n * plane_stride + g * Cp * win.plane() and writes the grid at grid + n *
        /// grid_stride + g * Cg * L (+ bias + g * Cg). Returns false, having done nothing, when
        /// neither applies (the caller then runs lowered_forward per sample and group).
        template <class T>
        bool forward_over_batch(const window2d& win,
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
            const std::int64_t K = Cp * win.taps();
#if defined(XCONV_HAS_SIMD512)
            // (without AVX-512 the rule never applies and the route is not built)
            if (weight_stream_applies<T>(win, Cp, Cg, N))
            {
                weight_stream_forward<T>(win, taps, Cp, Cg, G, N, W, plane, plane_stride, grid, grid_stride, bias);
                return true;
            }
#endif
            if (use_implicit<T>(win, Cp, Cg) && implicit_fits_limit<T>(win, Cp, Cg))
            {
                implicit_over_batch<T>(win, Cp, Cg, G, N, [&](std::int64_t g) { return strided_b_packer<T>{transposed(W + g * Cg * K, K)}; },
                                       plane, plane_stride, grid, grid_stride, bias);
                return true;
            }
            if (!batch_narrow_forward<T>(win, Cp, Cg, N))
            {
                return false;
            }
            const std::int64_t L = win.blocks();
            const packed_weights<T> pw = pack_weights(weight_operand::forward_batch_b, W, G, Cg, K, N);
            for_each_sample_share<T>(G, N, pw.bytes, [&](std::int64_t g, std::int64_t n0, std::int64_t n1, std::size_t budget) {
                lowered_forward_batch(win, taps, Cp, Cg, W + g * Cg * K, plane + n0 * plane_stride + g * Cp * win.plane(), plane_stride,
                                      grid + n0 * grid_stride + g * Cg * L, grid_stride, n1 - n0,
                                      bias != nullptr ? bias + g * Cg : nullptr, budget, pw.group(g));
            });
            return true;
        }

        /// The backward-data pass of a stride-1 convolution over a batch, as the forward pass of
        /// the kernel turned by 180 degrees with its channel axes swapped (flipped_weight_b_packer)
        /// over the output gradient, bordered by dilation * (kernel - 1) - padding: one implicit
        /// GEMM per group and share of the samples, no col2im. Here the window `win` is the
        /// convolution's (plane = its input, [Cp, H, W]; grid = its output, [Cg, blocks]), W the
        /// weight [G * Cg, Cp, kh, kw]; sample n's group g reads the grid at grid + n * grid_stride +
        /// g * Cg * L and overwrites the plane at plane + n * plane_stride + g * Cp * H * W.
        /// bias [G * Cp] (or null) is added per plane channel: this is also the forward pass of a
        /// stride-1 conv_transpose2d. Returns false, having done nothing, when it does not apply:
        /// strides, padding beyond the kernel's reach, groups the implicit GEMM does not suit.
        template <class T>
        bool backward_data_as_forward(const window2d& win,
                                      std::int64_t Cp,
                                      std::int64_t Cg,
                                      std::int64_t G,
                                      std::int64_t N,
                                      const T* W,
                                      const T* grid,
                                      std::int64_t grid_stride,
                                      T* plane,
                                      std::int64_t plane_stride,
                                      const T* bias = nullptr)
        {
            const std::int64_t reach_h = win.dil_h * (win.kernel_h - 1), reach_w = win.dil_w * (win.kernel_w - 1);
            if (win.stride_h != 1 || win.stride_w != 1 || win.pad_top > reach_h || win.pad_left > reach_w)
            {
                return false;
            }
            window2d back = win;
            back.height = win.blocks_h;
            back.width = win.blocks_w;
            back.blocks_h = win.height;
            back.blocks_w = win.width;
            back.pad_top = reach_h - win.pad_top;
            back.pad_left = reach_w - win.pad_left;
            const std::int64_t taps = win.taps();
            // Only where the flipped kernel is packed once for the call at the default cap, whole
            // or in blocks of channels (implicit_over_batch): packed per GEMM (one sample, or a
            // larger weight) it costs more than it saves (measured on the 512-channel 7 x 7 layer,
            // one sample: -9%). The rule leaves out the cap the program sets, since this route and
            // col2im's sum in different orders: under a smaller cap the kernel is packed panel by
            // panel instead, with the same values.
            const auto uK = static_cast<std::size_t>(Cg * taps);
            const std::size_t packed_bytes = prepacked_b_size<T>(uK, static_cast<std::size_t>(Cp)) * static_cast<std::size_t>(G) * sizeof(T);
            if (!use_implicit<T>(back, Cg, Cp) || N < 2
                || (packed_bytes > default_scratch_limit / 4 * 3 && implicit_column_block<T>(uK, Cp, G, default_scratch_limit) == Cp))
            {
                return false;
            }
            implicit_over_batch<T>(back, Cg, Cp, G, N, [&](std::int64_t g) { return flipped_weight_b_packer<T>{W + g * Cg * Cp * taps, Cp, taps}; },
                                   grid, grid_stride, plane, plane_stride, bias);
            return true;
        }

        /// Computes a weight gradient as a sum over the batch. block(g, k_begin, k_end, budget)
        /// writes the columns [k_begin, k_end) of group g's [rows, K] gradient, summed over the
        /// whole batch in increasing n (backward_weight_block). The threads share the work by
        /// groups when there are enough, else by column ranges; each thread walks its columns in
        /// blocks that stay in cache while the whole batch streams past. Either way every element
        /// is accumulated by one thread, over n in order.
        template <class T, class Block>
        void accumulate_weight_grad(std::int64_t G, std::int64_t rows, std::int64_t K, Block&& block)
        {
            const std::int64_t threads = conv_threads();
            const auto lanes = static_cast<std::int64_t>(gemm_traits<T>::lanes);
            const std::int64_t cache_width =
                std::max(lanes, static_cast<std::int64_t>(cache_tile_bytes / sizeof(T)) / std::max<std::int64_t>(rows, 1) / lanes * lanes);
            // Under a tight budget, blocks narrow enough that the smallest tile of the lowered
            // pass (one register panel of positions, and its packed copy) and an A block fit it.
            const auto budget_width = [&](std::size_t budget) {
                const std::size_t a = gemm_a_block_bytes<T>();
                const std::size_t per_column = 2 * gemm_traits<T>::nr * sizeof(T);
                return std::max(lanes, static_cast<std::int64_t>((budget > a ? budget - a : 0) / per_column) / lanes * lanes);
            };
            // Blocks of even width (up to a vector): a narrow last block could take another
            // route than the others (the implicit GEMM where they could not);
            // backward_weight_block lets the earlier route's buffers go.
            const auto columns = [&](std::int64_t g, std::int64_t k_begin, std::int64_t k_end, std::size_t budget) {
                const std::int64_t widest = std::min(cache_width, budget_width(budget));
                const std::int64_t n_blocks = (k_end - k_begin + widest - 1) / widest;
                const std::int64_t width = n_blocks > 1 ? ((k_end - k_begin + n_blocks - 1) / n_blocks + lanes - 1) / lanes * lanes : widest;
                for (std::int64_t kb = k_begin; kb < k_end; kb += width)
                {
                    block(g, kb, std::min(k_end, kb + width), budget);
                }
            };
            if (conv_split_tasks(G, threads))
            {
                const std::size_t budget = scratch_per_thread(static_cast<std::size_t>(threads));
                conv_parallel_for(G, true, [&](std::int64_t g) { columns(g, 0, K, budget); });
                return;
            }
            const std::int64_t chunks = std::max<std::int64_t>(1, std::min(threads, (K + lanes - 1) / lanes));
            const std::int64_t width = ((K + chunks - 1) / chunks + lanes - 1) / lanes * lanes;
            const std::size_t budget = chunks > 1 ? scratch_per_thread(static_cast<std::size_t>(chunks)) : shared_budget<T>(threads);
            for (std::int64_t g = 0; g < G; ++g)
            {
                conv_parallel_for(chunks, chunks > 1, [&](std::int64_t c) {
                    const std::int64_t k_begin = std::min(K, c * width);
                    columns(g, k_begin, std::min(K, k_begin + width), budget);
                });
            }
        }

        /// The backward passes of a convolution whose groups have few channels (prefer_direct), over
        /// the batch. For sample n and group g: ahead(n, g) is told the (sample, group) the same
        /// thread takes next, to fetch its planes early (a hint), bias(n, g) adds its bias-gradient row sums,
        /// weight(n, g, partial, budget) adds its weight gradient to the group's partial sums
        /// (partial_size elements, zero at first) and data(n, g, budget) computes its input
        /// gradient; finish(g, partial) turns the partial sums into the group's weight gradient.
        /// Null-free: each callback checks whether its gradient is wanted.
        ///
        /// When the groups can be shared out (or there is one thread), each thread takes a range of
        /// groups and walks the batch once, doing all three for (n, g) together: the planes of dy
        /// are then read from memory once, in address order. Otherwise the three run separately,
        /// over groups (bias, weight) and over samples x groups (data). Either way a group's sums
        /// run over n in increasing order on one thread, so the results are the same.
        template <class T, class Ahead, class Bias, class Weight, class Finish, class Data>
        void direct_backward_batch(std::int64_t N,
                                   std::int64_t G,
                                   std::int64_t partial_size,
                                   bool want_weight,
                                   Ahead&& ahead,
                                   Bias&& bias,
                                   Weight&& weight,
                                   Finish&& finish,
                                   Data&& data)
        {
            const std::int64_t threads = conv_threads();
            const auto group_partials = [&](std::int64_t groups) {
                const auto n = static_cast<std::size_t>(want_weight ? groups * partial_size : 0);
                T* partial = conv_workspace<T>::local().tile.get(n);
                std::fill(partial, partial + n, T(0));
                return partial;
            };
            if (threads == 1 || conv_split_tasks(G, threads))
            {
                const std::int64_t parts = std::min(threads, G);
                const std::size_t budget = scratch_per_thread(static_cast<std::size_t>(parts));
                conv_parallel_for(parts, parts > 1, [&](std::int64_t part) {
                    const std::int64_t g0 = G * part / parts, g1 = G * (part + 1) / parts;
                    T* partial = group_partials(g1 - g0);
                    for (std::int64_t n = 0; n < N; ++n)
                    {
                        for (std::int64_t g = g0; g < g1; ++g)
                        {
                            if (g + 1 < g1)
                            {
                                ahead(n, g + 1);
                            }
                            else if (n + 1 < N)
                            {
                                ahead(n + 1, g0);
                            }
                            bias(n, g);
                            weight(n, g, want_weight ? partial + (g - g0) * partial_size : nullptr, budget);
                            data(n, g, budget);
                        }
                    }
                    for (std::int64_t g = g0; want_weight && g < g1; ++g)
                    {
                        finish(g, partial + (g - g0) * partial_size);
                    }
                });
                return;
            }
            const std::size_t budget = scratch_per_thread(static_cast<std::size_t>(threads));
            conv_parallel_for(G, true, [&](std::int64_t g) {
                T* partial = group_partials(1);
                for (std::int64_t n = 0; n < N; ++n)
                {
                    if (n + 1 < N)
                    {
                        ahead(n + 1, g);
                    }
                    bias(n, g);
                    weight(n, g, partial, budget);
                }
                if (want_weight)
                {
                    finish(g, partial);
                }
            });
            conv_parallel_for(N * G, conv_split_tasks(N * G, threads), [&](std::int64_t t) { data(t / G, t % G, budget); });
        }

        /// Sum of n values in a fixed order: 16 interleaved partial sums, combined pairwise.
        template <class T>
        T row_sum(const T* v, std::int64_t n) noexcept
        {
            constexpr std::int64_t W = 16;
            T acc[W] = {};
            std::int64_t i = 0;
            for (; i + W <= n; i += W)
            {
                for (std::int64_t l = 0; l < W; ++l)
                {
                    acc[l] += v[i + l];
                }
            }
            for (std::int64_t l = 0; i < n; ++i, ++l)
            {
                acc[l] += v[i];
            }
            for (std::int64_t w = W / 2; w > 0; w /= 2)
            {
                for (std::int64_t l = 0; l < w; ++l)
                {
                    acc[l] += acc[l + w];
                }
            }
            return acc[0];
        }

        /// grad_bias[c] = sum over the batch and the plane of dy[n, c], in parallel over channels.
        template <class T>
        void bias_grad(const T* dy, std::int64_t N, std::int64_t C, std::int64_t plane, T* grad_bias)
        {
            conv_parallel_for(C, conv_threads() > 1, [&](std::int64_t c) {
                T s = T(0);
                for (std::int64_t n = 0; n < N; ++n)
                {
                    s += row_sum(dy + (n * C + c) * plane, plane);
                }
                grad_bias[c] = s;
            });
        }
    }  // namespace detail
}  // namespace xconv

#endif
