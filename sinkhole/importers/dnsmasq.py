"""dnsmasq `log-queries` lines (also Pi-hole's `pihole.log`, which is dnsmasq's): a
`query[TYPE] name from client` line is one question a client asked; `forwarded`, `reply`,
`cached`, `config` lines, dnsmasq's own `dnssec-query[DS]` lookups and DHCP lines are not
(skipped). With `log-queries=extra` the message starts with a serial and `client/port`.

Times are syslog's (`Dec  4 03:00:01`, local time of the logging host, no year) or RFC 3339
(`2026-12-04T03:00:01+00:00`, rsyslog's high-precision format). The year of a syslog line is
`year` when given; else the current year, or the previous one when that would put the log's
first line more than a day in the future (a December log imported in January). A log running
across new year moves on a year where the month goes back (Dec -> Jan); a late line from the
old year after that (month jumping forward again) keeps the old year.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from sinkhole.events import Observation
from sinkhole.importers.common import (
    BadLine,
    ClientCache,
    ImportStats,
    check_time,
    norm_qname,
    norm_qtype,
    open_log,
    parse_lines,
)

MONTHS = {name: i for i, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def read(path: str | Path, stats: ImportStats, year: int | None = None,
         now: float | None = None) -> Iterator[Observation]:
    """Observations of a dnsmasq log (plain or gzip), in file order; `now` (default: the
    clock) only picks the year when `year` is not given."""
    return parse_lines(open_log(path), DnsmasqParser(year, now), stats, "dnsmasq", path)


class DnsmasqParser:
    def __init__(self, year: int | None, now: float | None) -> None:
        self.clock = SyslogClock(year, time.time() if now is None else now)
        self.clients = ClientCache()

    def __call__(self, raw: bytes) -> Observation | None:
        line = raw.decode("latin-1")
        at = line.find(" query[")
        if at < 0:
            return None
        close = line.find("] ", at)
        if close < 0:
            raise BadLine("query line without a closing ']'")
        words = line[close + 2:].split(" ")
        if len(words) < 3 or words[1] != "from":
            raise BadLine("query line is not 'query[TYPE] NAME from CLIENT'")
        name = norm_qname(words[0])
        if not name:
            return None
        return Observation(self._time(line), self.clients(words[2]), name,
                           norm_qtype(line[at + 7:close]))

    def _time(self, line: str) -> float:
        if line[:1].isdigit():
            stamp, _, _ = line.partition(" ")
            try:
                return check_time(datetime.fromisoformat(stamp).timestamp())
            except ValueError:
                raise BadLine(f"bad time {stamp[:40]!r}") from None
        month = MONTHS.get(line[:3])
        if month is None or len(line) < 16 or line[3] + line[6] + line[9] + line[12] != "  ::":
            raise BadLine("no syslog time ('Mmm dd hh:mm:ss') at the start")
        try:
            day, hour, minute, second = (int(line[4:6]), int(line[7:9]), int(line[10:12]),
                                         int(line[13:15]))
        except ValueError:
            raise BadLine(f"bad syslog time {line[:15]!r}") from None
        return check_time(self.clock.stamp(month, day, hour, minute, second))


class SyslogClock:
    """Syslog times to Unix times: the year (see the module docstring) and the local-time
    offset, looked up once per hour of the log (mktime costs more than the rest of a line)."""

    def __init__(self, year: int | None, now: float) -> None:
        self.year = year
        self.now = now
        self.month = 0
        self._hours: dict[tuple[int, int, int, int], float] = {}

    def stamp(self, month: int, day: int, hour: int, minute: int, second: int) -> float:
        if minute > 59 or second > 60:
            raise BadLine("bad syslog time")
        state = (self.year, self.month)
        year = self._year(month, day)
        key = (year, month, day, hour)
        base = self._hours.get(key)
        if base is None:
            try:
                base = datetime(year, month, day, hour).timestamp()   # naive: local time
            except ValueError:
                self.year, self.month = state     # a bad line must not move the year on
                raise BadLine(f"no such date {year}-{month:02d}-{day:02d} {hour}h") from None
            if len(self._hours) > 10_000:
                self._hours.clear()
            self._hours[key] = base
        return base + minute * 60 + second

    def _year(self, month: int, day: int) -> int:
        if self.year is None:
            self.year = time.localtime(self.now).tm_year
            if _first_of(self.year, month, day) > self.now + 86400:
                self.year -= 1
        if not self.month:
            self.month = month
        elif month < self.month - 6:      # Dec -> Jan: a new year
            self.year += 1
            self.month = month
        elif month > self.month + 6:      # a late December line after the new year
            return self.year - 1
        else:
            self.month = month
        return self.year


def _first_of(year: int, month: int, day: int) -> float:
    try:
        return datetime(year, month, day).timestamp()
    except ValueError:                  # Feb 29 of a common year: judged by the 28th
        return datetime(year, month, 28).timestamp()
