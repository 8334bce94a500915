"""Latent widget: seed (fractional seeds blend neighbouring seeds in W), drag/animate the seed,
truncation psi and cutoff, noise mode and seed, style mixing (seed + per-layer checkboxes).

State logic works without a window.
"""

from __future__ import annotations

import math

import gui_utils  # noqa: F401 - sets the GLFW/OpenGL platform before imgui_bundle loads glfw
from imgui_bundle import imgui

from gui_utils import imgui_utils
from raycond import generate as gen



class LatentWidget:
    """Latent state -> RenderArgs fields (seed, trunc_psi, trunc_cutoff, noise_*, mix_*)."""

    def __init__(self, seed=0.0, trunc_psi=1.0):
        self.seed = float(seed)
        self.animate = False
        self.anim_speed = 0.5            # seeds per second
        self.drag_seeds_per_image = 4.0  # right-dragging across the image moves this many seeds
        self.trunc_psi = float(trunc_psi)
        self.trunc_cutoff = 0            # 0 = all layers
        self.noise_mode = 'const'
        self.noise_seed = 0
        self.mix_enabled = False
        self.mix_seed = 1
        self.mix_layers = set()
        self.num_ws = 0
        self.class_idx = 0
        self.num_classes = 0             # > 0 for class-conditional networks without a camera

    # -- state ---------------------------------------------------------------------------------
    def on_network(self, info):
        c_dim = int(getattr(info, 'c_dim', 0) or 0)
        self.num_classes = c_dim if c_dim and not getattr(info, 'camera', False) else 0
        self.class_idx = min(self.class_idx, max(self.num_classes - 1, 0))
        num_ws = int(getattr(info, 'num_ws', 0) or 0)
        if num_ws != self.num_ws:
            self.num_ws = num_ws
            self.mix_layers = {i for i in self.mix_layers if i < num_ws} or set(range(num_ws // 2, num_ws))
            self.trunc_cutoff = min(self.trunc_cutoff, num_ws)

    def drag(self, dx, image_size_px):
        """Explore seeds by dragging: across the whole image = `drag_seeds_per_image` seeds."""
        self.set_seed(self.seed + dx * self.drag_seeds_per_image / max(float(image_size_px), 1.0))

    def set_seed(self, seed):
        seed = float(seed)
        if not math.isfinite(seed):
            raise ValueError(f'seed must be finite, got {seed}')
        self.seed = min(max(seed, 0.0), 2.0 ** 32 - 2)

    def snap(self):
        """Round to the nearest whole seed."""
        self.seed = float(round(self.seed))

    def tick(self, dt):
        if self.animate:
            self.set_seed(self.seed + self.anim_speed * dt)

    def set_mix_layers(self, layers):
        bad = [i for i in layers if self.num_ws and not 0 <= int(i) < self.num_ws]
        if bad:
            raise ValueError(f'style-mixing layers {bad} out of range 0..{self.num_ws - 1}')
        self.mix_layers = {int(i) for i in layers}

    def update_args(self, d):
        gen.check_noise_mode(self.noise_mode)
        d.update(seed=round(float(self.seed), 4), trunc_psi=float(self.trunc_psi),
                 trunc_cutoff=int(self.trunc_cutoff) if self.trunc_cutoff else None,
                 noise_mode=self.noise_mode, noise_seed=int(self.noise_seed),
                 mix_seed=int(self.mix_seed) if self.mix_enabled and self.mix_layers else None,
                 mix_layers=tuple(sorted(self.mix_layers)) if self.mix_enabled else (),
                 class_idx=int(self.class_idx))

    # -- drawing -------------------------------------------------------------------------------
    def draw(self, viz):
        w = imgui.get_content_region_avail().x
        lw = imgui.calc_text_size('Truncation ').x + 10
        with imgui_utils.item_width(w - lw):
            ch, v = imgui.drag_float('Seed', self.seed, 0.02, 0.0, 2.0 ** 31, '%.2f')
            if ch:
                self.set_seed(v)
            imgui_utils.tooltip('Drag to explore; fractional seeds blend neighbouring seeds in W.\n'
                                'Right-drag on the image does the same.')
        if imgui.button('-1'):
            self.set_seed(math.floor(self.seed - 1e-6) if self.seed % 1 else self.seed - 1)
        imgui.same_line()
        if imgui.button('+1'):
            self.set_seed(math.floor(self.seed) + 1)
        imgui.same_line()
        if imgui.button('Snap'):
            self.snap()
        imgui.same_line()
        _, self.animate = imgui.checkbox('Animate', self.animate)
        imgui.same_line()
        imgui.set_next_item_width(max(imgui.get_content_region_avail().x, 40))
        _, self.anim_speed = imgui.slider_float('##anim', self.anim_speed, 0.05, 5.0, '%.2f seeds/s',
                                                imgui.SliderFlags_.logarithmic)
        with imgui_utils.item_width(w - lw):
            _, self.trunc_psi = imgui.slider_float('Truncation', self.trunc_psi, 0.0, 1.5, 'psi %.2f')
            with imgui_utils.grayed_out(self.num_ws == 0):
                _, self.trunc_cutoff = imgui.slider_int('Cutoff', self.trunc_cutoff, 0, max(self.num_ws, 1),
                                                        'all layers' if self.trunc_cutoff == 0 else 'first %d ws')
            imgui_utils.tooltip('Truncate only the first N ws (0 = all)')
            if imgui.begin_combo('Noise', self.noise_mode):
                for m in gen.NOISE_MODES:
                    if imgui.selectable(m, m == self.noise_mode)[0]:
                        self.noise_mode = m
                imgui.end_combo()
            with imgui_utils.grayed_out(self.noise_mode != 'random'):
                _, self.noise_seed = imgui.input_int('Noise seed', self.noise_seed)
        if self.num_classes:
            with imgui_utils.item_width(w - lw):
                _, self.class_idx = imgui.slider_int('Class', self.class_idx, 0, self.num_classes - 1)
            imgui_utils.tooltip('Class label of this class-conditional network (one-hot c)')
        _, self.mix_enabled = imgui.checkbox('Style mixing', self.mix_enabled)
        with imgui_utils.grayed_out(not self.mix_enabled):
            imgui.same_line()
            imgui.set_next_item_width(max(imgui.get_content_region_avail().x, 40))
            ch, v = imgui.input_int('##mixseed', self.mix_seed)
            if ch:
                self.mix_seed = max(int(v), 0)
            imgui_utils.tooltip('Seed whose styles replace the checked layers')
            for i in range(self.num_ws):
                if i % 8:
                    imgui.same_line()
                ch, on = imgui.checkbox(f'{i}##mix{i}', i in self.mix_layers)
                if ch:
                    (self.mix_layers.add if on else self.mix_layers.discard)(i)
