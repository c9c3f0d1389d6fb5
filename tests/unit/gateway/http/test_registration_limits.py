"""The per-client registration buckets (pure: ``now`` given)."""

from __future__ import annotations

from gateway.http.registration import RegistrationLimiter


def test_a_burst_then_the_minute_bucket_refills() -> None:
    limiter = RegistrationLimiter(per_minute=3, per_hour=100)
    for _ in range(3):
        assert limiter.check("c", 0.0) is None
        limiter.charge("c", 0.0)
    refusal = limiter.check("c", 0.0)
    assert refusal is not None and refusal.status == 429 and refusal.code == "too_many_registrations"
    assert refusal.retry_after == 20  # one token of 3 a minute
    assert limiter.check("other", 0.0) is None  # another client has its own buckets
    assert limiter.check("c", 20.0) is None


def test_the_hour_quota() -> None:
    limiter = RegistrationLimiter(per_minute=0, per_hour=2)
    limiter.charge("c", 0.0)
    limiter.charge("c", 0.0)
    refusal = limiter.check("c", 1.0)
    assert refusal is not None and refusal.code == "registration_quota" and refusal.retry_after is not None
    assert 1700 <= refusal.retry_after <= 1800
