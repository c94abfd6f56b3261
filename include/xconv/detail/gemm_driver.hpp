// xconv: the GEMM loop nest (GotoBLAS / BLIS structure) around packers and the micro-kernel.
//
//   for jc in [0, N) step nc                      columns of C and B
//     for pc in [0, K) step kc                    depth; never split across threads
//       pack A(0 : mc, pc : pc+kc)                first A block
//       for each group of fused_panels B micro-panels         } independent: an OpenMP loop
//         pack B(pc : pc+kc, group)               } the packing of B is fused with the first
//         macro-kernel(first A block, group)      } row block, as in GotoBLAS, so each group is
//                                                 } used while it is in cache
//       for ic in [mc, M) step mc                 } independent C blocks: an OpenMP loop
//         pack A(ic : ic+mc, pc : pc+kc)          } (over row blocks x groups of panels)
//         macro-kernel(A block, packed B block)   }
//
//   macro-kernel: for jr in steps of nr, for ir in steps of mr (or the other way round,
//   gemm_traits::a_panel_outer): micro-kernel on the C tile (ir, jr), after a prefetch of the
//   next tile of C.
//
// With a single row block (M <= mc), no packed group is needed after its first use, so each
// thread packs all its groups into the same place of the buffer.
//
// C is read only when accumulate is true or after the first k-block (the micro-kernel then
// continues each element's accumulator chain from the value stored after the previous block), so
// every element of C is one fma chain over k = 0 .. K-1 in increasing order: the result does not
// depend on the block sizes, on the number of threads, or on where the element sits in a tile.
//
// Scratch memory: each thread keeps one 64-byte aligned buffer per element type for the packed A
// block and one for the packed B block, grown to at most mc*kc and kc*nc elements and reused by
// every later call (no allocation in the steady state); gemm_strided adds one of at most
// gemm_c_scratch_elements for a C without unit column stride. The packers run inside the driver,
// so a packer must not itself call gemm on the same thread.
#ifndef XCONV_DETAIL_GEMM_DRIVER_HPP
#define XCONV_DETAIL_GEMM_DRIVER_HPP

#include <algorithm>
#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

#if defined(XCONV_USE_OPENMP)
#include <omp.h>
#endif

#include "aligned_buffer.hpp"
#include "gemm_kernel.hpp"
#include "gemm_pack.hpp"
#include "gemm_traits.hpp"
#include "gemm_view.hpp"

namespace xconv
{
    namespace detail
    {
        /// Epilogue that does nothing (the default).
        struct gemm_no_epilogue
        {
            template <class T>
            void operator()(std::size_t, std::size_t, std::size_t, std::size_t, matrix_view<T>) const noexcept
            {
            }
        };

        /// Epilogue adding bias[i] to every element of row i of C (a convolution's per-channel
        /// bias when C is [C_out, H_out * W_out]).
        template <class T>
        struct gemm_row_bias_epilogue
        {
            const T* bias;

            void operator()(std::size_t i0, std::size_t, std::size_t m, std::size_t n, matrix_view<T> c) const noexcept
            {
                for (std::size_t r = 0; r < m; ++r)
                {
                    const T b = bias[i0 + r];
                    for (std::size_t j = 0; j < n; ++j)
                    {
                        c(static_cast<std::ptrdiff_t>(r), static_cast<std::ptrdiff_t>(j)) += b;
                    }
                }
            }
        };

        /// Index of the calling thread in the current OpenMP team (0 without OpenMP).
        inline std::size_t gemm_thread_index() noexcept
        {
#if defined(XCONV_USE_OPENMP)
            return static_cast<std::size_t>(omp_get_thread_num());
#else
            return 0;
#endif
        }

        /// 64-byte aligned scratch buffer that only grows.
        template <class T>
        using gemm_buffer = aligned_buffer<T>;

        /// The calling thread's packing buffers for element type T.
        template <class T>
        struct gemm_workspace
        {
            gemm_buffer<T> a{scratch_kind::per_thread};
            gemm_buffer<T> b{scratch_kind::per_thread};
            gemm_buffer<T> c{scratch_kind::per_thread};  // row-major C for gemm_strided when C has no unit column stride

            static gemm_workspace& local()
            {
                thread_local gemm_workspace ws;
                return ws;
            }
        };

        /// Copies an m x n block between C (strided) and a row-major tile with leading dimension ld,
        /// walking C along its unit stride when it has one.
        template <class T>
        inline void gemm_copy_tile_in(matrix_view<T> c, std::size_t m, std::size_t n, T* tile, std::size_t ld) noexcept
        {
            if (c.rs == 1 && c.cs != 1)
            {
                for (std::size_t j = 0; j < n; ++j)
                {
                    const T* col = &c(0, static_cast<std::ptrdiff_t>(j));
                    for (std::size_t r = 0; r < m; ++r)
                    {
                        tile[r * ld + j] = col[r];
                    }
                }
                return;
            }
            for (std::size_t r = 0; r < m; ++r)
            {
                for (std::size_t j = 0; j < n; ++j)
                {
                    tile[r * ld + j] = c(static_cast<std::ptrdiff_t>(r), static_cast<std::ptrdiff_t>(j));
                }
            }
        }

        template <class T>
        inline void gemm_copy_tile_out(const T* tile, std::size_t ld, std::size_t m, std::size_t n, matrix_view<T> c) noexcept
        {
            if (c.rs == 1 && c.cs != 1)
            {
                for (std::size_t j = 0; j < n; ++j)
                {
                    T* col = &c(0, static_cast<std::ptrdiff_t>(j));
                    for (std::size_t r = 0; r < m; ++r)
                    {
                        col[r] = tile[r * ld + j];
                    }
                }
            }
            else
            {
                for (std::size_t r = 0; r < m; ++r)
                {
                    for (std::size_t j = 0; j < n; ++j)
                    {
                        c(static_cast<std::ptrdiff_t>(r), static_cast<std::ptrdiff_t>(j)) = tile[r * ld + j];
                    }
                }
            }
        }

        /// Runs the micro-kernel over an mc x nc block of C from a packed A block and a packed B
        /// block, on the columns [j_begin, j_end) of the block only (j_begin a multiple of nr;
        /// j_end a multiple of nr or the end of the block).
        /// c is the block's top-left corner; (i_off, j_off) its position in the whole C, for the
        /// epilogue, which runs on each tile after the last k-block when `last` is set.
        template <class T, class Arch, class Epilogue>
        void gemm_macrokernel(std::size_t mc,
                              std::size_t j_begin,
                              std::size_t j_end,
                              std::size_t kc,
                              const T* a_packed,
                              const T* b_packed,
                              matrix_view<T> c,
                              bool load_c,
                              bool last,
                              std::size_t i_off,
                              std::size_t j_off,
                              const Epilogue& epilogue)
        {
            using traits = gemm_traits<T, Arch>;
            constexpr std::size_t MR = traits::mr;
            constexpr std::size_t NR = traits::nr;
            constexpr std::size_t NV = traits::nv;
            constexpr std::size_t L = traits::lanes;
            constexpr bool has_epilogue = !std::is_same<Epilogue, gemm_no_epilogue>::value;

            const auto tile = [&](std::size_t ir, std::size_t jr) {
                const std::size_t m = std::min(MR, mc - ir);
                const std::size_t n = std::min(NR, j_end - jr);
                const std::size_t nv = (n + L - 1) / L;
                const T* a = a_packed + ir * kc;
                const T* b = b_packed + jr * kc;
                matrix_view<T> c_tile{&c(static_cast<std::ptrdiff_t>(ir), static_cast<std::ptrdiff_t>(jr)), c.rs, c.cs};
                if (c.cs == 1 && m == MR && n == NR)
                {
                    gemm_microkernel<T, Arch, MR, NV>(kc, a, b, c_tile.data, c.rs, load_c);
                }
                else if (c.cs == 1 && n == nv * L)
                {
                    gemm_microkernel_table<T, Arch>::get(m, nv)(kc, a, b, c_tile.data, c.rs, load_c);
                }
                else
                {
                    // Strided C or a partial vector: through an aligned buffer.
                    alignas(64) T buffer[MR * NR];
                    if (load_c)
                    {
                        gemm_copy_tile_in(c_tile, m, n, buffer, NR);
                    }
                    gemm_microkernel_table<T, Arch>::get(m, nv)(kc, a, b, buffer, NR, load_c);
                    gemm_copy_tile_out(buffer, NR, m, n, c_tile);
                }
                if constexpr (has_epilogue)
                {
                    if (last)
                    {
                        epilogue(i_off + ir, j_off + jr, m, n, c_tile);
                    }
                }
            };

            // Before each tile, the next tile's rows of C are prefetched: they are loaded (or
            // written) after the k-loop of this one, which hides the miss.
            const auto prefetch_c = [&](std::size_t ir, std::size_t jr) {
                if (c.cs == 1 && ir < mc && jr < j_end)
                {
                    const std::size_t rows = std::min(MR, mc - ir);
                    const std::size_t bytes = std::min(NR, j_end - jr) * sizeof(T);
                    for (std::size_t r = 0; r < rows; ++r)
                    {
                        const char* p = reinterpret_cast<const char*>(&c(static_cast<std::ptrdiff_t>(ir + r), static_cast<std::ptrdiff_t>(jr)));
                        for (std::size_t byte = 0; byte < bytes; byte += 64)
                        {
                            XCONV_GEMM_PREFETCH_WRITE(p + byte);
                        }
                    }
                }
            };

            if constexpr (traits::a_panel_outer)
            {
                // One A micro-panel stays in L1 while the B micro-panels stream from L2.
                for (std::size_t ir = 0; ir < mc; ir += MR)
                {
                    for (std::size_t jr = j_begin; jr < j_end; jr += NR)
                    {
                        jr + NR < j_end ? prefetch_c(ir, jr + NR) : prefetch_c(ir + MR, j_begin);
                        tile(ir, jr);
                    }
                }
            }
            else
            {
                // One B micro-panel stays in L1 while the A micro-panels stream from L2.
                for (std::size_t jr = j_begin; jr < j_end; jr += NR)
                {
                    for (std::size_t ir = 0; ir < mc; ir += MR)
                    {
                        ir + MR < mc ? prefetch_c(ir + MR, jr) : prefetch_c(0, jr + NR);
                        tile(ir, jr);
                    }
                }
            }
        }

        /// C (M x N) = [C +] A (M x K) * B (K x N), then epilogue, with A and B produced block by
        /// block by the packers (see gemm_pack.hpp for their interface and the packed layouts).
        ///
        /// epilogue(i0, j0, m, n, c) is called exactly once for every element of C, after its
        /// final value is stored, on m x n blocks: c(r, j) is C(i0 + r, j0 + j). Its default does
        /// nothing; gemm_row_bias_epilogue adds a per-row bias. With OpenMP, packers and
        /// epilogue run concurrently on several threads (on disjoint blocks).
        template <class T, class Arch = gemm_arch, class PackA, class PackB, class Epilogue = gemm_no_epilogue>
        void gemm_driver(std::size_t M,
                         std::size_t N,
                         std::size_t K,
                         const PackA& pack_a,
                         const PackB& pack_b,
                         matrix_view<T> C,
                         bool accumulate,
                         const Epilogue& epilogue = Epilogue{})
        {
            using traits = gemm_traits<T, Arch>;
            constexpr std::size_t MR = traits::mr;
            constexpr std::size_t NR = traits::nr;
            constexpr std::size_t MC = traits::mc;
            constexpr std::size_t KC = traits::kc;
            constexpr std::size_t NC = traits::nc;
            static_assert(MC % MR == 0 && NC % NR == 0, "mc and nc must be multiples of the register tile");

            if (M == 0 || N == 0)
            {
                return;
            }
            if (K == 0)
            {
                // No product: C keeps its value or becomes zero.
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
                if constexpr (!std::is_same<Epilogue, gemm_no_epilogue>::value)
                {
                    epilogue(0, 0, M, N, C);
                }
                return;
            }

            // An operand packed once for several GEMMs (prepacked_a, prepacked_b) is read in place.
            constexpr bool a_prepacked = is_prepacked<PackA>::value;
            constexpr bool b_prepacked = is_prepacked<PackB>::value;
            gemm_workspace<T>& ws = gemm_workspace<T>::local();
            const std::size_t kc_max = std::min(KC, K);
            const std::size_t nc_max = std::min(NC, (N + NR - 1) / NR * NR);
            const std::size_t mc_max = std::min(MC, (M + MR - 1) / MR * MR);
            T* const b_packed = b_prepacked ? nullptr : ws.b.get(kc_max * nc_max);
            T* const a_first = a_prepacked ? nullptr : ws.a.get(mc_max * kc_max);
            const std::size_t n_ic = (M + MC - 1) / MC;
            const std::size_t mc_first = std::min(MC, M);

#if defined(XCONV_USE_OPENMP)
            // Parallel only for products big enough to pay for a team, and not when already
            // inside a parallel region (the caller then parallelises over something else).
            const bool parallel = !omp_in_parallel() && omp_get_max_threads() > 1
                                  && static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) >= 2097152.0;
            const std::size_t threads = parallel ? static_cast<std::size_t>(omp_get_max_threads()) : 1;
#else
            const std::size_t threads = 1;
#endif

            for (std::size_t jc = 0; jc < N; jc += NC)
            {
                const std::size_t nc = std::min(NC, N - jc);
                const std::size_t n_panels = (nc + NR - 1) / NR;
                // Groups of fused_panels panels, fewer when that leaves a thread without a group.
                const std::size_t fused = std::max<std::size_t>(1, std::min(traits::fused_panels, n_panels / threads));
                const std::size_t G = fused * NR;
                const std::size_t n_fused = (n_panels + fused - 1) / fused;
                // Later row blocks run as tasks (ic block, group of B panels); the columns are
                // split into groups only when there are too few row blocks for the threads.
                const std::size_t rest_ic = n_ic - 1;
                const std::size_t groups =
                    rest_ic == 0 ? 1 : std::min(n_panels, std::max<std::size_t>(1, (4 * threads + rest_ic - 1) / rest_ic));
                const std::size_t per_group = (n_panels + groups - 1) / groups;
                const std::size_t n_groups = (n_panels + per_group - 1) / per_group;

                for (std::size_t pc = 0; pc < K; pc += KC)
                {
                    const std::size_t kc = std::min(KC, K - pc);
                    const bool load_c = accumulate || pc > 0;
                    const bool last = pc + kc == K;
                    matrix_view<T> c_first{&C(0, static_cast<std::ptrdiff_t>(jc)), C.rs, C.cs};

                    // First row block, fused with the packing of B: each group of B micro-panels
                    // is packed and at once multiplied by the first A block, while it is in cache.
                    // With a single row block no later block needs the packed B, so each thread
                    // packs all its groups into one place of the buffer, which stays in cache.
                    const bool reuse_group_buffer = n_ic == 1 && threads * G <= nc_max;
                    const T* a_first_block = a_first;
                    const auto first_block_panel = [&](std::size_t q) {
                        const std::size_t j = q * G;
                        const std::size_t n = std::min(G, nc - j);
                        const T* b_group = nullptr;
                        if constexpr (b_prepacked)
                        {
                            b_group = pack_b.block(pc, kc, jc + j);
                        }
                        else
                        {
                            T* const dst = reuse_group_buffer ? b_packed + gemm_thread_index() * G * kc : b_packed + j * kc;
                            pack_b(pc, kc, jc + j, n, dst);
                            b_group = dst;
                        }
                        const matrix_view<T> c_group{&c_first(0, static_cast<std::ptrdiff_t>(j)), c_first.rs, c_first.cs};
                        gemm_macrokernel<T, Arch>(mc_first, 0, n, kc, a_first_block, b_group, c_group, load_c, last, 0, jc + j,
                                                  epilogue);
                    };
                    // Later row blocks against the whole packed B block; a_own is the calling
                    // thread's A buffer, packed_ic which block it holds.
                    const auto later_task = [&](std::size_t t, T* a_own, std::size_t& packed_ic) {
                        const std::size_t ic = (1 + t / n_groups) * MC;
                        const std::size_t g = t % n_groups;
                        const std::size_t mc = std::min(MC, M - ic);
                        const T* a_block = a_own;
                        if constexpr (a_prepacked)
                        {
                            a_block = pack_a.block(ic, pc, kc);
                        }
                        else if (ic != packed_ic)
                        {
                            pack_a(ic, mc, pc, kc, a_own);
                            packed_ic = ic;
                        }
                        const std::size_t j_begin = g * per_group * NR;
                        const std::size_t j_end = std::min(nc, j_begin + per_group * NR);
                        matrix_view<T> c{&C(static_cast<std::ptrdiff_t>(ic), static_cast<std::ptrdiff_t>(jc)), C.rs, C.cs};
                        const T* b_block = nullptr;
                        if constexpr (b_prepacked)
                        {
                            b_block = pack_b.block(pc, kc, jc);
                        }
                        else
                        {
                            b_block = b_packed;
                        }
                        gemm_macrokernel<T, Arch>(mc, j_begin, j_end, kc, a_block, b_block, c, load_c, last, ic, jc, epilogue);
                    };
                    const std::size_t n_tasks = rest_ic * n_groups;

                    if constexpr (a_prepacked)
                    {
                        a_first_block = pack_a.block(0, pc, kc);
                    }
                    else
                    {
                        pack_a(0, mc_first, pc, kc, a_first);
                    }
#if defined(XCONV_USE_OPENMP)
                    const std::uint64_t epoch = current_scratch_epoch();
#pragma omp parallel if (parallel)
                    {
                        const scratch_join join(epoch);
#pragma omp for schedule(static)
                        for (std::ptrdiff_t q = 0; q < static_cast<std::ptrdiff_t>(n_fused); ++q)
                        {
                            first_block_panel(static_cast<std::size_t>(q));
                        }
                        // (implicit barrier: B is packed)
                        if (n_tasks > 0)
                        {
                            T* a_own = a_prepacked ? nullptr : gemm_workspace<T>::local().a.get(mc_max * kc_max);
                            std::size_t packed_ic = static_cast<std::size_t>(-1);
                            // Round robin, so that the (usually partial) last row block is shared
                            // out like the others; each thread packs the A blocks it meets.
#pragma omp for schedule(static, 1)
                            for (std::ptrdiff_t t = 0; t < static_cast<std::ptrdiff_t>(n_tasks); ++t)
                            {
                                later_task(static_cast<std::size_t>(t), a_own, packed_ic);
                            }
                        }
                    }
#else
                    for (std::size_t q = 0; q < n_fused; ++q)
                    {
                        first_block_panel(q);
                    }
                    std::size_t packed_ic = static_cast<std::size_t>(-1);
                    for (std::size_t t = 0; t < n_tasks; ++t)
                    {
                        later_task(t, a_first, packed_ic);
                    }
#endif
                }
            }
        }
    }  // namespace detail
}  // namespace xconv

#endif
