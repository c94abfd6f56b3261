// Live randomized sweep of xconv against PyTorch.
//
// Runs tests/sweep/torch_sweep.py (which draws random conv2d / conv_transpose2d / unfold / fold
// cases, roughly 30 % of them invalid, and records PyTorch's outputs, gradients and errors as .npy
// files), then replays every case through xconv:
//   * a case PyTorch accepts must give the same output and gradients
//     (|got - expected| <= atol + rtol * |expected|, rtol = atol = 1e-4 for float, 1e-10 for double),
//     and xconv throwing on it is a failure;
//   * a case PyTorch rejects must make xconv throw std::invalid_argument.
// Each case goes through one of the API levels, picked by its index: the fixed-rank functions, the
// dynamic-rank (xt::xarray) functions, or the Conv2d / ConvTranspose2d layers.
//
// Usage: xconv_sweep [--seed S] [--count N] [--keep]
//   The seed comes from --seed, else the environment variable XCONV_SWEEP_SEED, else the clock;
//   it is always printed so that a failure can be replayed. --keep keeps the case directory.
// Exit code: 0 all passed, 1 some failed, 77 PyTorch not importable (CTest reports "skipped").

#include <xconv/xconv.hpp>

#include <xtensor/xarray.hpp>
#include <xtensor/xnpy.hpp>
#include <xtensor/xtensor.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#ifndef XCONV_SWEEP_SCRIPT
#error "XCONV_SWEEP_SCRIPT (path of torch_sweep.py) must be defined"
#endif
#ifndef XCONV_SWEEP_PYTHON
#define XCONV_SWEEP_PYTHON "/usr/bin/python3"
#endif

namespace fs = std::filesystem;

namespace
{
    constexpr int skip_code = 77;

    // ------------------------------------------------------------------ one case

    enum class api
    {
        fixed_rank,
        dynamic_rank,
        layer
    };

    const char* api_name(api a)
    {
        switch (a)
        {
            case api::fixed_rank: return "fixed-rank functions";
            case api::dynamic_rank: return "xt::xarray functions";
            case api::layer: return "layer class";
        }
        return "?";
    }

    struct sweep_case
    {
        int index = 0;
        fs::path dir;
        std::map<std::string, std::string> params;
        std::vector<std::string> failures;  // empty: passed

        const std::string& get(const std::string& key) const
        {
            const auto it = params.find(key);
            if (it == params.end())
            {
                throw std::runtime_error("params.txt of case " + std::to_string(index) + " has no '" + key + "'");
            }
            return it->second;
        }

        bool has(const std::string& key) const { return params.count(key) != 0; }

        std::vector<std::int64_t> ints(const std::string& key) const
        {
            std::istringstream is(get(key));
            std::vector<std::int64_t> v;
            std::int64_t x;
            while (is >> x)
            {
                v.push_back(x);
            }
            return v;
        }

        xconv::size2 pair(const std::string& key) const
        {
            const auto v = ints(key);
            if (v.size() != 2)
            {
                throw std::runtime_error("case " + std::to_string(index) + ": '" + key + "' is not a pair");
            }
            return {v[0], v[1]};
        }

        bool file(const std::string& name) const { return fs::exists(dir / (name + ".npy")); }

        template <class T>
        xt::xarray<T> load(const std::string& name) const
        {
            return xt::load_npy<T>((dir / (name + ".npy")).string());
        }

        void fail(const std::string& what) { failures.push_back(what); }
    };

    template <class S>
    std::string shape_str(const S& s)
    {
        std::ostringstream os;
        os << '[';
        bool first = true;
        for (auto v : s)
        {
            os << (first ? "" : ", ") << v;
            first = false;
        }
        os << ']';
        return os.str();
    }

    template <class T>
    constexpr double tolerance()
    {
        return std::is_same<T, float>::value ? 1e-4 : 1e-10;
    }

    /// Element-wise comparison, |got - expected| <= tol + tol * |expected|, with a report of the
    /// worst element on failure.
    template <class T, class A>
    void compare(sweep_case& c, const std::string& what, const A& got, const xt::xarray<T>& expected, T scale = T(1))
    {
        const std::vector<std::size_t> gs(got.shape().begin(), got.shape().end());
        const std::vector<std::size_t> es(expected.shape().begin(), expected.shape().end());
        if (gs != es)
        {
            c.fail(what + ": shape " + shape_str(gs) + ", expected " + shape_str(es));
            return;
        }
        const std::vector<T> g(got.begin(), got.end());
        const std::vector<T> e(expected.begin(), expected.end());
        const double tol = tolerance<T>();
        std::size_t bad = 0, worst = 0;
        double worst_excess = -1.0, max_err = 0.0;
        for (std::size_t i = 0; i < e.size(); ++i)
        {
            const double ev = static_cast<double>(e[i]) * static_cast<double>(scale);
            const double gv = static_cast<double>(g[i]);
            const double err = std::abs(gv - ev);
            const double allowed = tol + tol * std::abs(ev);
            const bool ok = err <= allowed;  // false for NaN
            if (!ok)
            {
                ++bad;
            }
            max_err = std::isnan(err) ? err : std::max(max_err, err);
            const double excess = std::isnan(err) ? 1e300 : err - allowed;
            if (!ok && excess > worst_excess)
            {
                worst_excess = excess;
                worst = i;
            }
        }
        if (bad != 0)
        {
            // Flat index -> multi-index.
            std::vector<std::size_t> idx(es.size());
            std::size_t rest = worst;
            for (std::size_t d = es.size(); d-- > 0;)
            {
                idx[d] = rest % es[d];
                rest /= es[d];
            }
            std::ostringstream os;
            os.precision(17);
            os << what << ": " << bad << " of " << e.size() << " elements differ, max |error| " << max_err
               << "; worst at " << shape_str(idx) << ": expected " << static_cast<double>(e[worst]) * scale
               << ", got " << static_cast<double>(g[worst]) << " (shape " << shape_str(es) << ")";
            c.fail(os.str());
        }
    }

    template <class A>
    void check_empty(sweep_case& c, const std::string& what, const A& a)
    {
        if (a.size() != 0)
        {
            c.fail(what + " was not requested by the output mask but has shape " + shape_str(a.shape()));
        }
    }

    // ------------------------------------------------------------------ options from params.txt

    xconv::conv2d_options conv2d_opts(const sweep_case& c)
    {
        xconv::conv2d_options o;
        o.stride = c.pair("stride");
        o.padding = c.pair("padding");
        o.dilation = c.pair("dilation");
        o.groups = static_cast<std::size_t>(c.ints("groups").at(0));
        const auto& m = c.get("padding_mode");
        o.padding_mode = m == "reflect"     ? xconv::padding_mode::reflect
                         : m == "replicate" ? xconv::padding_mode::replicate
                         : m == "circular"  ? xconv::padding_mode::circular
                                            : xconv::padding_mode::zeros;
        const auto& a = c.get("auto_padding");
        o.auto_padding = a == "same"    ? xconv::auto_padding::same
                         : a == "valid" ? xconv::auto_padding::valid
                                        : xconv::auto_padding::none;
        return o;
    }

    xconv::conv_transpose2d_options conv_transpose2d_opts(const sweep_case& c)
    {
        xconv::conv_transpose2d_options o;
        o.stride = c.pair("stride");
        o.padding = c.pair("padding");
        o.output_padding = c.pair("output_padding");
        o.dilation = c.pair("dilation");
        o.groups = static_cast<std::size_t>(c.ints("groups").at(0));
        if (c.get("output_size") != "none")
        {
            o.output_size = c.pair("output_size");
        }
        return o;
    }

    xconv::unfold_options unfold_opts(const sweep_case& c)
    {
        xconv::unfold_options o;
        o.stride = c.pair("stride");
        o.padding = c.pair("padding");
        o.dilation = c.pair("dilation");
        return o;
    }

    xconv::output_mask mask_of(const sweep_case& c)
    {
        const auto m = c.ints("mask");
        return {m.at(0) != 0, m.at(1) != 0, m.at(2) != 0};
    }

    // ------------------------------------------------------------------ conv2d / conv_transpose2d

    struct conv2d_op
    {
        using options = xconv::conv2d_options;
        template <class T>
        using layer = xconv::Conv2d<T>;
        static options opts(const sweep_case& c) { return conv2d_opts(c); }

        template <class X, class W>
        static auto forward(const X& x, const W& w, const options& o)
        {
            return xconv::conv2d(x, w, o);
        }
        template <class X, class W, class B>
        static auto forward(const X& x, const W& w, const B& b, const options& o)
        {
            return xconv::conv2d(x, w, b, o);
        }
        template <class G, class X, class W>
        static auto backward(const G& g, const X& x, const W& w, const options& o, xconv::output_mask m)
        {
            return xconv::conv2d_backward(g, x, w, o, m);
        }
        // Layer construction from the weight's shape (C_out, C_in/groups, kh, kw).
        template <class T, class S>
        static layer<T> make_layer(const S& ws, const options& o, bool bias)
        {
            return layer<T>(ws[1] * o.groups, ws[0], {static_cast<std::int64_t>(ws[2]), static_cast<std::int64_t>(ws[3])},
                            o, bias);
        }
        template <class T>
        static xt::xtensor<T, 4> layer_forward(layer<T>& l, const xt::xtensor<T, 4>& x, const options&)
        {
            return l.forward(x);
        }
        template <class T>
        static xt::xtensor<T, 3> layer_forward(layer<T>& l, const xt::xtensor<T, 3>& x, const options&)
        {
            return l.forward(x);
        }
        static xconv::size2 output_size(xconv::size2 in, xconv::size2 k, const options& o)
        {
            return xconv::conv2d_output_size(in, k, o);
        }
    };

    struct conv_transpose2d_op
    {
        using options = xconv::conv_transpose2d_options;
        template <class T>
        using layer = xconv::ConvTranspose2d<T>;
        static options opts(const sweep_case& c) { return conv_transpose2d_opts(c); }

        template <class X, class W>
        static auto forward(const X& x, const W& w, const options& o)
        {
            return xconv::conv_transpose2d(x, w, o);
        }
        template <class X, class W, class B>
        static auto forward(const X& x, const W& w, const B& b, const options& o)
        {
            return xconv::conv_transpose2d(x, w, b, o);
        }
        template <class G, class X, class W>
        static auto backward(const G& g, const X& x, const W& w, const options& o, xconv::output_mask m)
        {
            return xconv::conv_transpose2d_backward(g, x, w, o, m);
        }
        // Layer construction from the weight's shape (C_in, C_out/groups, kh, kw). A requested
        // output size goes through forward(x, output_size), as in PyTorch, not through the options.
        template <class T, class S>
        static layer<T> make_layer(const S& ws, const options& o, bool bias)
        {
            auto lo = o;
            lo.output_size.reset();
            return layer<T>(ws[0], ws[1] * o.groups, {static_cast<std::int64_t>(ws[2]), static_cast<std::int64_t>(ws[3])},
                            lo, bias);
        }
        template <class T, class X>
        static auto layer_forward(layer<T>& l, const X& x, const options& o)
        {
            return o.output_size ? l.forward(x, *o.output_size) : l.forward(x);
        }
        static xconv::size2 output_size(xconv::size2 in, xconv::size2 k, const options& o)
        {
            return xconv::conv_transpose2d_output_size(in, k, o);
        }
    };

    template <class A>
    std::vector<std::size_t> shape_of(const A& a)
    {
        return {a.shape().begin(), a.shape().end()};
    }

    /// A valid conv case through the fixed-rank functions (N = 4 batched, 3 unbatched).
    template <class Op, class T, std::size_t N>
    void conv_fixed(sweep_case& c, const typename Op::options& o)
    {
        const xt::xtensor<T, N> x = c.load<T>("input");
        const xt::xtensor<T, 4> w = c.load<T>("weight");
        const auto y = c.file("bias") ? Op::forward(x, w, xt::xtensor<T, 1>(c.load<T>("bias")), o) : Op::forward(x, w, o);
        compare(c, "output", y, c.load<T>("output"));

        const auto m = mask_of(c);
        const xt::xtensor<T, N> go = c.load<T>("grad_output");
        const auto g = Op::backward(go, x, w, o, m);
        m[0] ? compare(c, "grad_input", g.grad_input, c.load<T>("grad_input")) : check_empty(c, "grad_input", g.grad_input);
        m[1] ? compare(c, "grad_weight", g.grad_weight, c.load<T>("grad_weight"))
             : check_empty(c, "grad_weight", g.grad_weight);
        m[2] ? compare(c, "grad_bias", g.grad_bias, c.load<T>("grad_bias")) : check_empty(c, "grad_bias", g.grad_bias);

        // The output-size helper must agree with the output PyTorch produced.
        const xconv::size2 in{static_cast<std::int64_t>(x.shape()[N - 2]), static_cast<std::int64_t>(x.shape()[N - 1])};
        const xconv::size2 k{static_cast<std::int64_t>(w.shape()[2]), static_cast<std::int64_t>(w.shape()[3])};
        const auto ys = shape_of(c.load<T>("output"));
        const xconv::size2 want{static_cast<std::int64_t>(ys[N - 2]), static_cast<std::int64_t>(ys[N - 1])};
        const auto got = Op::output_size(in, k, o);
        if (got != want)
        {
            std::ostringstream os;
            os << "output-size helper gives " << got << ", PyTorch's output has " << want;
            c.fail(os.str());
        }
    }

    /// A valid conv case through the xt::xarray functions.
    template <class Op, class T>
    void conv_dynamic(sweep_case& c, const typename Op::options& o)
    {
        const auto x = c.load<T>("input");
        const auto w = c.load<T>("weight");
        const xt::xarray<T> y = c.file("bias") ? Op::forward(x, w, c.load<T>("bias"), o) : Op::forward(x, w, o);
        compare(c, "output", y, c.load<T>("output"));

        const auto m = mask_of(c);
        const auto g = Op::backward(c.load<T>("grad_output"), x, w, o, m);
        m[0] ? compare(c, "grad_input", g.grad_input, c.load<T>("grad_input")) : check_empty(c, "grad_input", g.grad_input);
        m[1] ? compare(c, "grad_weight", g.grad_weight, c.load<T>("grad_weight"))
             : check_empty(c, "grad_weight", g.grad_weight);
        m[2] ? compare(c, "grad_bias", g.grad_bias, c.load<T>("grad_bias")) : check_empty(c, "grad_bias", g.grad_bias);
    }

    /// A valid conv case through the layer class: forward, backward, then a second backward that
    /// must accumulate (twice the gradients), then zero_grad and a third one.
    template <class Op, class T, std::size_t N>
    void conv_layer(sweep_case& c, const typename Op::options& o)
    {
        const xt::xtensor<T, N> x = c.load<T>("input");
        const xt::xtensor<T, 4> w = c.load<T>("weight");
        const bool bias = c.file("bias");
        auto l = Op::template make_layer<T>(w.shape(), o, bias);
        l.set_weight(w);
        if (bias)
        {
            l.set_bias(xt::xtensor<T, 1>(c.load<T>("bias")));
        }
        const auto y = Op::layer_forward(l, x, o);
        compare(c, "output", y, c.load<T>("output"));

        const xt::xtensor<T, N> go = c.load<T>("grad_output");
        const auto gw = c.load<T>("grad_weight");
        const auto gb = c.load<T>("grad_bias");
        compare(c, "layer grad_input", l.backward(go), c.load<T>("grad_input"));
        compare(c, "layer weight_grad", l.weight_grad(), gw);
        if (bias)
        {
            compare(c, "layer bias_grad", l.bias_grad(), gb);
        }
        l.backward(go);
        compare(c, "layer weight_grad after two backward calls", l.weight_grad(), gw, T(2));
        if (bias)
        {
            compare(c, "layer bias_grad after two backward calls", l.bias_grad(), gb, T(2));
        }
        l.zero_grad();
        l.backward(go);
        compare(c, "layer weight_grad after zero_grad", l.weight_grad(), gw);
    }

    /// An invalid conv case: the chosen API level must throw std::invalid_argument.
    template <class Op, class T>
    void conv_invalid(sweep_case& c, api a, const typename Op::options& o)
    {
        const auto x = c.load<T>("input");
        const auto w = c.load<T>("weight");
        const bool bias = c.file("bias");
        const auto rank = x.dimension();
        if (a == api::fixed_rank && (rank == 3 || rank == 4))
        {
            const xt::xtensor<T, 4> w4 = w;
            auto run = [&](const auto& xt_) {
                if (bias)
                {
                    Op::forward(xt_, w4, xt::xtensor<T, 1>(c.load<T>("bias")), o);
                }
                else
                {
                    Op::forward(xt_, w4, o);
                }
            };
            rank == 4 ? run(xt::xtensor<T, 4>(x)) : run(xt::xtensor<T, 3>(x));
        }
        else if (a == api::layer && (rank == 3 || rank == 4))
        {
            const xt::xtensor<T, 4> w4 = w;
            auto l = Op::template make_layer<T>(w4.shape(), o, bias);
            l.set_weight(w4);
            if (bias)
            {
                l.set_bias(xt::xtensor<T, 1>(c.load<T>("bias")));
            }
            rank == 4 ? (void)Op::layer_forward(l, xt::xtensor<T, 4>(x), o)
                      : (void)Op::layer_forward(l, xt::xtensor<T, 3>(x), o);
        }
        else if (bias)
        {
            Op::forward(x, w, c.load<T>("bias"), o);
        }
        else
        {
            Op::forward(x, w, o);
        }
    }

    /// The backward pass given the arguments of an invalid case must throw std::invalid_argument
    /// too (and not crash). It takes no bias, so this applies only to the cases PyTorch rejects
    /// also without their bias. The grad_output is a placeholder of the input's rank.
    template <class Op, class T>
    void conv_invalid_backward(sweep_case& c, const typename Op::options& o)
    {
        if (c.get("reject_without_bias") != "1")
        {
            return;
        }
        const auto x = c.load<T>("input");
        const auto w = c.load<T>("weight");
        std::vector<std::size_t> gs(x.shape().begin(), x.shape().end());
        if (gs.size() >= 3)
        {
            gs[gs.size() - 3] = w.dimension() == 4 ? w.shape()[0] : 1;
        }
        const xt::xarray<T> go(gs, T(0));
        try
        {
            Op::backward(go, x, w, o, {true, true, true});
            c.fail("backward accepted the arguments PyTorch rejects");
        }
        catch (const std::invalid_argument&)
        {
        }
    }

    // ------------------------------------------------------------------ unfold / fold

    template <class T>
    void unfold_case(sweep_case& c, api a, bool invalid)
    {
        const auto k = c.pair("kernel_size");
        const auto o = unfold_opts(c);
        const auto x = c.load<T>("input");
        const auto rank = x.dimension();
        if (invalid)
        {
            if (a == api::fixed_rank && rank == 4)
            {
                xconv::unfold(xt::xtensor<T, 4>(x), k, o);
            }
            else if (a == api::fixed_rank && rank == 3)
            {
                xconv::unfold(xt::xtensor<T, 3>(x), k, o);
            }
            else
            {
                xconv::unfold(x, k, o);
            }
            return;
        }
        // Forward, and the gradient: unfold's backward is fold of grad_output onto the input plane.
        const xconv::size2 plane{static_cast<std::int64_t>(x.shape()[rank - 2]),
                                 static_cast<std::int64_t>(x.shape()[rank - 1])};
        const auto go = c.load<T>("grad_output");
        if (a == api::fixed_rank && rank == 4)
        {
            compare(c, "output", xconv::unfold(xt::xtensor<T, 4>(x), k, o), c.load<T>("output"));
            compare(c, "grad_input (fold of grad_output)", xconv::fold(xt::xtensor<T, 3>(go), plane, k, o),
                    c.load<T>("grad_input"));
        }
        else if (a == api::fixed_rank)
        {
            compare(c, "output", xconv::unfold(xt::xtensor<T, 3>(x), k, o), c.load<T>("output"));
            compare(c, "grad_input (fold of grad_output)", xconv::fold(xt::xtensor<T, 2>(go), plane, k, o),
                    c.load<T>("grad_input"));
        }
        else
        {
            compare(c, "output", xconv::unfold(x, k, o), c.load<T>("output"));
            compare(c, "grad_input (fold of grad_output)", xconv::fold(go, plane, k, o), c.load<T>("grad_input"));
        }
    }

    template <class T>
    void fold_case(sweep_case& c, api a, bool invalid)
    {
        const auto k = c.pair("kernel_size");
        const auto size = c.pair("output_size");
        const auto o = unfold_opts(c);
        const auto x = c.load<T>("input");
        const auto rank = x.dimension();
        if (invalid)
        {
            if (a == api::fixed_rank && rank == 3)
            {
                xconv::fold(xt::xtensor<T, 3>(x), size, k, o);
            }
            else if (a == api::fixed_rank && rank == 2)
            {
                xconv::fold(xt::xtensor<T, 2>(x), size, k, o);
            }
            else
            {
                xconv::fold(x, size, k, o);
            }
            return;
        }
        // Forward, and the gradient: fold's backward is unfold of grad_output.
        const auto go = c.load<T>("grad_output");
        if (a == api::fixed_rank && rank == 3)
        {
            compare(c, "output", xconv::fold(xt::xtensor<T, 3>(x), size, k, o), c.load<T>("output"));
            compare(c, "grad_input (unfold of grad_output)", xconv::unfold(xt::xtensor<T, 4>(go), k, o),
                    c.load<T>("grad_input"));
        }
        else if (a == api::fixed_rank)
        {
            compare(c, "output", xconv::fold(xt::xtensor<T, 2>(x), size, k, o), c.load<T>("output"));
            compare(c, "grad_input (unfold of grad_output)", xconv::unfold(xt::xtensor<T, 3>(go), k, o),
                    c.load<T>("grad_input"));
        }
        else
        {
            compare(c, "output", xconv::fold(x, size, k, o), c.load<T>("output"));
            compare(c, "grad_input (unfold of grad_output)", xconv::unfold(go, k, o), c.load<T>("grad_input"));
        }
    }

    // ------------------------------------------------------------------ dispatch

    template <class Op, class T>
    void conv_valid(sweep_case& c, api a, const typename Op::options& o)
    {
        const auto rank = c.load<T>("input").dimension();
        if (a == api::dynamic_rank)
        {
            conv_dynamic<Op, T>(c, o);
        }
        else if (a == api::layer)
        {
            rank == 4 ? conv_layer<Op, T, 4>(c, o) : conv_layer<Op, T, 3>(c, o);
        }
        else
        {
            rank == 4 ? conv_fixed<Op, T, 4>(c, o) : conv_fixed<Op, T, 3>(c, o);
        }
    }

    /// Runs the xconv side of one case; throws whatever xconv throws.
    template <class T>
    void run_xconv(sweep_case& c, api a, bool invalid)
    {
        const auto& op = c.get("op");
        if (op == "conv2d")
        {
            const auto o = conv2d_opts(c);
            if (invalid)
            {
                try
                {
                    conv_invalid<conv2d_op, T>(c, a, o);
                }
                catch (...)
                {
                    conv_invalid_backward<conv2d_op, T>(c, o);
                    throw;
                }
                return;
            }
            conv_valid<conv2d_op, T>(c, a, o);
        }
        else if (op == "conv_transpose2d")
        {
            const auto o = conv_transpose2d_opts(c);
            if (invalid)
            {
                try
                {
                    conv_invalid<conv_transpose2d_op, T>(c, a, o);
                }
                catch (...)
                {
                    conv_invalid_backward<conv_transpose2d_op, T>(c, o);
                    throw;
                }
                return;
            }
            conv_valid<conv_transpose2d_op, T>(c, a, o);
        }
        else if (op == "unfold")
        {
            unfold_case<T>(c, a, invalid);
        }
        else if (op == "fold")
        {
            fold_case<T>(c, a, invalid);
        }
        else
        {
            throw std::runtime_error("unknown op " + op);
        }
    }

    std::map<std::string, std::string> read_params(const fs::path& file)
    {
        std::ifstream in(file);
        if (!in)
        {
            throw std::runtime_error("cannot read " + file.string());
        }
        std::map<std::string, std::string> p;
        std::string line;
        while (std::getline(in, line))
        {
            const auto sp = line.find(' ');
            if (sp != std::string::npos)
            {
                p[line.substr(0, sp)] = line.substr(sp + 1);
            }
        }
        return p;
    }

    void print_params(const sweep_case& c)
    {
        std::ifstream in(c.dir / "params.txt");
        std::string line;
        while (std::getline(in, line))
        {
            std::cout << "      " << line << '\n';
        }
        std::cout << "      input shape " << shape_str(c.get("dtype") == "float32" ? c.load<float>("input").shape()
                                                                                     : c.load<double>("input").shape());
        if (c.file("weight"))
        {
            std::cout << ", weight shape "
                      << shape_str(c.get("dtype") == "float32" ? c.load<float>("weight").shape()
                                                                : c.load<double>("weight").shape());
        }
        if (c.file("bias"))
        {
            std::cout << ", bias shape "
                      << shape_str(c.get("dtype") == "float32" ? c.load<float>("bias").shape()
                                                                : c.load<double>("bias").shape());
        }
        std::cout << "\n      case files: " << c.dir.string() << '\n';
    }

    /// Runs case i; returns true when it passed.
    bool run_case(int i, const fs::path& root, int& rejected)
    {
        sweep_case c;
        c.index = i;
        c.dir = root / std::to_string(i);
        c.params = read_params(c.dir / "params.txt");
        const bool invalid = c.get("expect_error") == "1";
        rejected += invalid ? 1 : 0;
        const bool is_conv = c.get("op") == "conv2d" || c.get("op") == "conv_transpose2d";
        const api a = static_cast<api>(i % (is_conv ? 3 : 2));
        const bool is_float = c.get("dtype") == "float32";
        const std::string head = "case " + std::to_string(i) + " (" + c.get("op") + ", " + c.get("dtype") + ", " +
                                 api_name(a) + ", " + c.get("label") + ")";

        std::string message;
        bool threw_invalid = false;
        try
        {
            is_float ? run_xconv<float>(c, a, invalid) : run_xconv<double>(c, a, invalid);
        }
        catch (const std::invalid_argument& e)
        {
            threw_invalid = true;
            message = e.what();
        }
        catch (const std::exception& e)
        {
            c.fail(std::string("threw a ") + (dynamic_cast<const std::logic_error*>(&e) ? "std::logic_error" : "std::exception")
                   + " other than std::invalid_argument: " + e.what());
        }
        catch (...)
        {
            c.fail("threw something that is not a std::exception");
        }

        if (invalid && !threw_invalid && c.failures.empty())
        {
            c.fail("xconv accepted a case PyTorch rejects (" + c.get("torch_error") + ")");
        }
        if (!invalid && threw_invalid)
        {
            c.fail("xconv threw std::invalid_argument on a case PyTorch accepts: " + message);
        }

        if (c.failures.empty())
        {
            if (invalid)
            {
                std::cout << "ok   " << head << "\n      torch: " << c.get("torch_error") << "\n      xconv: " << message
                          << '\n';
            }
            return true;
        }
        std::cout << "FAIL " << head << '\n';
        for (const auto& f : c.failures)
        {
            std::cout << "    - " << f << '\n';
        }
        print_params(c);
        return false;
    }

    // ------------------------------------------------------------------ setup

    std::string quote(const std::string& s)
    {
        std::string q = "'";
        for (char ch : s)
        {
            q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
        }
        return q + "'";
    }

    bool torch_importable()
    {
        const std::string cmd = quote(XCONV_SWEEP_PYTHON) + " -c 'import torch, numpy' >/dev/null 2>&1";
        return std::system(cmd.c_str()) == 0;
    }

    std::uint64_t pick_seed(const std::optional<std::uint64_t>& from_args)
    {
        if (from_args)
        {
            return *from_args;
        }
        if (const char* env = std::getenv("XCONV_SWEEP_SEED"); env != nullptr && *env != '\0')
        {
            return std::stoull(env);
        }
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now).count()) %
               1000000000ULL;
    }
}  // namespace

int main(int argc, char** argv)
{
    std::optional<std::uint64_t> seed_arg;
    int count = 320;
    if (const char* env = std::getenv("XCONV_SWEEP_COUNT"); env != nullptr && *env != '\0')
    {
        count = std::stoi(env);
    }
    bool keep = false;
    for (int i = 1; i < argc; ++i)
    {
        const std::string a = argv[i];
        if (a == "--seed" && i + 1 < argc)
        {
            seed_arg = std::stoull(argv[++i]);
        }
        else if (a == "--count" && i + 1 < argc)
        {
            count = std::stoi(argv[++i]);
        }
        else if (a == "--keep")
        {
            keep = true;
        }
        else
        {
            std::cerr << "usage: " << argv[0] << " [--seed S] [--count N] [--keep]\n";
            return 2;
        }
    }

    if (!torch_importable())
    {
        std::cout << "SKIPPED: PyTorch not importable: live sweep against PyTorch not run (" << XCONV_SWEEP_PYTHON
                  << " -c 'import torch, numpy' failed)" << std::endl;
        return skip_code;
    }

    const std::uint64_t seed = pick_seed(seed_arg);
    std::cout << "sweep: seed " << seed << " (replay with XCONV_SWEEP_SEED=" << seed << "), " << count << " cases"
              << std::endl;

    std::string tmpl = (fs::temp_directory_path() / "xconv_sweep.XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr)
    {
        std::cerr << "sweep: cannot create a temporary directory\n";
        return 1;
    }
    const fs::path root = tmpl;
    const std::string cmd = quote(XCONV_SWEEP_PYTHON) + " " + quote(XCONV_SWEEP_SCRIPT) + " --seed " +
                            std::to_string(seed) + " --count " + std::to_string(count) + " --out " + quote(root.string());
    const auto t0 = std::chrono::steady_clock::now();
    if (std::system(cmd.c_str()) != 0)
    {
        std::cerr << "sweep: the case generator failed: " << cmd << '\n';
        return 1;
    }
    const auto t1 = std::chrono::steady_clock::now();

    int passed = 0, failed = 0, rejected = 0;
    for (int i = 0; i < count; ++i)
    {
        bool ok = false;
        try
        {
            ok = run_case(i, root, rejected);
        }
        catch (const std::exception& e)
        {
            std::cout << "FAIL case " << i << ": cannot run the case: " << e.what() << '\n';
        }
        ok ? ++passed : ++failed;
    }
    const auto t2 = std::chrono::steady_clock::now();
    const auto secs = [](auto d) { return std::chrono::duration<double>(d).count(); };

    if (failed != 0 || keep)
    {
        std::cout << "sweep: case files kept in " << root.string() << '\n';
    }
    else
    {
        std::error_code ec;
        fs::remove_all(root, ec);
    }
    std::cout.precision(3);
    std::cout << "sweep: " << passed << " passed, " << failed << " failed (" << rejected
              << " of the cases rejected by PyTorch; seed " << seed << "; PyTorch " << secs(t1 - t0) << " s, xconv "
              << secs(t2 - t1) << " s)" << std::endl;
    return failed == 0 ? 0 : 1;
}
