"""The chip designer's report as a flow step: an experiment's formats on its datasets' frontiers and the
best pick per budget (`peppp.report`), logged as a `report` MLflow run and shown as a Prefect artifact.
Trains nothing; run it after a meta-train sweep (`meta_train`), or with registered frontiers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows._report import report_page, run_logger
from peppp.report import FormatReport


@dataclass(frozen=True)
class ReportSummary:
    """The report and the MLflow run holding its CSV and PNG artifacts."""

    experiment: str
    tracking_uri: str
    report: FormatReport
    run_id: str


@task(name="format-report", cache_policy=NO_CACHE)
def report_task(experiment: str, budgets_mb: list[float] | None, frontiers: list[str], measured: bool,
                recipe: str | None, tracking_uri: str) -> tuple[FormatReport, str]:
    """Build the report from the store and log it as a `report` run; returns it and the run id."""
    from peppp.tracking import experiment_report, log_format_report

    report = experiment_report(experiment, budgets_mb=budgets_mb, frontiers=frontiers, measured=measured,
                               recipe=recipe, tracking_uri=tracking_uri)
    return report, log_format_report(experiment, report, tracking_uri=tracking_uri)


@flow(name="format-report")
def format_report_flow(
    experiment: str,
    budgets_mb: Sequence[float] | None = None,
    frontiers: Sequence[str] = (),
    measured: bool = True,
    recipe: str | None = None,
    tracking_uri: str | None = None,
) -> ReportSummary:
    """Which formats are on `experiment`'s frontiers (its measured meta cells and/or the registered
    frontiers named), and the best pick at each budget (MB; default: quantiles of the measured memory)."""
    from peppp.tracking import resolve_tracking_uri, run_link

    uri = resolve_tracking_uri(tracking_uri)
    report, run_id = report_task(experiment, None if budgets_mb is None else [float(b) for b in budgets_mb],
                                 list(frontiers), measured, recipe, uri)
    link = run_link(experiment, run_id, tracking_uri=uri)
    run_logger().info(f"format report of {len(report.datasets)} datasets of {experiment!r}: {link}")
    report_page(experiment=experiment, report=report, run_link=link)
    return ReportSummary(experiment=experiment, tracking_uri=uri, report=report, run_id=run_id)
