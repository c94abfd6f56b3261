// xconv: im2col / col2im (F.unfold / F.fold), the lowering every convolution pass stands on.
//
// unfold turns each sliding block of an image into a column: for input (N, C, H, W) and kernel
// (kh, kw) it returns (N, C*kh*kw, L) with L the number of blocks; row (c*kh + i)*kw + j of the
// columns holds tap (i, j) of channel c for every block. fold is its adjoint: it sums every
// column back into the place it came from, so overlapping blocks add up.
#ifndef XCONV_UNFOLD_HPP
#define XCONV_UNFOLD_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include "detail/output_tensor.hpp"
#include "options.hpp"

namespace xconv
{
    namespace detail
    {
        /// Range [lo, hi) of block indices o along one axis for which o*stride + offset lies in [0, size).
        inline void valid_block_range(std::int64_t blocks,
                                      std::int64_t stride,
                                      std::int64_t offset,
                                      std::int64_t size,
                                      std::int64_t& lo,
                                      std::int64_t& hi) noexcept
        {
            // o*stride + offset >= 0  <=>  o >= ceil(-offset / stride)
            lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
            // o*stride + offset <= size - 1  <=>  o <= floor((size - 1 - offset) / stride)
            const std::int64_t last = size - 1 - offset;
            hi = last < 0 ? 0 : last / stride + 1;
            lo = std::min(lo, blocks);
            hi = std::clamp(hi, lo, blocks);
        }

        /// im2col for `channels` planes of win.height x win.width starting at `image`:
        /// writes columns[(c*kh + i)*kw + j][b] for the blocks b in [block_begin, block_end) of the
        /// grid (row-major over blocks_h x blocks_w); columns has leading dimension `ld`.
        template <class T>
        void im2col(const T* image,
                    std::int64_t channels,
                    const window2d& w,
                    T* columns,
                    std::int64_t ld,
                    std::int64_t block_begin,
                    std::int64_t block_end)
        {
            const std::int64_t plane = w.plane();
            for (std::int64_t c = 0; c < channels; ++c)
            {
                const T* src_plane = image + c * plane;
                for (std::int64_t i = 0; i < w.kernel_h; ++i)
                {
                    for (std::int64_t j = 0; j < w.kernel_w; ++j)
                    {
                        T* dst = columns + ((c * w.kernel_h + i) * w.kernel_w + j) * ld - block_begin;
                        const std::int64_t off_x = j * w.dil_w - w.pad_left;
                        std::int64_t x_lo, x_hi;
                        valid_block_range(w.blocks_w, w.stride_w, off_x, w.width, x_lo, x_hi);
                        std::int64_t b = block_begin;
                        while (b < block_end)
                        {
                            const std::int64_t oy = b / w.blocks_w;
                            const std::int64_t ox0 = b % w.blocks_w;
                            const std::int64_t ox1 = std::min(w.blocks_w, ox0 + (block_end - b));
                            const std::int64_t y = oy * w.stride_h - w.pad_top + i * w.dil_h;
                            T* d = dst + oy * w.blocks_w;
                            if (static_cast<std::uint64_t>(y) >= static_cast<std::uint64_t>(w.height))
                            {
                                std::fill(d + ox0, d + ox1, T(0));
                            }
                            else
                            {
                                const T* src = src_plane + y * w.width + off_x;
                                const std::int64_t lo = std::clamp(x_lo, ox0, ox1);
                                const std::int64_t hi = std::clamp(x_hi, lo, ox1);
                                std::fill(d + ox0, d + lo, T(0));
                                if (w.stride_w == 1)
                                {
                                    std::copy(src + lo, src + hi, d + lo);
                                }
                                else
                                {
                                    for (std::int64_t ox = lo; ox < hi; ++ox)
                                    {
                                        d[ox] = src[ox * w.stride_w];
                                    }
                                }
                                std::fill(d + hi, d + ox1, T(0));
                            }
                            b += ox1 - ox0;
                        }
                    }
                }
            }
        }

        /// col2im, the adjoint of im2col over all blocks: image[c] (+)= sum of the columns that read
        /// each pixel. With accumulate == false the planes are zero-filled first.
        template <class T>
        void col2im(const T* columns, std::int64_t ld, std::int64_t channels, const window2d& w, T* image, bool accumulate)
        {
            const std::int64_t plane = w.plane();
            if (!accumulate)
            {
                std::fill(image, image + channels * plane, T(0));
            }
            for (std::int64_t c = 0; c < channels; ++c)
            {
                T* dst_plane = image + c * plane;
                for (std::int64_t i = 0; i < w.kernel_h; ++i)
                {
                    for (std::int64_t j = 0; j < w.kernel_w; ++j)
                    {
                        const T* src = columns + ((c * w.kernel_h + i) * w.kernel_w + j) * ld;
                        const std::int64_t off_x = j * w.dil_w - w.pad_left;
                        std::int64_t x_lo, x_hi;
                        valid_block_range(w.blocks_w, w.stride_w, off_x, w.width, x_lo, x_hi);
                        for (std::int64_t oy = 0; oy < w.blocks_h; ++oy)
                        {
                            const std::int64_t y = oy * w.stride_h - w.pad_top + i * w.dil_h;
                            if (static_cast<std::uint64_t>(y) >= static_cast<std::uint64_t>(w.height))
                            {
                                continue;
                            }
                            T* d = dst_plane + y * w.width + off_x;
                            const T* s = src + oy * w.blocks_w;
                            for (std::int64_t ox = x_lo; ox < x_hi; ++ox)
                            {
                                d[ox * w.stride_w] += s[ox];
                            }
                        }
                    }
                }
            }
        }

        template <std::size_t N, class Shape>
        std::array<std::size_t, N> to_array(const Shape& s)
        {
            std::array<std::size_t, N> a{};
            std::copy(s.begin(), s.end(), a.begin());
            return a;
        }

        template <class T>
        void unfold_into(const T* input, const unfold_plan& p, T* columns)
        {
            const std::int64_t rows = p.channels * p.win.taps();
            const std::int64_t L = p.win.blocks();
            for (std::int64_t n = 0; n < p.batch; ++n)
            {
                im2col(input + n * p.channels * p.win.plane(), p.channels, p.win, columns + n * rows * L, L, 0, L);
            }
        }

        template <class T>
        void fold_into(const T* columns, const unfold_plan& p, T* output)
        {
            const std::int64_t rows = p.channels * p.win.taps();
            const std::int64_t L = p.win.blocks();
            for (std::int64_t n = 0; n < p.batch; ++n)
            {
                col2im(columns + n * rows * L, L, p.channels, p.win, output + n * p.channels * p.win.plane(), false);
            }
        }

        inline std::array<std::size_t, 4> batched(const std::array<std::size_t, 3>& s)
        {
            return {1, s[0], s[1], s[2]};
        }

        inline std::array<std::size_t, 3> batched(const std::array<std::size_t, 2>& s)
        {
            return {1, s[0], s[1]};
        }
    }  // namespace detail

    /// F.unfold: input (N, C, H, W) -> columns (N, C*kh*kw, L), L = number of sliding blocks.
    template <class T>
    xt::xtensor<T, 3> unfold(const xt::xtensor<T, 4>& input, size2 kernel_size, const unfold_options& options = {})
    {
        const auto p = detail::plan_unfold(input.shape(), kernel_size, options);
        auto out = detail::output_tensor<T, 3>({static_cast<std::size_t>(p.batch), static_cast<std::size_t>(p.channels * p.win.taps()),
                                                 static_cast<std::size_t>(p.win.blocks())});
        detail::unfold_into(input.data(), p, out.data());
        return out;
    }

    /// F.unfold on an unbatched input: (C, H, W) -> (C*kh*kw, L).
    template <class T>
    xt::xtensor<T, 2> unfold(const xt::xtensor<T, 3>& input, size2 kernel_size, const unfold_options& options = {})
    {
        const auto p = detail::plan_unfold(detail::batched(detail::to_array<3>(input.shape())), kernel_size, options);
        auto out = detail::output_tensor<T, 2>(
            {static_cast<std::size_t>(p.channels * p.win.taps()), static_cast<std::size_t>(p.win.blocks())});
        detail::unfold_into(input.data(), p, out.data());
        return out;
    }

    /// F.fold: columns (N, C*kh*kw, L) -> output (N, C, output_size.h, output_size.w), summing
    /// overlapping values. L must equal the number of sliding blocks of output_size.
    template <class T>
    xt::xtensor<T, 4> fold(const xt::xtensor<T, 3>& columns,
                           size2 output_size,
                           size2 kernel_size,
                           const unfold_options& options = {})
    {
        const auto p = detail::plan_fold(columns.shape(), output_size, kernel_size, options);
        auto out = detail::output_tensor<T, 4>({static_cast<std::size_t>(p.batch), static_cast<std::size_t>(p.channels),
                                                 static_cast<std::size_t>(p.win.height), static_cast<std::size_t>(p.win.width)});
        detail::fold_into(columns.data(), p, out.data());
        return out;
    }

    /// F.fold on unbatched columns: (C*kh*kw, L) -> (C, output_size.h, output_size.w).
    template <class T>
    xt::xtensor<T, 3> fold(const xt::xtensor<T, 2>& columns,
                           size2 output_size,
                           size2 kernel_size,
                           const unfold_options& options = {})
    {
        const auto p = detail::plan_fold(detail::batched(detail::to_array<2>(columns.shape())), output_size,
                                         kernel_size, options);
        auto out = detail::output_tensor<T, 3>({static_cast<std::size_t>(p.channels), static_cast<std::size_t>(p.win.height),
                                                 static_cast<std::size_t>(p.win.width)});
        detail::fold_into(columns.data(), p, out.data());
        return out;
    }

    /// unfold for a dynamic-rank input: 4-D or 3-D, anything else throws std::invalid_argument.
    template <class T>
    xt::xarray<T> unfold(const xt::xarray<T>& input, size2 kernel_size, const unfold_options& options = {})
    {
        if (input.dimension() == 4)
        {
            return unfold(xt::xtensor<T, 4>(input), kernel_size, options);
        }
        if (input.dimension() == 3)
        {
            return unfold(xt::xtensor<T, 3>(input), kernel_size, options);
        }
        detail::fail("unfold", "expected a 4-D (N, C, H, W) or 3-D (C, H, W) input, got shape ",
                     detail::shape_string(input.shape()));
    }

    /// fold for dynamic-rank columns: 3-D or 2-D, anything else throws std::invalid_argument.
    template <class T>
    xt::xarray<T> fold(const xt::xarray<T>& columns,
                       size2 output_size,
                       size2 kernel_size,
                       const unfold_options& options = {})
    {
        if (columns.dimension() == 3)
        {
            return fold(xt::xtensor<T, 3>(columns), output_size, kernel_size, options);
        }
        if (columns.dimension() == 2)
        {
            return fold(xt::xtensor<T, 2>(columns), output_size, kernel_size, options);
        }
        detail::fail("fold", "expected 3-D (N, C*kh*kw, L) or 2-D (C*kh*kw, L) columns, got shape ",
                     detail::shape_string(columns.shape()));
    }
}  // namespace xconv

#endif
