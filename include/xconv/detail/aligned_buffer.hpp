// xconv: the 64-byte aligned scratch buffers that only grow (the GEMM's packed blocks, the
// convolution passes' tiles, a call's packed weights), the count of the bytes they hold, the
// scratch limit, and how a thread gives back the buffers it keeps between calls.
//
// Per-thread buffers (the workspaces' members, thread_local) are kept from one pass to the next,
// so that a steady stream of calls allocates nothing. Each pass of a call has a number (its
// epoch, begun by scratch_call: every thread of the call's parallel regions joins it); a
// per-thread buffer remembers the pass that last used it. When a per-thread buffer has to grow
// and the bytes held by all buffers would then pass the limit, its thread first frees its buffers
// that no pass running now uses (older epochs): buffers left by the passes of other layers, which
// the passes running now would otherwise hold on top of their own.
#ifndef XCONV_DETAIL_ALIGNED_BUFFER_HPP
#define XCONV_DETAIL_ALIGNED_BUFFER_HPP

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>
#include <vector>

namespace xconv
{
    namespace detail
    {
        /// The scratch cap of a program that does not set one.
        inline constexpr std::size_t default_scratch_limit = std::size_t(4) << 20;

        inline std::atomic<std::size_t>& scratch_limit_storage() noexcept
        {
            static std::atomic<std::size_t> limit{default_scratch_limit};
            return limit;
        }

        /// Bytes held by all aligned_buffers of the program (every thread's), and the most they
        /// have held at once since the last reset_peak (for the tests of the scratch limit).
        struct scratch_ledger
        {
            std::atomic<std::size_t> held{0};
            std::atomic<std::size_t> peak{0};

            void add(std::size_t bytes) noexcept
            {
                const std::size_t now = held.fetch_add(bytes, std::memory_order_relaxed) + bytes;
                std::size_t p = peak.load(std::memory_order_relaxed);
                while (now > p && !peak.compare_exchange_weak(p, now, std::memory_order_relaxed))
                {
                }
            }
            void remove(std::size_t bytes) noexcept { held.fetch_sub(bytes, std::memory_order_relaxed); }
            void reset_peak() noexcept { peak.store(held.load(std::memory_order_relaxed), std::memory_order_relaxed); }
        };

        inline scratch_ledger& scratch_bytes() noexcept
        {
            static scratch_ledger ledger;
            return ledger;
        }

        // ------------------------------------------------------------------ passes (epochs)

        /// The pass the calling thread works for, and how deeply it is inside calls.
        struct scratch_thread_state
        {
            std::uint64_t epoch = 0;
            int depth = 0;
        };

        inline scratch_thread_state& scratch_thread() noexcept
        {
            thread_local scratch_thread_state state;
            return state;
        }

        /// A new pass number, never given before (in any thread).
        inline std::uint64_t next_scratch_epoch() noexcept
        {
            static std::atomic<std::uint64_t> counter{0};
            return counter.fetch_add(1, std::memory_order_relaxed) + 1;
        }

        /// The pass the calling thread works for (pass it to the threads of a parallel region).
        inline std::uint64_t current_scratch_epoch() noexcept { return scratch_thread().epoch; }

        /// A thread of a parallel region starts working for the pass of the thread that opened it.
        inline void join_scratch_epoch(std::uint64_t epoch) noexcept { scratch_thread().epoch = epoch; }

        /// The scope of a top-level call (conv2d, conv_transpose2d and their backward passes, on
        /// raw buffers): begins a pass. Nested scopes begin nothing, so that the buffers of the
        /// outer call stay its own.
        class scratch_call
        {
        public:
            scratch_call() noexcept
            {
                scratch_thread_state& s = scratch_thread();
                if (s.depth++ == 0)
                {
                    s.epoch = next_scratch_epoch();
                }
            }
            ~scratch_call() { --scratch_thread().depth; }
            scratch_call(const scratch_call&) = delete;
            scratch_call& operator=(const scratch_call&) = delete;

            /// Between two passes of the call (no buffer of the first is used after it): begins
            /// another, so that the first's buffers may be freed for the second's.
            static void next_pass() noexcept
            {
                scratch_thread_state& s = scratch_thread();
                if (s.depth == 1)
                {
                    s.epoch = next_scratch_epoch();
                }
            }
        };

        // ------------------------------------------------------------------ buffers

        /// What aligned_buffer is for: a thread's workspace (kept between calls) or one call's.
        enum class scratch_kind
        {
            call,
            per_thread
        };

        class aligned_buffer_base;

        /// The per-thread buffers of the calling thread that have allocated memory at some time.
        inline std::vector<aligned_buffer_base*>& thread_buffers()
        {
            thread_local std::vector<aligned_buffer_base*> buffers;
            return buffers;
        }

        /// Frees the per-thread buffers of the calling thread that no pass from `epoch` on has
        /// used (all of them for UINT64_MAX).
        inline void release_thread_scratch(std::uint64_t epoch) noexcept;

        /// The allocation and bookkeeping of aligned_buffer, for any element type.
        class aligned_buffer_base
        {
        public:
            explicit aligned_buffer_base(scratch_kind kind = scratch_kind::call) noexcept : m_per_thread(kind == scratch_kind::per_thread) {}
            aligned_buffer_base(const aligned_buffer_base&) = delete;
            aligned_buffer_base& operator=(const aligned_buffer_base&) = delete;
            // A call's buffer moves with its owner; a thread's stays where its thread registered it.
            aligned_buffer_base(aligned_buffer_base&& other) noexcept
                : m_data(std::exchange(other.m_data, nullptr))
                , m_bytes(std::exchange(other.m_bytes, 0))
            {
            }
            aligned_buffer_base& operator=(aligned_buffer_base&& other) noexcept
            {
                if (this != &other)
                {
                    release();
                    m_data = std::exchange(other.m_data, nullptr);
                    m_bytes = std::exchange(other.m_bytes, 0);
                }
                return *this;
            }
            ~aligned_buffer_base() { release(); }

            /// Frees the allocation; the next get allocates anew.
            void release() noexcept
            {
                if (m_data != nullptr)
                {
                    ::operator delete(m_data, std::align_val_t{alignment});
                    scratch_bytes().remove(m_bytes);
                    m_data = nullptr;
                    m_bytes = 0;
                }
            }

            /// Frees the allocation if no pass from `epoch` on has used it.
            void release_if_older(std::uint64_t epoch) noexcept
            {
                if (m_epoch < epoch)
                {
                    release();
                }
            }

        protected:
            void* get_bytes(std::size_t bytes)
            {
                if (m_per_thread)
                {
                    m_epoch = current_scratch_epoch();
                }
                if (bytes > m_bytes)
                {
                    release();
                    if (m_per_thread)
                    {
                        make_room(bytes);
                    }
                    m_data = ::operator new(bytes, std::align_val_t{alignment});
                    m_bytes = bytes;
                    scratch_bytes().add(bytes);
                }
                return m_data;
            }

        private:
            static constexpr std::size_t alignment = 64;

            /// Registers the buffer with its thread, and frees the thread's buffers of earlier
            /// passes when `bytes` more would pass the limit.
            void make_room(std::size_t bytes)
            {
                if (!m_registered)
                {
                    thread_buffers().push_back(this);
                    m_registered = true;
                }
                if (scratch_bytes().held.load(std::memory_order_relaxed) + bytes > scratch_limit_storage().load(std::memory_order_relaxed))
                {
                    release_thread_scratch(current_scratch_epoch());
                }
            }

            void* m_data = nullptr;
            std::size_t m_bytes = 0;
            std::uint64_t m_epoch = 0;
            bool m_per_thread = false;
            bool m_registered = false;
        };

        inline void release_thread_scratch(std::uint64_t epoch) noexcept
        {
            for (aligned_buffer_base* b : thread_buffers())
            {
                b->release_if_older(epoch);
            }
        }

        /// Owns at most one 64-byte aligned allocation of T; get(n) returns room for at least n
        /// elements, reallocating (contents not preserved) only when n exceeds the capacity.
        /// Construct it with scratch_kind::per_thread for a member of a thread's workspace.
        template <class T>
        class aligned_buffer : public aligned_buffer_base
        {
        public:
            using aligned_buffer_base::aligned_buffer_base;
            aligned_buffer() noexcept = default;

            T* get(std::size_t n) { return static_cast<T*>(get_bytes(n * sizeof(T))); }
        };
    }  // namespace detail
}  // namespace xconv

#endif
