// xconv: how the convolution passes use threads (OpenMP when XCONV_USE_OPENMP is defined).
//
// Work is split only where the pieces are independent: samples x groups of a forward or
// backward-data pass (disjoint outputs), channels of a col2im or of a bias gradient (rows of one
// channel touch only that channel), groups or column ranges of a weight gradient (each element
// keeps its own accumulation chain over the batch, in the same order whoever computes it). No
// sum is ever split between threads, so every result is bitwise the same for any thread count.
// Without OpenMP, or inside an enclosing parallel region, everything runs on the calling thread.
#ifndef XCONV_DETAIL_CONV_PARALLEL_HPP
#define XCONV_DETAIL_CONV_PARALLEL_HPP

#include <cstddef>
#include <cstdint>

#include "aligned_buffer.hpp"

#if defined(XCONV_USE_OPENMP)
#include <omp.h>
#endif
#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace xconv
{
    namespace detail
    {
        /// Threads a pass may start from here: 1 without OpenMP or inside a parallel region.
        inline std::int64_t conv_threads() noexcept
        {
#if defined(XCONV_USE_OPENMP)
            return omp_in_parallel() ? 1 : static_cast<std::int64_t>(omp_get_max_threads());
#else
            return 1;
#endif
        }

        /// Whether `tasks` independent pieces of similar cost keep `threads` threads busy enough
        /// to be run one per thread (rather than one after the other, each using every thread).
        inline bool conv_split_tasks(std::int64_t tasks, std::int64_t threads) noexcept
        {
            return threads > 1 && tasks >= threads && (tasks % threads == 0 || tasks >= 4 * threads);
        }

        /// Whether the calling thread has written memory with non-temporal (streaming) stores since
        /// it last fenced. Such stores are weakly ordered: a kernel that streams sets this, and
        /// each thread of a pass fences once when its share is done (conv_parallel_for), rather
        /// than after every plane, which would wait for each plane's stores to drain before
        /// computing the next.
        inline bool& streamed_stores_pending() noexcept
        {
            static thread_local bool pending = false;
            return pending;
        }

        /// Makes the calling thread's streamed stores visible to every thread (sfence), if any.
        inline void fence_streamed_stores() noexcept
        {
            if (streamed_stores_pending())
            {
#if defined(__SSE__) || defined(_M_X64)
                _mm_sfence();
#endif
                streamed_stores_pending() = false;
            }
        }

        /// Calls f(t) for t in [0, n), over the threads when `parallel` is set. The pieces are
        /// handed out one at a time to whichever thread is free (dynamic schedule): a piece's
        /// result does not depend on the thread that computes it, and on a busy machine a thread
        /// that loses its core for a while does not hold up the pieces it has not started.
        template <class F>
        void conv_parallel_for(std::int64_t n, bool parallel, F&& f)
        {
#if defined(XCONV_USE_OPENMP)
            if (parallel && n > 1)
            {
                const std::uint64_t epoch = current_scratch_epoch();
#pragma omp parallel
                {
#pragma omp for schedule(dynamic, 1) nowait
                    for (std::int64_t t = 0; t < n; ++t)
                    {
                        const scratch_join join(epoch);
                        f(t);
                    }
                    fence_streamed_stores();
                }
                return;
            }
#else
            (void)parallel;
#endif
            for (std::int64_t t = 0; t < n; ++t)
            {
                f(t);
            }
            fence_streamed_stores();
        }
    }  // namespace detail
}  // namespace xconv

#endif
