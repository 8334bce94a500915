"""The background render thread: newest request wins, stale results are dropped, errors come back as text."""

import threading
import time

from viz.async_renderer import AsyncRenderer
from viz.renderer import RenderResult


class FakeRenderer:
    """Blocks each render until released; records which args it rendered."""

    def __init__(self):
        self.rendered = []
        self.release = threading.Semaphore(0)
        self.started = threading.Event()

    def render(self, args):
        self.started.set()
        self.release.acquire(timeout=10)
        if args == 'boom':
            raise RuntimeError('renderer exploded')
        self.rendered.append(args)
        return RenderResult(args=args, error='bad input' if args == 'bad' else None)


def _wait_result(ar, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        res = ar.get_result()
        if res is not None:
            return res
        time.sleep(0.005)
    raise AssertionError('no result')


def _release_all(fr, ar, n=3):
    for _ in range(n):
        fr.release.release()
    ar.close()


def test_set_args_returns_while_the_renderer_is_busy():
    fr = FakeRenderer()
    ar = AsyncRenderer(fr)
    try:
        ar.set_args('a')
        assert fr.started.wait(5)                   # 'a' is rendering and stays blocked below
        poster = threading.Thread(target=lambda: [ar.set_args(x) for x in ('b', 'c', 'd')])
        poster.start()
        poster.join(5)
        assert not poster.is_alive()                # posted without the renderer finishing anything
        assert fr.rendered == [] and ar.get_result() is None and ar.busy
    finally:
        _release_all(fr, ar)


def test_only_the_newest_pending_request_is_rendered():
    fr = FakeRenderer()
    ar = AsyncRenderer(fr)
    try:
        ar.set_args('a')
        assert fr.started.wait(5)
        for x in ('b', 'c', 'd'):
            ar.set_args(x)
        fr.release.release()                        # finish 'a'
        res = _wait_result(ar)
        assert res.args == 'a' and not ar.is_current(res)
        fr.release.release()                        # then only the newest pending request, 'd'
        res = _wait_result(ar)
        assert res.args == 'd' and ar.is_current(res)
        assert fr.rendered == ['a', 'd']
    finally:
        _release_all(fr, ar)


def test_unchanged_args_are_not_rendered_again():
    fr = FakeRenderer()
    ar = AsyncRenderer(fr)
    try:
        ar.set_args('d')
        fr.release.release()
        _wait_result(ar)
        assert ar.wait_idle(5)
        assert ar.set_args('d') == ar.latest_stamp and not ar.busy
        assert fr.rendered == ['d']
    finally:
        _release_all(fr, ar)


def test_stale_results_dropped_after_invalidate_and_out_of_order():
    fr = FakeRenderer()
    ar = AsyncRenderer(fr)
    try:
        ar.set_args('old-network')
        assert fr.started.wait(5)
        ar.set_args('new-network', invalidate=True)  # e.g. the user switched networks
        fr.release.release()
        fr.release.release()
        assert ar.wait_idle(5)
        res = ar.get_result()
        assert res.args == 'new-network'            # the old network's image never shows up
        assert fr.rendered == ['old-network', 'new-network'] and ar.num_dropped >= 1
        # a result older than one already delivered is dropped as well
        old = RenderResult(args='late')
        old.stamp = res.stamp - 1
        ar._results.append(old)
        assert ar.get_result() is None
    finally:
        ar.close()


def test_errors_come_back_as_text_and_thread_survives():
    fr = FakeRenderer()
    ar = AsyncRenderer(fr)
    try:
        ar.set_args('boom')
        fr.release.release()
        res = _wait_result(ar)
        assert res.image is None and 'renderer exploded' in res.error and 'RuntimeError' in res.traceback
        ar.set_args('bad')
        fr.release.release()
        assert _wait_result(ar).error == 'bad input'
        ar.set_args('fine')
        fr.release.release()
        res = _wait_result(ar)
        assert res.args == 'fine' and res.error is None
    finally:
        ar.close()
