"""A live card update killed mid-write (SIGKILL, the OOM killer) leaves the
task's cards listable: Metaflow's local storage writes its temporary file
beside the card and its card listing raises on such a name, so the live
card writes through plugins/live.py's kill_safe_storage."""

import os
import signal
import subprocess
import sys

CHILD = """
import sys
from metaflow.datastore import FlowDataStore
from metaflow.plugins.cards.card_datastore import CardDatastore
from metaflow.plugins.datastores.local_storage import LocalStorage
from metaflow_extensions.profiler.plugins.live import kill_safe_storage

fds = FlowDataStore("F", environment=None, storage_impl=kill_safe_storage(LocalStorage),
                    ds_root=sys.argv[1])
ds = CardDatastore(fds, pathspec="F/1/start/2")
ds.save_card("u1", "profile_card", "first", card_id="profile_card_start")
# Killed midway, deterministically: after the new card's bytes are written
# and before they replace the old one (the moment a real kill leaves a
# temporary file behind).
import os, signal
os.replace = os.rename = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
ds.save_card("u1", "profile_card", "second", card_id="profile_card_start")
"""


def listed(root):
    from metaflow.datastore import FlowDataStore
    from metaflow.plugins.cards.card_datastore import CardDatastore
    from metaflow.plugins.datastores.local_storage import LocalStorage

    fds = FlowDataStore("F", environment=None, storage_impl=LocalStorage, ds_root=root)
    return CardDatastore(fds, pathspec="F/1/start/2").extract_card_paths(card_type="profile_card")


def test_a_write_killed_midway_leaves_the_cards_listable(tmp_path):
    root = tmp_path
    child = subprocess.run([sys.executable, "-c", CHILD, str(root)], timeout=120)
    assert child.returncode == -signal.SIGKILL
    task_dir = root / "F" / "runs" / "1" / "steps" / "start" / "tasks" / "2"
    assert any(n.startswith(".mfp-live-") for n in os.listdir(task_dir)), os.listdir(task_dir)
    # The interrupted write's temporary file is in the task's folder, not
    # among its cards: the last complete card is there and lists.
    assert sorted(os.listdir(task_dir / "cards")) == [
        "profile_card-profile_card_start-u1.html"]
    (path,) = listed(str(root))
    assert path.endswith("profile_card-profile_card_start-u1.html")
