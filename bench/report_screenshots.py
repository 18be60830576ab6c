"""The README's pictures of `cnnrun report`: a run's page and a folder of runs' page, as Chromium shows them.

Writes both pages with `cnnrun.tasks.report.write_report`, opens each in the headless Chromium the browser tests
use (tests/browser.py: /usr/bin/chromium through Playwright, `make install` puts it there) at `--width` pixels and
saves the whole page, top to bottom, as PNG: `report_run.png` and `report_runs.png` in `--out`.

Without RUN_DIR it trains configs/quickstart.yaml (`--config`, `--set`) once per `--rates` learning rate into a
temporary folder (`--output-dir DIR` keeps it), with `cnnrun train` as a user runs it: the first run is the run
page's, the three together the runs page's, so its table and "What differs" have something to show.

Usage (from the project root):
    .venv/bin/python bench/report_screenshots.py [RUN_DIR --runs FOLDER] [--out docs/images] [--width 1200]
        [--config configs/quickstart.yaml] [--rates 0.002 0.0005 0.01] [--output-dir DIR]

Tiny mode (what tests/test_bench.py runs): a tiny run's folder and the folder that holds it, `--out` a temporary
folder.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from machine import cpu_line
from report import PROJECT, train

sys.path.insert(0, str(PROJECT))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", type=Path, help="a finished run folder (default: train the runs)")
    parser.add_argument("--runs", type=Path, help="a folder of runs (with RUN_DIR)")
    parser.add_argument("--out", type=Path, default=PROJECT / "docs" / "images", help="where the PNGs go")
    parser.add_argument("--width", type=int, default=1200, help="the browser window's width in pixels")
    parser.add_argument("--config", type=Path, default=PROJECT / "configs" / "quickstart.yaml")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override, repeatable")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.002, 0.0005, 0.01],
                        help="one run with Adam at each learning rate")
    parser.add_argument("--output-dir", type=Path, help="keep the trained runs here")
    args = parser.parse_args(argv)
    if (args.run_dir is None) != (args.runs is None):
        parser.error("give RUN_DIR and --runs FOLDER together, or neither (then the runs are trained)")
    return args


def screenshots(pages: dict[str, Path], out: Path, width: int) -> dict[str, tuple[int, int]]:
    """Open each HTML page in Chromium `width` pixels wide and save the whole page as `out/<name>.png`; the
    pictures' sizes (width, height) in pixels."""
    from playwright.sync_api import sync_playwright

    from tests.browser import launch

    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    with sync_playwright() as playwright:
        browser = launch(playwright)
        context = browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)
        for name, page_file in pages.items():
            page = context.new_page()
            page.goto(page_file.resolve().as_uri(), wait_until="load")
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            sizes[name] = page.evaluate("() => [document.documentElement.scrollWidth, "
                                        "document.documentElement.scrollHeight]")
            page.close()
        browser.close()
    return sizes


def main(argv: list[str]) -> int:
    args = parse(argv)
    from cnnrun.tasks.report import write_report
    from tests.browser import CHROMIUM

    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is absent: `make install` as root installs Debian's chromium package")
        return 1
    with tempfile.TemporaryDirectory(prefix="report-screenshots-") as scratch:
        folder = (args.output_dir or Path(scratch)).resolve()
        run, runs, out, config = args.run_dir, args.runs, args.out.resolve(), args.config.resolve()
        if run is None:  # trained in `folder`, named from there: the pages show `runs/rate0/…`, not a temporary path
            folder.mkdir(parents=True, exist_ok=True)
            os.chdir(folder)
            runs = Path("runs")
            trained = [train(config, [*args.sets, f"compile.optimizer={{name: adam, learning_rate: {rate}}}"],
                             runs / f"rate{i}") for i, rate in enumerate(args.rates)]
            run = trained[0]
        print(cpu_line())
        pages = {"report_run": write_report([run], Path(scratch) / "run.html").path,
                 "report_runs": write_report([runs], Path(scratch) / "runs.html").path}
        sizes = screenshots(pages, out, args.width)
        os.chdir(PROJECT)  # out of the temporary folder before it is removed
    for name, (width, height) in sizes.items():
        print(f"{args.out / name}.png: {width} × {height} pixels")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
