"""Small helpers shared by the components."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

LabelArgs = TypeVar("LabelArgs")


def docker_labels(values: Mapping[str, str], cls: type[LabelArgs]) -> list[LabelArgs]:
    """Docker labels as the provider's label args (``ContainerLabelArgs``, ``VolumeLabelArgs``...), sorted."""
    return [cls(label=k, value=v) for k, v in sorted(values.items())]
