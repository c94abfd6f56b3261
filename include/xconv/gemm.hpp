// xconv: the matrix product every convolution pass runs.
//
// Contract (the same for every kernel in this header):
//   C = A * B            when accumulate == false (C is overwritten, never read)
//   C = C + A * B        when accumulate == true
// with A of M x K, B of K x N and C of M x N, each given as a strided view: element (i, j) of a
// view lives at data[i * row_stride + j * col_stride]. A row-major matrix has (ld, 1), its
// transpose (1, ld), so one routine serves the plain, the transposed-A and the transposed-B
// products the convolution passes need. Each element of C is reduced over k in increasing order
// in one accumulator chain per k-block, independent of any threading, so results are reproducible.
#ifndef XCONV_GEMM_HPP
#define XCONV_GEMM_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "config.hpp"

namespace xconv
{
    /// A strided, non-owning view of a matrix: element (i, j) is data[i * rs + j * cs].
    template <class T>
    struct matrix_view
    {
        T* data = nullptr;
        std::ptrdiff_t rs = 0;  // row stride
        std::ptrdiff_t cs = 1;  // column stride

        T& operator()(std::ptrdiff_t i, std::ptrdiff_t j) const noexcept { return data[i * rs + j * cs]; }
    };

    /// A row-major matrix with leading dimension ld.
    template <class T>
    matrix_view<T> row_major(T* data, std::ptrdiff_t ld) noexcept
    {
        return {data, ld, 1};
    }

    /// The transpose of a row-major matrix with leading dimension ld.
    template <class T>
    matrix_view<T> transposed(T* data, std::ptrdiff_t ld) noexcept
    {
        return {data, 1, ld};
    }

    namespace detail
    {
        /// Reference kernel: plain loops, the oracle the fast kernel is tested against.
        template <class T>
        void gemm_reference(std::size_t M,
                            std::size_t N,
                            std::size_t K,
                            matrix_view<const T> A,
                            matrix_view<const T> B,
                            matrix_view<T> C,
                            bool accumulate)
        {
            for (std::size_t i = 0; i < M; ++i)
            {
                for (std::size_t j = 0; j < N; ++j)
                {
                    T acc = accumulate ? C(i, j) : T(0);
                    for (std::size_t k = 0; k < K; ++k)
                    {
                        acc += A(i, k) * B(k, j);
                    }
                    C(i, j) = acc;
                }
            }
        }
    }  // namespace detail

    /// C (M x N) = [C +] A (M x K) * B (K x N). See the contract at the top of this header.
    template <class T>
    void gemm(std::size_t M,
              std::size_t N,
              std::size_t K,
              matrix_view<const T> A,
              matrix_view<const T> B,
              matrix_view<T> C,
              bool accumulate)
    {
        if (M == 0 || N == 0)
        {
            return;
        }
        // Cache-blocked i-k-j loop: for a row-major C and B the inner loop is contiguous.
        constexpr std::size_t MB = 64, KB = 256, NB = 512;
        if (!accumulate)
        {
            for (std::size_t i = 0; i < M; ++i)
            {
                for (std::size_t j = 0; j < N; ++j)
                {
                    C(i, j) = T(0);
                }
            }
        }
        for (std::size_t j0 = 0; j0 < N; j0 += NB)
        {
            const std::size_t j1 = std::min(N, j0 + NB);
            for (std::size_t k0 = 0; k0 < K; k0 += KB)
            {
                const std::size_t k1 = std::min(K, k0 + KB);
                for (std::size_t i0 = 0; i0 < M; i0 += MB)
                {
                    const std::size_t i1 = std::min(M, i0 + MB);
                    for (std::size_t i = i0; i < i1; ++i)
                    {
                        T* c = &C(i, j0);
                        for (std::size_t k = k0; k < k1; ++k)
                        {
                            const T a = A(i, k);
                            const T* b = &B(k, j0);
                            if (C.cs == 1 && B.cs == 1)
                            {
                                for (std::size_t j = 0; j < j1 - j0; ++j)
                                {
                                    c[j] += a * b[j];
                                }
                            }
                            else
                            {
                                for (std::size_t j = 0; j < j1 - j0; ++j)
                                {
                                    c[j * C.cs] += a * b[j * B.cs];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}  // namespace xconv

#endif
