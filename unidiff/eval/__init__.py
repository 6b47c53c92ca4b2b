"""Evaluation harness (issue 5): model-agnostic scorers that take outputs or callables.

Captioning and text-to-image are scored against the simulator's ground truth, policies by
seeded rollouts; `write_report` gathers everything into one HTML page plus metrics.json.
"""
from unidiff.eval.caption_score import parse_caption, score_captions
from unidiff.eval.report import image_grid, write_report
from unidiff.eval.rollout_eval import ExpertPolicy, Policy, evaluate_policy, write_video
from unidiff.eval.stats import wilson_interval
from unidiff.eval.t2i_score import score_image, score_images

__all__ = ["ExpertPolicy", "Policy", "evaluate_policy", "image_grid", "parse_caption",
           "score_captions", "score_image", "score_images", "wilson_interval", "write_report",
           "write_video"]
