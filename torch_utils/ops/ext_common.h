// Host-side glue shared by the .cpp files of raycond's kernels: library namespace, checks and a
// parallel CPU loop. Not seen by the device compiler's kernels.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/DeviceGuard.h>
#include <torch/library.h>

// The CPU-only build registers its ops as torch.ops.raycond_ops_cpu, the CUDA build (which also
// contains the CPU path) as torch.ops.raycond_ops, so both can be loaded in one process.
#ifndef RAYCOND_NS
#define RAYCOND_NS raycond_ops_cpu
#endif
#define RC_LIBRARY_FRAGMENT(ns, m) TORCH_LIBRARY_FRAGMENT(ns, m)
#define RC_LIBRARY_IMPL(ns, k, m) TORCH_LIBRARY_IMPL(ns, k, m)

namespace raycond {

// Call body(i) for i in [0, size) on all of ATen's CPU threads.
template <typename F>
inline void cpu_loop(int64_t size, int64_t grain, const F& body) {
    at::parallel_for(0, size, grain, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) body(i);
    });
}

} // namespace raycond
