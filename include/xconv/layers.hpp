// xconv: Conv2d and ConvTranspose2d layers (torch.nn.Conv2d / torch.nn.ConvTranspose2d).
//
// A layer owns its weight and bias in PyTorch's layout, initialises them as PyTorch does,
// remembers the input of the last forward call, and on backward returns the input gradient while
// accumulating the parameter gradients (like PyTorch's `.grad`) until zero_grad().
#ifndef XCONV_LAYERS_HPP
#define XCONV_LAYERS_HPP

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xnpy.hpp>
#include <xtensor/xtensor.hpp>

#include "conv2d.hpp"
#include "conv_transpose2d.hpp"
#include "options.hpp"

namespace xconv
{
    /// The generator used by layer constructors that are not given one.
    inline std::mt19937_64& default_generator()
    {
        static std::mt19937_64 generator{0x5eed};
        return generator;
    }

    /// Seeds the default generator (like torch.manual_seed).
    inline void manual_seed(std::uint64_t seed)
    {
        default_generator().seed(seed);
    }

    /// A flat, non-owning view of one parameter and its gradient, for optimisers:
    /// `for (auto& p : layer.parameters()) p.value -= lr * p.grad;`
    template <class T>
    struct parameter
    {
        /// A flat, mutable 1-D view of the parameter's buffer.
        using value_view = decltype(xt::adapt(std::declval<T*>(), std::declval<std::array<std::size_t, 1>>()));
        /// A flat, read-only 1-D view of the gradient's buffer.
        using grad_view = decltype(xt::adapt(std::declval<const T*>(), std::declval<std::array<std::size_t, 1>>()));

        std::string name;  ///< "weight" or "bias"
        value_view value;  ///< the parameter, flattened
        grad_view grad;    ///< its accumulated gradient, flattened
    };

    namespace detail
    {
        struct conv2d_layer_traits
        {
            using options_type = conv2d_options;
            static constexpr const char* name = "Conv2d";

            static std::array<std::size_t, 4> weight_shape(std::size_t in, std::size_t out, size2 k, std::size_t g)
            {
                return {out, in / g, static_cast<std::size_t>(k.h), static_cast<std::size_t>(k.w)};
            }

            template <class T, std::size_t N>
            static xt::xtensor<T, N> forward(const xt::xtensor<T, N>& x,
                                             const xt::xtensor<T, 4>& w,
                                             const xt::xtensor<T, 1>* b,
                                             const options_type& o)
            {
                return b != nullptr ? conv2d(x, w, *b, o) : conv2d(x, w, o);
            }

            template <class T, std::size_t N>
            static conv_gradients<T, N> backward(const xt::xtensor<T, N>& gy,
                                                 const xt::xtensor<T, N>& x,
                                                 const xt::xtensor<T, 4>& w,
                                                 const options_type& o,
                                                 const output_mask& mask)
            {
                return conv2d_backward(gy, x, w, o, mask);
            }
        };

        struct conv_transpose2d_layer_traits
        {
            using options_type = conv_transpose2d_options;
            static constexpr const char* name = "ConvTranspose2d";

            static std::array<std::size_t, 4> weight_shape(std::size_t in, std::size_t out, size2 k, std::size_t g)
            {
                return {in, out / g, static_cast<std::size_t>(k.h), static_cast<std::size_t>(k.w)};
            }

            template <class T, std::size_t N>
            static xt::xtensor<T, N> forward(const xt::xtensor<T, N>& x,
                                             const xt::xtensor<T, 4>& w,
                                             const xt::xtensor<T, 1>* b,
                                             const options_type& o)
            {
                return b != nullptr ? conv_transpose2d(x, w, *b, o) : conv_transpose2d(x, w, o);
            }

            template <class T, std::size_t N>
            static conv_gradients<T, N> backward(const xt::xtensor<T, N>& gy,
                                                 const xt::xtensor<T, N>& x,
                                                 const xt::xtensor<T, 4>& w,
                                                 const options_type& o,
                                                 const output_mask& mask)
            {
                return conv_transpose2d_backward(gy, x, w, o, mask);
            }
        };

        template <class T, std::size_t N>
        xt::xtensor<T, N> load_npy_checked(const std::string& path, const std::array<std::size_t, N>& expected)
        {
            xt::xarray<T> a;
            try
            {
                a = xt::load_npy<T>(path);
            }
            catch (const std::exception& e)
            {
                fail("load", "cannot read ", path, ": ", e.what());
            }
            check_shape("load", path.c_str(), a.shape(), expected);
            return xt::xtensor<T, N>(a);
        }

        /// What Conv2d and ConvTranspose2d share: parameters, their gradients, init, the cached
        /// input, save / load. Traits supply the weight layout and the functional passes.
        template <class T, class Traits>
        class conv_layer
        {
        public:
            using value_type = T;
            using options_type = typename Traits::options_type;

            /// in_channels, out_channels and kernel_size as in PyTorch; the options hold stride,
            /// padding, dilation, groups (and the mode). Parameters are drawn from `generator`.
            template <class URBG>
            conv_layer(std::size_t in_channels,
                       std::size_t out_channels,
                       size2 kernel_size,
                       const options_type& options,
                       bool bias,
                       URBG& generator)
                : m_options(options)
                , m_has_bias(bias)
            {
                check_layer(Traits::name, in_channels, out_channels, kernel_size, options.groups);
                m_weight = xt::xtensor<T, 4>(Traits::weight_shape(in_channels, out_channels, kernel_size, options.groups));
                m_bias = xt::xtensor<T, 1>(std::array<std::size_t, 1>{bias ? out_channels : 0});
                m_weight_grad = xt::zeros<T>(m_weight.shape());
                m_bias_grad = xt::zeros<T>(m_bias.shape());
                reset_parameters(generator);
            }

            /// Redraws the parameters as PyTorch's reset_parameters does: kaiming_uniform with
            /// a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = weight.shape(1)*kh*kw,
            /// for the weight and for the bias.
            template <class URBG>
            void reset_parameters(URBG& generator)
            {
                const auto fan_in = static_cast<double>(m_weight.shape()[1] * m_weight.shape()[2] * m_weight.shape()[3]);
                const double bound = 1.0 / std::sqrt(fan_in);
                std::uniform_real_distribution<double> u(-bound, bound);
                for (auto& v : m_weight)
                {
                    v = static_cast<T>(u(generator));
                }
                for (auto& v : m_bias)
                {
                    v = static_cast<T>(u(generator));
                }
            }

            /// Forward pass on a batched (N, C, H, W) input; remembers the input for backward.
            xt::xtensor<T, 4> forward(const xt::xtensor<T, 4>& input)
            {
                return forward_with(input, m_options);
            }

            /// Forward pass on an unbatched (C, H, W) input.
            xt::xtensor<T, 3> forward(const xt::xtensor<T, 3>& input)
            {
                return forward_with(input, m_options);
            }

            /// Backward pass for the last forward call: returns the gradient of the input and adds
            /// the gradients of the weight and bias to weight_grad() and bias_grad().
            xt::xtensor<T, 4> backward(const xt::xtensor<T, 4>& grad_output)
            {
                return backward_impl(grad_output, m_input4);
            }

            /// Backward pass for an unbatched forward call.
            xt::xtensor<T, 3> backward(const xt::xtensor<T, 3>& grad_output)
            {
                return backward_impl(grad_output, m_input3);
            }

            /// Sets both parameter gradients to zero.
            void zero_grad()
            {
                m_weight_grad.fill(T(0));
                m_bias_grad.fill(T(0));
            }

            const xt::xtensor<T, 4>& weight() const noexcept { return m_weight; }
            /// The bias (C_out); empty when the layer has none.
            const xt::xtensor<T, 1>& bias() const noexcept { return m_bias; }
            bool has_bias() const noexcept { return m_has_bias; }
            const xt::xtensor<T, 4>& weight_grad() const noexcept { return m_weight_grad; }
            const xt::xtensor<T, 1>& bias_grad() const noexcept { return m_bias_grad; }
            const options_type& options() const noexcept { return m_options; }

            /// Replaces the weight; its shape must stay the same.
            void set_weight(const xt::xtensor<T, 4>& weight)
            {
                check_shape(Traits::name, "weight", weight.shape(), m_weight.shape());
                xt::noalias(m_weight) = weight;
            }

            /// Replaces the bias; its shape must stay the same (the layer must have a bias).
            void set_bias(const xt::xtensor<T, 1>& bias)
            {
                if (!m_has_bias)
                {
                    fail(Traits::name, "the layer was built without a bias");
                }
                check_shape(Traits::name, "bias", bias.shape(), m_bias.shape());
                xt::noalias(m_bias) = bias;
            }

            /// Mutable flat views of the parameters and const views of their gradients. The layer
            /// never reallocates these buffers (set_weight, load and backward write in place), so
            /// the views stay valid for the layer's lifetime, across any number of steps.
            std::vector<parameter<T>> parameters()
            {
                std::vector<parameter<T>> ps;
                ps.push_back(make_parameter("weight", m_weight.data(), m_weight_grad.data(), m_weight.size()));
                if (m_has_bias)
                {
                    ps.push_back(make_parameter("bias", m_bias.data(), m_bias_grad.data(), m_bias.size()));
                }
                return ps;
            }

            /// Writes <prefix>weight.npy (and <prefix>bias.npy when the layer has a bias).
            void save(const std::string& prefix) const
            {
                xt::dump_npy(prefix + "weight.npy", m_weight);
                if (m_has_bias)
                {
                    xt::dump_npy(prefix + "bias.npy", m_bias);
                }
            }

            /// Reads <prefix>weight.npy (and <prefix>bias.npy when the layer has a bias); the
            /// arrays must have the layer's dtype and shapes, else std::invalid_argument.
            void load(const std::string& prefix)
            {
                auto w = load_npy_checked<T, 4>(prefix + "weight.npy", to_array<4>(m_weight.shape()));
                if (m_has_bias)
                {
                    auto b = load_npy_checked<T, 1>(prefix + "bias.npy", to_array<1>(m_bias.shape()));
                    xt::noalias(m_bias) = b;
                }
                xt::noalias(m_weight) = w;
            }

        protected:
            template <std::size_t N>
            xt::xtensor<T, N> forward_with(const xt::xtensor<T, N>& input, const options_type& options)
            {
                auto out = Traits::forward(input, m_weight, m_has_bias ? &m_bias : nullptr, options);
                cache<N>() = input;
                m_forward_options = options;
                m_cached_rank = N;
                return out;
            }

        private:
            template <std::size_t N>
            xt::xtensor<T, N>& cache()
            {
                if constexpr (N == 4)
                {
                    return m_input4;
                }
                else
                {
                    return m_input3;
                }
            }

            template <std::size_t N>
            xt::xtensor<T, N> backward_impl(const xt::xtensor<T, N>& grad_output, const xt::xtensor<T, N>& input)
            {
                if (m_cached_rank != N)
                {
                    throw std::logic_error(concat("xconv::", Traits::name, "::backward: no ", N,
                                                  "-D forward call to differentiate (call forward first)"));
                }
                auto g = Traits::backward(grad_output, input, m_weight, m_forward_options, {true, true, m_has_bias});
                xt::noalias(m_weight_grad) += g.grad_weight;
                if (m_has_bias)
                {
                    xt::noalias(m_bias_grad) += g.grad_bias;
                }
                return std::move(g.grad_input);
            }

            static parameter<T> make_parameter(const char* name, T* value, const T* grad, std::size_t size)
            {
                const std::array<std::size_t, 1> shape{size};
                // Pass the pointers as prvalues: xt::adapt is ambiguous for lvalue pointers.
                return parameter<T>{name, xt::adapt(static_cast<T*>(value), shape),
                                    xt::adapt(static_cast<const T*>(grad), shape)};
            }

            options_type m_options;
            options_type m_forward_options;
            bool m_has_bias;
            std::size_t m_cached_rank = 0;
            xt::xtensor<T, 4> m_weight, m_weight_grad;
            xt::xtensor<T, 1> m_bias, m_bias_grad;
            xt::xtensor<T, 4> m_input4;
            xt::xtensor<T, 3> m_input3;
        };
    }  // namespace detail

    /// torch.nn.Conv2d: weight (C_out, C_in/groups, kh, kw), bias (C_out).
    template <class T = float>
    class Conv2d : public detail::conv_layer<T, detail::conv2d_layer_traits>
    {
        using base = detail::conv_layer<T, detail::conv2d_layer_traits>;

    public:
        using base::base;

        /// Parameters drawn from the default generator (see manual_seed).
        Conv2d(std::size_t in_channels,
               std::size_t out_channels,
               size2 kernel_size,
               const conv2d_options& options = {},
               bool bias = true)
            : base(in_channels, out_channels, kernel_size, options, bias, default_generator())
        {
        }
    };

    /// torch.nn.ConvTranspose2d: weight (C_in, C_out/groups, kh, kw), bias (C_out).
    template <class T = float>
    class ConvTranspose2d : public detail::conv_layer<T, detail::conv_transpose2d_layer_traits>
    {
        using base = detail::conv_layer<T, detail::conv_transpose2d_layer_traits>;

    public:
        using base::base;
        using base::forward;

        /// Parameters drawn from the default generator (see manual_seed).
        ConvTranspose2d(std::size_t in_channels,
                        std::size_t out_channels,
                        size2 kernel_size,
                        const conv_transpose2d_options& options = {},
                        bool bias = true)
            : base(in_channels, out_channels, kernel_size, options, bias, default_generator())
        {
        }

        /// Forward pass with a requested spatial output size (picks output_padding, as
        /// ConvTranspose2d.forward(input, output_size) does).
        xt::xtensor<T, 4> forward(const xt::xtensor<T, 4>& input, size2 output_size)
        {
            auto o = this->options();
            o.output_size = output_size;
            return this->forward_with(input, o);
        }

        /// Unbatched forward pass with a requested spatial output size.
        xt::xtensor<T, 3> forward(const xt::xtensor<T, 3>& input, size2 output_size)
        {
            auto o = this->options();
            o.output_size = output_size;
            return this->forward_with(input, o);
        }
    };
}  // namespace xconv

#endif
