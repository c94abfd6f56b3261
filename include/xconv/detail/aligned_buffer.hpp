// xconv: a 64-byte aligned scratch buffer that only grows (the GEMM's packed blocks, the
// convolution passes' tiles, a call's packed weights).
#ifndef XCONV_DETAIL_ALIGNED_BUFFER_HPP
#define XCONV_DETAIL_ALIGNED_BUFFER_HPP

#include <cstddef>
#include <new>
#include <utility>

namespace xconv
{
    namespace detail
    {
        /// Owns at most one 64-byte aligned allocation of T; get(n) returns room for at least n
        /// elements, reallocating (contents not preserved) only when n exceeds the capacity.
        template <class T>
        class aligned_buffer
        {
        public:
            aligned_buffer() = default;
            aligned_buffer(const aligned_buffer&) = delete;
            aligned_buffer& operator=(const aligned_buffer&) = delete;
            aligned_buffer(aligned_buffer&& other) noexcept
                : m_data(std::exchange(other.m_data, nullptr))
                , m_capacity(std::exchange(other.m_capacity, 0))
            {
            }
            aligned_buffer& operator=(aligned_buffer&& other) noexcept
            {
                if (this != &other)
                {
                    release();
                    m_data = std::exchange(other.m_data, nullptr);
                    m_capacity = std::exchange(other.m_capacity, 0);
                }
                return *this;
            }
            ~aligned_buffer() { release(); }

            T* get(std::size_t n)
            {
                if (n > m_capacity)
                {
                    release();
                    m_data = static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{alignment}));
                    m_capacity = n;
                }
                return m_data;
            }

        private:
            static constexpr std::size_t alignment = 64;

            void release() noexcept
            {
                if (m_data != nullptr)
                {
                    ::operator delete(m_data, std::align_val_t{alignment});
                    m_data = nullptr;
                    m_capacity = 0;
                }
            }

            T* m_data = nullptr;
            std::size_t m_capacity = 0;
        };
    }  // namespace detail
}  // namespace xconv

#endif
