// Host-side set-up of UpfirdnParams (checks, output allocation), shared by upfirdn2d.cpp and
// filtered_lrelu.cpp.
#pragma once
#include "ext_common.h"
#include "upfirdn2d.h"

namespace raycond {

// Check the operands, allocate y (x's memory format) and fill every field but s/slope/gain/clamp.
template <typename T>
UpfirdnParams<T> prepare_upfirdn(const at::Tensor& x, const at::Tensor& f, const at::Tensor& b,
                                 at::Tensor& y, int64_t upx, int64_t upy, int64_t downx,
                                 int64_t downy, int64_t px0, int64_t px1, int64_t py0,
                                 int64_t py1) {
    UpfirdnParams<T> p;
    p.n = x.size(0); p.c = x.size(1); p.in_h = x.size(2); p.in_w = x.size(3);
    p.fh = f.size(0); p.fw = f.size(1);
    p.out_w = (p.in_w * upx + px0 + px1 - p.fw + downx) / downx;
    p.out_h = (p.in_h * upy + py0 + py1 - p.fh + downy) / downy;
    TORCH_CHECK(p.out_w >= 1 && p.out_h >= 1, "upfirdn2d: the output would be empty");
    y = at::empty({p.n, p.c, p.out_h, p.out_w},
                  x.options().memory_format(x.suggest_memory_format()));
    p.x = x.data_ptr<T>();
    p.f = f.data_ptr<float>();
    p.b = b.defined() ? b.data_ptr<T>() : nullptr;
    p.y = y.data_ptr<T>();
    p.s = nullptr;
    for (int d = 0; d < 4; ++d) { p.sx[d] = x.stride(d); p.sy[d] = y.stride(d); }
    p.up_x = upx; p.up_y = upy; p.down_x = downx; p.down_y = downy;
    p.pad_x0 = px0; p.pad_y0 = py0;
    p.slope = 0.0; p.gain = 1.0; p.clamp = -1.0;
    return p;
}

// Common argument checks of the upfirdn-style ops; returns the contiguous float32 filter.
inline at::Tensor check_upfirdn_args(const at::Tensor& x, const at::Tensor& f, const at::Tensor& b,
                                     int64_t upx, int64_t upy, int64_t downx, int64_t downy) {
    TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be NCHW");
    TORCH_CHECK(f.dim() == 2 && f.scalar_type() == at::kFloat && f.device() == x.device(),
                "upfirdn2d: f must be a 2-D float32 filter on x's device");
    TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: factors must be >= 1");
    TORCH_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == x.size(1) &&
                                 b.scalar_type() == x.scalar_type() && b.device() == x.device()),
                "upfirdn2d: b must be a 1-D tensor of x.shape[1] values of x's dtype and device");
    return f.contiguous();
}

inline at::Tensor optional_tensor(const c10::optional<at::Tensor>& t) {
    return t.has_value() && t->defined() ? t->contiguous() : at::Tensor();
}

} // namespace raycond
