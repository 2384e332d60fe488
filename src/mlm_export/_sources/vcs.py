"""Where the code defining a model lives: its git remote, commit and whether the tree was dirty.

The repository is found from the file of the module that defines the model's class. Remote and commit are
read from the ``.git`` files directly; only the dirty check runs ``git status`` (local, with a timeout,
fsmonitor and hooks off, no network). Credentials in a remote URL are never reported. A class installed from a
VCS URL (``pip install git+...``) is traced through its distribution's ``direct_url.json``.
"""

from __future__ import annotations

import configparser
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

GIT_TIMEOUT_S = 5.0
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True)
class SourceFacts:
    """The code a model's class comes from."""

    #: ``package.module:Class`` (None for a class defined in ``__main__``: it cannot be imported).
    entrypoint: str | None
    root: Path | None = None
    remote: str | None = None
    commit: str | None = None
    branch: str | None = None
    #: True when tracked files differed from the commit; None when git could not tell.
    dirty: bool | None = None

    @property
    def href(self) -> str | None:
        """A link to the code at its commit where the host is known, else the remote; None without a remote."""
        if self.remote and self.commit:
            m = re.match(r"^https://(github\.com|gitlab\.com|codeberg\.org)/(.+?)(?:\.git)?/?$", self.remote)
            if m:
                sep = "/-/tree/" if m.group(1) == "gitlab.com" else "/tree/"
                return f"https://{m.group(1)}/{m.group(2)}{sep}{self.commit}"
        return self.remote  # a local folder means nothing to others (and tells them the user's paths)


def source_facts(obj: Any, *, run_git: bool = True) -> SourceFacts | None:
    """The repository and entrypoint of the class of ``obj``; None when the class comes from nowhere known.

    Where the class is found: its module's file in a git work tree; a distribution installed from a VCS URL;
    else the git work tree of the running script (``__main__``), the training project that used the class.
    """
    cls = obj if isinstance(obj, type) else type(obj)
    module_name = cls.__module__ or ""
    entrypoint = f"{module_name}:{cls.__qualname__}" if module_name not in ("", "__main__") else None
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if file:
        git_dir, root = find_git_dir(Path(file).resolve().parent)
        if git_dir is not None and root is not None:
            remote, commit, branch = read_git(git_dir)
            dirty = git_dirty(root) if run_git else None
            return SourceFacts(entrypoint, root, remote, commit, branch, dirty)
    installed = _installed_from_vcs(module_name.split(".", 1)[0])
    if installed is not None:
        remote, commit = installed
        return SourceFacts(entrypoint, None, remote, commit)
    # a class from an installed library (a TorchGeo task) trained by a script: the script's project
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if script:
        git_dir, root = find_git_dir(Path(script).resolve().parent)
        if git_dir is not None and root is not None:
            remote, commit, branch = read_git(git_dir)
            return SourceFacts(entrypoint, root, remote, commit, branch, git_dirty(root) if run_git else None)
    return None


def find_git_dir(start: Path) -> tuple[Path | None, Path | None]:
    """The git directory and work-tree root above ``start`` (a ``.git`` folder, or a ``.git`` file of a worktree)."""
    for folder in (start, *start.parents):
        dotgit = folder / ".git"
        if dotgit.is_dir():
            return dotgit, folder
        if dotgit.is_file():
            text = dotgit.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                target = Path(text.removeprefix("gitdir:").strip())
                target = target if target.is_absolute() else (folder / target).resolve()
                if target.is_dir():
                    return target, folder
        if folder.name in ("site-packages", "dist-packages"):  # never climb out of an installed package
            break
    return None, None


def read_git(git_dir: Path) -> tuple[str | None, str | None, str | None]:
    """Remote URL (origin, else the first, credentials removed), HEAD commit and branch, from the files."""
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():  # a linked worktree keeps refs and config in the main git directory
        common = (git_dir / commondir.read_text(encoding="utf-8").strip()).resolve()
    commit = branch = None
    head = _read(git_dir / "HEAD")
    if head and head.startswith("ref:"):
        ref = head.removeprefix("ref:").strip()
        commit = _resolve_ref(git_dir, common, ref)
        branch = ref.removeprefix("refs/heads/") if ".." not in ref.split("/") else None
    elif head and _SHA.match(head):
        commit = head
    return _remote(common / "config"), commit, branch


def _resolve_ref(git_dir: Path, common: Path, ref: str) -> str | None:
    if ".." in ref.split("/"):
        return None
    for base in (git_dir, common):
        value = _read(base / ref)
        if value and _SHA.match(value):
            return value
    packed = _read(common / "packed-refs")
    for line in (packed or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == ref and _SHA.match(parts[0]):
            return parts[0]
    return None


def _remote(config_path: Path) -> str | None:
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read(config_path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeError):
        return None
    remotes = {s[len('remote "') : -1]: s for s in parser.sections() if s.startswith('remote "') and s.endswith('"')}
    for name in ("origin", *sorted(remotes)):
        if name in remotes and parser.has_option(remotes[name], "url"):
            return public_url(parser.get(remotes[name], "url"))
    return None


def public_url(url: str) -> str | None:
    """A remote URL without credentials, as https where it is an scp-like ssh address; None for a local path."""
    url = url.strip()
    scp = re.match(r"^(?:[\w.-]+@)?([\w.-]+\.[a-z]{2,}):(?!/)(.+)$", url)
    if scp:
        return f"https://{scp.group(1)}/{scp.group(2)}"
    parts = urlsplit(url)
    if parts.scheme in ("http", "https", "ssh", "git") and parts.hostname:
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        scheme = "https" if parts.scheme in ("ssh", "git") else parts.scheme
        return urlunsplit((scheme, host, parts.path, "", ""))
    return None  # a local path or file:// remote says nothing to others


def git_dirty(root: Path) -> bool | None:
    """Whether tracked files differ from HEAD (``git status``, local only); None when git is not there or fails."""
    git = shutil.which("git")
    if git is None:
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0")
    try:
        out = subprocess.run(
            [git, "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-C", str(root),
             "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, timeout=GIT_TIMEOUT_S, env=env, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def _installed_from_vcs(top_module: str) -> tuple[str | None, str | None] | None:
    """Remote and commit of a distribution installed from a VCS URL (PEP 610 ``direct_url.json``)."""
    from .runtime import distributions_of

    for dist in distributions_of(top_module):
        try:
            text = md.distribution(dist).read_text("direct_url.json")
            info = json.loads(text) if text else None
        except (md.PackageNotFoundError, ValueError):
            continue
        if not isinstance(info, dict):
            continue
        vcs = info.get("vcs_info")
        if isinstance(vcs, dict) and vcs.get("commit_id"):
            return public_url(str(info.get("url", ""))), str(vcs["commit_id"])
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
