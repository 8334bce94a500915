"""Face detection, landmarks, alignment to a network's crop convention, and paste-back.

A network only understands photos framed like its training images, so a user's photo is cut to
that framing before inversion and the edited face is put back afterwards. Every crop is one 3×3
similarity matrix `A` (original pixel → crop pixel, continuous coordinates with pixel centres at
i + 0.5), so the crop and its inverse are the same numbers read both ways and round-trip exactly.

Conventions (`CONVENTIONS`):
- 'ffhq': FFHQ's aligned-image quad (eye centres and mouth corners → a square centred a little
  below the eyes, rotated to level the eyes, its side set by the eye-to-eye and eye-to-mouth
  distances); what networks trained on FFHQ-derived data expect.
- 'synth': the framing of `raycond.synth` heads at the training camera (eyes at 42% of the height
  and 28% of the width apart, mouth corners at 75%), fitted by least squares to the same points.
- 'center': the centre square, resized (what `raycond.target_image.prepare_target` does).

The detector (MediaPipe face mesh 0.10.14, whose wheel ships its models, so nothing is fetched) is
imported only in `_face_mesh`; the rest works on its landmark array and does not need it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import warnings

import numpy as np

FACES_EXTRA = "pip install raycond[faces]"
CONVENTIONS = ("ffhq", "synth", "center")

# MediaPipe face-mesh indices (478 points with refine_landmarks). "Right"/"left" are the subject's:
# the subject's right eye is on the image's left.
RIGHT_EYE = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
LEFT_EYE = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
NUM_LANDMARKS = 478

# 'synth' framing: eye centres (mean of each eye contour) and mouth corners in a frontal crop, as
# fractions of its side. Measured with the face mesh on 32 frontal raycond.synth heads rendered
# at 256² (std 0.01-0.016), then made left-right symmetric.
SYNTH_TEMPLATE = np.array([[0.3595, 0.424], [0.6405, 0.424], [0.410, 0.7516], [0.590, 0.7516]])

# Canonical frontal face for the head pose: face-mesh points (x right, y down, z away from the
# camera, in units of the outer-eye-corner distance), averaged over the same 32 frontal synthetic
# heads and symmetrised. Only the rotation that best maps it onto a photo's mesh is used.
POSE_POINTS = (33, 133, 362, 263, 1, 168, 152, 61, 291, 10, 234, 454, 4, 199)
CANONICAL_FACE = np.array([
    [-0.500, -0.340, 0.038], [-0.201, -0.316, -0.020], [0.201, -0.316, -0.020], [0.500, -0.340, 0.038],
    [0.000, 0.111, -0.413], [0.000, -0.379, -0.191], [0.000, 0.922, 0.054], [-0.228, 0.498, -0.043],
    [0.228, 0.498, -0.043], [0.000, -0.868, -0.148], [-0.744, -0.161, 0.622], [0.744, -0.161, 0.622],
    [0.000, 0.043, -0.436], [0.000, 0.810, -0.059]])


class FaceDetectorUnavailable(ImportError):
    """The optional face detector (extra 'faces') is not installed."""


# ----------------------------------------------------------------------------- the detector

_MESH = None


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2: MediaPipe's C++ side prints start-up lines (TFLite delegate, absl
    log notices) there on its first images, past Python's sys.stderr."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):   # no real fd 2 (some GUIs, captured streams)
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _face_mesh():
    """The one place that imports MediaPipe: a static-image face mesh, built once per process."""
    global _MESH
    if _MESH is None:
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError as e:
            raise FaceDetectorUnavailable(f"face detection needs MediaPipe 0.10.14 ({FACES_EXTRA}; wheels exist "
                                          f"up to Python 3.12): {e}") from None
        with _quiet_stderr():
            _MESH = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                       min_detection_confidence=0.5)
    return _MESH


def detector_available() -> bool:
    """True when `detect_landmarks` can run (the 'faces' extra is installed)."""
    try:
        _face_mesh()
        return True
    except FaceDetectorUnavailable:
        return False


def detect_landmarks(image: np.ndarray) -> np.ndarray | None:
    """H×W×3 uint8 RGB → (478, 3) float64 landmarks of the most prominent face, or None without one.

    Columns are x and y in pixels (pixel centres at i + 0.5) and a relative depth z in the same
    pixel units (smaller is nearer the camera). Raises FaceDetectorUnavailable without the extra.
    """
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"detect_landmarks expects an H x W x 3 uint8 image, got {image.dtype} {image.shape}")
    mesh = _face_mesh()
    with warnings.catch_warnings(), _quiet_stderr():  # protobuf 4 warns about a call inside MediaPipe on every image
        warnings.simplefilter("ignore", UserWarning)
        result = mesh.process(image)
    if not result.multi_face_landmarks:
        return None
    h, w = image.shape[:2]
    pts = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], dtype=np.float64)
    return pts * np.array([w, h, w])


# ----------------------------------------------------------------------------- which crop

def convention_for_network(info, network_path: str | None = None, training_set_kwargs: dict | None = None) -> str:
    """The crop convention a network was trained with: 'synth' or 'ffhq'.

    The training set's path or name decides when it names synthetic heads or FFHQ; otherwise
    the family and size: official Ray Conditioning pickles and networks of 256² and up are
    FFHQ-style, our smaller networks are synthetic-head networks.
    """
    names = [str(network_path or "")]
    if isinstance(training_set_kwargs, dict):
        names += [str(training_set_kwargs.get(k, "")) for k in ("path", "name")]
    text = " ".join(os.path.basename(n).lower() for n in names)
    if "synth" in text:
        return "synth"
    if "ffhq" in text or "celeba" in text:
        return "ffhq"
    if str(getattr(info, "kind", "")).startswith("raycond-official") or int(getattr(info, "img_resolution", 0)) >= 256:
        return "ffhq"
    return "synth"


def key_points(landmarks: np.ndarray) -> np.ndarray:
    """(4, 2): the eye centres (image-left first) and the mouth corners (image-left first)."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    return np.stack([lm[list(RIGHT_EYE)].mean(0), lm[list(LEFT_EYE)].mean(0), lm[MOUTH_RIGHT], lm[MOUTH_LEFT]])


def _similarity(scale: float, angle: float, src_centre, dst_centre) -> np.ndarray:
    """3×3 matrix: rotate by -angle and scale about src_centre, then move it to dst_centre."""
    c, s = np.cos(angle), np.sin(angle)
    rs = scale * np.array([[c, s], [-s, c]])
    m = np.eye(3)
    m[:2, :2] = rs
    m[:2, 2] = np.asarray(dst_centre, dtype=np.float64) - rs @ np.asarray(src_centre, dtype=np.float64)
    return m


def ffhq_matrix(points: np.ndarray, size: int) -> np.ndarray:
    """FFHQ's oriented square from eye centres and mouth corners (see docs/inversion.md)."""
    eye_l, eye_r, mouth_l, mouth_r = np.asarray(points, dtype=np.float64)
    eye_avg, mouth_avg = (eye_l + eye_r) / 2, (mouth_l + mouth_r) / 2
    eye_to_eye, eye_to_mouth = eye_r - eye_l, mouth_avg - eye_avg
    # The square's x axis blends the eye line with the eye-to-mouth line turned by 90°, so a
    # tilted head and an off-axis mouth both contribute to the roll.
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    half = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    centre = eye_avg + 0.1 * eye_to_mouth
    return _similarity(size / (2 * half), np.arctan2(x[1], x[0]), centre, (size / 2, size / 2))


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking 2D src points to dst (Umeyama)."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    u, sig, vt = np.linalg.svd(d0.T @ s0 / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = np.trace(np.diag(sig) @ d) / (s0 ** 2).sum(1).mean()
    m = np.eye(3)
    m[:2, :2] = scale * rot
    m[:2, 2] = md - scale * rot @ ms
    return m


def center_matrix(width: int, height: int, size: int) -> np.ndarray:
    """The centre square (prepare_target's integer offsets) scaled to size × size."""
    s = min(width, height)
    top, left = (height - s) // 2, (width - s) // 2
    return _similarity(size / s, 0.0, (left, top), (0, 0))


def crop_matrix(landmarks: np.ndarray | None, convention: str, size: int, width: int, height: int) -> np.ndarray:
    """Original → crop matrix for a convention; 'center' (or no landmarks) gives the centre square."""
    if convention not in CONVENTIONS:
        raise ValueError(f"alignment convention {convention!r} is not one of {', '.join(CONVENTIONS)}")
    if convention == "center" or landmarks is None:
        return center_matrix(width, height, size)
    points = key_points(landmarks)
    if convention == "ffhq":
        return ffhq_matrix(points, size)
    return fit_similarity(points, SYNTH_TEMPLATE * size)


# ----------------------------------------------------------------------------- warping

def warp(image: np.ndarray, matrix: np.ndarray, out_w: int, out_h: int, supersample: int | None = None,
         order: int = 1) -> np.ndarray:
    """Resample `image` (H×W×C, any dtype) into an out_w × out_h frame where `matrix` maps image → frame.

    Each output pixel averages supersample² samples (default: enough to cover the source pixels
    it shrinks, so a 300-pixel face cut to 64² does not alias). Outside the image: edge pixels.
    Returns float64.
    """
    import scipy.ndimage

    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    inv = np.linalg.inv(matrix)
    if supersample is None:
        shrink = np.sqrt(abs(np.linalg.det(inv[:2, :2])))
        supersample = int(min(8, max(1, np.ceil(shrink))))
    k = supersample
    ys, xs = np.mgrid[0:out_h * k, 0:out_w * k]
    px = (xs + 0.5) / k
    py = (ys + 0.5) / k
    sx = inv[0, 0] * px + inv[0, 1] * py + inv[0, 2] - 0.5  # continuous → array index
    sy = inv[1, 0] * px + inv[1, 1] * py + inv[1, 2] - 0.5
    out = np.empty((out_h * k, out_w * k, image.shape[2]))
    for ch in range(image.shape[2]):
        out[..., ch] = scipy.ndimage.map_coordinates(image[..., ch].astype(np.float64), [sy, sx], order=order,
                                                     mode="nearest")
    if k > 1:
        out = out.reshape(out_h, k, out_w, k, -1).mean(axis=(1, 3))
    return out


def face_mask(landmarks: np.ndarray, width: int, height: int, feather: float | None = None) -> np.ndarray:
    """Float mask in [0, 1] (H×W): 1 inside the face oval, falling to exactly 0 at its outline.

    The convex hull of the face-oval landmarks is filled, blurred (sigma `feather` pixels; default
    4% of the face's width) and mapped so that the blurred edge (0.5) becomes 0: the transition
    lies inside the outline and nothing outside it is touched.
    """
    import PIL.Image
    import PIL.ImageDraw
    import scipy.ndimage
    import scipy.spatial

    pts = np.asarray(landmarks, dtype=np.float64)[list(FACE_OVAL), :2]
    hull = pts[scipy.spatial.ConvexHull(pts).vertices]
    if feather is None:
        feather = 0.04 * float(np.ptp(hull[:, 0]))
    fill = PIL.Image.new("L", (width, height), 0)
    # ImageDraw's polygon coordinates are pixel indices; landmarks use pixel centres at i + 0.5.
    PIL.ImageDraw.Draw(fill).polygon([(float(x) - 0.5, float(y) - 0.5) for x, y in hull], fill=255)
    soft = np.asarray(fill, dtype=np.float64) / 255.0
    if feather > 0:
        soft = scipy.ndimage.gaussian_filter(soft, sigma=feather)
        soft = np.clip(2.0 * soft - 1.0, 0.0, 1.0)
    return soft


@dataclasses.dataclass
class Alignment:
    """How a photo was cut to the network's crop, and everything paste-back needs to undo it."""

    convention: str                 # 'ffhq', 'synth' or 'center' (what was applied, after any fallback)
    matrix: np.ndarray              # 3×3, original pixel → crop pixel
    size: int                       # crop side in pixels (the network's resolution)
    width: int                      # original photo width in pixels
    height: int                     # original photo height in pixels
    landmarks: np.ndarray | None    # (478, 3) face mesh in original pixels, None if no face was found
    message: str | None = None      # one line for the user (a fallback, a missing detector), or None

    @property
    def inverse(self) -> np.ndarray:
        return np.linalg.inv(self.matrix)

    def crop_corners(self) -> np.ndarray:
        """(4, 2) corners of the crop square in original pixels (top-left, top-right, bottom-right, bottom-left)."""
        s = self.size
        c = np.array([[0, 0, 1], [s, 0, 1], [s, s, 1], [0, s, 1]], dtype=np.float64)
        return (self.inverse @ c.T).T[:, :2]

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The photo cut to the crop, uint8 size × size × C."""
        if self.convention == "center":
            return _center_crop(image, self.size)
        return np.clip(np.rint(warp(image, self.matrix, self.size, self.size)), 0, 255).astype(np.uint8)

    def mask(self, feather: float | None = None) -> np.ndarray:
        """Paste-back mask in original pixels: the feathered face oval, limited to where the crop has pixels."""
        if self.landmarks is None:
            return np.zeros((self.height, self.width))
        m = face_mask(self.landmarks, self.width, self.height, feather)
        ys, xs = np.nonzero(m)
        if len(xs):
            cx = self.matrix[0, 0] * (xs + 0.5) + self.matrix[0, 1] * (ys + 0.5) + self.matrix[0, 2]
            cy = self.matrix[1, 0] * (xs + 0.5) + self.matrix[1, 1] * (ys + 0.5) + self.matrix[1, 2]
            outside = (cx < 0) | (cy < 0) | (cx > self.size) | (cy > self.size)
            m[ys[outside], xs[outside]] = 0.0
        return m

    def paste_back(self, original: np.ndarray, edited_crop: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Composite an edited crop (size × size × C uint8) into the original photo at its own size.

        Pixels where the mask is 0 are returned unchanged, bit for bit.
        """
        original = np.asarray(original)
        if original.shape[:2] != (self.height, self.width):
            raise ValueError(f"paste_back: the photo is {original.shape[1]}x{original.shape[0]}, the alignment "
                             f"was made for {self.width}x{self.height}")
        mask = self.mask() if mask is None else mask
        out = original.copy()
        ys, xs = np.nonzero(mask > 0)
        if not len(xs):
            return out
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        # Crop → original is the inverse warp: its matrix maps the crop frame onto the photo's box.
        to_box = _similarity(1.0, 0.0, (x0, y0), (0, 0)) @ self.inverse
        back = warp(edited_crop, to_box, x1 - x0, y1 - y0, supersample=1, order=1)
        m = mask[y0:y1, x0:x1, None]
        region = original[y0:y1, x0:x1].astype(np.float64)
        blended = np.clip(np.rint(region * (1 - m) + back * m), 0, 255).astype(original.dtype)
        box = out[y0:y1, x0:x1]
        inside = (m[..., 0] > 0)
        box[inside] = blended[inside]
        return out


def _center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Today's framing, exactly: centre square, Lanczos resize (raycond.target_image)."""
    import PIL.Image

    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    sq = np.ascontiguousarray(image[top:top + s, left:left + s])
    if s != size:
        sq = np.asarray(PIL.Image.fromarray(sq).resize((size, size), PIL.Image.LANCZOS))
    return sq


# A photo whose centre crop is this close to the convention's crop is left as it is (no resampling):
# re-aligning heads that are already framed removed the pose cues of their position and size (on 6
# held-out synthetic heads the inversion's camera error went from 3.7° to 7.0° mean). Limits measured
# on 40 rendered synthetic heads: scale 0.88-1.43, roll up to 8.3°, centre shift up to 0.07 of the side.
FRAMED_SCALE = (0.8, 1.5)
FRAMED_ROLL_DEG = 10.0
FRAMED_SHIFT = 0.1


def already_framed(landmarks: np.ndarray, convention: str, size: int, width: int, height: int) -> bool:
    """True when the centre square already matches the convention's crop within the FRAMED_* limits."""
    d = crop_matrix(landmarks, convention, size, width, height) @ np.linalg.inv(center_matrix(width, height, size))
    scale = np.sqrt(abs(np.linalg.det(d[:2, :2])))
    roll = np.degrees(np.arctan2(d[1, 0], d[0, 0]))
    centre = np.array([size / 2, size / 2])
    shift = np.linalg.norm(d[:2, :2] @ centre + d[:2, 2] - centre) / size
    return FRAMED_SCALE[0] <= scale <= FRAMED_SCALE[1] and abs(roll) <= FRAMED_ROLL_DEG and shift <= FRAMED_SHIFT


def align_photo(image: np.ndarray, convention: str, size: int, detect: bool = True) -> tuple[np.ndarray, Alignment]:
    """Cut an H×W×3 uint8 photo to a network's crop: (size × size × 3 crop, Alignment).

    Without a face (or without the detector, or with detect=False), or when the photo is already
    framed like the crop (`already_framed`), the photo gets the centre crop and `Alignment.message`
    says why in one line; the landmarks are kept for paste-back.
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    landmarks, message = None, None
    if convention != "center" and detect:
        try:
            landmarks = detect_landmarks(image)
            if landmarks is None:
                message = f"no face found in the photo: using the centre crop instead of the '{convention}' alignment"
        except FaceDetectorUnavailable:
            message = f"no face detector ({FACES_EXTRA}): using the centre crop instead of the '{convention}' alignment"
    elif convention != "center":
        message = "alignment off: using the centre crop"
    if convention != "center" and landmarks is not None and already_framed(landmarks, convention, size, w, h):
        message = f"the photo is already framed like the '{convention}' crop: kept the centre crop"
        convention = "center"
    elif convention != "center" and landmarks is None:
        convention = "center"
    elif convention == "center" and detect:
        # The centre crop still pastes back through the face mask when a face is there.
        try:
            landmarks = detect_landmarks(image)
        except FaceDetectorUnavailable:
            landmarks = None
    al = Alignment(convention, crop_matrix(landmarks if convention != "center" else None, convention, size, w, h),
                   size, w, h, landmarks, message)
    return al.crop(image), al


# ----------------------------------------------------------------------------- head pose

def head_pose(landmarks: np.ndarray) -> tuple[float, float]:
    """Camera (yaw_deg, pitch_deg) that sees this face mesh, in raycond.camera's convention.

    The rotation that best maps the canonical frontal face onto the mesh (Procrustes with scale) is
    the head's rotation in the camera frame; the camera's orbit angles are its opposite. Positive
    yaw puts the camera toward +x of the head (the face turns toward the image's left: its nose
    points left); positive pitch puts the camera below the face (it is seen from beneath).
    """
    x = np.asarray(landmarks, dtype=np.float64)[list(POSE_POINTS)]
    c = CANONICAL_FACE
    x0, c0 = x - x.mean(0), c - c.mean(0)
    u, _, vt = np.linalg.svd(x0.T @ c0)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt                          # x0 ≈ s · rot @ c0: head → camera frame (x right, y down, z forward)
    face = rot @ np.array([0.0, 0.0, -1.0])   # where the face points; (0, 0, -1) when it looks into the camera
    yaw = np.degrees(np.arctan2(-face[0], -face[2]))                    # face toward image-left: camera at +x
    pitch = np.degrees(np.arctan2(-face[1], np.hypot(face[0], face[2])))  # face up (y < 0): camera below
    return float(yaw), float(pitch)


# Conventions whose networks get the head pose as the inversion's camera start: 'ffhq' (FFHQ-style
# faces with EG3D cameras, raycond.camera's convention). Not 'synth': on 40 synthetic heads the
# mesh's pose is 4.2° off (angular mean; yaw 2.5°, pitch 2.7°) at 256² and 5.3° at 64²
# (benchmarks/bench_head_pose.py), worse than the encoder's camera (2.9° at 64² without a camera
# reader, 1.7° with one).
LANDMARK_CAMERA_CONVENTIONS = ("ffhq",)


def landmarks_in_crop(alignment: Alignment) -> np.ndarray | None:
    """The face mesh moved into the crop's pixels (x, y through the crop matrix, z scaled alike), or None."""
    if alignment.landmarks is None:
        return None
    lm = np.asarray(alignment.landmarks, dtype=np.float64)
    m = alignment.matrix
    xy = lm[:, :2] @ m[:2, :2].T + m[:2, 2]
    z = lm[:, 2:3] * np.sqrt(abs(np.linalg.det(m[:2, :2])))
    return np.concatenate([xy, z], axis=1)


def camera_hint(alignment: Alignment, convention: str) -> tuple[float, float] | None:
    """(yaw_deg, pitch_deg) to start the inversion's camera from, or None.

    A pose only for a face that was found, for a network whose crop convention (`convention`, the
    network's, even when an already framed photo kept its centre crop) is in
    LANDMARK_CAMERA_CONVENTIONS. Yaw and pitch do not depend on the crop's scale and translation,
    but they do on its rotation: a photo's roll mixes yaw into pitch (a head turned 30° and tilted
    20° in the photo reads 28.5° yaw and 9.8° pitch), so the pose is read from the landmarks moved
    into the crop, where the alignment has levelled the eyes as the network's cameras (no roll) assume.
    """
    if convention not in LANDMARK_CAMERA_CONVENTIONS or alignment.landmarks is None:
        return None
    return head_pose(landmarks_in_crop(alignment))
