"""Photo widget: open a photo (path, recent list, drop onto the window), invert it into the current
network on a background job (progress, stage, loss, live preview, Cancel), then show the inverted
face in the main view, where every camera control works on it as on a random seed.

The photo is cut to the network's crop first (raycond.align, as projector.py does); after an
inversion the panel shows the face with its crop square, the reconstruction pasted back into the
photo and the domain check's warning. The camera sliders start at the estimated camera, the view toggles between the
rendered face, the target and their difference, and the inversion can be saved and loaded
(`inversion.pt`, written by raycond.inversion). One click goes back to random seeds. The photo is
shown only while the network it was inverted with is current. State logic works without a window.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from raycond import generate as gen
from raycond.camera import LABEL_DIM

from .capture import next_capture_path
from .inversion_job import (PHOTO_SUFFIXES, check_photo_path, preview_to_uint8, start_inversion, start_load,
                            start_save)
from .photo_draw import PhotoDrawing
from .renderer import PhotoSource

THUMBNAIL_SIZE = 256


def _fit_thumbnail(img: np.ndarray) -> np.ndarray:
    im = Image.fromarray(img)
    im.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.LANCZOS)
    return np.asarray(im.convert('RGB'))


def face_overlay(photo: np.ndarray, alignment) -> np.ndarray:
    """Thumbnail of the photo with the crop square (green) and the eyes and mouth corners (red) drawn on."""
    from PIL import ImageDraw
    from raycond import align
    im = Image.fromarray(photo).convert('RGB')
    draw = ImageDraw.Draw(im)
    width = max(1, round(max(im.size) / 200))
    draw.line([tuple(p) for p in alignment.crop_corners()] + [tuple(alignment.crop_corners()[0])],
              fill=(0, 255, 0), width=width)
    if alignment.landmarks is not None:
        for x, y in align.key_points(alignment.landmarks):
            r = 2 * width
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 0, 0))
    return _fit_thumbnail(np.asarray(im))


def aligned_invert(info, invert=None):
    """An `invert_fn` for start_inversion that does what projector.py does around the library: cut the
    photo to the network's crop (raycond.align), invert the crop, check its domain and paste the
    reconstruction back. The result carries `photo_extras` (face overlay, edited photo, domain report)."""
    def run(G, target, **kw):
        from raycond import align, target_image
        from raycond.inversion import domain, fingerprint
        from raycond.inversion import invert as library_invert
        log = kw.get('log') or print
        photo = target_image.load_photo(target)
        convention = align.convention_for_network(info, kw.get('network_path'))
        crop, al = align.align_photo(photo, convention, info.img_resolution, detect=align.detector_available())
        if al.message:
            log(al.message)
        # As projector.py: FFHQ-style networks start the camera at the face landmarks' head pose.
        hint = align.camera_hint(al, convention) if kw.get('camera') is None and getattr(info, 'camera', True) else None
        if hint is not None:
            log(f'camera start from the face landmarks: yaw {hint[0]:+.1f} deg, pitch {hint[1]:+.1f} deg')
            kw = dict(kw, camera_hint=hint)
        res = (invert or library_invert)(G, target if al.convention == 'center' else crop, **kw)
        base = getattr(res, 'base_G', None) or res.G
        device = next(base.parameters()).device
        rep = domain.check(base, info, crop, res.meta.get('fingerprint') or fingerprint(base), al.convention,
                           device=device, log=log)
        edited = None
        if al.landmarks is not None:
            edited = _fit_thumbnail(al.paste_back(photo, gen.to_uint8(res.render().cpu()).numpy()[0]))
        res.photo_extras = dict(face=face_overlay(photo, al), edited=edited, domain=rep, convention=al.convention)
        return res
    return run


def read_thumbnail(path) -> np.ndarray:
    """An image file as HxWx3 uint8 at most THUMBNAIL_SIZE on its long side (only for the panel: the
    library frames the target for the network itself)."""
    try:
        with Image.open(path) as im:
            im.draft('RGB', (THUMBNAIL_SIZE, THUMBNAIL_SIZE))     # JPEGs decode at a reduced size
            im = im.convert('RGB')
            im.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.LANCZOS)
            return np.asarray(im, dtype=np.uint8).copy()
    except OSError as e:
        raise ValueError(f'{os.path.basename(path)}: not a readable image ({e})') from e


def as_uint8_image(img) -> np.ndarray | None:
    """A target as the library keeps it ((1, C, H, W) uint8 tensor) -> HxWx3 uint8; None stays None."""
    if img is None:
        return None
    x = img.detach().cpu().numpy() if hasattr(img, 'detach') else np.asarray(img)
    if x.dtype != np.uint8:
        return preview_to_uint8(img)
    if x.ndim == 4:
        x = x[0]
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[2] not in (1, 3):
        x = np.transpose(x, (1, 2, 0))                            # CHW -> HWC
    if x.ndim == 2:
        x = x[:, :, None]
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(x[:, :, :3])


def is_photo_file(path) -> bool:
    """True for the files a drop onto the window opens as a photo (not as a network)."""
    return str(path).lower().endswith(PHOTO_SUFFIXES)


class PhotoWidget(PhotoDrawing):
    """Photo and inversion state -> RenderArgs fields (photo, photo_view)."""

    def __init__(self, camera, capture_dir='captures'):
        self.camera = camera             # the CameraWidget set to the estimated camera after an inversion
        self.capture_dir = capture_dir
        self.path_input = ''
        self.recent = []
        self.photo_path = None           # the opened photo
        self.thumbnail = None            # HxWx3 uint8 of it, at most THUMBNAIL_SIZE wide
        self.default_steps = True        # let the library choose the step counts
        self.num_steps = 100
        self.tune_steps = 50
        self.seed = 0
        self.use_current_camera = False  # invert at the current camera instead of estimating one
        self.job = None                  # the running or last PhotoJob
        self._job_kind = None            # 'invert', 'load' or 'save'
        self._job_pkl = None             # network the job's inversion belongs to
        self._job_name = ''
        self._job_photo = None           # the photo file an 'invert' job inverts
        self.source = None               # PhotoSource of the inverted photo
        self.source_pkl = None           # the network file it was inverted with
        self.source_photo = None         # the photo opened when it was made or loaded (a newly opened one replaces it)
        self.show_photo = False          # main view: the photo (True) or random seeds (False)
        self.view = 'render'
        self.camera_residual = 0.0       # how far the sliders are from the estimated label
        self.extras = None               # after an inversion: face overlay, pasted-back photo, domain report
        self.file_input = ''             # inversion.pt to save/load
        self.error = None
        self.message = None
        self._result = None              # the library's result behind `source` (what Save writes)
        self.reconstruction = None       # HxWx3 uint8 render of `source` at its camera (panel thumbnail)
        self.invert_button_rect = None   # (x, y, w, h) of the Invert button in the last frame (GUI tests)
        self._textures = {}              # name -> [gl_utils.Texture, image uploaded]

    # -- state ---------------------------------------------------------------------------------
    def open(self, path):
        """Select a photo to invert. Returns True on success; errors go to `self.error`."""
        self.path_input = (path or '').strip()
        self.error = self.message = None
        try:
            path = check_photo_path(self.path_input)
            thumb = read_thumbnail(path)
        except (ValueError, OSError) as e:
            self.error = str(e)
            return False
        self.photo_path, self.thumbnail = path, thumb
        if path in self.recent:
            self.recent.remove(path)
        self.recent.insert(0, path)
        del self.recent[10:]
        return True

    @property
    def busy(self):
        return self.job is not None and self.job.running

    def _start(self, kind, job, pkl=None, name=''):
        self.job, self._job_kind, self._job_pkl, self._job_name = job, kind, pkl, name
        self.error, self.message = None, None

    def invert(self, args, info, *, invert_fn=None):
        """Start inverting the opened photo into the network of `args` (the current RenderArgs)."""
        if self.busy:
            raise ValueError('a photo job is already running: wait for it or press Cancel')
        if self.photo_path is None:
            raise ValueError('open a photo first (a .png or .jpg path, or drop one onto the window)')
        camera = None
        if self.use_current_camera and info is not None and info.camera:
            camera = gen.c_for_network(info, args.yaw_deg, args.pitch_deg, fov_deg=args.fov_deg, radius=args.radius,
                                       lookat=args.lookat)
        if invert_fn is None and info is not None:
            invert_fn = aligned_invert(info)
        job = start_inversion(args.pkl, self.photo_path, key=args.key, device=args.device, camera=camera,
                              config=self.config(fp32=args.force_fp32), num_threads=args.num_threads,
                              trust_pickle=args.trust_pickle, invert_fn=invert_fn)
        self._start('invert', job, args.pkl, os.path.basename(self.photo_path))
        self._job_photo = self.photo_path

    def config(self, fp32=False):
        """The panel's settings as the library's InversionConfig (default steps: the library's). `fp32`:
        the Performance section's "Force fp32" (RenderArgs.force_fp32), so that the inversion follows the
        precision the visualizer renders in (off: the network's fp16 layers in bf16/fp16, force_fp32_for)."""
        from raycond.inversion.config import InversionConfig
        steps = {} if self.default_steps else dict(num_steps=int(self.num_steps), tune_steps=int(self.tune_steps))
        return InversionConfig(seed=int(self.seed), fp32=bool(fp32), **steps)

    def load_inversion(self, path, args, *, load_fn=None, load_network_fn=None):
        """Start reading a saved inversion onto the network of `args`."""
        if self.busy:
            raise ValueError('a photo job is already running: wait for it or press Cancel')
        path = os.path.expanduser((path or '').strip())
        if not path:
            raise ValueError('no inversion file given: enter the path of an inversion.pt')
        if not os.path.isfile(path):
            raise FileNotFoundError(f'inversion file not found: {path}')
        self._start('load', start_load(path, args.pkl, args.key, device=args.device, num_threads=args.num_threads,
                                       trust_pickle=args.trust_pickle, load_fn=load_fn,
                                       load_network_fn=load_network_fn),
                    args.pkl, os.path.basename(path))

    def save_inversion(self, path=None):
        """Start writing the shown inversion; an empty path picks capture_dir/inversion-NNNN.pt."""
        if self.busy:
            raise ValueError('a photo job is already running: wait for it or press Cancel')
        if self.source is None:
            raise ValueError('nothing to save: invert a photo first')
        path = os.path.expanduser((path or '').strip()) or next_capture_path(self.capture_dir, 'inversion', 'pt')
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        self.file_input = path
        self._start('save', start_save(self._result, path), name=os.path.basename(path))

    def cancel(self):
        if self.job is not None:
            self.job.cancel()

    def show_seeds(self):
        """Back to random seeds (the inversion is kept: `show_photo = True` shows it again)."""
        self.show_photo = False

    def poll(self):
        """Take a finished job's outcome (called every frame, whether or not the panel is open).
        Returns True when a new photo became the one shown."""
        job = self.job
        if job is None or job.running or self._job_kind is None:
            return False
        kind, self._job_kind = self._job_kind, None
        if job.state == 'failed':
            self.error = f'{kind} failed: {job.error}'
            return False
        if job.state == 'cancelled':
            self.message = f'{kind} cancelled'
            return False
        if kind == 'save':
            self.message = f'saved {job.result}'
            return False
        self._take_result(job.result, self._job_pkl, self._job_name, from_photo=kind == 'invert')
        self.source_photo = self._job_photo if kind == 'invert' else self.photo_path
        self.reconstruction = job.preview
        return True

    def _take_result(self, result, pkl, name, from_photo):
        self._result = result
        self.extras = getattr(result, 'photo_extras', None) if from_photo else None
        self.source = PhotoSource.from_result(result, target=as_uint8_image(getattr(result, 'target', None)),
                                              name=name)
        self.source_pkl = pkl
        self.show_photo = True
        self.view = 'render'
        meta = getattr(result, 'meta', None) or {}
        what = f'inverted {name}' if from_photo else f'loaded {name}'
        if 'seconds' in meta and from_photo:
            what += f' in {meta["seconds"]:.0f} s'
        if not meta.get('has_camera', self.source.camera.shape[1] == LABEL_DIM):
            self.message = f'{what} (this network has no camera: only the latent was inverted)'
            return
        self.reset_camera()
        c = self.camera
        how = 'estimated' if meta.get('camera_estimated', True) else 'given'
        self.message = f'{what}: {how} camera yaw {c.yaw:+.1f}, pitch {c.pitch:+.1f}, FOV {c.fov:.2f} deg'

    def update_args(self, d):
        """Show the photo while it is selected and its network is the current one."""
        if self.show_photo and self.source is not None and d.get('pkl') == self.source_pkl:
            d.update(photo=self.source, photo_view=self.view)

    def close(self):
        self.cancel()

    def reset_camera(self):
        """Sliders back to the estimated camera of the shown inversion."""
        if self.source is not None:
            lookat = (getattr(self._result, 'meta', None) or {}).get('lookat')
            self.camera_residual = self.camera.set_label(self.source.camera.cpu(), lookat_hint=lookat)

    def panel_images(self):
        """(texture name, HxWx3 image, caption) to show: the opened photo and the live preview while
        inverting; the shown inversion's target and reconstruction until another photo is opened;
        then that photo alone."""
        inverting = self.busy and self._job_kind == 'invert'
        if inverting:
            pairs = [('photo', self.thumbnail, 'photo'), ('preview', self.job.preview, 'inverting ...')]
        elif self.source is not None and self.photo_path == self.source_photo:
            pairs = [('target', self.source.target, 'target'), ('reconstruction', self.reconstruction, 'reconstruction')]
            if self.extras is not None:
                pairs += [('face', self.extras['face'], f"face and '{self.extras['convention']}' crop"),
                          ('edited', self.extras['edited'], 'pasted back')]
        else:
            pairs = [('photo', self.thumbnail, 'photo')]
        return [p for p in pairs if p[1] is not None]
