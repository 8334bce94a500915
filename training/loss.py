"""StyleGAN2 loss for ray-conditioned (and plain) generators.

Non-saturating logistic GAN loss with lazy R1 on reals (weight gamma/2, applied every
`D_reg_interval` steps by the loop), lazy path-length regularization on the generator and style
mixing, as in StyleGAN2-ADA. The camera `c` of a generated image is drawn from the training labels
by the loop; the synthesis network renders with that camera and the discriminator is conditioned
on the same camera, as in EG3D. Anything else a run pays for is a term (training/terms/), built
from `loss_kwargs.terms` by the loop and given to the constructor.
"""

import numpy as np
import torch

from raycond.generate import synthesis_takes_c
from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix


class Loss:
    """Interface used by the training loop."""

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):  # to be overridden
        raise NotImplementedError


class StyleGAN2Loss(Loss):
    """Loss with lazy regularization; phases 'Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'."""

    def __init__(self, device, G, D, augment_pipe=None, r1_gamma=10, style_mixing_prob=0.9, pl_weight=2,
                 pl_batch_shrink=2, pl_decay=0.01, terms=()):
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
        self.terms = list(terms)  # built terms (training/terms), each with its phase 'G' or 'D'
        self.pl_mean = torch.zeros([], device=device)
        self.synthesis_takes_c = synthesis_takes_c(G)

    def run_G(self, z, c, update_emas=False):
        """Generate images for latents z and cameras c; returns (img, ws)."""
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing_prob > 0:
            with torch.autograd.profiler.record_function('style_mixing'):
                cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, ws.shape[1])
                cutoff = torch.where(torch.rand([], device=ws.device) < self.style_mixing_prob,
                                     cutoff, torch.full_like(cutoff, ws.shape[1]))
                mix = self.G.mapping(torch.randn_like(z), c, update_emas=False)
                layer = torch.arange(ws.shape[1], device=ws.device)[None, :, None]
                ws = torch.where(layer < cutoff, ws, mix)
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

    def term_losses(self, phase, img, c):
        """Sum of the per-image losses (N,) of the terms of `phase` ('G' or 'D'), or 0 without any."""
        losses = [term(img, c, self.run_D) for term in self.terms if term.phase == phase]
        return sum(losses) if losses else 0

    def _parts(self, phase):
        """(Gmain, Dmain, Gpl, Dr1): which parts a phase runs; a regularizer of weight 0 is skipped."""
        assert phase in ['Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth']
        if self.pl_weight == 0:
            phase = {'Greg': 'none', 'Gboth': 'Gmain'}.get(phase, phase)
        if self.r1_gamma == 0:
            phase = {'Dreg': 'none', 'Dboth': 'Dmain'}.get(phase, phase)
        return (phase in ['Gmain', 'Gboth'], phase in ['Dmain', 'Dboth'], phase in ['Greg', 'Gboth'],
                phase in ['Dreg', 'Dboth'])

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        do_Gmain, do_Dmain, do_Gpl, do_Dr1 = self._parts(phase)

        # Gmain: maximize logits for generated images; G terms join this loss.
        if do_Gmain:
            with torch.autograd.profiler.record_function('Gmain_forward'):
                gen_img, _gen_ws = self.run_G(gen_z, gen_c)
                gen_logits = self.run_D(gen_img, gen_c)
                training_stats.report('Loss/scores/fake', gen_logits)
                training_stats.report('Loss/signs/fake', gen_logits.sign())
                loss_Gmain = torch.nn.functional.softplus(-gen_logits)  # -log(sigmoid(gen_logits))
                training_stats.report('Loss/G/loss', loss_Gmain)
                loss_Gmain = loss_Gmain.flatten() + self.term_losses('G', gen_img, gen_c)
            with torch.autograd.profiler.record_function('Gmain_backward'):
                loss_Gmain.mean().mul(gain).backward()

        # Gpl: path length regularization on a shrunk batch.
        if do_Gpl:
            with torch.autograd.profiler.record_function('Gpl_forward'):
                batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
                gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size])
                pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
                with torch.autograd.profiler.record_function('pl_grads'):
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

        # Dmain: maximize logits for real images; D terms join this loss. Dr1: R1 regularization on reals.
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
                    loss_Dreal = loss_Dreal.flatten() + self.term_losses('D', real_img, real_c)

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
