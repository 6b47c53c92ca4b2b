"""The policy heading probe: the expert agrees with itself, a policy that ignores the scene does not."""
import numpy as np
import pytest

from unidiff.eval.policy_heading import heading_agreement
from unidiff.eval.rollout_eval import ExpertPolicy

PUSH = "unidiff/TabletopPush-v0"


class Up:
    """Straight up whatever the scene (the first Push commands are level travel: never large in z)."""

    def reset(self):
        pass

    def select_action(self, obs):
        return np.array([0.0, 0.0, 1.0], np.float32)


def test_expert_agrees_with_itself_and_a_blind_policy_does_not():
    kw = dict(horizon=8, start_seed=100_000, env_kwargs={"size": 32})
    expert = heading_agreement(ExpertPolicy, PUSH, 3, **kw)
    assert expert["heading_agreement"] == 1.0 and expert["action_mae"] == 0.0 and expert["large_commands"] > 0
    blind = heading_agreement(Up, PUSH, 3, **kw)
    assert blind["heading_agreement"] < 0.5 and blind["action_mae"] > 0.3
    assert blind["large_commands"] == expert["large_commands"]  # the same expert commands
    assert blind["action_mae_zero"] == expert["action_mae_zero"] > 0


def test_bad_episode_count_is_refused():
    with pytest.raises(ValueError, match="episodes"):
        heading_agreement(ExpertPolicy, PUSH, 0, horizon=8, start_seed=0)
