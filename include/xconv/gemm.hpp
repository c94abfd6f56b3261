// xconv: the matrix product every convolution pass runs.
//
// Contract (the same for every kernel in this header):
//   C = A * B            when accumulate == false (C is overwritten, never read)
//   C = C + A * B        when accumulate == true
// with A of M x K, B of K x N and C of M x N, each given as a strided view: element (i, j) of a
// view lives at data[i * row_stride + j * col_stride]. A row-major matrix has (ld, 1), its
// transpose (1, ld), so one routine serves the plain, the transposed-A and the transposed-B
// products the convolution passes need. C must not overlap A or B.
//
// Reproducibility: the built-in kernel reduces each element of C in one accumulator chain,
// acc = acc + A(i, k) * B(k, j) for k = 0, 1, ..., K - 1 in increasing order, started from C(i, j)
// (accumulate) or zero, fused multiply-adds where the instruction set has them. K is never split
// between threads, so the result depends neither on the thread count nor on the block sizes.
//
// Pieces (BLIS structure): detail/gemm_traits.hpp (instruction set, block sizes),
// detail/gemm_kernel.hpp (micro-kernel), detail/gemm_pack.hpp (packed layouts, packers),
// detail/gemm_driver.hpp (loop nest, scratch buffers, epilogues), detail/gemm_blas.hpp (optional
// CBLAS dispatch when XCONV_USE_BLAS is defined).
#ifndef XCONV_GEMM_HPP
#define XCONV_GEMM_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "config.hpp"
#include "detail/gemm_blas.hpp"
#include "detail/gemm_driver.hpp"
#include "detail/gemm_pack.hpp"
#include "detail/gemm_traits.hpp"
#include "detail/gemm_view.hpp"

namespace xconv
{
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

        /// The transpose of a view (no data moves).
        template <class T>
        matrix_view<T> gemm_transpose_view(matrix_view<T> v) noexcept
        {
            return {v.data, v.cs, v.rs};
        }

        /// Whether computing C^T = B^T * A^T is cheaper than C = A * B for the built-in kernel.
        /// The micro-kernel vectorises along the columns of C, so a column count that is small or
        /// far from a multiple of the vector width wastes lanes; the transposed product writes C
        /// through the slower strided-tile path, so it is taken only when it saves clearly.
        template <class T, class Arch = gemm_arch>
        bool gemm_prefer_transposed(std::size_t M, std::size_t N, matrix_view<T> C) noexcept
        {
            constexpr std::size_t L = gemm_traits<T, Arch>::lanes;
            const auto padded = [](std::size_t n) { return (n + L - 1) / L * L; };
            const double plain = static_cast<double>(M) * static_cast<double>(padded(N)) * (C.cs == 1 ? 1.0 : 1.15);
            const double swapped = static_cast<double>(N) * static_cast<double>(padded(M)) * (C.rs == 1 ? 1.0 : 1.15);
            return swapped < plain * 0.9;
        }

        /// The built-in blocked kernel on strided views (what gemm runs without XCONV_USE_BLAS).
        template <class T, class Arch = gemm_arch>
        void gemm_strided(std::size_t M,
                          std::size_t N,
                          std::size_t K,
                          matrix_view<const T> A,
                          matrix_view<const T> B,
                          matrix_view<T> C,
                          bool accumulate)
        {
            if (gemm_prefer_transposed<T, Arch>(M, N, C))
            {
                // C^T (N x M) = B^T (N x K) * A^T (K x M): the same chains, bit for bit.
                gemm_driver<T, Arch>(N,
                                     M,
                                     K,
                                     strided_a_packer<T, Arch>{gemm_transpose_view(B)},
                                     strided_b_packer<T, Arch>{gemm_transpose_view(A)},
                                     gemm_transpose_view(C),
                                     accumulate);
            }
            else
            {
                gemm_driver<T, Arch>(M, N, K, strided_a_packer<T, Arch>{A}, strided_b_packer<T, Arch>{B}, C, accumulate);
            }
        }
    }  // namespace detail

    /// C (M x N) = [C +] A (M x K) * B (K x N). See the contract at the top of this header.
    /// With XCONV_USE_BLAS defined, views BLAS can take (unit stride in one dimension) go to
    /// cblas_sgemm / cblas_dgemm; everything else runs the built-in kernel.
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
#if defined(XCONV_USE_BLAS)
        if (detail::gemm_blas<T>(M, N, K, A, B, C, accumulate))
        {
            return;
        }
#endif
        detail::gemm_strided<T>(M, N, K, A, B, C, accumulate);
    }
}  // namespace xconv

#endif
