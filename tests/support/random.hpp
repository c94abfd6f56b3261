// Reproducible random test data: fixed-seed engines and uniform tensors.
#ifndef XCONV_TESTS_SUPPORT_RANDOM_HPP
#define XCONV_TESTS_SUPPORT_RANDOM_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <random>

#include <xtensor/xtensor.hpp>

namespace xconv_test
{
    using engine = std::mt19937_64;

    /// A tensor of the given shape filled with independent U(lo, hi) values drawn from `gen`.
    template <class T, std::size_t N>
    xt::xtensor<T, N> random_tensor(const std::array<std::size_t, N>& shape, engine& gen, double lo = -1.0,
                                    double hi = 1.0)
    {
        xt::xtensor<T, N> t(shape);
        std::uniform_real_distribution<double> dist(lo, hi);
        for (auto& v : t)
        {
            v = static_cast<T>(dist(gen));
        }
        return t;
    }

    /// A uniformly drawn integer in [lo, hi].
    inline std::int64_t random_int(engine& gen, std::int64_t lo, std::int64_t hi)
    {
        return std::uniform_int_distribution<std::int64_t>(lo, hi)(gen);
    }

    /// True with probability p.
    inline bool random_bool(engine& gen, double p = 0.5)
    {
        return std::uniform_real_distribution<double>(0.0, 1.0)(gen) < p;
    }
}  // namespace xconv_test

#endif
