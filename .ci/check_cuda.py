"""Compile every CUDA source of torch_utils/ops with nvcc for sm_80 and sm_90, and every .cpp with
the CUDA branch enabled, against a CUDA build of PyTorch, without a GPU (`make check-cuda`).

Run it with the Python of a venv holding the CUDA wheel. Fails (exit 1) on any compile error or
on any warning located in our own sources; warnings inside PyTorch's headers are not ours.
"""

import concurrent.futures
import os
import subprocess
import sys
import tempfile

import torch
from torch.utils import cpp_extension

OPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "torch_utils", "ops")
ARCHS = ("80", "90")


def _commands(out_dir):
    includes = [f"-I{p}" for p in cpp_extension.include_paths("cuda")]
    nvcc = os.path.join(cpp_extension.CUDA_HOME or "/usr/local/cuda", "bin", "nvcc")
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ARCHS]
    for name in sorted(os.listdir(OPS)):
        src = os.path.join(OPS, name)
        obj = os.path.join(out_dir, name + ".o")
        if name.endswith(".cu"):
            yield name, [nvcc, "-std=c++20", "-O3", "-c", src, "-o", obj, *includes, *gencode,
                         *cpp_extension.COMMON_NVCC_FLAGS, "-Xcompiler", "-Wall,-fPIC"]
        elif name.endswith(".cpp"):
            yield name, [os.environ.get("CXX", "c++"), "-std=c++20", "-O2", "-fPIC", "-Wall",
                         "-c", src, "-o", obj, *includes, "-DRAYCOND_WITH_CUDA",
                         "-DRAYCOND_NS=raycond_ops"]


def _run(item):
    name, cmd = item
    proc = subprocess.run(cmd, capture_output=True, text=True)
    ours = [line for line in (proc.stdout + proc.stderr).splitlines()
            if OPS in line and "warning" in line.lower()]
    return name, proc.returncode, ours, proc.stderr


def main():
    print(f"check-cuda: torch {torch.__version__} (CUDA {torch.version.cuda}), sm_{'/sm_'.join(ARCHS)}")
    failed = False
    with tempfile.TemporaryDirectory() as out_dir, \
            concurrent.futures.ThreadPoolExecutor(int(os.environ.get("CHECK_CUDA_JOBS", "2"))) as pool:
        for name, rc, ours, stderr in pool.map(_run, list(_commands(out_dir))):
            if rc != 0:
                print(f"check-cuda: {name}: compile error\n{stderr}")
                failed = True
            elif ours:
                print(f"check-cuda: {name}: warnings in our sources:\n" + "\n".join(ours))
                failed = True
            else:
                print(f"check-cuda: {name}: ok")
    print("check-cuda: FAILED" if failed else "check-cuda: all sources compile cleanly")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
