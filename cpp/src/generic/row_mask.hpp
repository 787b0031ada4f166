// where= masks read inside the row kernels' own passes (backward.hpp's
// gradients, softmax_rows.hpp's pipelined and streamed rows): one byte per
// entry, contiguous along the row, mask rows a fixed distance apart (0: one
// row for all, a (1, C) mask). A kernel takes M = NoRowMask (the plain rows,
// every lane included) or RowMask<V>, and per row the lanes of its vectors:
// `at(i)`, the N lanes from i; `range(k, w)`, the w < N lanes from k; `m`,
// the row's bytes (null for NoRowMask). `from(r)`: the mask of the rows
// from r.
#pragma once

#include <cstddef>

#include "generic/target.hpp"

namespace fastsoftmax::FASTSOFTMAX_TARGET {

// The plain rows: no lanes to compute (a kernel tests `kMasked`, or the
// type, before using them).
struct NoRowMask {
    struct Row {
        static constexpr const unsigned char* m = nullptr;
    };
    Row row(std::size_t) const { return {}; }
    NoRowMask from(std::size_t) const { return {}; }
};

template <class V>
struct MaskRow {
    const unsigned char* m;
    using mask = decltype(V::bytes_nonzero(nullptr));
    mask at(std::size_t i) const { return V::bytes_nonzero(m + i); }
    // The w < N lanes from k, the rest clear (reads m[k, k + w) only).
    mask range(std::size_t k, std::size_t w) const { return V::bytes_nonzero_partial(m + k, w); }
};

template <class V>
struct RowMask {
    const unsigned char* m;
    std::ptrdiff_t rows_apart;
    MaskRow<V> row(std::size_t r) const {
        return {m + static_cast<std::ptrdiff_t>(r) * rows_apart};
    }
    RowMask from(std::size_t r) const { return {row(r).m, rows_apart}; }  // rows from r
};

}  // namespace fastsoftmax::FASTSOFTMAX_TARGET
