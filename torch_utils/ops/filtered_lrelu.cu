// CUDA launches of filtered_lrelu's two kernels: one thread per element calling the shared
// upfirdn2d_lrelu_element() / sign_grad_element() from filtered_lrelu.h.
#include "cuda_launch.cuh"
#include "filtered_lrelu.h"

namespace raycond {

template <typename T>
__device__ void upfirdn2d_lrelu_body(const UpfirdnParams<T>& p, int64_t i) {
    upfirdn2d_lrelu_element(p, i);
}

template <typename T>
__device__ void sign_grad_body(const SignGradParams<T>& p, int64_t i) { sign_grad_element(p, i); }

template <typename T>
void upfirdn2d_lrelu_cuda(const UpfirdnParams<T>& p) {
    launch_elementwise<UpfirdnParams<T>, upfirdn2d_lrelu_body<T>>(p, p.n * p.c * p.out_h * p.out_w);
}

template <typename T>
void sign_grad_cuda(const SignGradParams<T>& p) {
    launch_elementwise<SignGradParams<T>, sign_grad_body<T>>(p, p.size);
}

#define RC_INSTANTIATE(T)                                              \
    template void upfirdn2d_lrelu_cuda<T>(const UpfirdnParams<T>&);    \
    template void sign_grad_cuda<T>(const SignGradParams<T>&);
RC_INSTANTIATE(float)
RC_INSTANTIATE(double)
RC_INSTANTIATE(c10::Half)
RC_INSTANTIATE(c10::BFloat16)

} // namespace raycond
