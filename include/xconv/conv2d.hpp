// xconv: functional conv2d and its backward pass (torch.nn.functional.conv2d semantics).
//
// Every pass lowers one sample and one group to a single GEMM against im2col columns:
//   forward          out_g  [C_out/g, L]            = W_g [C_out/g, C_in/g*kh*kw] x cols(x_g) [C_in/g*kh*kw, L]
//   backward-data    dx_g   = col2im( W_g^T [C_in/g*kh*kw, C_out/g] x dy_g [C_out/g, L] )
//   backward-weights dW_g  [C_out/g, C_in/g*kh*kw] += dy_g [C_out/g, L] x cols(x_g)^T [L, C_in/g*kh*kw]
// with L = H_out*W_out. The same three "lowered" passes, with the roles of the image and the
// grid of blocks swapped, are the transposed convolution (conv_transpose2d.hpp).
#ifndef XCONV_CONV2D_HPP
#define XCONV_CONV2D_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include "detail/direct.hpp"
#include "gemm.hpp"
#include "options.hpp"
#include "unfold.hpp"

namespace xconv
{
    /// What a backward pass returns: the gradients of the loss with respect to the input, the
    /// weight and the bias. A gradient not requested through the output mask is left empty.
    template <class GradInput, class GradWeight, class GradBias>
    struct gradients
    {
        GradInput grad_input;
        GradWeight grad_weight;
        GradBias grad_bias;
    };

    template <class T, std::size_t N>
    using conv_gradients = gradients<xt::xtensor<T, N>, xt::xtensor<T, 4>, xt::xtensor<T, 1>>;

    namespace detail
    {
        // ------------------------------------------------------------------ lowered passes
        //
        // One sample, one group. The "plane" is what im2col reads and col2im writes: Cp channels
        // of win.height x win.width. The "grid" is Cg rows of L = win.blocks() values, one per
        // sliding block. The weight is [Cg, Cp*kh*kw], row-major. For conv2d the plane is the
        // input and the grid the output; for conv_transpose2d the other way round.

        /// True when im2col would copy the plane unchanged (1x1 kernel, stride 1, no padding).
        inline bool is_identity(const window2d& w) noexcept
        {
            return w.kernel_h == 1 && w.kernel_w == 1 && w.stride_h == 1 && w.stride_w == 1 && w.pad_top == 0
                   && w.pad_left == 0 && w.blocks_h == w.height && w.blocks_w == w.width;
        }

        /// grid [Cg, L] = W [Cg, Cp*taps] x cols(plane) [Cp*taps, L]
        template <class T>
        void lowered_forward(const window2d& win,
                             std::int64_t Cp,
                             std::int64_t Cg,
                             const T* W,
                             const T* plane,
                             T* grid,
                             std::vector<T>& scratch)
        {
            if (prefer_direct(Cp, Cg))
            {
                direct_forward(win, Cp, Cg, W, plane, grid);
                return;
            }
            const std::int64_t K = Cp * win.taps();
            const std::int64_t L = win.blocks();
            const T* cols = plane;
            if (!is_identity(win))
            {
                scratch.resize(static_cast<std::size_t>(K * L));
                im2col(plane, Cp, win, scratch.data(), L, 0, L);
                cols = scratch.data();
            }
            // [Cg, K] x [K, L] -> [Cg, L]
            gemm<T>(Cg, L, K, row_major(W, K), row_major(cols, L), row_major(grid, L), false);
        }

        /// plane = col2im( W^T [Cp*taps, Cg] x grid [Cg, L] ), plane overwritten
        template <class T>
        void lowered_backward_data(const window2d& win,
                                   std::int64_t Cp,
                                   std::int64_t Cg,
                                   const T* W,
                                   const T* grid,
                                   T* plane,
                                   std::vector<T>& scratch)
        {
            if (prefer_direct(Cp, Cg))
            {
                direct_backward_data(win, Cp, Cg, W, grid, plane);
                return;
            }
            const std::int64_t K = Cp * win.taps();
            const std::int64_t L = win.blocks();
            if (is_identity(win))
            {
                // [Cp, Cg] x [Cg, L] -> [Cp, L], written straight into the plane
                gemm<T>(K, L, Cg, transposed(W, K), row_major(grid, L), row_major(plane, L), false);
                return;
            }
            scratch.resize(static_cast<std::size_t>(K * L));
            // [K, Cg] x [Cg, L] -> [K, L]
            gemm<T>(K, L, Cg, transposed(W, K), row_major(grid, L), row_major(scratch.data(), L), false);
            col2im(scratch.data(), L, Cp, win, plane, false);
        }

        /// Wgrad [Cg, Cp*taps] += grid [Cg, L] x cols(plane)^T [L, Cp*taps]
        template <class T>
        void lowered_backward_weight(const window2d& win,
                                     std::int64_t Cp,
                                     std::int64_t Cg,
                                     const T* grid,
                                     const T* plane,
                                     T* Wgrad,
                                     std::vector<T>& scratch)
        {
            if (prefer_direct(Cp, Cg))
            {
                direct_backward_weight(win, Cp, Cg, grid, plane, Wgrad);
                return;
            }
            const std::int64_t K = Cp * win.taps();
            const std::int64_t L = win.blocks();
            const T* cols = plane;
            if (!is_identity(win))
            {
                scratch.resize(static_cast<std::size_t>(K * L));
                im2col(plane, Cp, win, scratch.data(), L, 0, L);
                cols = scratch.data();
            }
            // [Cg, L] x [L, K] -> [Cg, K], accumulated
            gemm<T>(Cg, K, L, row_major(grid, L), transposed(cols, L), row_major(Wgrad, K), true);
        }

        /// grid[c, :] += bias[c] for Cg rows of L values.
        template <class T>
        void add_bias(const T* bias, std::int64_t rows, std::int64_t L, T* grid) noexcept
        {
            for (std::int64_t c = 0; c < rows; ++c)
            {
                const T b = bias[c];
                T* r = grid + c * L;
                for (std::int64_t l = 0; l < L; ++l)
                {
                    r[l] += b;
                }
            }
        }

        /// grad_bias[c] += sum over L of grid[c, :], for each of `rows` rows.
        template <class T>
        void accumulate_bias_grad(const T* grid, std::int64_t rows, std::int64_t L, T* grad_bias) noexcept
        {
            for (std::int64_t c = 0; c < rows; ++c)
            {
                const T* r = grid + c * L;
                T s = T(0);
                for (std::int64_t l = 0; l < L; ++l)
                {
                    s += r[l];
                }
                grad_bias[c] += s;
            }
        }

        // ------------------------------------------------------------------ explicit padding

        /// Source index of padded position p (may be negative or >= n) along an axis of size n.
        inline std::int64_t pad_source(std::int64_t p, std::int64_t n, padding_mode mode) noexcept
        {
            switch (mode)
            {
                case padding_mode::reflect:
                    return p < 0 ? -p : (p >= n ? 2 * (n - 1) - p : p);
                case padding_mode::replicate:
                    return std::clamp<std::int64_t>(p, 0, n - 1);
                case padding_mode::circular:
                    return ((p % n) + n) % n;
                case padding_mode::zeros:
                    break;
            }
            return p;
        }

        /// Pads `channels` planes H x W by the plan's amounts with its mode into dst (Hp x Wp planes).
        template <class T>
        void pad_planes(const T* src, std::int64_t channels, const conv2d_plan& p, T* dst)
        {
            const std::int64_t H = p.in_h, W = p.in_w, Hp = p.win.height, Wp = p.win.width;
            for (std::int64_t c = 0; c < channels; ++c)
            {
                const T* s = src + c * H * W;
                T* d = dst + c * Hp * Wp;
                for (std::int64_t y = 0; y < Hp; ++y)
                {
                    const T* row = s + pad_source(y - p.pad_top, H, p.mode) * W;
                    for (std::int64_t x = 0; x < Wp; ++x)
                    {
                        d[y * Wp + x] = row[pad_source(x - p.pad_left, W, p.mode)];
                    }
                }
            }
        }

        /// The adjoint of pad_planes: dst (H x W planes) = sum of the padded gradient over every
        /// padded position that was copied from each pixel.
        template <class T>
        void unpad_planes(const T* src, std::int64_t channels, const conv2d_plan& p, T* dst)
        {
            const std::int64_t H = p.in_h, W = p.in_w, Hp = p.win.height, Wp = p.win.width;
            std::fill(dst, dst + channels * H * W, T(0));
            for (std::int64_t c = 0; c < channels; ++c)
            {
                const T* s = src + c * Hp * Wp;
                T* d = dst + c * H * W;
                for (std::int64_t y = 0; y < Hp; ++y)
                {
                    T* row = d + pad_source(y - p.pad_top, H, p.mode) * W;
                    for (std::int64_t x = 0; x < Wp; ++x)
                    {
                        row[pad_source(x - p.pad_left, W, p.mode)] += s[y * Wp + x];
                    }
                }
            }
        }

        // ------------------------------------------------------------------ conv2d on raw buffers

        /// out (N, C_out, H_out, W_out) = conv2d(x, weight) + bias; bias may be null.
        template <class T>
        void conv2d_forward_into(const conv2d_plan& p, const T* x, const T* weight, const T* bias, T* out)
        {
            const std::int64_t Cin_g = p.in_per_group(), Cout_g = p.out_per_group();
            const std::int64_t L = p.win.blocks();
            const std::int64_t in_plane = p.in_h * p.in_w;
            const std::int64_t K = Cin_g * p.win.taps();
            std::vector<T> padded, scratch;
            if (p.explicit_pad)
            {
                padded.resize(static_cast<std::size_t>(p.in_channels * p.win.plane()));
            }
            for (std::int64_t n = 0; n < p.batch; ++n)
            {
                const T* xn = x + n * p.in_channels * in_plane;
                std::int64_t plane_size = in_plane;
                if (p.explicit_pad)
                {
                    pad_planes(xn, p.in_channels, p, padded.data());
                    xn = padded.data();
                    plane_size = p.win.plane();
                }
                for (std::int64_t g = 0; g < p.groups; ++g)
                {
                    T* grid = out + (n * p.out_channels + g * Cout_g) * L;
                    lowered_forward(p.win, Cin_g, Cout_g, weight + g * Cout_g * K, xn + g * Cin_g * plane_size, grid,
                                    scratch);
                    if (bias != nullptr)
                    {
                        add_bias(bias + g * Cout_g, Cout_g, L, grid);
                    }
                }
            }
        }

        /// The three gradients of conv2d; a null destination is not computed. gw and gb are
        /// overwritten (not accumulated).
        template <class T>
        void conv2d_backward_into(const conv2d_plan& p,
                                  const T* grad_out,
                                  const T* x,
                                  const T* weight,
                                  T* gx,
                                  T* gw,
                                  T* gb)
        {
            const std::int64_t Cin_g = p.in_per_group(), Cout_g = p.out_per_group();
            const std::int64_t L = p.win.blocks();
            const std::int64_t in_plane = p.in_h * p.in_w;
            const std::int64_t K = Cin_g * p.win.taps();
            if (gw != nullptr)
            {
                std::fill(gw, gw + p.out_channels * K, T(0));
            }
            if (gb != nullptr)
            {
                std::fill(gb, gb + p.out_channels, T(0));
            }
            std::vector<T> padded, grad_padded, scratch;
            if (p.explicit_pad)
            {
                padded.resize(static_cast<std::size_t>(p.in_channels * p.win.plane()));
                grad_padded.resize(padded.size());
            }
            const std::int64_t plane_size = p.explicit_pad ? p.win.plane() : in_plane;
            for (std::int64_t n = 0; n < p.batch; ++n)
            {
                const T* gyn = grad_out + n * p.out_channels * L;
                if (gb != nullptr)
                {
                    accumulate_bias_grad(gyn, p.out_channels, L, gb);
                }
                if (gw != nullptr)
                {
                    const T* xn = x + n * p.in_channels * in_plane;
                    if (p.explicit_pad)
                    {
                        pad_planes(xn, p.in_channels, p, padded.data());
                        xn = padded.data();
                    }
                    for (std::int64_t g = 0; g < p.groups; ++g)
                    {
                        lowered_backward_weight(p.win, Cin_g, Cout_g, gyn + g * Cout_g * L, xn + g * Cin_g * plane_size,
                                                gw + g * Cout_g * K, scratch);
                    }
                }
                if (gx != nullptr)
                {
                    T* gxn = gx + n * p.in_channels * in_plane;
                    T* dst = p.explicit_pad ? grad_padded.data() : gxn;
                    for (std::int64_t g = 0; g < p.groups; ++g)
                    {
                        lowered_backward_data(p.win, Cin_g, Cout_g, weight + g * Cout_g * K, gyn + g * Cout_g * L,
                                              dst + g * Cin_g * plane_size, scratch);
                    }
                    if (p.explicit_pad)
                    {
                        unpad_planes(grad_padded.data(), p.in_channels, p, gxn);
                    }
                }
            }
        }

        inline std::array<std::size_t, 4> conv2d_output_shape(const conv2d_plan& p)
        {
            return {static_cast<std::size_t>(p.batch), static_cast<std::size_t>(p.out_channels),
                    static_cast<std::size_t>(p.out_h()), static_cast<std::size_t>(p.out_w())};
        }

        template <class T, std::size_t N>
        xt::xtensor<T, N> empty_tensor()
        {
            std::array<std::size_t, N> shape{};
            return xt::xtensor<T, N>(shape);
        }

        /// conv2d on a batched shape; `in_shape` is (N, C, H, W) even for unbatched input.
        template <class T, std::size_t OutRank>
        xt::xtensor<T, OutRank> conv2d_impl(const std::array<std::size_t, 4>& in_shape,
                                            const T* x,
                                            const xt::xtensor<T, 4>& weight,
                                            const T* bias,
                                            std::optional<std::size_t> bias_size,
                                            const conv2d_options& options)
        {
            const auto p = plan_conv2d("conv2d", in_shape, weight.shape(), bias_size, options);
            const auto shape4 = conv2d_output_shape(p);
            std::array<std::size_t, OutRank> shape{};
            std::copy(shape4.end() - OutRank, shape4.end(), shape.begin());
            xt::xtensor<T, OutRank> out(shape);
            conv2d_forward_into(p, x, weight.data(), bias, out.data());
            return out;
        }

        template <class T, std::size_t InRank>
        conv_gradients<T, InRank> conv2d_backward_impl(const xt::xtensor<T, InRank>& grad_output,
                                                       const xt::xtensor<T, InRank>& input,
                                                       const xt::xtensor<T, 4>& weight,
                                                       const conv2d_options& options,
                                                       const output_mask& mask)
        {
            std::array<std::size_t, 4> in_shape{1, 1, 1, 1};
            std::copy(input.shape().begin(), input.shape().end(), in_shape.end() - InRank);
            const auto p = plan_conv2d("conv2d_backward", in_shape, weight.shape(), std::nullopt, options);
            const auto out4 = conv2d_output_shape(p);
            std::array<std::size_t, InRank> expected{};
            std::copy(out4.end() - InRank, out4.end(), expected.begin());
            check_shape("conv2d_backward", "grad_output", grad_output.shape(), expected);

            conv_gradients<T, InRank> g{empty_tensor<T, InRank>(), empty_tensor<T, 4>(), empty_tensor<T, 1>()};
            if (mask[0])
            {
                g.grad_input = xt::xtensor<T, InRank>(to_array<InRank>(input.shape()));
            }
            if (mask[1])
            {
                g.grad_weight = xt::xtensor<T, 4>(to_array<4>(weight.shape()));
            }
            if (mask[2])
            {
                g.grad_bias = xt::xtensor<T, 1>(std::array<std::size_t, 1>{static_cast<std::size_t>(p.out_channels)});
            }
            conv2d_backward_into(p, grad_output.data(), input.data(), weight.data(),
                                 mask[0] ? g.grad_input.data() : nullptr, mask[1] ? g.grad_weight.data() : nullptr,
                                 mask[2] ? g.grad_bias.data() : nullptr);
            return g;
        }
    }  // namespace detail

    /// conv2d without bias: input (N, C_in, H, W), weight (C_out, C_in/groups, kh, kw)
    /// -> (N, C_out, H_out, W_out). Throws std::invalid_argument on invalid arguments.
    template <class T>
    xt::xtensor<T, 4> conv2d(const xt::xtensor<T, 4>& input,
                             const xt::xtensor<T, 4>& weight,
                             const conv2d_options& options = {})
    {
        return detail::conv2d_impl<T, 4>(detail::to_array<4>(input.shape()), input.data(), weight, nullptr,
                                         std::nullopt, options);
    }

    /// conv2d with bias (C_out).
    template <class T>
    xt::xtensor<T, 4> conv2d(const xt::xtensor<T, 4>& input,
                             const xt::xtensor<T, 4>& weight,
                             const xt::xtensor<T, 1>& bias,
                             const conv2d_options& options = {})
    {
        return detail::conv2d_impl<T, 4>(detail::to_array<4>(input.shape()), input.data(), weight, bias.data(),
                                         bias.size(), options);
    }

    /// conv2d on an unbatched input (C_in, H, W) -> (C_out, H_out, W_out).
    template <class T>
    xt::xtensor<T, 3> conv2d(const xt::xtensor<T, 3>& input,
                             const xt::xtensor<T, 4>& weight,
                             const conv2d_options& options = {})
    {
        return detail::conv2d_impl<T, 3>(detail::batched(detail::to_array<3>(input.shape())), input.data(), weight,
                                         nullptr, std::nullopt, options);
    }

    /// conv2d with bias on an unbatched input (C_in, H, W) -> (C_out, H_out, W_out).
    template <class T>
    xt::xtensor<T, 3> conv2d(const xt::xtensor<T, 3>& input,
                             const xt::xtensor<T, 4>& weight,
                             const xt::xtensor<T, 1>& bias,
                             const conv2d_options& options = {})
    {
        return detail::conv2d_impl<T, 3>(detail::batched(detail::to_array<3>(input.shape())), input.data(), weight,
                                         bias.data(), bias.size(), options);
    }

    /// Gradients of conv2d (bias or not: grad_bias is the sum of grad_output over N, H_out, W_out).
    /// grad_output (N, C_out, H_out, W_out); returns grad_input (input's shape), grad_weight
    /// (weight's shape), grad_bias (C_out). `mask` selects which of the three to compute.
    template <class T>
    conv_gradients<T, 4> conv2d_backward(const xt::xtensor<T, 4>& grad_output,
                                         const xt::xtensor<T, 4>& input,
                                         const xt::xtensor<T, 4>& weight,
                                         const conv2d_options& options = {},
                                         const output_mask& mask = {true, true, true})
    {
        return detail::conv2d_backward_impl<T, 4>(grad_output, input, weight, options, mask);
    }

    /// Gradients of conv2d for an unbatched input (C_in, H, W) and grad_output (C_out, H_out, W_out).
    template <class T>
    conv_gradients<T, 3> conv2d_backward(const xt::xtensor<T, 3>& grad_output,
                                         const xt::xtensor<T, 3>& input,
                                         const xt::xtensor<T, 4>& weight,
                                         const conv2d_options& options = {},
                                         const output_mask& mask = {true, true, true})
    {
        return detail::conv2d_backward_impl<T, 3>(grad_output, input, weight, options, mask);
    }

    namespace detail
    {
        template <class T>
        xt::xtensor<T, 4> as_weight(const xt::xarray<T>& weight, const char* where)
        {
            if (weight.dimension() != 4)
            {
                fail(where, "expected a 4-D weight, got shape ", shape_string(weight.shape()));
            }
            return xt::xtensor<T, 4>(weight);
        }

        template <class T>
        xt::xtensor<T, 1> as_bias(const xt::xarray<T>& bias, const char* where)
        {
            if (bias.dimension() != 1)
            {
                fail(where, "expected a 1-D bias (C_out), got shape ", shape_string(bias.shape()));
            }
            return xt::xtensor<T, 1>(bias);
        }

        [[noreturn]] inline void fail_input_rank(const char* where, const std::vector<std::size_t>& shape)
        {
            fail(where, "expected a 4-D (N, C_in, H, W) or 3-D (C_in, H, W) input, got shape ", shape_string(shape));
        }

        template <class T>
        std::vector<std::size_t> shape_vector(const xt::xarray<T>& a)
        {
            return {a.shape().begin(), a.shape().end()};
        }

        /// Calls f with the xarray converted to xtensor<T, 4> or xtensor<T, 3>, else throws.
        template <class T, class F>
        auto with_rank(const xt::xarray<T>& a, const char* where, F&& f) -> xt::xarray<T>
        {
            if (a.dimension() == 4)
            {
                return f(xt::xtensor<T, 4>(a));
            }
            if (a.dimension() == 3)
            {
                return f(xt::xtensor<T, 3>(a));
            }
            fail_input_rank(where, shape_vector(a));
        }
    }  // namespace detail

    /// conv2d for dynamic-rank arrays (ranks checked at run time).
    template <class T>
    xt::xarray<T> conv2d(const xt::xarray<T>& input, const xt::xarray<T>& weight, const conv2d_options& options = {})
    {
        const auto w = detail::as_weight(weight, "conv2d");
        return detail::with_rank(input, "conv2d", [&](const auto& x) { return conv2d(x, w, options); });
    }

    /// conv2d with bias for dynamic-rank arrays (ranks checked at run time).
    template <class T>
    xt::xarray<T> conv2d(const xt::xarray<T>& input,
                         const xt::xarray<T>& weight,
                         const xt::xarray<T>& bias,
                         const conv2d_options& options = {})
    {
        const auto w = detail::as_weight(weight, "conv2d");
        const auto b = detail::as_bias(bias, "conv2d");
        return detail::with_rank(input, "conv2d", [&](const auto& x) { return conv2d(x, w, b, options); });
    }

    /// conv2d_backward for dynamic-rank arrays (ranks checked at run time).
    template <class T>
    gradients<xt::xarray<T>, xt::xarray<T>, xt::xarray<T>> conv2d_backward(const xt::xarray<T>& grad_output,
                                                                           const xt::xarray<T>& input,
                                                                           const xt::xarray<T>& weight,
                                                                           const conv2d_options& options = {},
                                                                           const output_mask& mask = {true, true,
                                                                                                      true})
    {
        const auto w = detail::as_weight(weight, "conv2d_backward");
        if (input.dimension() != grad_output.dimension() || (input.dimension() != 4 && input.dimension() != 3))
        {
            detail::fail("conv2d_backward", "expected input and grad_output both 4-D or both 3-D, got shapes ",
                         detail::shape_string(input.shape()), " and ", detail::shape_string(grad_output.shape()));
        }
        if (input.dimension() == 4)
        {
            auto g = conv2d_backward(xt::xtensor<T, 4>(grad_output), xt::xtensor<T, 4>(input), w, options, mask);
            return {g.grad_input, g.grad_weight, g.grad_bias};
        }
        auto g = conv2d_backward(xt::xtensor<T, 3>(grad_output), xt::xtensor<T, 3>(input), w, options, mask);
        return {g.grad_input, g.grad_weight, g.grad_bias};
    }
}  // namespace xconv

#endif
