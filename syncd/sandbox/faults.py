"""Fault injection shared by both simulators.

Real servers misbehave in a handful of recognisable ways; each one is a knob here so that tests
and the soak benchmark can switch it on per run and assert on how syncd copes.  Decisions are
drawn from a seeded RNG so a failing run can be replayed.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class FaultConfig:
    """Probabilities are per request (0.0 - 1.0).  Only API routes are affected, never `/_sim/`."""

    latency_ms_min: int = 0
    latency_ms_max: int = 0
    #: answer 500/502/503 *before* the request is processed (nothing changes on the server)
    error_rate: float = 0.0
    #: process the request, then hold the response for `timeout_delay` seconds (outcome unknown)
    timeout_rate: float = 0.0
    timeout_delay: float = 3.0
    #: start a burst of `burst_429_length` consecutive 429 answers
    burst_429_rate: float = 0.0
    burst_429_length: int = 5
    #: GET only: answer 200 with a truncated / invalid JSON body
    malformed_json_rate: float = 0.0
    #: GET only: answer a proxy-style HTML error page (502) instead of JSON
    html_error_rate: float = 0.0
    #: list pages after the first: mutate the data set (insert / edit / delete) before answering
    page_drift_rate: float = 0.0
    #: mantenimiento only: forget the caller's session before handling the request
    session_expiry_rate: float = 0.0
    #: per-field mutation of records served: garbage values (quarantine tests)
    malformed_record_rate: float = 0.0
    seed: int | None = None

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown fault option: {key}")
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse_spec(cls, spec: str) -> FaultConfig:
        """Parse `name=value,name=value` as used by `syncd sandbox --chaos`.

        `all` stands for every fault at its chaos rate and may be combined with overrides
        (`all,seed=7,page_drift_rate=0`).  A typo, a value of the wrong type or out of range
        is a ValueError naming the option: a chaos run must not silently test less.
        """
        parts = [p.strip() for p in (spec or "").split(",") if p.strip()]
        cfg = cls.chaos_all() if "all" in parts else cls()
        types = {f.name: str(f.type) for f in fields(cls)}
        for part in parts:
            if part == "all":
                continue
            if "=" not in part:
                raise ValueError(f"bad chaos option {part!r}: expected name=value")
            name, raw = (s.strip() for s in part.split("=", 1))
            if name not in types:
                raise ValueError(f"unknown chaos option {name!r}")
            integral = "int" in types[name] and "float" not in types[name]
            try:
                value: Any = int(raw) if integral else float(raw)
            except ValueError:
                kind = "a whole number" if integral else "a number"
                raise ValueError(f"chaos option {name} must be {kind}, not {raw!r}") from None
            setattr(cfg, name, value)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_rate") and not 0.0 <= value <= 1.0:
                raise ValueError(f"chaos option {f.name} is a probability (0-1), not {value}")
            if f.name != "seed" and value is not None and value < 0:
                raise ValueError(f"chaos option {f.name} cannot be negative ({value})")
        if self.latency_ms_min > self.latency_ms_max > 0:
            raise ValueError("chaos option latency_ms_min is above latency_ms_max")

    @classmethod
    def chaos_all(cls, seed: int | None = None) -> FaultConfig:
        """Every fault mode on at a rate a well-behaved client must absorb."""
        return cls(
            latency_ms_min=0,
            latency_ms_max=30,
            error_rate=0.05,
            timeout_rate=0.02,
            timeout_delay=1.5,
            burst_429_rate=0.01,
            burst_429_length=3,
            malformed_json_rate=0.02,
            html_error_rate=0.02,
            page_drift_rate=0.2,
            session_expiry_rate=0.02,
            malformed_record_rate=0.0,
            seed=seed,
        )


@dataclass
class FaultDecision:
    latency: float = 0.0
    error_status: int | None = None
    timeout: bool = False
    force_429: bool = False
    malformed_json: bool = False
    html_error: bool = False
    expire_session: bool = False


@dataclass
class Faults:
    """Thread-safe fault decisions plus counters of what was injected."""

    config: FaultConfig = field(default_factory=FaultConfig)
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._burst_left = 0

    def configure(self, values: dict[str, Any] | FaultConfig) -> None:
        with self._lock:
            if isinstance(values, FaultConfig):
                self.config = values
            else:
                fresh = FaultConfig()
                fresh.update(values)
                self.config = fresh
            self._rng = random.Random(self.config.seed)
            self._burst_left = 0

    def clear(self) -> None:
        self.configure(FaultConfig())

    def chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def choice(self, items: list[Any]) -> Any:
        with self._lock:
            return self._rng.choice(items)

    def decide(self, method: str) -> FaultDecision:
        c = self.config
        d = FaultDecision()
        is_get = method == "GET"
        with self._lock:
            rng = self._rng
            if c.latency_ms_max > 0:
                d.latency = rng.uniform(c.latency_ms_min, c.latency_ms_max) / 1000.0
            if self._burst_left > 0:
                self._burst_left -= 1
                d.force_429 = True
            elif c.burst_429_rate and rng.random() < c.burst_429_rate:
                self._burst_left = max(0, c.burst_429_length - 1)
                d.force_429 = True
            if not d.force_429:
                if c.error_rate and rng.random() < c.error_rate:
                    d.error_status = rng.choice([500, 502, 503])
                elif c.timeout_rate and rng.random() < c.timeout_rate:
                    d.timeout = True
                elif is_get and c.malformed_json_rate and rng.random() < c.malformed_json_rate:
                    d.malformed_json = True
                elif is_get and c.html_error_rate and rng.random() < c.html_error_rate:
                    d.html_error = True
            if c.session_expiry_rate and rng.random() < c.session_expiry_rate:
                d.expire_session = True
        for name in ("force_429", "timeout", "malformed_json", "html_error", "expire_session"):
            if getattr(d, name):
                self.counts[name] += 1
        if d.error_status:
            self.counts[f"error_{d.error_status}"] += 1
        return d

    def stats(self) -> dict[str, Any]:
        return {"config": self.config.as_dict(), "injected": dict(self.counts)}


PROXY_HTML_ERROR = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
