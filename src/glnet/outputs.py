"""Where a command may write: never over or inside what it reads, and all
of its outputs or none.

A user's images, checkpoints and label stores are worth more than any
result computed from them, and a result that is half there (a mask without
the class scores asked for beside it) is easy to mistake for a whole one.
Every command that writes (``glnet segment``, ``convert``, ``export``,
``train``, ``finetune`` and the napari writer) checks its outputs with
:func:`refuse_overlap` before it writes anything, and commands with several
output files write them through :func:`all_or_none`.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from glnet.errors import GLNetError, describe_os_error, os_error_reason

PathLike = str | os.PathLike[str]


def _real(path: PathLike) -> Path:
    """The path with every symlink resolved, also when it does not exist yet
    (its existing parent folders are resolved)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def _same_file(a: Path, b: Path) -> bool:
    try:  # hard links: two names, one file
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(inner: Path, outer: Path) -> bool:
    return inner != outer and inner.is_relative_to(outer)


def overlap(output: PathLike, source: PathLike) -> str | None:
    """How writing ``output`` would touch ``source``, or None when it cannot:
    the same file (by path, symlink or hard link), the output inside the
    source folder, or the source inside the output folder (which replacing
    the output would delete)."""
    out, src = _real(output), _real(source)
    if out == src or _same_file(out, src):
        return "is"
    if _inside(out, src):
        return "is inside"
    if _inside(src, out):
        return "contains"
    return None


def refuse_overlap(outputs: Mapping[str, PathLike | None], inputs: Mapping[str, PathLike | None]) -> None:
    """Refuse (a GLNetError) any output that is, is inside, or contains an
    input, or another output.

    ``outputs`` and ``inputs`` map what a path is (e.g. ``"output"``,
    ``"--logits"``, ``"input image"``) to the path; None entries are skipped.
    Symlinks are resolved, so a link to the input is the input.  Runs before
    anything is written, whatever ``--overwrite`` says.
    """
    outs = [(name, path) for name, path in outputs.items() if path is not None]
    ins = [(name, path) for name, path in inputs.items() if path is not None]
    for i, (out_name, out) in enumerate(outs):
        for in_name, src in ins:
            how = overlap(out, src)
            if how is not None:
                raise GLNetError(
                    f"{out_name} {out} {how} the {in_name} {src}: refusing to write it (choose another path)"
                )
        for other_name, other in outs[i + 1 :]:
            how = overlap(out, other)
            if how is not None:
                raise GLNetError(f"{out_name} {out} {how} the {other_name} {other}: choose different paths")


def check_writable(folder: PathLike) -> None:
    """Fail before any work, not after it, when nothing can be written in
    ``folder`` (read-only, no permission, /proc): a file is made and removed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GLNetError(f"output folder {folder} does not exist")
    probe = folder / f".glnet-probe-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as e:
        raise GLNetError(f"cannot write in {folder}: {os_error_reason(e)}") from None


def check_new_file(path: PathLike, overwrite: bool) -> None:
    """An output file may be written: its folder exists and is writable, and
    it does not exist unless ``overwrite``; it is never a folder."""
    path = Path(path)
    if path.is_dir():
        raise GLNetError(f"{path} is a folder: give a file name")
    if path.exists() and not overwrite:
        raise GLNetError(f"{path} exists: pass --overwrite to replace it")
    check_writable(path.parent)


def staging_path(path: PathLike) -> Path:
    """A hidden name beside ``path`` with the same suffix (writers choose the
    format by suffix), for writing ``path`` before it is published."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}")


@contextmanager
def all_or_none(paths: Iterable[PathLike]) -> Iterator[list[Path]]:
    """Hidden paths to write the outputs ``paths`` to; they are renamed onto
    ``paths`` only when the block ends without an error, else removed, so a
    failing second output (a full disk) never leaves the first one behind.

    The renames come last and are each atomic; only a crash between two of
    them (not an error) leaves some outputs published and not others."""
    finals = [Path(p) for p in paths]
    staged = [staging_path(p) for p in finals]
    try:
        try:
            yield staged
        except (OSError, GLNetError) as e:  # name the output, not its hidden stand-in
            message = describe_os_error(e) if isinstance(e, OSError) else str(e)
            if isinstance(e, OSError) and e.errno is None:  # numpy's short writes say only the byte counts
                free = shutil.disk_usage(finals[0].parent).free
                message = (
                    f"cannot write {', '.join(map(str, finals))}: {message} ({free} bytes free: is the disk full?)"
                )
            for tmp, final in zip(staged, finals):
                message = message.replace(str(tmp), str(final))
            raise GLNetError(f"{message}; no output was written") from None
        for tmp, final in zip(staged, finals):
            if not tmp.exists():
                raise GLNetError(f"{final} was not written")
        for tmp, final in zip(staged, finals):
            os.replace(tmp, final)
    finally:
        for tmp in staged:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
