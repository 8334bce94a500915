// upfirdn2d op: checks, allocation and the CPU loop; the CUDA launch lives in upfirdn2d.cu and the
// polyphase arithmetic in upfirdn2d.h.
#include "upfirdn2d_host.h"

namespace raycond {

#ifdef RAYCOND_WITH_CUDA
template <typename T> void upfirdn2d_cuda(const UpfirdnParams<T>& p);
#endif

static at::Tensor upfirdn2d_op(const at::Tensor& x, const at::Tensor& f_in,
                               const c10::optional<at::Tensor>& b_in, int64_t upx, int64_t upy,
                               int64_t downx, int64_t downy, int64_t px0, int64_t px1,
                               int64_t py0, int64_t py1) {
    at::Tensor b = optional_tensor(b_in);
    at::Tensor f = check_upfirdn_args(x, f_in, b, upx, upy, downx, downy);
    const at::OptionalDeviceGuard guard(x.device());
    at::Tensor y;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d", [&] {
        UpfirdnParams<scalar_t> p = prepare_upfirdn<scalar_t>(x, f, b, y, upx, upy, downx, downy,
                                                              px0, px1, py0, py1);
        const int64_t size = y.numel();
        if (x.is_cuda()) {
#ifdef RAYCOND_WITH_CUDA
            upfirdn2d_cuda<scalar_t>(p);
#else
            TORCH_CHECK(false, "upfirdn2d: this build has no CUDA kernels");
#endif
        } else {
            cpu_loop(size, 1024, [&](int64_t i) { upfirdn2d_element(p, i); });
        }
    });
    return y;
}

} // namespace raycond

RC_LIBRARY_FRAGMENT(RAYCOND_NS, m) {
    m.def("upfirdn2d(Tensor x, Tensor f, Tensor? b, int upx, int upy, int downx, int downy, "
          "int px0, int px1, int py0, int py1) -> Tensor");
}
RC_LIBRARY_IMPL(RAYCOND_NS, CPU, m) { m.impl("upfirdn2d", &raycond::upfirdn2d_op); }
#ifdef RAYCOND_WITH_CUDA
RC_LIBRARY_IMPL(RAYCOND_NS, CUDA, m) { m.impl("upfirdn2d", &raycond::upfirdn2d_op); }
#endif
