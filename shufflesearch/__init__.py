"""shufflesearch: ShuffleNet v1 architecture search and complexity analysis.

Kept light on import: torch, optuna, matplotlib and typer load only where used.

>>> from shufflesearch import ShuffleNetSpec, count_macs
>>> count_macs(ShuffleNetSpec(groups=3, scale=1.0)) / 1e6
137.460672
"""

from .complexity import Complexity, count_complexity, count_macs
from .errors import MachineError, ShufflesearchError, UsageError
from .presets import get_preset, list_presets
from .spec import ShuffleNetSpec, SpecError

__all__ = [
    "Complexity",
    "MachineError",
    "ShuffleNetSpec",
    "ShufflesearchError",
    "SpecError",
    "UsageError",
    "count_complexity",
    "count_macs",
    "get_preset",
    "list_presets",
]
__version__ = "0.1.0"
