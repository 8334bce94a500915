// bias_act op: argument checks, output allocation and the CPU loop; the CUDA launch lives in
// bias_act.cu. The per-element math is bias_act_element() in bias_act.h.
#include "ext_common.h"
#include "bias_act.h"

namespace raycond {

#ifdef RAYCOND_WITH_CUDA
template <typename T> void bias_act_cuda(const BiasActParams<T>& p);
#endif

static at::Tensor bias_act_op(const at::Tensor& x_in, const c10::optional<at::Tensor>& b_in,
                              const c10::optional<at::Tensor>& xref_in, int64_t grad, int64_t dim,
                              int64_t act, double alpha, double gain, double clamp) {
    TORCH_CHECK(grad >= 0 && grad <= 2, "bias_act: grad must be 0, 1 or 2");
    TORCH_CHECK(dim >= 0 && dim < x_in.dim(), "bias_act: dim out of range");
    at::Tensor x = x_in.is_non_overlapping_and_dense() ? x_in : x_in.contiguous();
    at::Tensor b = b_in.has_value() && b_in->defined() ? b_in->contiguous() : at::Tensor();
    at::Tensor xref = xref_in.has_value() && xref_in->defined() ? *xref_in : at::Tensor();
    TORCH_CHECK(grad == 0 || xref.defined(), "bias_act: grad > 0 needs xref");
    if (xref.defined() && xref.strides() != x.strides()) {  // one layout for every operand
        x = x.contiguous();
        xref = xref.contiguous();
    }
    TORCH_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == x.size(dim) &&
                                 b.scalar_type() == x.scalar_type() && b.device() == x.device()),
                "bias_act: b must be a 1-D tensor of x.shape[dim] values of x's dtype and device");
    TORCH_CHECK(!xref.defined() || (xref.sizes() == x.sizes() &&
                                    xref.scalar_type() == x.scalar_type() && xref.device() == x.device()),
                "bias_act: xref must match x");
    const at::OptionalDeviceGuard guard(x.device());
    at::Tensor y = at::empty_like(x);
    if (x.numel() == 0) return y;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act", [&] {
        BiasActParams<scalar_t> p;
        p.x = x.data_ptr<scalar_t>();
        p.b = b.defined() ? b.data_ptr<scalar_t>() : nullptr;
        p.xref = xref.defined() ? xref.data_ptr<scalar_t>() : nullptr;
        p.y = y.data_ptr<scalar_t>();
        p.size = x.numel();
        p.step_b = x.stride(dim);
        p.size_b = x.size(dim);
        p.act = (int)act;
        p.grad = (int)grad;
        p.alpha = alpha;
        p.gain = gain;
        p.clamp = clamp;
        if (x.is_cuda()) {
#ifdef RAYCOND_WITH_CUDA
            bias_act_cuda<scalar_t>(p);
#else
            TORCH_CHECK(false, "bias_act: this build has no CUDA kernels");
#endif
        } else {
            cpu_loop(p.size, 16384, [&](int64_t i) { bias_act_element(p, i); });
        }
    });
    return y;
}

} // namespace raycond

RC_LIBRARY_FRAGMENT(RAYCOND_NS, m) {
    m.def("bias_act(Tensor x, Tensor? b, Tensor? xref, int grad, int dim, int act, float alpha, "
          "float gain, float clamp) -> Tensor");
}
RC_LIBRARY_IMPL(RAYCOND_NS, CPU, m) { m.impl("bias_act", &raycond::bias_act_op); }
#ifdef RAYCOND_WITH_CUDA
RC_LIBRARY_IMPL(RAYCOND_NS, CUDA, m) { m.impl("bias_act", &raycond::bias_act_op); }
#endif
