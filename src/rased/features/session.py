"""What a session's non-pointer events show: typing rhythm, touch, device details, habits.

Pure numpy over the SDK's `Event` messages, shared by training and the scoring worker.
Pointer dynamics live in `rased.features.pointer`; the comparison of all of it with the
user's profile in `rased.features.profile_comparison`.

Each summary is a short vector of quantities that stay comparable from one session of the
same person to the next (log times, spreads, rates), so a profile can keep running
statistics of them: a session whose summary lies many standard deviations from the
user's usual one was probably not typed, touched or navigated by that user.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from rased.features.trajectory import FloatArray
from rased.v1 import events_pb2

# Below this many keys (or key-to-key latencies) a session's rhythm is not summarised.
MIN_RHYTHM_KEYS = 5
# A key-to-key latency longer than this is a pause (thinking, reading), not typing rhythm.
MAX_LATENCY_MS = 2000.0
# Touch strokes with fewer moves than this are taps, not swipes.
MIN_SWIPE_EVENTS = 4
# Touch force that varies less than this over a session is a synthetic touch (people's
# pressure varies with every contact; an injected touch reports a constant, often 1.0).
CONSTANT_FORCE_SD = 1e-3
MIN_FORCE_SAMPLES = 5

# Names of the summary vectors' entries, in order (the profile keeps statistics of them).
RHYTHM_NAMES = ("log_hold_ms", "log_latency_ms", "hold_spread", "latency_spread")
TOUCH_NAMES = ("force", "log_radius_px", "log_swipe_speed", "swipe_bend")
HABIT_NAMES = ("log_think_ms", "log_duration_ms", "pages", "focus_per_field")


@dataclass(frozen=True)
class DeviceDetails:
    """The last DeviceInfo of a session, reduced to what a fingerprint check reads."""

    fingerprint_hash: str
    webdriver: bool
    headless: bool  # headless hints, or a user agent that names a headless browser
    inconsistencies: int  # attributes that contradict each other (see `device_details`)


@dataclass(frozen=True)
class SessionActivity:
    """Summaries of one session's keystrokes, touches, navigation and form events."""

    keystrokes: int
    rhythm: FloatArray | None  # RHYTHM_NAMES, None below MIN_RHYTHM_KEYS
    latency_cv: float | None  # key-to-key regularity (scripts type at a fixed cadence)
    touch_events: int
    touch: FloatArray | None  # TOUCH_NAMES, None without a swipe
    constant_force: bool  # many touch events, all with the same force
    habits: FloatArray  # HABIT_NAMES
    pastes: int
    pasted_chars: int
    hidden: int  # times the page was hidden (tab or app switched)
    device: DeviceDetails | None

    @property
    def pasted_fraction(self) -> float:
        """Share of entered characters that were pasted rather than typed (0 without input)."""
        total = self.pasted_chars + self.keystrokes
        return self.pasted_chars / total if total else 0.0


def ordered_events(batches: Iterable[events_pb2.EventBatch]) -> list[events_pb2.Event]:
    """Return a transaction's events in time order (batches by sequence; stable within)."""
    ordered = sorted(batches, key=lambda b: b.sequence)
    events = [event for batch in ordered for event in batch.events]
    return sorted(events, key=lambda e: e.timestamp_ms)


def _spread(values: FloatArray) -> float:
    """Return a robust relative spread: median absolute deviation over the median."""
    median = float(np.median(values))
    if median <= 0:
        return 0.0
    return float(np.median(np.abs(values - median)) / median)


def _rhythm(events: list[events_pb2.Event]) -> tuple[int, FloatArray | None, float | None]:
    """Return (keys, rhythm summary, latency CV) of the key events (down-down latencies)."""
    down_at: dict[int, int] = {}
    holds: list[float] = []
    downs: list[int] = []
    for event in events:
        if event.WhichOneof("kind") != "keystroke":
            continue
        key = event.keystroke
        if key.action == events_pb2.KEY_ACTION_DOWN:
            down_at[key.key_id] = event.timestamp_ms
            downs.append(event.timestamp_ms)
        elif key.action == events_pb2.KEY_ACTION_UP and key.key_id in down_at:
            holds.append(float(event.timestamp_ms - down_at.pop(key.key_id)))
    latencies = np.diff(np.asarray(downs, dtype=np.float64))
    latencies = latencies[(latencies > 0) & (latencies <= MAX_LATENCY_MS)]
    hold = np.asarray(holds, dtype=np.float64)
    hold = hold[hold > 0]
    if hold.size < MIN_RHYTHM_KEYS or latencies.size < MIN_RHYTHM_KEYS - 1:
        return len(holds), None, None
    rhythm = np.array(
        [
            math.log(float(np.median(hold))),
            math.log(float(np.median(latencies))),
            _spread(hold),
            _spread(latencies),
        ]
    )
    cv = float(np.std(latencies) / np.mean(latencies))
    return len(holds), rhythm, cv


def _touch(events: list[events_pb2.Event]) -> tuple[int, FloatArray | None, bool]:
    """Return (touch events, touch summary of the swipes, constant force)."""
    strokes: dict[int, list[tuple[int, float, float]]] = {}
    forces: list[float] = []
    radii: list[float] = []
    count = 0
    swipes: list[tuple[float, float]] = []  # (speed px/ms, bend)
    for event in events:
        if event.WhichOneof("kind") != "touch":
            continue
        touch = event.touch
        count += 1
        forces.append(float(touch.force))
        radii.append(float(touch.radius))
        points = strokes.setdefault(touch.touch_id, [])
        if touch.action == events_pb2.TOUCH_ACTION_START:
            points.clear()
        points.append((event.timestamp_ms, touch.x, touch.y))
        if touch.action in (events_pb2.TOUCH_ACTION_END, events_pb2.TOUCH_ACTION_CANCEL):
            if len(points) >= MIN_SWIPE_EVENTS:
                swipes.append(_swipe(points))
            points.clear()
    constant = len(forces) >= MIN_FORCE_SAMPLES and float(np.std(forces)) < CONSTANT_FORCE_SD
    if not swipes:
        return count, None, constant
    speed, bend = np.asarray(swipes).mean(axis=0)
    summary = np.array(
        [
            float(np.mean(forces)),
            math.log1p(float(np.mean(radii))),
            math.log(max(float(speed), 1e-3)),
            float(bend),
        ]
    )
    return count, summary, constant


def _swipe(points: list[tuple[int, float, float]]) -> tuple[float, float]:
    """Return a swipe's speed (chord length per ms) and bend (largest offset per length)."""
    t = np.array([p[0] for p in points], dtype=np.float64)
    xy = np.array([(p[1], p[2]) for p in points], dtype=np.float64)
    chord = xy[-1] - xy[0]
    length = float(np.hypot(*chord))
    duration = max(float(t[-1] - t[0]), 1.0)
    if length <= 0:
        return 0.0, 0.0
    # Distance of every point from the straight line between the ends.
    offsets = np.abs(np.cross(chord, xy - xy[0])) / length
    return length / duration, float(offsets.max() / length)


def device_details(info: events_pb2.DeviceInfo) -> DeviceDetails:
    """Return the fingerprint check's view of a DeviceInfo.

    Inconsistencies counted: a mobile user agent on a desktop platform or without touch
    points, a desktop platform with a mobile-sized screen, and a missing core count or
    memory size (real browsers report both; stripped or spoofed ones often do not).
    """
    ua = info.user_agent
    mobile_ua = "Mobile" in ua or "Android" in ua or "iPhone" in ua
    desktop_platform = info.platform.startswith(("Win", "Mac"))
    problems = 0
    problems += mobile_ua and (desktop_platform or info.max_touch_points == 0)
    problems += desktop_platform and 0 < info.screen_width < 600
    problems += info.hardware_concurrency == 0
    problems += info.device_memory_gb == 0
    return DeviceDetails(
        fingerprint_hash=info.fingerprint_hash.lower(),
        webdriver=info.webdriver,
        headless=info.headless_hints or "Headless" in ua,
        inconsistencies=int(problems),
    )


def _habits(events: list[events_pb2.Event]) -> tuple[FloatArray, int, int, int]:
    """Return (habit summary, pastes, pasted characters, times hidden)."""
    start = events[0].timestamp_ms if events else 0
    first_input: int | None = None
    pages = hidden = pastes = pasted = 0
    focus = 0
    fields: set[str] = set()
    for event in events:
        kind = event.WhichOneof("kind")
        if kind == "navigation":
            action = event.navigation.action
            if action == events_pb2.NAVIGATION_ACTION_ROUTE_CHANGE:
                pages += 1
            elif action == events_pb2.NAVIGATION_ACTION_HIDDEN:
                hidden += 1
        elif kind == "focus" and event.focus.action == events_pb2.FOCUS_ACTION_FOCUS:
            focus += 1
            fields.add(event.focus.field_id)
        elif kind == "form" and event.form.action == events_pb2.FORM_ACTION_PASTE:
            pastes += 1
            pasted += int(event.form.length)
        if kind in ("keystroke", "form") and first_input is None:
            first_input = event.timestamp_ms
    end = events[-1].timestamp_ms if events else start
    think = (first_input if first_input is not None else end) - start
    habits = np.array(
        [
            math.log1p(max(think, 0)),
            math.log1p(max(end - start, 0)),
            float(pages),
            focus / max(len(fields), 1),
        ]
    )
    return habits, pastes, pasted, hidden


def session_activity(events: list[events_pb2.Event]) -> SessionActivity:
    """Return the activity summaries of a session's events (in time order)."""
    keys, rhythm, cv = _rhythm(events)
    touches, touch, constant = _touch(events)
    habits, pastes, pasted, hidden = _habits(events)
    device: DeviceDetails | None = None
    for event in events:
        if event.WhichOneof("kind") == "device":
            device = device_details(event.device)
    return SessionActivity(
        keystrokes=keys,
        rhythm=rhythm,
        latency_cv=cv,
        touch_events=touches,
        touch=touch,
        constant_force=constant,
        habits=habits,
        pastes=pastes,
        pasted_chars=pasted,
        hidden=hidden,
        device=device,
    )
