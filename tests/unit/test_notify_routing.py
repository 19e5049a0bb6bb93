"""Which channels an alert transition goes to: by severity, lab and whether the channel wants clears."""

from __future__ import annotations

from gateway.config.operations import Message, WebhookChannel
from gateway.notify.routing import routes


def test_routes_by_severity_lab_and_clear() -> None:
    chans = [WebhookChannel(id="all", type="webhook", url="http://x/1", min_severity="low"),
             WebhookChannel(id="crit", type="webhook", url="http://x/2", min_severity="critical"),
             WebhookChannel(id="mat", type="webhook", url="http://x/3", labs=["materials"], on_clear=True)]
    assert routes(chans, severity="high", lab="materials", transition="raised") == ["all", "mat"]
    assert routes(chans, severity="critical", lab="printfarm", transition="raised") == ["all", "crit"]
    assert routes(chans, severity="critical", lab="materials", transition="cleared") == ["mat"]
    assert Message(en="x", ru="y").en == "x"
