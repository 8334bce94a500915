// CUDA launch of upfirdn2d: one thread per output pixel calling upfirdn2d_element() (upfirdn2d.h).
#include "cuda_launch.cuh"
#include "upfirdn2d.h"

namespace raycond {

template <typename T>
__device__ void upfirdn2d_body(const UpfirdnParams<T>& p, int64_t i) { upfirdn2d_element(p, i); }

template <typename T>
void upfirdn2d_cuda(const UpfirdnParams<T>& p) {
    launch_elementwise<UpfirdnParams<T>, upfirdn2d_body<T>>(p, p.n * p.c * p.out_h * p.out_w);
}

template void upfirdn2d_cuda<float>(const UpfirdnParams<float>&);
template void upfirdn2d_cuda<double>(const UpfirdnParams<double>&);
template void upfirdn2d_cuda<c10::Half>(const UpfirdnParams<c10::Half>&);
template void upfirdn2d_cuda<c10::BFloat16>(const UpfirdnParams<c10::BFloat16>&);

} // namespace raycond
