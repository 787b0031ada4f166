// The vector contract (arch/README.md), checked at compile time: each
// target's vector wrapper V (arch/<isa>/vec.hpp) must provide every type,
// constant and operation the generic algorithms use, with the signatures
// below. instantiate.cpp static_asserts VecContract<V> for each wrapper, so
// a missing or mistyped member is reported by name at the wrapper, not deep
// inside a kernel.
#pragma once

#include <cstddef>
#include <type_traits>

// Registers as template arguments (is_same<decltype(...), reg>) drop their
// alignment attributes, which GCC warns about; only the types matter here.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

namespace fastsoftmax::contract {

template <class...>
using void_t = void;

// FASTSOFTMAX_REQUIRE(Name, expression in V, T, S, reg, mask, Wide): a trait
// that is true when the expression is well-formed and has the given type.
#define FASTSOFTMAX_REQUIRE(Name, Type, ...) \
    template <class V, class = void>         \
    struct Name : std::false_type {};        \
    template <class V>                       \
    struct Name<V, void_t<decltype(__VA_ARGS__)>> : std::is_same<decltype(__VA_ARGS__), Type> {};

// (values of the wrapper's types, for the expressions below)
template <class X>
X val();

FASTSOFTMAX_REQUIRE(HasLoad, typename V::reg, V::load(val<const typename V::S*>()))
FASTSOFTMAX_REQUIRE(HasLoadPartial, typename V::reg,
                    V::load_partial(val<const typename V::S*>(), std::size_t{},
                                    val<typename V::T>()))
FASTSOFTMAX_REQUIRE(HasStore, void, V::store(val<typename V::S*>(), val<typename V::reg>()))
FASTSOFTMAX_REQUIRE(HasStorePartial, void,
                    V::store_partial(val<typename V::S*>(), std::size_t{}, val<typename V::reg>()))
FASTSOFTMAX_REQUIRE(HasStream, void, V::stream(val<typename V::S*>(), val<typename V::reg>()))
FASTSOFTMAX_REQUIRE(HasStreamFence, void, V::stream_fence())
FASTSOFTMAX_REQUIRE(HasSet1, typename V::reg, V::set1(val<typename V::T>()))
FASTSOFTMAX_REQUIRE(HasZero, typename V::reg, V::zero())
#define FASTSOFTMAX_REQUIRE_BINARY(Name, op)   \
    FASTSOFTMAX_REQUIRE(Name, typename V::reg, \
                        V::op(val<typename V::reg>(), val<typename V::reg>()))
FASTSOFTMAX_REQUIRE_BINARY(HasAdd, add)
FASTSOFTMAX_REQUIRE_BINARY(HasSub, sub)
FASTSOFTMAX_REQUIRE_BINARY(HasMul, mul)
FASTSOFTMAX_REQUIRE_BINARY(HasDiv, div)
FASTSOFTMAX_REQUIRE_BINARY(HasMax, max)
FASTSOFTMAX_REQUIRE_BINARY(HasMin, min)
FASTSOFTMAX_REQUIRE(HasAbs, typename V::reg, V::abs(val<typename V::reg>()))
FASTSOFTMAX_REQUIRE(HasFmadd, typename V::reg,
                    V::fmadd(val<typename V::reg>(), val<typename V::reg>(),
                             val<typename V::reg>()))
FASTSOFTMAX_REQUIRE(HasFnmadd, typename V::reg,
                    V::fnmadd(val<typename V::reg>(), val<typename V::reg>(),
                              val<typename V::reg>()))
FASTSOFTMAX_REQUIRE(HasScalePow2OrZero, typename V::reg,
                    V::scale_pow2_or_zero(val<typename V::reg>(), val<typename V::reg>(),
                                          val<typename V::mask>()))
FASTSOFTMAX_REQUIRE(HasFrexp12, void,
                    V::frexp12(val<typename V::reg>(), val<typename V::reg&>(),
                               val<typename V::reg&>()))
#define FASTSOFTMAX_REQUIRE_COMPARE(Name, op)   \
    FASTSOFTMAX_REQUIRE(Name, typename V::mask, \
                        V::op(val<typename V::reg>(), val<typename V::reg>()))
FASTSOFTMAX_REQUIRE_COMPARE(HasLt, lt)
FASTSOFTMAX_REQUIRE_COMPARE(HasGt, gt)
FASTSOFTMAX_REQUIRE_COMPARE(HasEq, eq)
FASTSOFTMAX_REQUIRE_COMPARE(HasGe, ge)
FASTSOFTMAX_REQUIRE(HasIsnan, typename V::mask, V::isnan(val<typename V::reg>()))
FASTSOFTMAX_REQUIRE(HasNotFinite, typename V::mask, V::not_finite(val<typename V::reg>()))
FASTSOFTMAX_REQUIRE(HasMaskOr, typename V::mask,
                    V::mask_or(val<typename V::mask>(), val<typename V::mask>()))
FASTSOFTMAX_REQUIRE(HasBytesNonzero, typename V::mask,
                    V::bytes_nonzero(val<const unsigned char*>()))
FASTSOFTMAX_REQUIRE(HasBytesNonzeroPartial, typename V::mask,
                    V::bytes_nonzero_partial(val<const unsigned char*>(), val<std::size_t>()))
FASTSOFTMAX_REQUIRE(HasSelect, typename V::reg,
                    V::select(val<typename V::mask>(), val<typename V::reg>(),
                              val<typename V::reg>()))
FASTSOFTMAX_REQUIRE(HasHmax, typename V::T, V::hmax(val<typename V::reg>()))
FASTSOFTMAX_REQUIRE(HasWideZero, typename V::Wide, V::wide_zero())
FASTSOFTMAX_REQUIRE(HasWideAdd, void, V::wide_add(val<typename V::Wide&>(), val<typename V::reg>()))
FASTSOFTMAX_REQUIRE(HasWideHsum, double, V::wide_hsum(val<const typename V::Wide&>()))
FASTSOFTMAX_REQUIRE(HasWideStore, void,
                    V::wide_store(val<const typename V::Wide&>(), val<double*>()))
FASTSOFTMAX_REQUIRE(HasWideRound, typename V::reg, V::wide_round(val<const typename V::Wide&>()))
FASTSOFTMAX_REQUIRE(HasWideReciprocal, void,
                    V::wide_reciprocal(val<const typename V::Wide&>(), val<typename V::reg&>(),
                                       val<typename V::reg&>()))
#undef FASTSOFTMAX_REQUIRE_BINARY
#undef FASTSOFTMAX_REQUIRE_COMPARE
#undef FASTSOFTMAX_REQUIRE

// The types and constants: T (compute), S (storage), Compute (the wrapper
// of T storage), reg, mask, Wide, N and kSlowSubnormals.
template <class V, class = void>
struct HasTypes : std::false_type {};
template <class V>
struct HasTypes<
    V, void_t<typename V::T, typename V::S, typename V::Compute, typename V::reg, typename V::mask,
              typename V::Wide, decltype(V::N), decltype(V::kSlowSubnormals)>>
    : std::bool_constant<std::is_same_v<typename V::Compute::T, typename V::T> &&
                         std::is_same_v<typename V::Compute::S, typename V::T> &&
                         std::is_floating_point_v<typename V::T> && (V::N >= 1) && (V::N <= 16)> {};

}  // namespace fastsoftmax::contract

namespace fastsoftmax {

// One static_assert per requirement, so that the compiler names the missing
// member; VecContract<V>::value is true when they all hold.
template <class V>
struct VecContract {
    static_assert(contract::HasTypes<V>::value, "types T, S, Compute, reg, mask, Wide; N <= 16");
    static_assert(contract::HasLoad<V>::value, "reg load(const S*)");
    static_assert(contract::HasBytesNonzero<V>::value, "mask bytes_nonzero(const unsigned char*)");
    static_assert(contract::HasBytesNonzeroPartial<V>::value,
                  "mask bytes_nonzero_partial(const unsigned char*, size_t)");
    static_assert(contract::HasLoadPartial<V>::value, "reg load_partial(const S*, size_t, T)");
    static_assert(contract::HasStore<V>::value, "void store(S*, reg)");
    static_assert(contract::HasStorePartial<V>::value, "void store_partial(S*, size_t, reg)");
    static_assert(contract::HasStream<V>::value, "void stream(S*, reg)");
    static_assert(contract::HasStreamFence<V>::value, "void stream_fence()");
    static_assert(contract::HasSet1<V>::value, "reg set1(T)");
    static_assert(contract::HasZero<V>::value, "reg zero()");
    static_assert(contract::HasAdd<V>::value && contract::HasSub<V>::value &&
                      contract::HasMul<V>::value && contract::HasDiv<V>::value,
                  "reg add/sub/mul/div(reg, reg)");
    static_assert(contract::HasMax<V>::value && contract::HasMin<V>::value,
                  "reg max/min(reg, reg), x86 NaN semantics");
    static_assert(contract::HasAbs<V>::value, "reg abs(reg)");
    static_assert(contract::HasFmadd<V>::value && contract::HasFnmadd<V>::value,
                  "reg fmadd/fnmadd(reg, reg, reg)");
    static_assert(contract::HasScalePow2OrZero<V>::value, "reg scale_pow2_or_zero(reg, reg, mask)");
    static_assert(contract::HasFrexp12<V>::value, "void frexp12(reg, reg&, reg&)");
    static_assert(contract::HasLt<V>::value && contract::HasGt<V>::value &&
                      contract::HasEq<V>::value && contract::HasGe<V>::value,
                  "mask lt/gt/eq/ge(reg, reg), false when either is NaN");
    static_assert(contract::HasIsnan<V>::value && contract::HasNotFinite<V>::value,
                  "mask isnan/not_finite(reg)");
    static_assert(contract::HasMaskOr<V>::value, "mask mask_or(mask, mask)");
    static_assert(contract::HasSelect<V>::value, "reg select(mask, reg, reg)");
    static_assert(contract::HasHmax<V>::value, "T hmax(reg)");
    static_assert(contract::HasWideZero<V>::value && contract::HasWideAdd<V>::value &&
                      contract::HasWideHsum<V>::value && contract::HasWideStore<V>::value &&
                      contract::HasWideRound<V>::value && contract::HasWideReciprocal<V>::value,
                  "the wide accumulator: wide_zero/add/hsum/store/round/reciprocal");
    static constexpr bool value = true;
};

}  // namespace fastsoftmax

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
