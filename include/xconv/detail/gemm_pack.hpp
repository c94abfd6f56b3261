// xconv: packing of the GEMM operands into the panel layouts the micro-kernel reads.
//
// Packed A block, the rows i0 .. i0+mc-1 and the columns k0 .. k0+kc-1 of A:
//   ceil(mc / mr) panels of mr rows, panel p starting at dst + p * mr * kc;
//   inside a panel, element (r, k) is at [k * mr + r] and holds A(i0 + p * mr + r, k0 + k);
//   the rows of the last panel past mc are zero.
//
// Packed B block, the rows k0 .. k0+kc-1 and the columns j0 .. j0+nc-1 of B:
//   ceil(nc / nr) panels of nr columns, panel q starting at dst + q * kc * nr;
//   inside a panel, element (k, j) is at [k * nr + j] and holds B(k0 + k, j0 + q * nr + j);
//   the columns of the last panel past nc are zero.
//   dst is aligned to 64 bytes by the driver; nr is a multiple of the vector width, so every row
//   of every panel starts on a vector boundary.
//   Packing the columns [j0, j0 + nc) with j0 a multiple of nr writes exactly the panels that
//   packing a wider block starting at 0 would write there, so disjoint groups of panels can be
//   packed independently (by different threads).
//
// mr and nr are gemm_traits<T, Arch>::mr and ::nr.
//
// A packer is any callable
//   pack_a(std::size_t i0, std::size_t mc, std::size_t k0, std::size_t kc, T* dst)
//   pack_b(std::size_t k0, std::size_t kc, std::size_t j0, std::size_t nc, T* dst)
// that writes the layout above. gemm packs strided matrix views (strided_a_packer,
// strided_b_packer); a convolution can pack B straight from its input image instead of
// materialising the im2col matrix, e.g. through row_segment_b_packer.
#ifndef XCONV_DETAIL_GEMM_PACK_HPP
#define XCONV_DETAIL_GEMM_PACK_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "gemm_view.hpp"
#include "gemm_traits.hpp"
#include "gemm_transpose.hpp"
#include "simd512.hpp"

namespace xconv
{
    namespace detail
    {
        /// d[n .. P) = 0: the padding at the end of one row of a panel.
        template <class T, std::size_t P>
        inline void gemm_pack_zero_tail(T* d, std::size_t n) noexcept
        {
#if defined(XCONV_HAS_SIMD512)
            using simd = simd512<T>;
            if constexpr (P % simd::lanes == 0)
            {
                for (std::size_t v = n / simd::lanes * simd::lanes; v < P; v += simd::lanes)
                {
                    const auto keep = simd::mask(static_cast<std::int64_t>(n) - static_cast<std::int64_t>(v));
                    simd::store(d + v, static_cast<typename simd::M>(~keep), simd::zero());
                }
                return;
            }
#endif
            static_assert(std::is_floating_point<T>::value, "a zero of T is all bits zero");
            std::memset(d + n, 0, (P - n) * sizeof(T));
        }

        /// d[0 .. n) = s[0 .. n) and d[n .. P) = 0 (n <= P): one row of a panel whose last
        /// columns are padding, written front to back, whole vectors where the panel is made of
        /// them. Not left to the compiler as two loops: GCC 12 at -O3 split the padding's zeros
        /// into a loop nest of their own and turned it inside out, one store per row and padding
        /// column at the stride of a row (resnet_conv1's weight gradient, 147 columns in panels of
        /// 64: those zeros took 12 % of its forward+backward time at 1 thread, 22 % at 2).
        template <class T, std::size_t P>
        inline void gemm_pack_row_tail(const T* s, std::size_t n, T* d) noexcept
        {
#if defined(XCONV_HAS_SIMD512)
            using simd = simd512<T>;
            if constexpr (P % simd::lanes == 0)
            {
                for (std::size_t v = 0; v < P; v += simd::lanes)
                {
                    const auto m = simd::mask(static_cast<std::int64_t>(n) - static_cast<std::int64_t>(v));
                    simd::storeu(d + v, simd::load(m, s + v));  // reads nothing past n
                }
                return;
            }
#endif
            std::memcpy(d, s, n * sizeof(T));
            gemm_pack_zero_tail<T, P>(d, n);
        }

        /// Packs one panel of width P: dst[k * P + r] = src[k * sk + r * sr] for r < rows, and 0
        /// for rows <= r < P, k < kc.
        template <class T, std::size_t P>
        inline void gemm_pack_panel(const T* src,
                                    std::ptrdiff_t sk,
                                    std::ptrdiff_t sr,
                                    std::size_t rows,
                                    std::size_t kc,
                                    T* dst) noexcept
        {
            if (sr == 1)
            {
                // Contiguous along the panel: one row copy per k.
                if (rows == P)
                {
                    for (std::size_t k = 0; k < kc; ++k)
                    {
                        const T* s = src + static_cast<std::ptrdiff_t>(k) * sk;
                        T* d = dst + k * P;
                        for (std::size_t r = 0; r < P; ++r)
                        {
                            d[r] = s[r];
                        }
                    }
                }
                else
                {
                    for (std::size_t k = 0; k < kc; ++k)
                    {
                        gemm_pack_row_tail<T, P>(src + static_cast<std::ptrdiff_t>(k) * sk, rows, dst + k * P);
                    }
                }
            }
            else if (sk == 1)
            {
                // Contiguous along k: a transpose. Square register tiles where the instruction
                // set has them, then a blocked scalar transpose, one cache line of k at a time
                // so the written block of the panel stays in L1, for what is left.
                std::size_t k_done = 0;
                constexpr std::size_t TL = gemm_transpose_tile<T>::size;
                if constexpr (TL > 0 && P % TL == 0)
                {
                    // Whole groups of TL rows first, each read front to back along k (TL
                    // streams at a time), then the leftover rows of the last group.
                    const std::size_t full_rows = rows / TL * TL;
                    const std::size_t full_k = kc / TL * TL;
                    for (std::size_t r = 0; r < full_rows; r += TL)
                    {
                        for (std::size_t k = 0; k < full_k; k += TL)
                        {
                            gemm_transpose_tile<T>::run(src + static_cast<std::ptrdiff_t>(r) * sr + k, sr, dst + k * P + r,
                                                        static_cast<std::ptrdiff_t>(P));
                        }
                    }
                    for (std::size_t r = full_rows; r < rows; ++r)
                    {
                        T* d = dst + r;
                        const T* s = src + static_cast<std::ptrdiff_t>(r) * sr;
                        for (std::size_t k = 0; k < full_k; ++k)
                        {
                            d[k * P] = s[k];
                        }
                    }
                    if (rows < P)
                    {
                        // The padding rows: a contiguous run at the end of each packed row.
                        for (std::size_t k = 0; k < full_k; ++k)
                        {
                            gemm_pack_zero_tail<T, P>(dst + k * P, rows);
                        }
                    }
                    k_done = full_k;
                }
                constexpr std::size_t KB = 64 / sizeof(T);
                for (std::size_t k0 = k_done; k0 < kc; k0 += KB)
                {
                    const std::size_t kb = std::min(KB, kc - k0);
                    for (std::size_t r = 0; r < rows; ++r)
                    {
                        const T* s = src + static_cast<std::ptrdiff_t>(r) * sr + k0;
                        T* d = dst + k0 * P + r;
                        for (std::size_t k = 0; k < kb; ++k)
                        {
                            d[k * P] = s[k];
                        }
                    }
                    if (rows < P)
                    {
                        for (std::size_t k = 0; k < kb; ++k)
                        {
                            gemm_pack_zero_tail<T, P>(dst + (k0 + k) * P, rows);
                        }
                    }
                }
            }
            else
            {
                for (std::size_t k = 0; k < kc; ++k)
                {
                    const T* s = src + static_cast<std::ptrdiff_t>(k) * sk;
                    T* d = dst + k * P;
                    for (std::size_t r = 0; r < rows; ++r)
                    {
                        d[r] = s[static_cast<std::ptrdiff_t>(r) * sr];
                    }
                    gemm_pack_zero_tail<T, P>(d, rows);
                }
            }
        }

        /// Packs blocks of a strided A (M x K) into mr-row panels.
        template <class T, class Arch = gemm_arch>
        struct strided_a_packer
        {
            matrix_view<const T> a;

            void operator()(std::size_t i0, std::size_t mc, std::size_t k0, std::size_t kc, T* dst) const noexcept
            {
                constexpr std::size_t MR = gemm_traits<T, Arch>::mr;
                for (std::size_t i = 0; i < mc; i += MR)
                {
                    const T* src = &a(static_cast<std::ptrdiff_t>(i0 + i), static_cast<std::ptrdiff_t>(k0));
                    gemm_pack_panel<T, MR>(src, a.cs, a.rs, std::min(MR, mc - i), kc, dst);
                    dst += MR * kc;
                }
            }
        };

        /// Packs blocks of a strided B (K x N) into nr-column panels.
        template <class T, class Arch = gemm_arch>
        struct strided_b_packer
        {
            matrix_view<const T> b;

            /// Element (k0, j0) of B when B's columns are contiguous (element (k, j) then at
            /// [(j - j0) * ld + (k - k0)]), else null.
            const T* k_contiguous(std::size_t k0, std::size_t j0, std::ptrdiff_t& ld) const noexcept
            {
                if (b.rs != 1)
                {
                    return nullptr;
                }
                ld = b.cs;
                return &b(static_cast<std::ptrdiff_t>(k0), static_cast<std::ptrdiff_t>(j0));
            }

            void operator()(std::size_t k0, std::size_t kc, std::size_t j0, std::size_t nc, T* dst) const noexcept
            {
                constexpr std::size_t NR = gemm_traits<T, Arch>::nr;
                if (b.cs == 1)
                {
                    // Row-major B: read each row of the block once, front to back (a stream the
                    // hardware prefetcher follows), scattering it over the panels.
                    const std::size_t full = nc / NR;
                    const std::size_t tail = nc - full * NR;
                    for (std::size_t k = 0; k < kc; ++k)
                    {
                        const T* src = &b(static_cast<std::ptrdiff_t>(k0 + k), static_cast<std::ptrdiff_t>(j0));
                        T* d = dst + k * NR;
                        for (std::size_t q = 0; q < full; ++q)
                        {
                            const T* s = src + q * NR;
                            T* dq = d + q * kc * NR;
                            for (std::size_t j = 0; j < NR; ++j)
                            {
                                dq[j] = s[j];
                            }
                        }
                        if (tail > 0)
                        {
                            gemm_pack_row_tail<T, NR>(src + full * NR, tail, d + full * kc * NR);
                        }
                    }
                    return;
                }
                for (std::size_t j = 0; j < nc; j += NR)
                {
                    const T* src = &b(static_cast<std::ptrdiff_t>(k0), static_cast<std::ptrdiff_t>(j0 + j));
                    gemm_pack_panel<T, NR>(src, b.rs, b.cs, std::min(NR, nc - j), kc, dst);
                    dst += kc * NR;
                }
            }
        };

        /// A B packer built from a function that produces row segments of B:
        ///   row(std::size_t k, std::size_t j, std::size_t n, T* out)
        /// must write B(k, j), B(k, j + 1), ..., B(k, j + n - 1) to out[0], ..., out[n - 1], with
        /// n <= nr. It is called once per packed row of each panel, writing straight into the
        /// panel, so no intermediate matrix exists. For a convolution, row k = (channel, ky, kx)
        /// of the im2col matrix and columns j = output pixels: a segment is a strided run of one
        /// input row (zeros where it reaches into the padding).
        template <class T, class RowFn, class Arch = gemm_arch>
        struct row_segment_b_packer
        {
            RowFn row;

            void operator()(std::size_t k0, std::size_t kc, std::size_t j0, std::size_t nc, T* dst) const
            {
                constexpr std::size_t NR = gemm_traits<T, Arch>::nr;
                for (std::size_t j = 0; j < nc; j += NR)
                {
                    const std::size_t n = std::min(NR, nc - j);
                    for (std::size_t k = 0; k < kc; ++k)
                    {
                        T* d = dst + k * NR;
                        row(k0 + k, j0 + j, n, d);
                        gemm_pack_zero_tail<T, NR>(d, n);
                    }
                    dst += kc * NR;
                }
            }
        };

        template <class T, class Arch = gemm_arch, class RowFn>
        row_segment_b_packer<T, RowFn, Arch> make_row_segment_b_packer(RowFn row)
        {
            return {std::move(row)};
        }

        // ------------------------------------------------------------------ operands packed once
        //
        // An operand that several GEMMs share (a convolution's weight, used for every sample and
        // every tile of positions) can be packed once for all of them. The whole of A (M x K) or
        // B (K x N) is then stored as the driver would pack it, block after block:
        //   A: for each depth block pc (steps of kc from 0), ceil(M / mr) panels of mr rows;
        //      block (i0, pc) starts at pc * round_up(M, mr) + i0 * kc.
        //   B: for each depth block pc, ceil(N / nr) panels of nr columns;
        //      block (pc, j0) starts at pc * round_up(N, nr) + j0 * kc.
        // The driver reads such an operand in place (no copy) when its packer is prepacked_a or
        // prepacked_b. A GEMM may use a sub-range of the rows of a packed A (or of the columns of
        // a packed B) that starts on a panel boundary: rows past the sub-range in its last panel
        // are then not zero, but the driver computes only the rows (columns) of its C.

        /// Elements of A (M x K) packed whole.
        template <class T, class Arch = gemm_arch>
        constexpr std::size_t prepacked_a_size(std::size_t M, std::size_t K) noexcept
        {
            constexpr std::size_t MR = gemm_traits<T, Arch>::mr;
            return (M + MR - 1) / MR * MR * K;
        }

        /// Elements of B (K x N) packed whole.
        template <class T, class Arch = gemm_arch>
        constexpr std::size_t prepacked_b_size(std::size_t K, std::size_t N) noexcept
        {
            constexpr std::size_t NR = gemm_traits<T, Arch>::nr;
            return (N + NR - 1) / NR * NR * K;
        }

        /// The first of `count` elements (a multiple of `step` and `step` apart) that part `part`
        /// of `parts` takes: whole panels, as even a share as they allow.
        inline std::size_t panel_share(std::size_t count, std::size_t step, std::size_t part, std::size_t parts) noexcept
        {
            const std::size_t panels = (count + step - 1) / step;
            return std::min(count, panels * part / parts * step);
        }

        /// Packs all of A (M x K) with `pack` into dst (prepacked_a_size elements); or, given
        /// part < parts, only the part-th of `parts` shares of its mr-row panels (the shares are
        /// disjoint and together make the whole).
        template <class T, class Arch = gemm_arch, class PackA>
        void prepack_a(const PackA& pack, std::size_t M, std::size_t K, T* dst, std::size_t part = 0, std::size_t parts = 1)
        {
            using traits = gemm_traits<T, Arch>;
            const std::size_t Mpad = (M + traits::mr - 1) / traits::mr * traits::mr;
            const std::size_t i_begin = panel_share(M, traits::mr, part, parts), i_end = panel_share(M, traits::mr, part + 1, parts);
            for (std::size_t pc = 0; pc < K; pc += traits::kc)
            {
                const std::size_t kc = std::min(traits::kc, K - pc);
                for (std::size_t ic = i_begin; ic < i_end; ic += traits::mc)
                {
                    pack(ic, std::min(traits::mc, i_end - ic), pc, kc, dst + pc * Mpad + ic * kc);
                }
            }
        }

        /// Packs all of B (K x N) with `pack` into dst (prepacked_b_size elements); or, given
        /// part < parts, only the part-th of `parts` shares of its nr-column panels.
        template <class T, class Arch = gemm_arch, class PackB>
        void prepack_b(const PackB& pack, std::size_t K, std::size_t N, T* dst, std::size_t part = 0, std::size_t parts = 1)
        {
            using traits = gemm_traits<T, Arch>;
            const std::size_t Npad = (N + traits::nr - 1) / traits::nr * traits::nr;
            const std::size_t j_begin = panel_share(N, traits::nr, part, parts), j_end = panel_share(N, traits::nr, part + 1, parts);
            for (std::size_t pc = 0; pc < K; pc += traits::kc)
            {
                const std::size_t kc = std::min(traits::kc, K - pc);
                for (std::size_t jc = j_begin; jc < j_end; jc += traits::nc)
                {
                    pack(pc, kc, jc, std::min(traits::nc, j_end - jc), dst + pc * Npad + jc * kc);
                }
            }
        }

        /// The rows [row0, row0 + M) of an A of `rows` rows packed whole by prepack_a (row0 a
        /// multiple of mr), as the A operand of a GEMM. The driver reads the blocks in place.
        template <class T, class Arch = gemm_arch>
        struct prepacked_a
        {
            const T* data;
            std::size_t rows;
            std::size_t row0 = 0;

            const T* block(std::size_t i0, std::size_t k0, std::size_t kc) const noexcept
            {
                constexpr std::size_t MR = gemm_traits<T, Arch>::mr;
                return data + k0 * ((rows + MR - 1) / MR * MR) + (row0 + i0) * kc;
            }
        };

        /// The columns [col0, col0 + N) of a B of `cols` columns packed whole by prepack_b (col0 a
        /// multiple of nr), as the B operand of a GEMM.
        template <class T, class Arch = gemm_arch>
        struct prepacked_b
        {
            const T* data;
            std::size_t cols;
            std::size_t col0 = 0;

            const T* block(std::size_t k0, std::size_t kc, std::size_t j0) const noexcept
            {
                constexpr std::size_t NR = gemm_traits<T, Arch>::nr;
                return data + k0 * ((cols + NR - 1) / NR * NR) + (col0 + j0) * kc;
            }
        };

        template <class P>
        struct is_prepacked : std::false_type
        {
        };
        template <class T, class Arch>
        struct is_prepacked<prepacked_a<T, Arch>> : std::true_type
        {
        };
        template <class T, class Arch>
        struct is_prepacked<prepacked_b<T, Arch>> : std::true_type
        {
        };
    }  // namespace detail
}  // namespace xconv

#endif
