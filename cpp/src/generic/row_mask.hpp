// where= masks read inside the row kernels' own passes (backward.hpp's
// gradients, softmax_rows.hpp's pipelined and streamed rows): one byte per
// entry, contiguous along the row, mask rows a fixed distance apart (0: one
// row for all, a (1, C) mask). A kernel takes M = NoRowMask (the plain rows,
// every lane included) or RowMask<V>, and per row the lanes of its vectors:
// `at(i)`, the N lanes from i; `range(n, k, w)`, w < N lanes at the start or
// the end of a row of n; `last(n)`, those of its last, partial vector.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "generic/target.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
inline constexpr bool kLittleEndian = false;
#else
inline constexpr bool kLittleEndian = true;
#endif

// The plain rows: no lanes to compute (a kernel tests `kMasked` before
// using them).
struct NoRowMask {
    struct Row {
        int last(std::size_t) const { return 0; }
    };
    Row row(std::size_t) const { return {}; }
};

template <class V>
struct MaskRow {
    const unsigned char* m;
    using mask = decltype(V::bytes_nonzero(nullptr));
    mask at(std::size_t i) const { return V::bytes_nonzero(m + i); }
    // The w < N lanes from k of a row of n, the row's first (k = 0) or last
    // (k + w = n), zeros after: from a shift of the row's first or last N
    // bytes where it has that many (not from a byte loop, whose stores the
    // vector load would wait for).
    mask range(std::size_t n, std::size_t k, std::size_t w) const {
        alignas(16) unsigned char b[V::N < 8 ? 8 : V::N] = {};
        if (n >= V::N && kLittleEndian && (k == 0 || k + w == n)) {
            const unsigned char* const p = k == 0 ? m : m + n - V::N;
            const std::size_t s = 8 * (V::N - w);  // bits out
            if constexpr (V::N <= 8) {
                std::uint64_t u = 0;
                std::memcpy(&u, p, V::N);
                u = k == 0 ? u & ((std::uint64_t{1} << (8 * w)) - 1) : u >> s;
                std::memcpy(b, &u, sizeof u);
            } else {
                static_assert(V::N == 16, "vectors of at most 16 lanes");
                std::uint64_t lo, hi;  // (s: 8 to 120)
                std::memcpy(&lo, p, 8);
                std::memcpy(&hi, p + 8, 8);
                if (k == 0) {
                    lo = s > 64 ? lo & ((std::uint64_t{1} << (128 - s)) - 1) : lo;
                    hi = s >= 64 ? 0 : hi & ((std::uint64_t{1} << (64 - s)) - 1);
                } else {
                    lo = s >= 64 ? hi >> (s - 64) : (lo >> s) | (hi << (64 - s));
                    hi = s >= 64 ? 0 : hi >> s;
                }
                std::memcpy(b, &lo, 8);
                std::memcpy(b + 8, &hi, 8);
            }
        } else {
            for (std::size_t j = 0; j < w && j < sizeof b; ++j) b[j] = m[k + j];
        }
        return V::bytes_nonzero(b);
    }
    // The lanes of the row's last vector when partial (n % N of them), else
    // any (unused).
    mask last(std::size_t n) const { return n % V::N ? range(n, n - n % V::N, n % V::N) : at(0); }
};

template <class V>
struct RowMask {
    const unsigned char* m;
    std::ptrdiff_t rows_apart;
    MaskRow<V> row(std::size_t r) const {
        return {m + static_cast<std::ptrdiff_t>(r) * rows_apart};
    }
};

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
