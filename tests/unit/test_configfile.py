"""Configuration files are regular files of at most 1 MiB, read without blocking.

Each case runs through both file loaders, the policy's and the prices', since they share
one reader (``_configfile``); and through ``instrument()`` and ``llmmeter policy check``,
which reach it.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import llmmeter
from llmmeter import ConfigError, RulePolicy
from llmmeter._configfile import MAX_CONFIG_BYTES, load_toml, read_config
from llmmeter._pricing import load_overrides
from tests.cli_runner import run_cli

POLICY = '[[rules]]\nname = "r"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\n'
PRICES = '[models."house-7"]\ninput = 1\noutput = 2\n'

LOADERS: dict[str, tuple[Callable[[str], object], str, str]] = {
    "policy": (RulePolicy.load, "policy file", POLICY),
    "prices": (load_overrides, "prices file", PRICES),
}
"""Each loader, the name its messages give the file, and a document it accepts."""

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")


@pytest.fixture(params=list(LOADERS))
def loader(request: pytest.FixtureRequest) -> tuple[Callable[[str], object], str, str]:
    return LOADERS[request.param]


@pytest.fixture
def fed_fifo(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A named pipe with a writer waiting to feed it: a loader that opens it gets a document
    (so the loader before this fix read it, and did not hang) and one that does not is
    refused. The list is the document to write, set by the test."""
    path = tmp_path / "pipe.toml"
    os.mkfifo(path)
    document: list[str] = []

    def feed() -> None:
        try:
            with open(path, "w", encoding="utf-8") as pipe:  # waits for a reader
                pipe.write("".join(document))
        except BrokenPipeError:  # the reader closed without reading
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    yield path, document
    # Release a writer still waiting for a reader: be one, without blocking.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    writer.join(60)
    os.close(descriptor)
    assert not writer.is_alive(), "the FIFO's writer never finished"


@needs_fifo
def test_a_named_pipe_is_refused_unread(
    loader: tuple[Callable[[str], object], str, str], fed_fifo: tuple[Path, list[str]]
) -> None:
    load, what, document = loader
    path, feed = fed_fifo
    feed.append(document)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert str(info.value) == (
        f"{path}: expected the {what} to be a regular file; got a named pipe (FIFO)"
    )


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null here")
def test_a_device_is_refused_without_being_opened(
    loader: tuple[Callable[[str], object], str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening some devices acts (a tape rewinds); /dev/zero would be read without end."""
    load, what, _ = loader
    opened: list[str] = []
    real_open = os.open

    real_builtin_open = open

    def watched_open(name: Any, *args: Any, **kwargs: Any) -> int:
        if name == "/dev/null":
            opened.append("os.open")
        return real_open(name, *args, **kwargs)

    def watched_builtin_open(name: Any, *args: Any, **kwargs: Any) -> Any:
        if name == "/dev/null":
            opened.append("open")
        return real_builtin_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", watched_open)
    monkeypatch.setattr("builtins.open", watched_builtin_open)
    with pytest.raises(ConfigError) as info:
        load("/dev/null")
    monkeypatch.undo()
    assert opened == []
    assert str(info.value) == (
        f"/dev/null: expected the {what} to be a regular file; got a character device"
    )


def test_a_directory_is_refused(
    loader: tuple[Callable[[str], object], str, str], tmp_path: Path
) -> None:
    load, what, _ = loader
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path))
    assert str(info.value) == (
        f"{tmp_path}: expected the {what} to be a regular file; got a directory"
    )


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets here")
def test_a_socket_is_refused(
    loader: tuple[Callable[[str], object], str, str], tmp_path: Path
) -> None:
    load, what, _ = loader
    path = tmp_path / "s.toml"
    if len(str(path)) > 100:
        pytest.skip("the temporary path is too long for a socket address")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(ConfigError) as info:
            load(str(path))
    assert str(info.value) == f"{path}: expected the {what} to be a regular file; got a socket"


def test_a_link_to_a_regular_file_is_read(
    loader: tuple[Callable[[str], object], str, str], tmp_path: Path
) -> None:
    """Kubernetes mounts a ConfigMap's files as links into a directory it swaps."""
    load, _, document = loader
    target = tmp_path / "data" / "config.toml"
    target.parent.mkdir()
    target.write_text(document)
    link = tmp_path / "config.toml"
    try:
        link.symlink_to(target)
    except OSError:
        pytest.skip("no symbolic links here")
    load(str(link))


def test_a_path_with_a_nul_character_is_a_config_error(
    loader: tuple[Callable[[str], object], str, str],
) -> None:
    load, what, _ = loader
    with pytest.raises(ConfigError) as info:
        load("policy\x00.toml")
    assert str(info.value) == f"'policy\\x00.toml': cannot read the {what}: embedded null byte"


def _padded(document: str, size: int) -> bytes:
    """``document`` followed by a TOML comment, ``size`` bytes in all."""
    head = document.encode() + b"#"
    return head + b"x" * (size - len(head) - 1) + b"\n"


def test_a_file_of_exactly_the_bound_is_read(
    loader: tuple[Callable[[str], object], str, str], tmp_path: Path
) -> None:
    load, _, document = loader
    path = tmp_path / "config.toml"
    path.write_bytes(_padded(document, MAX_CONFIG_BYTES))
    load(str(path))


def test_a_file_over_the_bound_is_refused_naming_its_size(
    loader: tuple[Callable[[str], object], str, str], tmp_path: Path
) -> None:
    load, what, document = loader
    path = tmp_path / "config.toml"
    path.write_bytes(_padded(document, MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert str(info.value) == (
        f"{path}: expected a {what} of at most 1 MiB (1,048,576 bytes); got 1,048,577 bytes"
    )


def test_a_file_growing_past_the_bound_while_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The size ``fstat`` gave is not trusted: reading stops one byte past the bound."""
    path = tmp_path / "config.toml"
    path.write_bytes(_padded(POLICY, 1000))
    real_fstat = os.fstat
    grown: list[bool] = []

    def small_fstat(descriptor: int) -> Any:
        result = real_fstat(descriptor)
        if not grown:  # the file grows after the descriptor is checked
            grown.append(True)
            with path.open("ab") as grow:
                grow.write(b"#" + b"x" * MAX_CONFIG_BYTES + b"\n")
        return result

    monkeypatch.setattr(os, "fstat", small_fstat)
    with pytest.raises(ConfigError, match=r"at most 1 MiB \(1,048,576 bytes\); got more$"):
        read_config(str(path), "policy file")


def test_the_version_is_the_file_that_was_read(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(POLICY)
    data, version = load_toml(str(path), "policy file")
    st = path.stat()
    assert data["rules"][0]["name"] == "r"
    assert version == (st.st_mtime_ns, st.st_size, st.st_ino)


# --- what tomllib lets out besides TOMLDecodeError --------------------------------------


def test_a_decimal_integer_too_long_to_convert_is_a_config_error(
    loader: tuple[Callable[[str], object], str, str], tmp_path: Path
) -> None:
    """tomllib raises a bare ValueError for it (the interpreter's 4300-digit limit)."""
    load, _, _ = loader
    path = tmp_path / "config.toml"
    path.write_text("x = " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError) as info:
        load(str(path))
    limit = sys.get_int_max_str_digits()
    assert str(info.value) == f"{path}: not valid TOML: an integer of more than {limit} digits"


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ("mode = 0x{digits}\n", "mode"),
        ('[[rules]]\nname = "r"\nfrom = "a"\nto = "b"\nsample = 0x{digits}\n', "rules[0].sample"),
        ('[models."gpt-4.1"]\ninput = 0x{digits}\noutput = 1\n', 'models."gpt-4.1".input'),
        ("a = [[1, 0o{octal}]]\n", "a[0][1]"),
    ],
)
def test_a_hex_integer_too_long_to_print_is_a_config_error_naming_its_key(
    tmp_path: Path, document: str, key: str
) -> None:
    """It parses, then any message quoting it would raise ValueError: refused at load."""
    path = tmp_path / "config.toml"
    path.write_text(document.format(digits="f" * 4000, octal="7" * 6000))
    with pytest.raises(ConfigError) as info:
        load_toml(str(path), "policy file")
    assert str(info.value).startswith(
        f"{path}: {key}: expected a number of at most {sys.get_int_max_str_digits()} digits; "
        "got an integer of "
    )
    for load, _, _ in LOADERS.values():  # and so through both loaders
        with pytest.raises(ConfigError):
            load(str(path))


def test_long_integers_that_print_still_reach_the_loaders_own_checks(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[rules]]\nname = "r"\nfrom = "a"\nto = "b"\nsample = ' + "9" * 400 + "\n")
    with pytest.raises(ConfigError, match=r"rules\[0\] \(r\)\.sample: expected a fraction"):
        RulePolicy.load(path)


# --- the ways in ---------------------------------------------------------------------------


@needs_fifo
@pytest.mark.parametrize("variable", ["LLMMETER_POLICY", "LLMMETER_PRICES"])
def test_instrument_refuses_a_named_pipe_from_the_environment(
    variable: str, fed_fifo: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, feed = fed_fifo
    feed.append(POLICY if variable == "LLMMETER_POLICY" else PRICES)
    monkeypatch.setenv(variable, str(path))
    try:
        with pytest.raises(ConfigError, match="to be a regular file; got a named pipe"):
            llmmeter.instrument()
    finally:
        llmmeter.uninstrument()


@needs_fifo
def test_policy_check_refuses_a_named_pipe(
    capsys: pytest.CaptureFixture[str], fed_fifo: tuple[Path, list[str]]
) -> None:
    path, feed = fed_fifo
    feed.append(POLICY)
    code, out, err = run_cli(capsys, "policy", "check", str(path))
    assert (code, out) == (2, "")
    assert err == (
        f"llmmeter: error: {path}: expected the policy file to be a regular file; "
        "got a named pipe (FIFO)\n"
    )
