// Vectorized exp and log, written once over a vector wrapper V (see
// cpp/src/arch/<isa>/vec.hpp) and compiled for every target.
//
// exp(x): n = round(x / ln2), r = x - n*ln2 with ln2 split in a short high
//   part (n*ln2_hi is exact) and a low part, so |r| <= ln2/2 to within a few
//   ulp; exp(r) by a polynomial; the result is p * 2^n, scaled in a way that
//   gives correctly rounded subnormals and overflows to +inf.
//   float : degree-6 minimax polynomial (relative error 2.0e-9 on the interval).
//   double: degree-13 Taylor polynomial (truncation error < 5e-18).
//   Valid for every input: x < -104 (float) / -746 (double) gives +0,
//   x > 88.8 / 709.8 gives +inf, exp(-inf) = 0, exp(+inf) = +inf, NaN -> NaN.
//   Measured maximum error (bench/ulp_exp_log.py, bench/RESULTS.md): see there;
//   the tests assert <= 2 ulp where the result is a normal number.
//
// log(x): x = m * 2^e with m in [sqrt(1/2), sqrt(2)), f = m - 1 (exact),
//   s = f / (2 + f), log(1+f) = f - (f^2/2 - s*(f^2/2 + R(s^2))) where R is the
//   series of 2*atanh(s) - 2s (fdlibm's arrangement: f exact, the correction
//   small). Taylor terms up to s^8 (float) and s^20 (double): truncation below
//   3e-9 / 1e-18 relative. log(0) = -inf, log(x<0) = NaN, log(+inf) = +inf,
//   NaN -> NaN, subnormal inputs are exact-scaled. Valid for every input.
//
// tanh(x) (for the logit soft-capping of cross_entropy): for |x| < 0.55 the
//   odd Taylor series x + x^3 * P(x^2), 10 terms (float) / 20 terms (double),
//   truncation below 1e-9 / 1e-17 relative; above, 1 - 2 / (exp(2|x|) + 1),
//   where tanh >= 0.5 keeps the subtraction from cancelling. Sign restored
//   last. tanh(+-inf) = +-1, NaN -> NaN. Valid for every input; the tests
//   assert <= 4 ulp against NumPy's tanh.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>

#include "generic/target.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

template <class T>
struct MathConsts;

template <>
struct MathConsts<float> {
    static constexpr float log2e = 1.44269504088896341f;
    static constexpr float ln2_hi = 0.693359375f;      // 9 significant bits
    static constexpr float ln2_lo = -2.12194440e-4f;   // ln2 - ln2_hi
    static constexpr float exp_lo = -104.0f;           // exp(-104) rounds to 0
    static constexpr float exp_hi = 88.8f;             // exp(88.8) overflows
    static constexpr float round_magic = 12582912.0f;  // 1.5 * 2^23
    static constexpr float exp_poly[] = {              // exp(r) ~ 1 + r*(c1 + r*(c2 + ...))
                                         1.0f,
                                         0.4999999403953552f,
                                         0.16666431725025177f,
                                         0.04166800528764725f,
                                         0.008374178782105446f,
                                         0.0013843626948073506f};
    static constexpr float sqrt2 = 1.41421356237309505f;
    static constexpr float log_poly[] = {
        // 2/3, 2/5, 2/7, 2/9
        0.666666666666666667f, 0.4f, 0.285714285714285714f, 0.222222222222222222f};
    static constexpr float tanh_poly[] = {// tanh(x) = x + x^3 * P(x^2)
                                          -0.333333333f,   0.133333333f,    -0.0539682540f,
                                          0.0218694885f,   -0.00886323553f, 0.00359212804f,
                                          -0.00145583439f, 0.000590027441f, -0.000239129114f};
};

template <>
struct MathConsts<double> {
    // tanh(x) = x + x^3 * P(x^2): the series coefficients after the first
    static constexpr double tanh_poly[] = {
        -0.33333333333333331,    0.13333333333333333,     -0.053968253968253971,
        0.021869488536155203,    -0.0088632355299021973,  0.0035921280365724811,
        -0.0014558343870513183,  0.00059002744094558595,  -0.00023912911424355248,
        9.6915379569294509e-05,  -3.9278323883316833e-05, 1.5918905069328964e-05,
        -6.4516892156554306e-06, 2.6147711512907546e-06,  -1.0597268320104654e-06,
        4.2949110782738057e-07,  -1.7406618963571648e-07, 7.0546369464009681e-08,
        -2.859136662305254e-08};
    static constexpr double log2e = 1.44269504088896338700e+00;
    static constexpr double ln2_hi = 6.93147180369123816490e-01;  // 32 significant bits
    static constexpr double ln2_lo = 1.90821492927058770002e-10;
    static constexpr double exp_lo = -746.0;
    static constexpr double exp_hi = 709.8;
    static constexpr double round_magic = 6755399441055744.0;  // 1.5 * 2^52
    static constexpr double exp_poly[] = {                     // 1/k!, k = 1..13
                                          1.0,
                                          1.0 / 2,
                                          1.0 / 6,
                                          1.0 / 24,
                                          1.0 / 120,
                                          1.0 / 720,
                                          1.0 / 5040,
                                          1.0 / 40320,
                                          1.0 / 362880,
                                          1.0 / 3628800,
                                          1.0 / 39916800,
                                          1.0 / 479001600,
                                          1.0 / 6227020800};
    static constexpr double sqrt2 = 1.41421356237309505;
    static constexpr double log_poly[] = {// 2/(2k+1), k = 1..10
                                          2.0 / 3,  2.0 / 5,  2.0 / 7,  2.0 / 9,  2.0 / 11,
                                          2.0 / 13, 2.0 / 15, 2.0 / 17, 2.0 / 19, 2.0 / 21};
};

// Horner evaluation of c[0] + z*(c[1] + z*(...)) .
template <class V, std::size_t K>
inline typename V::reg horner(typename V::reg z, const typename V::T (&c)[K]) {
    auto acc = V::set1(c[K - 1]);
    for (std::size_t k = K - 1; k-- > 0;) acc = V::fmadd(acc, z, V::set1(c[k]));
    return acc;
}

// exp(x + err) for x in [exp_lo, exp_hi] (or NaN) and |err| tiny, or 0 in
// the lanes of `zero`: the reduction, the polynomial and the scaling shared
// by vexp and vexp_sub.
template <class V, bool kErr>
inline typename V::reg exp_clamped(typename V::reg x, typename V::reg err,
                                   typename V::mask zero = typename V::mask{}) {
    using T = typename V::T;
    using C = MathConsts<T>;
    // n = round(x / ln2): adding 1.5 * 2^mantissa_bits rounds to an integer
    // (to nearest even) on the FMA itself; subtracting it back is exact.
    const auto t = V::fmadd(x, V::set1(C::log2e), V::set1(C::round_magic));
    const auto n = V::sub(t, V::set1(C::round_magic));
    auto r = V::fnmadd(n, V::set1(C::ln2_hi), x);
    r = V::fnmadd(n, V::set1(C::ln2_lo), r);
    if constexpr (kErr) r = V::add(r, err);
    const auto q = horner<V>(r, C::exp_poly);  // exp(r) = 1 + r*q
    const auto p = V::fmadd(r, q, V::set1(T(1)));
    return V::scale_pow2_or_zero(p, n, zero);  // 0 where `zero` is set
}

template <class V>
inline typename V::reg vexp(typename V::reg x) {
    using C = MathConsts<typename V::T>;
    // Operand order keeps NaN: x86 max/min return the second operand on NaN.
    x = V::min(V::set1(C::exp_hi), x);
    // x < exp_lo (e.g. -inf: masked logits, the fill of a row's tail) gives
    // exactly 0 without an underflowing scaling, which costs a microcode
    // assist (AVX-512 on Zen 4 too: log_softmax of rows with 20% -inf took
    // 11x as long before its scalef was masked). Real subnormal results still
    // take the (correct, slower) scaling.
    const auto zero = V::lt(x, V::set1(C::exp_lo));  // false for NaN
    if constexpr (V::kSlowSubnormals)
        return exp_clamped<V, false>(V::select(zero, V::zero(), x), x, zero);
    else
        return exp_clamped<V, false>(V::max(V::set1(C::exp_lo), x), x, zero);
}

// The floor below which vexp_sub returns 0: m + exp_lo, or further below m
// when |m| is so large that m + exp_lo would round to m itself; never below
// the lowest finite value (so -inf stays below it). With a temperature
// (exp((x - m) * s): generic/temperature.hpp), span = -exp_lo / s instead of
// -exp_lo: below m - span, (x - m) * s < exp_lo.
template <class T>
inline T exp_floor(T m, T span = -MathConsts<T>::exp_lo) {
    constexpr T rel = T(1) / T(1 << 20);
    const T gap = std::fabs(m) * rel;
    const T lo = m - (gap > span ? gap : span);
    return lo > std::numeric_limits<T>::lowest() ? lo : std::numeric_limits<T>::lowest();
}

template <class V>
inline typename V::reg exp_floor(
    typename V::reg m,  // per lane, for finite m
    typename V::reg span = V::set1(-MathConsts<typename V::T>::exp_lo)) {
    using T = typename V::T;
    constexpr T rel = T(1) / T(1 << 20);
    const auto gap = V::max(V::mul(m, V::set1(rel)), V::mul(m, V::set1(-rel)));
    const auto lo = V::sub(m, V::max(gap, span));
    return V::max(V::set1(std::numeric_limits<T>::lowest()), lo);
}

// exp(x - m) for x <= m (the row maximum, or a running one), as accurate as
// exp of the exact difference: the rounding error of x - m (which alone can
// cost |x - m| * 6e-8 relative in float) is recovered with TwoSum and added
// to the reduced argument. m_lo = exp_floor(m): x below it (-inf included:
// masked logits, the fill of row tails) gives exactly 0.
template <class V>
inline typename V::reg vexp_sub(typename V::reg x, typename V::reg m, typename V::reg m_lo) {
    using C = MathConsts<typename V::T>;
    const auto zero = V::lt(x, m_lo);  // false for NaN
    // Lanes below the floor (-inf included) are zeroed at the end; whatever
    // they compute meanwhile (NaN for -inf) is discarded. Where an underflowing
    // multiply costs an assist, they compute exp(0) instead.
    const auto xc = V::kSlowSubnormals ? V::select(zero, m, x) : x;
    const auto d = V::sub(xc, m);
    const auto bb = V::sub(d, xc);  // TwoSum(xc, -m): err = (xc - m) - d exactly
    const auto err = V::sub(V::sub(xc, V::sub(d, bb)), V::add(m, bb));
    return exp_clamped<V, true>(V::max(V::set1(C::exp_lo), d), err, zero);  // max keeps NaN
}

// exp(d * s) for a scale s in [kMinFold, kMaxFold], at the cost of exp(d):
// the scale is folded into the constants instead of multiplying d first.
// With c = ln2 / s (split in c_hi, short enough that n * c_hi is exact, and
// c_lo) the reduction r' = d - n * c is r / s, r = d * s - n * ln2, and the
// polynomial in r = s * r' is one in r' with coefficients poly[j] * s^(j+1)
// (exp(r) = 1 + r' * q'(r')). Each coefficient is rounded once, so the result
// is as accurate as exp of the exact product d * s (the outer range keeps
// s^(K) a normal number of T).
template <class V>
struct FoldedExp {
    using T = typename V::T;
    using reg = typename V::reg;
    using M = MathConsts<T>;
    static constexpr std::size_t K = sizeof(M::exp_poly) / sizeof(M::exp_poly[0]);
    static constexpr double kMinFold = 1.0 / 65536, kMaxFold = 65536;
    static bool folds(double s) { return s >= kMinFold && s <= kMaxFold; }

    explicit FoldedExp(double s) {
        // c = ln2 / s to about 2^-100 relative: ln2 as two doubles, the
        // quotient's remainder by an fma
        constexpr double ln2 = 6.93147180559945286227e-01, ln2_lo = 2.31904681384629955842e-17;
        const double q = ln2 / s;
        const double q2 = (std::fma(-q, s, ln2) + ln2_lo) / s;
        // c_hi: q to 12 (float) or 32 (double) significant bits, so that n * c_hi
        // is exact for every n the reduction takes (|n| < 2^8, 2^11)
        const int bits = sizeof(T) == 4 ? 12 : 32;
        int e;
        std::frexp(q, &e);
        const double c_hi = std::ldexp(std::nearbyint(std::ldexp(q, bits - e)), e - bits);
        hi = V::set1(static_cast<T>(c_hi));
        lo = V::set1(static_cast<T>((q - c_hi) + q2));
        s_log2e = V::set1(static_cast<T>(s * static_cast<double>(M::log2e)));
        double sk = s;
        for (std::size_t j = 0; j < K; ++j, sk *= s)
            poly[j] = V::set1(static_cast<T>(static_cast<double>(M::exp_poly[j]) * sk));
    }
    // exp((d + err) * s) for (d + err) * s in [exp_lo, exp_hi] (or NaN), 0 in
    // the lanes of `zero`
    template <bool kErr>
    reg clamped(reg d, reg err, typename V::mask zero) const {
        const auto t = V::fmadd(d, s_log2e, V::set1(M::round_magic));
        const auto n = V::sub(t, V::set1(M::round_magic));
        auto r = V::fnmadd(n, hi, d);  // exact (Sterbenz): n * c_hi is near d
        r = V::fnmadd(n, lo, r);
        if constexpr (kErr) r = V::add(r, err);
        auto q = poly[K - 1];
        for (std::size_t j = K - 1; j-- > 0;) q = V::fmadd(q, r, poly[j]);
        return V::scale_pow2_or_zero(V::fmadd(r, q, V::set1(T(1))), n, zero);
    }
    reg hi, lo, s_log2e;
    reg poly[K];
};

// (always inlined: out of line, the calls of a loop that takes several
// chunks' logs together run one after another)
template <class V>
__attribute__((always_inline)) inline typename V::reg vlog(typename V::reg x) {
    using T = typename V::T;
    using C = MathConsts<T>;
    typename V::reg m, e;
    V::frexp12(x, m, e);  // garbage for x <= 0, inf, NaN: fixed below
    const auto big = V::gt(m, V::set1(C::sqrt2));
    m = V::select(big, V::mul(m, V::set1(T(0.5))), m);
    e = V::select(big, V::add(e, V::set1(T(1))), e);
    const auto f = V::sub(m, V::set1(T(1)));
    const auto s = V::div(f, V::add(V::set1(T(2)), f));
    const auto z = V::mul(s, s);
    const auto R = V::mul(z, horner<V>(z, C::log_poly));
    const auto hfsq = V::mul(V::mul(V::set1(T(0.5)), f), f);
    // f - (hfsq - (s*(hfsq + R) + e*ln2_lo)) + e*ln2_hi
    auto t = V::fmadd(s, V::add(hfsq, R), V::mul(e, V::set1(C::ln2_lo)));
    t = V::sub(f, V::sub(hfsq, t));
    auto res = V::fmadd(e, V::set1(C::ln2_hi), t);

    constexpr T inf = std::numeric_limits<T>::infinity();
    constexpr T nan = std::numeric_limits<T>::quiet_NaN();
    res = V::select(V::eq(x, V::set1(inf)), V::set1(inf), res);
    res = V::select(V::eq(x, V::zero()), V::set1(-inf), res);
    res = V::select(V::mask_or(V::lt(x, V::zero()), V::isnan(x)), V::set1(nan), res);
    return res;
}

template <class V>
inline typename V::reg vtanh(typename V::reg x) {
    using T = typename V::T;
    const auto a = V::max(x, V::sub(V::zero(), x));  // |x|, NaN kept (second operand)
    const auto z = V::mul(a, a);
    const auto small = V::fmadd(V::mul(a, z), horner<V>(z, MathConsts<T>::tanh_poly), a);
    const auto e = vexp<V>(V::add(a, a));
    const auto large = V::sub(V::set1(T(1)), V::div(V::set1(T(2)), V::add(e, V::set1(T(1)))));
    const auto t = V::select(V::lt(a, V::set1(T(0.55))), small, large);  // NaN: large (NaN)
    // sign of x restored (tanh(+-0) = +-0: x itself where t = 0)
    return V::select(V::eq(t, V::zero()), x,
                     V::select(V::lt(x, V::zero()), V::sub(V::zero(), t), t));
}

// log1p(u) for finite u >= -1 (the cross-entropy's loss of a confident row):
// w = 1 + u rounded, then log(w) * u / (w - 1), which corrects the rounding
// of w. Within 2.3 ulp on every target (measured over 10^6 inputs from -1 to
// the largest finite value: 2.26 ulp in float32, 2.16 in float64;
// tests/test_vecmath.py); u = -1 gives -inf, NaN gives NaN, +inf gives NaN.
template <class V>
__attribute__((always_inline)) inline typename V::reg vlog1p(typename V::reg u) {
    using T = typename V::T;
    const auto w = V::add(V::set1(T(1)), u);
    const auto d = V::sub(w, V::set1(T(1)));
    return V::select(V::eq(d, V::zero()), u, V::mul(vlog<V>(w), V::div(u, d)));
}

// y[i] = f(x[i]) over contiguous arrays (the kernels the tests of the math
// itself call); `fill` pads the last partial vector with a value in f's domain.
template <class V, class F>
void map_array(const typename V::S* x, typename V::S* y, std::size_t n, typename V::T fill, F f) {
    std::size_t i = 0;
    for (; i + V::N <= n; i += V::N) V::store(y + i, f(V::load(x + i)));
    if (i < n) V::store_partial(y + i, n - i, f(V::load_partial(x + i, n - i, fill)));
}

template <class V>
void exp_array(const typename V::S* x, typename V::S* y, std::size_t n) {
    map_array<V>(x, y, n, 0, [](typename V::reg v) { return vexp<V>(v); });
}

template <class V>
void log_array(const typename V::S* x, typename V::S* y, std::size_t n) {
    map_array<V>(x, y, n, 1, [](typename V::reg v) { return vlog<V>(v); });
}

template <class V>
void log1p_array(const typename V::S* x, typename V::S* y, std::size_t n) {
    map_array<V>(x, y, n, 0, [](typename V::reg v) { return vlog1p<V>(v); });
}

template <class V>
void tanh_array(const typename V::S* x, typename V::S* y, std::size_t n) {
    map_array<V>(x, y, n, 0, [](typename V::reg v) { return vtanh<V>(v); });
}

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
