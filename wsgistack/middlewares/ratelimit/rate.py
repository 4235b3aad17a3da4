"""What is limited: ``Rate`` values parsed from text such as ``"10/second; 1000/hour"``.

parse_limits("100/minute")               # (Rate(amount=100, period=60.0, burst=100),)
parse_limits("5 per 10 seconds", burst=2)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ...errors import ConfigError

__all__ = ["SKEW", "Rate", "parse_limits"]

#: Seconds two hosts' clocks may differ: state further ahead than a rate allows by
#: more than this is from a clock that has since stepped back (see ``strategies``).
SKEW = 60

UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
    # As the limits library (Flask-Limiter) counts them, so its strings mean the
    # same here: a month of 30 days, a year of 12 such months (360 days).
    "month": 30 * 86400,
    "year": 12 * 30 * 86400,
}

# "100/minute", "100 / 5 minutes", "5 per 10 seconds", "10/s". The unit is the
# whole word: a lazy match with an optional plural "s" read "10/ms" as per minute.
_RATE = re.compile(
    r"^\s*(?P<amount>\d+)\s*(?:/|\bper\b)\s*(?P<count>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)\s*$",
    re.IGNORECASE,
)


def _unit(word: str) -> int | None:
    """Seconds in ``word``: a unit or the plural of a word unit ("mins", not "ms")."""
    word = word.lower()
    if word in UNITS:
        return UNITS[word]
    singular = word[:-1]
    if word.endswith("s") and len(singular) > 1 and singular in UNITS:
        return UNITS[singular]
    return None


#: The largest amount or burst: the RateLimit fields send them as 15-digit integers.
_MAX_COUNT = 999_999_999_999_999


@dataclass(frozen=True)
class Rate:
    """``amount`` requests per ``period`` seconds; ``burst`` of them may come at once."""

    amount: int
    period: float
    burst: int
    #: Seconds between two requests at the sustained rate (GCRA's emission interval).
    interval: float = field(init=False, repr=False, compare=False)
    #: The period in whole microseconds: the strategies count in integers, exactly.
    period_us: int = field(init=False, repr=False, compare=False)
    #: GCRA's clock ticks this many times a microsecond, so that an interval is
    #: ``interval_ticks`` ticks, a whole number (see ``strategies``).
    ticks_per_us: int = field(init=False, repr=False, compare=False)
    interval_ticks: int = field(init=False, repr=False, compare=False)
    #: Derived once for GCRA, which runs per request: how far past now the TAT
    #: may be for a request to pass, and the ticks in a second.
    room_ticks: int = field(init=False, repr=False, compare=False)
    ticks_per_second: int = field(init=False, repr=False, compare=False)
    #: The furthest ahead of now a TAT can be: a full burst's wait, plus SKEW between
    #: hosts' clocks.  Further means this clock has stepped back since.
    horizon_ticks: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Checked here, not only in the parser: a Rate may be built by hand.
        for option, count in (("amount", self.amount), ("burst", self.burst)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(
                    f"limits: Rate {option}: expected a whole number >= 1, got {count!r}"
                )
            if count > _MAX_COUNT:
                # The RateLimit fields are structured fields, whose integers have at
                # most 15 digits (RFC 9651 3.3.1): a client's parser would drop them.
                raise ConfigError(
                    f"limits: Rate {option}: at most {_MAX_COUNT:_} (15 digits), got {count:_}"
                )
        period = self.period
        if (
            isinstance(period, bool)
            or not isinstance(period, int | float)
            or not math.isfinite(period)
        ):
            raise ConfigError(f"limits: Rate period: expected seconds, got {period!r}")
        period_us = round(self.period * 1_000_000)
        if period_us < 1:
            raise ConfigError(f"limits: a period of {self.period!r} s is under a microsecond")
        common = math.gcd(self.amount, period_us)
        ticks_per_us, interval_ticks = self.amount // common, period_us // common
        for name, value in [
            ("interval", self.period / self.amount),
            ("period_us", period_us),
            ("ticks_per_us", ticks_per_us),
            ("interval_ticks", interval_ticks),
            ("room_ticks", (self.burst - 1) * interval_ticks),
            ("ticks_per_second", ticks_per_us * 1_000_000),
            ("horizon_ticks", self.burst * interval_ticks + SKEW * ticks_per_us * 1_000_000),
        ]:
            object.__setattr__(self, name, value)
        if self.burst * self.interval_ticks >= 2**53:  # Redis's Lua counts in doubles
            raise ConfigError(
                f"limits: {self.amount} per {self.seconds} s with a burst of {self.burst} "
                "is too fine to count exactly; round the amount or shorten the period"
            )

    @property
    def seconds(self) -> str:
        """The period as people write it: ``2592000`` for a month, ``1.5``; never ``2.592e+06``."""
        return str(int(self.period)) if self.period == int(self.period) else repr(self.period)

    @property
    def name(self) -> str:
        """A stable name for headers and store keys: ``100-per-60s``."""
        return f"{self.amount}-per-{self.seconds}s"

    def __str__(self) -> str:
        return f"{self.amount} per {self.seconds} seconds (burst {self.burst})"


def _parse_one(text: str, burst: int | None) -> Rate:
    match = _RATE.match(text)
    if match is None:
        raise ConfigError(
            f"limits: {text.strip()!r} is not a rate; write it like '100/minute', "
            "'10/second' or '5 per 10 seconds'"
        )
    amount = int(match["amount"])
    seconds = _unit(match["unit"])
    if seconds is None:
        raise ConfigError(
            f"limits: {text.strip()!r}: unknown unit {match['unit']!r} "
            "(second, minute, hour, day, month or year)"
        )
    count = float(match["count"]) if match["count"] else 1.0
    period = count * seconds
    if amount < 1 or period <= 0:
        raise ConfigError(f"limits: {text.strip()!r}: the amount and the period must be > 0")
    size = amount if burst is None else burst
    if size < 1:
        raise ConfigError(f"burst: must be at least 1, got {burst!r}")
    try:
        return Rate(amount=amount, period=period, burst=size)
    except ConfigError as exc:  # say which of the limits it was
        detail = str(exc).removeprefix("limits: ")
        raise ConfigError(f"limits: {text.strip()!r}: {detail}") from None


def parse_limits(
    limits: str | Rate | list[str | Rate] | tuple, burst: int | None = None
) -> tuple[Rate, ...]:
    """Parse ``"10/second; 1000/hour"`` (or a list) into rates; all must hold.

    ``burst`` (default: each rate's amount) is how many requests may arrive at
    once before the sustained rate applies.
    """
    if isinstance(burst, bool) or (burst is not None and not isinstance(burst, int)):
        raise ConfigError(f"burst: expected a whole number, got {burst!r}")
    if burst is not None and burst < 1:
        raise ConfigError(f"burst: must be at least 1, got {burst!r}")
    items: list[str | Rate]
    if isinstance(limits, Rate):
        items = [limits]
    elif isinstance(limits, str):
        items = [part for part in re.split(r"[;,|]", limits) if part.strip()]
    elif isinstance(limits, list | tuple):
        items = list(limits)
    else:
        raise ConfigError(f"limits: expected text like '100/minute', got {limits!r}")
    if not items:
        raise ConfigError("limits: give at least one rate, like '100/minute'")
    for item in items:
        if isinstance(item, Rate) and burst is not None and burst != item.burst:
            # A Rate carries its own burst; dropping this one would go unnoticed.
            raise ConfigError(
                f"burst: {burst} differs from the burst of {item.burst} in {item!r}; "
                "set it on the Rate"
            )
    rates = tuple(
        item if isinstance(item, Rate) else _parse_one(str(item), burst) for item in items
    )
    if len({rate.name for rate in rates}) != len(rates):
        raise ConfigError(f"limits: the same rate is given twice in {limits!r}")
    return rates
