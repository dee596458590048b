"""A user's behavioural profile (the online feature store's record) and how a session updates it.

Kept small and bounded: running statistics (count, mean, M2 after Welford) instead of
history, the most used devices and coarse places only. Serialized as JSON by the store.
Version 2 adds the typing rhythm, touch and habit statistics of `rased.features.session`;
a version-1 record reads as a profile without them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rased.features.session import SessionActivity
from rased.features.trajectory import FloatArray
from rased.scoring.evidence import Evidence

# Most devices and places a profile remembers (the least used are forgotten first).
MAX_DEVICES = 16
MAX_PLACES = 32
# A session needs this many events before its timings count for the profile.
MIN_POINTER_EVENTS = 20
MIN_KEYSTROKES = 5
# Places are cells of this many degrees (about 11 km at the equator): coarse on purpose.
CELL_DEGREES = 0.1


@dataclass(frozen=True)
class RunningStats:
    """Count, mean and sum of squared deviations (Welford) of a vector of values."""

    count: int
    mean: tuple[float, ...]
    m2: tuple[float, ...]

    @staticmethod
    def empty(size: int) -> RunningStats:
        """Return the statistics of no observation."""
        return RunningStats(0, (0.0,) * size, (0.0,) * size)

    def add(self, values: FloatArray) -> RunningStats:
        """Return the statistics with one more observation."""
        count = self.count + 1
        mean = np.asarray(self.mean)
        delta = values - mean
        mean = mean + delta / count
        m2 = np.asarray(self.m2) + delta * (values - mean)
        return RunningStats(count, tuple(map(float, mean)), tuple(map(float, m2)))

    def std(self) -> FloatArray:
        """Return the sample standard deviation (0 below two observations)."""
        if self.count < 2:
            return np.zeros(len(self.mean))
        variance: FloatArray = np.asarray(self.m2, dtype=np.float64) / (self.count - 1)
        return np.sqrt(variance)


@dataclass(frozen=True)
class LastPlace:
    """Where and when (epoch ms) the user was last seen."""

    latitude: float
    longitude: float
    at_ms: int


@dataclass(frozen=True)
class UserProfile:
    """What the store knows of one user of one organization."""

    sessions: int = 0
    devices: dict[str, int] = field(default_factory=dict)  # fingerprint hash -> sessions
    countries: dict[str, int] = field(default_factory=dict)  # ISO code -> sessions
    places: dict[str, int] = field(default_factory=dict)  # cell key -> sessions
    last_place: LastPlace | None = None
    typing: RunningStats = field(default_factory=lambda: RunningStats.empty(2))
    pointer: RunningStats | None = None
    rhythm: RunningStats | None = None  # rased.features.session.RHYTHM_NAMES
    touch: RunningStats | None = None  # TOUCH_NAMES
    habits: RunningStats | None = None  # HABIT_NAMES

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "v": 2,
            "sessions": self.sessions,
            "devices": self.devices,
            "countries": self.countries,
            "places": self.places,
            "last_place": None
            if self.last_place is None
            else [self.last_place.latitude, self.last_place.longitude, self.last_place.at_ms],
            "typing": _stats_json(self.typing),
            "pointer": None if self.pointer is None else _stats_json(self.pointer),
            "rhythm": None if self.rhythm is None else _stats_json(self.rhythm),
            "touch": None if self.touch is None else _stats_json(self.touch),
            "habits": None if self.habits is None else _stats_json(self.habits),
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> UserProfile:
        """Return the profile of a dict made by `to_json`."""
        last = data.get("last_place")
        pointer = data.get("pointer")
        return UserProfile(
            sessions=int(data.get("sessions", 0)),
            devices={str(k): int(v) for k, v in data.get("devices", {}).items()},
            countries={str(k): int(v) for k, v in data.get("countries", {}).items()},
            places={str(k): int(v) for k, v in data.get("places", {}).items()},
            last_place=None
            if last is None
            else LastPlace(float(last[0]), float(last[1]), int(last[2])),
            typing=_stats_from(data["typing"]) if data.get("typing") else RunningStats.empty(2),
            pointer=None if pointer is None else _stats_from(pointer),
            rhythm=_optional_stats(data.get("rhythm")),
            touch=_optional_stats(data.get("touch")),
            habits=_optional_stats(data.get("habits")),
        )


def _stats_json(stats: RunningStats) -> list[Any]:
    return [stats.count, list(stats.mean), list(stats.m2)]


def _stats_from(data: list[Any]) -> RunningStats:
    return RunningStats(int(data[0]), tuple(map(float, data[1])), tuple(map(float, data[2])))


def _optional_stats(data: list[Any] | None) -> RunningStats | None:
    return None if data is None else _stats_from(data)


def place_cell(latitude: float, longitude: float) -> str:
    """Return the coarse cell key of a position."""
    return f"{math.floor(latitude / CELL_DEGREES)}:{math.floor(longitude / CELL_DEGREES)}"


def cell_centre(cell: str) -> tuple[float, float]:
    """Return the centre (lat, lon) of a cell key."""
    lat, lon = (int(part) for part in cell.split(":"))
    return ((lat + 0.5) * CELL_DEGREES, (lon + 0.5) * CELL_DEGREES)


def typing_summary(evidence: Evidence) -> FloatArray | None:
    """Return (median hold, median flight) in ms, or None with too few keystrokes."""
    if evidence.keystrokes < MIN_KEYSTROKES or evidence.flight_times_ms.size == 0:
        return None
    return np.array(
        [float(np.median(evidence.hold_times_ms)), float(np.median(evidence.flight_times_ms))]
    )


def _bump(counts: dict[str, int], key: str, limit: int) -> dict[str, int]:
    updated = dict(counts)
    updated[key] = updated.get(key, 0) + 1
    if len(updated) > limit:
        # Forget the least used (the oldest among equals: dicts keep insertion order).
        del updated[min(updated, key=lambda k: updated[k])]
    return updated


def _added(stats: RunningStats | None, values: FloatArray) -> RunningStats:
    return (stats or RunningStats.empty(values.size)).add(values)


def updated_profile(
    profile: UserProfile, evidence: Evidence, activity: SessionActivity | None = None
) -> UserProfile:
    """Return the profile after one more session with this evidence (and activity)."""
    new = replace(profile, sessions=profile.sessions + 1)
    if evidence.device is not None and evidence.device.fingerprint_hash:
        new = replace(
            new, devices=_bump(new.devices, evidence.device.fingerprint_hash, MAX_DEVICES)
        )
    place = evidence.place
    if place is not None:
        if place.country_code:
            new = replace(new, countries=_bump(new.countries, place.country_code, MAX_PLACES))
        cell = place_cell(place.latitude, place.longitude)
        new = replace(
            new,
            places=_bump(new.places, cell, MAX_PLACES),
            last_place=LastPlace(place.latitude, place.longitude, place.at_ms),
        )
    typing = typing_summary(evidence)
    if typing is not None:
        new = replace(new, typing=new.typing.add(typing))
    if evidence.pointer_events >= MIN_POINTER_EVENTS:
        stats = new.pointer or RunningStats.empty(evidence.pointer_features.size)
        new = replace(new, pointer=stats.add(evidence.pointer_features))
    if activity is not None:
        if activity.rhythm is not None:
            new = replace(new, rhythm=_added(new.rhythm, activity.rhythm))
        if activity.touch is not None:
            new = replace(new, touch=_added(new.touch, activity.touch))
        new = replace(new, habits=_added(new.habits, activity.habits))
    return new
