"""Canary prompts: does the server behind a judge URL still answer as its cached answers say?

The judge cache keys an answer by prompt, model name, decoding settings and server URL
(``base_url``). A server that swaps its weights (or quantisation, or chat template) under
the same URL and model name cannot be told apart by those keys, so the cache would go on
answering with the old server's readings beside the new server's fresh ones. With
``judge.canaries: N`` (openai backend; default 0, off) a judge job first sends up to N of
its prompts whose answers are cached to the server again, bypassing the cache and storing
nothing, and compares the fresh first-token stance reading with the cached one
(``compare_canaries``); when they differ by more than ``judge.canary_tolerance`` the job
fails with ``CanaryMismatchError`` before any cached answer is used.

What it cannot see: a change that leaves the canaries' stance readings within the
tolerance (e.g. a change confined to other prompts, or below the tolerance), two answers
that are both unreadable (they agree: there is no stance to compare), and anything when no
prompt of the job is cached (then there is nothing to compare and the check is skipped,
recorded as such). It costs up to N extra requests per judge job.

Pure functions here (no I/O); ``openai_backend.OpenAIJudge`` sends the canaries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from value_drifts.core.config import section_with_defaults
from value_drifts.judge.stance import read_stance

# Why a job sent no canary, as its counts record it.
NOTHING_CACHED = "no prompt of this job is cached: nothing to compare"
SWITCHED_OFF = "judge.canaries is 0"


class CanaryCheckError(RuntimeError):
    """The canary check failed; ``outcome`` is ``CanaryOutcome.as_dict()``."""

    def __init__(self, message: str, outcome: Mapping[str, Any]):
        super().__init__(message)
        self.outcome = dict(outcome)


class CanaryMismatchError(CanaryCheckError):
    """The server answered a canary prompt differently from the answer cached for it."""


class CanaryUnansweredError(CanaryCheckError):
    """The server gave no answer to a canary after all retries: the check could not run."""


@dataclass(frozen=True)
class CanarySettings:
    """``count``: canaries per judge job (0: off); ``tolerance``: the largest total-
    variation distance in (0, 1] still counted as equal; ``min_label_mass``: the
    reader's threshold for a readable answer (``stance.read_stance``)."""

    count: int
    tolerance: float
    min_label_mass: float

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"judge.canaries must be at least 0, not {self.count}")
        if not 0 < self.tolerance <= 1:
            raise ValueError(f"judge.canary_tolerance must be in (0, 1], not {self.tolerance}")

    @classmethod
    def from_judge(cls, judge: Mapping[str, Any]) -> CanarySettings:
        """From a judge config section; absent keys take the schema's defaults."""
        filled = section_with_defaults("judge", judge)
        return cls(
            count=int(filled["canaries"]),
            tolerance=float(filled["canary_tolerance"]),
            min_label_mass=float(filled["min_label_mass"]),
        )


def pick_canaries(
    keys: Sequence[str], prompts: Sequence[str], cached: Mapping[str, Any], count: int
) -> dict[str, str]:
    """Key -> prompt of the first ``count`` distinct requests in prompt order whose answer
    is in ``cached`` (a mapping keyed by request key); fewer when fewer are cached.
    Deterministic: the same job picks the same canaries every time it runs."""
    picked: dict[str, str] = {}
    for key, prompt in zip(keys, prompts, strict=True):
        if len(picked) >= count:
            break
        if key in cached and key not in picked:
            picked[key] = prompt
    return picked


def stance_distance(
    cached_top: Mapping[str, float], fresh_top: Mapping[str, float], min_label_mass: float
) -> tuple[float, bool]:
    """``(distance, differs_in_readability)`` of two first-token ``{token: logprob}`` lists.

    The distance is the total variation between the two (support, neutral, oppose)
    readings of ``read_stance``: half their L1 distance, a probability in [0, 1]. When one
    answer is readable and the other is not, the distance is 1.0 and the second value is
    True: such a pair always counts as different, whatever the tolerance. Two unreadable
    answers have no stance to compare: distance 0.0, not different.
    """
    old = read_stance(cached_top, min_label_mass=min_label_mass)
    new = read_stance(fresh_top, min_label_mass=min_label_mass)
    if old.readable != new.readable:
        return 1.0, True
    if not old.readable:
        return 0.0, False
    l1 = sum(abs(p - q) for p, q in zip(old.probabilities, new.probabilities, strict=True))
    return 0.5 * l1, False


@dataclass(frozen=True)
class CanaryOutcome:
    """What a job's canary check found (``as_dict`` goes to ``judge_counts.json``).

    ``requested``: judge.canaries; ``sent``: canaries picked and sent (cached prompts,
    at most ``requested``); ``answered``: those the server answered; ``differed``: answered
    canaries whose reading differs (distance above ``tolerance``, or readability changed);
    ``max_distance``: the largest total-variation distance (None when none was compared);
    ``requests_sent``: HTTP requests the canaries took, retries included; ``skipped``: why
    no canary was sent, else None.
    """

    requested: int
    sent: int
    answered: int
    differed: int
    max_distance: float | None
    tolerance: float
    requests_sent: int = 0
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "sent": self.sent,
            "answered": self.answered,
            "differed": self.differed,
            "max_distance": self.max_distance,
            "tolerance": self.tolerance,
            "requests_sent": self.requests_sent,
            "skipped": self.skipped,
        }


def skipped_outcome(settings: CanarySettings, why: str) -> CanaryOutcome:
    """The outcome of a job that sent no canary, saying ``why``."""
    return CanaryOutcome(requested=settings.count, sent=0, answered=0, differed=0,
                         max_distance=None, tolerance=settings.tolerance, skipped=why)


def canary_counts(
    settings: CanarySettings, outcome: CanaryOutcome | None, backend: str
) -> dict[str, Any]:
    """What a judge job records under ``canaries`` in its counts: ``outcome.as_dict()``,
    or a skipped outcome saying why none was sent (switched off; ``outcome`` None: the
    ``backend`` sends no canaries, only ``openai`` does)."""
    if settings.count == 0:
        return skipped_outcome(settings, SWITCHED_OFF).as_dict()
    if outcome is None:
        return skipped_outcome(settings, unsupported(backend)).as_dict()
    return outcome.as_dict()


def unsupported(backend: str) -> str:
    """Why a ``backend`` other than ``openai`` sends no canary."""
    return (f"the {backend} backend sends no canaries (only the openai backend does): "
            "nothing was checked")


def compare_canaries(
    pairs: Sequence[tuple[Mapping[str, float], Mapping[str, float] | None]],
    settings: CanarySettings,
    requests_sent: int = 0,
) -> CanaryOutcome:
    """Compare each canary's ``(cached top list, fresh top list)``; a fresh list of None
    is a canary the server did not answer (sent, not answered, not compared).

    No pair at all is the skipped outcome ``NOTHING_CACHED``.
    """
    if not pairs:
        return skipped_outcome(settings, NOTHING_CACHED)
    distances, differed = [], 0
    for cached_top, fresh_top in pairs:
        if fresh_top is None:
            continue
        distance, readability_changed = stance_distance(
            cached_top, fresh_top, settings.min_label_mass
        )
        distances.append(distance)
        differed += readability_changed or distance > settings.tolerance
    return CanaryOutcome(
        requested=settings.count,
        sent=len(pairs),
        answered=len(distances),
        differed=differed,
        max_distance=max(distances) if distances else None,
        tolerance=settings.tolerance,
        requests_sent=requests_sent,
    )


def _server(base_url: str | None) -> str:
    return base_url if base_url else "the provider's default URL"


def canary_error(
    outcome: CanaryOutcome, base_url: str | None, model: str, cache_path: str
) -> CanaryCheckError | None:
    """The error a job must fail with, or None when the canaries passed or were skipped.

    A mismatch (``differed`` > 0) is a ``CanaryMismatchError`` naming the server, the
    model, how many canaries differed and the largest distance; a canary left unanswered
    is a ``CanaryUnansweredError`` (the check could not be made). Both say what to do.
    """
    server = _server(base_url)
    off = "or set judge.canaries: 0 to skip this check"
    if outcome.differed:
        largest = outcome.max_distance if outcome.max_distance is not None else math.nan
        message = (
            f"judge canaries: {outcome.differed} of {outcome.answered} canary prompts were "
            f"answered differently by the judge server at {server} (model {model!r}) than "
            f"the answers cached for that server and model (largest stance distance "
            f"{largest:.4f}, total variation; judge.canary_tolerance = "
            f"{outcome.tolerance:g}; a readable answer turning unreadable or back counts "
            "as 1). The server behind this URL has most likely changed (weights, "
            "quantisation or chat template) since its answers were cached, so cached and "
            "fresh answers would come from two judges. To judge everything again with "
            f"this server, point judge.cache at a new file (or move {cache_path} away) and "
            "rerun every judge job (snakemake --forcerun judge, or judge_run with "
            "judge.one_job_per_run); if the cached answers are the ones you want, point "
            "base_url back at the server that gave them; "
            f"{off} and keep the cached answers as they are."
        )
        return CanaryMismatchError(message, outcome.as_dict())
    unanswered = outcome.sent - outcome.answered
    if unanswered:
        message = (
            f"judge canaries: the judge server at {server} (model {model!r}) answered "
            f"{outcome.answered} of {outcome.sent} canary prompts after all retries, so "
            "whether it still answers as its cached answers say could not be checked (the "
            f"job's log names each failure). Rerun once the server answers, {off}."
        )
        return CanaryUnansweredError(message, outcome.as_dict())
    return None
