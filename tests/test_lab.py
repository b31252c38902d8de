"""JupyterLab: `make lab` starts as root too and listens on 127.0.0.1 only; and notebook 05 run
inside JupyterLab itself, in Debian's Chromium, classifies an uploaded real VOC2007 photo.

JupyterLab is started once for the module, by `make lab` (this checkout's Makefile, run in a
folder whose notebooks/ holds a papermill-prepared copy of notebook 05 for the suite's shared tiny
trained run, as `make browse` prepares it). The second test runs all cells from JupyterLab's Run
menu, uploads a photo in the "Predict Image" tab, then stops `make lab` and finds the notebook's
kernel shut down; its screenshot goes to /tmp/browser_shots/lab_predict.png.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from test_browser_ui import (
    SHOTS,
    choose_file,
    free_port,
    opened_page,
    prepare_notebook,
    wait_for_image,
    wait_until_serving,
)
from test_browser_ui import browser as browser  # fixture: one headless Chromium per module

from vocproj.config import PROJECT_DIR, Profile, load_profile
from vocproj.data.voc import CLASSES
from vocproj.images import decode_image
from vocproj.metrics.thresholds import NOT_IDENTIFIED, labels_at_threshold
from vocproj.reporting.browser import load_classifier, predict_probabilities

from conftest import needs_chromium, without_make_environment

START_S = 120  # JupyterLab imports its server extensions: a while on a busy 2-core machine
STOP_S = 60  # SIGTERM to answer: the server shuts its kernels down, then exits
KERNEL_TIMEOUT_MS = 300_000  # a fresh kernel imports torch, loads the model, predicts, charts
TCP_LISTEN = "0A"  # the state column of a listening socket in /proc/net/tcp
AS_ROOT = os.geteuid() == 0
RUN_ALL_ATTEMPTS, START_TIMEOUT_MS = 3, 30_000
ANY_CELL_STARTED = """() => [...document.querySelectorAll(".jp-CodeCell .jp-InputPrompt")]
    .some((p) => /^\\[(\\d+|\\*)\\]:$/.test(p.innerText.trim()))"""  # [*]: running, [n]: ran
EVERY_CELL_RAN = """() => {
    const prompts = [...document.querySelectorAll(".jp-CodeCell .jp-InputPrompt")];
    return prompts.length > 0 && prompts.every((p) => /^\\[\\d+\\]:$/.test(p.innerText.trim()));
}"""  # each code cell's prompt shows its execution count: not [*]: (running) nor [ ]: (not run)


# ---------------------------------------------------------------- servers in a process group


def stop_process_group(leader: subprocess.Popen, seconds: float) -> bool:
    """SIGTERM the leader's process group and wait until all of it exited; SIGKILL it after
    `seconds`. Whether it stopped by itself."""
    try:
        os.killpg(leader.pid, signal.SIGTERM)
    except ProcessLookupError:  # it exited already (and the caller says why)
        return True
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        leader.poll()  # reap the leader, or its zombie keeps the group alive
        try:
            os.killpg(leader.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    os.killpg(leader.pid, signal.SIGKILL)
    leader.wait()
    return False


@contextmanager
def serving(command: list[str], url: str, log: Path, name: str, **popen) -> Iterator[None]:
    """Run a server in a process group of its own, logging to `log`, from its first answer at
    `url` until the block ends; then stop the group and fail if it had to be killed."""
    with open(log, "w") as output:
        server = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, **popen
        )
    try:
        wait_until_serving(url, server, log, seconds=START_S, name=name)
        yield
    finally:
        stopped = stop_process_group(server, STOP_S)
    if not stopped:
        pytest.fail(f"{name} ignored SIGTERM for {STOP_S} s and was killed:\n{log.read_text()}")


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on `port`, IPv4 and IPv6 (Linux)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == TCP_LISTEN and int(hex_port, 16) == port:
                found.add(proc_net_address(address))
    return found


def proc_net_address(hex_address: str) -> str:
    """An address as /proc/net/tcp* writes it: hex, in 32-bit words of host (little) endianness."""
    raw = bytes.fromhex(hex_address)
    return str(ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))))


# ---------------------------------------------------------------- make lab, started once


def own_lab_settings(folder: Path) -> dict[str, str]:
    """An environment whose JupyterLab keeps its user settings and workspaces in `folder`, so
    nothing of a person's JupyterLab (open tabs, settings) changes what the test sees; and
    that never asks to fetch Jupyter's news (a pop-up over the app, and no network here) and
    renders every cell (its prompt is what says it ran)."""
    settings = folder / "lab-settings"
    notifications = settings / "@jupyterlab" / "apputils-extension"
    notifications.mkdir(parents=True)
    (notifications / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    notebooks = settings / "@jupyterlab" / "notebook-extension"
    notebooks.mkdir(parents=True)  # every cell in the DOM, not only those scrolled into view
    (notebooks / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    return {
        **without_make_environment(),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(folder / "lab-workspaces"),
    }


@dataclass(frozen=True)
class Lab:
    """`make lab` serving a prepared notebook 05: where, with which token, logging to `log`;
    `stop()` stops it (SIGTERM to its process group) and fails if it had to be killed."""

    port: int
    url: str
    token: str
    log: Path
    notebook: str
    stop: Callable[[], None]


def printed_token(log: Path, url: str, seconds: float = START_S) -> str:
    """The token of the `URL/lab?token=...` line JupyterLab prints once it serves."""
    deadline = time.monotonic() + seconds
    while (found := re.search(rf"{re.escape(url)}lab\?token=(\w+)", log.read_text())) is None:
        assert time.monotonic() < deadline, f"no {url}lab?token= line:\n{log.read_text()}"
        time.sleep(0.5)
    return found[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, tiny_yaml: Path) -> Iterator[Lab]:
    """`make lab`, as a user runs it, in a folder whose notebooks/ holds notebook 05 prepared for
    the tiny run: started once for the module. Make runs this checkout's Makefile (`-f`) with
    the venv running these tests, already installed (`make test` installs it): no pip here."""
    folder = tmp_path_factory.mktemp("lab")
    (folder / "notebooks").mkdir()
    notebook = prepare_notebook(tiny_yaml, folder / "notebooks")
    port, log, venv = free_port(), folder / "make_lab.log", Path(sys.prefix)
    make_lab = ["make", "-f", str(PROJECT_DIR / "Makefile"), "-o", f"{venv}/.installed", "lab",
                f"VENV={venv}", f"LAB_PORT={port}"]  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    with ExitStack() as running:
        env = own_lab_settings(folder)
        running.enter_context(serving(make_lab, url, log, "make lab", cwd=folder, env=env))
        yield Lab(port, url, printed_token(log, url), log, notebook.name, running.close)


def test_make_lab_starts_as_root_and_listens_on_localhost_only(lab: Lab):
    assert listening_addresses(lab.port) == {"127.0.0.1"}
    assert f"{lab.url}lab?token={lab.token}" in lab.log.read_text()
    jupyter_command = lab.log.read_text().split("\n[")[0]  # make echoes the command first
    assert ("--allow-root" in jupyter_command) == AS_ROOT
    assert "--no-browser" in jupyter_command


# ---------------------------------------------------------------- notebook 05 inside JupyterLab


@pytest.fixture
def lab_page(browser: Browser, lab: Lab) -> Iterator[Page]:
    """Notebook 05 open in the module's JupyterLab, its kernel started and idle."""
    url = f"{lab.url}lab/tree/{lab.notebook}?token={lab.token}"
    with opened_page(browser, url, 1400, 1200) as page:
        wait_for_idle_kernel(page)
        yield page


def wait_for_idle_kernel(page: Page) -> None:
    """Wait until the notebook's toolbar says its kernel is idle (started, and nothing to run)."""
    indicator = page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator")
    expect(indicator).to_have_attribute("data-status", "idle", timeout=KERNEL_TIMEOUT_MS)


def dismiss_dialogs(page: Page) -> None:
    """Close any JupyterLab dialog that would take the menu's clicks (on a loaded machine one may
    open, e.g. about a slow kernel), saying what it was; its safe answer (Cancel, Escape)."""
    dialogs = page.locator(".jp-Dialog")
    while (count := dialogs.count()) > 0:
        dialog = dialogs.last
        print("JupyterLab dialog dismissed:", " ".join(dialog.inner_text().split()))
        cancel = dialog.locator(".jp-mod-reject")
        if cancel.count():
            cancel.first.click()
        else:
            page.keyboard.press("Escape")
        expect(dialogs).to_have_count(count - 1)


def open_restart_dialog(page: Page) -> None:
    """Kernel ▸ Restart Kernel…: a dialog in the way of the menu bar until it is answered."""
    page.get_by_role("menuitem", name="Kernel", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Restart Kernel(…|\.\.\.)")).click()
    expect(page.locator(".jp-Dialog")).to_have_count(1)


def run_all_cells(page: Page) -> None:
    """Run ▸ Run All Cells from JupyterLab's menu bar; wait until every code cell has run
    (its prompt shows an execution count, not [*] or [ ]) and the kernel is idle."""
    for _ in range(RUN_ALL_ATTEMPTS):  # on a loaded machine the first click can come too early
        dismiss_dialogs(page)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            page.wait_for_function(ANY_CELL_STARTED, timeout=START_TIMEOUT_MS)
            break
        except PlaywrightTimeoutError:
            continue
    page.wait_for_function(EVERY_CELL_RAN, timeout=KERNEL_TIMEOUT_MS)
    wait_for_idle_kernel(page)


def expected_result(profile: Profile, photo: Path) -> list[str]:
    """What the Predict tab should list for a photo at notebook 04's threshold: "class p" for
    each class found, highest first, or Not Identified."""
    metrics = json.loads((profile.report_dir / "metrics.json").read_text())
    image = decode_image(photo.read_bytes(), photo.name)
    probabilities = predict_probabilities(load_classifier(profile), image)
    found = labels_at_threshold(CLASSES, probabilities, metrics["best_threshold_f1"]["threshold"])
    return [f"{name} {p:.3f}" for name, p in found] or [NOT_IDENTIFIED]


def shown_result(result: Locator) -> list[str]:
    """What the Predict tab lists: its label chips' text, or the one line (Not Identified)."""
    chips = result.locator("span").all_inner_texts() or [result.inner_text()]
    return [" ".join(chip.split()) for chip in chips]


@pytest.mark.slow
@needs_chromium
def test_notebook_05_in_jupyterlab_classifies_an_uploaded_real_photo(
    lab: Lab, lab_page: Page, tiny_yaml: Path, real_voc: Path
):
    page, photo = lab_page, real_voc / "JPEGImages" / "000002.jpg"  # a train at a station
    open_restart_dialog(page)
    run_all_cells(page)  # dismisses the dialog first, as it would one a slow machine opened
    app = page.locator(".jp-OutputArea-output .widget-tab")
    chart, image = app.locator(".vocproj-chart"), app.locator(".vocproj-predict-image")
    page.get_by_role("tab", name="Predict Image").click()
    old_chart, old_image = wait_for_image(chart), wait_for_image(image)  # the example's

    choose_file(page, photo)
    expect(app).to_contain_text(photo.name)
    wait_for_image(image, other_than=old_image)
    wait_for_image(chart, other_than=old_chart)  # drawn after the labels are shown
    assert shown_result(app.locator(".vocproj-predict-result")) == expected_result(
        load_profile(tiny_yaml), photo
    )
    expect(app.locator(".vocproj-predict-message")).to_be_empty()
    assert "Traceback" not in page.locator(".jp-NotebookPanel").inner_text()

    SHOTS.mkdir(parents=True, exist_ok=True)
    app.scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "lab_predict.png")

    lab.stop()  # SIGTERM to the process group of `make lab`: make and JupyterLab
    assert "received signal 15, stopping" in lab.log.read_text()
    assert "Kernel shutdown" in lab.log.read_text(), lab.log.read_text()
