"""The Dear ImGui half of the Photo panel (viz/photo.py): path field, recent photos, thumbnails,
Invert with progress and Cancel, the result's view and camera controls, Save and Load. It only
draws PhotoWidget's state and calls its methods; the state logic stays testable without a window."""

from __future__ import annotations

import os

import gui_utils  # noqa: F401 - sets the GLFW/OpenGL platform before imgui_bundle loads glfw
from imgui_bundle import imgui

from gui_utils import gl_utils, imgui_utils

from .renderer import DIFFERENCE_GAIN

VIEW_LABELS = {'render': 'Reconstruction', 'target': 'Target', 'difference': 'Difference'}


class PhotoDrawing:
    """Mixed into PhotoWidget: everything that calls imgui."""

    def _texture(self, name, image):
        """A GL texture showing `image`, re-uploaded only when a different array is given."""
        entry = self._textures.get(name)
        if entry is None:
            entry = self._textures[name] = [gl_utils.Texture(image, linear=False), image]
        elif entry[1] is not image:
            entry[0].update(image)
            entry[1] = image
        return entry[0]

    def _draw_images(self, avail):
        pairs = self.panel_images()
        if not pairs:
            return
        per_row = min(len(pairs), 2)                                  # 4 after an aligned inversion: 2 rows of 2
        size = min((avail - 8 * (per_row - 1)) / per_row, 160.0)
        for i, (name, img, caption) in enumerate(pairs):
            if i % per_row:
                imgui.same_line(0, 8)
            tex = self._texture(name, img)
            imgui.begin_group()
            imgui.image(imgui.ImTextureRef(tex.gl_id), imgui.ImVec2(size, size * tex.height / max(tex.width, 1)))
            imgui.push_text_wrap_pos(imgui.get_cursor_pos_x() + size)  # captions wrap at the thumbnail's width
            imgui_utils.dim_text(caption)
            imgui.pop_text_wrap_pos()
            imgui.end_group()

    def draw(self, viz):
        avail = imgui.get_content_region_avail().x
        submitted, self.path_input = imgui_utils.input_with_button('##photo', 'photo path (.png, .jpg)',
                                                                   self.path_input, 'Open')
        if submitted:
            self.open(self.path_input)
        imgui_utils.tooltip('A photo framed like the training data. You can also drop a .png or .jpg onto the window.')
        if self.recent:
            imgui.set_next_item_width(avail * 0.5 - 4)
            if imgui.begin_combo('##recentphotos', 'Recent', imgui.ComboFlags_.height_large):
                for p in self.recent:
                    if imgui.selectable(imgui_utils.path_label(p), p == self.photo_path)[0]:
                        self.open(p)
                    imgui_utils.tooltip(p)
                imgui.end_combo()
        self._draw_images(avail)
        self._draw_invert(viz, avail)
        if self.source is not None:
            self._draw_result(viz, avail)
        self._draw_files(viz, avail)
        if self.job is not None and self.job.messages:
            imgui_utils.dim_text(self.job.messages[-1])              # e.g. which loss the library uses
        if self.error:
            imgui_utils.colored_text(imgui_utils.ERROR_COLOR, self.error)
        elif self.message:
            imgui_utils.dim_text(self.message)

    def _draw_invert(self, viz, avail):
        with imgui_utils.grayed_out(self.busy):
            _, self.default_steps = imgui.checkbox('Default steps', self.default_steps)
            imgui_utils.tooltip('Let raycond.inversion choose the step counts of both stages')
            imgui.same_line()
            _, self.use_current_camera = imgui.checkbox('Current camera', self.use_current_camera)
            imgui_utils.tooltip('Invert at the camera the sliders show now, instead of estimating it from the photo')
            if not self.default_steps:
                with imgui_utils.item_width(avail * 0.3):
                    _, self.num_steps = imgui.input_int('Steps', self.num_steps, 50)
                    self.num_steps = min(max(self.num_steps, 1), 100000)
                    imgui_utils.tooltip('Latent (pivot) optimisation steps')
                    imgui.same_line()
                    _, self.tune_steps = imgui.input_int('Tune', self.tune_steps, 50)
                    self.tune_steps = min(max(self.tune_steps, 0), 100000)
                    imgui_utils.tooltip('Pivotal tuning steps of the generator weights (0 = none)')
        job = self.job
        if self.busy:
            p = job.progress
            label = f'{p.stage} {p.step}/{p.total}' if p.total else p.stage
            imgui.progress_bar(p.fraction, imgui.ImVec2(avail * 0.7, 0), label)
            imgui.same_line()
            if imgui.button('Cancel'):
                self.cancel()
            if p.loss is not None and p.loss == p.loss:         # NaN while the pose regressor trains
                imgui_utils.dim_text(f'loss {p.loss:.4f}' + ('   cancelling ...' if job.cancel_requested else ''))
            return
        with imgui_utils.grayed_out(self.photo_path is None or viz.current_args is None
                                    or viz.current_args.pkl is None):
            clicked = imgui.button('Invert')
            lo, hi = imgui.get_item_rect_min(), imgui.get_item_rect_max()
            self.invert_button_rect = (lo.x, lo.y, hi.x - lo.x, hi.y - lo.y)
            if clicked:
                try:
                    self.invert(viz.current_args, viz.info)
                except (ValueError, OSError) as e:
                    self.error = str(e)
        imgui_utils.tooltip('Find the camera and latent that reproduce the photo, then tune the network around them.\n'
                            'Runs in the background; the window stays usable.')

    def _draw_result(self, viz, avail):
        imgui.separator_text(f'Inversion: {self.source.name}')
        rep = (self.extras or {}).get('domain')
        if rep is not None and rep.warning:
            imgui_utils.colored_text(imgui_utils.WARN_COLOR, f'Warning: {rep.warning}')
        elif rep is not None:
            imgui_utils.dim_text(f'domain score {rep.score:.2f}: looks like the training images')
        if viz.current_args is not None and viz.current_args.pkl != self.source_pkl:
            imgui_utils.colored_text(imgui_utils.WARN_COLOR, 'Made with another network '
                                     f'({os.path.basename(self.source_pkl or "")}): load it to show the photo.')
        if imgui.radio_button('Photo', self.show_photo):
            self.show_photo = True
        imgui.same_line()
        if imgui.radio_button('Random seeds', not self.show_photo):
            self.show_seeds()
        imgui_utils.tooltip('Back to the seeds of the Latent section (the inversion is kept)')
        with imgui_utils.grayed_out(not self.show_photo):
            for i, (view, label) in enumerate(VIEW_LABELS.items()):
                if i:
                    imgui.same_line()
                disabled = view != 'render' and self.source.target is None
                with imgui_utils.grayed_out(disabled):
                    if imgui.radio_button(label, self.view == view):
                        self.view = view
            imgui_utils.tooltip(f'Difference: |target - reconstruction| x{DIFFERENCE_GAIN} at the estimated camera')
            if imgui.button('Camera to estimate'):
                self.reset_camera()
            imgui_utils.tooltip('Sliders back to the camera estimated from the photo')
            if self.camera_residual > 1e-3:
                imgui_utils.colored_text(imgui_utils.WARN_COLOR, 'The estimated camera is not an orbit camera: the '
                                         f'sliders approximate it (label error {self.camera_residual:.3f}).')

    def _draw_files(self, viz, avail):
        imgui.set_next_item_width(avail - imgui.calc_text_size('SaveLoad').x - 6 * imgui.get_style().frame_padding.x)
        _, self.file_input = imgui.input_text_with_hint('##inversionfile', 'inversion.pt', self.file_input)
        with imgui_utils.grayed_out(self.busy):
            imgui.same_line()
            with imgui_utils.grayed_out(self.source is None):
                clicked = imgui.button('Save')
            if clicked:
                try:
                    self.save_inversion(self.file_input)
                except (ValueError, OSError) as e:
                    self.error = str(e)
            imgui_utils.tooltip('Write the pivot, camera and tuned weights (empty path: the capture folder)')
            imgui.same_line()
            if imgui.button('Load'):
                try:
                    self.load_inversion(self.file_input, viz.current_args)
                except (ValueError, OSError) as e:
                    self.error = str(e)
            imgui_utils.tooltip('Read an inversion.pt made with the current network')
