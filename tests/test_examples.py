"""genrec.examples: the report's example users, on a hand-made split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from genrec import examples

ITEMS = pd.DataFrame({"item_id": np.arange(1, 9), "raw_item_id": np.arange(101, 109),
                      "title": pd.Series(["A", "B", "C|D", None, "E", "F", "G", "H"], dtype="string")})
USERS = pd.DataFrame({"user_id": [0, 1, 2], "raw_user_id": [500, 501, 502]})
TRAIN = pd.DataFrame({"user_id": [0, 0, 0, 1, 1, 2], "item_id": [1, 2, 3, 1, 5, 6], "timestamp": range(6)})
TEST = pd.DataFrame({"user_id": [0, 0, 1, 1, 2, 2], "item_id": [4, 5, 2, 3, 7, 8], "position": [1, 0, 0, 1, 0, 1]})
RECS = {
    "topk": pd.DataFrame({"user_id": [0, 0, 1, 1, 2, 2], "item_id": [5, 6, 4, 3, 7, 8], "rank": [1, 2, 1, 2, 2, 1]}),
    "rra": pd.DataFrame({"user_id": [0, 0, 1, 1, 2, 2], "item_id": [7, 4, 2, 3, 1, 2], "rank": [1, 2, 1, 2, 1, 2]}),
}


def test_pick_users_is_a_fixed_seeded_rule():
    picked = examples.pick_users(TEST, 2, seed=0)
    assert len(picked) == 2 and set(picked) <= {0, 1, 2} and list(picked) == sorted(picked)
    assert list(examples.pick_users(TEST, 2, seed=0)) == list(picked)
    assert list(examples.pick_users(TEST, 10, seed=0)) == [0, 1, 2]  # at most every test user
    assert {tuple(examples.pick_users(TEST, 1, seed=s)) for s in range(20)} == {(0,), (1,), (2,)}


def test_section_shows_history_future_and_marked_lists():
    text = examples.section(TRAIN, TEST, RECS, ITEMS, USERS, count=3, last=2)
    assert text.startswith("## Example users")
    user0 = text[text.index("### User 500"):text.index("### User 501")]
    assert "(3 training items)" in user0
    assert "Last 2 watched, oldest first: B; C\\|D." in user0  # the last two, a '|' escaped
    assert "Held-out future, in order: 1. E; 2. item 104." in user0  # by position; no title: the raw id
    rows = [line for line in user0.splitlines() if line.startswith("|")]
    assert rows[0] == "| rank | topk | rra |"
    assert rows[2] == "| 1 | **✓ E** | G |"
    assert rows[3] == "| 2 | F | **✓ item 104** |"
    assert rows[4] == "| hits | 1 | 1 |"
    user2 = text[text.index("### User 502"):]
    assert "| 1 | **✓ H** | A |" in user2  # topk's list in rank order, not row order
    assert "| hits | 2 | 0 |" in user2
