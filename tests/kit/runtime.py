"""Running a real in-process gateway in an integration test: its site, its life, messages to its broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config.loader import check_text
from gateway.config.site import SiteConfig
from gateway.registry import discover
from gateway.runtime import Runtime

SPECS = discover()


def mqtt_site(port: int, site_id: str, data_dir: Path, rest: str) -> SiteConfig:
    """A checked site on the broker `lab` (127.0.0.1:`port`) with local history off; `rest` is the YAML of the
    machines and whatever else the test needs."""
    text = f"""
site: {{id: {site_id}, name: Test}}
storage:
  data_dir: {data_dir}
  local_history: {{enabled: false}}
mqtt:
  brokers:
    - {{id: lab, host: 127.0.0.1, port: {port}, client_id: gw-{site_id}}}
{rest}"""
    result = check_text(text, "test.yaml", SPECS, {})
    assert result.problems == [], result.problems
    assert result.config is not None
    return result.config


def publish(port: int, messages: Sequence[tuple[str, str]]) -> None:
    """Publish (topic, body) pairs at QoS 1 to the broker at 127.0.0.1:`port`, each acknowledged (blocking)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for topic, body in messages:
            c.publish(topic, body, qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


@asynccontextmanager
async def running(rt: Runtime, timeout_s: float = 20.0) -> AsyncIterator[Runtime]:
    """Run `rt` until the block ends; the block starts once it is up and every driver is connected."""
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    try:
        async with asyncio.timeout(timeout_s):
            await rt.started.wait()
            while not all(c.is_connected for c in rt.contexts):
                await asyncio.sleep(0.05)
        yield rt
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout_s)
