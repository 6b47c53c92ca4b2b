"""The tabletop world: scenes, language, rendering, and the gymnasium envs."""
from unidiff_envs.tabletop.language import caption, describe, instruction
from unidiff_envs.tabletop.render import render_scene, scene_sample
from unidiff_envs.tabletop.scene import COLORS, SHAPES, Scene, SceneObject, sample_scene

__all__ = ["COLORS", "SHAPES", "Scene", "SceneObject", "caption", "describe", "instruction",
           "render_scene", "sample_scene", "scene_sample"]
