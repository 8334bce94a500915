"""The image view of the visualizer window: where the image goes, what dragging and the wheel do
to the camera and the seed, and the texts around it (placeholder, error banner, status line,
extrapolation warning). Its state is only the geometry of the last frame and the drag in progress.
"""

from __future__ import annotations

from imgui_bundle import imgui

from gui_utils import imgui_utils


class ImageView:
    """The right-hand side of the window; `draw(viz)` each frame inside the main window."""

    def __init__(self):
        self.view_rect = None         # (x, y, w, h) of the view area in window coordinates
        self.image_rect = None        # (x, y, w, h) of the image in window coordinates, or None
        self.status_error = None      # text of the error banner drawn in the last frame, if any
        self.drag_anchor = None       # (x, y, 'left' | 'right') while a drag is in progress

    def draw(self, viz):
        """The image area right of the panel: image rectangle, drag and wheel input, texts."""
        imgui.begin_child('##view', imgui.ImVec2(0, 0), 0, imgui.WindowFlags_.no_scrollbar
                          | imgui.WindowFlags_.no_scroll_with_mouse | imgui.WindowFlags_.no_background)
        pos = imgui.get_cursor_screen_pos()
        avail = imgui.get_content_region_avail()
        vx, vy, vw, vh = pos.x, pos.y, max(avail.x, 1.0), max(avail.y, 1.0)
        self.view_rect = (vx, vy, vw, vh)
        imgui.invisible_button('##image', imgui.ImVec2(vw, vh),
                               imgui.ButtonFlags_.mouse_button_left | imgui.ButtonFlags_.mouse_button_right)
        io = imgui.get_io()
        margin = 16 * viz.ui_scale
        status_h = imgui.get_text_line_height_with_spacing() + 6 * viz.ui_scale
        if viz.showing_image:
            tw, th = viz.texture.width, viz.texture.height
            s = max(min((vw - 2 * margin) / tw, (vh - 2 * margin - 2 * status_h) / th), 0.01)
            w, h = tw * s, th * s
            self.image_rect = (vx + (vw - w) / 2, vy + (vh - h) / 2, w, h)
        else:
            self.image_rect = None
        # Drag by the motion since the press (or since the last frame). The press frame itself may
        # carry motion from before the press (several X events in one poll), so it only anchors.
        # A release may arrive in the same frame as the last motion, so the deactivation frame counts too.
        mx, my = io.mouse_pos.x, io.mouse_pos.y
        active = imgui.is_item_active()
        if imgui.is_item_activated():
            right = imgui.is_mouse_down(imgui.MouseButton_.right) and not imgui.is_mouse_down(imgui.MouseButton_.left)
            self.drag_anchor = (mx, my, 'right' if right else 'left') if active else None
        elif (active or imgui.is_item_deactivated()) and self.drag_anchor is not None:
            ax, ay, button = self.drag_anchor
            dx, dy = mx - ax, my - ay
            self.drag_anchor = (mx, my, button) if active else None
            size = self.image_rect[2] if self.image_rect else vw
            if button == 'left' and (dx or dy):
                viz.camera.drag(dx, dy, size)
            elif button == 'right' and dx:
                viz.latent.drag(dx, size)
        else:
            self.drag_anchor = None
        if imgui.is_item_hovered() and io.mouse_wheel:
            viz.camera.scroll(io.mouse_wheel)
        dl = imgui.get_window_draw_list()
        if self.image_rect is None:
            msg = self.placeholder_text(viz)
            ts = imgui.calc_text_size(msg)
            dl.add_text(imgui.ImVec2(vx + (vw - ts.x) / 2, vy + (vh - ts.y) / 2),
                        imgui.get_color_u32(imgui_utils.DIM_COLOR), msg)
        self._draw_status(viz, dl, vx, vy, vw, vh)
        imgui.end_child()

    @staticmethod
    def placeholder_text(viz):
        """What the view says while it has no image."""
        if viz.network.current is None:
            return 'Drop a network pickle here, or enter a path in the Network section'
        if viz.result is not None and viz.result.error:
            return 'No image (see the error above)'
        return 'Loading network ...'

    def _draw_status(self, viz, dl, vx, vy, vw, vh):
        pad = 10 * viz.ui_scale
        line_h = imgui.get_text_line_height_with_spacing()
        res = viz.result
        y = vy + pad
        err = viz.network.error or (res.error if res is not None else None)
        self.status_error = 'Error: ' + err if err else None     # the banner's text (tests read it)
        if err:
            dl.add_rect_filled(imgui.ImVec2(vx + pad - 4, y - 2), imgui.ImVec2(vx + vw - pad, y + line_h + 2),
                               imgui.get_color_u32(imgui.ImVec4(0.35, 0.08, 0.08, 0.9)), 3.0)
            text = 'Error: ' + err
            max_chars = max(int((vw - 3 * pad) / max(imgui.calc_text_size('x').x, 1)), 10)
            dl.add_text(imgui.ImVec2(vx + pad, y), imgui.get_color_u32(imgui_utils.ERROR_COLOR),
                        text if len(text) <= max_chars else text[:max_chars - 3] + '...')
            y += line_h + 6
        parts = []
        if viz.showing_image:
            parts.append(f'{viz.texture.width}x{viz.texture.height}')
        if res is not None and 'total' in res.timings and res.image is not None:
            parts.append(f'render {1000 * res.timings["total"]:.0f} ms')
        parts.append(f'{viz.perf.gui_fps:.0f} fps')
        if viz.info is not None and viz.info.camera:
            parts.append(f'yaw {viz.camera.yaw:+.1f}  pitch {viz.camera.pitch:+.1f}  fov {viz.camera.fov:.1f}')
        photo = res.args.photo if res is not None and res.args is not None else None
        parts.append(f'photo {photo.name}' if photo is not None else f'seed {viz.latent.seed:.2f}')
        if viz.renderer.busy:
            parts.append('rendering...')
        text = '   '.join(parts)
        by = vy + vh - line_h - pad / 2
        dl.add_text(imgui.ImVec2(vx + pad, by), imgui.get_color_u32(imgui_utils.DIM_COLOR), text)
        if viz.camera.extrapolating and viz.info is not None and viz.info.camera:
            msg = 'extrapolating: outside the training pose range'
            ts = imgui.calc_text_size(msg)
            dl.add_text(imgui.ImVec2(vx + vw - ts.x - pad, y), imgui.get_color_u32(imgui_utils.WARN_COLOR), msg)
