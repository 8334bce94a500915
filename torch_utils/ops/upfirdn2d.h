// upfirdn2d: polyphase index/phase computation and the per-output-pixel accumulation, shared by
// the CPU loop in upfirdn2d.cpp, the CUDA kernel in upfirdn2d.cu and filtered_lrelu.
//
// Definition (correlation with the prepared filter fc, which the caller has flipped and scaled):
//   y[o] = sum_k xu[o * down + k] * fc[k],  xu[m] = x[(m - pad0) / up] when up divides m - pad0
// and the quotient is inside the image, 0 otherwise. Only taps that meet a real input sample are
// visited, so inserted zeros and padding cost nothing.
#pragma once
#include "common.h"

namespace raycond {

// The taps of one output coordinate along one axis: filter index k0 + t * up meets input index
// i0 + t, for t in [0, count).
struct Taps {
    int64_t k0, i0, count;
};

RC_HD Taps polyphase_taps(int64_t o, int64_t up, int64_t down, int64_t pad0, int64_t fsize,
                          int64_t in_size) {
    const int64_t m0 = o * down - pad0;     // position of tap 0 in the upsampled input frame
    int64_t k0 = floor_mod(-m0, up);        // first tap landing on a real sample
    int64_t i0 = (m0 + k0) / up;            // exact: up divides m0 + k0
    if (i0 < 0) {                           // skip taps left of the image
        k0 += -i0 * up;
        i0 = 0;
    }
    int64_t by_filter = k0 < fsize ? (fsize - k0 + up - 1) / up : 0;
    int64_t by_image = in_size > i0 ? in_size - i0 : 0;
    Taps t;
    t.k0 = k0;
    t.i0 = i0;
    t.count = by_filter < by_image ? by_filter : by_image;
    return t;
}

template <typename T>
struct UpfirdnParams {
    const T* x;            // input (N, C, in_h, in_w) with strides sx
    const float* f;        // prepared filter (fh, fw), contiguous, float32
    const T* b;            // optional per-channel bias added to real input samples (or nullptr)
    T* y;                  // output (N, C, out_h, out_w) with strides sy
    uint8_t* s;            // optional sign codes, contiguous (N, C, out_h, out_w) (filtered_lrelu)
    int64_t n, c, in_h, in_w, out_h, out_w;
    int64_t sx[4], sy[4];
    int64_t up_x, up_y, down_x, down_y, pad_x0, pad_y0, fw, fh;
    // filtered_lrelu epilogue (used when s != nullptr): leaky ReLU slope, gain, clamp (< 0: none).
    double slope, gain, clamp;
};

// Output element index -> (n, c, oy, ox) in logical NCHW order.
template <typename T>
RC_HD void upfirdn_coords(const UpfirdnParams<T>& p, int64_t i, int64_t& n, int64_t& c,
                          int64_t& oy, int64_t& ox) {
    ox = i % p.out_w;
    i /= p.out_w;
    oy = i % p.out_h;
    i /= p.out_h;
    c = i % p.c;
    n = i / p.c;
}

// Filtered (and optionally biased) value of one output pixel, in the accumulation type.
template <typename T>
RC_HD typename AccType<T>::type upfirdn_accumulate(const UpfirdnParams<T>& p, int64_t n,
                                                   int64_t c, int64_t oy, int64_t ox) {
    using A = typename AccType<T>::type;
    const Taps ty = polyphase_taps(oy, p.up_y, p.down_y, p.pad_y0, p.fh, p.in_h);
    const Taps tx = polyphase_taps(ox, p.up_x, p.down_x, p.pad_x0, p.fw, p.in_w);
    const T* xc = p.x + n * p.sx[0] + c * p.sx[1];
    const A bias = p.b ? A(p.b[c]) : A(0);
    A acc = A(0);
    for (int64_t a = 0; a < ty.count; ++a) {
        const float* frow = p.f + (ty.k0 + a * p.up_y) * p.fw;
        const T* xrow = xc + (ty.i0 + a) * p.sx[2];
        for (int64_t t = 0; t < tx.count; ++t)
            acc += (A(xrow[(tx.i0 + t) * p.sx[3]]) + bias) * A(frow[tx.k0 + t * p.up_x]);
    }
    return acc;
}

template <typename T>
RC_HD void upfirdn2d_element(const UpfirdnParams<T>& p, int64_t i) {
    int64_t n, c, oy, ox;
    upfirdn_coords(p, i, n, c, oy, ox);
    p.y[n * p.sy[0] + c * p.sy[1] + oy * p.sy[2] + ox * p.sy[3]] =
        T(upfirdn_accumulate(p, n, c, oy, ox));
}

} // namespace raycond
