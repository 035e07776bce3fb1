"""Study ``gd``: update rules, the divergence threshold 2/lambda_max, and the edge of stability."""

from gradlab.studies.gd.rules import RULES, make_rule
from gradlab.studies.gd.threshold import find_lr_threshold

__all__ = ["RULES", "make_rule", "find_lr_threshold"]
