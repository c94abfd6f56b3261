// xconv: the blocked GEMM on strided views, as xconv::gemm runs it without BLAS.
//
// Two choices are made here, neither of which changes a single bit of the result (each element of
// C stays one accumulator chain over k in increasing order):
//   orientation  C = A B, or C^T = B^T A^T with the roles of A and B swapped. The micro-kernel
//                vectorises along the columns of its C, so a narrow C (a 7 x 7 or 14 x 14 output
//                image) is better computed transposed; gemm_orientation_cost compares the two.
//   strided C    the micro-kernel stores rows of its C with unit stride. A C without unit column
//                stride (after the orientation choice) is computed into a row-major scratch block,
//                which is copied to C at the end (and from C first when accumulating), instead of
//                going through a tile buffer at every k-block.
#ifndef XCONV_DETAIL_GEMM_STRIDED_HPP
#define XCONV_DETAIL_GEMM_STRIDED_HPP

#include <algorithm>
#include <cstddef>
#include <utility>

#include "gemm_driver.hpp"
#include "gemm_pack.hpp"
#include "gemm_traits.hpp"
#include "gemm_transpose.hpp"
#include "gemm_view.hpp"

namespace xconv
{
    namespace detail
    {
        /// The transpose of a view (no data moves).
        template <class T>
        matrix_view<T> gemm_transpose_view(matrix_view<T> v) noexcept
        {
            return {v.data, v.cs, v.rs};
        }

        /// Elements of the row-major scratch block used for a C without unit column stride.
        constexpr std::size_t gemm_c_scratch_elements = std::size_t(1) << 17;

        /// Rows and columns of the blocks of C that go through the scratch when C has no unit
        /// column stride: bands of rows (B is packed again for each band) and, for a very wide C,
        /// of columns (A is packed again for each).
        template <class T, class Arch = gemm_arch>
        std::pair<std::size_t, std::size_t> gemm_scratch_blocks(std::size_t M, std::size_t N) noexcept
        {
            using traits = gemm_traits<T, Arch>;
            const std::size_t width =
                std::min(N, std::max(traits::nr, gemm_c_scratch_elements / traits::mc / traits::nr * traits::nr));
            const std::size_t band =
                std::min(M, std::max(traits::mc, gemm_c_scratch_elements / std::max<std::size_t>(width, 1) / traits::mc * traits::mc));
            return {band, width};
        }

        /// Rough cost, in cycles of one vector FMA, of the product C (M x N) = A (M x K) B (K x N)
        /// as the driver would run it: the micro-kernel's work, with the columns of C padded to the
        /// vector width; packing, by how the operand is laid out (a copy along the panel, a
        /// transpose in register tiles, or element by element); the scratch round trip of C.
        template <class T, class Arch = gemm_arch>
        double gemm_orientation_cost(std::size_t M,
                                     std::size_t N,
                                     std::size_t K,
                                     matrix_view<const T> A,
                                     matrix_view<const T> B,
                                     matrix_view<const T> C,
                                     bool accumulate) noexcept
        {
            using traits = gemm_traits<T, Arch>;
            constexpr std::size_t L = traits::lanes;
            constexpr std::size_t TL = gemm_transpose_tile<T>::size;
            const double m = static_cast<double>(M), n = static_cast<double>(N), k = static_cast<double>(K);
            const double padded_n = static_cast<double>((N + L - 1) / L * L);
            // Per element packed: panel contiguous in memory; contiguous along k and a panel width
            // the register transpose covers; anything else.
            const auto pack = [](std::ptrdiff_t along_panel, std::ptrdiff_t along_k, std::size_t width) {
                if (along_panel == 1)
                {
                    return 0.2;
                }
                return along_k == 1 && TL > 0 && width % (TL > 0 ? TL : 1) == 0 ? 0.3 : 0.8;
            };
            // A is packed once per column block of nc, B once per band of the C scratch.
            double a_repacks = static_cast<double>((N + traits::nc - 1) / traits::nc);
            double b_repacks = 1.0;
            double copy = 0.0;
            if (C.cs != 1)
            {
                const auto blocks = gemm_scratch_blocks<T, Arch>(M, N);
                const std::size_t width = blocks.second;
                a_repacks = static_cast<double>((N + width - 1) / width) * static_cast<double>((width + traits::nc - 1) / traits::nc);
                b_repacks = static_cast<double>((M + blocks.first - 1) / blocks.first);
                copy = (accumulate ? 2.0 : 1.0) * m * n;
            }
            return m * padded_n * k / static_cast<double>(L) + pack(A.rs, A.cs, traits::mr) * m * k * a_repacks
                   + pack(B.cs, B.rs, traits::nr) * k * n * b_repacks + copy;
        }

        /// gemm_driver on strided views, with C of any strides (see the top of this header).
        template <class T, class Arch = gemm_arch>
        void gemm_strided_oriented(std::size_t M,
                                   std::size_t N,
                                   std::size_t K,
                                   matrix_view<const T> A,
                                   matrix_view<const T> B,
                                   matrix_view<T> C,
                                   bool accumulate)
        {
            if (C.cs == 1)
            {
                gemm_driver<T, Arch>(M, N, K, strided_a_packer<T, Arch>{A}, strided_b_packer<T, Arch>{B}, C, accumulate);
                return;
            }
            const auto blocks = gemm_scratch_blocks<T, Arch>(M, N);
            const std::size_t band = blocks.first;
            const std::size_t width = blocks.second;
            T* const scratch = gemm_workspace<T>::local().c.get(band * width);
            for (std::size_t j0 = 0; j0 < N; j0 += width)
            {
                const std::size_t cols = std::min(width, N - j0);
                const auto j = static_cast<std::ptrdiff_t>(j0);
                const matrix_view<const T> b_block{&B(0, j), B.rs, B.cs};
                for (std::size_t i0 = 0; i0 < M; i0 += band)
                {
                    const std::size_t rows = std::min(band, M - i0);
                    const auto i = static_cast<std::ptrdiff_t>(i0);
                    const matrix_view<T> c_block{&C(i, j), C.rs, C.cs};
                    const matrix_view<T> s{scratch, static_cast<std::ptrdiff_t>(cols), 1};
                    if (accumulate)
                    {
                        gemm_copy_tile_in(c_block, rows, cols, scratch, cols);
                    }
                    const matrix_view<const T> a_block{&A(i, 0), A.rs, A.cs};
                    gemm_driver<T, Arch>(rows, cols, K, strided_a_packer<T, Arch>{a_block}, strided_b_packer<T, Arch>{b_block}, s,
                                         accumulate);
                    gemm_copy_tile_out(scratch, cols, rows, cols, c_block);
                }
            }
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
            if (M == 0 || N == 0)
            {
                return;
            }
            if (K == 0)
            {
                if (!accumulate)
                {
                    for (std::size_t i = 0; i < M; ++i)
                    {
                        for (std::size_t j = 0; j < N; ++j)
                        {
                            C(static_cast<std::ptrdiff_t>(i), static_cast<std::ptrdiff_t>(j)) = T(0);
                        }
                    }
                }
                return;
            }
            const matrix_view<const T> c{C.data, C.rs, C.cs};
            const auto At = gemm_transpose_view(A);
            const auto Bt = gemm_transpose_view(B);
            const double plain = gemm_orientation_cost<T, Arch>(M, N, K, A, B, c, accumulate);
            const double swapped = gemm_orientation_cost<T, Arch>(N, M, K, Bt, At, gemm_transpose_view(c), accumulate);
            if (swapped < plain)
            {
                // C^T (N x M) = B^T (N x K) * A^T (K x M).
                gemm_strided_oriented<T, Arch>(N, M, K, Bt, At, gemm_transpose_view(C), accumulate);
            }
            else
            {
                gemm_strided_oriented<T, Arch>(M, N, K, A, B, C, accumulate);
            }
        }
    }  // namespace detail
}  // namespace xconv

#endif
