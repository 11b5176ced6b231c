"""Seconds per optimizer step of each trainer on the small default's 135M model (CPU).

Trains SFT, DPO, SimPO, the reward model and PPO for a few steps on the small default's
settings (batch 8, max length 128) and prints the mean step time after the first step
(which pays one-off costs). Usage:
    .venv/bin/python benchmarks/po_step_time.py [model_dir] [steps]
model_dir defaults to results/models/smollm2-135m/base (run `make demo` first, or pass a
directory made by the prepare_base_model rule).
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import yaml
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from value_drifts.data.preference_pairs import template_value_gap_pairs  # noqa: E402
from value_drifts.training import preference_trainers  # noqa: E402
from value_drifts.training.common import TrainerSettings  # noqa: E402

model_dir = sys.argv[1] if len(sys.argv) > 1 else str(REPO / "results/models/smollm2-135m/base")
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 4
config = yaml.safe_load((REPO / "config/config.yaml").read_text())
templates = yaml.safe_load((REPO / "config/synthetic/templates.yaml").read_text())
topics = yaml.safe_load((REPO / "config/topics.yaml").read_text())
pairs = template_value_gap_pairs(templates, topics, list(topics)[:3], "support", 8 * steps, 0)


class StepTimer(TrainerCallback):
    """Time between step ends (PPOTrainer fires no on_step_begin)."""

    def __init__(self):
        self.times = []
        self.last = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now


def settings(section, out):
    return TrainerSettings.from_config(section, model_path=model_dir, output_dir=out,
                                       save_steps=10**9, seed=0, threads=2)


results = {}
algorithms = config["preference_optimization"]["algorithms"]
with tempfile.TemporaryDirectory() as tmp:
    runs = {
        "dpo": lambda timer: preference_trainers.train_dpo(
            settings(algorithms["dpo"], f"{tmp}/dpo"), algorithms["dpo"], pairs, [timer]),
        "simpo": lambda timer: preference_trainers.train_simpo(
            settings(algorithms["simpo"], f"{tmp}/simpo"), algorithms["simpo"], pairs, [timer]),
        "reward model": lambda timer: preference_trainers.train_reward_model(
            settings(algorithms["ppo"]["reward_model"], f"{tmp}/rm"), pairs, [timer]
        ).save_model(f"{tmp}/rm/final"),
        "ppo": lambda timer: preference_trainers.train_ppo(
            settings(algorithms["ppo"], f"{tmp}/ppo"), algorithms["ppo"], pairs,
            f"{tmp}/rm/final", [timer]),
    }
    for name, run in runs.items():
        timer = StepTimer()
        start = time.perf_counter()
        run(timer)
        total = time.perf_counter() - start
        steady = timer.times[1:] or timer.times
        results[name] = {"steps": len(timer.times), "s_per_step": sum(steady) / len(steady),
                         "first_step_s": timer.times[0], "total_s": total}
        print(f"{name:>12}: {results[name]['s_per_step']:6.1f} s/step after the first "
              f"({timer.times[0]:.1f} s), {len(timer.times)} steps, {total:.0f} s with loading",
              flush=True)
print(json.dumps(results))
