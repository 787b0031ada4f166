// One N-d operand of the drivers (driver.hpp, cross_entropy.hpp): a data
// pointer and one stride per dimension, in elements (negative, or 0 where a
// dimension addresses nothing or an operand has one value per example).
#pragma once

#include <cstddef>
#include <vector>

namespace fastsoftmax {

template <class T>
struct Strided {
    T* data = nullptr;
    std::vector<std::ptrdiff_t> strides;
};

}  // namespace fastsoftmax
