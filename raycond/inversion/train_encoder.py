"""Give a network's encoder a camera reader trained on labelled photos (once per network).

    python -m raycond.inversion.train_encoder --network=NET.pkl --data=DATASET.zip [--data=MORE.zip] [--out=PATH]

DATASET is the network's training data or any dataset of the same kind with 25-float camera labels
(`dataset.json` as EG3D and `dataset_tool.py` write it); --data may be given more than once (e.g.
the training data and photos rendered or taken another way, so the reader does not learn one
rendering's look). The network's encoder (beside the network,
in the cache, or trained now on the network's own samples) gets a second network that reads the
camera from those photos; a tenth of them is held out to print both camera errors. The result is
written beside the network as `<name>.encoder.safetensors` (where `invert` and the visualizer look
first) or to --out. With a camera reader, the inversion keeps its camera instead of refining it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from raycond import runtime  # first: it chooses OpenMP's wait policy before torch loads
import torch

from raycond import cli_options, loading
from raycond.safe_pickle import NetworkLoadError

from . import camera_start, labelled_photos
from . import encoder as enc
from .config import InversionConfig
from .result import fingerprint
from .state import Run


def _bar(desc: str):
    """A tqdm progress callback that also follows the CPU competition (raycond.runtime.step: two
    threads against a third process ran the reader 4x slower)."""
    return cli_options.progress_bar(desc, every=runtime.step)


def camera_errors(net: enc.Encoder, images: torch.Tensor, yaw_pitch: torch.Tensor, mirror: bool) -> float:
    """Mean angular camera error (degrees, hypot of yaw and pitch) of `net.predict` on labelled photos."""
    total = 0.0
    for img, (yaw, pitch) in zip(images, yaw_pitch.tolist()):
        y, p, _ = net.predict(img[None].float() / 127.5 - 1, mirror=mirror)
        total += math.hypot(y - yaw, p - pitch)
    return total / max(1, len(images))


def load_datasets(data, size: int, photos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, yaw/pitch) of up to `photos` labelled images from each dataset in `data`, concatenated."""
    parts = [labelled_photos.load(d, size, limit=photos, progress=_bar(f"photos {os.path.basename(d)}"))
             for d in data]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def add_camera_reader(network: str, data, out: str | None = None, photos: int = 10000, steps: int = 4000,
                      width: int = 32, trust_pickle: bool = False, log=print) -> str:
    """Train the camera reader of `network`'s encoder on `data` (one dataset path or several), write the
    encoder file; returns its path."""
    data = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    G, info, _ = loading.load_generator_and_discriminator(network, trust_pickle=trust_pickle)
    if not info.camera:
        raise ValueError(f"{network} has no camera input: there is no camera to read")
    G = G.eval().requires_grad_(False)
    fp = fingerprint(G)
    config = InversionConfig()
    run = Run(G, info, None, config, torch.device("cpu"), None, log)
    net = enc.get(fp, camera_start._sample_fn(run, with_w=True), G.w_dim, run.yaw_range, run.pitch_range,
                  network_path=network, num_samples=config.encoder_samples, steps=config.encoder_steps,
                  progress=_bar("encoder"), log=log)
    images, yaw_pitch = load_datasets(data, enc.SIZE, photos)
    held = torch.arange(len(images)) % 10 == 9       # every tenth photo (none below ten photos)
    names = " + ".join(os.path.basename(d) for d in data)
    log(f"camera reader: {int((~held).sum())} labelled photos from {names} "
        f"({int(held.sum())} held out), {steps} steps")
    net.camera_reader = None
    before = camera_errors(net, images[held], yaw_pitch[held], run.mirror) if held.any() else float("nan")
    net.camera_reader = enc.train_camera_reader(images[~held], yaw_pitch[~held], G.w_dim, run.yaw_range,
                                                run.pitch_range, steps=steps, width=width, progress=_bar("reader"))
    net.camera_photos = f"{int((~held).sum())} photos of {names}, {steps} steps"
    if held.any():
        after = camera_errors(net, images[held], yaw_pitch[held], run.mirror)
        log(f"camera error on the held-out photos: {before:.2f} deg from the samples-trained encoder, "
            f"{after:.2f} deg from the camera reader")
    path = out or enc.shipped_path(network)
    if path is None:
        raise ValueError("--out is needed for a network given by URL")
    enc.save(net, path, fp, config.encoder_samples, config.encoder_steps)
    log(f"wrote {path}")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m raycond.inversion.train_encoder", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--network", required=True, help="network file (the encoder is found or trained for it)")
    p.add_argument("--data", required=True, action="append", help="dataset zip or folder with dataset.json camera "
                   "labels; repeat to train on several")
    p.add_argument("--out", help="encoder file to write (default: <network>.encoder.safetensors beside it)")
    p.add_argument("--photos", type=int, default=10000, help="labelled photos read from each dataset, spread "
                   "over it (default: 10000)")
    p.add_argument("--steps", type=int, default=4000, help="camera reader training steps (default: 4000)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = automatic)")
    p.add_argument("--trust-pickle", action="store_true", help="load a network pickle that needs code to run")
    args = p.parse_args(argv)
    if args.photos < 10 or args.steps < 1:
        p.error("--photos must be at least 10 and --steps at least 1")
    runtime.start(args.threads or None)
    try:
        add_camera_reader(args.network, args.data, args.out, photos=args.photos, steps=args.steps,
                          trust_pickle=args.trust_pickle)
    except (NetworkLoadError, labelled_photos.LabelledPhotosError, ValueError, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Error: interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
