"""Example users for the report: what each strategy recommends to a few test users, by title,
with the hits in their held-out future marked, so a reader sees the strategies' behaviour
(repeats of one genre, diversification) and not only their averages."""

from __future__ import annotations

import numpy as np
import pandas as pd


def pick_users(test: pd.DataFrame, count: int, seed: int) -> np.ndarray:
    """``count`` test users drawn with ``seed`` from the sorted test users (a fixed rule)."""
    users = np.sort(test["user_id"].unique())
    return np.sort(np.random.default_rng(seed).choice(users, size=min(count, len(users)), replace=False))


def section(train: pd.DataFrame, test: pd.DataFrame, recs: dict[str, pd.DataFrame], items: pd.DataFrame,
            users: pd.DataFrame, count: int = 3, last: int = 5, seed: int = 0) -> str:
    """The markdown section. ``train``/``test``: the split; ``recs``: strategy -> its
    ``user_id, item_id, rank`` table; ``items``: ``item_id, raw_item_id, title``;
    ``users``: ``user_id, raw_user_id``."""
    titles = items.set_index("item_id")
    raw_user = dict(zip(users["user_id"], users["raw_user_id"]))

    def name(item: int) -> str:
        title = titles.at[item, "title"]
        label = f"item {titles.at[item, 'raw_item_id']}" if pd.isna(title) else str(title)
        return label.replace("|", "\\|")  # a title must not split a table cell

    lines = ["## Example users", "",
             f"{count} test users drawn with seed {seed}: the last {last} items of their training history, "
             "their held-out future, and each strategy's list; **✓ bold** marks an item of the future. "
             "`genrec recommend --user <raw id> --strategy <name>` prints the same lists.", ""]
    for user in pick_users(test, count, seed):
        history = train.loc[train["user_id"] == user, "item_id"].to_numpy()
        future = test[test["user_id"] == user].sort_values("position")["item_id"].tolist()
        lists = {s: frame[frame["user_id"] == user].sort_values("rank")["item_id"].tolist() for s, frame in recs.items()}
        lines += [f"### User {raw_user[user]} ({len(history)} training items)", "",
                  f"Last {min(last, len(history))} watched, oldest first: "
                  + "; ".join(name(i) for i in history[-last:]) + ".", "",
                  "Held-out future, in order: " + "; ".join(f"{p}. {name(i)}" for p, i in enumerate(future, 1)) + ".",
                  "", "| rank | " + " | ".join(lists) + " |", "|---:|" + "---|" * len(lists)]
        depth = max(len(v) for v in lists.values())
        for rank in range(depth):
            cells = []
            for ranked in lists.values():
                item = ranked[rank] if rank < len(ranked) else None
                cells.append("" if item is None else f"**✓ {name(item)}**" if item in future else name(item))
            lines.append(f"| {rank + 1} | " + " | ".join(cells) + " |")
        lines.append("| hits | " + " | ".join(str(len(set(v) & set(future))) for v in lists.values()) + " |")
        lines.append("")
    return "\n".join(lines)


def item_table(items: pd.DataFrame, titles: pd.DataFrame) -> pd.DataFrame:
    """``item_id, raw_item_id, title`` from the id mapping and the download's titles (NA where none)."""
    table = items[["item_id", "raw_item_id"]].merge(titles, on="raw_item_id", how="left", validate="one_to_one")
    table["title"] = table["title"].astype("string")
    return table
