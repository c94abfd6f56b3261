// Naive reference implementations used as test oracles.
//
// Everything here is written straight from the mathematical definitions with plain nested loops,
// one output (or one scattered contribution) at a time, and does not include or call any xconv
// header: the tests compare xconv against these functions, so they must not share code with it.
// Sums are accumulated in double (or long double for double tensors) so that the reference is at
// least as accurate as the code under test.
//
// Conventions (PyTorch's):
//   conv2d            input (N, C_in, H, W), weight (C_out, C_in/groups, kh, kw), bias (C_out)
//   conv_transpose2d  input (N, C_in, H, W), weight (C_in, C_out/groups, kh, kw), bias (C_out)
//   unfold            input (N, C, H, W) -> columns (N, C*kh*kw, L), row c*kh*kw + i*kw + j,
//                     column by*blocks_w + bx
//   fold              columns (N, C*kh*kw, L) -> (N, C, H, W), overlapping values summed
#ifndef XCONV_TESTS_SUPPORT_REFERENCE_HPP
#define XCONV_TESTS_SUPPORT_REFERENCE_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <xtensor/xtensor.hpp>

namespace xconv_test
{
    using index_t = std::int64_t;

    /// Accumulator type of the reference: wider than T.
    template <class T>
    using wide_t = std::conditional_t<std::is_same<T, float>::value, double, long double>;

    /// How values outside the image are defined (torch.nn.Conv2d's padding_mode).
    enum class pad_mode
    {
        zeros,
        reflect,
        replicate,
        circular
    };

    /// Maps a coordinate p of the padded image (measured in the unpadded image's coordinates, so
    /// that p < 0 is above / left of the image) to the image coordinate whose value it holds, or
    /// -1 when the padded value is a zero. n is the image extent along that axis.
    ///   reflect   : ... x2 x1 | x0 x1 ... x(n-1) | x(n-2) ...   (edge not repeated)
    ///   replicate : ... x0 x0 | x0 x1 ... x(n-1) | x(n-1) ...
    ///   circular  : ... x(n-2) x(n-1) | x0 ... x(n-1) | x0 x1 ...
    inline index_t source_index(index_t p, index_t n, pad_mode mode)
    {
        if (p >= 0 && p < n)
        {
            return p;
        }
        switch (mode)
        {
            case pad_mode::zeros:
                return -1;
            case pad_mode::reflect:
            {
                const index_t r = p < 0 ? -p : 2 * (n - 1) - p;
                if (r < 0 || r >= n)
                {
                    throw std::logic_error("reference: reflect padding reaches past the opposite edge");
                }
                return r;
            }
            case pad_mode::replicate:
                return p < 0 ? 0 : n - 1;
            case pad_mode::circular:
                return ((p % n) + n) % n;
        }
        return -1;
    }

    // ------------------------------------------------------------------------------- conv2d

    /// Geometry of a (cross-correlation) convolution with possibly asymmetric padding.
    struct conv_geometry
    {
        index_t stride_h = 1, stride_w = 1;
        index_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
        index_t dil_h = 1, dil_w = 1;
        index_t groups = 1;
        pad_mode mode = pad_mode::zeros;
    };

    /// PyTorch's padding='same' for one axis: total dilation*(k-1), the smaller half first.
    inline void same_padding(index_t kernel, index_t dilation, index_t& before, index_t& after)
    {
        const index_t total = dilation * (kernel - 1);
        before = total / 2;
        after = total - before;
    }

    /// Number of output positions along an axis: positions o >= 0 with
    /// o*stride + dilation*(kernel-1) <= size + pad_before + pad_after - 1.
    inline index_t conv_out_extent(index_t size, index_t pad_before, index_t pad_after, index_t kernel,
                                   index_t stride, index_t dilation)
    {
        const index_t padded = size + pad_before + pad_after;
        const index_t span = dilation * (kernel - 1) + 1;
        if (padded < span)
        {
            return 0;
        }
        // Count the positions one by one: the definition, not a formula.
        index_t count = 0;
        while (count * stride + span <= padded)
        {
            ++count;
        }
        return count;
    }

    /// out[n, co, oy, ox] = bias[co] + sum over ci in co's group, i, j of
    ///     weight[co, ci - group_start, i, j] * padded(n, ci, oy*sh - top + i*dh, ox*sw - left + j*dw)
    template <class T>
    xt::xtensor<T, 4> conv2d(const xt::xtensor<T, 4>& input,
                             const xt::xtensor<T, 4>& weight,
                             const xt::xtensor<T, 1>* bias,
                             const conv_geometry& g)
    {
        const index_t N = static_cast<index_t>(input.shape(0));
        const index_t C_in = static_cast<index_t>(input.shape(1));
        const index_t H = static_cast<index_t>(input.shape(2));
        const index_t W = static_cast<index_t>(input.shape(3));
        const index_t C_out = static_cast<index_t>(weight.shape(0));
        const index_t cin_g = static_cast<index_t>(weight.shape(1));
        const index_t KH = static_cast<index_t>(weight.shape(2));
        const index_t KW = static_cast<index_t>(weight.shape(3));
        if (cin_g * g.groups != C_in || C_out % g.groups != 0)
        {
            throw std::logic_error("reference conv2d: inconsistent channels");
        }
        const index_t cout_g = C_out / g.groups;
        const index_t OH = conv_out_extent(H, g.pad_top, g.pad_bottom, KH, g.stride_h, g.dil_h);
        const index_t OW = conv_out_extent(W, g.pad_left, g.pad_right, KW, g.stride_w, g.dil_w);

        xt::xtensor<T, 4> out(std::array<std::size_t, 4>{static_cast<std::size_t>(N), static_cast<std::size_t>(C_out),
                                                         static_cast<std::size_t>(OH), static_cast<std::size_t>(OW)});
        for (index_t n = 0; n < N; ++n)
        {
            for (index_t co = 0; co < C_out; ++co)
            {
                const index_t grp = co / cout_g;
                for (index_t oy = 0; oy < OH; ++oy)
                {
                    for (index_t ox = 0; ox < OW; ++ox)
                    {
                        wide_t<T> acc = bias ? static_cast<wide_t<T>>((*bias)(co)) : 0;
                        for (index_t k = 0; k < cin_g; ++k)
                        {
                            const index_t ci = grp * cin_g + k;
                            for (index_t i = 0; i < KH; ++i)
                            {
                                const index_t y = source_index(oy * g.stride_h - g.pad_top + i * g.dil_h, H, g.mode);
                                if (y < 0)
                                {
                                    continue;
                                }
                                for (index_t j = 0; j < KW; ++j)
                                {
                                    const index_t x =
                                        source_index(ox * g.stride_w - g.pad_left + j * g.dil_w, W, g.mode);
                                    if (x < 0)
                                    {
                                        continue;
                                    }
                                    acc += static_cast<wide_t<T>>(weight(co, k, i, j))
                                           * static_cast<wide_t<T>>(input(n, ci, y, x));
                                }
                            }
                        }
                        out(n, co, oy, ox) = static_cast<T>(acc);
                    }
                }
            }
        }
        return out;
    }

    /// Gradients of L = sum(grad_output * conv2d(input, weight, bias)).
    template <class T>
    struct conv_grads
    {
        xt::xtensor<T, 4> input, weight;
        xt::xtensor<T, 1> bias;
    };

    /// Backward of conv2d by direct differentiation of the forward sum: every term
    /// weight[co, k, i, j] * input[n, ci, y, x] of out[n, co, oy, ox] contributes
    /// grad_output[n, co, oy, ox] * weight[...] to d/d input[n, ci, y, x] (several times for the
    /// same (y, x) when reflect / replicate / circular padding reuses an input pixel) and
    /// grad_output * input to d/d weight; d/d bias[co] sums grad_output over n, oy, ox.
    template <class T>
    conv_grads<T> conv2d_backward(const xt::xtensor<T, 4>& grad_output,
                                  const xt::xtensor<T, 4>& input,
                                  const xt::xtensor<T, 4>& weight,
                                  const conv_geometry& g)
    {
        const index_t N = static_cast<index_t>(input.shape(0));
        const index_t C_in = static_cast<index_t>(input.shape(1));
        const index_t H = static_cast<index_t>(input.shape(2));
        const index_t W = static_cast<index_t>(input.shape(3));
        const index_t C_out = static_cast<index_t>(weight.shape(0));
        const index_t cin_g = static_cast<index_t>(weight.shape(1));
        const index_t KH = static_cast<index_t>(weight.shape(2));
        const index_t KW = static_cast<index_t>(weight.shape(3));
        const index_t cout_g = C_out / g.groups;
        const index_t OH = static_cast<index_t>(grad_output.shape(2));
        const index_t OW = static_cast<index_t>(grad_output.shape(3));
        if (cin_g * g.groups != C_in
            || OH != conv_out_extent(H, g.pad_top, g.pad_bottom, KH, g.stride_h, g.dil_h)
            || OW != conv_out_extent(W, g.pad_left, g.pad_right, KW, g.stride_w, g.dil_w))
        {
            throw std::logic_error("reference conv2d_backward: inconsistent shapes");
        }

        xt::xtensor<wide_t<T>, 4> gi(input.shape(), 0);
        xt::xtensor<wide_t<T>, 4> gw(weight.shape(), 0);
        xt::xtensor<wide_t<T>, 1> gb(std::array<std::size_t, 1>{static_cast<std::size_t>(C_out)}, 0);
        for (index_t n = 0; n < N; ++n)
        {
            for (index_t co = 0; co < C_out; ++co)
            {
                const index_t grp = co / cout_g;
                for (index_t oy = 0; oy < OH; ++oy)
                {
                    for (index_t ox = 0; ox < OW; ++ox)
                    {
                        const wide_t<T> go = grad_output(n, co, oy, ox);
                        gb(co) += go;
                        for (index_t k = 0; k < cin_g; ++k)
                        {
                            const index_t ci = grp * cin_g + k;
                            for (index_t i = 0; i < KH; ++i)
                            {
                                const index_t y = source_index(oy * g.stride_h - g.pad_top + i * g.dil_h, H, g.mode);
                                if (y < 0)
                                {
                                    continue;
                                }
                                for (index_t j = 0; j < KW; ++j)
                                {
                                    const index_t x =
                                        source_index(ox * g.stride_w - g.pad_left + j * g.dil_w, W, g.mode);
                                    if (x < 0)
                                    {
                                        continue;
                                    }
                                    gi(n, ci, y, x) += go * static_cast<wide_t<T>>(weight(co, k, i, j));
                                    gw(co, k, i, j) += go * static_cast<wide_t<T>>(input(n, ci, y, x));
                                }
                            }
                        }
                    }
                }
            }
        }
        conv_grads<T> r;
        r.input = xt::cast<T>(gi);
        r.weight = xt::cast<T>(gw);
        r.bias = xt::cast<T>(gb);
        return r;
    }

    // ----------------------------------------------------------------------- conv_transpose2d

    /// Geometry of a transposed convolution (symmetric padding, as in PyTorch).
    struct transpose_geometry
    {
        index_t stride_h = 1, stride_w = 1;
        index_t pad_h = 0, pad_w = 0;
        index_t out_pad_h = 0, out_pad_w = 0;
        index_t dil_h = 1, dil_w = 1;
        index_t groups = 1;
    };

    /// Output extent of a transposed convolution along an axis: the full scatter of the input
    /// covers (size-1)*stride + dilation*(kernel-1) + 1 positions; `padding` of them are cut on
    /// each side and `output_padding` are added at the end.
    inline index_t transpose_out_extent(index_t size, index_t kernel, index_t stride, index_t pad, index_t out_pad,
                                        index_t dilation)
    {
        const index_t full = (size - 1) * stride + dilation * (kernel - 1) + 1;
        return full - 2 * pad + out_pad;
    }

    /// Scatter form: every input pixel input[n, ci, y, x] multiplies the kernel weight[ci, k, :, :]
    /// and the product is added into output channel (group of ci)*C_out/groups + k at
    /// (y*sh - pad_h + i*dh, x*sw - pad_w + j*dw); contributions falling outside the output are
    /// dropped. Then bias[co] is added everywhere in channel co.
    template <class T>
    xt::xtensor<T, 4> conv_transpose2d(const xt::xtensor<T, 4>& input,
                                       const xt::xtensor<T, 4>& weight,
                                       const xt::xtensor<T, 1>* bias,
                                       const transpose_geometry& g)
    {
        const index_t N = static_cast<index_t>(input.shape(0));
        const index_t C_in = static_cast<index_t>(input.shape(1));
        const index_t H = static_cast<index_t>(input.shape(2));
        const index_t W = static_cast<index_t>(input.shape(3));
        const index_t cout_g = static_cast<index_t>(weight.shape(1));
        const index_t KH = static_cast<index_t>(weight.shape(2));
        const index_t KW = static_cast<index_t>(weight.shape(3));
        if (static_cast<index_t>(weight.shape(0)) != C_in || C_in % g.groups != 0)
        {
            throw std::logic_error("reference conv_transpose2d: inconsistent channels");
        }
        const index_t cin_g = C_in / g.groups;
        const index_t C_out = cout_g * g.groups;
        const index_t OH = transpose_out_extent(H, KH, g.stride_h, g.pad_h, g.out_pad_h, g.dil_h);
        const index_t OW = transpose_out_extent(W, KW, g.stride_w, g.pad_w, g.out_pad_w, g.dil_w);

        xt::xtensor<wide_t<T>, 4> acc(std::array<std::size_t, 4>{static_cast<std::size_t>(N),
                                                                 static_cast<std::size_t>(C_out),
                                                                 static_cast<std::size_t>(OH),
                                                                 static_cast<std::size_t>(OW)},
                                      0);
        for (index_t n = 0; n < N; ++n)
        {
            for (index_t ci = 0; ci < C_in; ++ci)
            {
                const index_t grp = ci / cin_g;
                for (index_t y = 0; y < H; ++y)
                {
                    for (index_t x = 0; x < W; ++x)
                    {
                        const wide_t<T> v = input(n, ci, y, x);
                        for (index_t k = 0; k < cout_g; ++k)
                        {
                            const index_t co = grp * cout_g + k;
                            for (index_t i = 0; i < KH; ++i)
                            {
                                const index_t oy = y * g.stride_h - g.pad_h + i * g.dil_h;
                                if (oy < 0 || oy >= OH)
                                {
                                    continue;
                                }
                                for (index_t j = 0; j < KW; ++j)
                                {
                                    const index_t ox = x * g.stride_w - g.pad_w + j * g.dil_w;
                                    if (ox < 0 || ox >= OW)
                                    {
                                        continue;
                                    }
                                    acc(n, co, oy, ox) += v * static_cast<wide_t<T>>(weight(ci, k, i, j));
                                }
                            }
                        }
                    }
                }
            }
        }
        if (bias)
        {
            for (index_t n = 0; n < N; ++n)
                for (index_t co = 0; co < C_out; ++co)
                    for (index_t oy = 0; oy < OH; ++oy)
                        for (index_t ox = 0; ox < OW; ++ox)
                            acc(n, co, oy, ox) += static_cast<wide_t<T>>((*bias)(co));
        }
        return xt::cast<T>(acc);
    }

    /// Gradients of L = sum(grad_output * conv_transpose2d(input, weight, bias)), from the scatter
    /// form: the term input[n, ci, y, x] * weight[ci, k, i, j] lands in out[n, co, oy, ox], so it
    /// contributes grad_output[n, co, oy, ox] * weight to d/d input and grad_output * input to
    /// d/d weight.
    template <class T>
    conv_grads<T> conv_transpose2d_backward(const xt::xtensor<T, 4>& grad_output,
                                            const xt::xtensor<T, 4>& input,
                                            const xt::xtensor<T, 4>& weight,
                                            const transpose_geometry& g)
    {
        const index_t N = static_cast<index_t>(input.shape(0));
        const index_t C_in = static_cast<index_t>(input.shape(1));
        const index_t H = static_cast<index_t>(input.shape(2));
        const index_t W = static_cast<index_t>(input.shape(3));
        const index_t cout_g = static_cast<index_t>(weight.shape(1));
        const index_t KH = static_cast<index_t>(weight.shape(2));
        const index_t KW = static_cast<index_t>(weight.shape(3));
        const index_t cin_g = C_in / g.groups;
        const index_t C_out = cout_g * g.groups;
        const index_t OH = static_cast<index_t>(grad_output.shape(2));
        const index_t OW = static_cast<index_t>(grad_output.shape(3));
        if (static_cast<index_t>(grad_output.shape(1)) != C_out
            || OH != transpose_out_extent(H, KH, g.stride_h, g.pad_h, g.out_pad_h, g.dil_h)
            || OW != transpose_out_extent(W, KW, g.stride_w, g.pad_w, g.out_pad_w, g.dil_w))
        {
            throw std::logic_error("reference conv_transpose2d_backward: inconsistent shapes");
        }

        xt::xtensor<wide_t<T>, 4> gi(input.shape(), 0);
        xt::xtensor<wide_t<T>, 4> gw(weight.shape(), 0);
        xt::xtensor<wide_t<T>, 1> gb(std::array<std::size_t, 1>{static_cast<std::size_t>(C_out)}, 0);
        for (index_t n = 0; n < N; ++n)
        {
            for (index_t ci = 0; ci < C_in; ++ci)
            {
                const index_t grp = ci / cin_g;
                for (index_t y = 0; y < H; ++y)
                {
                    for (index_t x = 0; x < W; ++x)
                    {
                        for (index_t k = 0; k < cout_g; ++k)
                        {
                            const index_t co = grp * cout_g + k;
                            for (index_t i = 0; i < KH; ++i)
                            {
                                const index_t oy = y * g.stride_h - g.pad_h + i * g.dil_h;
                                if (oy < 0 || oy >= OH)
                                {
                                    continue;
                                }
                                for (index_t j = 0; j < KW; ++j)
                                {
                                    const index_t ox = x * g.stride_w - g.pad_w + j * g.dil_w;
                                    if (ox < 0 || ox >= OW)
                                    {
                                        continue;
                                    }
                                    const wide_t<T> go = grad_output(n, co, oy, ox);
                                    gi(n, ci, y, x) += go * static_cast<wide_t<T>>(weight(ci, k, i, j));
                                    gw(ci, k, i, j) += go * static_cast<wide_t<T>>(input(n, ci, y, x));
                                }
                            }
                        }
                    }
                }
            }
        }
        for (index_t n = 0; n < N; ++n)
            for (index_t co = 0; co < C_out; ++co)
                for (index_t oy = 0; oy < OH; ++oy)
                    for (index_t ox = 0; ox < OW; ++ox)
                        gb(co) += grad_output(n, co, oy, ox);
        conv_grads<T> r;
        r.input = xt::cast<T>(gi);
        r.weight = xt::cast<T>(gw);
        r.bias = xt::cast<T>(gb);
        return r;
    }

    // --------------------------------------------------------------------------- unfold / fold

    /// Sliding-window geometry of unfold / fold (symmetric zero padding).
    struct window_geometry
    {
        index_t kernel_h = 1, kernel_w = 1;
        index_t stride_h = 1, stride_w = 1;
        index_t pad_h = 0, pad_w = 0;
        index_t dil_h = 1, dil_w = 1;
    };

    /// columns[n, c*kh*kw + i*kw + j, by*BW + bx] = x[n, c, by*sh - ph + i*dh, bx*sw - pw + j*dw]
    /// (0 outside the image), with BH x BW the blocks that fit in the padded image.
    template <class T>
    xt::xtensor<T, 3> unfold(const xt::xtensor<T, 4>& input, const window_geometry& g)
    {
        const index_t N = static_cast<index_t>(input.shape(0));
        const index_t C = static_cast<index_t>(input.shape(1));
        const index_t H = static_cast<index_t>(input.shape(2));
        const index_t W = static_cast<index_t>(input.shape(3));
        const index_t BH = conv_out_extent(H, g.pad_h, g.pad_h, g.kernel_h, g.stride_h, g.dil_h);
        const index_t BW = conv_out_extent(W, g.pad_w, g.pad_w, g.kernel_w, g.stride_w, g.dil_w);
        const index_t taps = g.kernel_h * g.kernel_w;
        xt::xtensor<T, 3> cols(std::array<std::size_t, 3>{static_cast<std::size_t>(N),
                                                          static_cast<std::size_t>(C * taps),
                                                          static_cast<std::size_t>(BH * BW)},
                               T(0));
        for (index_t n = 0; n < N; ++n)
            for (index_t c = 0; c < C; ++c)
                for (index_t i = 0; i < g.kernel_h; ++i)
                    for (index_t j = 0; j < g.kernel_w; ++j)
                        for (index_t by = 0; by < BH; ++by)
                            for (index_t bx = 0; bx < BW; ++bx)
                            {
                                const index_t y = by * g.stride_h - g.pad_h + i * g.dil_h;
                                const index_t x = bx * g.stride_w - g.pad_w + j * g.dil_w;
                                if (y >= 0 && y < H && x >= 0 && x < W)
                                {
                                    cols(n, c * taps + i * g.kernel_w + j, by * BW + bx) = input(n, c, y, x);
                                }
                            }
        return cols;
    }

    /// The sum of the scattered columns: out[n, c, y, x] = sum of every columns entry whose
    /// unfold index maps to (y, x). The number of columns must equal the number of blocks that fit
    /// an (out_h, out_w) image.
    template <class T>
    xt::xtensor<T, 4> fold(const xt::xtensor<T, 3>& columns, index_t out_h, index_t out_w, const window_geometry& g)
    {
        const index_t N = static_cast<index_t>(columns.shape(0));
        const index_t taps = g.kernel_h * g.kernel_w;
        const index_t C = static_cast<index_t>(columns.shape(1)) / taps;
        const index_t BH = conv_out_extent(out_h, g.pad_h, g.pad_h, g.kernel_h, g.stride_h, g.dil_h);
        const index_t BW = conv_out_extent(out_w, g.pad_w, g.pad_w, g.kernel_w, g.stride_w, g.dil_w);
        if (C * taps != static_cast<index_t>(columns.shape(1)) || BH * BW != static_cast<index_t>(columns.shape(2)))
        {
            throw std::logic_error("reference fold: inconsistent shapes");
        }
        xt::xtensor<wide_t<T>, 4> acc(std::array<std::size_t, 4>{static_cast<std::size_t>(N),
                                                                 static_cast<std::size_t>(C),
                                                                 static_cast<std::size_t>(out_h),
                                                                 static_cast<std::size_t>(out_w)},
                                      0);
        for (index_t n = 0; n < N; ++n)
            for (index_t c = 0; c < C; ++c)
                for (index_t i = 0; i < g.kernel_h; ++i)
                    for (index_t j = 0; j < g.kernel_w; ++j)
                        for (index_t by = 0; by < BH; ++by)
                            for (index_t bx = 0; bx < BW; ++bx)
                            {
                                const index_t y = by * g.stride_h - g.pad_h + i * g.dil_h;
                                const index_t x = bx * g.stride_w - g.pad_w + j * g.dil_w;
                                if (y >= 0 && y < out_h && x >= 0 && x < out_w)
                                {
                                    acc(n, c, y, x) += columns(n, c * taps + i * g.kernel_w + j, by * BW + bx);
                                }
                            }
        return xt::cast<T>(acc);
    }

    // ------------------------------------------------------------------------------ comparison

    /// Result of comparing two arrays element by element.
    struct compare_result
    {
        bool ok = true;
        std::string message;  // shapes, the worst element and the values when !ok; a summary otherwise
    };

    /// Element-wise |got - expected| <= tol + tol * |expected| (the same number as absolute and
    /// relative tolerance), after checking that the shapes agree.
    template <class A, class B>
    compare_result compare(const A& got, const B& expected, double tol)
    {
        compare_result r;
        std::ostringstream os;
        const auto& sg = got.shape();
        const auto& se = expected.shape();
        bool same_shape = sg.size() == se.size();
        for (std::size_t d = 0; same_shape && d < sg.size(); ++d)
        {
            same_shape = static_cast<std::size_t>(sg[d]) == static_cast<std::size_t>(se[d]);
        }
        if (!same_shape)
        {
            os << "shape mismatch: got [";
            for (std::size_t d = 0; d < sg.size(); ++d)
                os << (d ? ", " : "") << sg[d];
            os << "], expected [";
            for (std::size_t d = 0; d < se.size(); ++d)
                os << (d ? ", " : "") << se[d];
            os << "]";
            r.ok = false;
            r.message = os.str();
            return r;
        }
        double worst_excess = -1;
        std::size_t worst = 0;
        double worst_abs = 0;
        const std::size_t n = expected.size();
        auto it_g = got.cbegin();
        auto it_e = expected.cbegin();
        for (std::size_t k = 0; k < n; ++k, ++it_g, ++it_e)
        {
            const double g = static_cast<double>(*it_g);
            const double e = static_cast<double>(*it_e);
            const double diff = std::abs(g - e);
            const double allowed = tol + tol * std::abs(e);
            const double excess = std::isnan(diff) ? 1e300 : diff / allowed;
            worst_abs = std::max(worst_abs, std::isnan(diff) ? 1e300 : diff);
            if (excess > worst_excess)
            {
                worst_excess = excess;
                worst = k;
            }
        }
        r.ok = n == 0 || worst_excess <= 1.0;
        os.precision(17);
        if (n > 0)
        {
            auto g = got.cbegin();
            auto e = expected.cbegin();
            std::advance(g, static_cast<std::ptrdiff_t>(worst));
            std::advance(e, static_cast<std::ptrdiff_t>(worst));
            os << (r.ok ? "ok" : "MISMATCH") << ": " << n << " elements, max |diff| " << worst_abs
               << ", worst at flat index " << worst << ": got " << static_cast<double>(*g) << ", expected "
               << static_cast<double>(*e) << " (tol " << tol << ")";
        }
        else
        {
            os << "ok: empty";
        }
        r.message = os.str();
        return r;
    }
}  // namespace xconv_test

#endif
