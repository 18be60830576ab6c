"""The `augmentation:` section: ImageDataGenerator's words, the CIFAR recipes' crop and cutout, and Keras 3's own
augmentations (RandAugment, AugMix, RandomErasing, colour jitter; MixUp and CutMix, which mix labels too).

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

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

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


def _switched_on(value: Any) -> Any:
    """`mixup: true` means the defaults, `mixup: 0.4` the first argument (alpha); `false` is off."""
    if value is True:
        return {}
    if value is False:
        return None
    return {"alpha": value} if isinstance(value, int | float) else value


class MixUpConfig(Section):
    """MixUp (Zhang et al. 2018), Keras' `MixUp`: each picture of a batch blended with another of the same batch."""

    alpha: float = Field(0.2, gt=0, description="The Beta(α, α) distribution the blend weight is drawn from, per "
                         "picture: small α keeps most pictures nearly whole (0.2 is the paper's ImageNet value).")


class CutMixConfig(Section):
    """CutMix (Yun et al. 2019), Keras' `CutMix`: a rectangle of another picture of the batch pasted in."""

    alpha: float = Field(1.0, gt=0, le=1, description="The Beta(α, α) distribution the kept share is drawn from "
                         "(1: uniform, the paper's value); Keras takes 0 < α ≤ 1.")


class RandAugmentConfig(Section):
    """RandAugment (Cubuk et al. 2020), Keras' `RandAugment`: `num_ops` operations drawn per picture."""

    num_ops: int = Field(2, ge=1, le=14, description="Operations applied to each picture, each drawn from "
                         "Keras' list (rotation, shear, translation, contrast, solarisation, …).")
    factor: float = Field(0.5, gt=0, le=1, description="Their strength, 0 to 1 (Keras' `factor`).")


class AugMixConfig(Section):
    """AugMix (Hendrycks et al. 2020), Keras' `AugMix`: chains of operations blended with the picture."""

    num_chains: int = Field(3, ge=1, description="Augmentation chains blended per picture.")
    chain_depth: int = Field(3, ge=1, description="The most operations in one chain (each chain draws 1 to it).")
    factor: float = Field(0.3, gt=0, le=1, description="The operations' strength, 0 to 1.")
    alpha: float = Field(1.0, gt=0, description="The Dirichlet and Beta parameter of the blend weights.")


class RandomErasingConfig(Section):
    """Random Erasing (Zhong et al. 2020), Keras' `RandomErasing`: a rectangle per picture filled."""

    probability: float = Field(0.5, ge=0, le=1, description="The share of pictures that get a rectangle (Keras' "
                               "`factor` as a fixed probability; the paper's 0.5).")
    scale: tuple[float, float] = Field((0.02, 0.33), description="[low, high]: the rectangle's area as a share "
                                       "of the picture, drawn in this range (the paper's).")
    fill: Literal["zero", "noise"] = Field("zero", description="`zero`: the value the model sees as 0 (as "
                                           "`cutout`). `noise`: random values, as the paper.")

    @field_validator("scale")
    @classmethod
    def _shares(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = _ordered(value, "shares")
        if high > 1:
            raise ValueError(f"shares of the picture up to 1, got [{low:g}, {high:g}]")
        return value


class ColorJitterConfig(Section):
    """Keras' `RandomColorJitter`: brightness, contrast, saturation and hue, each a factor 0 to 1 (0: off)."""

    brightness: float = Field(0, ge=0, le=1, description="Brightness shift, a share of the value range.")
    contrast: float = Field(0, ge=0, le=1, description="Contrast change.")
    saturation: float = Field(0, ge=0, le=1, description="Saturation change (colour pictures).")
    hue: float = Field(0, ge=0, le=1, description="Hue shift (colour pictures).")


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
    horizontal_flip: bool | Literal["alternate"] = Field(
        False, description="`true`: flip left-right at random. `alternate`: flip each picture on every other epoch, "
        "flipped or not in the first at random (airbench's derandomised flips), in the input pipeline."
    )
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
    color_jitter: ColorJitterConfig | None = Field(
        None, description="`{saturation: 0.3, hue: 0.1}`: Keras' colour jitter per picture, after brightness and "
        "contrast."
    )
    rand_augment: Annotated[RandAugmentConfig | None, BeforeValidator(_switched_on)] = Field(
        None, description="`true` or `{num_ops: 2, factor: 0.5}`: Keras' RandAugment per picture, after the "
        "changes above."
    )
    aug_mix: Annotated[AugMixConfig | None, BeforeValidator(_switched_on)] = Field(
        None, description="`true` or `{num_chains: 3, chain_depth: 3, factor: 0.3}`: Keras' AugMix per picture, "
        "after RandAugment."
    )
    random_erasing: Annotated[RandomErasingConfig | None, BeforeValidator(_switched_on)] = Field(
        None, description="`true` or `{probability: 0.5, scale: [0.02, 0.33]}`: Keras' RandomErasing per "
        "picture, last of the per-picture changes (after cutout)."
    )
    mixup: Annotated[MixUpConfig | None, BeforeValidator(_switched_on)] = Field(
        None, description="`true`, `0.2` or `{alpha: 0.2}`: Keras' MixUp on every training batch; the labels are "
        "blended as the pictures are (sparse labels become one-hot). Always in the input pipeline."
    )
    cutmix: Annotated[CutMixConfig | None, BeforeValidator(_switched_on)] = Field(
        None, description="`true`, `1.0` or `{alpha: 1.0}`: Keras' CutMix on every training batch, labels "
        "mixed by area. With `mixup` too, each batch gets one of the two, drawn with even odds (as timm does)."
    )
    placement: Literal["auto", "pipeline", "model"] = Field(
        "auto", description="Where augmentation runs. `pipeline`: in the `tf.data` input pipeline on the CPU, "
        "overlapping training; TensorFlow's backend only. `model`: as the model's first layers, on the GPU when "
        "there is one (they pass images through unchanged at inference). `auto`: `model` when a GPU is visible or "
        "the backend is not TensorFlow, else `pipeline`."
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


def alternates_flips(augmentation: AugmentationConfig | None) -> bool:
    """Whether each picture is flipped on every other epoch (`horizontal_flip: alternate`)."""
    return augmentation is not None and augmentation.horizontal_flip == "alternate"


def mixes_labels(augmentation: AugmentationConfig | None) -> bool:
    """Whether the augmentation blends pictures of a batch, and so their labels (`mixup`, `cutmix`)."""
    return augmentation is not None and (augmentation.mixup is not None or augmentation.cutmix is not None)


def trained_label_mode(label_mode: str, augmentation: AugmentationConfig | None) -> str:
    """The labels the model trains on: `dataset.label_mode`, but one-hot (`categorical`) where `sparse` labels are
    mixed (a blend of two classes is not one class number).

    >>> trained_label_mode("sparse", AugmentationConfig(mixup=True))
    'categorical'
    """
    return "categorical" if label_mode == "sparse" and mixes_labels(augmentation) else label_mode


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
