#!/usr/bin/env bash
# The demo: build and install metaflow-profiler with Metaflow, run the
# example flow twice (a successful run and one whose `train` step fails),
# save both cards and print the Metaflow commands that fetch them.
# DEMO_PYTHON: an interpreter that already has the package (skips the build).
source "$(dirname "$0")/env.sh"
PY="${DEMO_PYTHON:-$(venv_for 3.11)}"
WORK="${DEMO_DIR:-$ROOT/.demo}"
mkdir -p "$WORK"
cd "$WORK"
# Metaflow needs a user name and refuses "root" (the usual user in containers).
user="${USERNAME:-${USER:-}}"
[ -n "$user" ] && [ "$user" != root ] || user=demo
export USERNAME="$user" METAFLOW_DEFAULT_DATASTORE=local METAFLOW_DEFAULT_METADATA=local
FLOW="$ROOT/examples/train_flow.py"

"$PY" "$FLOW" run
"$PY" "$FLOW" run --fail True || echo "(the failing run failed, as it should)"

"$PY" - "$WORK" "$PY" "$FLOW" <<'PYEOF'
import os
import shlex
import sys

from metaflow import Flow, namespace
from metaflow.cards import get_cards

work, py, flow = sys.argv[1:]
namespace(None)
runs = list(Flow("TrainFlow"))[:2]  # newest first: the failed run, then the good one
print("\nCards of the demo's `train` step (self-contained HTML, open offline in a browser):")
for run, label in zip(runs, ("failed", "ok")):
    card = get_cards(run["train"].task, id="profile_card_train")[0]
    path = f"{work}/card_train_{label}.html"
    with open(path, "w") as f:
        f.write(card.get())
    print(f"  {label:6} {path}")
env = (f"USERNAME={shlex.quote(os.environ['USERNAME'])} METAFLOW_DEFAULT_DATASTORE=local "
       "METAFLOW_DEFAULT_METADATA=local")
q = shlex.quote
print("\nThe same with Metaflow (headless; these work as root too):")
for run in runs:
    print(f"  cd {q(work)} && {env} {q(py)} {q(flow)} card get {run.id}/train "
          f"--id profile_card_train {q(f'{work}/train_{run.id}.html')}")
print("With a browser on this machine: the same with `card view {run}/train --id "
      "profile_card_train`, or `card server`.")
PYEOF
