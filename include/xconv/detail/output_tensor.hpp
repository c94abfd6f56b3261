// xconv: allocation of the tensors a call returns (outputs, gradients, columns).
//
// A tensor over 32 MiB is, with glibc's allocator, a fresh anonymous mapping on every call: glibc
// never serves a request that large from its heap (the dynamic mmap threshold stops at 32 MiB on
// 64-bit systems). Each 4 KiB page of it then faults on its first write, and the faults can cost
// as much as the arithmetic that fills the tensor (a float64 1x1 layer's input gradient: half of
// the pass). The allocation here asks Linux to back such a tensor with transparent huge pages
// (madvise MADV_HUGEPAGE), one fault per 2 MiB. It is advice: where transparent huge pages are
// off, or on other systems, nothing changes. Smaller tensors are left alone; glibc reuses their
// memory from its heap after the first call.
//
// Define XCONV_NO_HUGE_PAGES to turn the advice off.
#ifndef XCONV_DETAIL_OUTPUT_TENSOR_HPP
#define XCONV_DETAIL_OUTPUT_TENSOR_HPP

#include <array>
#include <cstddef>
#include <cstdint>

#include <xtensor/xtensor.hpp>

#if defined(__linux__) && !defined(XCONV_NO_HUGE_PAGES)
#include <sys/mman.h>
#define XCONV_ADVISE_HUGE_PAGES 1
#endif

namespace xconv
{
    namespace detail
    {
        /// The size of a transparent huge page on x86-64 and (with 4 KiB base pages) AArch64.
        inline constexpr std::size_t huge_page_bytes = std::size_t(2) << 20;
        /// Tensors at least this large get the advice: glibc's largest mmap threshold.
        inline constexpr std::size_t huge_page_advice_bytes = std::size_t(32) << 20;

        /// Advises the kernel to back the whole huge pages inside [data, data + bytes) with
        /// transparent huge pages, if the range is at least huge_page_advice_bytes long. Call it
        /// before the memory is first written. Never fails: the advice is a hint.
        inline void advise_huge_pages([[maybe_unused]] void* data, [[maybe_unused]] std::size_t bytes) noexcept
        {
#ifdef XCONV_ADVISE_HUGE_PAGES
            if (data == nullptr || bytes < huge_page_advice_bytes)
            {
                return;
            }
            const auto begin = reinterpret_cast<std::uintptr_t>(data);
            const std::uintptr_t first = (begin + huge_page_bytes - 1) & ~(huge_page_bytes - 1);
            const std::uintptr_t last = (begin + bytes) & ~(huge_page_bytes - 1);
            if (last > first)
            {
                ::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
            }
#endif
        }

        /// An uninitialised tensor of the given shape, for a call to fill and return.
        template <class T, std::size_t N>
        xt::xtensor<T, N> output_tensor(const std::array<std::size_t, N>& shape)
        {
            xt::xtensor<T, N> t(shape);
            advise_huge_pages(t.data(), t.size() * sizeof(T));
            return t;
        }
    }  // namespace detail
}  // namespace xconv

#endif
