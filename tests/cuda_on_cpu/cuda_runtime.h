// Stand-in for CUDA's cuda_runtime.h when a .cu file is compiled by g++ for the CPU (cudasim.h).
#pragma once
#include "cudasim.h"
