// CUDA launch of bias_act: one thread per element calling bias_act_element() from bias_act.h.
#include "cuda_launch.cuh"
#include "bias_act.h"

namespace raycond {

template <typename T>
__device__ void bias_act_body(const BiasActParams<T>& p, int64_t i) { bias_act_element(p, i); }

template <typename T>
void bias_act_cuda(const BiasActParams<T>& p) {
    launch_elementwise<BiasActParams<T>, bias_act_body<T>>(p, p.size);
}

template void bias_act_cuda<float>(const BiasActParams<float>&);
template void bias_act_cuda<double>(const BiasActParams<double>&);
template void bias_act_cuda<c10::Half>(const BiasActParams<c10::Half>&);
template void bias_act_cuda<c10::BFloat16>(const BiasActParams<c10::BFloat16>&);

} // namespace raycond
