"""The demo: a flow whose `train` step has one clearly hot function.

    python examples/train_flow.py run                 # card: profile_card_train
    python examples/train_flow.py run --fail True     # `train` raises: its card shows why
"""

import json
import random
import re

from metaflow import FlowSpec, Parameter, profile_card, step


def make_records(n):
    rng = random.Random(7)
    return [{"id": i, "text": " ".join(rng.choice("abcdefgh") * 3 for _ in range(8))}
            for i in range(n)]


def featurize(records):
    """The hot function: regex and JSON work per record, several passes."""
    words = re.compile(r"[a-h]{3}")
    out = []
    for _ in range(6):
        for r in records:
            out.append(len(words.findall(json.dumps(r))))
    return out


def fit(features):
    """Cheap next to featurize."""
    return sum(features) / max(1, len(features))


class TrainFlow(FlowSpec):
    fail = Parameter("fail", default=False, type=bool, help="make `train` raise after its work")
    size = Parameter("size", default=40000, type=int, help="number of records")

    @step
    def start(self):
        self.records = make_records(self.size)
        self.next(self.train)

    @profile_card
    @step
    def train(self):
        self.model = fit(featurize(self.records))
        if self.fail:
            raise RuntimeError("training diverged (demo failure)")
        self.next(self.end)

    @step
    def end(self):
        print("model", self.model)


if __name__ == "__main__":
    TrainFlow()

