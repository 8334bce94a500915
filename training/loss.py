"""StyleGAN2 loss for ray-conditioned (and plain) generators.

Non-saturating logistic GAN loss with lazy R1 on reals (weight gamma/2, applied every
`D_reg_interval` steps by the loop), lazy path-length regularization on the generator, style
mixing, and EG3D's generator-pose conditioning swap (`gpc_swap`).

The camera `c` of a generated image is drawn from the training labels by the loop; the synthesis
network renders with that camera (its rays), and the discriminator is conditioned on the same
camera, as in EG3D. `gpc_swap=P` replaces, with probability P, the camera fed to the *mapping
network* by another random camera of the batch, so that style (w) does not become tied to pose.
It only matters when the mapping network sees the camera (the `posecond2` baseline,
`camera_in_mapping=True`, or a camera-conditioned StyleGAN2); raycond2's mapping ignores `c` by
default, so there it has no effect.

`pose_negatives=W` (a matching-aware discriminator) shows D each real image a second time with
its camera turned by a random 2–15° (raycond.camera.perturb_labels) and counts that pair as fake,
with weight W: D must tell a few degrees of pose apart on real images, so a generated image whose
pose is off by as much is judged fake too. G's loss is unchanged. (A camera-regression head on D
whose reading G had to match was tried first on the 64² heads and dropped: G followed the head's
biases, and coverage collapsed.)

`pose_loss=W` adds to G's loss W times the error of a *frozen* camera reader trained on the real
images before training (metrics/pose_reader.py; the loop sets `pose_reader`): a direct pose
signal that does not share D's features. `pose_loss_params` limits what it trains: 'rays' (only the
weights through which G sees the camera) or 'synthesis' (not the mapping network);
`pose_loss_mode='relative'` shows each latent of the Gmain batch at two cameras and charges only
the difference of the two readings (training/pose_loss.py).

`attr_mix=W` adds W times the attribute-mix loss (training/attribute_mix.py; the loop sets
`attribute_mix`): on synthetic heads, G is paid to draw each hair style, skin tone, hair colour
and background as often as the data does, as a frozen classifier reads them.
"""

import inspect

import numpy as np
import torch

from raycond import camera as cam
from training import pose_loss as reader_loss
from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix


def synthesis_takes_c(G):
    """True when G.synthesis(ws, c, ...) takes the camera (raycond), False for plain StyleGAN2."""
    try:
        params = inspect.signature(G.synthesis.forward).parameters
    except (TypeError, ValueError):
        return False
    return 'c' in params


class Loss:
    """Interface used by the training loop."""

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):  # to be overridden
        raise NotImplementedError


class StyleGAN2Loss(Loss):
    """Loss with lazy regularization; phases 'Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'."""

    def __init__(self, device, G, D, augment_pipe=None, r1_gamma=10, style_mixing_prob=0.9,
                 pl_weight=2, pl_batch_shrink=2, pl_decay=0.01, pl_no_weight_grad=False,
                 gpc_swap=0.0, pose_negatives=0.0, pose_negative_deg=(2.0, 15.0), pose_loss=0.0,
                 pose_loss_margin=0.0, pose_loss_params='all', pose_loss_mode='absolute', attr_mix=0.0):
        super().__init__()
        self.device = device
        self.G = G
        self.D = D
        self.augment_pipe = augment_pipe
        self.r1_gamma = float(r1_gamma)
        self.style_mixing_prob = float(style_mixing_prob)
        self.pl_weight = float(pl_weight)
        self.pl_batch_shrink = int(pl_batch_shrink)
        self.pl_decay = float(pl_decay)
        self.pl_no_weight_grad = bool(pl_no_weight_grad)
        self.gpc_swap = float(gpc_swap)
        self.pose_negatives = float(pose_negatives)
        self.pose_negative_deg = tuple(float(v) for v in pose_negative_deg)
        if self.pose_negatives > 0 and getattr(D, 'c_dim', 0) != cam.LABEL_DIM:
            raise ValueError(f'pose_negatives > 0 needs a discriminator conditioned on {cam.LABEL_DIM}-value cameras')
        self.pose_loss = float(pose_loss)
        self.pose_loss_margin = float(pose_loss_margin)
        if pose_loss_mode not in ('absolute', 'relative'):
            raise ValueError(f"pose_loss_mode must be 'absolute' or 'relative', got {pose_loss_mode!r}")
        self.pose_relative = self.pose_loss > 0 and pose_loss_mode == 'relative'
        if self.pose_loss > 0 and getattr(G, 'c_dim', 0) != cam.LABEL_DIM:
            raise ValueError(f'pose_loss > 0 needs a generator conditioned on {cam.LABEL_DIM}-value cameras')
        self.pose_params = reader_loss.trained_parameters(G, pose_loss_params) if self.pose_loss > 0 else None
        self.pose_reader = None  # set by the training loop when pose_loss > 0
        self.attr_mix = float(attr_mix)
        self.attribute_mix = None  # set by the training loop when attr_mix > 0
        self.pl_mean = torch.zeros([], device=device)
        self.synthesis_takes_c = synthesis_takes_c(G)

    def swap_mapping_c(self, c):
        """EG3D pose-conditioning swap: each row replaced by the next row's c with prob gpc_swap."""
        if self.gpc_swap <= 0 or c.shape[0] < 2 or c.shape[1] == 0:
            return c
        swapped = torch.roll(c, 1, dims=0)
        mask = torch.rand([c.shape[0], 1], device=c.device) < self.gpc_swap
        return torch.where(mask, swapped, c)

    def run_G(self, z, c, update_emas=False, pairs=False):
        """Generate images for latents z and cameras c; returns (img, ws). pairs=True: rows 2i and
        2i+1 share row 2i's w (style mixing included), so each latent is shown at two cameras."""
        c_map = self.swap_mapping_c(c)
        ws = self.G.mapping(z, c_map, update_emas=update_emas)
        if self.style_mixing_prob > 0:
            with torch.autograd.profiler.record_function('style_mixing'):
                cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, ws.shape[1])
                cutoff = torch.where(torch.rand([], device=ws.device) < self.style_mixing_prob,
                                     cutoff, torch.full_like(cutoff, ws.shape[1]))
                mix = self.G.mapping(torch.randn_like(z), c_map, update_emas=False)
                layer = torch.arange(ws.shape[1], device=ws.device)[None, :, None]
                ws = torch.where(layer < cutoff, ws, mix)
        if pairs:
            ws = ws[0::2].repeat_interleave(2, dim=0)[:ws.shape[0]]
        if self.synthesis_takes_c:
            img = self.G.synthesis(ws, c, update_emas=update_emas)
        else:
            img = self.G.synthesis(ws, update_emas=update_emas)
        return img, ws

    def run_D(self, img, c, update_emas=False):
        """Discriminator logits for images (augmented by the ADA pipe when present) and cameras."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c, update_emas=update_emas)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        assert phase in ['Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth']
        if self.pl_weight == 0:
            phase = {'Greg': 'none', 'Gboth': 'Gmain'}.get(phase, phase)
        if self.r1_gamma == 0:
            phase = {'Dreg': 'none', 'Dboth': 'Dmain'}.get(phase, phase)
        do_Gmain = phase in ['Gmain', 'Gboth']
        do_Dmain = phase in ['Dmain', 'Dboth']
        do_Gpl = phase in ['Greg', 'Gboth']
        do_Dr1 = phase in ['Dreg', 'Dboth']

        # Gmain: maximize logits for generated images.
        if do_Gmain:
            with torch.autograd.profiler.record_function('Gmain_forward'):
                gen_img, _gen_ws = self.run_G(gen_z, gen_c, pairs=self.pose_relative)
                gen_logits = self.run_D(gen_img, gen_c)
                training_stats.report('Loss/scores/fake', gen_logits)
                training_stats.report('Loss/signs/fake', gen_logits.sign())
                loss_Gmain = torch.nn.functional.softplus(-gen_logits)  # -log(sigmoid(gen_logits))
                training_stats.report('Loss/G/loss', loss_Gmain)
                if self.pose_loss > 0:
                    if self.pose_reader is None:
                        raise RuntimeError('pose_loss > 0 but no pose reader was set (metrics/pose_reader.py)')
                    fn = reader_loss.relative_pose_loss if self.pose_relative else reader_loss.pose_loss
                    loss_pose, pose_err = fn(self.pose_reader, gen_img, gen_c, margin_deg=self.pose_loss_margin)
                    training_stats.report('Loss/G/pose', loss_pose)
                    training_stats.report('Pose/reader_err_yaw', pose_err[:, 0])
                    training_stats.report('Pose/reader_err_pitch', pose_err[:, 1])
                    if self.pose_params is None:  # (a pair's loss is charged to both of its images)
                        per_image = loss_pose.repeat_interleave(2) if self.pose_relative else loss_pose
                        loss_Gmain = loss_Gmain.flatten() + per_image * self.pose_loss
                if self.attr_mix > 0:
                    if self.attribute_mix is None:
                        raise RuntimeError('attr_mix > 0 but no attribute classifier was set (training/attribute_mix.py)')
                    loss_mix = self.attribute_mix.loss(gen_img)
                    training_stats.report('Loss/G/attr_mix', loss_mix)
                    training_stats.report('Attr/mix_tv', self.attribute_mix.tv())
                    loss_Gmain = loss_Gmain.flatten() + loss_mix * self.attr_mix
            with torch.autograd.profiler.record_function('Gmain_backward'):
                loss_Gmain.mean().mul(gain).backward(retain_graph=self.pose_params is not None)
                if self.pose_params is not None:  # the pose loss trains only part of G
                    params = [p for p, _mask in self.pose_params]
                    grads = torch.autograd.grad(loss_pose.mean() * (self.pose_loss * gain), params)
                    for (p, mask), g in zip(self.pose_params, grads):
                        g = g if mask is None else g * mask
                        p.grad = g if p.grad is None else p.grad.add_(g)

        # Gpl: path length regularization on a shrunk batch.
        if do_Gpl:
            with torch.autograd.profiler.record_function('Gpl_forward'):
                batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
                gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size])
                pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
                with torch.autograd.profiler.record_function('pl_grads'), conv2d_gradfix.no_weight_gradients(self.pl_no_weight_grad):
                    pl_grads = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws],
                                                   create_graph=True, only_inputs=True)[0]
                pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
                pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
                self.pl_mean.copy_(pl_mean.detach())
                pl_penalty = (pl_lengths - pl_mean).square()
                training_stats.report('Loss/pl_penalty', pl_penalty)
                loss_Gpl = pl_penalty * self.pl_weight
                training_stats.report('Loss/G/reg', loss_Gpl)
            with torch.autograd.profiler.record_function('Gpl_backward'):
                loss_Gpl.mean().mul(gain).backward()

        # Dmain: minimize logits for generated images.
        loss_Dgen = 0
        if do_Dmain:
            with torch.autograd.profiler.record_function('Dgen_forward'):
                gen_img, _gen_ws = self.run_G(gen_z, gen_c, update_emas=True)
                gen_logits = self.run_D(gen_img, gen_c, update_emas=True)
                training_stats.report('Loss/scores/fake', gen_logits)
                training_stats.report('Loss/signs/fake', gen_logits.sign())
                loss_Dgen = torch.nn.functional.softplus(gen_logits)  # -log(1 - sigmoid(gen_logits))
            with torch.autograd.profiler.record_function('Dgen_backward'):
                loss_Dgen.mean().mul(gain).backward()

        # Dmain: maximize logits for real images. Dr1: R1 regularization on reals.
        if do_Dmain or do_Dr1:
            name = 'Dreal' if do_Dmain and not do_Dr1 else 'Dr1' if do_Dr1 and not do_Dmain else 'Dreal_Dr1'
            with torch.autograd.profiler.record_function(name + '_forward'):
                real_img_tmp = real_img.detach().requires_grad_(do_Dr1)
                real_logits = self.run_D(real_img_tmp, real_c)
                training_stats.report('Loss/scores/real', real_logits)
                training_stats.report('Loss/signs/real', real_logits.sign())

                loss_Dreal = 0
                if do_Dmain:
                    loss_Dreal = torch.nn.functional.softplus(-real_logits)  # -log(sigmoid(real_logits))
                    training_stats.report('Loss/D/loss', loss_Dgen + loss_Dreal)

                loss_Dr1 = 0
                if do_Dr1:
                    with torch.autograd.profiler.record_function('r1_grads'), conv2d_gradfix.no_weight_gradients(True):
                        r1_grads = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img_tmp],
                                                       create_graph=True, only_inputs=True)[0]
                    r1_penalty = r1_grads.square().sum([1, 2, 3])
                    loss_Dr1 = r1_penalty * (self.r1_gamma / 2)
                    training_stats.report('Loss/r1_penalty', r1_penalty)
                    training_stats.report('Loss/D/reg', loss_Dr1)

            with torch.autograd.profiler.record_function(name + '_backward'):
                (loss_Dreal + loss_Dr1).mean().mul(gain).backward()

        # Dmain: real images with slightly wrong cameras count as fakes.
        if do_Dmain and self.pose_negatives > 0:
            with torch.autograd.profiler.record_function('Dwrongpose_forward'):
                wrong_c = cam.perturb_labels(real_c, *self.pose_negative_deg)
                wrong_logits = self.run_D(real_img.detach(), wrong_c)
                training_stats.report('Loss/scores/wrong_pose', wrong_logits)
                training_stats.report('Loss/signs/wrong_pose', wrong_logits.sign())
                loss_Dwrong = torch.nn.functional.softplus(wrong_logits) * self.pose_negatives
            with torch.autograd.profiler.record_function('Dwrongpose_backward'):
                loss_Dwrong.mean().mul(gain).backward()
