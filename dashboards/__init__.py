"""Grafana dashboards as code: built with grafana-foundation-sdk, queried in InfluxQL, provisioned or pushed.

`build.DASHBOARDS` lists them; `kartech dashboards build` writes `generated/`; `kartech dashboards push` sends them
to a Grafana through its HTTP API. See README.md.
"""
