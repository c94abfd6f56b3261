// Golden tests: xconv against fixtures computed by PyTorch (tests/golden/gen_golden.py).
//
// Every directory under XCONV_TEST_DATA_DIR is one case: the inputs of an operation, its
// parameters (params.txt), PyTorch's output and the gradients autograd computed for a given
// grad_output. The test runs the same call through xconv and compares output, grad_input,
// grad_weight and grad_bias elementwise: |got - expected| <= atol + rtol * |expected| with
// 1e-4 / 1e-4 for float and 1e-10 / 1e-10 for double.
//
// The gradient of unfold is fold with the same parameters, and that of fold is unfold: the
// unfold / fold cases check the forward call and its adjoint against autograd.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <xconv/xconv.hpp>

#include "support/npy_case.hpp"

namespace
{
    namespace fs = std::filesystem;
    using xconv_test::case_params;

    fs::path data_dir()
    {
        return fs::path(XCONV_TEST_DATA_DIR);
    }

    template <class T>
    struct tolerance;

    template <>
    struct tolerance<float>
    {
        static constexpr double rtol = 1e-4;
        static constexpr double atol = 1e-4;
    };

    template <>
    struct tolerance<double>
    {
        static constexpr double rtol = 1e-10;
        static constexpr double atol = 1e-10;
    };

    /// One fixture directory, its name and its parameters.
    struct golden_case
    {
        std::string name;
        fs::path dir;
        case_params params;
    };

    std::vector<golden_case> all_cases()
    {
        std::vector<golden_case> cases;
        for (const auto& dir : xconv_test::case_directories(data_dir()))
        {
            cases.push_back({dir.filename().string(), dir, case_params::read(dir / "params.txt")});
        }
        return cases;
    }

    xconv::size2 size2_of(const case_params& p, const std::string& key)
    {
        const auto v = p.pair(key);
        return xconv::size2{v.first, v.second};
    }

    xconv::padding_mode padding_mode_of(const std::string& s)
    {
        if (s == "zeros")
        {
            return xconv::padding_mode::zeros;
        }
        if (s == "reflect")
        {
            return xconv::padding_mode::reflect;
        }
        if (s == "replicate")
        {
            return xconv::padding_mode::replicate;
        }
        if (s == "circular")
        {
            return xconv::padding_mode::circular;
        }
        throw std::runtime_error("unknown padding_mode '" + s + "'");
    }

    xconv::auto_padding auto_padding_of(const std::string& s)
    {
        if (s == "none")
        {
            return xconv::auto_padding::none;
        }
        if (s == "same")
        {
            return xconv::auto_padding::same;
        }
        if (s == "valid")
        {
            return xconv::auto_padding::valid;
        }
        throw std::runtime_error("unknown auto_padding '" + s + "'");
    }

    xconv::conv2d_options conv2d_options_of(const case_params& p)
    {
        xconv::conv2d_options o;
        o.stride = size2_of(p, "stride");
        o.padding = size2_of(p, "padding");
        o.dilation = size2_of(p, "dilation");
        o.groups = static_cast<std::size_t>(p.integer("groups"));
        o.padding_mode = padding_mode_of(p.text("padding_mode"));
        o.auto_padding = auto_padding_of(p.text("auto_padding"));
        return o;
    }

    xconv::conv_transpose2d_options conv_transpose2d_options_of(const case_params& p)
    {
        xconv::conv_transpose2d_options o;
        o.stride = size2_of(p, "stride");
        o.padding = size2_of(p, "padding");
        o.output_padding = size2_of(p, "output_padding");
        o.dilation = size2_of(p, "dilation");
        o.groups = static_cast<std::size_t>(p.integer("groups"));
        if (!p.is_none("output_size"))
        {
            o.output_size = size2_of(p, "output_size");
        }
        return o;
    }

    xconv::unfold_options unfold_options_of(const case_params& p)
    {
        xconv::unfold_options o;
        o.stride = size2_of(p, "stride");
        o.padding = size2_of(p, "padding");
        o.dilation = size2_of(p, "dilation");
        return o;
    }

    /// One CHECK per compared array; on failure the message names the case and the array.
    template <class T, class E1, class E2>
    void check_close(const golden_case& c, const char* what, const E1& got, const E2& expected)
    {
        const auto r = xconv_test::compare_close(got, expected, tolerance<T>::rtol, tolerance<T>::atol);
        INFO("case " << c.name << ", " << what << ": " << r.message);
        CHECK(r.ok);
    }

    // ---------------------------------------------------------------------- per operation

    template <class T, std::size_t Rank>
    void run_conv2d(const golden_case& c)
    {
        const auto& dir = c.dir;
        const bool has_bias = c.params.flag("bias");
        const auto opt = conv2d_options_of(c.params);
        const auto x = xconv_test::load_npy_tensor<T, Rank>(dir, "input");
        const auto w = xconv_test::load_npy_tensor<T, 4>(dir, "weight");
        const auto gy = xconv_test::load_npy_tensor<T, Rank>(dir, "grad_output");

        xt::xtensor<T, Rank> y;
        if (has_bias)
        {
            const auto b = xconv_test::load_npy_tensor<T, 1>(dir, "bias");
            y = xconv::conv2d(x, w, b, opt);
        }
        else
        {
            y = xconv::conv2d(x, w, opt);
        }
        check_close<T>(c, "output", y, xconv_test::load_npy_tensor<T, Rank>(dir, "output"));

        const auto g = xconv::conv2d_backward(gy, x, w, opt, {true, true, has_bias});
        check_close<T>(c, "grad_input", g.grad_input, xconv_test::load_npy_tensor<T, Rank>(dir, "grad_input"));
        check_close<T>(c, "grad_weight", g.grad_weight, xconv_test::load_npy_tensor<T, 4>(dir, "grad_weight"));
        if (has_bias)
        {
            check_close<T>(c, "grad_bias", g.grad_bias, xconv_test::load_npy_tensor<T, 1>(dir, "grad_bias"));
        }
        else
        {
            INFO("case " << c.name << ": grad_bias was not requested and must come back empty");
            CHECK(g.grad_bias.size() == 0);
        }
    }

    template <class T, std::size_t Rank>
    void run_conv_transpose2d(const golden_case& c)
    {
        const auto& dir = c.dir;
        const bool has_bias = c.params.flag("bias");
        const auto opt = conv_transpose2d_options_of(c.params);
        const auto x = xconv_test::load_npy_tensor<T, Rank>(dir, "input");
        const auto w = xconv_test::load_npy_tensor<T, 4>(dir, "weight");
        const auto gy = xconv_test::load_npy_tensor<T, Rank>(dir, "grad_output");

        xt::xtensor<T, Rank> y;
        if (has_bias)
        {
            const auto b = xconv_test::load_npy_tensor<T, 1>(dir, "bias");
            y = xconv::conv_transpose2d(x, w, b, opt);
        }
        else
        {
            y = xconv::conv_transpose2d(x, w, opt);
        }
        check_close<T>(c, "output", y, xconv_test::load_npy_tensor<T, Rank>(dir, "output"));

        const auto g = xconv::conv_transpose2d_backward(gy, x, w, opt, {true, true, has_bias});
        check_close<T>(c, "grad_input", g.grad_input, xconv_test::load_npy_tensor<T, Rank>(dir, "grad_input"));
        check_close<T>(c, "grad_weight", g.grad_weight, xconv_test::load_npy_tensor<T, 4>(dir, "grad_weight"));
        if (has_bias)
        {
            check_close<T>(c, "grad_bias", g.grad_bias, xconv_test::load_npy_tensor<T, 1>(dir, "grad_bias"));
        }
        else
        {
            INFO("case " << c.name << ": grad_bias was not requested and must come back empty");
            CHECK(g.grad_bias.size() == 0);
        }
    }

    /// Rank is that of the image: 4 for (N, C, H, W), 3 for (C, H, W); columns have one less.
    template <class T, std::size_t Rank>
    void run_unfold(const golden_case& c)
    {
        const auto& dir = c.dir;
        const auto opt = unfold_options_of(c.params);
        const auto kernel = size2_of(c.params, "kernel");
        const auto x = xconv_test::load_npy_tensor<T, Rank>(dir, "input");
        const xconv::size2 image{static_cast<std::int64_t>(x.shape()[Rank - 2]),
                                 static_cast<std::int64_t>(x.shape()[Rank - 1])};

        const xt::xtensor<T, Rank - 1> y = xconv::unfold(x, kernel, opt);
        check_close<T>(c, "output", y, xconv_test::load_npy_tensor<T, Rank - 1>(dir, "output"));

        const auto gy = xconv_test::load_npy_tensor<T, Rank - 1>(dir, "grad_output");
        const xt::xtensor<T, Rank> gx = xconv::fold(gy, image, kernel, opt);
        check_close<T>(c, "grad_input", gx, xconv_test::load_npy_tensor<T, Rank>(dir, "grad_input"));
    }

    template <class T, std::size_t Rank>
    void run_fold(const golden_case& c)
    {
        const auto& dir = c.dir;
        const auto opt = unfold_options_of(c.params);
        const auto kernel = size2_of(c.params, "kernel");
        const auto output_size = size2_of(c.params, "output_size");
        const auto x = xconv_test::load_npy_tensor<T, Rank - 1>(dir, "input");

        const xt::xtensor<T, Rank> y = xconv::fold(x, output_size, kernel, opt);
        check_close<T>(c, "output", y, xconv_test::load_npy_tensor<T, Rank>(dir, "output"));

        const auto gy = xconv_test::load_npy_tensor<T, Rank>(dir, "grad_output");
        const xt::xtensor<T, Rank - 1> gx = xconv::unfold(gy, kernel, opt);
        check_close<T>(c, "grad_input", gx, xconv_test::load_npy_tensor<T, Rank - 1>(dir, "grad_input"));
    }

    template <class T>
    void run_case(const golden_case& c)
    {
        const std::string op = c.params.text("op");
        const bool unbatched = c.params.flag("unbatched");
        if (op == "conv2d")
        {
            unbatched ? run_conv2d<T, 3>(c) : run_conv2d<T, 4>(c);
        }
        else if (op == "conv_transpose2d")
        {
            unbatched ? run_conv_transpose2d<T, 3>(c) : run_conv_transpose2d<T, 4>(c);
        }
        else if (op == "unfold")
        {
            unbatched ? run_unfold<T, 3>(c) : run_unfold<T, 4>(c);
        }
        else if (op == "fold")
        {
            unbatched ? run_fold<T, 3>(c) : run_fold<T, 4>(c);
        }
        else
        {
            throw std::runtime_error("unknown op '" + op + "'");
        }
    }

    struct run_counts
    {
        std::size_t float32 = 0, float64 = 0;
    };

    /// Runs every case of operation `op`; an exception fails that case and the others still run.
    run_counts run_all(const std::string& op)
    {
        run_counts counts;
        for (const auto& c : all_cases())
        {
            if (c.params.text("op") != op)
            {
                continue;
            }
            const std::string dtype = c.params.text("dtype");
            try
            {
                if (dtype == "float32")
                {
                    ++counts.float32;
                    run_case<float>(c);
                }
                else if (dtype == "float64")
                {
                    ++counts.float64;
                    run_case<double>(c);
                }
                else
                {
                    FAIL_CHECK("case " << c.name << ": unknown dtype '" << dtype << "'");
                }
            }
            catch (const std::exception& e)
            {
                FAIL_CHECK("case " << c.name << " threw: " << e.what());
            }
        }
        return counts;
    }

    void require_cases(const run_counts& counts, const std::string& op)
    {
        INFO("golden cases of " << op << " under " << data_dir().string() << ": " << counts.float32
                                << " float32, " << counts.float64 << " float64");
        REQUIRE(counts.float32 > 0);
        REQUIRE(counts.float64 > 0);
    }
}  // namespace

TEST_CASE("golden: the fixture directories are exactly those of the manifest", "[golden]")
{
    const auto dirs = xconv_test::case_directories(data_dir());
    INFO("data directory " << data_dir().string() << " (regenerate with tests/golden/gen_golden.py)");
    REQUIRE(!dirs.empty());
    const auto manifest = xconv_test::read_manifest(data_dir() / "MANIFEST.txt");
    REQUIRE(!manifest.empty());

    std::set<std::string> found;
    for (const auto& d : dirs)
    {
        found.insert(d.filename().string());
    }
    const std::set<std::string> listed(manifest.begin(), manifest.end());
    CHECK(listed.size() == manifest.size());  // no name listed twice
    for (const auto& name : listed)
    {
        INFO("case " << name << " is in MANIFEST.txt");
        CHECK(found.count(name) == 1);
    }
    for (const auto& name : found)
    {
        INFO("case directory " << name << " exists");
        CHECK(listed.count(name) == 1);
    }
    CHECK(dirs.size() == manifest.size());
}

TEST_CASE("golden: conv2d and its gradients match PyTorch", "[golden][conv2d]")
{
    require_cases(run_all("conv2d"), "conv2d");
}

TEST_CASE("golden: conv_transpose2d and its gradients match PyTorch", "[golden][conv_transpose2d]")
{
    require_cases(run_all("conv_transpose2d"), "conv_transpose2d");
}

TEST_CASE("golden: unfold and its gradient match PyTorch", "[golden][unfold]")
{
    require_cases(run_all("unfold"), "unfold");
}

TEST_CASE("golden: fold and its gradient match PyTorch", "[golden][fold]")
{
    require_cases(run_all("fold"), "fold");
}
