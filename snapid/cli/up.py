"""`snapid up PHOTOS`: your own photos to a served identification page in one command."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import typer

from snapid.cli.common import console, emit_json, engine, progress_bar, settings, workspace


def up(
    photos: Path = typer.Argument(..., help="A folder of photos (one sub-folder per class, or any layout `snapid data "
                                  "import` reads), an archive, or a CSV / JSON manifest."),
    name: str | None = typer.Option(None, "--name", help="Dataset name (default: the folder's or file's name)."),
    budget: str = typer.Option("10m", "--budget", help="Wall time for training, e.g. 90s, 10m, 1h; the recipe is "
                               "planned to fit it on this machine."),
    force: bool = typer.Option(False, "--force", help="Go on even when the same photos are in more than one split."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve the page at the end (--no-serve: stop after "
                               "the export)."),
    host: str = typer.Option("127.0.0.1", help="Address to serve on (0.0.0.0 lets phones on your network reach it)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port of the web page."),
    public_url: str = typer.Option("", "--public-url",
                                   help="Base URL phones use for the QR hand-off (default: detected)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout (dataset, run, "
                                 "bundle, metrics, threshold) before serving."),
) -> None:
    """Import, inspect, train (calibrated), export and serve: one command from photos to the page.

    Running it again on the same folder reuses what has not changed: the same photos make no new
    dataset version, a run already trained on it with the same budget is reused, and its bundle too.
    A run that crashed or was stopped is resumed from its last checkpoint.
    """
    from snapid.cli.train import RichReporter
    from snapid.images import DecodeLimits
    from snapid.pipeline import up as run_up

    s = settings()
    say = (lambda text: None) if as_json else (lambda text: console.print(text, markup=False, highlight=False))
    limits = DecodeLimits.from_settings(s)

    with ExitStack() as bars, RichReporter(quiet=as_json) as reporter:
        def progress(stage: str):  # a bar per stage that reports progress, closed when the pipeline ends
            return bars.enter_context(progress_bar(stage, quiet=as_json))

        result = run_up(photos, workspace=workspace(), engine=engine(), name=name, budget=budget, force=force,
                        workers=s.workers, limits=limits, say=say, progress=progress, reporter=reporter)
    if as_json:
        emit_json(result.as_dict())
    else:
        figures = ", ".join(f"{split} top-1 {value:.3f}" for split, value in result.metrics.items())
        console.print(f"[green]ready[/]: {result.bundle} ({figures}; 'not sure' below {result.threshold:.2f})",
                      highlight=False)
    if not serve:
        if not as_json:
            console.print(f"serve it with `snapid serve {result.run}`", markup=False, highlight=False)
        return
    from snapid.cli.serve import print_urls
    from snapid.serve.launch import serve_forever

    print_urls(host, port, public_url, flag="snapid up")
    serve_forever(Path(result.bundle), settings=s, host=host, port=port, public_url=public_url)
