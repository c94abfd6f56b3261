// xconv: 2-D convolution as unfold / fold + GEMM, with hand-written backward passes.
// The umbrella header: includes the whole public API.
#ifndef XCONV_XCONV_HPP
#define XCONV_XCONV_HPP

#include "config.hpp"
#include "options.hpp"
#include "unfold.hpp"
#include "gemm.hpp"
#include "conv2d.hpp"
#include "conv_transpose2d.hpp"
#include "layers.hpp"

#endif
