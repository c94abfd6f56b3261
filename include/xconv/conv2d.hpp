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

#include "detail/conv_lowered.hpp"
#include "detail/conv_pack.hpp"
#include "detail/conv_phases.hpp"
#include "detail/conv_parallel.hpp"
#include "detail/conv_scratch.hpp"
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

        /// The Cin/groups input planes of sample n, group g, as the passes read them: padded into
        /// the calling thread's buffer `buf` when the plan pads explicitly, else in place.
        template <class T>
        const T* conv2d_group_input(const conv2d_plan& p, const T* x, std::int64_t n, std::int64_t g, conv_buffer<T>& buf)
        {
            const std::int64_t Cin_g = p.in_per_group();
            const T* src = x + (n * p.in_channels + g * Cin_g) * p.in_h * p.in_w;
            if (!p.explicit_pad)
            {
                return src;
            }
            T* padded = buf.get(static_cast<std::size_t>(Cin_g * p.win.plane()));
            pad_planes(src, Cin_g, p, padded);
            return padded;
        }

        /// out (N, C_out, H_out, W_out) = conv2d(x, weight) + bias; bias may be null.
        template <class T>
        void conv2d_forward_into(const conv2d_plan& p, const T* x, const T* weight, const T* bias, T* out)
        {
            const scratch_call call;
            const std::int64_t Cin_g = p.in_per_group(), Cout_g = p.out_per_group();
            const std::int64_t L = p.win.blocks();
            const std::int64_t K = Cin_g * p.win.taps();
            const conv_taps taps(p.win);
            const bool stream = stream_output(static_cast<std::size_t>(p.batch * p.out_channels * L) * sizeof(T));
            // per sample and group: [Cout_g, K] x cols(x_g) [K, L] -> [Cout_g, L] (+ bias)
            const bool direct = prefer_direct(Cin_g, Cout_g);
            const std::int64_t in_plane = p.in_h * p.in_w;
            if (!p.explicit_pad
                && forward_over_batch(p.win, taps, Cin_g, Cout_g, p.groups, p.batch, weight, x, p.in_channels * in_plane, out,
                                      p.out_channels * L, bias))
            {
                return;
            }
            const packed_weights<T> pw = direct || narrow_output<T>(L, Cout_g)
                                             ? packed_weights<T>{}
                                             : pack_weights(weight_operand::forward_a, weight, p.groups, Cout_g, K, p.batch);
            for_each_sample_group<T>(p.batch, p.groups, [&](std::int64_t n, std::int64_t g, std::size_t budget, bool) {
                if (direct && n * p.groups + g + direct_prefetch_distance < p.batch * p.groups)
                {
                    // A direct pass streams through memory: fetch the planes of a later group now
                    // (the groups of a sample follow each other in memory, and then the next sample).
                    const T* next = x + (n * p.in_channels + (g + direct_prefetch_distance) * Cin_g) * in_plane;
                    direct_ahead().set(0, next, static_cast<std::size_t>(Cin_g * in_plane) * sizeof(T));
                }
                const T* src = conv2d_group_input(p, x, n, g, conv_workspace<T>::local().padded);
                lowered_forward(p.win, taps, Cin_g, Cout_g, weight + g * Cout_g * K, src,
                                out + (n * p.out_channels + g * Cout_g) * L, bias != nullptr ? bias + g * Cout_g : nullptr,
                                budget, stream, pw.group(g));
            }, pw.bytes);
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
            const scratch_call call;
            const std::int64_t Cin_g = p.in_per_group(), Cout_g = p.out_per_group();
            const std::int64_t L = p.win.blocks();
            const std::int64_t in_plane = p.in_h * p.in_w;
            const std::int64_t K = Cin_g * p.win.taps();
            const conv_taps taps(p.win);
            // The direct passes add to the weight gradient; the lowered ones write all of it, unless
            // there is no position to sum over.
            if (gw != nullptr && (prefer_direct(Cin_g, Cout_g) || p.batch == 0 || L == 0))
            {
                std::fill(gw, gw + p.out_channels * K, T(0));
            }
            if (prefer_direct(Cin_g, Cout_g))
            {
                // Few channels per group (depthwise): GEMM-free passes over the batch.
                const bool stream_gx = !p.explicit_pad && stream_output(static_cast<std::size_t>(p.batch * p.in_channels * in_plane) * sizeof(T));
                if (gb != nullptr)
                {
                    std::fill(gb, gb + p.out_channels, T(0));
                }
                direct_backward_batch<T>(
                    p.batch, p.groups, direct_wgrad_partial_size(p.win, Cin_g, Cout_g), gw != nullptr,
                    [&](std::int64_t n, std::int64_t g) {
                        direct_ahead().set(0, grad_out + (n * p.out_channels + g * Cout_g) * L, static_cast<std::size_t>(Cout_g * L) * sizeof(T));
                        direct_ahead().set(1, x + (n * p.in_channels + g * Cin_g) * in_plane, static_cast<std::size_t>(Cin_g * in_plane) * sizeof(T));
                    },
                    [&](std::int64_t n, std::int64_t g) {
                        const T* gy = grad_out + (n * p.out_channels + g * Cout_g) * L;
                        for (std::int64_t c = 0; gb != nullptr && c < Cout_g; ++c)
                        {
                            gb[g * Cout_g + c] += row_sum(gy + c * L, L);
                        }
                    },
                    [&](std::int64_t n, std::int64_t g, T* partial, std::size_t budget) {
                        if (gw != nullptr)
                        {
                            direct_backward_weight(p.win, Cin_g, Cout_g, grad_out + (n * p.out_channels + g * Cout_g) * L,
                                                   conv2d_group_input(p, x, n, g, conv_workspace<T>::local().padded),
                                                   partial, budget);
                        }
                    },
                    [&](std::int64_t g, const T* partial) {
                        direct_backward_weight_finish(p.win, Cin_g, Cout_g, partial, gw + g * Cout_g * K);
                    },
                    [&](std::int64_t n, std::int64_t g, std::size_t budget) {
                        if (gx == nullptr)
                        {
                            return;
                        }
                        T* gxg = gx + (n * p.in_channels + g * Cin_g) * in_plane;
                        T* dst = p.explicit_pad ? conv_workspace<T>::local().padded_grad.get(
                                                      static_cast<std::size_t>(Cin_g * p.win.plane()))
                                                : gxg;
                        direct_backward_data(p.win, Cin_g, Cout_g, weight + g * Cout_g * K,
                                             grad_out + (n * p.out_channels + g * Cout_g) * L, dst,
                                             static_cast<const T*>(nullptr), budget, stream_gx);
                        if (p.explicit_pad)
                        {
                            unpad_planes(dst, Cin_g, p, gxg);
                        }
                    });
                return;
            }
            if (gb != nullptr)
            {
                bias_grad(grad_out, p.batch, p.out_channels, L, gb);
            }
            if (gw != nullptr)
            {
                // dW_g [Cout_g, K] += dy_g [Cout_g, L] x cols(x_g)^T [L, K], over the batch in order
                accumulate_weight_grad<T>(p.groups, Cout_g, K, [&](std::int64_t g, std::int64_t k_begin, std::int64_t k_end, std::size_t budget) {
                    backward_weight_block<T>(
                        p.win, taps, Cin_g, Cout_g, p.batch,
                        [&](std::int64_t n) { return conv2d_group_input(p, x, n, g, conv_workspace<T>::local().padded); },
                        [&](std::int64_t n) { return grad_out + (n * p.out_channels + g * Cout_g) * L; }, gw + g * Cout_g * K, k_begin,
                        k_end, budget);
                });
            }
            if (gx != nullptr)
            {
                scratch_call::next_pass();
                // Stride 1: dx_g is the forward pass of the flipped kernel over dy_g.
                if (!p.explicit_pad
                    && backward_data_as_forward(p.win, Cin_g, Cout_g, p.groups, p.batch, weight, grad_out, p.out_channels * L, gx,
                                                p.in_channels * in_plane))
                {
                    return;
                }
                // The plane a sample's group writes: the input gradient, or the padded plane it is
                // cut from (padding modes other than zeros).
                const auto plane_of = [&](std::int64_t n, std::int64_t g) {
                    return p.explicit_pad ? conv_workspace<T>::local().padded_grad.get(static_cast<std::size_t>(Cin_g * p.win.plane()))
                                          : gx + (n * p.in_channels + g * Cin_g) * in_plane;
                };
                const auto finish = [&](std::int64_t n, std::int64_t g, T* dst) {
                    if (p.explicit_pad)
                    {
                        unpad_planes(dst, Cin_g, p, gx + (n * p.in_channels + g * Cin_g) * in_plane);
                    }
                };
                // Strides above 1: by sub-pixel phases, each a forward pass over dy_g (no col2im);
                // phase by phase over the batch only when each plane is the gradient itself.
                if (phases_apply(p.win, Cin_g, Cout_g))
                {
                    phase_passes(p.win, Cin_g, Cout_g, p.groups, p.batch, weight, !p.explicit_pad,
                                 [&](const phase_weights<T>& phw, std::size_t reserved) {
                                     for_each_sample_group<T>(p.batch, p.groups, [&](std::int64_t n, std::int64_t g, std::size_t budget, bool) {
                                         T* dst = plane_of(n, g);
                                         phase_backward_data(p.win, phw, g, Cin_g, Cout_g, weight + g * Cout_g * K,
                                                             grad_out + (n * p.out_channels + g * Cout_g) * L, dst,
                                                             static_cast<const T*>(nullptr), budget);
                                         finish(n, g, dst);
                                     }, reserved);
                                 });
                    return;
                }
                // Else dx_g = col2im( W_g^T [K, Cout_g] x dy_g [Cout_g, L] )
                const packed_weights<T> pw = pack_weights(weight_operand::backward_data_a, weight, p.groups, Cout_g, K, p.batch);
                for_each_sample_group<T>(p.batch, p.groups, [&](std::int64_t n, std::int64_t g, std::size_t budget, bool inner) {
                    T* dst = plane_of(n, g);
                    lowered_backward_data(p.win, taps, Cin_g, Cout_g, weight + g * Cout_g * K, grad_out + (n * p.out_channels + g * Cout_g) * L,
                                          dst, static_cast<const T*>(nullptr), budget, inner, false, pw.group(g));
                    finish(n, g, dst);
                }, pw.bytes);
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
            auto out = output_tensor<T, OutRank>(shape);
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
