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

"$PY" "$FLOW" card get train --id profile_card_train "$WORK/card_train.html" >/dev/null
cat <<MSG

Cards (the latest run of TrainFlow, the one whose train step failed):
  $WORK/card_train.html   (open it in a browser; it works offline)
Open cards with Metaflow, from $WORK:
  cd $WORK && $PY $FLOW card view train --id profile_card_train
  cd $WORK && $PY $FLOW card server
Of the successful run:
  cd $WORK && $PY $FLOW card view TrainFlow/<run-id>/train --id profile_card_train
MSG
