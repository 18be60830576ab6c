"""`shapes`: a built-in, seeded image set of filled geometric shapes, drawn with scikit-image.

Each image holds one shape, bright on a darker noisy background, at a random size and place; the label is the
shape's kind, which anyone can read off the picture. It needs no download, so the quick start and the tests run
on any machine.
"""

import numpy as np
from skimage import draw

SHAPE_NAMES = ("circle", "square", "triangle", "cross")


def _shape_pixels(kind: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of one shape of `kind`, fully inside a `size`×`size` image."""
    half = rng.uniform(0.22, 0.42) * size  # half the shape's extent
    centre_r, centre_c = (rng.uniform(half + 1, size - half - 1) for _ in range(2))
    if kind == "circle":
        return draw.disk((centre_r, centre_c), half, shape=(size, size))
    if kind == "square":
        start = (int(centre_r - half), int(centre_c - half))
        return draw.rectangle(start, extent=(int(2 * half), int(2 * half)), shape=(size, size))
    if kind == "triangle":
        angle = rng.uniform(0, 2 * np.pi)
        corners = angle + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        return draw.polygon(centre_r + half * np.sin(corners), centre_c + half * np.cos(corners), (size, size))
    # cross: two bars a third of the extent wide
    bar = max(2, int(2 * half / 3))
    r1, c1 = draw.rectangle((int(centre_r - half), int(centre_c - bar / 2)),
                            extent=(int(2 * half), bar), shape=(size, size))
    r2, c2 = draw.rectangle((int(centre_r - bar / 2), int(centre_c - half)),
                            extent=(bar, int(2 * half)), shape=(size, size))
    return np.concatenate([r1.ravel(), r2.ravel()]), np.concatenate([c1.ravel(), c2.ravel()])


def make_shapes(
    count: int, image_size: int = 32, channels: int = 1, num_classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Draw `count` images of random shapes.

    Args:
        count: number of images.
        image_size: side of the square images in pixels.
        channels: 1 for grayscale, 3 for colour (each shape and background in a random colour).
        num_classes: how many kinds of shape, taken in order from circle, square, triangle, cross.
        seed: the same seed gives the same images.

    Returns:
        `(images, labels, class_names)`: uint8 images of shape `(count, size, size, channels)`, int labels.

    Example:
    >>> x, y, names = make_shapes(10, image_size=28, seed=1)
    >>> x.shape, names
    ((10, 28, 28, 1), ['circle', 'square', 'triangle'])
    """
    rng = np.random.default_rng(seed)
    names = list(SHAPE_NAMES[:num_classes])
    labels = np.arange(count) % num_classes
    rng.shuffle(labels)
    images = np.empty((count, image_size, image_size, channels), dtype=np.uint8)
    for i, label in enumerate(labels):
        background = rng.uniform(0, 90, size=channels)
        foreground = background + rng.uniform(100, 160, size=channels)
        image = np.broadcast_to(background, (image_size, image_size, channels)).copy()
        rows, cols = _shape_pixels(names[label], image_size, rng)
        image[rows, cols] = foreground
        image += rng.normal(0, 12, size=image.shape)
        images[i] = np.clip(image, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64), names
