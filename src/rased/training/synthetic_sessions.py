"""Generator of labelled sessions for what public data does not cover (seeded).

Public data covers mouse movement (DELBOT-Mouse, Balabit). Keystroke timing, touch,
devices and location histories of the same people, with bots and account takeovers among
them, are generated here so every score has something to train and test on. Nothing here
is a measurement: numbers obtained on these sessions say the code works, not how well
Rased does on real users.

Assumptions (repeated in model_repository/MODEL_CARD.md):

- **Typing.** Each user has a personal rhythm: a log-normal hold time per key class
  (population median 95 ms, users spread by a factor e^0.2; Shift held ~1.35x, digits and
  punctuation ~1.05x) and a log-normal down-down latency per class of the next key
  (population median 210 ms, users spread by e^0.35; reaching for digits, punctuation or
  Shift takes ~1.3-1.5x longer), plus a personal offset per key and per digraph (sd 0.1 on
  log holds, 0.25 on log latencies): the signature that tells two people apart. Within a
  user, timings vary log-normally (sd 0.12-0.25 holds, 0.2-0.4 latencies), a whole
  repetition is faster or slower together (sd 0.08), the user speeds up with practice
  (3% per session, eight sessions at most) and hesitates on 2% of keys (2-5x latency).
  Up-down flight = down-down latency - hold, negative when keys overlap (rollover), as in
  real recordings.
- **Touch.** Per user a finger pressure (0.2-0.7), contact radius (5-15 px) and swipe
  speed (0.5-2.5 px/ms); swipes are curved, sampled every ~16 ms with jitter. Taps focus
  fields and press buttons on phones. Scripts touch with a constant pressure of 1.0.
- **Pointer.** Desktop sessions move the mouse to every link, field and button: a
  minimum-jerk movement along a bowed path (Fitts' law time a + b log2(1 + D/30 px), a
  80-250 ms, b 80-200 ms per bit, bow 2-15% of the distance), hand tremor (0.2-1.5 px),
  overshoots with a correction (5-40% of moves), a rest on the target (80-400 ms) and
  the button held 60-160 ms; all per person. Events arrive every 8, 16 or 16.7 ms (a
  property of the machine). Scripts move nothing (30%, clicks through the DOM), jump
  to the target, or tween linearly or eased at an exact tick, and click within 8 ms.
- **Habits.** Per person: time from page load to the first input (median 1.5-8 s),
  pages visited before the form (0.3-3 on average), chance of switching to another
  window or app during a session (0-30%), of pasting into a field (0-10%), of coming
  back to a field (0-30%). A session fills one to three fields; 15% fill none (a
  one-click confirmation). Intruders go to the form directly, paste half of the fields
  and switch windows in 60% of sessions (reading details prepared elsewhere). Scripts
  navigate within 10-200 ms and type at once.
- **Devices.** Each person owns one or two devices (a desktop browser, sometimes a phone),
  used 80/20; a device's attributes, and so its fingerprint hash, never change. 3% of an
  owner's sessions come from a device never seen before (a new or borrowed one). Bots run
  automation: about 95% show navigator.webdriver, headless hints or a headless user agent;
  the rest hide them.
- **Places.** Each person lives in one of 24 cities (position jittered by ~5 km), visits
  one to three others on 0-15% of sessions, and 2% of sessions are somewhere never
  visited before. Bots come from five data-centre cities, or (30%) through residential
  proxies in any of the 24 cities. Takeovers come from a city at least 2,000 km from the
  victim's home that is never one of the victim's destinations (70%), through a proxy in
  the victim's home city (15%), or on the victim's own device at home (15%: a stolen
  phone, a remote-access tool).
- **Labels.** Human: the account's owner. Bot: an automation script typing at a fixed
  cadence (hold 5-50 ms, latency 10-120 ms, jitter < 2 ms), with "human-like" random
  delays (log-normal around 90 ms holds and 190 ms latencies, no personal signature), or
  pasting; on its own device. Takeover: another person (their own rhythm, pointer, touch
  and habits) in the owner's account. Each session after the first is a bot with
  probability 0.1 and a takeover with 0.1 (the first is the owner's: it opens the
  account; a script may log in as early as the second). `SessionTruth` records what
  each score should see (whose typing, device and place; automation) and the case.

`python -m rased.training.synthetic_sessions cmu --out FILE` writes typing repetitions in
the CMU keystroke benchmark's CSV format (Killourhy & Maxion 2009: password
".tie5Roanl", 400 repetitions per subject in eight sessions of 50);
`... sessions --out DIR` writes labelled sessions as EventBatch protobufs.
"""

from __future__ import annotations

import argparse
import csv
import functools
import gzip
import hashlib
import io
import math
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rased.features.trajectory import FloatArray
from rased.v1 import events_pb2

LABELS = ("human", "bot", "takeover")

# Key classes the generator types, with the SDK's class of each.
_CLASSES = {
    "letter": events_pb2.KEY_CLASS_LETTER,
    "digit": events_pb2.KEY_CLASS_DIGIT,
    "punctuation": events_pb2.KEY_CLASS_PUNCTUATION,
    "space": events_pb2.KEY_CLASS_SPACE,
    "shift": events_pb2.KEY_CLASS_MODIFIER,
    "delete": events_pb2.KEY_CLASS_DELETE,
    "enter": events_pb2.KEY_CLASS_ENTER,
}
_CLASS_NAMES = tuple(_CLASSES)
# Log-scale offsets of each class from a user's base hold and latency.
_HOLD_OFFSET = {"shift": 0.3, "digit": 0.05, "punctuation": 0.05, "enter": 0.1}
_LATENCY_OFFSET = {"digit": 0.3, "punctuation": 0.3, "shift": 0.4, "enter": 0.2, "delete": 0.2}
# How often each class appears in free text typed into a form.
_TEXT_MIX = {
    "letter": 0.7,
    "digit": 0.1,
    "space": 0.1,
    "punctuation": 0.03,
    "shift": 0.03,
    "delete": 0.03,
    "enter": 0.01,
}

# The CMU benchmark's password ".tie5Roanl" + Return, as (column name, key class).
CMU_KEYS: tuple[tuple[str, str], ...] = (
    ("period", "punctuation"),
    ("t", "letter"),
    ("i", "letter"),
    ("e", "letter"),
    ("five", "digit"),
    ("Shift.r", "shift"),
    ("o", "letter"),
    ("a", "letter"),
    ("n", "letter"),
    ("l", "letter"),
    ("Return", "enter"),
)
CMU_SESSIONS = 8
CMU_REPS_PER_SESSION = 50

# (name, latitude, longitude, ISO country code)
CITIES: tuple[tuple[str, float, float, str], ...] = (
    ("Riyadh", 24.71, 46.68, "SA"),
    ("Jeddah", 21.49, 39.19, "SA"),
    ("Dubai", 25.20, 55.27, "AE"),
    ("Cairo", 30.04, 31.24, "EG"),
    ("Istanbul", 41.01, 28.98, "TR"),
    ("London", 51.51, -0.13, "GB"),
    ("Paris", 48.86, 2.35, "FR"),
    ("Berlin", 52.52, 13.40, "DE"),
    ("Madrid", 40.42, -3.70, "ES"),
    ("Moscow", 55.76, 37.62, "RU"),
    ("Lagos", 6.52, 3.38, "NG"),
    ("Nairobi", -1.29, 36.82, "KE"),
    ("Mumbai", 19.08, 72.88, "IN"),
    ("Delhi", 28.70, 77.10, "IN"),
    ("Singapore", 1.35, 103.82, "SG"),
    ("Jakarta", -6.21, 106.85, "ID"),
    ("Tokyo", 35.68, 139.69, "JP"),
    ("Seoul", 37.57, 126.98, "KR"),
    ("Sydney", -33.87, 151.21, "AU"),
    ("New York", 40.71, -74.01, "US"),
    ("Chicago", 41.88, -87.63, "US"),
    ("San Francisco", 37.77, -122.42, "US"),
    ("Toronto", 43.65, -79.38, "CA"),
    ("Sao Paulo", -23.55, -46.63, "BR"),
)
DATACENTRES: tuple[tuple[str, float, float, str], ...] = (
    ("Ashburn", 39.04, -77.49, "US"),
    ("Frankfurt", 50.11, 8.68, "DE"),
    ("Amsterdam", 52.37, 4.90, "NL"),
    ("Dublin", 53.35, -6.26, "IE"),
    ("Singapore DC", 1.29, 103.85, "SG"),
)
TAKEOVER_MIN_KM = 2000.0
_EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
_DAY_MS = 86_400_000
_MAX_EVENTS_PER_BATCH = 500  # EventBatch's validation limit


@dataclass(frozen=True)
class Device:
    """A browser on a machine: attributes that never change, hence a stable fingerprint."""

    user_agent: str
    platform: str
    screen: tuple[int, int]
    pixel_ratio: float
    timezone: str
    languages: tuple[str, ...]
    cores: int
    memory_gb: float
    touch_points: int
    webdriver: bool = False
    headless: bool = False

    @property
    def fingerprint(self) -> str:
        """Return the hex hash the SDK would compute from the attributes."""
        text = "|".join(
            map(
                str,
                (
                    self.user_agent,
                    self.platform,
                    self.screen,
                    self.pixel_ratio,
                    self.timezone,
                    self.languages,
                    self.cores,
                    self.memory_gb,
                    self.touch_points,
                    self.webdriver,
                    self.headless,
                ),
            )
        )
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Person:
    """Everything the generator keeps constant about one person."""

    name: str
    hold_mu: FloatArray  # log ms, per class of `_CLASS_NAMES`
    latency_mu: FloatArray  # log ms, per class of the next key
    hold_sigma: float
    latency_sigma: float
    signature_seed: int  # draws the per-key and per-digraph offsets
    touch_force: float
    touch_radius: float
    swipe_speed: float
    devices: tuple[Device, ...]
    home: int  # index in CITIES
    travel: tuple[int, ...]
    travel_rate: float


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the great-circle distance between two positions (haversine, in km)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(min(1.0, a)))


def _class_offsets(table: dict[str, float]) -> FloatArray:
    return np.array([table.get(c, 0.0) for c in _CLASS_NAMES])


def _device(rng: np.random.Generator, mobile: bool, automation: bool = False) -> Device:
    if mobile:
        android, chrome = rng.integers(10, 15), rng.integers(118, 131)
        ua = f"Mozilla/5.0 (Linux; Android {android}) Mobile Chrome/{chrome}"
        screen = (int(rng.choice([360, 390, 412])), int(rng.choice([780, 844, 915])))
        platform, ratio, touch = "Linux armv8l", float(rng.choice([2.0, 2.625, 3.0])), 5
    else:
        os_name = str(
            rng.choice(["Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7"])
        )
        ua = f"Mozilla/5.0 ({os_name}) Chrome/{rng.integers(118, 131)}"
        screen = (
            int(rng.choice([1366, 1536, 1920, 2560])),
            int(rng.choice([768, 864, 1080, 1440])),
        )
        platform = "Win32" if "Windows" in os_name else "MacIntel"
        ratio, touch = float(rng.choice([1.0, 1.25, 2.0])), 0
    webdriver = headless = False
    if automation:
        ua = ua.replace("Chrome/", "HeadlessChrome/") if rng.random() < 0.5 else ua
        hints = rng.random()
        # 90% of scripts leave a hint; the rest hide it (the hard cases).
        webdriver, headless = hints < 0.6, 0.3 < hints < 0.9 or "Headless" in ua
    return Device(
        user_agent=ua,
        platform=platform,
        screen=screen,
        pixel_ratio=ratio,
        timezone=str(rng.choice(["Asia/Riyadh", "Europe/London", "America/New_York", "UTC"])),
        languages=tuple(rng.choice(["ar-SA", "en-US", "en-GB", "fr-FR"], size=2, replace=False)),
        cores=int(rng.choice([2, 4, 8, 16])),
        memory_gb=float(rng.choice([2.0, 4.0, 8.0])),
        touch_points=touch,
        webdriver=webdriver,
        headless=headless,
    )


def make_person(name: str, rng: np.random.Generator) -> Person:
    """Return a new person with their own rhythm, touch, devices and places."""
    home = int(rng.integers(len(CITIES)))
    others = [i for i in range(len(CITIES)) if i != home]
    travel = tuple(int(i) for i in rng.choice(others, size=int(rng.integers(1, 4)), replace=False))
    devices = [_device(rng, mobile=False)]
    if rng.random() < 0.5:
        devices.append(_device(rng, mobile=True))
    return Person(
        name=name,
        hold_mu=math.log(95.0)
        + rng.normal(0, 0.2)
        + _class_offsets(_HOLD_OFFSET)
        + rng.normal(0, 0.05, len(_CLASS_NAMES)),
        latency_mu=math.log(210.0)
        + rng.normal(0, 0.35)
        + _class_offsets(_LATENCY_OFFSET)
        + rng.normal(0, 0.1, len(_CLASS_NAMES)),
        hold_sigma=float(rng.uniform(0.12, 0.25)),
        latency_sigma=float(rng.uniform(0.2, 0.4)),
        signature_seed=int(rng.integers(2**31)),
        touch_force=float(rng.uniform(0.2, 0.7)),
        touch_radius=float(rng.uniform(5.0, 15.0)),
        swipe_speed=float(rng.uniform(0.5, 2.5)),
        devices=tuple(devices),
        home=home,
        travel=travel,
        travel_rate=float(rng.uniform(0.0, 0.15)),
    )


def make_population(n: int, seed: int) -> list[Person]:
    """Return `n` people, reproducibly from `seed`."""
    rng = np.random.default_rng(seed)
    return [make_person(f"user{i:04d}", rng) for i in range(n)]


def _signature(person: Person, keys: Sequence[str]) -> tuple[FloatArray, FloatArray]:
    """Return the person's fixed log offsets per key (holds) and per digraph (latencies)."""
    return _signature_of(person.signature_seed, tuple(keys))


@functools.lru_cache(maxsize=4096)
def _signature_of(seed: int, keys: tuple[str, ...]) -> tuple[FloatArray, FloatArray]:
    holds, latencies = [], []
    previous = ""
    for key in keys:
        # Seeded by the key's name: the same key gets the same offset in every session.
        own = np.random.default_rng([seed, zlib.crc32(key.encode())])
        holds.append(own.normal(0, 0.1))
        pair = np.random.default_rng([seed, zlib.crc32(f"{previous}>{key}".encode())])
        latencies.append(pair.normal(0, 0.25))
        previous = key
    return np.array(holds), np.array(latencies)


def type_keys(
    person: Person, keys: Sequence[tuple[str, str]], practice: int, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Return one repetition's hold times and down-down latencies (ms) of `keys`.

    `keys` are (name, class) pairs; latency i is from key i's down to key i+1's down
    (one fewer than keys). `practice` is the number of earlier sessions (speeds up typing).
    """
    names = [k for k, _ in keys]
    cls = np.array([_CLASS_NAMES.index(c) for _, c in keys])
    hold_sig, lat_sig = _signature(person, names)
    tempo = rng.normal(0, 0.08) - 0.03 * min(practice, CMU_SESSIONS - 1)
    holds = np.exp(
        person.hold_mu[cls] + hold_sig + tempo + rng.normal(0, person.hold_sigma, cls.size)
    )
    latency = np.exp(
        person.latency_mu[cls[1:]]
        + lat_sig[1:]
        + tempo
        + rng.normal(0, person.latency_sigma, cls.size - 1)
    )
    pauses = rng.random(latency.size) < 0.02
    latency[pauses] *= rng.uniform(2, 5, int(pauses.sum()))
    return holds, latency


def cmu_header() -> list[str]:
    """Return the columns of the CMU benchmark's CSV."""
    columns = ["subject", "sessionIndex", "rep"]
    for i, (key, _) in enumerate(CMU_KEYS):
        columns.append(f"H.{key}")
        if i + 1 < len(CMU_KEYS):
            nxt = CMU_KEYS[i + 1][0]
            columns += [f"DD.{key}.{nxt}", f"UD.{key}.{nxt}"]
    return columns


def cmu_rows(subjects: int, seed: int) -> list[list[str]]:
    """Return the CMU-format rows (seconds, 4 decimals) of `subjects` generated people."""
    people = make_population(subjects, seed)
    rng = np.random.default_rng([seed, 1])
    rows = []
    for n, person in enumerate(people):
        for session in range(1, CMU_SESSIONS + 1):
            for rep in range(1, CMU_REPS_PER_SESSION + 1):
                holds, dd = type_keys(person, CMU_KEYS, session - 1, rng)
                values: list[float] = []
                for i, hold in enumerate(holds):
                    values.append(hold)
                    if i < dd.size:
                        values += [dd[i], dd[i] - hold]
                row = [f"s{n + 2:03d}", str(session), str(rep)]
                rows.append(row + [f"{v / 1000:.4f}" for v in values])
    return rows


def write_cmu_csv(path: Path, subjects: int, seed: int) -> int:
    """Write generated typing in CMU format (gzip when the name ends .gz); return rows."""
    rows = cmu_rows(subjects, seed)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(cmu_header())
    writer.writerows(rows)
    data = text.getvalue().encode()
    # mtime=0: the same seed writes the same bytes.
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return len(rows)


class _Recorder:
    """Collects one session's events and cuts them into EventBatches."""

    def __init__(self, session_id: str, start_ms: int) -> None:
        self.session_id = session_id
        self.start_ms = start_ms
        self.events: list[events_pb2.Event] = []

    def add(self, at_ms: float, **kind: object) -> None:
        self.events.append(events_pb2.Event(timestamp_ms=self.start_ms + round(at_ms), **kind))  # type: ignore[arg-type]

    def batches(self) -> list[events_pb2.EventBatch]:
        ordered = sorted(self.events, key=lambda e: e.timestamp_ms)
        out = []
        for seq, lo in enumerate(range(0, len(ordered), _MAX_EVENTS_PER_BATCH)):
            chunk = ordered[lo : lo + _MAX_EVENTS_PER_BATCH]
            out.append(
                events_pb2.EventBatch(
                    batch_id=f"{self.session_id}-b{seq:04d}",
                    session_id=self.session_id,
                    transaction_id=f"{self.session_id}-tx",
                    sequence=seq,
                    client_sent_at_ms=chunk[-1].timestamp_ms,
                    sdk_version="synthetic-1",
                    trigger=lo + _MAX_EVENTS_PER_BATCH >= len(ordered),
                    events=chunk,
                )
            )
        return out


def _device_event(rec: _Recorder, device: Device) -> None:
    rec.add(
        0,
        device=events_pb2.DeviceInfo(
            user_agent=device.user_agent,
            screen_width=device.screen[0],
            screen_height=device.screen[1],
            pixel_ratio=device.pixel_ratio,
            timezone=device.timezone,
            languages=list(device.languages),
            webdriver=device.webdriver,
            headless_hints=device.headless,
            hardware_concurrency=device.cores,
            device_memory_gb=device.memory_gb,
            platform=device.platform,
            max_touch_points=device.touch_points,
            fingerprint_hash=device.fingerprint,
        ),
    )


def _place_event(
    rec: _Recorder, city: tuple[str, float, float, str], rng: np.random.Generator
) -> None:
    _, lat, lon, country = city
    rec.add(
        1,
        location=events_pb2.LocationInfo(
            latitude=lat + rng.normal(0, 0.045),
            longitude=lon + rng.normal(0, 0.045),
            accuracy_m=float(rng.uniform(20, 5000)),
            source=events_pb2.LOCATION_SOURCE_IP,
            country_code=country,
        ),
    )


def _text(rng: np.random.Generator, length: int) -> list[tuple[str, str]]:
    classes = rng.choice(list(_TEXT_MIX), size=length, p=list(_TEXT_MIX.values()))
    keys = []
    for c in classes:
        name = str(rng.choice(list("etaoinshrdlu"))) if c == "letter" else str(c)
        if c == "digit":
            name = str(rng.integers(10))
        keys.append((name, str(c)))
    return keys


def _keystrokes(
    rec: _Recorder,
    start: float,
    keys: list[tuple[str, str]],
    holds: FloatArray,
    latency: FloatArray,
    field_id: str = "comment",
) -> float:
    at = start
    for i, (name, cls) in enumerate(keys):
        key_id = zlib.crc32(name.encode()) % 1024
        for when, action in (
            (at, events_pb2.KEY_ACTION_DOWN),
            (at + holds[i], events_pb2.KEY_ACTION_UP),
        ):
            rec.add(
                when,
                keystroke=events_pb2.KeystrokeEvent(
                    action=action, key_class=_CLASSES[cls], key_id=key_id, field_id=field_id
                ),
            )
        if i < latency.size:
            at += float(latency[i])
    return at + float(holds[-1])


def _swipes(rec: _Recorder, start: float, person: Person | None, rng: np.random.Generator) -> None:
    """Touch swipes: a person's curved and uneven, a bot's (person None) straight and exact."""
    at = start
    for touch_id in range(int(rng.integers(2, 6))):
        x0, y0 = rng.uniform(40, 320), rng.uniform(200, 700)
        dy = rng.uniform(-400, -150)
        if person is None:
            steps, speed, bend = 12, 1.5, 0.0
            force, radius = np.full(steps, 1.0), np.full(steps, 1.0)
            ticks = np.full(steps, 16.0)
        else:
            speed, bend = person.swipe_speed * rng.uniform(0.8, 1.2), rng.normal(0, 30)
            steps = max(4, round(abs(dy) / speed / 16))
            force = np.clip(rng.normal(person.touch_force, 0.05, steps), 0, 1)
            radius = np.clip(rng.normal(person.touch_radius, 1.0, steps), 1, 100)
            ticks = rng.normal(16.0, 2.0, steps).clip(8)
        u = np.linspace(0, 1, steps)
        xs, ys = x0 + bend * np.sin(np.pi * u), y0 + dy * u
        times = at + np.cumsum(ticks)
        for i in range(steps):
            action = (
                events_pb2.TOUCH_ACTION_START
                if i == 0
                else events_pb2.TOUCH_ACTION_END
                if i == steps - 1
                else events_pb2.TOUCH_ACTION_MOVE
            )
            rec.add(
                times[i],
                touch=events_pb2.TouchEvent(
                    action=action,
                    touch_id=touch_id,
                    x=float(xs[i]),
                    y=float(ys[i]),
                    force=float(force[i]),
                    radius=float(radius[i]),
                ),
            )
        at = float(times[-1]) + rng.uniform(300, 1500)


def _far_city(person: Person, rng: np.random.Generator) -> int:
    _, lat, lon, _ = CITIES[person.home]
    far = [
        i
        for i, (_, la, lo, _) in enumerate(CITIES)
        if i not in person.travel and distance_km(lat, lon, la, lo) >= TAKEOVER_MIN_KM
    ]
    return int(rng.choice(far))


@dataclass(frozen=True)
class Style:
    """How a person moves the pointer, browses and fills in forms (constant per person)."""

    fitts_a_ms: float  # movement time = a + b * log2(1 + distance / target width)
    fitts_b_ms: float
    bend: float  # sideways bow of a movement, as a fraction of its length
    tremor_px: float
    overshoot: float  # probability of overshooting a target and correcting
    hover_ms: float  # resting on a target before pressing
    dwell_ms: float  # button held down
    think_ms: float  # median time from page load to the first input
    pages: float  # mean pages visited before the form
    hidden_rate: float  # probability of switching away from the page in a session
    paste_rate: float  # probability of pasting into a field instead of typing
    refocus_rate: float  # probability of coming back to a field


@functools.lru_cache(maxsize=8192)
def _style_of(seed: int) -> Style:
    # A stream of its own (the person's signature seed): adding behaviour to the generator
    # leaves the typing draws, and so the CMU-format output, unchanged.
    rng = np.random.default_rng([seed, 0x5E55])
    return Style(
        fitts_a_ms=float(rng.uniform(80, 250)),
        fitts_b_ms=float(rng.uniform(80, 200)),
        bend=float(rng.uniform(0.02, 0.15)),
        tremor_px=float(rng.uniform(0.2, 1.5)),
        overshoot=float(rng.uniform(0.05, 0.4)),
        hover_ms=float(rng.uniform(80, 400)),
        dwell_ms=float(rng.uniform(60, 160)),
        think_ms=float(np.exp(rng.uniform(math.log(1500), math.log(8000)))),
        pages=float(rng.uniform(0.3, 3.0)),
        hidden_rate=float(rng.uniform(0.0, 0.3)),
        paste_rate=float(rng.uniform(0.0, 0.1)),
        refocus_rate=float(rng.uniform(0.0, 0.3)),
    )


def style(person: Person) -> Style:
    """Return the person's pointer, browsing and form-filling style."""
    return _style_of(person.signature_seed)


# An intruder in someone else's account goes to the payment form directly, pastes the
# details prepared elsewhere and switches windows to read them (an assumption).
def _intruder_style(own: Style) -> Style:
    return replace(
        own, pages=min(own.pages, 0.5), hidden_rate=0.6, paste_rate=0.5, think_ms=own.think_ms
    )


@dataclass(frozen=True)
class SessionTruth:
    """What really happened in a session: the generator's ground truth for every score."""

    case: str  # one of CASES
    typist_is_owner: bool  # the owner typed, moved and touched (not a script or intruder)
    device_is_owners: bool  # a device the owner owns, driven by a person
    automation: bool  # the browser is automated (with or without visible hints)
    place_is_owners: bool  # the reported place is the owner's (where they live, travel, are)

    @property
    def takeover(self) -> bool:
        """Another person in the owner's account."""
        return self.case.startswith("takeover")


CASES = (
    "owner",  # the owner, at home or on one of their usual trips, on one of their devices
    "owner_new_device",  # the owner on a device never seen before (a new or borrowed one)
    "owner_new_place",  # the owner somewhere they never were before
    "bot",  # a script that leaves automation hints (webdriver, headless)
    "bot_hidden",  # a script that hides them
    "takeover",  # another person, on their own device, from a city far from the owner's
    "takeover_local",  # the same, through a proxy (or in person) in the owner's home city
    "takeover_own_device",  # on the owner's own device and network (stolen phone, remote access)
)
OWNER_NEW_DEVICE_RATE = 0.03
OWNER_NEW_PLACE_RATE = 0.02
TAKEOVER_LOCAL_RATE = 0.15
TAKEOVER_OWN_DEVICE_RATE = 0.15
NO_INPUT_RATE = 0.15  # sessions that fill no field (a one-click confirmation)
_TARGET_WIDTH_PX = 30.0


@dataclass(frozen=True)
class SyntheticSession:
    """One generated session: whose account, what really happened, and its batches."""

    session_id: str
    user: str
    label: str  # one of LABELS
    batches: list[events_pb2.EventBatch]
    truth: SessionTruth


class _Pointer:
    """A session's pointer: where it is, and how it moves (a person's style, or a script)."""

    def __init__(
        self,
        rec: _Recorder,
        style: Style | None,
        mode: str,
        poll_ms: float,
        rng: np.random.Generator,
    ) -> None:
        self.rec, self.style, self.mode, self.poll, self.rng = rec, style, mode, poll_ms, rng
        self.xy = np.array([rng.uniform(200, 1200), rng.uniform(150, 700)])

    def _emit(self, times: FloatArray, xy: FloatArray) -> None:
        for at, (x, y) in zip(times, np.round(xy), strict=True):
            self.rec.add(
                float(at),
                pointer=events_pb2.PointerEvent(
                    action=events_pb2.POINTER_ACTION_MOVE,
                    x=float(x),
                    y=float(y),
                    pointer_type=events_pb2.POINTER_TYPE_MOUSE,
                ),
            )

    def _button(self, at: float, held: float) -> None:
        x, y = (float(v) for v in np.round(self.xy))
        for when, action in (
            (at, events_pb2.POINTER_ACTION_DOWN),
            (at + held, events_pb2.POINTER_ACTION_UP),
        ):
            self.rec.add(
                when,
                pointer=events_pb2.PointerEvent(
                    action=action, x=x, y=y, button=0, pointer_type=events_pb2.POINTER_TYPE_MOUSE
                ),
            )

    def _person_move(self, at: float, target: FloatArray, s: Style) -> float:
        rng = self.rng
        start = self.xy
        distance = float(np.hypot(*(target - start)))
        aim = target
        overshoot = rng.random() < s.overshoot and distance > 50
        if overshoot:
            aim = target + (target - start) / max(distance, 1.0) * rng.uniform(5, 25)
        duration = (
            s.fitts_a_ms + s.fitts_b_ms * math.log2(1 + distance / _TARGET_WIDTH_PX)
        ) * float(rng.lognormal(0, 0.15))
        ticks = np.clip(rng.normal(self.poll, 0.8, max(2, int(duration / self.poll))), 1, None)
        times = at + np.cumsum(ticks)
        tau = np.clip((times - at) / duration, 0, 1)
        progress = 10 * tau**3 - 15 * tau**4 + 6 * tau**5  # minimum jerk
        chord = aim - start
        normal = np.array([-chord[1], chord[0]]) / max(distance, 1.0)
        control = (start + aim) / 2 + normal * distance * s.bend * rng.choice(
            [-1, 1]
        ) * rng.uniform(0.5, 1.5)
        u = progress[:, None]
        path = (1 - u) ** 2 * start + 2 * (1 - u) * u * control + u**2 * aim
        path = path + rng.normal(0, s.tremor_px, path.shape)
        self._emit(times, path)
        end = float(times[-1])
        if overshoot:
            back = max(2, int(rng.uniform(80, 200) / self.poll))
            t2 = end + np.cumsum(np.clip(rng.normal(self.poll, 0.8, back), 1, None))
            v = np.linspace(0, 1, back)[:, None]
            self._emit(t2, aim + (target - aim) * v + rng.normal(0, s.tremor_px, (back, 2)))
            end = float(t2[-1])
        self.xy = target
        return end

    def _script_move(self, at: float, target: FloatArray) -> float:
        rng = self.rng
        start = self.xy
        self.xy = target
        if self.mode == "teleport":
            self._emit(np.array([at + 1.0]), target[None, :])
            return at + 1.0
        steps = int(rng.integers(8, 40))
        times = at + self.poll * np.arange(1, steps + 1)
        u = np.linspace(0, 1, steps)
        if self.mode == "eased":  # "humanised" scripts: eased, bowed, a little noise
            u = u * u * (3 - 2 * u)
            bow = np.array([-(target - start)[1], (target - start)[0]]) * rng.uniform(-0.1, 0.1)
            path = start + (target - start) * u[:, None] + bow * np.sin(np.pi * u)[:, None]
            path = path + rng.uniform(-1, 1, path.shape)
        else:
            path = start + (target - start) * u[:, None]
        self._emit(times, path)
        return float(times[-1])

    def click(self, at: float, target: FloatArray) -> float:
        """Move to `target` and click it; return when the button is released."""
        if self.mode == "none":  # a script that clicks through the DOM moves no pointer
            return at + 1.0
        s = self.style
        if s is None:
            end = self._script_move(at, target)
            held = float(self.rng.uniform(0, 8))
            self._button(end, held)
            return end + held
        end = self._person_move(at, target, s)
        press = end + s.hover_ms * float(self.rng.lognormal(0, 0.3))
        held = s.dwell_ms * float(self.rng.lognormal(0, 0.2))
        self._button(press, held)
        return press + held


def _tap(
    rec: _Recorder, at: float, target: FloatArray, person: Person | None, rng: np.random.Generator
) -> float:
    """A finger tap on `target` (a person's pressure and size, or a script's constants)."""
    force = 1.0 if person is None else float(np.clip(rng.normal(person.touch_force, 0.05), 0, 1))
    radius = 1.0 if person is None else float(np.clip(rng.normal(person.touch_radius, 1.0), 1, 100))
    held = 5.0 if person is None else float(rng.uniform(60, 140))
    for when, action in (
        (at, events_pb2.TOUCH_ACTION_START),
        (at + held, events_pb2.TOUCH_ACTION_END),
    ):
        rec.add(
            when,
            touch=events_pb2.TouchEvent(
                action=action,
                touch_id=0,
                x=float(target[0]),
                y=float(target[1]),
                force=force,
                radius=radius,
            ),
        )
    return at + held


def _bot_keys(
    keys: list[tuple[str, str]], humanised: bool, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """A script's key timings: a fixed cadence, or "human-like" random delays."""
    if humanised:
        holds = rng.lognormal(math.log(90), 0.25, len(keys))
        latency = rng.lognormal(math.log(190), 0.4, len(keys) - 1)
        return holds, latency
    holds = (rng.uniform(5, 50) + rng.normal(0, 1.0, len(keys))).clip(1)
    latency = rng.uniform(10, 120) + rng.normal(0, 1.0, len(keys) - 1)
    return holds, latency.clip(holds[:-1] + 1)


def _owner_place(person: Person, rng: np.random.Generator) -> tuple[str, float, float, str]:
    traveling = rng.random() < person.travel_rate
    return CITIES[int(rng.choice(person.travel)) if traveling else person.home]


def _plan(
    person: Person, label: str, rng: np.random.Generator
) -> tuple[SessionTruth, Device, tuple[str, float, float, str], Person | None, Style | None]:
    """Decide a session's case, device, place, typist and style (None for a script)."""
    home = CITIES[person.home]
    usual = {person.home, *person.travel}
    if label == "human":
        device = person.devices[0 if len(person.devices) == 1 or rng.random() < 0.8 else 1]
        city = _owner_place(person, rng)
        case = "owner"
        draw = rng.random()
        if draw < OWNER_NEW_DEVICE_RATE:
            device, case = _device(rng, mobile=rng.random() < 0.3), "owner_new_device"
        elif draw < OWNER_NEW_DEVICE_RATE + OWNER_NEW_PLACE_RATE:
            new = [i for i in range(len(CITIES)) if i not in usual]
            city, case = CITIES[int(rng.choice(new))], "owner_new_place"
        truth = SessionTruth(case, True, True, False, True)
        return truth, device, city, person, style(person)
    if label == "bot":
        device = _device(rng, mobile=rng.random() < 0.3, automation=True)
        # Residential proxies put a third of the scripts in ordinary cities.
        if rng.random() < 0.3:
            index = int(rng.integers(len(CITIES)))
            city, own_place = CITIES[index], index in usual
        else:
            city, own_place = DATACENTRES[int(rng.integers(len(DATACENTRES)))], False
        hidden = not (device.webdriver or device.headless or "Headless" in device.user_agent)
        truth = SessionTruth("bot_hidden" if hidden else "bot", False, False, True, own_place)
        return truth, device, city, None, None
    if label == "takeover":
        intruder = make_person(f"{person.name}-intruder", rng)
        manner = _intruder_style(style(intruder))
        draw = rng.random()
        if draw < TAKEOVER_OWN_DEVICE_RATE:
            truth = SessionTruth("takeover_own_device", False, True, False, True)
            return truth, person.devices[0], home, intruder, manner
        if draw < TAKEOVER_OWN_DEVICE_RATE + TAKEOVER_LOCAL_RATE:
            truth = SessionTruth("takeover_local", False, False, False, True)
            return truth, intruder.devices[0], home, intruder, manner
        truth = SessionTruth("takeover", False, False, False, False)
        return truth, intruder.devices[0], CITIES[_far_city(person, rng)], intruder, manner
    raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")


def _poll_ms(device: Device) -> float:
    # Browsers deliver mouse moves at the display's frame rate or the mouse's report rate:
    # a property of the machine, so derived from its fingerprint.
    return (8.0, 16.0, 16.7)[int(device.fingerprint[:2], 16) % 3]


class _Script:
    """The events of one session as it unfolds: who acts, on what device, and when."""

    def __init__(
        self,
        rec: _Recorder,
        device: Device,
        typist: Person | None,
        manner: Style | None,
        index: int,
        rng: np.random.Generator,
    ) -> None:
        self.rec, self.typist, self.manner, self.index, self.rng = rec, typist, manner, index, rng
        self.mobile = device.touch_points > 0
        self.typing = str(rng.choice(["cadence", "paste", "humanised"], p=[0.4, 0.3, 0.3]))
        mode = "person" if manner else str(rng.choice(["none", "teleport", "linear", "eased"]))
        self.pointer = _Pointer(rec, manner, mode, _poll_ms(device), rng)
        self.at = 2.0

    def navigate(self, action: events_pb2.NavigationAction.ValueType) -> None:
        self.rec.add(self.at, navigation=events_pb2.NavigationEvent(action=action))

    def focus(self, action: events_pb2.FocusAction.ValueType, field_id: str) -> None:
        self.rec.add(self.at, focus=events_pb2.FocusEvent(action=action, field_id=field_id))

    def press(self, target: FloatArray) -> None:
        """Tap (phone) or click (desktop) `target`."""
        if self.mobile:
            self.at = _tap(self.rec, self.at, target, self.typist, self.rng)
        else:
            self.at = self.pointer.click(self.at, target)

    def browse(self) -> None:
        """Pages before the form: a person reads and clicks, a script jumps at once."""
        rng, manner = self.rng, self.manner
        if manner is None:
            for _ in range(int(rng.integers(0, 3))):
                self.at += float(rng.uniform(10, 200))
                self.navigate(events_pb2.NAVIGATION_ACTION_ROUTE_CHANGE)
            self.at += float(rng.uniform(50, 500))
            return
        pages = int(rng.poisson(manner.pages))
        reading = manner.think_ms * float(rng.lognormal(0, 0.4)) / (pages + 1)
        for _ in range(pages):
            self.at += reading
            self.press(np.array([rng.uniform(100, 1300), rng.uniform(80, 300)]))
            self.at += 5
            self.navigate(events_pb2.NAVIGATION_ACTION_ROUTE_CHANGE)
            if self.mobile:
                _swipes(self.rec, self.at + 200, self.typist, rng)
                self.at += 3000
        self.at += reading

    def away(self) -> None:
        """Switch to another window or app (to read a code, a beneficiary's details)."""
        self.navigate(events_pb2.NAVIGATION_ACTION_HIDDEN)
        self.at += float(self.rng.uniform(2000, 20000))
        self.navigate(events_pb2.NAVIGATION_ACTION_VISIBLE)
        self.at += float(self.rng.uniform(200, 800))

    def enter(self, field_id: str) -> None:
        """Type (or paste) a field's text."""
        rng, manner = self.rng, self.manner
        keys = _text(rng, int(rng.integers(8, 30)))
        by_script = manner is None and self.typing == "paste"
        paste = by_script or (manner is not None and bool(rng.random() < manner.paste_rate))
        if paste:
            pasted = events_pb2.FormEvent(
                action=events_pb2.FORM_ACTION_PASTE, field_id=field_id, length=len(keys)
            )
            self.rec.add(self.at, form=pasted)
            self.at += 1
            return
        if self.typist is None:
            holds, latency = _bot_keys(keys, self.typing == "humanised", rng)
        else:
            practice = min(self.index, CMU_SESSIONS - 1)
            holds, latency = type_keys(self.typist, keys, practice=practice, rng=rng)
        self.at = _keystrokes(self.rec, self.at, keys, holds, latency, field_id)

    def fill(self, number: int, fields: int) -> None:
        """Go to field `number` of `fields`, fill it in and leave it."""
        rng, manner = self.rng, self.manner
        field_id = f"field{number}"
        self.press(np.array([rng.uniform(300, 900), 250 + 70 * number + rng.uniform(-5, 5)]))
        self.at += 2
        self.focus(events_pb2.FOCUS_ACTION_FOCUS, field_id)
        self.at += float(rng.uniform(5, 50)) if manner is None else float(rng.uniform(150, 600))
        if manner is not None and rng.random() < manner.hidden_rate / fields:
            self.away()
        self.enter(field_id)
        self.at += 1
        self.focus(events_pb2.FOCUS_ACTION_BLUR, field_id)
        if manner is not None and rng.random() < manner.refocus_rate:
            self.at += 300
            self.focus(events_pb2.FOCUS_ACTION_FOCUS, field_id)
            self.at += 600
            self.focus(events_pb2.FOCUS_ACTION_BLUR, field_id)
        self.at += 1 if manner is None else float(rng.uniform(200, 900))

    def submit(self) -> None:
        """Press the form's button (a person on a phone may scroll on afterwards)."""
        rng = self.rng
        self.press(np.array([rng.uniform(400, 800), 500 + rng.uniform(-10, 10)]))
        if self.mobile and self.manner is not None and rng.random() < 0.5:
            _swipes(self.rec, self.at + 300, self.typist, rng)
        self.at += 2
        submitted = events_pb2.FormEvent(action=events_pb2.FORM_ACTION_SUBMIT, field_id="form")
        self.rec.add(self.at, form=submitted)


def make_session(
    person: Person, label: str, index: int, rng: np.random.Generator
) -> SyntheticSession:
    """Return one session in `person`'s account: theirs (human), a bot's or a takeover's.

    A session loads a page, may browse a few pages, fills one to three fields (typing or
    pasting), sometimes switches away and back, and submits; on a desktop with the
    pointer, on a phone with taps and swipes.
    """
    session_id = f"{person.name}-s{index:04d}"
    rec = _Recorder(session_id, _EPOCH_MS + index * _DAY_MS + int(rng.integers(_DAY_MS)))
    truth, device, city, typist, manner = _plan(person, label, rng)
    rec.add(0, navigation=events_pb2.NavigationEvent(action=events_pb2.NAVIGATION_ACTION_LOAD))
    _device_event(rec, device)
    _place_event(rec, city, rng)
    script = _Script(rec, device, typist, manner, index, rng)
    script.browse()
    fields = 0 if rng.random() < NO_INPUT_RATE else int(rng.integers(1, 4))
    for number in range(fields):
        script.fill(number, fields)
    script.submit()
    return SyntheticSession(session_id, person.name, label, rec.batches(), truth)


def generate_sessions(
    users: int,
    sessions_per_user: int,
    seed: int,
    bot_rate: float = 0.1,
    takeover_rate: float = 0.1,
) -> list[SyntheticSession]:
    """Return every user's sessions in time order, each labelled, reproducibly from `seed`.

    Each user's sessions have a random stream of their own: a user's history does not
    depend on how many users are generated with them.
    """
    people = make_population(users, seed)
    sessions = []
    for number, person in enumerate(people):
        rng = np.random.default_rng([seed, 2, number])
        for index in range(sessions_per_user):
            draw = rng.random()
            # A user's first session is theirs (it opens the account); later ones may not
            # be, so the models also meet frauds against accounts with little history.
            label = "human"
            if index >= 1 and draw < bot_rate:
                label = "bot"
            elif index >= 1 and draw < bot_rate + takeover_rate:
                label = "takeover"
            sessions.append(make_session(person, label, index, rng))
    return sessions


def write_sessions(root: Path, sessions: Sequence[SyntheticSession]) -> None:
    """Write `root/labels.csv` (session_id,user,label,case) and each batch as a binary protobuf."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "labels.csv").open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["session_id", "user", "label", "case"])
        for s in sessions:
            writer.writerow([s.session_id, s.user, s.label, s.truth.case])
            folder = root / s.user / s.session_id
            folder.mkdir(parents=True, exist_ok=True)
            for batch in s.batches:
                (folder / f"{batch.sequence:04d}.binpb").write_bytes(batch.SerializeToString())


def main(argv: list[str] | None = None) -> int:
    """Write generated data: CMU-format typing (`cmu`) or labelled sessions (`sessions`)."""
    parser = argparse.ArgumentParser(
        prog="python -m rased.training.synthetic_sessions",
        description="Write generated (synthetic) behavioural data.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cmu = commands.add_parser("cmu", help="typing repetitions in the CMU benchmark's CSV format")
    cmu.add_argument("--out", type=Path, required=True, help="CSV file (.gz to compress)")
    cmu.add_argument("--subjects", type=int, default=51)
    cmu.add_argument("--seed", type=int, default=42)
    ses = commands.add_parser("sessions", help="labelled sessions as EventBatch protobufs")
    ses.add_argument("--out", type=Path, required=True, help="folder to write")
    ses.add_argument("--users", type=int, default=50)
    ses.add_argument("--sessions-per-user", type=int, default=20)
    ses.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.command == "cmu":
        if args.subjects < 2:
            parser.error(f"--subjects must be at least 2 (for impostors), got {args.subjects}")
        try:
            rows = write_cmu_csv(args.out, args.subjects, args.seed)
        except OSError as exc:
            parser.error(f"cannot write {args.out}: {exc.strerror or exc}")
        print(f"wrote {rows} repetitions of {args.subjects} generated subjects to {args.out}")
    else:
        sessions = generate_sessions(args.users, args.sessions_per_user, args.seed)
        write_sessions(args.out, sessions)
        print(f"wrote {len(sessions)} generated sessions to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
