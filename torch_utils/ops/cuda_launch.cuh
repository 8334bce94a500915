// Thin CUDA launch helpers shared by the .cu files: a grid-stride loop that calls one shared
// __host__ __device__ element function per index, on the current stream and device.
#pragma once
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>

namespace raycond {

template <typename P, void (*Body)(const P&, int64_t)>
__global__ void elementwise_kernel(P p, int64_t size) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < size;
         i += (int64_t)blockDim.x * gridDim.x)
        Body(p, i);
}

// Launch Body over [0, size) on the current device and stream (the .cpp caller sets the device).
template <typename P, void (*Body)(const P&, int64_t)>
void launch_elementwise(const P& p, int64_t size) {
    if (size <= 0) return;
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>((size + threads - 1) / threads, 65535LL * 8);
    elementwise_kernel<P, Body><<<(unsigned)blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(p, size);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

} // namespace raycond
