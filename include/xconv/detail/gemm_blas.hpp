// xconv: optional dispatch of gemm to a CBLAS library (OpenBLAS's <cblas.h>), compiled only when
// XCONV_USE_BLAS is defined; the program must then link the library (e.g. -lopenblas).
//
// A strided view maps onto BLAS arguments when it has a unit stride in one dimension and a
// leading dimension that BLAS accepts; otherwise gemm_blas declines and the built-in kernel runs.
// BLAS gives no determinism guarantee across thread counts: with XCONV_USE_BLAS the results of
// xconv are as reproducible as the library's (OpenBLAS: fix OPENBLAS_NUM_THREADS).
#ifndef XCONV_DETAIL_GEMM_BLAS_HPP
#define XCONV_DETAIL_GEMM_BLAS_HPP

#if defined(XCONV_USE_BLAS)

#include <algorithm>
#include <climits>
#include <cstddef>
#include <initializer_list>
#include <type_traits>

#include <cblas.h>

#include "gemm_view.hpp"

namespace xconv
{
    namespace detail
    {
        /// How a rows x cols view is described to BLAS in a given storage order.
        struct gemm_blas_operand
        {
            bool ok = false;
            CBLAS_TRANSPOSE trans = CblasNoTrans;
            int ld = 1;
        };

        inline bool gemm_blas_fits(std::ptrdiff_t v) noexcept
        {
            return v >= 0 && v <= static_cast<std::ptrdiff_t>(INT_MAX);
        }

        /// Describes a rows x cols view for row-major (row_order) or column-major BLAS.
        template <class T>
        gemm_blas_operand gemm_blas_describe(matrix_view<const T> v, std::size_t rows, std::size_t cols, bool row_order) noexcept
        {
            // In row order, "no transpose" needs unit column stride and ld = rs >= cols;
            // "transpose" needs unit row stride and ld = cs >= rows. Column order swaps the roles.
            const std::ptrdiff_t unit_plain = row_order ? v.cs : v.rs;
            const std::ptrdiff_t ld_plain = row_order ? v.rs : v.cs;
            const std::ptrdiff_t unit_trans = row_order ? v.rs : v.cs;
            const std::ptrdiff_t ld_trans = row_order ? v.cs : v.rs;
            const std::ptrdiff_t extent_plain = static_cast<std::ptrdiff_t>(std::max<std::size_t>(1, row_order ? cols : rows));
            const std::ptrdiff_t extent_trans = static_cast<std::ptrdiff_t>(std::max<std::size_t>(1, row_order ? rows : cols));
            gemm_blas_operand out;
            if (unit_plain == 1 && ld_plain >= extent_plain && gemm_blas_fits(ld_plain))
            {
                out = {true, CblasNoTrans, static_cast<int>(ld_plain)};
            }
            else if (unit_trans == 1 && ld_trans >= extent_trans && gemm_blas_fits(ld_trans))
            {
                out = {true, CblasTrans, static_cast<int>(ld_trans)};
            }
            return out;
        }

        /// C = [C +] A * B through cblas_sgemm / cblas_dgemm. Returns false (and leaves C
        /// untouched) when the views or sizes cannot be passed to BLAS.
        template <class T>
        bool gemm_blas(std::size_t M,
                       std::size_t N,
                       std::size_t K,
                       matrix_view<const T> A,
                       matrix_view<const T> B,
                       matrix_view<T> C,
                       bool accumulate) noexcept
        {
            if (!std::is_same<T, float>::value && !std::is_same<T, double>::value)
            {
                return false;
            }
            if (M > INT_MAX || N > INT_MAX || K > INT_MAX)
            {
                return false;
            }
            const matrix_view<const T> c_const{C.data, C.rs, C.cs};
            for (const bool row_order : {true, false})
            {
                const gemm_blas_operand c = gemm_blas_describe(c_const, M, N, row_order);
                if (!c.ok || c.trans != CblasNoTrans)
                {
                    continue;
                }
                const gemm_blas_operand a = gemm_blas_describe(A, M, K, row_order);
                const gemm_blas_operand b = gemm_blas_describe(B, K, N, row_order);
                if (!a.ok || !b.ok)
                {
                    return false;
                }
                const CBLAS_ORDER order = row_order ? CblasRowMajor : CblasColMajor;
                const T beta = accumulate ? T(1) : T(0);
                if constexpr (std::is_same<T, float>::value)
                {
                    cblas_sgemm(order, a.trans, b.trans, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K),
                                1.0f, A.data, a.ld, B.data, b.ld, beta, C.data, c.ld);
                }
                else if constexpr (std::is_same<T, double>::value)
                {
                    cblas_dgemm(order, a.trans, b.trans, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K),
                                1.0, A.data, a.ld, B.data, b.ld, beta, C.data, c.ld);
                }
                return true;
            }
            return false;
        }
    }  // namespace detail
}  // namespace xconv

#endif

#endif
