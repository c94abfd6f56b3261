// xconv: option structs, output-size arithmetic, and the one place where parameters are validated.
//
// Every public operation turns its arguments into a "plan" here (plan_unfold, plan_fold,
// plan_conv2d, plan_conv_transpose2d). A plan holds checked, non-negative sizes; the kernels in
// unfold.hpp, conv2d.hpp and conv_transpose2d.hpp never re-check or re-derive them.
#ifndef XCONV_OPTIONS_HPP
#define XCONV_OPTIONS_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "config.hpp"

namespace xconv
{
    /// How conv2d fills the border when padding > 0 (torch.nn.Conv2d's padding_mode).
    enum class padding_mode
    {
        zeros,
        reflect,
        replicate,
        circular
    };

    /// PyTorch's string paddings for conv2d: 'valid' (no padding) and 'same' (output size equals
    /// input size for stride 1; total padding dilation*(kernel-1) per axis, the odd extra on the
    /// bottom / right). `none` means: use the explicit `padding` values.
    enum class auto_padding
    {
        none,
        same,
        valid
    };

    /// A (height, width) pair, built from {h, w} or from a single integer used for both, like
    /// PyTorch's int-or-tuple arguments. Values are kept signed so that a negative argument can be
    /// reported as such by the validation instead of wrapping around.
    struct size2
    {
        std::int64_t h = 0;  ///< the height (first) value
        std::int64_t w = 0;  ///< the width (second) value

        /// (0, 0).
        constexpr size2() = default;

        /// The same value for both axes, like PyTorch's single-int arguments.

        template <class I, std::enable_if_t<std::is_integral<I>::value && !std::is_same<I, bool>::value, int> = 0>
        constexpr size2(I v) noexcept  // NOLINT: implicit on purpose, `stride = 2`
            : h(static_cast<std::int64_t>(v))
            , w(static_cast<std::int64_t>(v))
        {
        }

        template <class I,
                  class J,
                  std::enable_if_t<std::is_integral<I>::value && std::is_integral<J>::value, int> = 0>
        /// (height, width), like PyTorch's tuple arguments.
        constexpr size2(I height, J width) noexcept
            : h(static_cast<std::int64_t>(height))
            , w(static_cast<std::int64_t>(width))
        {
        }

        /// 0 is the height, 1 the width.
        constexpr std::int64_t operator[](std::size_t axis) const noexcept
        {
            return axis == 0 ? h : w;
        }

        /// Both values equal.
        friend constexpr bool operator==(const size2& a, const size2& b) noexcept
        {
            return a.h == b.h && a.w == b.w;
        }

        /// Some value differs.
        friend constexpr bool operator!=(const size2& a, const size2& b) noexcept
        {
            return !(a == b);
        }

        /// Prints "(h, w)".
        friend std::ostream& operator<<(std::ostream& os, const size2& s)
        {
            return os << '(' << s.h << ", " << s.w << ')';
        }
    };

    /// Options of unfold / fold (F.unfold, F.fold).
    struct unfold_options
    {
        size2 stride = 1;    ///< step between blocks, > 0
        size2 padding = 0;   ///< implicit zeros on both sides of each axis, >= 0
        size2 dilation = 1;  ///< spacing between kernel taps, > 0
    };

    /// Options of conv2d (F.conv2d plus torch.nn.Conv2d's padding_mode and string paddings).
    struct conv2d_options
    {
        size2 stride = 1;         ///< step of the kernel, > 0
        size2 padding = 0;        ///< added on both sides of each axis, >= 0
        size2 dilation = 1;       ///< spacing between kernel taps, > 0
        std::size_t groups = 1;   ///< channel groups; C_in and C_out must be multiples
        /// How the padding is filled: zeros, or the input reflected, replicated or wrapped.
        xconv::padding_mode padding_mode = xconv::padding_mode::zeros;
        /// 'same' / 'valid' instead of explicit `padding` (which must then be left at 0).
        xconv::auto_padding auto_padding = xconv::auto_padding::none;
    };

    /// Options of conv_transpose2d (F.conv_transpose2d).
    struct conv_transpose2d_options
    {
        size2 stride = 1;          ///< step between the input pixels' patches in the output, > 0
        size2 padding = 0;         ///< dilation*(k-1) - padding zeros implied around the input, >= 0
        size2 output_padding = 0;  ///< extra rows / columns at the bottom / right; < stride or < dilation
        size2 dilation = 1;        ///< spacing between kernel taps, > 0
        std::size_t groups = 1;    ///< channel groups; C_in and C_out must be multiples
        /// If set, the requested spatial output size; it picks output_padding (and overrides the
        /// field above) exactly as torch.nn.ConvTranspose2d.forward(input, output_size) does, and
        /// must lie in [min, min + stride - 1] with min the size for output_padding = 0.
        std::optional<size2> output_size = std::nullopt;
    };

    /// Which gradients a backward pass computes: {input, weight, bias}. A gradient that is not
    /// asked for is returned empty (size 0) and costs nothing.
    using output_mask = std::array<bool, 3>;

    namespace detail
    {
        template <class... Args>
        std::string concat(const Args&... args)
        {
            std::ostringstream os;
            (os << ... << args);
            return os.str();
        }

        template <class... Args>
        [[noreturn]] void fail(const char* where, const Args&... args)
        {
            throw std::invalid_argument(concat("xconv::", where, ": ", args...));
        }

        template <class Shape>
        std::string shape_string(const Shape& shape)
        {
            std::ostringstream os;
            os << '[';
            bool first = true;
            for (auto s : shape)
            {
                os << (first ? "" : ", ") << s;
                first = false;
            }
            os << ']';
            return os.str();
        }

        /// Floor division for a possibly negative numerator and a positive denominator.
        constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept
        {
            return a >= 0 ? a / b : -((-a + b - 1) / b);
        }

        /// Geometry of sliding windows over one channel plane: the contract of im2col / col2im.
        /// Block (oy, ox) of the grid blocks_h x blocks_w reads the pixels
        /// (oy*stride_h - pad_top + i*dil_h, ox*stride_w - pad_left + j*dil_w) for the kernel tap
        /// (i, j); pixels outside [0, height) x [0, width) are zero. The grid is given, not derived:
        /// the transposed convolution with output_padding >= stride needs a grid smaller than the
        /// one the image would allow.
        struct window2d
        {
            std::int64_t height = 0, width = 0;
            std::int64_t kernel_h = 1, kernel_w = 1;
            std::int64_t stride_h = 1, stride_w = 1;
            std::int64_t pad_top = 0, pad_left = 0;
            std::int64_t dil_h = 1, dil_w = 1;
            std::int64_t blocks_h = 0, blocks_w = 0;

            std::int64_t taps() const noexcept { return kernel_h * kernel_w; }
            std::int64_t blocks() const noexcept { return blocks_h * blocks_w; }
            std::int64_t plane() const noexcept { return height * width; }
        };

        /// Number of sliding blocks along one axis, or a value < 1 when none fits. The numerator
        /// can be negative: floor division keeps it from becoming one block.
        constexpr std::int64_t blocks_along(std::int64_t size,
                                            std::int64_t pad_total,
                                            std::int64_t kernel,
                                            std::int64_t stride,
                                            std::int64_t dilation) noexcept
        {
            return floor_div(size + pad_total - dilation * (kernel - 1) - 1, stride) + 1;
        }

        inline void check_positive(const char* where, const char* what, const size2& v)
        {
            if (v.h <= 0 || v.w <= 0)
            {
                fail(where, what, " must be positive, got ", v);
            }
        }

        inline void check_non_negative(const char* where, const char* what, const size2& v)
        {
            if (v.h < 0 || v.w < 0)
            {
                fail(where, what, " must be non-negative, got ", v);
            }
        }

        /// Checks that a tensor passed alongside a plan (e.g. grad_output) has the expected shape.
        template <class Shape, class Expected>
        void check_shape(const char* where, const char* what, const Shape& got, const Expected& expected)
        {
            bool same = got.size() == expected.size();
            for (std::size_t d = 0; same && d < got.size(); ++d)
            {
                same = static_cast<std::int64_t>(got[d]) == static_cast<std::int64_t>(expected[d]);
            }
            if (!same)
            {
                fail(where, what, " must have shape ", shape_string(expected), ", got ", shape_string(got));
            }
        }

        // ------------------------------------------------------------------ unfold / fold

        /// Checked geometry of unfold(input (N, C, H, W), kernel_size, options).
        struct unfold_plan
        {
            std::int64_t batch = 0, channels = 0;
            window2d win;
        };

        /// The window of F.unfold / F.fold over a height x width plane: symmetric padding, the
        /// grid of blocks derived from the plane. Throws (naming `plane_name`) when no block fits.
        inline window2d sliding_window(const char* where,
                                       const char* plane_name,
                                       std::int64_t height,
                                       std::int64_t width,
                                       const size2& kernel,
                                       const unfold_options& opt)
        {
            check_positive(where, "kernel_size", kernel);
            check_positive(where, "stride", opt.stride);
            check_positive(where, "dilation", opt.dilation);
            check_non_negative(where, "padding", opt.padding);
            window2d w;
            w.height = height;
            w.width = width;
            w.kernel_h = kernel.h;
            w.kernel_w = kernel.w;
            w.stride_h = opt.stride.h;
            w.stride_w = opt.stride.w;
            w.pad_top = opt.padding.h;
            w.pad_left = opt.padding.w;
            w.dil_h = opt.dilation.h;
            w.dil_w = opt.dilation.w;
            w.blocks_h = blocks_along(w.height, 2 * w.pad_top, w.kernel_h, w.stride_h, w.dil_h);
            w.blocks_w = blocks_along(w.width, 2 * w.pad_left, w.kernel_w, w.stride_w, w.dil_w);
            if (w.blocks_h < 1 || w.blocks_w < 1)
            {
                fail(where, plane_name, " of spatial size (", height, ", ", width, ") with kernel_size ", kernel,
                     ", dilation ", opt.dilation, ", padding ", opt.padding, ", stride ", opt.stride,
                     " gives no sliding block: the dilated kernel is larger than the padded ", plane_name);
            }
            return w;
        }

        template <class Shape>
        unfold_plan plan_unfold(const Shape& input_shape, const size2& kernel, const unfold_options& opt)
        {
            const char* where = "unfold";
            if (input_shape.size() != 4)
            {
                fail(where, "expected a 4-D (N, C, H, W) or 3-D (C, H, W) input, got shape ",
                     shape_string(input_shape));
            }
            for (std::size_t d = 1; d < 4; ++d)
            {
                if (input_shape[d] == 0)
                {
                    fail(where, "input must have non-zero C, H and W (N may be 0), got shape ",
                         shape_string(input_shape));
                }
            }
            unfold_plan p;
            p.batch = static_cast<std::int64_t>(input_shape[0]);
            p.channels = static_cast<std::int64_t>(input_shape[1]);
            p.win = sliding_window(where, "input", static_cast<std::int64_t>(input_shape[2]),
                                   static_cast<std::int64_t>(input_shape[3]), kernel, opt);
            return p;
        }

        /// Checked geometry of fold(columns (N, C*kh*kw, L), output_size, kernel_size, options).
        template <class Shape>
        unfold_plan plan_fold(const Shape& columns_shape,
                              const size2& output_size,
                              const size2& kernel,
                              const unfold_options& opt)
        {
            const char* where = "fold";
            if (columns_shape.size() != 3)
            {
                fail(where, "expected 3-D (N, C*kh*kw, L) or 2-D (C*kh*kw, L) columns, got shape ",
                     shape_string(columns_shape));
            }
            check_positive(where, "output_size", output_size);
            check_positive(where, "kernel_size", kernel);
            const auto rows = static_cast<std::int64_t>(columns_shape[1]);
            const auto cols = static_cast<std::int64_t>(columns_shape[2]);
            const std::int64_t taps = kernel.h * kernel.w;
            if (rows == 0 || rows % taps != 0)
            {
                fail(where, "columns dimension 1 (", rows, ") must be a positive multiple of kh*kw = ", kernel.h,
                     "*", kernel.w, " = ", taps);
            }
            unfold_plan p;
            p.batch = static_cast<std::int64_t>(columns_shape[0]);
            p.channels = rows / taps;
            const window2d& w = p.win = sliding_window(where, "output", output_size.h, output_size.w, kernel, opt);
            if (cols != w.blocks())
            {
                fail(where, "columns dimension 2 (", cols, ") must equal the number of sliding blocks ", w.blocks_h,
                     "*", w.blocks_w, " = ", w.blocks(), " for output_size ", output_size, ", kernel_size ", kernel,
                     ", dilation ", opt.dilation, ", padding ", opt.padding, ", stride ", opt.stride);
            }
            return p;
        }

        // ------------------------------------------------------------------ conv2d

        /// Checked geometry of conv2d. When padding_mode is not zeros, the input is first padded
        /// physically by (pad_top, pad_bottom, pad_left, pad_right) with that mode, and `win`
        /// describes the padded plane with no further padding; with zeros, `win` pads implicitly.
        struct conv2d_plan
        {
            std::int64_t batch = 0, in_channels = 0, in_h = 0, in_w = 0;
            std::int64_t out_channels = 0, groups = 1;
            std::int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
            xconv::padding_mode mode = xconv::padding_mode::zeros;
            bool explicit_pad = false;  // true when mode != zeros and some padding is non-zero
            window2d win;               // on the (padded) plane; blocks = output size

            std::int64_t in_per_group() const noexcept { return in_channels / groups; }
            std::int64_t out_per_group() const noexcept { return out_channels / groups; }
            std::int64_t out_h() const noexcept { return win.blocks_h; }
            std::int64_t out_w() const noexcept { return win.blocks_w; }
        };

        template <class InShape, class WShape>
        conv2d_plan plan_conv2d(const char* where,
                                const InShape& input_shape,
                                const WShape& weight_shape,
                                std::optional<std::size_t> bias_size,
                                const conv2d_options& opt)
        {
            if (input_shape.size() != 4)
            {
                fail(where, "expected a 4-D (N, C_in, H, W) or 3-D (C_in, H, W) input, got shape ",
                     shape_string(input_shape));
            }
            if (weight_shape.size() != 4)
            {
                fail(where, "expected a 4-D weight (C_out, C_in/groups, kh, kw), got shape ",
                     shape_string(weight_shape));
            }
            check_positive(where, "stride", opt.stride);
            check_positive(where, "dilation", opt.dilation);
            check_non_negative(where, "padding", opt.padding);
            if (opt.groups == 0)
            {
                fail(where, "groups must be positive, got 0");
            }
            const auto g = static_cast<std::int64_t>(opt.groups);
            if (g < 0)
            {
                fail(where, "groups must be positive, got ", opt.groups);
            }
            const auto c_out = static_cast<std::int64_t>(weight_shape[0]);
            const auto c_in_g = static_cast<std::int64_t>(weight_shape[1]);
            const size2 kernel{static_cast<std::int64_t>(weight_shape[2]), static_cast<std::int64_t>(weight_shape[3])};
            if (kernel.h <= 0 || kernel.w <= 0)
            {
                fail(where, "kernel size must be positive, got ", kernel, " from weight of shape ",
                     shape_string(weight_shape));
            }
            if (c_out <= 0 || c_out % g != 0)
            {
                fail(where, "weight dimension 0 (C_out = ", c_out, ") must be a positive multiple of groups = ", g,
                     "; weight shape ", shape_string(weight_shape));
            }
            const auto c_in = static_cast<std::int64_t>(input_shape[1]);
            if (c_in_g <= 0 || c_in != c_in_g * g)
            {
                fail(where, "input has ", c_in, " channels but weight of shape ", shape_string(weight_shape),
                     " with groups = ", g, " expects ", c_in_g * g, " (input shape ", shape_string(input_shape), ")");
            }
            if (bias_size && static_cast<std::int64_t>(*bias_size) != c_out)
            {
                fail(where, "bias must have C_out = ", c_out, " elements, got ", *bias_size);
            }
            const auto h = static_cast<std::int64_t>(input_shape[2]);
            const auto w = static_cast<std::int64_t>(input_shape[3]);

            conv2d_plan p;
            p.batch = static_cast<std::int64_t>(input_shape[0]);
            p.in_channels = c_in;
            p.in_h = h;
            p.in_w = w;
            p.out_channels = c_out;
            p.groups = g;
            p.mode = opt.padding_mode;

            switch (opt.auto_padding)
            {
                case xconv::auto_padding::none:
                    p.pad_top = p.pad_bottom = opt.padding.h;
                    p.pad_left = p.pad_right = opt.padding.w;
                    break;
                case xconv::auto_padding::valid:
                case xconv::auto_padding::same:
                    if (opt.padding.h != 0 || opt.padding.w != 0)
                    {
                        fail(where, "auto_padding 'same' or 'valid' replaces padding, which must then be 0, got ",
                             opt.padding);
                    }
                    if (opt.auto_padding == xconv::auto_padding::same)
                    {
                        if (opt.stride.h != 1 || opt.stride.w != 1)
                        {
                            fail(where, "padding 'same' is not supported for strided convolutions, got stride ",
                                 opt.stride);
                        }
                        const std::int64_t th = opt.dilation.h * (kernel.h - 1);
                        const std::int64_t tw = opt.dilation.w * (kernel.w - 1);
                        p.pad_top = th / 2;
                        p.pad_bottom = th - th / 2;
                        p.pad_left = tw / 2;
                        p.pad_right = tw - tw / 2;
                    }
                    break;
            }

            if (h <= 0 || w <= 0)
            {
                fail(where, "input spatial size must be positive, got input shape ", shape_string(input_shape));
            }
            const bool any_pad = p.pad_top || p.pad_bottom || p.pad_left || p.pad_right;
            if (p.mode == xconv::padding_mode::reflect
                && (p.pad_top >= h || p.pad_bottom >= h || p.pad_left >= w || p.pad_right >= w))
            {
                fail(where, "reflect padding must be smaller than the input size: padding (top, bottom, left, right) = (",
                     p.pad_top, ", ", p.pad_bottom, ", ", p.pad_left, ", ", p.pad_right, ") for input of spatial size (",
                     h, ", ", w, ")");
            }
            if (p.mode == xconv::padding_mode::circular
                && (p.pad_top > h || p.pad_bottom > h || p.pad_left > w || p.pad_right > w))
            {
                fail(where, "circular padding may not wrap around more than once: padding (top, bottom, left, right) = (",
                     p.pad_top, ", ", p.pad_bottom, ", ", p.pad_left, ", ", p.pad_right, ") for input of spatial size (",
                     h, ", ", w, ")");
            }

            const std::int64_t padded_h = h + p.pad_top + p.pad_bottom;
            const std::int64_t padded_w = w + p.pad_left + p.pad_right;
            const std::int64_t ext_h = opt.dilation.h * (kernel.h - 1) + 1;
            const std::int64_t ext_w = opt.dilation.w * (kernel.w - 1) + 1;
            if (padded_h < ext_h || padded_w < ext_w)
            {
                fail(where, "padded input of size (", padded_h, ", ", padded_w, ") is smaller than the dilated kernel (",
                     ext_h, ", ", ext_w, ") (kernel ", kernel, ", dilation ", opt.dilation, ")");
            }

            window2d& win = p.win;
            win.kernel_h = kernel.h;
            win.kernel_w = kernel.w;
            win.stride_h = opt.stride.h;
            win.stride_w = opt.stride.w;
            win.dil_h = opt.dilation.h;
            win.dil_w = opt.dilation.w;
            p.explicit_pad = p.mode != xconv::padding_mode::zeros && any_pad;
            if (p.explicit_pad)
            {
                win.height = padded_h;
                win.width = padded_w;
                win.pad_top = 0;
                win.pad_left = 0;
            }
            else
            {
                win.height = h;
                win.width = w;
                win.pad_top = p.pad_top;
                win.pad_left = p.pad_left;
            }
            win.blocks_h = floor_div(padded_h - ext_h, win.stride_h) + 1;
            win.blocks_w = floor_div(padded_w - ext_w, win.stride_w) + 1;
            return p;
        }

        // ------------------------------------------------------------------ conv_transpose2d

        /// Checked geometry of conv_transpose2d: the output plane (out_h, out_w) is the image that
        /// col2im writes, the input plane (in_h, in_w) is its grid of blocks.
        struct conv_transpose2d_plan
        {
            std::int64_t batch = 0, in_channels = 0, in_h = 0, in_w = 0;
            std::int64_t out_channels = 0, groups = 1;
            window2d win;  // height/width = output size, blocks = input size

            std::int64_t in_per_group() const noexcept { return in_channels / groups; }
            std::int64_t out_per_group() const noexcept { return out_channels / groups; }
            std::int64_t out_h() const noexcept { return win.height; }
            std::int64_t out_w() const noexcept { return win.width; }
        };

        template <class InShape, class WShape>
        conv_transpose2d_plan plan_conv_transpose2d(const char* where,
                                                    const InShape& input_shape,
                                                    const WShape& weight_shape,
                                                    std::optional<std::size_t> bias_size,
                                                    const conv_transpose2d_options& opt)
        {
            if (input_shape.size() != 4)
            {
                fail(where, "expected a 4-D (N, C_in, H, W) or 3-D (C_in, H, W) input, got shape ",
                     shape_string(input_shape));
            }
            if (weight_shape.size() != 4)
            {
                fail(where, "expected a 4-D weight (C_in, C_out/groups, kh, kw), got shape ",
                     shape_string(weight_shape));
            }
            check_positive(where, "stride", opt.stride);
            check_positive(where, "dilation", opt.dilation);
            check_non_negative(where, "padding", opt.padding);
            check_non_negative(where, "output_padding", opt.output_padding);
            if (opt.groups == 0)
            {
                fail(where, "groups must be positive, got 0");
            }
            const auto g = static_cast<std::int64_t>(opt.groups);
            if (g < 0)
            {
                fail(where, "groups must be positive, got ", opt.groups);
            }
            const auto w_in = static_cast<std::int64_t>(weight_shape[0]);
            const auto c_out_g = static_cast<std::int64_t>(weight_shape[1]);
            const size2 kernel{static_cast<std::int64_t>(weight_shape[2]), static_cast<std::int64_t>(weight_shape[3])};
            if (kernel.h <= 0 || kernel.w <= 0)
            {
                fail(where, "kernel size must be positive, got ", kernel, " from weight of shape ",
                     shape_string(weight_shape));
            }
            if (w_in <= 0 || w_in % g != 0)
            {
                fail(where, "weight dimension 0 (C_in = ", w_in, ") must be a positive multiple of groups = ", g,
                     "; weight shape ", shape_string(weight_shape));
            }
            if (c_out_g <= 0)
            {
                fail(where, "weight dimension 1 (C_out/groups) must be positive; weight shape ",
                     shape_string(weight_shape));
            }
            const auto c_in = static_cast<std::int64_t>(input_shape[1]);
            if (c_in != w_in)
            {
                fail(where, "input has ", c_in, " channels but weight of shape ", shape_string(weight_shape),
                     " expects ", w_in, " (input shape ", shape_string(input_shape), ")");
            }
            const std::int64_t c_out = c_out_g * g;
            if (bias_size && static_cast<std::int64_t>(*bias_size) != c_out)
            {
                fail(where, "bias must have C_out = ", c_out, " elements, got ", *bias_size);
            }
            const auto h = static_cast<std::int64_t>(input_shape[2]);
            const auto w = static_cast<std::int64_t>(input_shape[3]);
            if (h <= 0 || w <= 0)
            {
                fail(where, "input spatial size must be positive, got input shape ", shape_string(input_shape));
            }

            // Smallest output: output_padding = 0.
            const std::int64_t min_h = (h - 1) * opt.stride.h - 2 * opt.padding.h + opt.dilation.h * (kernel.h - 1) + 1;
            const std::int64_t min_w = (w - 1) * opt.stride.w - 2 * opt.padding.w + opt.dilation.w * (kernel.w - 1) + 1;
            size2 out_pad = opt.output_padding;
            if (opt.output_size)
            {
                const size2 req = *opt.output_size;
                const std::int64_t max_h = min_h + opt.stride.h - 1;
                const std::int64_t max_w = min_w + opt.stride.w - 1;
                if (req.h < min_h || req.h > max_h || req.w < min_w || req.w > max_w)
                {
                    fail(where, "requested an output size of ", req, ", but valid sizes range from (", min_h, ", ",
                         min_w, ") to (", max_h, ", ", max_w, ") (for an input of (", h, ", ", w, "))");
                }
                out_pad = size2{req.h - min_h, req.w - min_w};
            }
            else if (!((out_pad.h < opt.stride.h || out_pad.h < opt.dilation.h)
                       && (out_pad.w < opt.stride.w || out_pad.w < opt.dilation.w)))
            {
                fail(where, "output_padding must be smaller than either stride or dilation, got output_padding ",
                     out_pad, ", stride ", opt.stride, ", dilation ", opt.dilation);
            }
            const std::int64_t out_h = min_h + out_pad.h;
            const std::int64_t out_w = min_w + out_pad.w;
            if (out_h <= 0 || out_w <= 0)
            {
                fail(where, "input of spatial size (", h, ", ", w, ") gives an output of size (", out_h, ", ", out_w,
                     "), which is too small (stride ", opt.stride, ", padding ", opt.padding, ", dilation ",
                     opt.dilation, ", kernel ", kernel, ", output_padding ", out_pad, ")");
            }

            conv_transpose2d_plan p;
            p.batch = static_cast<std::int64_t>(input_shape[0]);
            p.in_channels = c_in;
            p.in_h = h;
            p.in_w = w;
            p.out_channels = c_out;
            p.groups = g;
            window2d& win = p.win;
            win.height = out_h;
            win.width = out_w;
            win.kernel_h = kernel.h;
            win.kernel_w = kernel.w;
            win.stride_h = opt.stride.h;
            win.stride_w = opt.stride.w;
            win.pad_top = opt.padding.h;
            win.pad_left = opt.padding.w;
            win.dil_h = opt.dilation.h;
            win.dil_w = opt.dilation.w;
            win.blocks_h = h;
            win.blocks_w = w;
            return p;
        }

        // ------------------------------------------------------------------ layers

        /// Checks the constructor arguments of Conv2d / ConvTranspose2d.
        inline void check_layer(const char* where,
                                std::size_t in_channels,
                                std::size_t out_channels,
                                const size2& kernel,
                                std::size_t groups)
        {
            check_positive(where, "kernel_size", kernel);
            if (groups == 0)
            {
                fail(where, "groups must be positive, got 0");
            }
            if (in_channels == 0 || in_channels % groups != 0)
            {
                fail(where, "in_channels (", in_channels, ") must be a positive multiple of groups (", groups, ")");
            }
            if (out_channels == 0 || out_channels % groups != 0)
            {
                fail(where, "out_channels (", out_channels, ") must be a positive multiple of groups (", groups, ")");
            }
        }
    }  // namespace detail

    // ---------------------------------------------------------------------- output sizes

    /// Spatial output size of conv2d for an input of spatial size `input` and a kernel `kernel`.
    /// Throws std::invalid_argument for the same reasons conv2d does.
    inline size2 conv2d_output_size(const size2& input, const size2& kernel, const conv2d_options& opt = {})
    {
        const std::array<std::int64_t, 4> in{1, 1, input.h, input.w};
        const std::array<std::int64_t, 4> wt{1, 1, kernel.h, kernel.w};
        if (input.h <= 0 || input.w <= 0)
        {
            detail::fail("conv2d_output_size", "input size must be positive, got ", input);
        }
        auto c = opt;
        c.groups = 1;
        const auto p = detail::plan_conv2d("conv2d_output_size", in, wt, std::nullopt, c);
        return {p.out_h(), p.out_w()};
    }

    /// Spatial output size of conv_transpose2d for an input of spatial size `input`.
    inline size2 conv_transpose2d_output_size(const size2& input,
                                              const size2& kernel,
                                              const conv_transpose2d_options& opt = {})
    {
        const std::array<std::int64_t, 4> in{1, 1, input.h, input.w};
        const std::array<std::int64_t, 4> wt{1, 1, kernel.h, kernel.w};
        auto c = opt;
        c.groups = 1;
        const auto p = detail::plan_conv_transpose2d("conv_transpose2d_output_size", in, wt, std::nullopt, c);
        return {p.out_h(), p.out_w()};
    }
}  // namespace xconv

#endif
