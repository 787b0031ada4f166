// Included first by every generic header: they are compiled once per target
// (arch/instantiate.cpp), inside namespace fastsoftmax::FASTSOFTMAX_TARGET,
// so each target's translation unit gets its own copy of every inline
// function, and none compiled with one target's flags is shared with another.
#pragma once

#ifndef FASTSOFTMAX_TARGET
#error "define FASTSOFTMAX_TARGET (the target's namespace) before including generic code"
#endif

#include <cstddef>
#include <type_traits>
#include <utility>

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// A compile-time index, and f(Const<0>{}), ..., f(Const<K - 1>{}) in order:
// loops whose index must be a constant (an instruction's immediate, a
// template argument), unrolled whatever the compiler's heuristics. (always
// inlined, and so should f be: GCC otherwise left such loops in calls of
// their own, their registers spilled across them)
template <std::size_t I>
using Const = std::integral_constant<std::size_t, I>;

template <class F, std::size_t... I>
__attribute__((always_inline)) inline void for_constants_of(F&& f, std::index_sequence<I...>) {
    (f(Const<I>{}), ...);
}
template <std::size_t K, class F>
__attribute__((always_inline)) inline void for_constants(F&& f) {
    for_constants_of(f, std::make_index_sequence<K>{});
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
