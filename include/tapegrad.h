/* tapegrad.h — the umbrella header.
 *
 *   tensor/    storage, shapes, arena, RNG, kernels      tapegrad/tensor.h arena.h rng.h kernels.h
 *   autograd/  the tape, differentiable ops, gradcheck   tapegrad/tape.h ops.h gradcheck.h
 *   files      safe reading, safetensors checkpoints     tapegrad/file.h safetensors.h
 *
 * Link libtapegrad (float32) or libtapegrad64 (float64, define TG_DOUBLE):
 *   cc train.c $(pkg-config --cflags --libs tapegrad) */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H

#include "tapegrad/base.h"
#include "tapegrad/tensor.h"
#include "tapegrad/broadcast.h"
#include "tapegrad/arena.h"
#include "tapegrad/rng.h"
#include "tapegrad/tape.h"
#include "tapegrad/ops.h"
#include "tapegrad/gradcheck.h"
#include "tapegrad/file.h"
#include "tapegrad/safetensors.h"
#include "tapegrad/params.h"
#include "tapegrad/nn.h"
#include "tapegrad/attention.h"
#include "tapegrad/transformer.h"
#include "tapegrad/rnn.h"
#include "tapegrad/optim.h"
#include "tapegrad/models.h"

#endif
