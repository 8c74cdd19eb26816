// The engine's public API in one include: tensors, devices, memory, RNG, autograd, every op, and the
// comparison / gradient-check helpers.
#pragma once
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/compose.h"
#include "engine/csp.h"
#include "engine/deferred_checks.h"
#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/error.h"
#include "engine/gradcheck.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "engine/tensor.h"
