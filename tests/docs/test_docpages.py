"""The page runner of ``tests/docpages.py``: what each directive does, and what it refuses."""

from __future__ import annotations

import socket
import sys
import textwrap
from pathlib import Path

import pytest

from tests.docpages import Page, blocks, install_arguments, needs_scratch_directory

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def page(tmp_path: Path, text: str) -> Page:
    path = tmp_path / "page.md"
    path.write_text(textwrap.dedent(text))
    return Page.open(path, BIN, root=ROOT)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_files_are_written_in_a_scratch_directory_where_shell_blocks_run(tmp_path: Path) -> None:
    reader = page(
        tmp_path,
        """
        <!-- file: hello.py -->

        ```python
        print("hello from a file")
        ```

        ```sh
        python hello.py
        ```

        <!-- output -->

        ```text
        hello from a file
        ```
        """,
    )
    with reader:
        assert reader.directory != ROOT
        reader.follow()
        assert (reader.directory / "hello.py").exists()
    assert not reader.directory.exists()  # removed at the page's end


def test_an_output_the_command_did_not_print_fails_with_both(tmp_path: Path) -> None:
    text = "```sh\necho 1\n```\n\n<!-- output -->\n\n```text\n2\n```\n"
    shows = r"(?s)shows\n2\n.*printed ---\n1"
    with page(tmp_path, text) as reader, pytest.raises(AssertionError, match=shows):
        reader.follow()


def test_a_background_server_is_waited_for_and_stopped_at_the_end(tmp_path: Path) -> None:
    port = free_port()
    text = f"""
        <!-- background: {port} ready -->

        ```sh
        touch ready && exec python -m http.server {port} --bind 127.0.0.1
        ```

        ```sh
        python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/')"
        ```
        """
    with page(tmp_path, text) as reader:
        reader.follow()
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # stopped with the page


def test_a_busy_port_fails_at_once_naming_it(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        text = f"<!-- background: {port} -->\n\n```sh\nsleep 60\n```\n"
        busy_port = f"port {port} on 127.0.0.1 is already in use"
        with page(tmp_path, text) as reader, pytest.raises(AssertionError, match=busy_port):
            reader.follow()


def test_a_background_command_that_exits_early_fails_with_its_output(tmp_path: Path) -> None:
    text = f"<!-- background: {free_port()} -->\n\n```sh\necho cannot start; exit 3\n```\n"
    early = r"(?s)exited 3 before it was ready.*cannot start"
    with page(tmp_path, text) as reader, pytest.raises(AssertionError, match=early):
        reader.follow()


def test_a_file_outside_the_page_directory_is_refused(tmp_path: Path) -> None:
    text = "<!-- file: ../x.py -->\n\n```python\npass\n```\n"
    with page(tmp_path, text) as reader, pytest.raises(AssertionError, match="relative path"):
        reader.follow()


def test_a_page_without_directives_runs_from_the_repository_root(tmp_path: Path) -> None:
    assert not needs_scratch_directory("```sh\nls\n```\n")
    assert page(tmp_path, "```sh\ntest -f conftest.py\n```\n").directory == ROOT


def test_the_readme_installs_what_the_getting_started_page_installs() -> None:
    def install_line(path: Path) -> list[str]:
        (line,) = [
            b.source
            for b in blocks(path.read_text())
            if b.directive and b.directive.name == "install"
        ]
        return install_arguments(line)

    page_line = install_line(ROOT / "docs" / "getting-started.md")
    assert install_line(ROOT / "README.md") == page_line
    assert page_line[0] == "ajwt-core[idp,rs,cli]"
