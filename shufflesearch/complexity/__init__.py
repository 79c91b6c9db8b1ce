"""What a spec costs: closed-form MACs/params (the budget metric) and a fvcore cross-check."""

from .closed_form import Complexity, LayerCost, StageCost, count_complexity, count_macs

__all__ = ["Complexity", "LayerCost", "StageCost", "count_complexity", "count_macs"]
