"""Render a whole synthetic posed-heads dataset (images + 25-float camera labels) to disk."""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import signal
import threading
import time

import torch

from raycond.synth.factors import draw_dataset, factor_records
from raycond.synth.params import select_heads
from raycond.synth.render import render_heads
from raycond.synth.writer import DatasetWriter, check_destination, encode_png, image_path


def _render_batch(args):
    params, cams, resolution, supersample = args
    return [encode_png(img) for img in render_heads(params, cams, resolution, supersample=supersample)]


def _init_worker():
    torch.set_num_threads(1)            # one thread per process: no oversubscription on few cores
    # Ctrl-C is the parent's to handle (once, not as a traceback per worker): ignore it, then let
    # the signal through again if it was held while this process started (_sigint_held_for_children).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, 'pthread_sigmask'):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextlib.contextmanager
def _sigint_held_for_children():
    """Start worker processes with SIGINT blocked in this thread: the mask survives fork and exec, so
    a Ctrl-C while they start reaches no worker (each then ignores it in _init_worker), and reaches
    this process when the block ends, as KeyboardInterrupt. Ignoring SIGINT here instead (as before)
    lost a Ctrl-C pressed in that window. Without pthread_sigmask (Windows), SIGINT is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if hasattr(signal, 'pthread_sigmask'):
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def write_dataset(dest, count: int, resolution: int = 64, seed: int = 0, yaw_std: float = 20.0,
                  pitch_std: float = 8.0, max_yaw: float = 60.0, max_pitch: float = 25.0,
                  batch: int = 64, supersample: int = 1, force: bool = False, workers: int = 1,
                  progress=None) -> dict:
    """Render `count` random heads under FFHQ-like cameras into `dest` (ZIP or folder).

    The result depends only on (count, resolution, seed, pose options, supersample), not on
    `batch` or `workers` (worker processes render batches in parallel, single-threaded each).
    `progress` is an optional callable taking the number of images just written.
    dataset.json also holds each image's generative factors under "synth_params" and these
    settings under "synth" (raycond.synth.factors), so metrics can measure mode coverage.
    Returns a summary dict (dest, count, resolution, seconds).
    """
    count, resolution, batch, workers = int(count), int(resolution), int(batch), int(workers)
    if count < 1:
        raise ValueError(f'--count must be at least 1, got {count}')
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f'--resolution must be a power of two >= 4, got {resolution}')
    if batch < 1:
        raise ValueError(f'--batch must be at least 1, got {batch}')
    if workers < 1:
        raise ValueError(f'--workers must be at least 1, got {workers}')
    check_destination(str(dest), force)
    params, cams = draw_dataset(seed, count, yaw_std, pitch_std, max_yaw, max_pitch)
    start = time.time()
    tasks = [(select_heads(params, slice(lo, min(lo + batch, count))), cams[lo:lo + batch], resolution, supersample)
             for lo in range(0, count, batch)]
    labels = []
    pool = None
    if workers > 1 and len(tasks) > 1:
        pool = concurrent.futures.ProcessPoolExecutor(min(workers, len(tasks)), initializer=_init_worker,
                                                      mp_context=multiprocessing.get_context('spawn'))
        with _sigint_held_for_children():   # map() starts the processes
            results = pool.map(_render_batch, tasks)
    else:
        results = map(_render_batch, tasks)
    try:
        with DatasetWriter(dest, force=force) as writer:
            index = 0
            for pngs in results:
                for data in pngs:
                    path = image_path(index)
                    writer.add_bytes(path, data)
                    writer.count += 1
                    labels.append([path, [float(x) for x in cams[index].tolist()]])
                    index += 1
                if progress is not None:
                    progress(len(pngs))
            factors = factor_records(params)
            extra = dict(synth=dict(seed=int(seed), count=count, resolution=resolution, yaw_std=yaw_std,
                                    pitch_std=pitch_std, max_yaw=max_yaw, max_pitch=max_pitch,
                                    supersample=int(supersample)),
                         synth_params=[[lab[0], f] for lab, f in zip(labels, factors)])
            writer.close(labels, extra=extra)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return dict(dest=str(dest), count=count, resolution=resolution, seconds=time.time() - start)
