"""Pivotal tuning (PTI): fine-tune a copy of the generator around the pivot.

Tuning alone overfits the input view (the face gets better at that camera and worse at the
others), so a locality regulariser keeps the tuned generator's renders close to the untuned ones
(a) for the pivot at random *other cameras* and (b) for random latents near the pivot (PTI's ball
of radius `locality_radius` in W) at random cameras. Reference renders are made once, before; every
`locality_every`-th step renders one of them beside the pivot, of kinds (a) and (b) in turn, and the
other steps render the pivot alone. For the same time, more steps with fewer references fit the input
view better: one reference every other step with 105 steps against one every step with 75 gave
+0.6-0.9 dB at the input view for 0.03-0.10 dB less at the novel views (docs/performance.md).
"""

from __future__ import annotations

import re

import torch

from torch_utils import misc
from raycond import generate as rgen

from .state import Run


def tuned_parameters(G, from_res: int) -> list:
    """Synthesis parameters that pivotal tuning changes: all, or only those of the blocks at
    resolution >= from_res (StyleGAN2-style names `b<res>.`; other layouts tune everything)."""
    named = list(G.synthesis.named_parameters())
    if from_res <= 0:
        return [p for _, p in named]
    picked = [p for n, p in named if re.match(r"b(\d+)\.", n) and int(re.match(r"b(\d+)\.", n).group(1)) >= from_res]
    return picked or [p for _, p in named]


def adam(params: list, lr: float) -> torch.optim.Adam:
    """Adam over the tuned weights, with torch's fused kernel where it has one (float tensors on the
    CPU or CUDA): on one core 1.1 against 4.9 ms per step for the bundled network's 66 tensors, a
    tenth of a tuning step (docs/performance.md)."""
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, fused=True if fused and params else None)


def _random_cameras(run: Run, n: int) -> torch.Tensor:
    if not run.has_camera:
        return run.label(torch.zeros(1), torch.zeros(1)).expand(n, -1)
    return run.label(torch.empty(n).uniform_(*run.yaw_range, generator=run.gen),
                     torch.empty(n).uniform_(*run.pitch_range, generator=run.gen))


def locality_references(run: Run, G_t, latent, n: int):
    """(ws, c, images) the tuned generator must keep: the pivot at other cameras (camera networks
    only), then latents on PTI's ball around the pivot, each at a random camera."""
    o = run.config
    with torch.no_grad():
        ref_ws, ref_c = [], []
        if run.has_camera:
            cams = _random_cameras(run, n)
            ref_ws.append(run.ws_from(latent, cams))
            ref_c.append(cams)
        z = torch.randn([n, run.G.z_dim], generator=run.gen).to(run.device)
        cams = _random_cameras(run, n)
        w_z = run.G.mapping(z, rgen.mapping_c(run.G, cams, n, run.device))
        w_p = run.ws_from(latent, cams)
        d = w_z - w_p
        ref_ws.append(w_p + o.locality_radius * d / d.norm(dim=-1, keepdim=True).clamp_min(1e-8))
        ref_c.append(cams)
        ref_ws, ref_c = torch.cat(ref_ws), torch.cat(ref_c)
        ref_img = torch.cat([run.render(G_t, ref_ws[i:i + 8], ref_c[i:i + 8]) for i in range(0, len(ref_ws), 8)])
    return ref_ws, ref_c, ref_img


def tune(run: Run, G_t, latent, c, steps: int) -> None:
    """Fine-tune G_t's synthesis in place for `steps` around the pivot `latent` at camera c."""
    o = run.config
    if steps <= 0:
        return
    n = max(1, int(o.locality_bank))
    # locality_weight 0: no reference render at all (half of a step's cost), same result
    kinds = (2 if run.has_camera else 1) if o.locality_weight > 0 else 0
    ref_ws, ref_c, ref_img = locality_references(run, G_t, latent, n) if kinds else (None, None, None)
    with torch.no_grad():
        pivot_ws = run.ws_from(latent, c)
    params = tuned_parameters(G_t, int(o.tune_from_res))
    for p in params:
        p.requires_grad_(True)
    opt = adam(params, o.tune_lr)
    for i in range(int(steps)):
        with_ref = kinds and i % o.locality_every == 0
        if with_ref:
            pick = [int(torch.randint(0, n, [1], generator=run.gen)) + ((i // o.locality_every) % kinds) * n]
            img = run.render(G_t, torch.cat([pivot_ws, ref_ws[pick]]), torch.cat([c, ref_c[pick]]))
        else:
            img = run.render(G_t, pivot_ws, c)
        rec = run.loss_fn(img[:1], c).sum()
        loss = rec + (o.locality_weight * (img[1:] - ref_img[pick]).square().mean() if with_ref else 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.tick("tune", float(rec.detach()), img[:1])
    for p in params:
        p.requires_grad_(False)
    misc.drop_inference_caches(G_t)   # the fused Adam does not advance the weights' version counters
