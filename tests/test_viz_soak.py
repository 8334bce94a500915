"""The visualizer survives anything: bad and hostile files, a network that raises, network switches
mid-render, and a soak of thousands of random events (tests/viz_soak.py) against the real window
under Xvfb.

RAYCOND_SOAK_EVENTS sets the soak's event count. The default, 3000, keeps the test near a minute
on two cores; the full 10,000-event soak (`python tests/viz_soak.py --events 10000`) takes
about 150 CPU-seconds and is recorded in docs/reliability.md."""

import contextlib
import os

import pytest

import viz_soak
from test_gui_window import xvfb  # noqa: F401  (the module-scoped virtual display)
from viz_soak import BAD_FILES, BAD_SEED, HOSTILE, Soak

pytestmark = pytest.mark.gui

SOAK_EVENTS = int(os.environ.get('RAYCOND_SOAK_EVENTS', '3000'))


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    return viz_soak.make_files(str(tmp_path_factory.mktemp('soak-files')))


@pytest.fixture(scope='module')
def app(xvfb, files, tmp_path_factory):
    from viz.app import Visualizer
    # The soak types into the Photo panel's file field and may press Save: relative names land here.
    with contextlib.chdir(tmp_path_factory.mktemp('cwd')):
        viz = Visualizer([files['net32']], capture_dir=str(tmp_path_factory.mktemp('captures')), device='cpu',
                         fps_limit=0)
        yield viz
        viz.close()


@pytest.fixture
def soak(app, files, xvfb):
    s = Soak(app, files, seed=0, display=xvfb)
    s.settle()
    yield s
    assert not s.failures, '\n'.join(s.failures)


@pytest.mark.parametrize('key', BAD_FILES + HOSTILE)
def test_bad_file_shows_one_message_and_the_window_recovers(soak, app, files, key):
    soak._load(key)
    soak._check_bad('bad file', key)
    assert not soak.failures, soak.failures
    (msg, n), = soak.messages[key].items()
    assert n == 1 and msg.startswith('Error: ') and '\n' not in msg
    assert not any(os.path.exists(m) for m in files['markers'])
    soak._load('net32')
    res = soak.settle()
    assert res.error is None and app.showing_image and app.status_error is None


def test_hostile_pickle_asks_once_and_no_leaves_it_refused(soak, app, files):
    for _ in range(2):
        soak._load('hostile_system')
        soak._check_bad('hostile pickle', 'hostile_system')
    assert soak.dialogs['yes'] == 0 and soak.dialogs['no'] <= 1      # asked at most once per file
    assert files['hostile_system'] in app.network.trust.declined
    assert 'posix.system' in app.status_error and '--trust-pickle' in app.status_error
    assert not os.path.exists(files['markers'][0])


def test_fault_inside_network_is_shown_and_next_valid_seed_renders(soak, app):
    soak.ev_fault()
    assert not soak.failures, soak.failures
    assert app.result.error is None and app.showing_image
    assert soak.errors_seen['faulty.pkl'] >= 1
    app.latent.set_seed(BAD_SEED)                                      # and again: still shown, still alive
    res = soak.settle()
    assert 'injected fault' in res.error and app.status_error == 'Error: ' + res.error
    app.latent.set_seed(BAD_SEED - 3)
    res = soak.settle()
    assert res.error is None and app.texture.width == 32 and app.showing_image


@pytest.mark.parametrize('target', ['net32', 'net64'])
def test_switching_resolution_mid_render_shows_the_new_network(soak, app, files, target):
    soak.counts.clear()
    for _ in range(3):
        soak.ev_switch_mid_render()
    assert not soak.failures, soak.failures
    other = 'net64' if target == 'net32' else 'net32'
    soak._load(other)
    soak.frame()
    soak._load(target)
    res = soak.settle()
    assert res.args.pkl == files[target] and res.image.shape[0] == app.texture.width == int(target[3:])


@pytest.mark.slow
def test_soak_of_random_events_keeps_the_window_alive_and_memory_flat(app, files, xvfb):
    checkout_before = set(os.listdir(viz_soak.ROOT))
    soak, fig = viz_soak.soak_visualizer(app, files, events=SOAK_EVENTS, warmup=400, seed=0, display=xvfb,
                                         log=print)
    print('\n' + viz_soak.soak_report(soak, **fig))
    assert set(os.listdir(viz_soak.ROOT)) <= checkout_before  # nothing typed was saved into the checkout
    assert not soak.failures, '\n'.join(soak.failures)
    assert app.renderer._thread.is_alive() and app.frame_count > SOAK_EVENTS // 8
    assert fig['rss_end'] - fig['rss_warm'] < 100, fig
    assert set(BAD_FILES + HOSTILE) <= set(soak.messages)              # every bad file was tried and shown
    assert not any(os.path.exists(m) for m in files['markers'])
    assert sum(soak.counts.values()) >= SOAK_EVENTS
