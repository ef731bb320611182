"""Probabilistic duplicate detection over person records, with Splink on DuckDB.

One model definition serves both jobs: finding duplicates inside one table
(:func:`find_duplicates`) and linking the records of two tables (:func:`link_records`).
The model compares whichever of these fields the records carry (``id`` is required)::

    first_name, last_name, name_kana, email, phone, date_of_birth, external_id,
    street, street2, city, postcode, region, company

Values are normalised first (Unicode NFKC, case folding, katakana as hiragana, company legal
forms dropped, phones as E.164, dates parsed), so width and kana variants of one name compare
equal. The model is trained on the data itself, without labels: u probabilities by random
sampling, m probabilities by expectation-maximisation over two blocking rules, and the prior
from exact-match rules with an assumed recall. ``docs/duplicates.md`` describes it.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Literal

import duckdb
import pyarrow as pa
import splink.comparison_library as cl
from splink import Linker, SettingsCreator, block_on
from splink.backends.duckdb import DuckDBAPI
from splink.blocking_rule_library import CustomRule
from splink.internals.blocking_rule_creator import BlockingRuleCreator
from splink.internals.comparison_creator import ComparisonCreator
from splink.internals.exceptions import EMTrainingException

from ichigen.core.normalise import normalise_phone
from ichigen.core.text import company_key, fold
from ichigen.identity.schemas import DuplicateCandidate

#: The fields the model knows, in the order their contributions are reported.
MATCH_FIELDS: Final = (
    "first_name",
    "last_name",
    "name_kana",
    "email",
    "phone",
    "date_of_birth",
    "external_id",
    "street",
    "street2",
    "city",
    "postcode",
    "region",
    "company",
)

#: The name of the comparison that compares first and last name together.
NAME_COMPARISON: Final = "name"
NAME_FIELDS: Final = frozenset({"first_name", "last_name"})

_LEFT: Final = "records_left"
_RIGHT: Final = "records_right"
_SPACES = re.compile(r"\s+")
_NOT_ALNUM = re.compile(r"[^0-9a-z]")

logger = logging.getLogger(__name__)


class MatchingError(ValueError):
    """The records cannot be matched as given (no ids, duplicate ids, nothing to compare)."""


@dataclass(frozen=True)
class MatchSettings:
    """Knobs of a matching run; the defaults are what the product uses."""

    #: Candidate pairs at or above this match probability are returned for review.
    threshold: float = 0.9
    #: Seed for the random sample that estimates u probabilities: same data, same scores.
    seed: int = 42
    #: Size of that random sample (record pairs).
    u_max_pairs: float = 2e6
    #: Share of true duplicates the exact-match rules are assumed to find; sets the prior.
    deterministic_recall: float = 0.6
    #: Region for phone numbers written without a country code.
    phone_region: str = "JP"
    #: DuckDB worker threads; None lets DuckDB use every core.
    threads: int | None = None


# --- normalisation -----------------------------------------------------------------------


def _text(value: object) -> str | None:
    """Folded text with single spaces, or None when empty."""
    if value is None:
        return None
    text = _SPACES.sub(" ", fold(str(value)))
    return text or None


def _compact(value: object) -> str | None:
    """Folded text without spaces: '山田 太郎', '山田太郎' and 'ﾔﾏﾀﾞ' forms compare alike."""
    text = _text(value)
    if text is None:
        return None
    return text.replace(" ", "") or None


def _email(value: object) -> str | None:
    if value is None:
        return None
    text = unicodedata.normalize("NFKC", str(value)).strip().casefold()
    return text if "@" in text else None


def _code(value: object) -> str | None:
    """Letters and digits only: postcodes ('〒100-0001'), membership and card numbers."""
    if value is None:
        return None
    text = _NOT_ALNUM.sub("", unicodedata.normalize("NFKC", str(value)).casefold())
    return text or None


def _company(value: object) -> str | None:
    text = _text(value)
    return company_key(text) if text else None


def _date_of_birth(value: object) -> date | None:
    """A date from a date, a datetime, or text such as '1980-04-09', '19800409', '1980/4/9'."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = unicodedata.normalize("NFKC", str(value)).strip()
    parts = [part for part in re.split(r"\D+", text) if part]
    try:
        if len(parts) == 1 and len(parts[0]) == 8:
            digits = parts[0]
            return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
        if len(parts) == 3 and len(parts[0]) == 4:
            return date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return None
    return None


def _phone_normaliser(region: str) -> Callable[[object], str | None]:
    def normalise(value: object) -> str | None:
        if value is None:
            return None
        text = unicodedata.normalize("NFKC", str(value)).strip()
        if not text:
            return None
        try:
            return normalise_phone(text, region)
        except ValueError:
            # Keep what digits there are: a malformed number can still match its twin.
            digits = "".join(ch for ch in text if ch.isdigit())
            return digits or None

    return normalise


def _normalisers(settings: MatchSettings) -> dict[str, Callable[[object], object]]:
    return {
        "first_name": _compact,
        "last_name": _compact,
        "name_kana": _compact,
        "email": _email,
        "phone": _phone_normaliser(settings.phone_region),
        "date_of_birth": _date_of_birth,
        "external_id": _code,
        "street": _text,
        "street2": _text,
        "city": _text,
        "postcode": _code,
        "region": _text,
        "company": _company,
    }


def _rows(records: Iterable[Mapping[str, Any]] | pa.Table) -> list[Mapping[str, Any]]:
    if isinstance(records, pa.Table):
        rows: list[Mapping[str, Any]] = records.to_pylist()
        return rows
    return list(records)


def _prepare(
    tables: Sequence[list[Mapping[str, Any]]], settings: MatchSettings
) -> tuple[list[pa.Table], list[str]]:
    """Normalised Arrow tables with the fields that hold a value somewhere, and those fields."""
    normalisers = _normalisers(settings)
    normalised: list[dict[str, list[object]]] = []
    for rows in tables:
        columns: dict[str, list[object]] = {"id": []}
        columns.update({field: [] for field in MATCH_FIELDS})
        for row in rows:
            if row.get("id") is None:
                raise MatchingError("every record needs an 'id'")
            columns["id"].append(str(row["id"]))
            for field in MATCH_FIELDS:
                columns[field].append(normalisers[field](row.get(field)))
        if len(set(columns["id"])) != len(columns["id"]):
            raise MatchingError("record ids must be unique within a table")
        normalised.append(columns)
    present = [
        field
        for field in MATCH_FIELDS
        if any(value is not None for columns in normalised for value in columns[field])
    ]
    if not present:
        raise MatchingError("the records have none of the fields the model compares")
    schema = pa.schema(
        [("id", pa.string())]
        + [(f, pa.date32() if f == "date_of_birth" else pa.string()) for f in present]
        + [("full_name", pa.string())]
    )
    arrow_tables = []
    for columns in normalised:
        data: dict[str, list[object]] = {"id": columns["id"]}
        data.update({field: columns[field] for field in present})
        # First and last name together, so the exact-name level gets a term-frequency
        # adjustment (a shared common name says less than a shared rare one).
        data["full_name"] = [
            f"{first} {last}" if first and last else None
            for first, last in zip(columns["first_name"], columns["last_name"], strict=True)
        ]
        arrow_tables.append(pa.Table.from_pydict(data, schema=schema))
    return arrow_tables, present


# --- the model -----------------------------------------------------------------------------


def _comparisons(present: Sequence[str]) -> list[ComparisonCreator]:
    """One comparison per field (first and last name together), each with graded levels."""
    has = set(present)
    comparisons: list[ComparisonCreator] = []
    if {"first_name", "last_name"} <= has:
        # Handles swapped first and last names, common when Japanese names are entered in
        # either order.
        comparisons.append(
            cl.ForenameSurnameComparison(
                "first_name",
                "last_name",
                jaro_winkler_thresholds=[0.92, 0.88],
                forename_surname_concat_col_name="full_name",
            ).configure(term_frequency_adjustments=True)
        )
    else:
        comparisons.extend(
            cl.NameComparison(field).configure(term_frequency_adjustments=True)
            for field in ("first_name", "last_name")
            if field in has
        )
    graded: dict[str, ComparisonCreator] = {
        "name_kana": cl.JaroWinklerAtThresholds("name_kana", [0.92, 0.8]).configure(
            term_frequency_adjustments=True
        ),
        "email": cl.EmailComparison("email"),
        "phone": cl.LevenshteinAtThresholds("phone", [1, 2]),
        "date_of_birth": cl.DateOfBirthComparison(
            "date_of_birth",
            input_is_string=False,
            datetime_thresholds=[1, 1, 10],
            datetime_metrics=["month", "year", "year"],
        ),
        "external_id": cl.DamerauLevenshteinAtThresholds("external_id", [1, 2]),
        "street": cl.JaroWinklerAtThresholds("street", [0.95, 0.88]).configure(
            term_frequency_adjustments=True
        ),
        "street2": cl.JaroWinklerAtThresholds("street2", [0.95, 0.88]).configure(
            term_frequency_adjustments=True
        ),
        "city": cl.JaroWinklerAtThresholds("city", [0.95, 0.88]).configure(
            term_frequency_adjustments=True
        ),
        "postcode": cl.LevenshteinAtThresholds("postcode", [1]).configure(
            term_frequency_adjustments=True
        ),
        "region": cl.ExactMatch("region").configure(term_frequency_adjustments=True),
        "company": cl.JaroWinklerAtThresholds("company", [0.95, 0.88]).configure(
            term_frequency_adjustments=True
        ),
    }
    comparisons.extend(graded[field] for field in present if field in graded)
    return comparisons


#: Candidate-generating rules as the fields they need equal; a pair is scored when any
#: rule whose fields are present admits it. Pairs of fields keep blocks small on large bases.
_PREDICTION_BLOCKS: Final = (
    ("first_name", "last_name"),
    ("last_name", "date_of_birth"),
    ("first_name", "date_of_birth"),
    ("date_of_birth", "postcode"),
    ("date_of_birth", "city"),
    ("email",),
    ("phone",),
    ("external_id",),
    ("name_kana",),
    ("date_of_birth", "region"),
    ("date_of_birth", "street"),
    ("last_name", "postcode"),
    ("first_name", "postcode"),
    ("last_name", "city"),
    ("first_name", "city"),
    ("last_name", "street"),
    ("first_name", "street"),
    ("street", "postcode"),
    ("street", "city"),
    ("last_name", "company"),
)

#: Rules for expectation-maximisation: each leaves the fields it blocks on to the other.
_TRAINING_BLOCKS: Final = (
    ("first_name", "last_name"),
    ("date_of_birth",),
    ("email",),
    ("postcode",),
    ("phone",),
)

#: Rules that admit almost no false positives; their hit count sets the prior.
_DETERMINISTIC_BLOCKS: Final = (
    ("first_name", "last_name", "date_of_birth"),
    ("email",),
    ("phone",),
    ("external_id",),
)


def _blocks(candidates: Iterable[tuple[str, ...]], present: Sequence[str]) -> list[tuple[str, ...]]:
    return [fields for fields in candidates if set(fields) <= set(present)]


def _prediction_rules(present: Sequence[str]) -> list[BlockingRuleCreator]:
    rules: list[BlockingRuleCreator] = [
        block_on(*fields) for fields in _blocks(_PREDICTION_BLOCKS, present)
    ]
    if {"first_name", "last_name"} <= set(present):
        rules.append(CustomRule("l.first_name = r.last_name and l.last_name = r.first_name"))
        if "date_of_birth" in present:
            # Swapped names with a typo in one of them.
            rules.append(
                CustomRule(
                    "l.date_of_birth = r.date_of_birth and "
                    "(l.first_name = r.last_name or l.last_name = r.first_name)"
                )
            )
    if not rules:
        # Only fields with no rule of their own (street, city, region, ...): compare all.
        rules.append(CustomRule("1 = 1"))
    return rules


def _settings(
    link_type: Literal["dedupe_only", "link_only"], present: Sequence[str]
) -> SettingsCreator:
    return SettingsCreator(
        link_type=link_type,
        unique_id_column_name="id",
        comparisons=list(_comparisons(present)),
        blocking_rules_to_generate_predictions=list(_prediction_rules(present)),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=True,
        max_iterations=25,
        em_convergence=0.0001,
    )


def _train(linker: Linker, present: Sequence[str], settings: MatchSettings, pairs: int) -> None:
    """Unsupervised training: prior from exact rules, u by sampling, m by EM."""
    deterministic = [block_on(*fields) for fields in _blocks(_DETERMINISTIC_BLOCKS, present)]
    if deterministic:
        try:
            linker.training.estimate_probability_two_random_records_match(
                list(deterministic), recall=settings.deterministic_recall
            )
        except ValueError as error:
            # A tiny base: the exact rules find more pairs than the assumed recall allows.
            logger.warning("prior from exact-match rules skipped: %s", error)
    # When no pair agrees exactly on anything (a small or very clean base) the prior is 0,
    # which Splink cannot score with: assume one match among all the pairs instead.
    prior = linker._settings_obj._probability_two_random_records_match
    if not 0 < prior < 1:
        linker._settings_obj._probability_two_random_records_match = 1 / max(pairs, 2)
    linker.training.estimate_u_using_random_sampling(
        max_pairs=settings.u_max_pairs, seed=settings.seed
    )
    for fields in _blocks(_TRAINING_BLOCKS, present)[:2]:
        _expectation_maximisation(linker, fields)


def _expectation_maximisation(linker: Linker, fields: tuple[str, ...]) -> None:
    """One EM session blocked on ``fields``; on failure the model keeps its previous m values.

    Splink 5.0 refuses an m probability that EM drives to exactly 0.0 (it happens when every
    likely duplicate in the training block agrees on a field, as in small, clean bases), and
    the session has by then changed the linker's settings in place. The settings are put
    back as they were before the session, so the fields it would have trained keep their
    previous m values (Splink's starting values unless the other session trained them).
    """
    before = deepcopy(linker._settings_obj.core_model_settings)
    try:
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on(*fields), estimate_without_term_frequencies=True
        )
    except (ValueError, EMTrainingException) as error:
        # EMTrainingException: the block admits no pair at all, as blocking on email does on
        # a CRM's contacts, whose addresses are unique.
        linker._settings_obj.core_model_settings = before
        logger.warning("EM blocked on %s skipped: %s", ", ".join(fields), error)


def _contributions(row: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, float]:
    """Each comparison's match weight, its term-frequency adjustment included."""
    return {
        name: float(row.get(f"mw_{column}") or 0.0) + float(row.get(f"mw_tf_adj_{column}") or 0.0)
        for name, column in columns.items()
    }


def _comparison_columns(present: Sequence[str]) -> dict[str, str]:
    """Reported comparison name -> Splink's output column name for it."""
    together = {"first_name", "last_name"} <= set(present)
    columns = {NAME_COMPARISON: "first_name_last_name"} if together else {}
    columns.update({field: field for field in present if not together or field not in NAME_FIELDS})
    return columns


def _run(
    tables: Sequence[list[Mapping[str, Any]]],
    link_type: Literal["dedupe_only", "link_only"],
    settings: MatchSettings,
) -> list[dict[str, Any]]:
    arrow_tables, present = _prepare(tables, settings)
    config: dict[str, Any] = {}
    if settings.threads is not None:
        config["threads"] = settings.threads
    connection = duckdb.connect(":memory:", config=config)
    try:
        db_api = DuckDBAPI(connection)
        names = [_LEFT, _RIGHT][: len(arrow_tables)]
        frames = [
            db_api.register(table, dataset_display_name=name)
            for table, name in zip(arrow_tables, names, strict=True)
        ]
        creator = _settings(link_type, present)
        linker = Linker(frames[0] if len(frames) == 1 else frames, creator, log_level=None)
        sizes = [table.num_rows for table in arrow_tables]
        pairs = sizes[0] * (sizes[0] - 1) // 2 if len(sizes) == 1 else sizes[0] * sizes[1]
        _train(linker, present, settings, pairs)
        predictions = linker.inference.predict(
            threshold_match_probability=settings.threshold, warning_mode="never"
        )
        rows = predictions.as_record_list()
    finally:
        connection.close()
    comparison_columns = _comparison_columns(present)
    for row in rows:
        row["contributions"] = _contributions(row, comparison_columns)
    return rows


def _candidates(rows: Iterable[dict[str, Any]], *, linking: bool) -> list[DuplicateCandidate]:
    candidates = []
    for row in rows:
        left, right = str(row["id_l"]), str(row["id_r"])
        # Linking: the left table's record first. Deduplicating: the smaller id first.
        swap = row.get("source_dataset_l") == _RIGHT if linking else right < left
        if swap:
            left, right = right, left
        candidates.append(
            DuplicateCandidate(
                left_id=left,
                right_id=right,
                match_probability=float(row["match_probability"]),
                match_weight=float(row["match_weight"]),
                contributions=row["contributions"],
            )
        )
    candidates.sort(key=lambda c: (-c.match_probability, c.left_id, c.right_id))
    return candidates


def find_duplicates(
    records: Iterable[Mapping[str, Any]] | pa.Table,
    settings: MatchSettings | None = None,
) -> list[DuplicateCandidate]:
    """Pairs of records in one table that are likely the same person, best first.

    Each record is a mapping (or an Arrow table row) with a unique ``id`` and any of
    :data:`MATCH_FIELDS`. The model is trained on these records, then every candidate pair
    at or above ``settings.threshold`` is returned with the left id the smaller one.
    """
    settings = settings or MatchSettings()
    rows = _run([_rows(records)], "dedupe_only", settings)
    return _candidates(rows, linking=False)


def link_records(
    left: Iterable[Mapping[str, Any]] | pa.Table,
    right: Iterable[Mapping[str, Any]] | pa.Table,
    settings: MatchSettings | None = None,
) -> list[DuplicateCandidate]:
    """Pairs (a record of ``left``, a record of ``right``) that are likely the same person.

    Pairs inside one table are not compared. ``left_id`` is always the ``left`` record.
    """
    settings = settings or MatchSettings()
    rows = _run([_rows(left), _rows(right)], "link_only", settings)
    return _candidates(rows, linking=True)
