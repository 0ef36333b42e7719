#!/usr/bin/env bash
# The demo: build and install metaflow-profiler with Metaflow, run the
# example flow twice (a successful run and one whose `train` step fails),
# and print where the cards are and how to open them.
source "$(dirname "$0")/env.sh"
PY="$(venv_for 3.11)"
WORK="${DEMO_DIR:-$ROOT/.demo}"
mkdir -p "$WORK"
cd "$WORK"
export USERNAME="${USERNAME:-${USER:-demo}}" METAFLOW_DEFAULT_DATASTORE=local METAFLOW_DEFAULT_METADATA=local
FLOW="$ROOT/examples/train_flow.py"

"$PY" "$FLOW" run
"$PY" "$FLOW" run --fail True || echo "(the failing run failed, as it should)"

# Save both cards and print how to open them with Metaflow.
"$PY" - "$WORK" "$PY" "$FLOW" <<'PYEOF'
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
print("\nOr with Metaflow (it needs a user name: USER or USERNAME set), from the demo directory:")
for run in runs:
    print(f"  cd {work} && {py} {flow} card view {run.id}/train --id profile_card_train")
print(f"  cd {work} && {py} {flow} card server")
PYEOF
