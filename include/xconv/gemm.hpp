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
// detail/gemm_driver.hpp (loop nest, scratch buffers, epilogues), detail/gemm_strided.hpp (the
// driver on strided views: orientation choice, strided C), detail/gemm_blas.hpp (optional CBLAS
// dispatch when XCONV_USE_BLAS is defined).
#ifndef XCONV_GEMM_HPP
#define XCONV_GEMM_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "config.hpp"
#include "detail/gemm_blas.hpp"
#include "detail/gemm_driver.hpp"
#include "detail/gemm_pack.hpp"
#include "detail/gemm_strided.hpp"
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
        const detail::scratch_call call;  // its packed blocks are this call's until it returns
        detail::gemm_strided<T>(M, N, K, A, B, C, accumulate);
    }
}  // namespace xconv

#endif
