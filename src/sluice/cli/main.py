"""The ``sluice`` command. Thin: parse flags, build Settings, call the library.

Errors are one line on stderr: exit 2 for usage and configuration problems, 1 for
runtime failures.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sluice.errors import ConfigError, SluiceError

if TYPE_CHECKING:
    from sluice.settings import Settings

app = typer.Typer(
    name="sluice",
    help="A streaming LLM chat gateway with a built-in simulated model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-C", help="TOML config file ([[models]] tables and settings)."),
]


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"sluice: error: {message}", err=True)
    return typer.Exit(code)


@app.command()
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-C",
            envvar="SLUICE_CONFIG",
            help="TOML config file ([[models]] tables and settings).",
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind [default: 8000].")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes [default: 1].")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where the SQLite store lives [default: ~/.local/share/sluice]."),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Allow a non-loopback address with no authentication configured.",
        ),
    ] = False,
) -> None:
    """Run the gateway: the OpenAI-compatible API, the chat API and the web page."""
    from sluice.http.server import require_shared_state
    from sluice.http.server import serve as run_server
    from sluice.settings import Settings

    try:
        settings = Settings.load(
            config,
            host=host,
            port=port,
            workers=workers,
            data_dir=data_dir,
            insecure_no_auth=insecure_no_auth or None,
        )
        refuse_open_exposure(settings)
        require_shared_state(settings)
        # Builds the app before serving: a bad model table fails here, with exit 2, not
        # in a worker.
        run_server(settings)
    except ConfigError as exc:
        raise fail(exc.message, 2) from None


def refuse_open_exposure(settings: Settings) -> None:
    """No authentication on an address others can reach is a mistake, not a default."""
    from sluice.cli.keys import any_authentication

    if is_loopback(settings.host) or settings.insecure_no_auth:
        return
    if not any_authentication(settings):
        raise ConfigError(
            f"refusing to serve on {settings.host} with no authentication: anyone who can "
            "reach it could spend your upstream credits. Set SLUICE_MASTER_KEY or create a "
            "key with `sluice keys create`, bind 127.0.0.1, or pass --insecure-no-auth if "
            "you really mean it"
        )


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def sim(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 9000,
    ttft_ms: Annotated[float, typer.Option(help="Time to first token, ms.")] = 250.0,
    tokens_per_second: Annotated[
        float, typer.Option("--tps", help="Tokens per second; 0 = as fast as possible.")
    ] = 60.0,
    jitter: Annotated[float, typer.Option(help="Random gap variation, 0..1.")] = 0.2,
    length: Annotated[int, typer.Option(help="Answer length in tokens.")] = 250,
    max_length: Annotated[
        int,
        typer.Option(min=1, help="Longest answer a request's `sim.length` may ask for."),
    ] = 20000,
) -> None:
    """Serve the simulated model as a standalone OpenAI-compatible upstream."""
    import uvicorn

    from sluice.http.sim_server import SimServer
    from sluice.providers.sim.options import SimLimits, SimOptions

    try:
        options = SimOptions.parse(
            {
                "ttft_ms": ttft_ms,
                "tokens_per_second": tokens_per_second,
                "jitter": jitter,
                "length": length,
            },
            where="sim",
        )
    except SluiceError as exc:
        raise fail(exc.message.replace("'sim.", "'--").replace("_", "-"), 2) from None
    uvicorn.run(
        # The operator's own --length is never refused (`sluice bench` sizes it).
        SimServer(options, SimLimits(max_length=max(max_length, length))),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
    )


@app.command()
def bench(
    streams: Annotated[int, typer.Option(min=1, help="Concurrent streams.")] = 200,
    rounds: Annotated[int, typer.Option(min=1, help="Streams in all = streams x rounds.")] = 3,
    chunks: Annotated[int, typer.Option(min=1, help="Tokens (chunks) per stream.")] = 50,
    ttft_ms: Annotated[float, typer.Option(min=0, help="Upstream time to first token, ms.")] = 0,
    tokens_per_second: Annotated[
        float, typer.Option("--tps", min=0, help="Upstream tokens per second per stream.")
    ] = 50,
    direct: Annotated[
        bool, typer.Option(help="Also run the load straight at the upstream, to compare.")
    ] = True,
    floor: Annotated[
        bool, typer.Option(help="Also run a raw-bytes relay, this machine's floor.")
    ] = True,
    features: Annotated[
        str,
        typer.Option(
            help="on: the gateway as deployed (an API key with rate limits and a budget, "
            "usage records, metrics, the request log); off: the relay alone, no key."
        ),
    ] = "on",
    guardrails: Annotated[
        str,
        typer.Option(
            help="on: PII masking and a keyword block on input and output (the hold-back "
            "window on every answer); off: none."
        ),
    ] = "off",
    port: Annotated[int, typer.Option(help="Port for the gateway under test.")] = 18080,
    upstream_port: Annotated[int, typer.Option(help="Port for the sim upstream.")] = 19090,
    hold: Annotated[
        int | None,
        typer.Option(min=1, help="Instead: hold N slow streams open and report memory per stream."),
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option(
            help="Instead: the response cache, hit against miss, on this backend "
            "(memory, database or redis at 127.0.0.1:6379)."
        ),
    ] = None,
    questions: Annotated[
        int, typer.Option(min=1, help="With --cache: distinct questions per pass.")
    ] = 500,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Measure at each --concurrency and write SVG charts into this directory "
            "(ttft.svg, inter_token.svg, cpu_per_chunk.svg)."
        ),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(
            help="With --plot: concurrent streams to measure at, comma-separated "
            "(each: --rounds x that many streams) [default: 10,50,100,200]."
        ),
    ] = None,
    floor_port: Annotated[int, typer.Option(help="Port for the floor relay.")] = 18090,
) -> None:
    """Measure the gateway: TTFT and inter-token latency, chunks/s, CPU per chunk."""
    from sluice.bench.run import BenchOptions, run, run_hold

    if features not in ("on", "off"):
        raise fail(f"--features {features!r}: pick on or off", 2)
    if guardrails not in ("on", "off"):
        raise fail(f"--guardrails {guardrails!r}: pick on or off", 2)
    options = BenchOptions(
        features=features == "on",
        guardrails=guardrails == "on",
        streams=streams,
        rounds=rounds,
        chunks=chunks,
        ttft_ms=ttft_ms,
        tokens_per_second=tokens_per_second,
        direct=direct,
        floor=floor,
        port=port,
        upstream_port=upstream_port,
        floor_port=floor_port,
    )
    if cache is not None and cache not in ("memory", "database", "redis"):
        raise fail(f"--cache {cache!r}: pick memory, database or redis", 2)
    if plot is not None and (cache is not None or hold is not None):
        raise fail("--plot measures latency and CPU; run --cache or --hold on its own", 2)
    if concurrency is not None and plot is None:
        raise fail("--concurrency goes with --plot DIR (without it, use --streams)", 2)
    if plot is not None:
        from sluice.bench.plot import DEFAULT_CONCURRENCY, parse_concurrency, run_plot

        try:
            levels = parse_concurrency(concurrency) if concurrency else DEFAULT_CONCURRENCY
        except ValueError as exc:
            raise fail(str(exc), 2) from None
        try:
            measured = run_plot(options, levels, lambda line: typer.echo(line, err=True))
        except RuntimeError as exc:
            raise fail(str(exc), 1) from None
        typer.echo(measured.render())
        for path in measured.write(plot):
            typer.echo(f"wrote {path}")
        return
    try:
        if cache is not None:
            from sluice.bench.cache import run_cache

            typer.echo(run_cache(options, questions=questions, backend=cache))
            return
        if hold is not None:
            typer.echo(run_hold(options, hold))
            return
        report = run(options)
    except RuntimeError as exc:
        raise fail(str(exc), 1) from None
    typer.echo(report.render())


# chat, ask and history: the terminal client (cli/terminal.py); keys: cli/keys.py.
from sluice.cli.cache import cache_app  # noqa: E402
from sluice.cli.keys import keys_app  # noqa: E402
from sluice.cli.logs import register as _register_logs  # noqa: E402
from sluice.cli.terminal import register as _register_terminal  # noqa: E402
from sluice.cli.top import register as _register_top  # noqa: E402

_register_terminal(app)
_register_top(app)
_register_logs(app)
app.add_typer(keys_app, name="keys")
app.add_typer(cache_app, name="cache")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
