// filtered_lrelu: the activation epilogue with its sign bookkeeping and the backward's use of the
// recorded signs, shared by filtered_lrelu.cpp (CPU) and filtered_lrelu.cu (CUDA).
//
// Forward of the upsampling pass: v = upfirdn(x + b, fu); y = clamp(lrelu(v, slope) * gain).
// For each intermediate value one byte records which branch was taken, which is all the backward
// needs: d y / d v = gain (code 0, v > 0), gain * slope (code 1, v <= 0) or 0 (code 2, clamped).
#pragma once
#include "upfirdn2d.h"

namespace raycond {

enum SignCode : uint8_t { SIGN_POS = 0, SIGN_NEG = 1, SIGN_CLAMPED = 2 };

// Leaky ReLU, gain and clamp of one value; writes its sign code. torch.clamp lets the gradient
// through for |value| <= clamp, so only values strictly outside are marked clamped.
template <typename A>
RC_HD A lrelu_epilogue(A v, A slope, A gain, A clamp, uint8_t& code) {
    const bool pos = v > A(0);
    A y = (pos ? v : v * slope) * gain;
    code = pos ? SIGN_POS : SIGN_NEG;
    if (clamp >= A(0) && (y > clamp || y < -clamp)) {
        y = y > clamp ? clamp : -clamp;
        code = SIGN_CLAMPED;
    }
    return y;
}

// Derivative of lrelu_epilogue with respect to v, from its sign code.
template <typename A>
RC_HD A lrelu_slope_from_code(uint8_t code, A slope, A gain) {
    return code == SIGN_POS ? gain : (code == SIGN_NEG ? gain * slope : A(0));
}

template <typename T>
RC_HD void upfirdn2d_lrelu_element(const UpfirdnParams<T>& p, int64_t i) {
    using A = typename AccType<T>::type;
    int64_t n, c, oy, ox;
    upfirdn_coords(p, i, n, c, oy, ox);
    uint8_t code;
    A y = lrelu_epilogue(upfirdn_accumulate(p, n, c, oy, ox), A(p.slope), A(p.gain),
                         A(p.clamp), code);
    p.y[n * p.sy[0] + c * p.sy[1] + oy * p.sy[2] + ox * p.sy[3]] = T(y);
    p.s[i] = code;
}

// Backward through the epilogue: g * d y / d v, element i of contiguous g, s and out.
template <typename T>
struct SignGradParams {
    const T* g;
    const uint8_t* s;
    T* out;
    int64_t size;
    double slope, gain;
};

template <typename T>
RC_HD void sign_grad_element(const SignGradParams<T>& p, int64_t i) {
    using A = typename AccType<T>::type;
    p.out[i] = T(A(p.g[i]) * lrelu_slope_from_code(p.s[i], A(p.slope), A(p.gain)));
}

} // namespace raycond
