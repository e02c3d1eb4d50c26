"""Anomaly detection over audit and usage events, per token and per key.

Modest and honest (``docs/anomaly-detection.md``): each entity's windows are measured against
its own history with robust statistics (median and MAD of counts, failures and exports; its
hours of the day; its source addresses; its operation mix), and an IsolationForest trained
on the same history ranks how unlike the history a window is. A window becomes an
:class:`Anomaly` when both agree: the forest puts it among the outliers *and* a robust rule
says what is unusual, in words an operator can check. A source address the token never used
is a rule alone: the forest cannot learn from a feature that never varies in its history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from qrc.monitor.anomaly_features import (
    FEATURE_NAMES,
    Entity,
    Event,
    Profile,
    WindowStats,
    features,
    group_windows,
    new_sources,
)

__all__ = ["Anomaly", "AnomalyModel", "DetectorSettings", "NotTrained"]

# Robust rules: how far from its own history a window must be before it is called unusual.
# Each also needs a minimum count, so that "3 instead of 1" is never an alarm.
_Z_RATE, _MIN_RATE = 6.0, 20
_Z_FAILURES, _MIN_FAILURES, _MIN_FAILURE_RATIO = 4.0, 5, 0.3
_Z_EXPORTS, _MIN_EXPORTS = 5.0, 10
_HOUR_RARITY, _MIN_HOUR_COUNT = 3.0, 3
_MIN_HOUR_WINDOWS = 50  # fewer windows than this say too little about an entity's hours
_MIX_DISTANCE, _MIN_MIX_COUNT = 0.6, 10
_MAX_TRAINING_WINDOWS = 50_000

_NOUNS = {
    "decrypt": "decryptions",
    "encrypt": "encryptions",
    "sign": "signatures",
    "verify": "verifications",
    "datakey": "data-key requests",
    "rewrap": "rewraps",
    "tls.classical_tls_handshake": "classical TLS handshakes",
    "tls.tls_handshake_refused": "refused TLS handshakes",
    "auth.failure": "failed authentications",
}


class NotTrained(Exception):
    """The history is too short to learn from (fewer active windows than required)."""


@dataclass(frozen=True)
class DetectorSettings:
    """How the detector windows and judges (from ``QRC_ANOMALY_*``)."""

    window_seconds: float = 60.0
    contamination: float = 0.01
    """The share of history windows the forest calls outliers (its threshold)."""
    min_windows: int = 100
    random_state: int = 0


@dataclass(frozen=True)
class Anomaly:
    """An unusual window of one token or key, with what is unusual about it."""

    entity: Entity
    start: datetime
    window_seconds: float
    score: float
    """The forest's decision function: below 0 is an outlier; lower is stranger."""
    severity: str
    reasons: tuple[str, ...]
    explanation: str
    count: int
    failures: int
    key_ids: tuple[str, ...] = ()
    features: dict[str, float] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        """What the security event carries (JSON-ready)."""
        return {
            "explanation": self.explanation[:500],
            "entity_kind": self.entity.kind,
            "entity": self.entity.name[:200],
            "window_start": self.start.isoformat(),
            "window_seconds": self.window_seconds,
            "reasons": list(self.reasons),
            "count": self.count,
            "failures": self.failures,
            "score": round(self.score, 4),
            "features": {k: round(v, 3) for k, v in self.features.items()},
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the severity."""
        return {"severity": self.severity, **self.details(), "key_ids": list(self.key_ids)}


def _noun(operation: str, n: int) -> str:
    plural = _NOUNS.get(operation, operation + " events")
    return plural.removesuffix("s") if n == 1 else plural


def _describe_ops(window: WindowStats) -> str:
    top = window.operations.most_common(2)
    parts = [f"{n} {_noun(op, n)}" for op, n in top]
    rest = window.count - sum(n for _, n in top)
    if rest:
        parts.append(f"{rest} other")
    return ", ".join(parts)


def _reasons(window: WindowStats, profile: Profile, f: dict[str, float]) -> list[str]:
    reasons = []
    if window.count >= _MIN_RATE and f["z_count"] >= _Z_RATE:
        reasons.append("rate")
    if (
        window.failures >= _MIN_FAILURES
        and f["failure_ratio"] >= _MIN_FAILURE_RATIO
        and f["z_failures"] >= _Z_FAILURES
    ):
        reasons.append("failures")
    if window.exports >= _MIN_EXPORTS and f["z_exports"] >= _Z_EXPORTS:
        reasons.append("exports")
    if (
        window.count >= _MIN_HOUR_COUNT
        and f["hour_rarity"] >= _HOUR_RARITY
        and profile.known
        and profile.windows >= _MIN_HOUR_WINDOWS
    ):
        reasons.append("time_of_day")
    if window.count >= _MIN_MIX_COUNT and f["mix_distance"] >= _MIX_DISTANCE and profile.known:
        reasons.append("operation_mix")
    if f["new_sources"] > 0:
        reasons.append("new_source")
    return reasons


def _explain(
    window: WindowStats, profile: Profile, reasons: list[str], seconds: float, new: set[str]
) -> str:
    text = f"{window.entity.describe()}: {_describe_ops(window)} in {seconds:g} s"
    text += f", {round(100 * window.failures / window.count)}% failed"
    usual = "usual (service-wide)" if not profile.known else "usual"
    text += (
        f"; {usual} {profile.count_median:g} per {seconds:g} s, "
        f"{round(100 * profile.failure_share)}% failed"
    )
    if "time_of_day" in reasons:
        share = profile.hours[window.start.hour] / max(profile.events, 1)
        text += f"; at {window.start.hour:02d}:00 UTC, when it makes {100 * share:.1f}% of its uses"
    if "operation_mix" in reasons:
        usual_ops = sorted(profile.mix, key=lambda op: -profile.mix[op])[:2]
        text += f"; unusual operations (usually {', '.join(usual_ops)})"
    if new:
        text += f"; new source address {', '.join(sorted(new)[:3])}"
    return text


def _severity(reasons: list[str]) -> str:
    if "failures" in reasons or "exports" in reasons:
        return "high"
    return "medium"


class AnomalyModel:
    """Profiles of every token and key seen in the history, and a forest over their windows."""

    def __init__(
        self,
        settings: DetectorSettings,
        profiles: dict[Entity, Profile],
        fallback: Profile,
        forest: IsolationForest,
        *,
        trained_windows: int,
        trained_events: int,
        since: datetime | None,
        until: datetime | None,
    ) -> None:
        self.settings = settings
        self.profiles = profiles
        self.fallback = fallback
        self.forest = forest
        self.trained_windows = trained_windows
        self.trained_events = trained_events
        self.since, self.until = since, until

    @classmethod
    def train(cls, history: Iterable[Event], settings: DetectorSettings) -> AnomalyModel:
        """Learn from ``history`` (the service's own events).

        Raises:
            NotTrained: fewer than ``settings.min_windows`` active windows.
        """
        events = list(history)
        windows = group_windows(events, settings.window_seconds)
        if len(windows) < max(settings.min_windows, 2):
            raise NotTrained(
                f"{len(windows)} active windows of history; at least "
                f"{settings.min_windows} are needed to learn what is usual"
            )
        by_entity: dict[Entity, list[WindowStats]] = {}
        for window in windows:
            by_entity.setdefault(window.entity, []).append(window)
        profiles = {entity: Profile.of(ws) for entity, ws in by_entity.items()}
        fallback = Profile.of(windows, known=False)
        rng = np.random.default_rng(settings.random_state)
        sample = windows
        if len(windows) > _MAX_TRAINING_WINDOWS:
            picked = rng.choice(len(windows), _MAX_TRAINING_WINDOWS, replace=False)
            sample = [windows[i] for i in sorted(picked)]
        matrix = np.array(
            [_vector(features(w, profiles[w.entity])) for w in sample], dtype=np.float64
        )
        forest = IsolationForest(
            n_estimators=100,
            contamination=settings.contamination,
            random_state=settings.random_state,
        ).fit(matrix)
        return cls(
            settings,
            profiles,
            fallback,
            forest,
            trained_windows=len(windows),
            trained_events=len(events),
            since=min((e.at for e in events), default=None),
            until=max((e.at for e in events), default=None),
        )

    def profile(self, entity: Entity) -> Profile:
        """``entity``'s profile, or the service-wide one if it has no history."""
        return self.profiles.get(entity, self.fallback)

    def score(self, events: Iterable[Event]) -> list[Anomaly]:
        """The unusual windows among ``events``, oldest first.

        A new source address is reported once: the token's profile then holds it.
        """
        windows = group_windows(events, self.settings.window_seconds)
        if not windows:
            return []
        measured = [(w, self.profile(w.entity)) for w in windows]
        rows = [features(w, p) for w, p in measured]
        scores = self.forest.decision_function(np.array([_vector(r) for r in rows]))
        found = []
        for (window, profile), row, score in zip(measured, rows, scores, strict=True):
            # Read again, not from ``row``: an earlier window of this call may have reported it.
            new = new_sources(window, profile)
            row["new_sources"] = float(len(new))
            reasons = _reasons(window, profile, row)
            # Both must agree (the forest and a rule), except for a new source address.
            if not reasons or (score >= 0 and "new_source" not in reasons):
                continue
            # Reported once: from now on the address is one the token uses.
            profile.sources |= new
            seconds = self.settings.window_seconds
            found.append(
                Anomaly(
                    entity=window.entity,
                    start=window.start,
                    window_seconds=seconds,
                    score=float(score),
                    severity=_severity(reasons),
                    reasons=tuple(reasons),
                    explanation=_explain(window, profile, reasons, seconds, new),
                    count=window.count,
                    failures=window.failures,
                    key_ids=tuple(sorted({e.key_id for e in window.events if e.key_id})),
                    features=row,
                )
            )
        return found

    def summary(self) -> dict[str, Any]:
        """What was learnt: per entity, its usual numbers (JSON-ready)."""
        return {
            "window_seconds": self.settings.window_seconds,
            "contamination": self.settings.contamination,
            "trained_windows": self.trained_windows,
            "trained_events": self.trained_events,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "entities": [
                {"kind": e.kind, "name": e.name, **p.as_dict()}
                for e, p in sorted(self.profiles.items())
            ],
        }


def _vector(row: dict[str, float]) -> list[float]:
    return [row[name] for name in FEATURE_NAMES]
