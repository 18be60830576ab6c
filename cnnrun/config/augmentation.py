"""The `augmentation:` section: ImageDataGenerator's words, and the CIFAR recipes' crop and cutout.

Every range is checked here, so a setting that would do nothing useful is refused before any data is read: a
`[low, high]` range must have low ≤ high, factors are not negative, and (`check_fits`, once the picture size is
known) a cutout square or a crop's padding cannot be larger than the pictures themselves.

Example:
>>> AugmentationConfig(brightness_range=[0.8, 1.2], random_crop={"padding": 4}).random_crop.padding
4
>>> check_fits(AugmentationConfig(cutout={"size": 100}), (28, 28), "fashion_mnist")
Traceback (most recent call last):
cnnrun.errors.UserError: augmentation.cutout.size: 100 is larger than the 28×28 pictures of fashion_mnist; ...
"""

from typing import Literal

from pydantic import Field, field_validator

from cnnrun.config.sections import Section
from cnnrun.errors import UserError


class RandomCropConfig(Section):
    """Pad and crop back at a random place per image: the CIFAR augmentation of He et al."""

    padding: int = Field(ge=1, le=1024, description="Pixels added on every side; each image is then cut back to "
                         "its size at its own random place, so it moves by −padding … +padding pixels per axis. "
                         "Smaller than the pictures' shorter side.")
    fill_mode: Literal["constant", "reflect", "nearest", "wrap"] = Field(
        "constant", description="How the padding is filled, as in `augmentation.fill_mode`: `reflect` repeats the edge "
        "pixel (d c b a | a b c d, Keras' and ImageDataGenerator's meaning; PyTorch's `reflect` does not)."
    )
    cval: float = Field(0, ge=0, le=255, description="The fill value for `constant`, as a pixel value (0–255).")


class CutoutConfig(Section):
    """Cutout (DeVries & Taylor 2017): one square per image set to the value normalisation turns into 0."""

    size: int = Field(ge=1, le=1024, description="The square's side in pixels, at most the pictures' shorter side. "
                      "Its centre is any pixel, drawn per image; a square reaching past the border is cut there. It "
                      "is filled with the value the model sees as 0: the dataset's mean under `normalize: "
                      "standardize` (as in the paper), else black.")


def _ordered(value: tuple[float, float] | None, what: str, lowest: float = 0.0) -> tuple[float, float] | None:
    """A `[low, high]` range with `lowest` ≤ low ≤ high, else a ValueError saying which bound is wrong."""
    if value is None:
        return None
    low, high = value
    if low > high:
        raise ValueError(f"[low, high] with low ≤ high, got [{low:g}, {high:g}]; write [{high:g}, {low:g}]")
    if low < lowest:
        raise ValueError(f"{what} of at least {lowest:g}, got [{low:g}, {high:g}]")
    return value


class AugmentationConfig(Section):
    """ImageDataGenerator's words, and the CIFAR recipes' crop and cutout; applied to training batches only."""

    rotation_range: float = Field(0, ge=0, le=180, description="Random rotation, ± degrees.")
    width_shift_range: float = Field(0, ge=0, lt=1, description="Random horizontal shift, ± fraction of width.")
    height_shift_range: float = Field(0, ge=0, lt=1, description="Random vertical shift, ± fraction of height.")
    zoom_range: float | tuple[float, float] = Field(
        0, description="Random zoom: a number z (0 ≤ z < 1) means [1 − z, 1 + z]; or [low, high] with "
        "0 < low ≤ high. Values < 1 zoom in."
    )
    shear_range: float = Field(0, ge=0, lt=90, description="Random shear, ± degrees.")
    horizontal_flip: bool = Field(False, description="Flip left-right at random.")
    vertical_flip: bool = Field(False, description="Flip upside-down at random.")
    brightness_range: tuple[float, float] | None = Field(
        None, description="Multiply brightness by a random factor in [low, high] (1 = unchanged; 0 ≤ low ≤ high)."
    )
    contrast_range: tuple[float, float] | None = Field(
        None, description="Scale contrast by a random factor in [low, high] (1 = unchanged; 0 ≤ low ≤ high)."
    )
    fill_mode: Literal["nearest", "reflect", "wrap", "constant"] = Field(
        "nearest", description="How pixels outside the image are filled."
    )
    cval: float = Field(0, description="The fill value for `fill_mode: constant`, as a pixel value (0–255).")
    random_crop: RandomCropConfig | None = Field(
        None, description="`{padding: 4, fill_mode: reflect}`: pad and crop back at a random place per image, "
        "before the other changes."
    )
    cutout: CutoutConfig | None = Field(
        None, description="`{size: 8}`: a square per image set to the value the model sees as 0, after the other "
        "changes."
    )
    placement: Literal["auto", "pipeline", "model"] = Field(
        "auto", description="Where augmentation runs. `pipeline`: in the `tf.data` input pipeline on the CPU, "
        "overlapping training. `model`: as the model's first layers, on the GPU when there is one (they pass "
        "images through unchanged at inference). `auto`: `model` when a GPU is visible or the backend is not "
        "TensorFlow, else `pipeline`."
    )

    @field_validator("zoom_range")
    @classmethod
    def _zoom(cls, value: float | tuple[float, float]) -> float | tuple[float, float]:
        if isinstance(value, tuple):
            low, high = value
            if low > high:
                raise ValueError(f"[low, high] with low ≤ high, got [{low:g}, {high:g}]; write [{high:g}, {low:g}]")
            if low <= 0:
                raise ValueError(f"zoom factors above 0 (1 = unchanged), got [{low:g}, {high:g}]")
            return value
        if not 0 <= value < 1:
            raise ValueError("a number z from 0 to under 1, for factors in [1 − z, 1 + z]; or [low, high]")
        return value

    @field_validator("brightness_range", "contrast_range")
    @classmethod
    def _factors(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        return _ordered(value, "factors")


def check_fits(augmentation: AugmentationConfig | None, size: tuple[int, int], pictures: str) -> None:
    """Refuse a cutout square or a crop's padding larger than the pictures: training would run at chance.

    A cutout square larger than the picture blanks most of it whatever its centre; a padding as large as the
    picture lets the crop shift the picture out of view entirely.

    Args:
        augmentation: the experiment's `augmentation:` section, or None.
        size: the pictures' `(height, width)` as the model receives them.
        pictures: the dataset, as the message names it (`fashion_mnist`, `the image folder data/pets`).

    Raises:
        UserError: naming the key, the value, the picture size and the largest value that fits.
    """
    if augmentation is None:
        return
    height, width = size
    side = min(height, width)
    cutout, crop = augmentation.cutout, augmentation.random_crop
    if cutout is not None and cutout.size > side:
        raise UserError(f"augmentation.cutout.size: {cutout.size} is larger than the {height}×{width} pictures of "
                        f"{pictures}; the square would blank most of every picture: at most {side} (a quarter to a "
                        f"half of the side is usual: {max(1, side // 4)} to {max(1, side // 2)})")
    if crop is not None and crop.padding >= side:
        raise UserError(f"augmentation.random_crop.padding: {crop.padding} is as large as the {height}×{width} "
                        f"pictures of {pictures}; the crop could shift the picture out of view: at most {side - 1} "
                        f"(an eighth of the side is usual: {max(1, side // 8)})")
