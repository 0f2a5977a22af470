"""The decorator that every configuration class of the libraries uses.

A config is a frozen dataclass validated by pydantic: types are checked and coerced, constraints
(``Annotated[float, Field(gt=0)]``) enforced, unknown keys rejected, and errors name the field and
the offending value. Kedro validates ``params:`` inputs typed with such classes before any node
runs.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar, cast, dataclass_transform

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, Field))
def config(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen, strictly validated dataclass."""
    # pydantic >= 2.14 types the result as its own dataclass type; it is still ``cls``.
    return cast("type[T]", dataclass(frozen=True, config=ConfigDict(extra="forbid"))(cls))
