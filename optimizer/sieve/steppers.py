"""Which array stepper moves each family: the one registry of the sieve's families.

The 32- and 48-bit families' steppers (`jumps`) and the wide-state ones (`wide_jumps`,
built on `jumps`) meet here, so neither module has to know the other's list.
"""

from __future__ import annotations

from types import ModuleType

from winopt.optimizer.sieve.generators import family
from winopt.optimizer.sieve.jumps import (
    Java48Stepper,
    Pcg32Stepper,
    Prime31Stepper,
    Stepper,
    Xorshift32Stepper,
    Xorshift64Stepper,
)
from winopt.optimizer.sieve.wide_jumps import WIDE_STEPPERS

NARROW_STEPPERS: dict[str, type[Stepper]] = {
    "java_lcg": Java48Stepper,
    "lcg32": Prime31Stepper,
    "minstd": Prime31Stepper,
    "xorshift32": Xorshift32Stepper,
    "xorshift64": Xorshift64Stepper,
    "pcg32": Pcg32Stepper,
}


def stepper(prng: str, xp: ModuleType) -> Stepper:
    """The array stepper for family `prng` on array module `xp`."""
    return {**NARROW_STEPPERS, **WIDE_STEPPERS}[prng](family(prng), xp)
