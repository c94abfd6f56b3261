// Reading the golden fixtures written by tests/golden/gen_golden.py: one directory per case
// holding params.txt (`key value...` lines) and .npy arrays, and a MANIFEST.txt listing the cases.
// Also the elementwise comparison |got - expected| <= atol + rtol * |expected| with a report that
// names the worst element.
#ifndef XCONV_TESTS_SUPPORT_NPY_CASE_HPP
#define XCONV_TESTS_SUPPORT_NPY_CASE_HPP

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xarray.hpp>
#include <xtensor/xnpy.hpp>
#include <xtensor/xtensor.hpp>

namespace xconv_test
{
    /// The parameters of one golden case: every line of params.txt split into a key and its values.
    class case_params
    {
    public:
        static case_params read(const std::filesystem::path& file)
        {
            std::ifstream in(file);
            if (!in)
            {
                throw std::runtime_error("cannot open " + file.string());
            }
            case_params p;
            std::string line;
            while (std::getline(in, line))
            {
                std::istringstream words(line);
                std::string key;
                if (!(words >> key))
                {
                    continue;
                }
                std::vector<std::string> values;
                for (std::string v; words >> v;)
                {
                    values.push_back(v);
                }
                p.m_values[key] = values;
            }
            return p;
        }

        bool has(const std::string& key) const { return m_values.count(key) != 0; }

        const std::vector<std::string>& values(const std::string& key) const
        {
            auto it = m_values.find(key);
            if (it == m_values.end())
            {
                throw std::runtime_error("params.txt has no key '" + key + "'");
            }
            return it->second;
        }

        std::string text(const std::string& key) const
        {
            const auto& v = values(key);
            if (v.size() != 1)
            {
                throw std::runtime_error("params.txt key '" + key + "' must have one value");
            }
            return v[0];
        }

        std::int64_t integer(const std::string& key) const { return std::stoll(text(key)); }

        bool flag(const std::string& key) const { return integer(key) != 0; }

        /// True when the key's value is the single word "none".
        bool is_none(const std::string& key) const
        {
            const auto& v = values(key);
            return v.size() == 1 && v[0] == "none";
        }

        /// A key with two integers (height, width).
        std::pair<std::int64_t, std::int64_t> pair(const std::string& key) const
        {
            const auto& v = values(key);
            if (v.size() != 2)
            {
                throw std::runtime_error("params.txt key '" + key + "' must have two values");
            }
            return {std::stoll(v[0]), std::stoll(v[1])};
        }

    private:
        std::map<std::string, std::vector<std::string>> m_values;
    };

    /// Loads `dir/<name>.npy` as a tensor of rank N, checking the element type (<f4 / <f8) and the rank.
    template <class T, std::size_t N>
    xt::xtensor<T, N> load_npy_tensor(const std::filesystem::path& dir, const std::string& name)
    {
        const auto file = dir / (name + ".npy");
        if (!std::filesystem::exists(file))
        {
            throw std::runtime_error("missing fixture " + file.string());
        }
        xt::xarray<T> a = xt::load_npy<T>(file.string());
        if (a.dimension() != N)
        {
            throw std::runtime_error(file.string() + " has rank " + std::to_string(a.dimension()) + ", expected "
                                     + std::to_string(N));
        }
        xt::xtensor<T, N> t = a;
        return t;
    }

    template <class Shape>
    std::string shape_text(const Shape& shape)
    {
        std::ostringstream os;
        os << '(';
        bool first = true;
        for (auto s : shape)
        {
            os << (first ? "" : ", ") << s;
            first = false;
        }
        os << ')';
        return os.str();
    }

    /// Outcome of an elementwise comparison; `message` describes the failure (empty when ok).
    struct comparison
    {
        bool ok = true;
        std::string message;
    };

    /// Compares `got` with `expected`: same shape, and |got - expected| <= atol + rtol * |expected|
    /// for every element (NaN never passes). Reports the number of failing elements, the worst
    /// one (largest excess over its tolerance) with its index, and the largest absolute error.
    template <class E1, class E2>
    comparison compare_close(const E1& got, const E2& expected, double rtol, double atol)
    {
        comparison r;
        std::ostringstream msg;
        if (!std::equal(got.shape().begin(), got.shape().end(), expected.shape().begin(), expected.shape().end()))
        {
            r.ok = false;
            msg << "shape mismatch: got " << shape_text(got.shape()) << ", expected " << shape_text(expected.shape());
            r.message = msg.str();
            return r;
        }
        std::size_t bad = 0;
        std::size_t worst = 0;
        double worst_excess = -1.0;
        double max_abs = 0.0;
        const std::size_t n = expected.size();
        auto g = got.begin();
        auto e = expected.begin();
        for (std::size_t i = 0; i < n; ++i, ++g, ++e)
        {
            const double a = static_cast<double>(*g);
            const double b = static_cast<double>(*e);
            const double err = std::abs(a - b);
            const double tol = atol + rtol * std::abs(b);
            const bool pass = err <= tol;  // false for NaN
            if (!(err <= max_abs))
            {
                max_abs = err;
            }
            if (!pass)
            {
                ++bad;
                const double excess = std::isnan(err) ? INFINITY : err - tol;
                if (excess > worst_excess)
                {
                    worst_excess = excess;
                    worst = i;
                }
            }
        }
        if (bad == 0)
        {
            return r;
        }
        // Turn the flat (row-major) index of the worst element into a multi-index.
        std::vector<std::size_t> index(expected.dimension());
        std::size_t rest = worst;
        for (std::size_t d = expected.dimension(); d-- > 0;)
        {
            index[d] = rest % expected.shape()[d];
            rest /= expected.shape()[d];
        }
        r.ok = false;
        msg.precision(17);
        msg << bad << " of " << n << " elements differ (shape " << shape_text(expected.shape())
            << "), max |error| = " << max_abs << "; worst at " << shape_text(index) << ": got "
            << static_cast<double>(*(got.begin() + static_cast<std::ptrdiff_t>(worst))) << ", expected "
            << static_cast<double>(*(expected.begin() + static_cast<std::ptrdiff_t>(worst))) << " (rtol " << rtol
            << ", atol " << atol << ")";
        r.message = msg.str();
        return r;
    }

    /// The case names listed in `manifest` (one a line, blank lines ignored).
    inline std::vector<std::string> read_manifest(const std::filesystem::path& manifest)
    {
        std::ifstream in(manifest);
        if (!in)
        {
            throw std::runtime_error("cannot open " + manifest.string());
        }
        std::vector<std::string> names;
        for (std::string line; std::getline(in, line);)
        {
            line.erase(std::remove_if(line.begin(), line.end(), [](unsigned char c) { return std::isspace(c); }),
                       line.end());
            if (!line.empty())
            {
                names.push_back(line);
            }
        }
        return names;
    }

    /// The sub-directories of `root` that hold a params.txt, sorted by name.
    inline std::vector<std::filesystem::path> case_directories(const std::filesystem::path& root)
    {
        std::vector<std::filesystem::path> dirs;
        if (!std::filesystem::is_directory(root))
        {
            return dirs;
        }
        for (const auto& entry : std::filesystem::directory_iterator(root))
        {
            if (entry.is_directory() && std::filesystem::exists(entry.path() / "params.txt"))
            {
                dirs.push_back(entry.path());
            }
        }
        std::sort(dirs.begin(), dirs.end());
        return dirs;
    }
}  // namespace xconv_test

#endif
