"""The `kartech` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.errors import ConfigError
from gateway.stopping import Stopper

if TYPE_CHECKING:
    from gateway.runtime import Runtime
    from simulators.lab import VirtualLab

log = logging.getLogger("kartech")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO_ROOT / "config" / "demo.yaml"
# environment variables config/demo.yaml takes its simulated printers' credentials from; `kartech demo` draws them
DEMO_SECRETS = ("KARTECH_DEMO_BAMBU_ACCESS_CODE", "KARTECH_DEMO_PRUSALINK_PASSWORD", "KARTECH_DEMO_OCTOPRINT_KEY")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    for noisy in ("uvicorn.access", "amqtt", "transitions", "httpx", "asyncua", "hpack", "fontTools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from gateway.redact import install

    install()  # no URL credentials or tokens in any log line


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.config.loader import check_text, report
    from gateway.registry import discover

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        print(f"{path}: cannot read: {err}", file=sys.stderr)
        return 1
    result = check_text(text, args.file, discover(), require_env=args.require_env)
    if result.notes:
        unset = sorted({n.message.split()[3].rstrip(",") + f" (line {n.line})" for n in result.notes})
        print(f"note: not set in this environment (needed where the gateway runs): {', '.join(unset)}",
              file=sys.stderr)
    if result.problems:
        print(report(result.problems, started=True), file=sys.stderr)
        return 1
    cfg = result.config
    assert cfg is not None
    print(f"{args.file}: OK — site {cfg.site.id!r}, {len(cfg.machines)} machines, "
          f"{len(cfg.mqtt.brokers)} MQTT broker(s)")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from gateway.config.schema import schema_text
    from gateway.registry import discover

    text = schema_text(discover())
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


async def _run(cfg_path: Path, args: argparse.Namespace, stopper: Stopper, *, demo: bool) -> int:
    from gateway.config.loader import load
    from gateway.registry import discover
    from gateway.runtime import Runtime

    specs = discover()
    tokens: dict[str, tuple[str, str]] = {}
    data_dir: Path | None = None
    cleanup: Path | None = None
    if demo:
        if args.data_dir:
            data_dir = Path(args.data_dir)
        else:
            data_dir = cleanup = Path(tempfile.mkdtemp(prefix="kartech-demo-"))
        # the virtual serial ports (pseudo-terminal links) of this demo live in its own directory
        os.environ.setdefault("KARTECH_DEMO_RUN_DIR", str(data_dir / "serial"))
        # the simulated network printers' credentials (config/demo.yaml names them as ${...}): drawn at every start
        for name in DEMO_SECRETS:
            os.environ.setdefault(name, secrets.token_hex(8))
    cfg = load(cfg_path, specs)
    stop = asyncio.Event()
    stopper.install(stop, getattr(args, "seconds", None))
    lab: VirtualLab | None = None
    if demo:
        from simulators.lab import VirtualLab
        from simulators.mqtt_lab import planned_faults

        cfg = cfg.model_copy(update={"api": cfg.api.model_copy(update={"port": args.port, "host": args.host})})
        token = os.environ.get("KARTECH_ADMIN_TOKEN") or secrets.token_urlsafe(24)
        tokens[token] = ("demo-admin", "admin")
        # simulators listen on free ports where they can, and the gateway is pointed at them: two demos on one
        # machine never read each other's machines. Those needing nothing of the gateway (OPC UA servers, serial
        # ports) start before it, so that its drivers find them at once.
        lab = VirtualLab(specs, free_ports=True, faults=planned_faults(DEMO_CONFIG))
        for line in await asyncio.to_thread(lab.start, cfg, with_settings=False):
            log.info("simulator %s", line)
        cfg = lab.reachable(cfg)
    rt = Runtime(cfg, specs, data_dir=data_dir, tokens=tokens)  # type: ignore[arg-type]
    if lab is not None:
        demo_lab = lab

        def started(rt: Runtime) -> None:
            # the rest (MQTT machines) once the embedded broker has its port, with the devices' credentials
            for line in demo_lab.start(rt.devices_cfg(), with_settings=True):
                log.info("simulator %s", line)
            url = f"http://{args.host}:{rt.api_port}/"
            print(f"\nKartech demo is running: {url}\n{_demo_logins(rt, url)}\n"
                  f"  admin token (scripts): {next(iter(tokens))}\n"
                  f"  machines: {len(rt.cfg.machines)} — API: {url}api/v1/machines — docs: {url}docs\n"
                  "  stop with Ctrl-C\n", flush=True)

        rt.on_started.append(started)
    rt_stop = asyncio.Event()

    async def stop_in_order() -> None:
        await stop.wait()
        log.info("stopping (%s)", stopper.reason or "requested")
        if lab is not None:  # the MQTT simulators first: their broker is the gateway's
            await asyncio.to_thread(lab.stop_with_settings)
        rt_stop.set()

    stopper_task = asyncio.create_task(stop_in_order())
    try:
        await rt.run(rt_stop)
    finally:
        stopper_task.cancel()
        if lab is not None:  # the gateway's drivers have stopped: now the machines they read
            await asyncio.to_thread(lab.stop)
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
    return 0


def _demo_logins(rt: Runtime, url: str) -> str:
    from gateway.accounts.demo import demo_logins
    from gateway.accounts.store import Accounts

    if rt.services is None:
        return f"  no logins: {rt.services_error or 'the business store is off'}"
    billing = rt.cfg.billing
    partners = [p.id for p in billing.partners] if billing is not None else []
    accounts = Accounts(rt.services.store, clock=rt.services.clock, partners=lambda: partners)
    return demo_logins(accounts, url, partner=partners[0] if partners else None)


def _until_stopped(run: Callable[[Stopper], Coroutine[Any, Any, int]]) -> int:
    stopper = Stopper()
    try:
        return asyncio.run(run(stopper))
    finally:
        stopper.finished()


def cmd_demo(args: argparse.Namespace) -> int:
    if args.data_dir:
        args.data_dir = os.path.abspath(args.data_dir)
    return _until_stopped(lambda stopper: _run(DEMO_CONFIG, args, stopper, demo=True))


def cmd_run(args: argparse.Namespace) -> int:
    return _until_stopped(lambda stopper: _run(Path(args.config), args, stopper, demo=False))


def cmd_simulate(args: argparse.Namespace) -> int:
    from gateway.config.loader import load
    from gateway.registry import discover
    from simulators.lab import VirtualLab

    specs = discover()
    cfg = load(args.config, specs)

    async def main(stopper: Stopper) -> int:
        stop = asyncio.Event()
        stopper.install(stop, args.seconds)
        lab = VirtualLab(specs)
        for line in lab.start(cfg):
            print(line, flush=True)
        try:
            await stop.wait()
        finally:
            lab.stop()
        return 0

    return _until_stopped(main)


def cmd_status(args: argparse.Namespace) -> int:
    import httpx

    token = args.token or os.environ.get("KARTECH_TOKEN", "")
    try:
        r = httpx.get(f"{args.url.rstrip('/')}/api/v1/health", timeout=5)
        r.raise_for_status()
    except httpx.HTTPError as err:
        print(f"gateway at {args.url} not reachable: {err}", file=sys.stderr)
        return 1
    metrics_text: str | None = None
    if token:
        m = httpx.get(f"{args.url.rstrip('/')}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        if m.status_code == 200:
            metrics_text = m.text
        else:
            print(f"/metrics answered {m.status_code}: check the token", file=sys.stderr)
    if args.json:
        print(json.dumps(r.json(), indent=2))
        if metrics_text is not None:
            print("\n".join(line for line in metrics_text.splitlines() if not line.startswith("#")))
        return 0
    from gateway.status import render

    sys.stdout.write(render(args.url, r.json(), metrics_text))
    return 0


def cmd_dashboards_build(args: argparse.Namespace) -> int:
    from dashboards.build import GENERATED_DIR, write

    out = Path(args.out) if args.out else GENERATED_DIR
    for path in write(out):
        print(path)
    return 0


def cmd_dashboards_push(args: argparse.Namespace) -> int:
    from dashboards.push import TOKEN_ENV, PushError, push
    from gateway.redact import redact

    if not os.environ.get(TOKEN_ENV) and "@" not in args.grafana:
        print(f"note: {TOKEN_ENV} is not set; pushing without a token", file=sys.stderr)
    try:
        changes = push(args.grafana, dry_run=args.dry_run)
    except PushError as err:
        print(redact(f"push to {args.grafana} failed: {err}"), file=sys.stderr)
        return 1
    prefix = "would " if args.dry_run else ""
    for change in changes:
        print(prefix + str(change) if change.action != "unchanged" else str(change))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kartech", description="Kartech Gateway — machines in, telemetry out.")
    p.add_argument("--version", action="version", version=f"kartech {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the whole virtual lab plus the gateway on embedded defaults")
    d.add_argument("--port", type=int, default=8080, help="web page and API port (default 8080; 0 picks one)")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    d.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    d.add_argument("--data-dir", default=None, help="keep history here (default: a temporary directory)")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="production run")
    r.add_argument("--config", required=True, help="site YAML file")
    r.add_argument("--seconds", type=float, default=None, help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check-config", help="validate a site file; exit 1 listing every problem")
    c.add_argument("file")
    c.add_argument("--require-env", action="store_true",
                   help="treat unset ${ENV_VARS} as problems (as `kartech run` does)")
    c.set_defaults(func=cmd_check_config)

    s = sub.add_parser("simulate", help="run the simulators of a site file alone")
    s.add_argument("--config", required=True)
    s.add_argument("--seconds", type=float, default=None)
    s.set_defaults(func=cmd_simulate)

    sc = sub.add_parser("schema", help="print the JSON Schema of site files")
    sc.add_argument("--out", default=None)
    sc.set_defaults(func=cmd_schema)

    st = sub.add_parser("status", help="health and counters of a running gateway")
    st.add_argument("--url", default="http://127.0.0.1:8080")
    st.add_argument("--token", default=None, help="API token (or KARTECH_TOKEN)")
    st.add_argument("--json", action="store_true", help="print the raw health JSON and metrics instead of tables")
    st.set_defaults(func=cmd_status)

    from gateway.notify.cli import add_commands as add_alert_commands

    add_alert_commands(sub)

    from gateway.billing.cli import add_commands as add_billing_commands

    add_billing_commands(sub)

    from gateway.accounts.cli import add_commands as add_users_commands

    add_users_commands(sub)

    db = sub.add_parser("dashboards", help="Grafana dashboards: build the JSON and provisioning files, or push them")
    dbs = db.add_subparsers(dest="dashboards_command", required=True)
    dbb = dbs.add_parser("build", help="write dashboards JSON and Grafana provisioning files")
    dbb.add_argument("--out", default=None, help="output directory (default: dashboards/generated)")
    dbb.set_defaults(func=cmd_dashboards_build)
    dbp = dbs.add_parser("push", help="create or update folder, datasource and dashboards in a Grafana (GRAFANA_TOKEN)")
    dbp.add_argument("--grafana", required=True, help="Grafana base URL, e.g. http://grafana:3000")
    dbp.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    dbp.set_defaults(func=cmd_dashboards_push)

    from gateway.registry import discover

    for spec in discover().values():
        if spec.commands is not None:
            spec.commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
