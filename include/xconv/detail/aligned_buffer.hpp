// xconv: the 64-byte aligned scratch buffers that only grow (the GEMM's packed blocks, the
// convolution passes' tiles, a call's packed weights), the count of the bytes they hold, the
// scratch limit, and how the buffers the threads keep between calls are given back.
//
// Per-thread buffers (the workspaces' members, thread_local) are kept from one pass to the next,
// so that a steady stream of calls allocates nothing. Each pass of a call has a number (its
// epoch, begun by scratch_call and running until the call ends or its next pass begins; every
// thread of the call's parallel regions joins it); a per-thread buffer remembers the pass that
// last used it. When a per-thread buffer has to grow and the bytes held by all buffers would
// then pass the limit, the buffers of passes no longer running are freed first, the growing
// thread's and then those of other threads: buffers left by earlier passes and other layers,
// which the passes running now would otherwise hold on top of their own. Then the running
// passes' buffers that earlier, larger passes grew give back the pages past what their pass asked
// for. Freeing another thread's buffer (or its tail) is safe because a buffer is only used by the
// pass that marked it last, and only as far as that pass asked; the marking, the growing and the
// freeing happen under one lock. So the bytes held stay within the limit as long as what the
// running passes ask for does (their tiling sees to it).
#ifndef XCONV_DETAIL_ALIGNED_BUFFER_HPP
#define XCONV_DETAIL_ALIGNED_BUFFER_HPP

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define XCONV_SCRATCH_MADVISE 1
#endif

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

        /// The lock of the bookkeeping that crosses threads: the passes running, the per-thread
        /// buffers of all threads (their allocations and the passes that last used them). It is
        /// taken a few dozen times per call (when a pass first asks a buffer for its bytes, and
        /// each time a thread of a parallel region asks), never in a kernel.
        /// Never destroyed, so that threads ending after main can still take it.
        inline std::mutex& scratch_lock() noexcept
        {
            static std::mutex* const m = new std::mutex;
            return *m;
        }

        /// The passes running now (begun by a scratch_call and not ended), by number; guarded by
        /// scratch_lock. A buffer last used by a pass that is not running may be freed by any
        /// thread: no pass will use its contents again.
        inline std::vector<std::uint64_t>& running_passes() noexcept
        {
            static std::vector<std::uint64_t>* const v = new std::vector<std::uint64_t>;
            return *v;
        }

        /// Takes one element equal to x out of v (its order is not kept).
        template <class V, class X>
        void erase_one(V& v, const X& x) noexcept
        {
            const auto it = std::find(v.begin(), v.end(), x);
            if (it != v.end())
            {
                *it = v.back();
                v.pop_back();
            }
        }

        inline bool pass_running(std::uint64_t epoch) noexcept
        {
            const std::vector<std::uint64_t>& r = running_passes();
            return std::find(r.begin(), r.end(), epoch) != r.end();
        }

        /// The pass the calling thread works for, how deeply it is inside calls, and whether it
        /// works in a parallel region of a running pass (joined > 0).
        struct scratch_thread_state
        {
            std::uint64_t epoch = 0;
            int depth = 0;
            int joined = 0;

            /// Whether `epoch` is a pass running now: one of this thread's calls, or the pass of
            /// the parallel region it works in.
            bool in_pass() const noexcept { return depth > 0 || joined > 0; }
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

        /// The scope in which a thread of a parallel region works for the pass of the thread that
        /// opened it (that pass runs until the region ends).
        class scratch_join
        {
        public:
            explicit scratch_join(std::uint64_t epoch) noexcept
            {
                scratch_thread_state& s = scratch_thread();
                s.epoch = epoch;
                ++s.joined;
            }
            ~scratch_join() { --scratch_thread().joined; }
            scratch_join(const scratch_join&) = delete;
            scratch_join& operator=(const scratch_join&) = delete;
        };

        /// The scope of a top-level call (conv2d, conv_transpose2d, their backward passes and gemm):
        /// begins a pass, running until the scope ends. Nested scopes begin nothing, so that the
        /// buffers of the outer call stay its own.
        class scratch_call
        {
        public:
            scratch_call()
            {
                scratch_thread_state& s = scratch_thread();
                if (s.depth == 0)
                {
                    const std::lock_guard<std::mutex> lock(scratch_lock());
                    const std::uint64_t epoch = next_scratch_epoch();
                    running_passes().push_back(epoch);
                    s.epoch = epoch;
                }
                ++s.depth;
            }
            ~scratch_call()
            {
                scratch_thread_state& s = scratch_thread();
                if (--s.depth == 0)
                {
                    end(s.epoch);
                }
            }
            scratch_call(const scratch_call&) = delete;
            scratch_call& operator=(const scratch_call&) = delete;

            /// Between two passes of the call (no buffer of the first is used after it): ends the
            /// first and begins another, so that the first's buffers may be freed for the second's.
            static void next_pass() noexcept
            {
                scratch_thread_state& s = scratch_thread();
                if (s.depth == 1)
                {
                    const std::lock_guard<std::mutex> lock(scratch_lock());
                    const std::uint64_t epoch = next_scratch_epoch();
                    // The slot of the pass ending: no allocation.
                    *std::find(running_passes().begin(), running_passes().end(), s.epoch) = epoch;
                    s.epoch = epoch;
                }
            }

        private:
            static void end(std::uint64_t epoch) noexcept
            {
                const std::lock_guard<std::mutex> lock(scratch_lock());
                erase_one(running_passes(), epoch);
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

        /// Every thread's per-thread buffers that have allocated memory at some time (each takes
        /// itself out when destroyed); guarded by scratch_lock.
        inline std::vector<aligned_buffer_base*>& kept_buffers() noexcept
        {
            static std::vector<aligned_buffer_base*>* const v = new std::vector<aligned_buffer_base*>;
            return *v;
        }

        /// Gives the pages of [keep, bytes) of the allocation at p back to the system (their
        /// contents are lost; the addresses stay valid and read as zeros if touched again), where
        /// the system allows; returns whether it could.
        inline bool give_back_tail(void* p, std::size_t bytes, std::size_t keep) noexcept
        {
#if defined(XCONV_SCRATCH_MADVISE)
            static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
            const auto begin = (reinterpret_cast<std::uintptr_t>(p) + keep + page - 1) / page * page;
            const auto end = (reinterpret_cast<std::uintptr_t>(p) + bytes) / page * page;
            if (begin < end)
            {
                ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
            }
            return true;
#else
            (void)p;
            (void)bytes;
            (void)keep;
            return false;
#endif
        }

        template <class F>
        void for_kept_buffers(std::size_t enough, F&& f) noexcept;
        template <class Pred>
        void free_kept_scratch_locked(Pred&& may_free, std::size_t enough) noexcept;
        inline void trim_slack_locked(std::size_t enough) noexcept;

        /// The allocation and bookkeeping of aligned_buffer, for any element type.
        class aligned_buffer_base
        {
        public:
            explicit aligned_buffer_base(scratch_kind kind = scratch_kind::call) noexcept : m_per_thread(kind == scratch_kind::per_thread) {}
            aligned_buffer_base(const aligned_buffer_base&) = delete;
            aligned_buffer_base& operator=(const aligned_buffer_base&) = delete;
            // A call's buffer moves with its owner; a thread's is never moved (the list of kept
            // buffers points to it).
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
            ~aligned_buffer_base()
            {
                if (m_owner != nullptr)
                {
                    const std::lock_guard<std::mutex> lock(scratch_lock());
                    free_memory();
                    erase_one(kept_buffers(), this);
                    return;
                }
                free_memory();
            }

            /// Frees the allocation; the next get allocates anew. For a call's buffer; a thread's
            /// is freed through free_kept_scratch.
            void release() noexcept { free_memory(); }

            /// For a thread's buffer, called by that thread: from now on its running pass needs at
            /// most `bytes` of it (what an earlier step of the pass left past them is not used
            /// again), so that what it holds past them may be given back when room is needed.
            void shrink_asked(std::size_t bytes) noexcept
            {
                if (!m_per_thread)
                {
                    return;
                }
                const scratch_thread_state& me = scratch_thread();
                if (me.in_pass() && m_epoch == me.epoch && bytes < m_asked)
                {
                    const std::lock_guard<std::mutex> lock(scratch_lock());
                    m_asked = bytes;
                }
            }

            /// For a thread's buffer, read by that thread: the most bytes its running pass has
            /// asked of it (0 if none), which the buffer keeps until the pass ends (or
            /// shrink_asked lowers them).
            std::size_t asked_in_pass() const noexcept
            {
                if (!m_per_thread)
                {
                    return 0;
                }
                const scratch_thread_state& me = scratch_thread();
                return me.in_pass() && m_epoch == me.epoch ? m_asked : 0;
            }

        protected:
            void* get_bytes(std::size_t bytes)
            {
                if (!m_per_thread)
                {
                    if (bytes > m_bytes)
                    {
                        free_memory();
                        scratch_bytes().add(bytes);
                        allocate(bytes);
                    }
                    return m_data;
                }
                // Once marked by the running pass for at least these bytes, no other thread frees
                // the buffer or gives back any of them while the pass runs: no lock needed.
                // (Only this thread writes m_epoch and m_asked.)
                const scratch_thread_state& me = scratch_thread();
                if (me.in_pass() && m_epoch == me.epoch && bytes <= m_asked)
                {
                    return m_data;
                }
                // Under the lock: another thread may free this buffer (no running pass used it)
                // or give back its tail (past what the pass asked for), until it is marked here.
                const std::lock_guard<std::mutex> lock(scratch_lock());
                if (m_epoch != me.epoch)
                {
                    m_epoch = me.epoch;
                    m_asked = 0;
                }
                m_asked = std::max(m_asked, bytes);
                if (bytes > m_bytes)
                {
                    free_memory();
                    if (m_owner == nullptr)
                    {
                        kept_buffers().push_back(this);
                        m_owner = &me;
                    }
                    make_room(bytes);
                    scratch_bytes().add(bytes);
                    allocate(bytes);
                }
                return m_data;
            }

        private:
            static constexpr std::size_t alignment = 64;

            template <class F>
            friend void for_kept_buffers(std::size_t enough, F&& f) noexcept;
            template <class Pred>
            friend void free_kept_scratch_locked(Pred&& may_free, std::size_t enough) noexcept;
            friend void trim_slack_locked(std::size_t enough) noexcept;

            void allocate(std::size_t bytes)
            {
                try
                {
                    m_data = ::operator new(bytes, std::align_val_t{alignment});
                }
                catch (...)
                {
                    scratch_bytes().remove(bytes);
                    throw;
                }
                m_bytes = bytes;
            }

            void free_memory() noexcept
            {
                if (m_data != nullptr)
                {
                    ::operator delete(m_data, std::align_val_t{alignment});
                    scratch_bytes().remove(m_bytes);
                    m_data = nullptr;
                    m_bytes = 0;
                }
            }

            /// Gives back what the buffer holds past the most its pass has asked for (the slack
            /// of a buffer grown by an earlier, larger pass): its pages go back to the system and
            /// the bytes stop counting. The pass only ever uses the bytes it asked for; asking for
            /// more later grows the buffer anew. Called under the lock.
            void trim_slack() noexcept
            {
                if (m_data != nullptr && m_asked < m_bytes && give_back_tail(m_data, m_bytes, m_asked))
                {
                    scratch_bytes().remove(m_bytes - m_asked);
                    m_bytes = m_asked;
                }
            }

            /// Called under the lock by a buffer about to grow by `bytes`.
            inline void make_room(std::size_t bytes) noexcept;

            void* m_data = nullptr;
            std::size_t m_bytes = 0;
            std::size_t m_asked = 0;                        // the most the pass m_epoch asked for
            std::uint64_t m_epoch = 0;                     // the pass that last asked for it
            const scratch_thread_state* m_owner = nullptr;  // its thread, once in kept_buffers()
            bool m_per_thread = false;
        };

        /// Calls f(b) on the kept (per-thread) buffers, the calling thread's first, until the
        /// bytes held are at most `enough` (0: on all of them). Call it under scratch_lock.
        template <class F>
        void for_kept_buffers(std::size_t enough, F&& f) noexcept
        {
            const scratch_thread_state* const me = &scratch_thread();
            for (const bool own : {true, false})
            {
                for (aligned_buffer_base* b : kept_buffers())
                {
                    if (enough > 0 && scratch_bytes().held.load(std::memory_order_relaxed) <= enough)
                    {
                        return;
                    }
                    if ((b->m_owner == me) == own)
                    {
                        f(*b);
                    }
                }
            }
        }

        /// Frees kept buffers for which may_free(epoch, owner) holds, until the bytes held are at
        /// most `enough` (0: all of them). Call it under scratch_lock.
        template <class Pred>
        void free_kept_scratch_locked(Pred&& may_free, std::size_t enough) noexcept
        {
            for_kept_buffers(enough, [&](aligned_buffer_base& b) {
                if (b.m_data != nullptr && may_free(b.m_epoch, b.m_owner))
                {
                    b.free_memory();
                }
            });
        }

        /// Gives back the slack of kept buffers (trim_slack) until the bytes held are at most
        /// `enough` (0: all slack). Call it under scratch_lock.
        inline void trim_slack_locked(std::size_t enough) noexcept
        {
            for_kept_buffers(enough, [](aligned_buffer_base& b) { b.trim_slack(); });
        }

        /// Frees the kept buffers that no running pass uses, of every thread; with `enough` > 0,
        /// only until the bytes held are at most `enough`, and then gives back the slack of the
        /// running passes' buffers if that is still needed.
        inline void free_kept_scratch(std::size_t enough) noexcept
        {
            const std::lock_guard<std::mutex> lock(scratch_lock());
            free_kept_scratch_locked([](std::uint64_t epoch, const scratch_thread_state*) { return !pass_running(epoch); }, enough);
            if (enough > 0)
            {
                trim_slack_locked(enough);
            }
        }

        /// When the bytes held would pass the limit with `bytes` more, makes room: frees the kept
        /// buffers of passes that are no longer running, of any thread (a thread that works
        /// outside any running pass, as internal functions called directly do, frees only its own
        /// buffers of other passes; buffers never marked by a pass are not freed here), then gives
        /// back the slack of the running passes' buffers. If there is still no room, the buffer
        /// grows past the limit: what the running passes asked for is then over it, which their
        /// tiling does not allow.
        inline void aligned_buffer_base::make_room(std::size_t bytes) noexcept
        {
            const std::size_t limit = scratch_limit_storage().load(std::memory_order_relaxed);
            if (scratch_bytes().held.load(std::memory_order_relaxed) + bytes <= limit)
            {
                return;
            }
            const scratch_thread_state* const me = &scratch_thread();
            const bool in_pass = pass_running(me->epoch);
            free_kept_scratch_locked(
                [&](std::uint64_t epoch, const scratch_thread_state* owner) {
                    return epoch != 0 && epoch != me->epoch && !pass_running(epoch) && (in_pass || owner == me);
                },
                0);
            trim_slack_locked(limit > bytes ? limit - bytes : 0);
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

            /// get(n) for a step of a pass that needs only n elements, whatever an earlier step
            /// asked: what the buffer holds past them may be given back when room runs short. A
            /// step that uses several buffers lowers all their marks (shrink_asked) before it
            /// gets any of them, so that a growing one can take what the others no longer need.
            T* get_for_step(std::size_t n)
            {
                shrink_asked(n * sizeof(T));
                return get(n);
            }
        };
    }  // namespace detail
}  // namespace xconv

#endif
