// The conv2d options of a test case: any struct with the fields sh, sw (stride), ph, pw
// (padding), dh, dw (dilation), groups and mode (padding mode).
#ifndef XCONV_TEST_SUPPORT_OPTIONS_HPP
#define XCONV_TEST_SUPPORT_OPTIONS_HPP

#include <cstddef>

#include <xconv/options.hpp>

namespace xconv_test
{
    template <class Case>
    xconv::conv2d_options conv2d_options_of(const Case& c)
    {
        xconv::conv2d_options o;
        o.stride = {c.sh, c.sw};
        o.padding = {c.ph, c.pw};
        o.dilation = {c.dh, c.dw};
        o.groups = std::size_t(c.groups);
        o.padding_mode = c.mode;
        return o;
    }
}  // namespace xconv_test

#endif
