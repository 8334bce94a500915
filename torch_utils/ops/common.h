// Shared helpers of raycond's kernels, compiled both by nvcc (GPU) and by the host compiler
// (CPU build used by the tests): everything arithmetic lives in RC_HD functions so that the CPU
// tests exercise the same code the GPU runs.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define RC_HD __host__ __device__ __forceinline__
#else
#define RC_HD inline
#endif

namespace raycond {

// Accumulation type: fp16/bf16/fp32 accumulate in fp32, fp64 in fp64.
template <typename T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };

RC_HD float rc_exp(float x) { return ::expf(x); }
RC_HD double rc_exp(double x) { return ::exp(x); }
RC_HD float rc_tanh(float x) { return ::tanhf(x); }
RC_HD double rc_tanh(double x) { return ::tanh(x); }
RC_HD float rc_log1p(float x) { return ::log1pf(x); }
RC_HD double rc_log1p(double x) { return ::log1p(x); }

// Floor division and non-negative remainder for possibly negative numerators (b > 0).
RC_HD int64_t floor_div(int64_t a, int64_t b) { return (a >= 0) ? a / b : -((-a + b - 1) / b); }
RC_HD int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

} // namespace raycond
