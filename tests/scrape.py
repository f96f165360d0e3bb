"""A scrape of /metrics, parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.client import Api


class Scrape:
    """One scrape of /metrics, parsed with prometheus_client's own parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[sample.name, frozenset(sample.labels.items())] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a labelled series not seen yet (a counter that has not counted)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str) -> bool:
        return any(key[0] == name for key in self.samples)


async def scrape(client: Api) -> Scrape:
    response = await client.get("/metrics")
    assert response.status == 200, response.body
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return Scrape(response.body.decode())


async def until(client: Api, condition: Callable[[Scrape], bool], seconds: float = 10) -> Scrape:
    """Scrape until `condition` holds (gauges are sampled every second in a worker)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = await scrape(client)
        if condition(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the metrics never showed it:\n" + result.text)
        await asyncio.sleep(0.05)
