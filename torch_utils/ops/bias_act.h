// bias_act: per-element math (activation, its first and second derivative, gain, clamp) shared
// by the CPU loop in bias_act.cpp and the CUDA kernel in bias_act.cu.
#pragma once
#include "common.h"

namespace raycond {

// Activation ids: the `cuda_idx` column of activation_funcs in bias_act.py.
enum BiasActKind { ACT_LINEAR = 1, ACT_RELU, ACT_LRELU, ACT_TANH, ACT_SIGMOID, ACT_ELU, ACT_SELU,
                   ACT_SOFTPLUS, ACT_SWISH };

// Value (order 0), first (1) or second (2) derivative of activation `act` at z, matching
// torch.nn.functional (leaky_relu/relu: slope of the negative side for z <= 0; softplus: beta 1,
// threshold 20).
template <typename A>
RC_HD A act_eval(int act, int order, A z, A alpha) {
    const A one = A(1), zero = A(0);
    switch (act) {
    case ACT_RELU:
        return order == 0 ? (z > zero ? z : zero) : (order == 1 ? (z > zero ? one : zero) : zero);
    case ACT_LRELU:
        return order == 0 ? (z > zero ? z : z * alpha) : (order == 1 ? (z > zero ? one : alpha) : zero);
    case ACT_TANH: {
        A t = rc_tanh(z);
        return order == 0 ? t : (order == 1 ? one - t * t : A(-2) * t * (one - t * t));
    }
    case ACT_SIGMOID: {
        A s = one / (one + rc_exp(-z));
        return order == 0 ? s : (order == 1 ? s * (one - s) : s * (one - s) * (one - A(2) * s));
    }
    case ACT_ELU: {
        if (z > zero) return order == 0 ? z : (order == 1 ? one : zero);
        A e = rc_exp(z);
        return order == 0 ? e - one : e;
    }
    case ACT_SELU: {
        const A scale = A(1.0507009873554804934193349852946);
        const A a = A(1.6732632423543772848170429916717);
        if (z > zero) return order == 0 ? scale * z : (order == 1 ? scale : zero);
        A e = rc_exp(z);
        return order == 0 ? scale * a * (e - one) : scale * a * e;
    }
    case ACT_SOFTPLUS: {
        if (z > A(20)) return order == 0 ? z : (order == 1 ? one : zero);
        A s = one / (one + rc_exp(-z));
        return order == 0 ? rc_log1p(rc_exp(z)) : (order == 1 ? s : s * (one - s));
    }
    case ACT_SWISH: {
        A s = one / (one + rc_exp(-z));
        if (order == 0) return z * s;
        if (order == 1) return s * (one + z * (one - s));
        return s * (one - s) * (A(2) + z * (one - A(2) * s));
    }
    default:  // ACT_LINEAR
        return order == 0 ? z : (order == 1 ? one : zero);
    }
}

// Everything one element needs. grad == 0: y = clamp(gain * act(x + b)).
// grad == 1: y = x * gain * act'(z) * inside(z), grad == 2: y = x * gain * act''(z) * inside(z),
// where z = xref + b is the forward's pre-activation and inside(z) says that the forward value
// was not clamped (torch.clamp passes the gradient for |value| <= clamp).
template <typename T>
struct BiasActParams {
    const T* x;          // input (grad 0) or incoming gradient (grad 1, 2)
    const T* b;          // bias or nullptr
    const T* xref;       // forward input (grad 1, 2), or nullptr for grad 0
    T* y;                // output, same layout as x
    int64_t size;        // number of elements
    int64_t step_b;      // memory stride of the bias dimension
    int64_t size_b;      // length of the bias dimension
    int act, grad;
    double alpha, gain, clamp;  // clamp < 0: no clamping
};

template <typename T>
RC_HD void bias_act_element(const BiasActParams<T>& p, int64_t i) {
    using A = typename AccType<T>::type;
    const A alpha = A(p.alpha), gain = A(p.gain), clamp = A(p.clamp);
    A bias = p.b ? A(p.b[(i / p.step_b) % p.size_b]) : A(0);
    A x = A(p.x[i]);
    if (p.grad == 0) {
        A v = act_eval<A>(p.act, 0, x + bias, alpha) * gain;
        if (clamp >= A(0)) v = v > clamp ? clamp : (v < -clamp ? -clamp : v);
        p.y[i] = T(v);
        return;
    }
    A z = A(p.xref[i]) + bias;
    A d = act_eval<A>(p.act, p.grad, z, alpha) * gain;
    if (clamp >= A(0)) {
        A v = act_eval<A>(p.act, 0, z, alpha) * gain;
        if (v > clamp || v < -clamp) d = A(0);
    }
    p.y[i] = T(x * d);
}

} // namespace raycond
