"""Long photo jobs (invert, load, save) on a background thread, readable by the GUI at any moment.

Contract: the GUI starts a job and from then on only reads. `state` is 'running', then exactly one
of 'done', 'cancelled' or 'failed'. `progress` is the newest (step, total, stage, loss) reported;
`preview` the newest reconstruction as HxWx3 uint8 with `preview_version` counting updates, so the
GUI re-uploads a texture only when it changed; `messages` keeps the library's log lines (e.g.
which loss it uses). A failure leaves `error` (one line, shown in the panel) and `traceback`.
`cancel()` sets an event: the library's progress callback answers it with False at its next step,
and the job ends as 'cancelled' whatever the library then returns or raises. The library opens
the network file itself, on the job's thread (its own copy, with the snapshot's discriminator and
camera ranges when the file has them), so the render thread never shares a module that is being
optimised, and the GUI never waits on a file.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import traceback

import numpy as np

from raycond import generate as gen
from raycond import loading
from raycond import threads

from .renderer import one_line_error

PHOTO_SUFFIXES = ('.png', '.jpg', '.jpeg')


@dataclasses.dataclass(frozen=True)
class Progress:
    """One progress report of the library (`inversion.invert(progress=...)`)."""
    step: int = 0
    total: int = 0
    stage: str = 'starting'
    loss: float | None = None

    @property
    def fraction(self) -> float:
        return min(max(self.step / self.total, 0.0), 1.0) if self.total else 0.0


def preview_to_uint8(preview) -> np.ndarray | None:
    """(1, C, H, W) float in [-1, 1] (tensor or array) -> HxWx3 uint8; None stays None."""
    if preview is None:
        return None
    x = preview.detach().float().cpu().numpy() if hasattr(preview, 'detach') else np.asarray(preview, np.float32)
    if x.ndim == 4:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f'preview must have shape (1, C, H, W), got {tuple(np.shape(preview))}')
    x = np.transpose(x, (1, 2, 0))
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(np.clip(x[:, :, :3] * 127.5 + 128, 0, 255).astype(np.uint8))


class PhotoJob:
    """Runs `work(job)` on one daemon thread. `work` passes `job.report` to the library as its
    progress callback (it returns False once cancelled) and `job.log` as its log, and returns the
    job's result (kept in `result`)."""

    def __init__(self, work, *, name='viz-photo-job', start=True):
        self._work = work
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self.state = 'running'
        self.progress = Progress()
        self.preview = None           # newest reconstruction preview, HxWx3 uint8
        self.preview_version = 0      # incremented with every new preview
        self.result = None
        self.messages = []            # log lines of the library, newest last
        self.error = None             # one line for the panel
        self.traceback = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        if start:
            self._thread.start()

    # -- GUI side -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.state == 'running'

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def cancel(self):
        """Ask the job to stop at its next progress report (never blocks)."""
        self._cancel.set()

    def wait(self, timeout=None) -> bool:
        """Block until the job ended (tests, shutdown). Returns True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- job thread -----------------------------------------------------------------------------
    def report(self, step, total, stage, loss=None, preview=None) -> bool:
        """The library's progress callback: records the report, returns False once cancelled."""
        img = preview_to_uint8(preview)
        with self._lock:
            self.progress = Progress(int(step), int(total), str(stage), None if loss is None else float(loss))
            if img is not None:
                self.preview = img
                self.preview_version += 1
        return not self._cancel.is_set()

    def log(self, *parts):
        """The library's `log` (print-like): keeps the line for the panel."""
        with self._lock:
            self.messages = self.messages[-19:] + [' '.join(str(p) for p in parts)]

    def _run(self):
        try:
            result = self._work(self)
        except Exception as e:  # noqa: BLE001 - every failure is shown in the panel
            if self._cancel.is_set():
                self.state = 'cancelled'
            else:
                self.error, self.traceback = one_line_error(e), traceback.format_exc()
                self.state = 'failed'
            return
        if self._cancel.is_set():
            self.state = 'cancelled'
        else:
            self.result = result
            self.state = 'done'


# ------------------------------------------------------------------------------------------------
# The three jobs of the Photo panel. `invert_fn`/`load_fn`/`load_network_fn` are the library's
# functions unless a test passes stand-ins; raycond.inversion is imported on the job's thread, so
# that opening the visualizer does not pay for it.


def _load_network(pkl, key, device, trust_pickle=False):
    dev = gen.resolve_device(device)
    G, info = loading.load_network_and_info(pkl, key=key, device=dev, trust_pickle=trust_pickle)
    return G, info, dev


def check_photo_path(path) -> str:
    """The path of an image the panel can invert, or ValueError/FileNotFoundError saying why not."""
    path = os.path.expanduser((path or '').strip())
    if not path:
        raise ValueError('no photo given: enter the path of a .png or .jpg image')
    if not path.lower().endswith(PHOTO_SUFFIXES):
        raise ValueError(f'{os.path.basename(path)}: expected a .png or .jpg image')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'photo not found: {path}')
    return path


def _use_threads(num_threads):
    """The Performance section's CPU thread count, on this job's thread (OpenMP counts are per thread);
    0 = automatic (follows the competition when the visualizer turned that on)."""
    threads.set_num_threads(num_threads)


def start_inversion(pkl, target, *, key='G_ema', device='auto', camera=None, config=None, num_threads=0,
                    trust_pickle=False, invert_fn=None) -> PhotoJob:
    """Invert `target` (a path or an HxWx3 uint8 image) into the network file `pkl` with `config`
    (a raycond.inversion.InversionConfig; None: the library's defaults), as projector.py does; the
    job's result is the library's `Inversion`. The first report with a preview is the encoder's
    estimate, within a few milliseconds once the network is open; later ones refine it.
    num_threads: torch CPU threads (0 = automatic). trust_pickle: the user agreed to run this
    file's code (the Network section asked); the library opens files safely only, so such a
    network is loaded here and handed over as a module."""
    if pkl is None:
        raise ValueError('load a network before inverting a photo')

    def work(job):
        _use_threads(num_threads)
        job.report(0, 0, 'loading network')
        G, more = pkl, {}
        if trust_pickle:
            G, info, _dev = _load_network(pkl, key, 'cpu', trust_pickle=trust_pickle)  # a digest: only the bytes agreed to
            more = dict(info=info)
        invert = invert_fn
        if invert is None:
            from raycond import inversion
            invert = inversion.invert
        return invert(G, target, camera=camera, config=config, device=gen.resolve_device(device),
                      progress=job.report, network_path=pkl, log=job.log, **more)
    return PhotoJob(work, name='viz-invert')


def start_load(path, pkl, key, *, device='auto', num_threads=0, trust_pickle=False, load_fn=None,
               load_network_fn=None) -> PhotoJob:
    """Read a saved inversion (`inversion.pt`) onto the network `pkl`."""
    if pkl is None:
        raise ValueError('load the network the inversion was made with before loading it')

    def work(job):
        _use_threads(num_threads)
        job.report(0, 1, 'loading')
        G, _info, dev = (load_network_fn or _load_network)(pkl, key, device, trust_pickle=trust_pickle)
        load = load_fn
        if load is None:
            from raycond import inversion
            load = inversion.load
        res = load(path, G=G, device=dev)
        job.report(1, 1, 'loaded', None, res.render())    # the reconstruction, for the panel's thumbnail
        return res
    return PhotoJob(work, name='viz-photo-load')


def start_save(result, path) -> PhotoJob:
    """Write an inversion result to `path` (the library writes it; no pickled code)."""
    def work(job):
        job.report(0, 1, 'saving')
        result.save(path)
        job.report(1, 1, 'saved')
        return path
    return PhotoJob(work, name='viz-photo-save')
