// xconv: the strided backward-data pass (and so the transposed convolution's forward pass)
// without col2im, by sub-pixel phases.
//
// The pass is plane = col2im( W^T x grid ) for a window of stride (sh, sw): pixel (y, x) of the
// plane receives tap i (along y) from grid row (y + pad_top - i*dil_h) / sh when that division is
// exact, and likewise along x. Which taps reach a pixel depends only on its phase (y mod sh,
// x mod sw). The pixels of one phase, (ry + sh*t, rx + sw*u), form a grid of their own, and on it
// the pass is a stride-1 correlation of the grid with the phase's taps, in reverse order, at
// dilation dil / gcd(stride, dil):
//
//   plane[c, ry + sh*t, rx + sw*u] = sum over (g, a, b) of Wphase[c, g, a, b] * grid[g, t - pad_y + a*dil_y, u - pad_x + b*dil_x]
//
// That is a forward convolution, computed by the implicit GEMM (conv_implicit.hpp) when the plane
// has a register panel of channels, else by the packed GEMM with im2col fused into its packing.
// A band of rows of every column phase goes to tiles in cache, and from there each plane row is
// written once, front to back, plus the bias. There is no column matrix, no col2im and no zero
// fill: each pixel is one fma chain over (g, a, b). Pixels that no tap reaches get the bias alone.
//
// Used (phases_apply) where col2im would sum several taps per pixel; the phase weights are packed
// once per call when reserve_call_scratch finds room for them; else, over a batch, phase by phase,
// each phase packed once for the call in its turn (phase_passes), when one phase finds room; else
// by the GEMMs' packers as they go. The same values every way: the results do not depend on the
// cap, the threads or what earlier calls left.
#ifndef XCONV_DETAIL_CONV_PHASES_HPP
#define XCONV_DETAIL_CONV_PHASES_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "../options.hpp"
#include "conv_implicit.hpp"
#include "conv_lowered.hpp"
#include "conv_pack.hpp"
#include "conv_scratch.hpp"
#include "direct.hpp"
#include "gemm_pack.hpp"

namespace xconv
{
    namespace detail
    {
        /// One axis of a phase: the pixels r, r + stride, ... of a plane axis of `size` pixels.
        struct phase_axis
        {
            std::int64_t count = 0;      // pixels of the phase along the axis
            std::int64_t taps = 0;       // kernel taps that reach them
            std::int64_t first_tap = 0;  // the largest such tap; the others step down by tap_step
            std::int64_t tap_step = 1;
            std::int64_t pad = 0;        // the phase's correlation: grid index = t - pad + a * dil
            std::int64_t dil = 1;

            std::int64_t tap(std::int64_t a) const noexcept { return first_tap - a * tap_step; }
        };

        /// Phase r of an axis of a window: pixel p receives tap i from grid index
        /// (p + pad - i * dil) / stride when the division is exact.
        inline phase_axis make_phase_axis(std::int64_t r,
                                          std::int64_t size,
                                          std::int64_t kernel,
                                          std::int64_t stride,
                                          std::int64_t pad,
                                          std::int64_t dil) noexcept
        {
            phase_axis a;
            a.count = r < size ? (size - 1 - r) / stride + 1 : 0;
            const std::int64_t g = std::gcd(stride, dil);
            a.tap_step = stride / g;
            a.dil = dil / g;
            a.first_tap = -1;
            for (std::int64_t i = kernel - 1; i >= 0; --i)
            {
                if (floor_div(r + pad - i * dil, stride) * stride == r + pad - i * dil)
                {
                    a.first_tap = i;
                    break;
                }
            }
            if (a.first_tap < 0)
            {
                return a;
            }
            a.taps = a.first_tap / a.tap_step + 1;
            // Tap a = 0 (the largest) reads grid index t + (r + pad - first_tap * dil) / stride.
            a.pad = -floor_div(r + pad - a.first_tap * dil, stride);
            return a;
        }

        /// The phases of a window, sh * sw of them, row-major by (ry, rx).
        struct phase_plan
        {
            std::vector<phase_axis> ys, xs;

            explicit phase_plan(const window2d& w)
            {
                for (std::int64_t r = 0; r < w.stride_h; ++r)
                {
                    ys.push_back(make_phase_axis(r, w.height, w.kernel_h, w.stride_h, w.pad_top, w.dil_h));
                }
                for (std::int64_t r = 0; r < w.stride_w; ++r)
                {
                    xs.push_back(make_phase_axis(r, w.width, w.kernel_w, w.stride_w, w.pad_left, w.dil_w));
                }
            }

            /// Depth of phase (ry, rx)'s correlation with Cg grid channels.
            std::int64_t depth(std::size_t ry, std::size_t rx, std::int64_t Cg) const noexcept
            {
                return Cg * ys[ry].taps * xs[rx].taps;
            }
        };

        /// One panel of P channels of a phase's weight, depth-major: dst[k * P + r] =
        /// Wphase[c0 + r, k0 + k] for r < count (zeros up to P), read from the pass's W_g
        /// [Cg, Cp * taps] where it lies:
        ///   Wphase[c, (k * ty + a) * tx + b] = W[k, c * taps + tap_y(a) * kw + tap_x(b)].
        template <class T, std::size_t P>
        void pack_phase_weight_panel(const T* W,
                                     std::int64_t K,
                                     std::int64_t taps,
                                     std::int64_t kw,
                                     const phase_axis& y,
                                     const phase_axis& x,
                                     std::size_t c0,
                                     std::size_t count,
                                     std::size_t k0,
                                     std::size_t kc,
                                     T* dst) noexcept
        {
            const std::int64_t per_channel = y.taps * x.taps;
            const T* channels = W + static_cast<std::int64_t>(c0) * taps;
            for (std::size_t k = 0; k < kc; ++k, dst += P)
            {
                const auto kk = static_cast<std::int64_t>(k0 + k);
                const std::int64_t ch = kk / per_channel, ab = kk - ch * per_channel;
                const std::int64_t a = ab / x.taps, b = ab - a * x.taps;
                const T* src = channels + ch * K + y.tap(a) * kw + x.tap(b);
                for (std::size_t r = 0; r < count; ++r)
                {
                    dst[r] = src[static_cast<std::int64_t>(r) * taps];
                }
                gemm_pack_zero_tail<T, P>(dst, count);
            }
        }

        /// Where a phase's weight lies in the pass's W_g [Cg, Cp * taps], packed into panels of P
        /// channels for the GEMM by the two packers below (pack_phase_weight_panel).
        template <class T>
        struct phase_weight_source
        {
            const T* W;
            std::int64_t K, taps, kw;
            phase_axis y, x;

            /// The channels [c0, c0 + count) and depth [k0, k0 + kc), panel after panel.
            template <std::size_t P>
            void panels(std::size_t c0, std::size_t count, std::size_t k0, std::size_t kc, T* dst) const noexcept
            {
                for (std::size_t c = 0; c < count; c += P, dst += P * kc)
                {
                    pack_phase_weight_panel<T, P>(W, K, taps, kw, y, x, c0 + c, std::min(P, count - c), k0, kc, dst);
                }
            }
        };

        /// Packs blocks of Wphase [Cp, Cg * ty * tx], the A operand of the packed GEMM, into mr-row panels.
        template <class T, class Arch = gemm_arch>
        struct phase_weight_a_packer : phase_weight_source<T>
        {
            void operator()(std::size_t i0, std::size_t mc, std::size_t k0, std::size_t kc, T* dst) const noexcept
            {
                this->template panels<gemm_traits<T, Arch>::mr>(i0, mc, k0, kc, dst);
            }
        };

        /// Packs blocks of Wphase^T [Cg * ty * tx, Cp], the B operand of the implicit GEMM, into
        /// nr-column panels.
        template <class T, class Arch = gemm_arch>
        struct phase_weight_b_packer : phase_weight_source<T>
        {
            void operator()(std::size_t k0, std::size_t kc, std::size_t j0, std::size_t nc, T* dst) const noexcept
            {
                this->template panels<gemm_traits<T, Arch>::nr>(j0, nc, k0, kc, dst);
            }
        };

        /// Whether the phase pass serves a window with Cp plane channels and Cg grid channels:
        /// - a stride above 1 (stride 1 has a single phase, which backward_data_as_forward covers);
        /// - more taps than phases, so that pixels receive several taps, which col2im would add one
        ///   by one and the phases sum inside the GEMM (with as many taps as phases, as for a
        ///   2 x 2 kernel of stride 2, col2im only places the GEMM's values, and measured faster);
        /// - enough plane channels to fill the GEMM's rows (they are its M).
        inline bool phases_apply(const window2d& w, std::int64_t Cp, std::int64_t Cg) noexcept
        {
            return (w.stride_h > 1 || w.stride_w > 1) && w.taps() > w.stride_h * w.stride_w && !prefer_direct(Cp, Cg) && Cp >= 16;
        }

        /// The phase plan of a call and the phase weights packed once for it: every group's
        /// phases, or every group's phase `only` (the others then are not computed), when they
        /// take at most three quarters of the scratch limit (else the GEMMs pack them as they go,
        /// the same values: the results do not depend on the choice).
        template <class T>
        struct phase_weights
        {
            phase_plan plan;
            bool implicit = false;            // each phase through the implicit GEMM (B = Wphase^T), else A = Wphase
            packed_weights<T> weights;
            std::vector<std::size_t> offset;  // of phase (ry, rx) in a group's packed weights
            std::ptrdiff_t only = -1;         // the one phase computed (ry * sw + rx), or -1: all
            std::size_t per_group = 0;        // elements of a group's packed weights

            bool computes(std::size_t index) const noexcept { return only < 0 || static_cast<std::size_t>(only) == index; }

            const T* phase(std::int64_t g, std::size_t index) const noexcept
            {
                return weights.data == nullptr ? nullptr : weights.group(g) + offset[index];
            }
        };

        /// The layout of the phase weights of all phases, or (only >= 0) of phase `only`, which is
        /// then the one phase_backward_data computes: the plan, the GEMM they feed and each
        /// phase's offset in a group's packed weights. Nothing packed.
        template <class T>
        phase_weights<T> phase_layout(const window2d& w, std::int64_t Cp, std::int64_t Cg, std::ptrdiff_t only = -1)
        {
            phase_weights<T> r{phase_plan(w), false, {}, {}, only, 0};
            // The implicit GEMM wants a register panel of plane channels and offsets within 32 bits
            // (the grid with a border as wide as the kernel's reach).
            const std::int64_t reach_h = (w.kernel_h - 1) * w.dil_h + 1, reach_w = (w.kernel_w - 1) * w.dil_w + 1;
            r.implicit = Cp >= static_cast<std::int64_t>(gemm_traits<T>::nr)
                         && Cg * (w.blocks_h + 2 * reach_h) * (w.blocks_w + 2 * reach_w) < std::numeric_limits<std::int32_t>::max();
            std::size_t per = 0;
            for (std::size_t ry = 0; ry < r.plan.ys.size(); ++ry)
            {
                for (std::size_t rx = 0; rx < r.plan.xs.size(); ++rx)
                {
                    r.offset.push_back(per);
                    if (r.computes(r.offset.size() - 1))
                    {
                        const auto depth = static_cast<std::size_t>(r.plan.depth(ry, rx, Cg)), ucp = static_cast<std::size_t>(Cp);
                        per += r.implicit ? prepacked_b_size<T>(depth, ucp) : prepacked_a_size<T>(ucp, depth);
                    }
                }
            }
            r.per_group = per;
            return r;
        }

        /// The phase weights of a call (nothing packed when phases_apply says no), for G groups of
        /// W_g [Cg, Cp * taps] (group g's at W + g * Cg * K): of all phases, or (only >= 0) of
        /// phase `only` (phase_layout).
        template <class T>
        phase_weights<T> pack_phase_weights(const window2d& w,
                                            std::int64_t Cp,
                                            std::int64_t Cg,
                                            std::int64_t G,
                                            const T* W,
                                            std::ptrdiff_t only = -1)
        {
            if (!phases_apply(w, Cp, Cg))
            {
                return phase_weights<T>{phase_plan(w), false, {}, {}, only, 0};
            }
            phase_weights<T> r = phase_layout<T>(w, Cp, Cg, only);
            const std::size_t per = r.per_group;
            const std::size_t bytes = per * static_cast<std::size_t>(G) * sizeof(T);
            if (!reserve_call_scratch(bytes))
            {
                return r;
            }
            T* dst = r.weights.storage.get(per * static_cast<std::size_t>(G));
            const std::int64_t taps = w.taps(), K = Cp * taps;
            const auto n_phases = static_cast<std::int64_t>(r.plan.ys.size() * r.plan.xs.size());
            // Share `part` of `parts` of group g's phase `index` (pack_in_shares).
            const auto pack = [&](std::int64_t g, std::int64_t index, std::size_t part, std::size_t parts) {
                const auto& y = r.plan.ys[static_cast<std::size_t>(index) / r.plan.xs.size()];
                const auto& x = r.plan.xs[static_cast<std::size_t>(index) % r.plan.xs.size()];
                const auto depth = static_cast<std::size_t>(r.computes(static_cast<std::size_t>(index)) ? Cg * y.taps * x.taps : 0);
                T* d = dst + static_cast<std::size_t>(g) * per + r.offset[static_cast<std::size_t>(index)];
                if (depth > 0 && r.implicit)
                {
                    prepack_b<T>(phase_weight_b_packer<T>{{W + g * Cg * K, K, taps, w.kernel_w, y, x}}, depth, static_cast<std::size_t>(Cp),
                                 d, part, parts);
                }
                else if (depth > 0)
                {
                    prepack_a<T>(phase_weight_a_packer<T>{{W + g * Cg * K, K, taps, w.kernel_w, y, x}}, static_cast<std::size_t>(Cp), depth,
                                 d, part, parts);
                }
            };
            pack_in_shares(G * n_phases, bytes, [&](std::int64_t unit, std::size_t part, std::size_t parts) {
                pack(unit / n_phases, unit % n_phases, part, parts);
            });
            r.weights.data = dst;
            r.weights.group_elements = per;
            r.weights.bytes = bytes;
            return r;
        }

        /// tile [Cp, n_rows * U] = the pixels of phase (ay, ax) in its rows t0 .. t0 + n_rows: the
        /// phase's correlation Wphase [Cp, Cg * ty * tx] x cols(grid) [Cg * ty * tx, n_rows * U].
        template <class T>
        void phase_tile(const window2d& w,
                        const phase_weights<T>& pw,
                        const phase_axis& ay,
                        const phase_axis& ax,
                        const T* packed,
                        std::int64_t Cp,
                        std::int64_t Cg,
                        const T* W,
                        const T* grid,
                        std::int64_t t0,
                        std::int64_t n_rows,
                        T* tile,
                        std::size_t budget)
        {
            const std::int64_t taps = w.taps(), K = Cp * taps, U = ax.count;
            const auto uCp = static_cast<std::size_t>(Cp);
            const auto depth = static_cast<std::size_t>(Cg * ay.taps * ax.taps);
            const auto n = static_cast<std::size_t>(n_rows * U);
            window2d sub;
            sub.height = w.blocks_h;
            sub.width = w.blocks_w;
            sub.kernel_h = ay.taps;
            sub.kernel_w = ax.taps;
            sub.pad_top = ay.pad - t0;
            sub.pad_left = ax.pad;
            sub.dil_h = ay.dil;
            sub.dil_w = ax.dil;
            sub.blocks_h = n_rows;
            sub.blocks_w = U;
            const phase_weight_a_packer<T> pack_a{{W, K, taps, w.kernel_w, ay, ax}};
            if (pw.implicit)
            {
                // C^T [n, Cp] = cols^T [n, depth] x Wphase^T [depth, Cp], stored back as the tile
                implicit_forward(sub, Cg, Cp, phase_weight_b_packer<T>{{W, K, taps, w.kernel_w, ay, ax}}, grid, 0, tile, 0, 1,
                                 static_cast<const T*>(nullptr), budget, packed);
                return;
            }
            const matrix_view<T> c = row_major(tile, static_cast<std::ptrdiff_t>(n));
            const conv_taps sub_taps(sub);
            const auto run = [&](const auto& a) {
                // tile [Cp, n] = Wphase [Cp, depth] x cols(grid) [depth, n]
                if (ay.taps == 1 && ax.taps == 1 && ax.pad == 0 && U == w.blocks_w && t0 - ay.pad >= 0
                    && t0 - ay.pad + n_rows <= w.blocks_h)
                {
                    // One tap whose rows lie inside the grid: the grid rows themselves.
                    gemm_driver<T>(uCp, n, depth, a, strided_b_packer<T>{row_major(grid + (t0 - ay.pad) * w.blocks_w, w.blocks())},
                                   c, false);
                }
                else
                {
                    gemm_driver<T>(uCp, n, depth, a, im2col_b_packer<T>{grid, &sub, &sub_taps, 0}, c, false);
                }
            };
            if (packed != nullptr)
            {
                run(prepacked_a<T>{packed, uCp});
            }
            else
            {
                run(pack_a);
            }
        }

        /// plane [Cp, height, width] = col2im( W^T [K, Cg] x grid [Cg, L] ) (+ bias[c] on channel c),
        /// overwritten, for one group: W = W_g [Cg, Cp * taps], pw its phase weights (g = group).
        /// Row phase by row phase, a band of rows a time: the tiles of the band's column phases,
        /// then each plane row written once, front to back. When pw computes one phase only, only
        /// that phase's pixels are written.
        template <class T>
        void phase_backward_data(const window2d& w,
                                 const phase_weights<T>& pw,
                                 std::int64_t g,
                                 std::int64_t Cp,
                                 std::int64_t Cg,
                                 const T* W,
                                 const T* grid,
                                 T* plane,
                                 const T* bias,
                                 std::size_t budget)
        {
            const std::int64_t P = w.plane(), sh = w.stride_h, sw = w.stride_w;
            const auto n_x = static_cast<std::size_t>(sw);
            std::vector<const T*> tiles(n_x);
            for (std::int64_t ry = 0; ry < sh; ++ry)
            {
                const phase_axis& ay = pw.plan.ys[static_cast<std::size_t>(ry)];
                const auto index = [&](std::size_t rx) { return static_cast<std::size_t>(ry) * n_x + rx; };
                // Pixels per row of the column phases computed here that taps reach.
                std::int64_t row_pixels = 0, x_taps = 0;
                bool any = false;
                for (std::size_t rx = 0; rx < n_x; ++rx)
                {
                    any = any || pw.computes(index(rx));
                    row_pixels += pw.computes(index(rx)) && pw.plan.xs[rx].taps > 0 ? pw.plan.xs[rx].count : 0;
                    x_taps = std::max(x_taps, pw.computes(index(rx)) ? pw.plan.xs[rx].taps : std::int64_t(0));
                }
                if (!any)
                {
                    continue;
                }
                // Bands of rows whose tiles stay in cache. A GEMM over a band's positions also
                // packs a B block of them (its depth block at most kc) and an A block: within the
                // other half of the budget.
                const auto cap = std::min(budget / 2, cache_tile_bytes) / sizeof(T);
                std::int64_t rows =
                    row_pixels == 0 || ay.taps == 0
                        ? ay.count
                        : std::clamp<std::int64_t>(static_cast<std::int64_t>(cap) / (Cp * row_pixels), 1, std::max<std::int64_t>(ay.count, 1));
                if (!pw.implicit && row_pixels > 0 && ay.taps > 0)
                {
                    const std::size_t kc = gemm_depth_block<T>(Cg * ay.taps * x_taps);
                    const auto b_rows = static_cast<std::int64_t>(gemm_b_room<T>(budget) / (kc * static_cast<std::size_t>(row_pixels) * sizeof(T)));
                    rows = std::clamp<std::int64_t>(b_rows, 1, rows);
                }
                const auto band_elements = static_cast<std::size_t>(ay.taps == 0 ? 0 : Cp * rows * row_pixels);
                // The band of an earlier row phase is not used again.
                T* band = conv_workspace<T>::local().tile.get_for_step(band_elements);
                const std::size_t rest = budget > band_elements * sizeof(T) ? budget - band_elements * sizeof(T) : 0;
                for (std::int64_t t0 = 0; t0 < ay.count; t0 += rows)
                {
                    const std::int64_t n_rows = std::min(rows, ay.count - t0);
                    T* next = band;
                    for (std::size_t rx = 0; rx < n_x; ++rx)
                    {
                        const phase_axis& ax = pw.plan.xs[rx];
                        tiles[rx] = nullptr;
                        if (ay.taps == 0 || ax.taps == 0 || ax.count == 0 || !pw.computes(index(rx)))
                        {
                            continue;
                        }
                        phase_tile(w, pw, ay, ax, pw.phase(g, index(rx)), Cp, Cg, W, grid, t0, n_rows, next, rest);
                        tiles[rx] = next;
                        next += Cp * n_rows * ax.count;
                    }
                    for (std::int64_t c = 0; c < Cp; ++c)
                    {
                        const T v = bias != nullptr ? bias[c] : T(0);
                        for (std::int64_t t = 0; t < n_rows; ++t)
                        {
                            T* d = plane + c * P + (ry + sh * (t0 + t)) * w.width;
                            if (sw == 2 && tiles[0] != nullptr && tiles[1] != nullptr)
                            {
                                // Both column phases, interleaved with whole-vector stores: single
                                // strided stores into new memory keep few line fills in flight.
                                const std::int64_t U0 = pw.plan.xs[0].count, U1 = pw.plan.xs[1].count;
                                const T* s0 = tiles[0] + (c * n_rows + t) * U0;
                                const T* s1 = tiles[1] + (c * n_rows + t) * U1;
                                interleave_pairs(s0, s1, U1, d, false, v);
                                if (U0 > U1)
                                {
                                    d[2 * U1] = s0[U1] + v;
                                }
                                continue;
                            }
                            for (std::size_t rx = 0; rx < n_x; ++rx)
                            {
                                if (!pw.computes(index(rx)))
                                {
                                    continue;
                                }
                                const std::int64_t U = pw.plan.xs[rx].count;
                                T* dr = d + static_cast<std::int64_t>(rx);
                                if (tiles[rx] == nullptr)
                                {
                                    // No tap reaches these pixels.
                                    for (std::int64_t u = 0; u < U; ++u)
                                    {
                                        dr[u * sw] = v;
                                    }
                                    continue;
                                }
                                const T* s = tiles[rx] + (c * n_rows + t) * U;
                                for (std::int64_t u = 0; u < U; ++u)
                                {
                                    dr[u * sw] = s[u] + v;
                                }
                            }
                        }
                    }
                }
            }
        }

        /// Bytes of the packed weights of one group's largest phase.
        template <class T>
        std::size_t phase_by_phase_bytes(const window2d& w, std::int64_t Cp, std::int64_t Cg)
        {
            const phase_plan plan(w);
            std::size_t largest = 0;
            for (std::size_t i = 0; i < plan.ys.size() * plan.xs.size(); ++i)
            {
                largest = std::max(largest, phase_layout<T>(w, Cp, Cg, static_cast<std::ptrdiff_t>(i)).per_group);
            }
            return largest * sizeof(T);
        }

        /// Runs a batch's phase pass: pass(pw, reserved) computes the phases pw computes (see
        /// phase_backward_data) for every sample and group, `reserved` the scratch bytes pw
        /// holds. Once with every phase, when their weights are packed once for the call (or when
        /// `by_phase` is false, or one sample and group would use them); else, when one phase's
        /// weights fit, once per phase, each phase packed for the call in its turn, so that the
        /// samples share the packing instead of each GEMM packing its own. The same values
        /// either way: each pixel is written once, by its phase.
        template <class T, class Pass>
        void phase_passes(const window2d& w, std::int64_t Cp, std::int64_t Cg, std::int64_t G, std::int64_t N, const T* W, bool by_phase, Pass&& pass)
        {
            phase_weights<T> all = pack_phase_weights(w, Cp, Cg, G, W);
            const std::size_t phases = all.plan.ys.size() * all.plan.xs.size();
            if (all.weights.data != nullptr || !by_phase || N * G < 2 || !phases_apply(w, Cp, Cg)
                || phase_by_phase_bytes<T>(w, Cp, Cg) * static_cast<std::size_t>(G) > scratch_limit() / 4 * 3)
            {
                pass(all, all.weights.bytes);
                return;
            }
            for (std::size_t i = 0; i < phases; ++i)
            {
                if (i > 0)
                {
                    // No buffer of the last phase is used again: the threads' buffers it kept
                    // (other threads' too, e.g. their own tiles) may be freed for this one's.
                    scratch_call::next_pass();
                }
                const phase_weights<T> one = pack_phase_weights(w, Cp, Cg, G, W, static_cast<std::ptrdiff_t>(i));
                pass(one, one.weights.bytes);
            }
        }
    }  // namespace detail
}  // namespace xconv

#endif
