"""Small generated data shared by the model tests."""

import numpy as np
import pandas as pd

from genrec.sequences import UserSequences


def cyclic_walks(num_users: int, num_items: int, seed: int = 0) -> tuple[UserSequences, np.ndarray]:
    """Every user walks the cycle 1 -> 2 -> ... -> num_items -> 1 from a random start, 8 to 24
    steps (some longer than a 16-item window). Returns the walks and each user's next item,
    never seen before by that user: a pattern a sequence model can learn."""
    rng = np.random.default_rng(seed)
    rows, targets = [], []
    for user in range(num_users):
        start, length = int(rng.integers(0, num_items)), int(rng.integers(8, 25))
        walk = (start + np.arange(length + 1)) % num_items + 1
        rows += [(user, int(item)) for item in walk[:-1]]
        targets.append(int(walk[-1]))
    sequences = UserSequences.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id"]), num_users)
    return sequences, np.array(targets)
