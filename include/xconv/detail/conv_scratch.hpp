// xconv: the scratch memory of the convolution passes, its user-settable cap, and the
// per-thread buffers it lives in.
//
// A convolution call needs scratch for the tiles it lowers to GEMMs: the GEMM's packed operands,
// a tile of im2col columns (backward-weights) or of GEMM output waiting for col2im
// (backward-data), a transposed output tile (narrow outputs, and the implicit GEMM of
// conv_implicit.hpp with the zero-bordered input rows it reads). None of them is ever as large as
// the whole column matrix: the passes tile the output positions so that the scratch of one call,
// summed over the threads it runs on, stays below scratch_limit() (4 MiB unless changed).
//
// The buffers are per thread (thread_local) and only grow, so a steady stream of calls
// allocates nothing; their size is bounded by the limit in force when they grew. One exception:
// a call whose weight serves several samples packs it once into a buffer of its own (at most
// three quarters of the limit, taken out of the other buffers' share) and frees it on return.
//
// What the threads keep from the passes of earlier calls counts too (aligned_buffer.hpp): if the
// bytes held would otherwise pass the limit, the buffers that no running pass uses (any
// thread's) are freed before the call packs its weights and before a buffer grows, and the
// running passes' buffers give back what they hold past what their pass asked for; when there is
// still no room beside what is held, the weights are packed per GEMM instead (the same values).
// So the bytes all buffers hold stay within the limit, up to the two exceptions below.
//
// Two things are outside the cap: a padded copy of one sample's group of input channels (or of
// its gradient) for padding modes other than zeros, and a floor of one tile below which no pass
// tiles, whatever the limit: one GEMM register panel of output positions for the column tiles,
// one output row (with the bordered rows it reads, over all input channels) for the implicit
// GEMM. With more threads than the limit's share per thread allows, the floors of the threads
// together can pass it. A weight the implicit GEMM packs for the call takes only the room the
// floors leave (implicit_over_batch), and the forward pass leaves the implicit GEMM for the
// column tiles when the floors alone do not fit (implicit_fits_limit; both sum each output in the
// same order); the stride-1 input gradient and a transposed layer's forward by sub-pixel phases
// do not change route, since their other routes sum in another order and the result must not
// depend on the limit.
#ifndef XCONV_DETAIL_CONV_SCRATCH_HPP
#define XCONV_DETAIL_CONV_SCRATCH_HPP

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "aligned_buffer.hpp"

namespace xconv
{

    /// Sets the cap, in bytes, on the scratch memory one convolution call (conv2d,
    /// conv_transpose2d, their backward passes and the layers' forward / backward) may use, over
    /// all its threads. The passes tile their work to fit; a smaller cap means smaller tiles
    /// (slower below a few hundred KiB), never a different result: outputs and gradients are
    /// bitwise the same for any cap. Takes effect for the calls that start afterwards; the
    /// per-thread buffers already grown keep their size until freed (release_scratch, or when a
    /// later call needs the room). Default: 4 MiB.
    inline void set_scratch_limit(std::size_t bytes) noexcept
    {
        detail::scratch_limit_storage().store(bytes, std::memory_order_relaxed);
    }

    /// The current cap on a convolution call's scratch memory, in bytes (see set_scratch_limit).
    inline std::size_t scratch_limit() noexcept
    {
        return detail::scratch_limit_storage().load(std::memory_order_relaxed);
    }

    /// Bytes of scratch memory xconv holds now, over all threads: the per-thread buffers kept for
    /// later calls, and those of calls running.
    inline std::size_t scratch_held() noexcept
    {
        return detail::scratch_bytes().held.load(std::memory_order_relaxed);
    }

    /// Frees the scratch buffers xconv's threads keep between calls: those of every thread,
    /// except the buffers of calls running now in other threads. The next call allocates its
    /// buffers anew.
    inline void release_scratch() noexcept
    {
        detail::free_kept_scratch(0);
    }

    namespace detail
    {
        /// Whether a call may take `bytes` of scratch of its own (weights packed once for the
        /// call): at most three quarters of the limit, and room beside what the buffers hold.
        /// If the bytes would not fit beside them, the buffers that no running pass uses (kept
        /// from earlier passes and other layers, by any thread) are freed first. Call it from the
        /// thread running the call, outside the call's parallel regions.
        inline bool reserve_call_scratch(std::size_t bytes)
        {
            const std::size_t limit = scratch_limit();
            if (bytes > limit / 4 * 3)
            {
                return false;
            }
            if (scratch_held() + bytes > limit)
            {
                free_kept_scratch(limit - bytes);
            }
            return scratch_held() + bytes <= limit;
        }

        /// A 64-byte aligned buffer of T that only grows; its contents are not preserved.
        template <class T>
        using conv_buffer = aligned_buffer<T>;

        /// The calling thread's convolution scratch for element type T.
        template <class T>
        struct conv_workspace
        {
            // im2col columns, GEMM output before col2im, transposed output
            conv_buffer<T> tile{scratch_kind::per_thread};
            // a block of im2col columns on its way into a packed GEMM panel, or a zero-bordered
            // band of a plane (direct passes)
            conv_buffer<T> stage{scratch_kind::per_thread};
            // a band of output rows of a direct pass, before streaming out
            conv_buffer<T> band{scratch_kind::per_thread};
            // padded input planes and their gradient (padding modes other than zeros)
            conv_buffer<T> padded{scratch_kind::per_thread};
            conv_buffer<T> padded_grad{scratch_kind::per_thread};

            static conv_workspace& local()
            {
                thread_local conv_workspace ws;
                return ws;
            }
        };

        /// Bytes of a scratch tile that is written and read back at once (GEMM output before
        /// col2im, im2col columns before the GEMM): small enough to stay in a 1 MiB L2 cache next
        /// to the GEMM's packed blocks.
        constexpr std::size_t cache_tile_bytes = std::size_t(384) << 10;

        /// Bytes of scratch each of `threads` threads may use in the current call.
        inline std::size_t scratch_per_thread(std::size_t threads) noexcept
        {
            return scratch_limit() / std::max<std::size_t>(threads, 1);
        }
    }  // namespace detail
}  // namespace xconv

#endif
