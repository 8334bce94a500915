// filtered_lrelu ops: the upsampling pass with the fused leaky-ReLU epilogue (recording sign
// codes) and the backward through those codes. CPU loops here, CUDA launches in
// filtered_lrelu.cu, arithmetic in filtered_lrelu.h. The downsampling pass is plain upfirdn2d.
#include "upfirdn2d_host.h"
#include "filtered_lrelu.h"

namespace raycond {

#ifdef RAYCOND_WITH_CUDA
template <typename T> void upfirdn2d_lrelu_cuda(const UpfirdnParams<T>& p);
template <typename T> void sign_grad_cuda(const SignGradParams<T>& p);
#endif

static std::tuple<at::Tensor, at::Tensor> upfirdn2d_lrelu_op(
        const at::Tensor& x, const at::Tensor& f_in, const c10::optional<at::Tensor>& b_in,
        int64_t upx, int64_t upy, int64_t px0, int64_t px1, int64_t py0, int64_t py1,
        double slope, double gain, double clamp) {
    at::Tensor b = optional_tensor(b_in);
    at::Tensor f = check_upfirdn_args(x, f_in, b, upx, upy, 1, 1);
    const at::OptionalDeviceGuard guard(x.device());
    at::Tensor y, s;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "filtered_lrelu", [&] {
        UpfirdnParams<scalar_t> p = prepare_upfirdn<scalar_t>(x, f, b, y, upx, upy, 1, 1,
                                                              px0, px1, py0, py1);
        s = at::empty(y.sizes(), x.options().dtype(at::kByte));  // contiguous NCHW
        p.s = s.data_ptr<uint8_t>();
        p.slope = slope; p.gain = gain; p.clamp = clamp;
        if (x.is_cuda()) {
#ifdef RAYCOND_WITH_CUDA
            upfirdn2d_lrelu_cuda<scalar_t>(p);
#else
            TORCH_CHECK(false, "filtered_lrelu: this build has no CUDA kernels");
#endif
        } else {
            cpu_loop(y.numel(), 1024, [&](int64_t i) { upfirdn2d_lrelu_element(p, i); });
        }
    });
    return std::make_tuple(y, s);
}

static at::Tensor sign_grad_op(const at::Tensor& g_in, const at::Tensor& s, double slope,
                               double gain) {
    TORCH_CHECK(s.scalar_type() == at::kByte && s.is_contiguous() && s.sizes() == g_in.sizes() &&
                s.device() == g_in.device(), "filtered_lrelu: sign codes must match the gradient");
    at::Tensor g = g_in.contiguous();
    const at::OptionalDeviceGuard guard(g.device());
    at::Tensor out = at::empty_like(g);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "sign_grad", [&] {
        SignGradParams<scalar_t> p;
        p.g = g.data_ptr<scalar_t>(); p.s = s.data_ptr<uint8_t>(); p.out = out.data_ptr<scalar_t>();
        p.size = g.numel(); p.slope = slope; p.gain = gain;
        if (g.is_cuda()) {
#ifdef RAYCOND_WITH_CUDA
            sign_grad_cuda<scalar_t>(p);
#else
            TORCH_CHECK(false, "filtered_lrelu: this build has no CUDA kernels");
#endif
        } else {
            cpu_loop(p.size, 16384, [&](int64_t i) { sign_grad_element(p, i); });
        }
    });
    return out;
}

} // namespace raycond

RC_LIBRARY_FRAGMENT(RAYCOND_NS, m) {
    m.def("upfirdn2d_lrelu(Tensor x, Tensor f, Tensor? b, int upx, int upy, int px0, int px1, "
          "int py0, int py1, float slope, float gain, float clamp) -> (Tensor, Tensor)");
    m.def("sign_grad(Tensor g, Tensor s, float slope, float gain) -> Tensor");
}
RC_LIBRARY_IMPL(RAYCOND_NS, CPU, m) {
    m.impl("upfirdn2d_lrelu", &raycond::upfirdn2d_lrelu_op);
    m.impl("sign_grad", &raycond::sign_grad_op);
}
#ifdef RAYCOND_WITH_CUDA
RC_LIBRARY_IMPL(RAYCOND_NS, CUDA, m) {
    m.impl("upfirdn2d_lrelu", &raycond::upfirdn2d_lrelu_op);
    m.impl("sign_grad", &raycond::sign_grad_op);
}
#endif
