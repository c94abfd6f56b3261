// xconv: the strided matrix view the GEMM works on (exposed as xconv::matrix_view by gemm.hpp).
#ifndef XCONV_DETAIL_GEMM_VIEW_HPP
#define XCONV_DETAIL_GEMM_VIEW_HPP

#include <cstddef>

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
}  // namespace xconv

#endif
