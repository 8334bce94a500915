"""Background render thread: the GUI posts the newest args and never waits on the network.

Newest wins: requests posted while a render runs replace each other, only the latest is rendered
next. Every request gets an increasing stamp; `get_result()` hands back only results newer than
the last one handed out, and drops results older than the last `invalidate` (e.g. a network or
device switch: an image of the previous network must not appear after the switch). Exceptions
come back as `result.error` text (the renderer returns them; a crash of the renderer itself is
caught here too).
"""

from __future__ import annotations

import threading
import traceback

from .renderer import Renderer, RenderResult


class AsyncRenderer:
    """Runs `renderer.render(args)` on one daemon thread. `renderer` needs a `render(args)` method."""

    def __init__(self, renderer=None, *, start=True):
        self._renderer = renderer if renderer is not None else Renderer()
        self._cond = threading.Condition()
        self._pending = None            # (stamp, args) waiting to be rendered
        self._stamp = 0                 # stamp of the newest posted request
        self._min_stamp = 0             # results older than this are stale (dropped)
        self._last_args = None
        self._results = []              # finished results not yet fetched
        self._delivered_stamp = 0
        self._busy_stamp = None         # stamp being rendered right now
        self._stop = False
        self.num_rendered = 0
        self.num_dropped = 0
        self._thread = threading.Thread(target=self._run, name='viz-render', daemon=True)
        if start:
            self._thread.start()

    # -- GUI side -----------------------------------------------------------------------------
    def set_args(self, args, *, invalidate=False, force=False):
        """Post a request; no-op when `args` equals the last posted args (unless `force`).

        With `invalidate`, results of all earlier requests are dropped when they arrive.
        Returns the request's stamp (or the previous stamp when nothing was posted).
        """
        with self._cond:
            if not force and not invalidate and args == self._last_args:
                return self._stamp
            self._stamp += 1
            if invalidate:
                self._min_stamp = self._stamp
            if self._pending is not None:
                self.num_dropped += 1   # superseded before it started
            self._pending = (self._stamp, args)
            self._last_args = args
            self._cond.notify_all()
            return self._stamp

    def get_result(self):
        """Newest finished result not older than what was already returned, or None. Never blocks."""
        with self._cond:
            results, self._results = self._results, []
        best = None
        for res in results:
            if res.stamp < self._min_stamp or res.stamp <= self._delivered_stamp:
                self.num_dropped += 1
                continue
            if best is not None:
                self.num_dropped += 1
            best = res
        if best is not None:
            self._delivered_stamp = best.stamp
        return best

    @property
    def latest_stamp(self):
        return self._stamp

    @property
    def busy(self):
        """True while a request is pending or being rendered."""
        with self._cond:
            return self._pending is not None or self._busy_stamp is not None

    def is_current(self, result):
        """True when `result` answers the newest posted request."""
        return result is not None and result.stamp == self._stamp

    def wait_for_result(self, timeout):
        """Block up to `timeout` s until a finished result is waiting (or nothing is being rendered)."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._results) or (self._pending is None and self._busy_stamp is None),
                                       timeout)

    def wait_idle(self, timeout=None):
        """Block until nothing is pending or rendering (tests, headless use). Returns True if idle."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and self._busy_stamp is None, timeout)

    def close(self, timeout=5.0):
        """Stop the thread (the current render finishes first)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- render thread ------------------------------------------------------------------------
    def _run(self):
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or self._pending is not None)
                if self._stop:
                    return
                stamp, args = self._pending
                self._pending = None
                self._busy_stamp = stamp
            try:
                res = self._renderer.render(args)
                if res is None:
                    res = RenderResult(args=args)
            except Exception as e:  # noqa: BLE001 - the renderer should not raise, but never die
                res = RenderResult(args=args, error=f'{type(e).__name__}: {e}', traceback=traceback.format_exc())
            res.stamp = stamp
            with self._cond:
                self._results.append(res)
                del self._results[:-4]
                self._busy_stamp = None
                self.num_rendered += 1
                self._cond.notify_all()
