// Runtime choice of the SIMD target: detected once, kept in one place.
#pragma once

#include <string>
#include <vector>

#include "fastsoftmax/kernels.hpp"

namespace fastsoftmax {

struct TargetInfo {
    std::string name;
    bool compiled;   // built into this extension
    bool supported;  // the CPU and OS can run it
};

// All targets this build knows, best first.
std::vector<TargetInfo> targets();

// The target in use. On first call it is the best supported one, or the one
// named by FASTSOFTMAX_SIMD (see dispatch.cpp).
const KernelTable& active_kernels();

// Switch the active target; throws std::invalid_argument for an unknown or
// unsupported name.
void set_target(const std::string& name);

// Any message produced while reading FASTSOFTMAX_SIMD (empty if none).
std::string env_warning();

}  // namespace fastsoftmax
