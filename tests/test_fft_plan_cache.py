"""The cuFFT plan cache of the fused FFT loss (csrc/fft_loss/plan_cache.h), run on the CPU.

The header is free of torch and CUDA, so a small driver compiled here with g++ instantiates it with
integer "plans" and logs every create/destroy. The cuFFT glue that uses it (fft_loss_cuda.cpp) only
runs on a GPU; there the capture check comes from cudaStreamIsCapturing.

Driver: `driver MAX_SIZE COMMAND...`, each command one argument: `get K` (setup succeeds), `capture K` (lookup while a CUDA graph is
being captured), `failsetup K` (setup throws, as cufftMakePlanMany64 can), `failcreate K` (create throws,
as cufftCreate can), `size`. It prints one line per event and, after the cache is destroyed,
`live N`: plans created minus plans destroyed.
"""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADER_DIR = ROOT / "csrc" / "fft_loss"
CXX = os.environ.get("CXX", "g++")

DRIVER = r"""
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include "plan_cache.h"

static int g_live = 0;

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "env") == 0) {
    try {
      std::printf("size %zu\n", gansr::plan_cache_size_from_env(argv[2]));
    } catch (const std::invalid_argument& e) {
      std::printf("error %s\n", e.what());
    }
    return 0;
  }
  {
    auto destroy = [](int& plan) { std::printf("destroy %d\n", plan); --g_live; };
    gansr::PlanCache<int, int, decltype(destroy)> cache(std::atoi(argv[1]), destroy);
    for (int i = 2; i < argc; ++i) {
      char cmd[16] = "";
      int key = 0;
      std::sscanf(argv[i], "%15s %d", cmd, &key);
      if (std::strcmp(cmd, "size") == 0) {
        std::printf("size %zu\n", cache.size());
        continue;
      }
      const bool fail_create = std::strcmp(cmd, "failcreate") == 0;
      const bool fail_setup = std::strcmp(cmd, "failsetup") == 0;
      try {
        int* plan = cache.get(key, std::strcmp(cmd, "capture") == 0,
            [&] {
              if (fail_create) throw std::runtime_error("create failed");
              std::printf("create %d\n", key);
              ++g_live;
              return key;
            },
            [&](int&) { if (fail_setup) throw std::runtime_error("setup failed"); });
        if (plan) std::printf("got %d\n", *plan); else std::printf("miss %d\n", key);
      } catch (const std::runtime_error& e) {
        std::printf("error %d %s\n", key, e.what());
      }
    }
  }
  std::printf("live %d\n", g_live);
  return 0;
}
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    build = tmp_path_factory.mktemp("plan_cache")
    source, exe = build / "driver.cpp", build / "driver"
    source.write_text(DRIVER)
    done = subprocess.run([CXX, "-std=c++17", "-O0", "-Wall", "-Werror", f"-I{HEADER_DIR}", str(source), "-o", str(exe)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return exe


def run(driver, max_size, *commands):
    done = subprocess.run([str(driver), str(max_size), *commands], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_cache_is_bounded_and_evicts_least_recently_used(driver):
    out = run(driver, 2, "get 1", "get 2", "get 1", "get 3", "size", "get 4", "size")
    # 1 was used after 2, so 3 evicts 2; then 4 evicts 1.
    assert out == ["create 1", "got 1", "create 2", "got 2", "got 1", "create 3", "destroy 2", "got 3",
                   "size 2", "create 4", "destroy 1", "got 4", "size 2", "destroy 4", "destroy 3", "live 0"]


def test_many_shapes_keep_at_most_max_size_plans(driver):
    out = run(driver, 3, *[f"get {k}" for k in range(50)], "size")
    size_at = next(i for i, line in enumerate(out) if line.startswith("size"))
    assert out[size_at] == "size 3"
    assert sum(line.startswith("destroy") for line in out[:size_at]) == 47
    assert out[-1] == "live 0"


def test_failing_setup_destroys_the_handle(driver):
    out = run(driver, 4, "get 1", "failsetup 2", "size", "get 2")
    assert out == ["create 1", "got 1", "create 2", "destroy 2", "error 2 setup failed", "size 1",
                   "create 2", "got 2", "destroy 2", "destroy 1", "live 0"]


def test_failing_create_destroys_nothing(driver):
    out = run(driver, 4, "failcreate 5", "size")
    assert out == ["error 5 create failed", "size 0", "live 0"]


def test_capture_never_creates_a_plan(driver):
    out = run(driver, 4, "capture 9", "size")
    assert out == ["miss 9", "size 0", "live 0"]


def test_plan_used_during_capture_is_never_evicted(driver):
    # A captured graph replays plan 1 later: a bound of 1 must not destroy it.
    out = run(driver, 1, "get 1", "capture 1", "get 2", "get 3", "size")
    assert out == ["create 1", "got 1", "got 1", "create 2", "got 2", "create 3", "destroy 2", "got 3", "size 2",
                   "destroy 3", "destroy 1", "live 0"]


@pytest.mark.parametrize("value, expected", [("", "size 64"), ("8", "size 8"), ("1", "size 1"),
                                             ("0", "error"), ("-3", "error"), ("abc", "error"), ("12x", "error")])
def test_cache_size_from_environment(driver, value, expected):
    out = subprocess.run([str(driver), "env", value], capture_output=True, text=True, timeout=30).stdout.strip()
    if expected == "error":
        assert out == f"error GANSR_FFT_PLAN_CACHE_SIZE must be a positive integer, got '{value}'"
    else:
        assert out == expected
