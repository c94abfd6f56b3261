// xconv: GEMM-free ("direct") versions of the three lowered passes, for groups with so few
// channels that the GEMM degenerates (depthwise convolutions: one input channel per group).
//
// Same contract as the lowered passes in conv2d.hpp: the plane is Cp channels of
// win.height x win.width, the grid is Cg rows of win.blocks() values, the weight is
// [Cg, Cp*kh*kw] row-major. Each pass walks the kernel taps in the outer loops and runs along a
// row of blocks in the inner loop, so for stride 1 the inner loop is a contiguous axpy the
// compiler vectorises. No scratch memory.
#ifndef XCONV_DETAIL_DIRECT_HPP
#define XCONV_DETAIL_DIRECT_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "../options.hpp"
#include "../unfold.hpp"

namespace xconv
{
    namespace detail
    {
        /// Whether the direct passes beat a GEMM for a group of Cp plane and Cg grid channels.
        inline bool prefer_direct(std::int64_t Cp, std::int64_t Cg) noexcept
        {
            return Cp * Cg <= 4;
        }

        /// Callers capture the weight by value: a reference could alias the row being written
        /// and keep the compiler from vectorising.
        /// Calls f(oy, y, x_off, lo, hi) for every row of blocks oy whose tap row y is inside the
        /// plane; blocks ox in [lo, hi) read the plane column ox*stride_w + x_off.
        template <class F>
        void for_each_tap_row(const window2d& w, std::int64_t i, std::int64_t j, F&& f)
        {
            const std::int64_t x_off = j * w.dil_w - w.pad_left;
            std::int64_t lo, hi;
            valid_block_range(w.blocks_w, w.stride_w, x_off, w.width, lo, hi);
            if (lo >= hi)
            {
                return;
            }
            const std::int64_t y_off = i * w.dil_h - w.pad_top;
            std::int64_t oy_lo, oy_hi;
            valid_block_range(w.blocks_h, w.stride_h, y_off, w.height, oy_lo, oy_hi);
            for (std::int64_t oy = oy_lo; oy < oy_hi; ++oy)
            {
                f(oy, oy * w.stride_h + y_off, x_off, lo, hi);
            }
        }

        /// grid [Cg, L] = W [Cg, Cp*taps] (*) plane
        template <class T>
        void direct_forward(const window2d& w, std::int64_t Cp, std::int64_t Cg, const T* W, const T* plane, T* grid)
        {
            const std::int64_t L = w.blocks(), P = w.plane(), taps = w.taps(), sw = w.stride_w;
            std::fill(grid, grid + Cg * L, T(0));
            for (std::int64_t cg = 0; cg < Cg; ++cg)
            {
                T* out = grid + cg * L;
                for (std::int64_t cp = 0; cp < Cp; ++cp)
                {
                    const T* src = plane + cp * P;
                    for (std::int64_t i = 0; i < w.kernel_h; ++i)
                    {
                        for (std::int64_t j = 0; j < w.kernel_w; ++j)
                        {
                            const T wt = W[(cg * Cp + cp) * taps + i * w.kernel_w + j];
                            for_each_tap_row(w, i, j,
                                             [=, &w](std::int64_t oy, std::int64_t y, std::int64_t x_off, std::int64_t lo,
                                                 std::int64_t hi) {
                                                 T* o = out + oy * w.blocks_w;
                                                 const T* s = src + y * w.width + x_off;
                                                 if (sw == 1)
                                                 {
                                                     for (std::int64_t ox = lo; ox < hi; ++ox)
                                                     {
                                                         o[ox] += wt * s[ox];
                                                     }
                                                 }
                                                 else
                                                 {
                                                     for (std::int64_t ox = lo; ox < hi; ++ox)
                                                     {
                                                         o[ox] += wt * s[ox * sw];
                                                     }
                                                 }
                                             });
                        }
                    }
                }
            }
        }

        /// plane = W^T [Cp*taps, Cg] x grid, scattered back (col2im without the columns)
        template <class T>
        void direct_backward_data(const window2d& w,
                                  std::int64_t Cp,
                                  std::int64_t Cg,
                                  const T* W,
                                  const T* grid,
                                  T* plane)
        {
            const std::int64_t L = w.blocks(), P = w.plane(), taps = w.taps(), sw = w.stride_w;
            std::fill(plane, plane + Cp * P, T(0));
            for (std::int64_t cp = 0; cp < Cp; ++cp)
            {
                T* dst = plane + cp * P;
                for (std::int64_t cg = 0; cg < Cg; ++cg)
                {
                    const T* in = grid + cg * L;
                    for (std::int64_t i = 0; i < w.kernel_h; ++i)
                    {
                        for (std::int64_t j = 0; j < w.kernel_w; ++j)
                        {
                            const T wt = W[(cg * Cp + cp) * taps + i * w.kernel_w + j];
                            for_each_tap_row(w, i, j,
                                             [=, &w](std::int64_t oy, std::int64_t y, std::int64_t x_off, std::int64_t lo,
                                                 std::int64_t hi) {
                                                 const T* g = in + oy * w.blocks_w;
                                                 T* d = dst + y * w.width + x_off;
                                                 if (sw == 1)
                                                 {
                                                     for (std::int64_t ox = lo; ox < hi; ++ox)
                                                     {
                                                         d[ox] += wt * g[ox];
                                                     }
                                                 }
                                                 else
                                                 {
                                                     for (std::int64_t ox = lo; ox < hi; ++ox)
                                                     {
                                                         d[ox * sw] += wt * g[ox];
                                                     }
                                                 }
                                             });
                        }
                    }
                }
            }
        }

        /// Wgrad [Cg, Cp*taps] += grid [Cg, L] x cols(plane)^T, one dot product per weight. The sum
        /// runs over rows of blocks in order, each row in eight interleaved partial sums combined
        /// in a fixed order: the result depends only on the shapes.
        template <class T>
        void direct_backward_weight(const window2d& w,
                                    std::int64_t Cp,
                                    std::int64_t Cg,
                                    const T* grid,
                                    const T* plane,
                                    T* Wgrad)
        {
            const std::int64_t L = w.blocks(), P = w.plane(), taps = w.taps(), sw = w.stride_w;
            constexpr std::int64_t lanes = 8;
            for (std::int64_t cg = 0; cg < Cg; ++cg)
            {
                const T* in = grid + cg * L;
                for (std::int64_t cp = 0; cp < Cp; ++cp)
                {
                    const T* src = plane + cp * P;
                    for (std::int64_t i = 0; i < w.kernel_h; ++i)
                    {
                        for (std::int64_t j = 0; j < w.kernel_w; ++j)
                        {
                            T acc[lanes] = {};
                            for_each_tap_row(w, i, j,
                                             [&](std::int64_t oy, std::int64_t y, std::int64_t x_off, std::int64_t lo,
                                                 std::int64_t hi) {
                                                 const T* g = in + oy * w.blocks_w;
                                                 const T* s = src + y * w.width + x_off;
                                                 std::int64_t ox = lo;
                                                 if (sw == 1)
                                                 {
                                                     for (; ox + lanes <= hi; ox += lanes)
                                                     {
                                                         for (std::int64_t l = 0; l < lanes; ++l)
                                                         {
                                                             acc[l] += g[ox + l] * s[ox + l];
                                                         }
                                                     }
                                                 }
                                                 for (; ox < hi; ++ox)
                                                 {
                                                     acc[0] += g[ox] * s[ox * sw];
                                                 }
                                             });
                            T sum = T(0);
                            for (std::int64_t l = 0; l < lanes; ++l)
                            {
                                sum += acc[l];
                            }
                            Wgrad[(cg * Cp + cp) * taps + i * w.kernel_w + j] += sum;
                        }
                    }
                }
            }
        }
    }  // namespace detail
}  // namespace xconv

#endif
