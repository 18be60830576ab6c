"""The `evaluate:` section: how a run's checkpoints are judged (train's scores, `evaluate`, `predict`)."""

from typing import Literal

from pydantic import Field, field_validator

from cnnrun.config.sections import Section


class EvaluateConfig(Section):
    tta: list[Literal["flip", "translate"]] = Field(
        default_factory=list, description="Test-time augmentation: the class probabilities are averaged over views "
        "of each picture. `[flip]`: the picture and its mirror image, half each. `[translate]`: the picture (half) "
        "and the picture moved by one pixel down-right and up-left (a quarter each; the border reflected). `[flip, "
        "translate]`: both, the views multiplied (airbench's weights). Test scores then also hold `tta_accuracy` "
        "and `tta_loss`; the plain scores stay."
    )

    @field_validator("tta")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"each view once, got {value}")
        return sorted(value)  # flip before translate, however written
