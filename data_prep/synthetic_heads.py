"""A random 3-D head ray-cast in numpy: the renderer behind ``data_prep.synthetic``.

``render_head(rng, pose, size, scale, centre)`` draws a simple head (a union of ellipsoids:
skull, jaw, hair cap and fringe, nose, eyes with irises, brows, lips, ears, sometimes a bun) with
Lambert shading, on a random background with a neck and shoulders, at the given pose, size and
position, under a random light, and returns the uint8 RGB image with its projected landmark points
(``Rendered``). The head is deliberately asymmetric (hair fringe and tilted hair cap on the
subject's left, a brightly coloured left ear, a darker patch on the right cheek), so no rotation
or mirror of it looks like another pose of itself.

Conventions (DATA.md). Model coordinates: x = subject's left (image right in a frontal view),
y up, z out of the face. For a pose (yaw, pitch, roll) in degrees let
``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (``hpe_jax.pose.rotation_from_euler``). The image shows
the head turned by ``R.T`` (checked against the real AFLW2000-3D ``pt3d_68`` by Procrustes):
a model point P lands at ``u = cx + s * (R.T @ P)[0]``, ``v = cy - s * (R.T @ P)[1]`` (pixels, v
down; pixel (i, j) covers [j, j+1) x [i, i+1)) with depth ``s * (R.T @ P)[2]`` (toward the
camera). So positive yaw turns the nose to image-left, positive pitch looks up, positive roll
lowers the eye on the image-right side, and a horizontal flip negates yaw and roll.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from hpe_jax.pose import rotation_from_euler

# Landmarks of the usual iBUG-68 layout on the model, as (x, y) in head units before
# per-head jitter; z is found by casting onto the model's front surface.
_JAW_ANGLES = np.linspace(np.pi, 2 * np.pi, 17)
_BROW_R = [(-0.48, 0.36), (-0.40, 0.40), (-0.31, 0.42), (-0.22, 0.41), (-0.13, 0.38)]
_NOSE_BRIDGE = [(0.0, 0.20), (0.0, 0.09), (0.0, -0.02), (0.0, -0.13)]
_NOSTRILS = [(-0.10, -0.22), (-0.05, -0.24), (0.0, -0.25), (0.05, -0.24), (0.10, -0.22)]
_EYE_R = [(-0.13, 0.0), (-0.05, 0.035), (0.05, 0.035), (0.13, 0.0), (0.05, -0.035), (-0.05, -0.035)]
_MOUTH_OUTER = [
    (-1.0, 0.0),
    (-0.62, 0.05),
    (-0.22, 0.07),
    (0.0, 0.06),
    (0.22, 0.07),
    (0.62, 0.05),
    (1.0, 0.0),
    (0.62, -0.06),
    (0.22, -0.08),
    (0.0, -0.08),
    (-0.22, -0.08),
    (-0.62, -0.06),
]
_MOUTH_INNER = [
    (-0.8, 0.0),
    (-0.25, 0.02),
    (0.0, 0.02),
    (0.25, 0.02),
    (0.8, 0.0),
    (0.25, -0.02),
    (0.0, -0.02),
    (-0.25, -0.02),
]


@dataclass(frozen=True)
class _Part:
    """One ellipsoid of a head, in model units.

    ``frame`` columns are the ellipsoid's axes in model coordinates, ``radii`` its semi-axes.
    Colour (RGB in [0, 1]) is ``colour * (1 + stripe_amp * sin(local . stripe_freq))``, replaced
    by ``spot_colour`` within ``spot_radius`` of ``spot_centre`` (local unit-sphere coordinates).
    """

    centre: np.ndarray
    radii: np.ndarray
    frame: np.ndarray
    colour: np.ndarray
    stripe_freq: np.ndarray | None = None
    stripe_amp: float = 0.0
    spot_centre: np.ndarray | None = None
    spot_radius: float = 0.0
    spot_colour: np.ndarray | None = None


@dataclass(frozen=True)
class _Head:
    """A random head: its ellipsoids and its landmark points.

    ``points`` is (73, 3) in model units: the 68 iBUG landmarks, then the two eye centres, the
    image-left (subject's right) ear, the other ear and the mouth centre (AFLW extras).
    """

    parts: tuple[_Part, ...]
    points: np.ndarray


@dataclass(frozen=True)
class _View:
    """Framing of a head: ``u = cx + scale * (rot @ P)[0]``, ``v = cy - scale * (rot @ P)[1]``."""

    rot: np.ndarray
    scale: float
    cx: float
    cy: float
    size: int


@dataclass(frozen=True)
class Rendered:
    """One rendered sample.

    Attributes:
      image: (S, S, 3) uint8 RGB.
      points: (73, 3) float64 landmark points (u, v pixels, depth toward the camera), rows as
        ``_Head.points``.
      visible: (73,) bool, the point is on the image and not hidden by the head.
      model_points: (73, 3) the same points in model units (x toward the subject's left, y up,
        z out of the face).
    """

    image: np.ndarray
    points: np.ndarray
    visible: np.ndarray
    model_points: np.ndarray


def _turn(pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Frame of a part tilted by ``pitch`` (about model x) or ``roll`` (about z), in degrees."""
    return rotation_from_euler(np.array([0.0, pitch, roll]))


def _part_map(part: _Part, rot: np.ndarray, scale: float, offset: np.ndarray):
    """Affine map from camera space C = (u, v, depth) to the part's unit-sphere coordinates.

    The camera sees model point P at ``C = offset + scale * G @ rot @ P`` with G = diag(1, -1, 1).
    Returns ``(B, b0)`` with ``local = B @ C + b0``.
    """
    g = np.diag([1.0, -1.0, 1.0])
    to_local = (part.frame / part.radii).T
    b = to_local @ rot.T @ g / scale
    return b, -b @ offset - to_local @ part.centre


def _front_depth(b: np.ndarray, b0: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Depth of the front intersection of rays (u, v, depth) with the ellipsoid |b @ C + b0| = 1.

    ``u`` and ``v`` broadcast together (a row and a column for an image grid, or two (n,)
    arrays for points); the result has their broadcast shape, -inf where a ray misses. The
    quadratic in depth is expanded so that most work is on the 1-D ``u`` / ``v`` terms.
    """
    bu, bv, d = b[:, 0], b[:, 1], b[:, 2]
    a = d @ d
    wv = b0 + v[..., None] * bv
    h = wv @ d + u * (bu @ d)
    ww = (wv * wv).sum(-1) - 1.0 + u * (2.0 * (wv @ bu) + u * (bu @ bu))
    disc = h * h - a * ww
    return np.where(disc > 0.0, (np.sqrt(np.maximum(disc, 0.0)) - h) / a, -np.inf)


def _part_colour(part: _Part, local: np.ndarray) -> np.ndarray:
    """(n, 3) surface colours of a part at (3, n) local coordinates."""
    n = local.shape[1]
    colour = np.broadcast_to(part.colour, (n, 3))
    if part.stripe_freq is not None:
        colour = colour * (1.0 + part.stripe_amp * np.sin(part.stripe_freq @ local))[:, None]
    if part.spot_centre is not None:
        near = ((local - part.spot_centre[:, None]) ** 2).sum(0) < part.spot_radius**2
        colour = np.where(near[:, None], part.spot_colour, colour)
    return colour


def _render_parts(
    parts: tuple[_Part, ...],
    view: _View,
    light: np.ndarray,
    ambient: float,
    background: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffered ray casting of the parts over ``background``.

    Args:
      light: (3,) unit light direction in camera space (u right, v down, depth toward camera).
      background: (S, S, 3) float32 RGB in [0, 1].

    Returns:
      (S, S, 3) float32 RGB image and (S, S) depth buffer (-inf where no part).
    """
    size = view.size
    image = background.copy()
    zbuf = np.full((size, size), -np.inf)
    flat_image, flat_zbuf = image.reshape(-1, 3), zbuf.reshape(-1)
    offset = np.array([view.cx, view.cy, 0.0])
    g = np.diag([1.0, -1.0, 1.0])
    for part in parts:
        b, b0 = _part_map(part, view.rot, view.scale, offset)
        extent = view.scale * g @ view.rot @ part.frame * part.radii
        centre = offset + view.scale * g @ view.rot @ part.centre
        half_u, half_v = np.linalg.norm(extent[0]), np.linalg.norm(extent[1])
        j0, j1 = max(0, int(centre[0] - half_u)), min(size, int(centre[0] + half_u) + 2)
        i0, i1 = max(0, int(centre[1] - half_v)), min(size, int(centre[1] + half_v) + 2)
        if j0 >= j1 or i0 >= i1:
            continue
        us, vs = np.arange(j0, j1) + 0.5, np.arange(i0, i1) + 0.5
        depth = _front_depth(b, b0, us, vs[:, None])
        front = depth > zbuf[i0:i1, j0:j1]
        ii, jj = np.nonzero(front)
        if ii.size == 0:
            continue
        depth = depth[ii, jj]
        local = (
            b0[:, None] + b[:, 0, None] * us[jj] + b[:, 1, None] * vs[ii] + b[:, 2, None] * depth
        )
        pixels = (ii + i0) * size + jj + j0
        normal = b.T @ local
        shade = ambient + (1.0 - ambient) * np.maximum(light @ normal, 0.0) / np.sqrt(
            (normal * normal).sum(0)
        )
        flat_image[pixels] = _part_colour(part, local) * shade[:, None]
        flat_zbuf[pixels] = depth
    return image, zbuf


def _unit(v) -> np.ndarray:
    """``v`` as a float64 unit vector."""
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def _random_colour(rng: np.random.Generator, palette: list[tuple[float, float, float]], jitter):
    """(3,) RGB in [0, 1]: a random palette colour, channels scaled by U(1 - jitter, 1 + jitter)."""
    base = np.array(palette[rng.integers(len(palette))])
    return np.clip(base * rng.uniform(1 - jitter, 1 + jitter, 3), 0.0, 1.0)


_SKIN = [(0.96, 0.80, 0.69), (0.89, 0.68, 0.55), (0.76, 0.55, 0.40), (0.55, 0.37, 0.26)]
_HAIR = [
    (0.10, 0.07, 0.05),
    (0.32, 0.20, 0.10),
    (0.72, 0.55, 0.30),
    (0.55, 0.22, 0.08),
    (0.55, 0.55, 0.55),
    (0.20, 0.20, 0.24),
]
_IRIS = [(0.25, 0.14, 0.06), (0.20, 0.35, 0.60), (0.25, 0.45, 0.25), (0.08, 0.06, 0.05)]
_EAR = [(0.10, 0.45, 0.95), (0.15, 0.80, 0.25), (0.65, 0.15, 0.85), (0.95, 0.80, 0.05)]


def _sample_head(rng: np.random.Generator) -> _Head:
    """A random asymmetric head (model units: head half-height about 1)."""
    ax, ay, az = (
        0.78 * rng.uniform(0.92, 1.08),
        rng.uniform(0.95, 1.05),
        0.88 * rng.uniform(0.92, 1.06),
    )
    eye = np.eye(3)

    jaw_centre = np.array([0.0, -0.52, 0.30])
    jaw_radii = np.array([0.59 * ax, 0.42, 0.62 * az])

    def front_z(x: float, y: float) -> float:
        """Model z of the skull-and-jaw surface seen from the front at (x, y)."""
        skull = az * np.sqrt(max(1.0 - (x / ax) ** 2 - (y / ay) ** 2, 0.0))
        jx, jy = x / jaw_radii[0], (y - jaw_centre[1]) / jaw_radii[1]
        return max(skull, jaw_centre[2] + jaw_radii[2] * np.sqrt(max(1.0 - jx**2 - jy**2, 0.0)))

    skin = _random_colour(rng, _SKIN, 0.06)
    hair = _random_colour(rng, _HAIR, 0.12)
    if np.abs(hair - skin).sum() < 0.6:
        hair = hair * 0.4
    brow_colour = hair * 0.7 if hair.mean() < 0.4 else np.array([0.25, 0.17, 0.1])
    ex, ey = rng.uniform(0.26, 0.32), rng.uniform(0.14, 0.2)
    my, mw = rng.uniform(-0.56, -0.46), rng.uniform(0.17, 0.24)
    strands = _unit(rng.normal(size=3)) * rng.uniform(18.0, 30.0)
    parts = [
        _Part(
            np.zeros(3),
            np.array([ax, ay, az]),
            eye,
            skin,
            spot_centre=_unit([-0.6, -0.3, 0.75]),
            spot_radius=rng.uniform(0.16, 0.24),
            spot_colour=skin * np.array([0.8, 0.68, 0.68]),
        ),
        _Part(jaw_centre, jaw_radii, eye, skin * 0.97),
        _Part(
            np.array([0.0, -0.08, front_z(0.0, -0.08) + 0.01]),
            np.array([rng.uniform(0.09, 0.12), 0.24, rng.uniform(0.14, 0.19)]),
            eye,
            skin * np.array([1.0, 0.93, 0.9]),
        ),
        _Part(
            np.array([0.0, my, front_z(0.0, my) - 0.03]),
            np.array([mw, 0.06, 0.07]),
            eye,
            _random_colour(rng, [(0.75, 0.22, 0.25), (0.6, 0.3, 0.3)], 0.1),
        ),
    ]
    iris = _random_colour(rng, _IRIS, 0.1)
    for side in (-1.0, 1.0):
        x = side * ex
        parts += [
            _Part(
                np.array([x, ey, front_z(x, ey) - 0.035]),
                np.array([0.12, 0.065, 0.08]),
                eye,
                np.array([0.95, 0.95, 0.92]),
            ),
            _Part(
                np.array([x, ey, front_z(x, ey) + 0.02]), np.array([0.05, 0.05, 0.03]), eye, iris
            ),
            _Part(
                np.array([x, ey + 0.21, front_z(x, ey + 0.21) - 0.01]),
                np.array([0.16, 0.035, 0.06]),
                _turn(roll=side * 8.0),
                brow_colour,
            ),
        ]
    ear_colour = _random_colour(rng, _EAR, 0.1)
    for side, colour in ((-1.0, skin * 0.95), (1.0, ear_colour)):
        parts.append(
            _Part(
                np.array([side * (ax + 0.03), 0.02, -0.06]),
                np.array([0.075, 0.2, 0.13]),
                _turn(pitch=-12.0),
                colour,
            )
        )
    hair_parts = [
        _Part(
            np.array([0.0, 0.25, -0.10]),
            np.array([ax + 0.04, 0.9, az]),
            _turn(roll=rng.uniform(4.0, 10.0)),
            hair,
            strands,
            0.22,
        ),
        _Part(
            np.array([0.28, 0.64, 0.38]),
            np.array([0.36, 0.15, 0.30]),
            _turn(roll=-rng.uniform(18.0, 30.0)),
            hair,
            strands,
            0.22,
        ),
    ]
    if rng.random() < 0.5:
        hair_parts.append(
            _Part(
                np.array([0.0, 0.45, -0.95]),
                np.full(3, rng.uniform(0.22, 0.32)),
                eye,
                hair,
                strands,
                0.22,
            )
        )

    jaw = [(0.94 * ax * np.cos(a), 0.08 + 0.98 * ay * np.sin(a)) for a in _JAW_ANGLES]
    xy = np.array(
        jaw
        + _BROW_R
        + [(-x, y) for x, y in reversed(_BROW_R)]
        + _NOSE_BRIDGE
        + _NOSTRILS
        + [(x - ex, y + ey) for x, y in _EYE_R]
        + [(-x + ex, y + ey) for x, y in [_EYE_R[i] for i in (3, 2, 1, 0, 5, 4)]]
        + [(x * mw, y + my) for x, y in _MOUTH_OUTER + _MOUTH_INNER]
    )
    xy[17:27, 1] += ey - 0.17
    points = np.concatenate([xy, np.zeros((68, 1))], axis=1)
    points[:, 2] = _surface_depth(parts, xy)
    extras = np.array(
        [
            points[36:42].mean(0),
            points[42:48].mean(0),
            [-(ax + 0.1), 0.02, -0.06],
            [ax + 0.1, 0.02, -0.06],
            points[[62, 66]].mean(0),
        ]
    )
    return _Head(tuple(parts + hair_parts), np.concatenate([points, extras]))


def _surface_depth(parts: list[_Part], xy: np.ndarray) -> np.ndarray:
    """Front-most model z of the parts at model (x, y) points (frontal orthographic cast)."""
    z = np.full(len(xy), -np.inf)
    for part in parts:
        b, b0 = _part_map(part, np.eye(3), 1.0, np.zeros(3))
        z = np.maximum(z, _front_depth(b, b0, xy[:, 0], -xy[:, 1]))
    if not np.isfinite(z).all():
        raise RuntimeError("a landmark template point misses the head surface")
    return z


def _background(rng: np.random.Generator, size: int, view: _View, head: _Head) -> np.ndarray:
    """(S, S, 3) float32 RGB: smooth random colours, random shapes, neck and shoulders."""
    grid = (rng.uniform(0.05, 0.95, (3, 3, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(grid).resize((size, size), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(0, 5)):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        x1, y1 = np.array([x0, y0]) + rng.uniform(0.1, 0.5, 2) * size
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=colour)
    s, cx, cy = view.scale, view.cx, view.cy
    skin = tuple(int(255 * c * 0.85) for c in head.parts[0].colour)
    clothes = tuple(int(c) for c in rng.integers(0, 256, 3))
    draw.ellipse((cx - 1.6 * s, cy + 1.35 * s, cx + 1.6 * s, cy + 3.2 * s), fill=clothes)
    draw.rectangle((cx - 0.33 * s, cy + 0.3 * s, cx + 0.33 * s, cy + 1.55 * s), fill=skin)
    return np.asarray(img, np.float32) / 255.0


def render_head(
    rng: np.random.Generator,
    pose: tuple[float, float, float],
    size: int,
    scale: float,
    centre: tuple[float, float],
) -> Rendered:
    """Renders a new random head at a given pose.

    Args:
      rng: source of the head's shape, colours, light and background.
      pose: (yaw, pitch, roll) in degrees, 300W-LP convention (module docstring).
      size: image side S in pixels.
      scale: pixels per head unit (the head's half-height is about one unit).
      centre: (cx, cy) pixel position of the head's centre (v down).

    Returns:
      The image and projected landmark points (``Rendered``).
    """
    head = _sample_head(rng)
    view = _View(rotation_from_euler(np.asarray(pose, np.float64)).T, scale, *centre, size)
    light = _unit([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 0.6), rng.uniform(0.6, 1.4)])
    background = _background(rng, size, view, head)
    tint = rng.uniform(0.85, 1.1, 3).astype(np.float32)
    image, zbuf = _render_parts(head.parts, view, light, rng.uniform(0.3, 0.55), background)
    image = np.clip(image * tint * 255.0 + 0.5, 0, 255).astype(np.uint8)
    cam = view.rot @ head.points.T
    points = np.stack([view.cx + scale * cam[0], view.cy - scale * cam[1], scale * cam[2]], 1)
    j, i = np.floor(points[:, 0]).astype(int), np.floor(points[:, 1]).astype(int)
    inside = (j >= 0) & (j < size) & (i >= 0) & (i < size)
    visible = inside.copy()
    visible[inside] = zbuf[i[inside], j[inside]] <= points[inside, 2] + 0.04 * scale
    return Rendered(image, points, visible, head.points)
