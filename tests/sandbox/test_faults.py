"""The fault knobs: `--chaos` spec parsing and the seeded decisions both simulators use."""

from __future__ import annotations

import pytest

from syncd.sandbox.faults import FaultConfig, Faults


def test_empty_spec_is_no_faults() -> None:
    assert FaultConfig.parse_spec("") == FaultConfig()
    assert FaultConfig.parse_spec(" , ") == FaultConfig()


def test_spec_values_get_their_field_types() -> None:
    cfg = FaultConfig.parse_spec(
        " error_rate = 0.05, latency_ms_max=50 ,burst_429_length=2,timeout_delay=1.5,seed=7"
    )
    assert cfg.error_rate == 0.05 and isinstance(cfg.error_rate, float)
    assert cfg.latency_ms_max == 50 and isinstance(cfg.latency_ms_max, int)
    assert cfg.burst_429_length == 2 and isinstance(cfg.burst_429_length, int)
    assert cfg.timeout_delay == 1.5
    assert cfg.seed == 7 and isinstance(cfg.seed, int)
    assert cfg.page_drift_rate == 0.0  # untouched options keep their defaults


def test_all_is_every_fault_and_takes_overrides() -> None:
    assert FaultConfig.parse_spec("all") == FaultConfig.chaos_all()
    cfg = FaultConfig.parse_spec("all,seed=7,page_drift_rate=0")
    expected = FaultConfig.chaos_all(seed=7)
    expected.page_drift_rate = 0.0
    assert cfg == expected
    active = [k for k, v in FaultConfig.chaos_all().as_dict().items() if k.endswith("_rate") and v]
    assert len(active) >= 7  # every mode except corrupted records is on


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("error_rat=0.1", "unknown chaos option 'error_rat'"),
        ("error_rate", "expected name=value"),
        ("error_rate=lots", "error_rate must be a number"),
        ("latency_ms_max=5.5", "latency_ms_max must be a whole number"),
        ("error_rate=5", "probability"),
        ("page_drift_rate=-0.1", "probability"),
        ("timeout_delay=-1", "cannot be negative"),
        ("latency_ms_min=50,latency_ms_max=10", "above latency_ms_max"),
    ],
)
def test_bad_specs_are_refused_with_the_option_named(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        FaultConfig.parse_spec(spec)


def test_update_refuses_unknown_options() -> None:
    cfg = FaultConfig()
    cfg.update({"error_rate": 0.5})
    assert cfg.error_rate == 0.5
    with pytest.raises(ValueError, match="unknown fault option"):
        cfg.update({"eror_rate": 0.5})


def _decisions(faults: Faults, n: int, method: str = "GET") -> list[tuple[object, ...]]:
    out = []
    for _ in range(n):
        d = faults.decide(method)
        out.append((d.error_status, d.timeout, d.force_429, d.malformed_json, d.html_error))
    return out


def test_decisions_replay_with_the_same_seed() -> None:
    cfg = FaultConfig.chaos_all(seed=11)
    assert _decisions(Faults(cfg), 300) == _decisions(Faults(FaultConfig.chaos_all(seed=11)), 300)
    assert _decisions(Faults(cfg), 300) != _decisions(Faults(FaultConfig.chaos_all(seed=12)), 300)


def test_a_burst_is_consecutive_and_counted() -> None:
    faults = Faults()
    faults.configure(FaultConfig(burst_429_rate=1.0, burst_429_length=3, error_rate=1.0))
    first = [faults.decide("GET") for _ in range(3)]
    assert all(d.force_429 and d.error_status is None for d in first)  # a 429 wins
    assert faults.counts["force_429"] == 3
    faults.configure(FaultConfig(burst_429_rate=0.0, error_rate=1.0))
    assert faults.decide("GET").error_status in (500, 502, 503)
    assert not faults.decide("POST").force_429


def test_get_only_faults_spare_writes() -> None:
    faults = Faults()
    faults.configure(FaultConfig(malformed_json_rate=1.0, html_error_rate=1.0))
    assert faults.decide("GET").malformed_json
    post = faults.decide("POST")
    assert not post.malformed_json and not post.html_error


def test_latency_is_drawn_inside_its_bounds() -> None:
    faults = Faults()
    faults.configure(FaultConfig(latency_ms_min=20, latency_ms_max=40, seed=3))
    drawn = [faults.decide("GET").latency for _ in range(200)]
    assert min(drawn) >= 0.020 and max(drawn) <= 0.040
    faults.clear()
    assert faults.decide("GET").latency == 0.0
    assert faults.stats()["config"] == FaultConfig().as_dict()
