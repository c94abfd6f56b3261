// xconv: functional conv_transpose2d and its backward pass
// (torch.nn.functional.conv_transpose2d semantics).
//
// The transposed convolution is conv2d's passes with the image and the grid of blocks swapped:
// the output is the image col2im writes, the input is the grid of blocks (one per input pixel).
//   forward          out_g = col2im( W_g^T [C_out/g*kh*kw, C_in/g] x x_g [C_in/g, H*W] )       (conv's backward-data)
//   backward-data    dx_g  [C_in/g, H*W] = W_g [C_in/g, C_out/g*kh*kw] x cols(dy_g) [C_out/g*kh*kw, H*W]   (conv's forward)
//   backward-weights dW_g  [C_in/g, C_out/g*kh*kw] += x_g [C_in/g, H*W] x cols(dy_g)^T [H*W, C_out/g*kh*kw]
// Because the grid is given (H x W) rather than derived from the output size, output_padding
// >= stride (allowed while < dilation) needs no special case.
#ifndef XCONV_CONV_TRANSPOSE2D_HPP
#define XCONV_CONV_TRANSPOSE2D_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include "conv2d.hpp"
#include "options.hpp"

namespace xconv
{
    namespace detail
    {
        inline std::array<std::size_t, 4> conv_transpose2d_output_shape(const conv_transpose2d_plan& p)
        {
            return {static_cast<std::size_t>(p.batch), static_cast<std::size_t>(p.out_channels),
                    static_cast<std::size_t>(p.out_h()), static_cast<std::size_t>(p.out_w())};
        }

        /// out (N, C_out, H_out, W_out) = conv_transpose2d(x, weight) + bias; bias may be null.
        template <class T>
        void conv_transpose2d_forward_into(const conv_transpose2d_plan& p,
                                           const T* x,
                                           const T* weight,
                                           const T* bias,
                                           T* out)
        {
            const scratch_call call;
            const std::int64_t Cin_g = p.in_per_group(), Cout_g = p.out_per_group();
            const std::int64_t L = p.win.blocks();         // H * W
            const std::int64_t out_plane = p.win.plane();  // H_out * W_out
            const std::int64_t K = Cout_g * p.win.taps();
            const conv_taps taps(p.win);
            const bool stream = stream_output(static_cast<std::size_t>(p.batch * p.out_channels * out_plane) * sizeof(T));
            // Stride 1: the forward pass of the flipped kernel over x (no col2im).
            if (backward_data_as_forward(p.win, Cout_g, Cin_g, p.groups, p.batch, weight, x, p.in_channels * L, out,
                                         p.out_channels * out_plane, bias))
            {
                return;
            }
            // Strides above 1: by sub-pixel phases, each a forward pass over x_g (no col2im).
            if (phases_apply(p.win, Cout_g, Cin_g))
            {
                phase_passes(p.win, Cout_g, Cin_g, p.groups, p.batch, weight, true, [&](const phase_weights<T>& phw, std::size_t reserved) {
                    for_each_sample_group<T>(p.batch, p.groups, [&](std::int64_t n, std::int64_t g, std::size_t budget, bool) {
                        phase_backward_data(p.win, phw, g, Cout_g, Cin_g, weight + g * Cin_g * K, x + (n * p.in_channels + g * Cin_g) * L,
                                            out + (n * p.out_channels + g * Cout_g) * out_plane,
                                            bias != nullptr ? bias + g * Cout_g : nullptr, budget);
                    }, reserved);
                });
                return;
            }
            // Else per sample and group: bias + col2im( W_g^T [K, Cin_g] x x_g [Cin_g, L] )
            const packed_weights<T> pw = prefer_direct(Cout_g, Cin_g)
                                             ? packed_weights<T>{}
                                             : pack_weights(weight_operand::backward_data_a, weight, p.groups, Cin_g, K, p.batch);
            for_each_sample_group<T>(p.batch, p.groups, [&](std::int64_t n, std::int64_t g, std::size_t budget, bool inner) {
                lowered_backward_data(p.win, taps, Cout_g, Cin_g, weight + g * Cin_g * K, x + (n * p.in_channels + g * Cin_g) * L,
                                      out + (n * p.out_channels + g * Cout_g) * out_plane, bias != nullptr ? bias + g * Cout_g : nullptr,
                                      budget, inner, stream, pw.group(g));
            }, pw.bytes);
        }

        /// The three gradients of conv_transpose2d; a null destination is not computed. gw and gb
        /// are overwritten (not accumulated).
        template <class T>
        void conv_transpose2d_backward_into(const conv_transpose2d_plan& p,
                                            const T* grad_out,
                                            const T* x,
                                            const T* weight,
                                            T* gx,
                                            T* gw,
                                            T* gb)
        {
            const scratch_call call;
            const std::int64_t Cin_g = p.in_per_group(), Cout_g = p.out_per_group();
            const std::int64_t L = p.win.blocks();
            const std::int64_t out_plane = p.win.plane();
            const std::int64_t K = Cout_g * p.win.taps();
            const conv_taps taps(p.win);
            // The direct passes add to the weight gradient; the lowered ones write all of it, unless
            // there is no position to sum over.
            if (gw != nullptr && (prefer_direct(Cout_g, Cin_g) || p.batch == 0 || L == 0))
            {
                std::fill(gw, gw + p.in_channels * K, T(0));
            }
            if (prefer_direct(Cout_g, Cin_g))
            {
                // Few channels per group (depthwise): GEMM-free passes over the batch.
                const bool stream_gx = stream_output(static_cast<std::size_t>(p.batch * p.in_channels * L) * sizeof(T));
                if (gb != nullptr)
                {
                    std::fill(gb, gb + p.out_channels, T(0));
                }
                direct_backward_batch<T>(
                    p.batch, p.groups, direct_wgrad_partial_size(p.win, Cout_g, Cin_g), gw != nullptr,
                    [&](std::int64_t n, std::int64_t g) {
                        direct_ahead().set(0, grad_out + (n * p.out_channels + g * Cout_g) * out_plane,
                                           static_cast<std::size_t>(Cout_g * out_plane) * sizeof(T));
                        direct_ahead().set(1, x + (n * p.in_channels + g * Cin_g) * L, static_cast<std::size_t>(Cin_g * L) * sizeof(T));
                    },
                    [&](std::int64_t n, std::int64_t g) {
                        const T* gy = grad_out + (n * p.out_channels + g * Cout_g) * out_plane;
                        for (std::int64_t c = 0; gb != nullptr && c < Cout_g; ++c)
                        {
                            gb[g * Cout_g + c] += row_sum(gy + c * out_plane, out_plane);
                        }
                    },
                    [&](std::int64_t n, std::int64_t g, T* partial, std::size_t budget) {
                        if (gw != nullptr)
                        {
                            direct_backward_weight(p.win, Cout_g, Cin_g, x + (n * p.in_channels + g * Cin_g) * L,
                                                   grad_out + (n * p.out_channels + g * Cout_g) * out_plane, partial, budget);
                        }
                    },
                    [&](std::int64_t g, const T* partial) {
                        direct_backward_weight_finish(p.win, Cout_g, Cin_g, partial, gw + g * Cin_g * K);
                    },
                    [&](std::int64_t n, std::int64_t g, std::size_t budget) {
                        if (gx != nullptr)
                        {
                            direct_forward(p.win, Cout_g, Cin_g, weight + g * Cin_g * K,
                                           grad_out + (n * p.out_channels + g * Cout_g) * out_plane,
                                           gx + (n * p.in_channels + g * Cin_g) * L, static_cast<const T*>(nullptr), budget,
                                           stream_gx);
                        }
                    });
                return;
            }
            if (gb != nullptr)
            {
                bias_grad(grad_out, p.batch, p.out_channels, out_plane, gb);
            }
            if (gw != nullptr)
            {
                // dW_g [Cin_g, K] += x_g [Cin_g, L] x cols(dy_g)^T [L, K], over the batch in order
                accumulate_weight_grad<T>(p.groups, Cin_g, K, [&](std::int64_t g, std::int64_t k_begin, std::int64_t k_end, std::size_t budget) {
                    backward_weight_block<T>(
                        p.win, taps, Cout_g, Cin_g, p.batch,
                        [&](std::int64_t n) { return grad_out + (n * p.out_channels + g * Cout_g) * out_plane; },
                        [&](std::int64_t n) { return x + (n * p.in_channels + g * Cin_g) * L; }, gw + g * Cin_g * K, k_begin, k_end,
                        budget);
                });
            }
            if (gx != nullptr)
            {
                scratch_call::next_pass();
                // dx_g [Cin_g, L] = W_g [Cin_g, K] x cols(dy_g) [K, L]
                if (forward_over_batch(p.win, taps, Cout_g, Cin_g, p.groups, p.batch, weight, grad_out, p.out_channels * out_plane,
                                       gx, p.in_channels * L, static_cast<const T*>(nullptr)))
                {
                    return;
                }
                const packed_weights<T> pw = narrow_output<T>(L, Cin_g)
                                                 ? packed_weights<T>{}
                                                 : pack_weights(weight_operand::forward_a, weight, p.groups, Cin_g, K, p.batch);
                for_each_sample_group<T>(p.batch, p.groups, [&](std::int64_t n, std::int64_t g, std::size_t budget, bool) {
                    lowered_forward(p.win, taps, Cout_g, Cin_g, weight + g * Cin_g * K,
                                    grad_out + (n * p.out_channels + g * Cout_g) * out_plane,
                                    gx + (n * p.in_channels + g * Cin_g) * L, static_cast<const T*>(nullptr), budget, false,
                                    pw.group(g));
                }, pw.bytes);
            }
        }

        template <class T, std::size_t OutRank>
        xt::xtensor<T, OutRank> conv_transpose2d_impl(const std::array<std::size_t, 4>& in_shape,
                                                      const T* x,
                                                      const xt::xtensor<T, 4>& weight,
                                                      const T* bias,
                                                      std::optional<std::size_t> bias_size,
                                                      const conv_transpose2d_options& options)
        {
            const auto p = plan_conv_transpose2d("conv_transpose2d", in_shape, weight.shape(), bias_size, options);
            const auto shape4 = conv_transpose2d_output_shape(p);
            std::array<std::size_t, OutRank> shape{};
            std::copy(shape4.end() - OutRank, shape4.end(), shape.begin());
            auto out = output_tensor<T, OutRank>(shape);
            conv_transpose2d_forward_into(p, x, weight.data(), bias, out.data());
            return out;
        }

        template <class T, std::size_t InRank>
        conv_gradients<T, InRank> conv_transpose2d_backward_impl(const xt::xtensor<T, InRank>& grad_output,
                                                                 const xt::xtensor<T, InRank>& input,
                                                                 const xt::xtensor<T, 4>& weight,
                                                                 const conv_transpose2d_options& options,
                                                                 const output_mask& mask)
        {
            std::array<std::size_t, 4> in_shape{1, 1, 1, 1};
            std::copy(input.shape().begin(), input.shape().end(), in_shape.end() - InRank);
            const auto p = plan_conv_transpose2d("conv_transpose2d_backward", in_shape, weight.shape(), std::nullopt,
                                                 options);
            const auto out4 = conv_transpose2d_output_shape(p);
            std::array<std::size_t, InRank> expected{};
            std::copy(out4.end() - InRank, out4.end(), expected.begin());
            check_shape("conv_transpose2d_backward", "grad_output", grad_output.shape(), expected);

            conv_gradients<T, InRank> g{empty_tensor<T, InRank>(), empty_tensor<T, 4>(), empty_tensor<T, 1>()};
            if (mask[0])
            {
                g.grad_input = output_tensor<T, InRank>(to_array<InRank>(input.shape()));
            }
            if (mask[1])
            {
                g.grad_weight = output_tensor<T, 4>(to_array<4>(weight.shape()));
            }
            if (mask[2])
            {
                g.grad_bias = xt::xtensor<T, 1>(std::array<std::size_t, 1>{static_cast<std::size_t>(p.out_channels)});
            }
            conv_transpose2d_backward_into(p, grad_output.data(), input.data(), weight.data(),
                                           mask[0] ? g.grad_input.data() : nullptr,
                                           mask[1] ? g.grad_weight.data() : nullptr,
                                           mask[2] ? g.grad_bias.data() : nullptr);
            return g;
        }
    }  // namespace detail

    /// conv_transpose2d without bias: input (N, C_in, H, W), weight (C_in, C_out/groups, kh, kw)
    /// -> (N, C_out, H_out, W_out) with H_out = (H-1)*stride - 2*padding + dilation*(kh-1) + output_padding + 1.
    template <class T>
    xt::xtensor<T, 4> conv_transpose2d(const xt::xtensor<T, 4>& input,
                                       const xt::xtensor<T, 4>& weight,
                                       const conv_transpose2d_options& options = {})
    {
        return detail::conv_transpose2d_impl<T, 4>(detail::to_array<4>(input.shape()), input.data(), weight, nullptr,
                                                   std::nullopt, options);
    }

    /// conv_transpose2d with bias (C_out).
    template <class T>
    xt::xtensor<T, 4> conv_transpose2d(const xt::xtensor<T, 4>& input,
                                       const xt::xtensor<T, 4>& weight,
                                       const xt::xtensor<T, 1>& bias,
                                       const conv_transpose2d_options& options = {})
    {
        return detail::conv_transpose2d_impl<T, 4>(detail::to_array<4>(input.shape()), input.data(), weight,
                                                   bias.data(), bias.size(), options);
    }

    /// conv_transpose2d on an unbatched input (C_in, H, W) -> (C_out, H_out, W_out).
    template <class T>
    xt::xtensor<T, 3> conv_transpose2d(const xt::xtensor<T, 3>& input,
                                       const xt::xtensor<T, 4>& weight,
                                       const conv_transpose2d_options& options = {})
    {
        return detail::conv_transpose2d_impl<T, 3>(detail::batched(detail::to_array<3>(input.shape())), input.data(),
                                                   weight, nullptr, std::nullopt, options);
    }

    /// conv_transpose2d with bias on an unbatched input (C_in, H, W) -> (C_out, H_out, W_out).
    template <class T>
    xt::xtensor<T, 3> conv_transpose2d(const xt::xtensor<T, 3>& input,
                                       const xt::xtensor<T, 4>& weight,
                                       const xt::xtensor<T, 1>& bias,
                                       const conv_transpose2d_options& options = {})
    {
        return detail::conv_transpose2d_impl<T, 3>(detail::batched(detail::to_array<3>(input.shape())), input.data(),
                                                   weight, bias.data(), bias.size(), options);
    }

    /// Gradients of conv_transpose2d: grad_output (N, C_out, H_out, W_out) -> grad_input (input's
    /// shape), grad_weight (weight's shape), grad_bias (C_out). `mask` selects which to compute.
    template <class T>
    conv_gradients<T, 4> conv_transpose2d_backward(const xt::xtensor<T, 4>& grad_output,
                                                   const xt::xtensor<T, 4>& input,
                                                   const xt::xtensor<T, 4>& weight,
                                                   const conv_transpose2d_options& options = {},
                                                   const output_mask& mask = {true, true, true})
    {
        return detail::conv_transpose2d_backward_impl<T, 4>(grad_output, input, weight, options, mask);
    }

    /// Gradients of conv_transpose2d for an unbatched input (C_in, H, W).
    template <class T>
    conv_gradients<T, 3> conv_transpose2d_backward(const xt::xtensor<T, 3>& grad_output,
                                                   const xt::xtensor<T, 3>& input,
                                                   const xt::xtensor<T, 4>& weight,
                                                   const conv_transpose2d_options& options = {},
                                                   const output_mask& mask = {true, true, true})
    {
        return detail::conv_transpose2d_backward_impl<T, 3>(grad_output, input, weight, options, mask);
    }

    /// conv_transpose2d for dynamic-rank arrays (ranks checked at run time).
    template <class T>
    xt::xarray<T> conv_transpose2d(const xt::xarray<T>& input,
                                   const xt::xarray<T>& weight,
                                   const conv_transpose2d_options& options = {})
    {
        const auto w = detail::as_weight(weight, "conv_transpose2d");
        return detail::with_rank(input, "conv_transpose2d",
                                 [&](const auto& x) { return conv_transpose2d(x, w, options); });
    }

    /// conv_transpose2d with bias for dynamic-rank arrays (ranks checked at run time).
    template <class T>
    xt::xarray<T> conv_transpose2d(const xt::xarray<T>& input,
                                   const xt::xarray<T>& weight,
                                   const xt::xarray<T>& bias,
                                   const conv_transpose2d_options& options = {})
    {
        const auto w = detail::as_weight(weight, "conv_transpose2d");
        const auto b = detail::as_bias(bias, "conv_transpose2d");
        return detail::with_rank(input, "conv_transpose2d",
                                 [&](const auto& x) { return conv_transpose2d(x, w, b, options); });
    }

    /// conv_transpose2d_backward for dynamic-rank arrays (ranks checked at run time).
    template <class T>
    gradients<xt::xarray<T>, xt::xarray<T>, xt::xarray<T>> conv_transpose2d_backward(
        const xt::xarray<T>& grad_output,
        const xt::xarray<T>& input,
        const xt::xarray<T>& weight,
        const conv_transpose2d_options& options = {},
        const output_mask& mask = {true, true, true})
    {
        const auto w = detail::as_weight(weight, "conv_transpose2d_backward");
        if (input.dimension() != grad_output.dimension() || (input.dimension() != 4 && input.dimension() != 3))
        {
            detail::fail("conv_transpose2d_backward",
                         "expected input and grad_output both 4-D or both 3-D, got shapes ",
                         detail::shape_string(input.shape()), " and ", detail::shape_string(grad_output.shape()));
        }
        if (input.dimension() == 4)
        {
            auto g = conv_transpose2d_backward(xt::xtensor<T, 4>(grad_output), xt::xtensor<T, 4>(input), w, options,
                                               mask);
            return {g.grad_input, g.grad_weight, g.grad_bias};
        }
        auto g = conv_transpose2d_backward(xt::xtensor<T, 3>(grad_output), xt::xtensor<T, 3>(input), w, options, mask);
        return {g.grad_input, g.grad_weight, g.grad_bias};
    }
}  // namespace xconv

#endif
