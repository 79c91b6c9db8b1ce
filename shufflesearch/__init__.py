"""shufflesearch: ShuffleNet v1 architecture search and complexity analysis.

Kept light on import: torch, optuna, matplotlib and typer load only where used.
"""

from .complexity import Complexity, count_complexity, count_macs
from .presets import get_preset, list_presets
from .spec import ShuffleNetSpec, SpecError

__all__ = ["Complexity", "ShuffleNetSpec", "SpecError", "count_complexity", "count_macs", "get_preset", "list_presets"]
__version__ = "0.1.0"
