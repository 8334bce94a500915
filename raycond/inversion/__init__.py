"""Photo → camera + pivot latent + tuned weights: edit the viewpoint of a given picture.

Ray conditioning keeps the camera an explicit input, so once a photo is *inverted* (a latent and
a camera found whose render matches it) the same face can be rendered from any other camera:

    from raycond import inversion
    res = inversion.invert(G, "photo.png")                 # or invert(G, photo, num_steps=50)
    img = res.render(res.camera_at(yaw_deg=20, pitch_deg=0))
    res.save("inversion.pt"); res = inversion.load("inversion.pt")

Modules, one stage each: `config` (InversionConfig, the settings), `camera_start` (where the
optimisation starts: encoder, pose regressor or grid), `encoder` (photo → camera and w, one per
network; with a camera reader trained on labelled photos by `train_encoder` from `labelled_photos`), `pivot` (latent and camera optimisation), `tuning` (pivotal tuning), `result`
(`Inversion` and its file), `losses` (reconstruction losses), `pipeline` (`invert`, the stages in
order). docs/inversion.md describes the method and its measured figures.
"""

from raycond.target_image import TargetImageError

from .config import CAMERA_STARTS, LOSS_KINDS, InversionConfig
from .pipeline import invert
from .result import FORMAT, Inversion, InversionFileError, fingerprint, load, network_of
from .state import Cancelled

__all__ = ["invert", "load", "network_of", "Inversion", "InversionConfig", "Cancelled", "TargetImageError",
           "InversionFileError", "LOSS_KINDS", "CAMERA_STARTS", "FORMAT", "fingerprint"]
