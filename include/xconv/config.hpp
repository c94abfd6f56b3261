// xconv: configuration and version. This header is the single source of the version number;
// CMakeLists.txt parses the three defines below.
#ifndef XCONV_CONFIG_HPP
#define XCONV_CONFIG_HPP

#define XCONV_VERSION_MAJOR 0
#define XCONV_VERSION_MINOR 1
#define XCONV_VERSION_PATCH 0

#define XCONV_STRINGIFY_IMPL(x) #x
#define XCONV_STRINGIFY(x) XCONV_STRINGIFY_IMPL(x)
#define XCONV_VERSION_STRING                                                                     \
    XCONV_STRINGIFY(XCONV_VERSION_MAJOR) "." XCONV_STRINGIFY(XCONV_VERSION_MINOR) "."            \
        XCONV_STRINGIFY(XCONV_VERSION_PATCH)

namespace xconv
{
    /// The library version as "major.minor.patch".
    inline constexpr const char* version = XCONV_VERSION_STRING;
}

#endif
