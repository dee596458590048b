"""What one compiled transaction shows: pointer features, typing timings, devices, places.

Pointer features and typing timings come from the shared `rased.features` module (what
training reads too); the rest are plain summaries the interim rules in
`rased.scoring.rules` read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rased.features.adapters import from_event_batches
from rased.features.keystroke import hold_and_flight_times
from rased.features.pointer import pointer_and_bot_features
from rased.features.trajectory import FloatArray
from rased.v1 import events_pb2, pipeline_pb2


@dataclass(frozen=True)
class DeviceEvidence:
    """The device the transaction's events describe (its last DeviceInfo)."""

    fingerprint_hash: str
    webdriver: bool
    headless_hints: bool


@dataclass(frozen=True)
class PlaceEvidence:
    """Where the transaction happened (its last LocationInfo) and when, in epoch ms."""

    latitude: float
    longitude: float
    country_code: str
    at_ms: int


@dataclass(frozen=True)
class Evidence:
    """Everything the scores of one transaction are computed from."""

    pointer_events: int
    pointer_features: FloatArray  # POINTER_FEATURE_NAMES: profiles compare these
    bot_features: FloatArray  # BOT_FEATURE_NAMES: bot_detection's input
    hold_times_ms: FloatArray
    flight_times_ms: FloatArray
    device: DeviceEvidence | None
    place: PlaceEvidence | None

    @property
    def keystrokes(self) -> int:
        """Number of completed key presses (a down with its up)."""
        return int(self.hold_times_ms.size)


def _events(batches: Iterable[events_pb2.EventBatch]) -> list[events_pb2.Event]:
    ordered = sorted(batches, key=lambda b: b.sequence)
    events = [event for batch in ordered for event in batch.events]
    # Stable: events of the same millisecond keep their compiled order.
    return sorted(events, key=lambda e: e.timestamp_ms)


def gather_evidence(compiled: pipeline_pb2.CompiledTransaction) -> Evidence:
    """Return the evidence of one compiled transaction."""
    events = _events(compiled.batches)
    trajectory = from_event_batches(compiled.batches)
    holds, flights = hold_and_flight_times(events)
    pointer, bot = pointer_and_bot_features(trajectory)
    device: DeviceEvidence | None = None
    place: PlaceEvidence | None = None
    for event in events:
        kind = event.WhichOneof("kind")
        if kind == "device":
            info = event.device
            device = DeviceEvidence(
                info.fingerprint_hash.lower(), info.webdriver, info.headless_hints
            )
        elif kind == "location":
            loc = event.location
            place = PlaceEvidence(loc.latitude, loc.longitude, loc.country_code, event.timestamp_ms)
    return Evidence(
        pointer_events=int(trajectory.t_ms.size),
        pointer_features=pointer,
        bot_features=bot,
        hold_times_ms=holds,
        flight_times_ms=flights,
        device=device,
        place=place,
    )
