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
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import Linker, SettingsCreator, block_on
from splink.backends.duckdb import DuckDBAPI
from splink.blocking_rule_library import CustomRule
from splink.internals.blocking_rule_creator import BlockingRuleCreator
from splink.internals.column_expression import ColumnExpression
from splink.internals.comparison_creator import ComparisonCreator
from splink.internals.comparison_level_creator import ComparisonLevelCreator
from splink.internals.constants import LEVEL_NOT_OBSERVED_TEXT
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
#: Fields scored inside the name comparison when the records have first and last names.
_IN_NAME: Final = NAME_FIELDS | {"name_kana"}
#: The comparison of street, postcode, city and region together, and those fields.
ADDRESS_COMPARISON: Final = "address"
ADDRESS_FIELDS: Final = frozenset({"postcode", "city", "region"})

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
    # Names, cities and regions repeat across a base: each distinct value is normalised once.
    memos: dict[str, dict[object, object]] = {field: {None: None} for field in MATCH_FIELDS}
    normalised: list[dict[str, list[object]]] = []
    for rows in tables:
        ids = [row.get("id") for row in rows]
        if any(value is None for value in ids):
            raise MatchingError("every record needs an 'id'")
        columns: dict[str, list[object]] = {"id": [str(value) for value in ids]}
        if len(set(columns["id"])) != len(columns["id"]):
            raise MatchingError("record ids must be unique within a table")
        for field in MATCH_FIELDS:
            normalise, memo = normalisers[field], memos[field]
            values: list[object] = []
            for row in rows:
                raw = row.get(field)
                try:
                    value = memo[raw]
                except KeyError:
                    value = memo[raw] = normalise(raw)
                except TypeError:  # an unhashable value: normalised without the memo
                    value = normalise(raw)
                values.append(value)
            columns[field] = values
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


class _PersonName(ComparisonCreator):
    """First and last name, with the reading (kana) as levels of the same comparison.

    A reading follows from the written name almost always, so two records with one name
    nearly always share the reading too: scored as two comparisons, one agreement would
    count twice. Here the reading speaks only where the written names differ (another
    kanji for the same name, a typo in one of them). Swapped first and last names, common
    when Japanese names are entered in either order, have a level of their own.
    """

    def __init__(self, *, reading: bool) -> None:
        columns: dict[str, str | ColumnExpression] = {
            "forename": "first_name",
            "surname": "last_name",
            "full": "full_name",
        }
        if reading:
            columns["reading"] = "name_kana"
        super().__init__(columns)

    def create_comparison_levels(self) -> list[ComparisonLevelCreator]:
        first = self.col_expressions["forename"]
        last = self.col_expressions["surname"]
        full = self.col_expressions["full"]
        reading = self.col_expressions.get("reading")
        nothing: ComparisonLevelCreator = cll.And(cll.NullLevel(first), cll.NullLevel(last))
        if reading is not None:
            nothing = cll.And(nothing, cll.NullLevel(reading))
        # Starting m values (how often one person's two records fall at each level), kept
        # when no EM session trains the names (only a date-of-birth block does): a typo or
        # another spelling is uncommon, a different name rarer still.
        levels: list[ComparisonLevelCreator] = [
            nothing,
            # A shared common name says less than a shared rare one.
            cll.ExactMatchLevel(full).configure(
                tf_adjustment_column="full_name", m_probability=0.8
            ),
            cll.ColumnsReversedLevel(first, last, symmetrical=True).configure(m_probability=0.02),
        ]
        levels.extend(
            cll.And(
                cll.JaroWinklerLevel(first, threshold), cll.JaroWinklerLevel(last, threshold)
            ).configure(m_probability=m)
            for threshold, m in ((0.92, 0.08), (0.88, 0.03))
        )
        if reading is not None:
            levels.append(
                cll.ExactMatchLevel(reading).configure(
                    tf_adjustment_column="name_kana", m_probability=0.03
                )
            )
            levels.append(cll.JaroWinklerLevel(reading, 0.92).configure(m_probability=0.01))
        levels.append(
            cll.ExactMatchLevel(last).configure(
                tf_adjustment_column="last_name", m_probability=0.01
            )
        )
        levels.append(
            cll.ExactMatchLevel(first).configure(
                tf_adjustment_column="first_name", m_probability=0.005
            )
        )
        levels.append(cll.ElseLevel().configure(m_probability=0.005))
        return levels

    def create_output_column_name(self) -> str:
        return NAME_COMPARISON


class _Email(ComparisonCreator):
    """E-mail addresses: the same address, the same user name, a similar user name.

    Splink's e-mail comparison also has a level for similar whole addresses, which two
    colleagues' addresses reach through their shared company domain alone; it is left out.
    """

    def __init__(self) -> None:
        super().__init__("email")

    def create_comparison_levels(self) -> list[ComparisonLevelCreator]:
        email = self.col_expression
        user = email.regex_extract("^[^@]+")
        return [
            cll.NullLevel(email),
            cll.ExactMatchLevel(email).configure(label_for_charts="Exact match on email"),
            cll.ExactMatchLevel(user).configure(label_for_charts="Exact match on username"),
            cll.JaroWinklerLevel(user, 0.88).configure(
                label_for_charts="Jaro-Winkler >0.88 on username"
            ),
            cll.ElseLevel(),
        ]

    def create_output_column_name(self) -> str:
        return "email"


class _Address(ComparisonCreator):
    """Street, postcode, city and region as one comparison.

    They describe one place: two records at one address agree on all four, and scored as
    four comparisons the one agreement counted four times. That made colleagues at their
    company's address (or a family at home) look like one person whatever their names.
    """

    def __init__(self, fields: Sequence[str]) -> None:
        super().__init__({field: field for field in fields})

    def create_comparison_levels(self) -> list[ComparisonLevelCreator]:
        col = self.col_expressions
        street, postcode = col.get("street"), col.get("postcode")
        city, region = col.get("city"), col.get("region")
        levels: list[ComparisonLevelCreator] = [
            cll.And(*(cll.NullLevel(expression) for expression in col.values()))
        ]
        if street is not None and postcode is not None:
            levels.append(
                cll.And(cll.ExactMatchLevel(street), cll.ExactMatchLevel(postcode)).configure(
                    tf_adjustment_column="street"
                )
            )
        if street is not None:
            near: list[ComparisonLevelCreator] = [cll.JaroWinklerLevel(street, 0.9)]
            same_area = [cll.ExactMatchLevel(c) for c in (postcode, city) if c is not None]
            if same_area:
                near.append(cll.Or(*same_area) if len(same_area) > 1 else same_area[0])
            levels.append(cll.And(*near) if len(near) > 1 else near[0])
            levels.append(cll.ExactMatchLevel(street).configure(tf_adjustment_column="street"))
        if postcode is not None:
            levels.append(cll.ExactMatchLevel(postcode).configure(tf_adjustment_column="postcode"))
            levels.append(cll.LevenshteinLevel(postcode, 1))
        if city is not None:
            levels.append(cll.ExactMatchLevel(city).configure(tf_adjustment_column="city"))
        if region is not None:
            levels.append(cll.ExactMatchLevel(region).configure(tf_adjustment_column="region"))
        levels.append(cll.ElseLevel())
        return levels

    def create_output_column_name(self) -> str:
        return ADDRESS_COMPARISON


def _comparisons(present: Sequence[str]) -> list[ComparisonCreator]:
    """One comparison per field (names and reading together), each with graded levels."""
    has = set(present)
    comparisons: list[ComparisonCreator] = []
    names_together = {"first_name", "last_name"} <= has
    if names_together:
        comparisons.append(_PersonName(reading="name_kana" in has))
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
        "email": _Email(),
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
    skip = {"name_kana"} if names_together else set()
    address = [field for field in ADDRESS_FIELDS if field in has]
    if address:
        comparisons.append(_Address(address))
        skip |= ADDRESS_FIELDS
    comparisons.extend(graded[field] for field in present if field in graded and field not in skip)
    return comparisons


#: Candidate-generating rules as the fields they need equal; a pair is scored when any
#: rule whose fields are present admits it. Pairs of fields keep blocks small on large bases;
#: a rule whose blocks grow with the base (a family name in a city holds thousands of
#: people in a million contacts) would make the scan quadratic, so none such is here.
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
    ("last_name", "street"),
    ("first_name", "street"),
    ("street", "postcode"),
    ("street", "city"),
    ("last_name", "company"),
)

#: Rules for expectation-maximisation, in order of preference; each leaves the fields it
#: blocks on to the other session. The first :data:`_EM_SESSIONS` that train are used. No
#: rule blocks on an address, a company or a phone number: colleagues share those, and EM
#: would learn "colleague" instead of "same person". Without a date of birth the names keep
#: their starting m values (see ``_PersonName``).
_TRAINING_BLOCKS: Final = (
    ("first_name", "last_name"),
    ("date_of_birth",),
)
_EM_SESSIONS: Final = 2
#: The least m probability a level keeps after training (see :func:`_floor_m`).
_M_FLOOR: Final = 1e-3

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
    _bound_unseen_u(linker, min(settings.u_max_pairs, pairs))
    # Two sessions, each leaving the fields it blocks on to the other. A block that finds
    # no pairs, or that EM cannot train on, gives way to the next one.
    trained = 0
    for fields in _blocks(_TRAINING_BLOCKS, present):
        if trained == _EM_SESSIONS:
            break
        trained += _expectation_maximisation(linker, fields)
    _floor_m(linker)


def _bound_unseen_u(linker: Linker, sampled: float) -> None:
    """Give levels that no random pair reached the u probability the sample can vouch for.

    Two random contacts practically never share a phone number or an e-mail user name, so
    the random sample holds no such pair and Splink falls back to a generic default u (about
    1 in 1,000), which makes an exact phone match count for less than a shared full name.
    Not seen in ``sampled`` random pairs means a u of at most about ``1 / sampled``.
    """
    bound = 1 / max(sampled, 1.0)
    for comparison in linker._settings_obj.comparisons:
        for level in comparison.comparison_levels:
            if level.is_null_level or level._is_else_level:
                continue
            if level._u_probability in (None, LEVEL_NOT_OBSERVED_TEXT):
                level.u_probability = bound


def _floor_m(linker: Linker) -> None:
    """Keep every trained m probability at or above :data:`_M_FLOOR`.

    EM drives the m of a level it saw no duplicate reach towards zero (1e-50 and below),
    which would make a pair at that level impossible whatever else agrees: one typo in a
    field the training duplicates never had wrong would hide a real duplicate. At the floor
    such a level still counts strongly against a match, but not infinitely.
    """
    for comparison in linker._settings_obj.comparisons:
        for level in comparison.comparison_levels:
            if level.is_null_level:
                continue
            m = level.m_probability
            if m is not None and m < _M_FLOOR:
                level.m_probability = _M_FLOOR


def _expectation_maximisation(linker: Linker, fields: tuple[str, ...]) -> bool:
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
        return True
    except (ValueError, EMTrainingException) as error:
        # EMTrainingException: the block admits no pair at all, as blocking on email does on
        # a CRM's contacts, whose addresses are unique.
        linker._settings_obj.core_model_settings = before
        logger.warning("EM blocked on %s skipped: %s", ", ".join(fields), error)
        return False


def _contributions(row: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, float]:
    """Each comparison's match weight, its term-frequency adjustment included."""
    return {
        name: float(row.get(f"mw_{column}") or 0.0) + float(row.get(f"mw_tf_adj_{column}") or 0.0)
        for name, column in columns.items()
    }


def _comparison_columns(present: Sequence[str]) -> dict[str, str]:
    """Reported comparison name -> Splink's output column name for it."""
    together = {"first_name", "last_name"} <= set(present)
    columns = {NAME_COMPARISON: NAME_COMPARISON} if together else {}
    if ADDRESS_FIELDS & set(present):
        columns[ADDRESS_COMPARISON] = ADDRESS_COMPARISON
    columns.update(
        {
            field: field
            for field in present
            if field not in ADDRESS_FIELDS and not (together and field in _IN_NAME)
        }
    )
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
