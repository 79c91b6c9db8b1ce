"""What a spec costs: closed-form MACs/params (the budget metric) and a fvcore cross-check."""

from .closed_form import Complexity, LayerCost, StageCost, count_complexity, count_macs
from .policy import MACS, OTHER_OPS, POLICY, Rule

__all__ = [
    "MACS",
    "OTHER_OPS",
    "POLICY",
    "Complexity",
    "LayerCost",
    "Rule",
    "StageCost",
    "count_complexity",
    "count_macs",
]
