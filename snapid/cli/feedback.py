"""`snapid feedback sweep`, `snapid data merge-feedback DATASET` and `snapid promote CANDIDATE --over CURRENT`."""

from __future__ import annotations

import typer

from snapid.cli.common import Split, console, emit_json, engine, settings, workspace

app = typer.Typer(help="Saved photos and user feedback.", no_args_is_help=True)


@app.command()
def sweep(
    keep_days: float | None = typer.Option(None, "--keep-days", min=0,
                                           help="Delete saved photos older than this many days "
                                                "(default SNAPID_KEEP_DAYS; 0: only those past their own limit)."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Delete saved photos past the retention limit, orphan files and rows whose photo is gone."""
    from snapid.feedback.storage import PhotoStore

    s = settings()
    store = PhotoStore(workspace().uploads, engine(), keep_days=s.keep_days)
    result = {**store.sweep_retention(keep_days), **store.sweep_orphans()}
    if as_json:
        emit_json(result)
        return
    console.print(f"deleted {result['deleted_uploads']} saved photos older than {result['keep_days']:g} days, "
                  f"{result['orphan_files']} orphan files, {result['rows_without_file']} rows without a photo",
                  markup=False)


def merge_feedback(
    dataset: str = typer.Argument(..., help="The dataset that gets a new version with the approved feedback photos."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Approved feedback photos become train samples of a new version of DATASET (never test)."""
    from snapid.feedback.merge import merge_feedback as merge

    result = merge(dataset, workspace=workspace(), engine=engine())
    if as_json:
        emit_json(result)
        return
    skipped = ", ".join(f"{n} {why}" for why, n in result["skipped"].items()) or "none"
    if result["version"] is None:
        console.print(f"{dataset}: nothing new to merge (skipped: {skipped})", markup=False)
        return
    console.print(f"{dataset} v{result['version']}: {result['added']} photos from {result['feedback']} approved "
                  f"feedback added to train (from v{result['from_version']}; skipped: {skipped})", markup=False)


def promote(
    candidate: str = typer.Argument(..., help="The run (or ensemble) that may replace the current one."),
    over: str = typer.Option(..., "--over", help="The run currently promoted (the champion)."),
    margin: float = typer.Option(0.005, "--margin", min=0, max=0.999,
                                 help="Top-1 gain the candidate needs (0.005 = 0.5 points)."),
    split: Split = typer.Option(Split.test, "--split", help="The fixed split both are scored on."),
    as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON."),
) -> None:
    """Evaluate CANDIDATE and CURRENT on the same fixed test split; promote the candidate only when it is
    better by the margin. Its bundle goes to <workspace>/bundles/<dataset>-promoted: a server started on that
    folder (`snapid serve <workspace>/bundles/<dataset>-promoted`) loads each new promotion within
    SNAPID_RELOAD_POLL_S seconds, without a restart."""
    split = split.value
    from snapid.feedback.promote import promote as decide

    result = decide(candidate, over=over, workspace=workspace(), engine=engine(), margin=margin, split=split,
                    progress=None if as_json else (lambda message: console.print(message, markup=False)))
    if as_json:
        emit_json(result)
    else:
        boot = result["details"].get("bootstrap")
        interval = f"; 95% interval of the gain [{boot['low']:+.4f}, {boot['high']:+.4f}]" if boot else ""
        verdict = f"promoted: {result['bundle_path']}" if result["promoted"] else "refused: the current run stays"
        console.print(f"{verdict}\n{result['reason']}{interval}", markup=False)
    if not result["promoted"]:
        raise typer.Exit(2)  # scripts can tell "refused" from success and from an error (1)
