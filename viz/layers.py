"""Layers widget: the synthesis layers with their output shapes, and one layer's channels shown as an
image (one channel, or three as RGB, normalized) with statistics. The renderer captures the layer
output with forward hooks; this widget only chooses what to capture and displays it.
"""

from __future__ import annotations

import gui_utils  # noqa: F401 - sets the GLFW/OpenGL platform before imgui_bundle loads glfw
from imgui_bundle import imgui

from gui_utils import imgui_utils


class LayerWidget:
    """Layer selection -> RenderArgs fields (layer, layer_channel, layer_rgb)."""

    def __init__(self):
        self.show = False
        self.selected = None
        self.channel = 0
        self.rgb = False
        self.layers = []          # [(name, (C, H, W))] from the latest result

    def on_result(self, result):
        if result is not None and result.layers:
            self.layers = list(result.layers)
            names = [n for n, _ in self.layers]
            if self.selected not in names:
                rich = [n for n, shape in self.layers if shape[0] > 3]    # default: the last feature layer
                self.selected = (rich or names or [None])[-1]

    def num_channels(self):
        for name, shape in self.layers:
            if name == self.selected:
                return int(shape[0])
        return 0

    def update_args(self, d):
        n = self.num_channels()
        ch = min(max(self.channel, 0), max(n - 1, 0))
        d.update(layer=self.selected if self.show else None, layer_channel=int(ch), layer_rgb=bool(self.rgb))

    def draw(self, viz):
        _, self.show = imgui.checkbox('Show layer output', self.show)
        imgui_utils.tooltip('Capture the selected layer with a forward hook and show its channels')
        if not self.layers:
            imgui_utils.dim_text('No layers yet (load a network).')
            return
        table_h = min(len(self.layers), 8) * imgui.get_text_line_height_with_spacing() + 8
        flags = imgui.TableFlags_.row_bg | imgui.TableFlags_.scroll_y | imgui.TableFlags_.borders_inner_v
        if imgui.begin_table('layers', 2, flags, imgui.ImVec2(0, table_h)):
            imgui.table_setup_column('Layer')
            imgui.table_setup_column('Output (C x H x W)')
            for name, shape in self.layers:
                imgui.table_next_row()
                imgui.table_next_column()
                if imgui.selectable(name, name == self.selected, imgui.SelectableFlags_.span_all_columns)[0]:
                    self.selected = name
                    self.show = True
                imgui.table_next_column()
                imgui.text(' x '.join(str(s) for s in shape))
            imgui.end_table()
        n = self.num_channels()
        with imgui_utils.grayed_out(not self.show or n == 0):
            imgui.set_next_item_width(imgui.get_content_region_avail().x * 0.6)
            _, self.channel = imgui.slider_int('Channel', self.channel, 0, max(n - 1, 0))
            imgui.same_line()
            _, self.rgb = imgui.checkbox('RGB', self.rgb)
            imgui_utils.tooltip('Show channels c, c+1, c+2 as red, green, blue')
        res = viz.result
        if self.show and res is not None and res.layer_image is not None and viz.layer_texture is not None:
            size = min(imgui.get_content_region_avail().x, 256.0)
            tex = viz.layer_texture
            h = size * tex.height / max(tex.width, 1)
            imgui.image(imgui.ImTextureRef(tex.gl_id), imgui.ImVec2(size, h))
            s = res.layer_stats
            imgui_utils.dim_text(f'{s.get("channels")} channels, showing {s.get("shown")}\n'
                                 f'layer mean {s.get("mean", 0):.3f} std {s.get("std", 0):.3f} '
                                 f'min {s.get("min", 0):.2f} max {s.get("max", 0):.2f}\n'
                                 f'channel mean {s.get("channel_mean", 0):.3f} std {s.get("channel_std", 0):.3f}')
