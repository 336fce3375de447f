/* tapegrad.h — the umbrella header: every public header, layer by layer (each header's top
 * comment names its layer; a header includes only headers of its layer or below).
 *
 *   tensor/    storage, shapes, arena, RNG, kernels,      tapegrad/base.h tensor.h broadcast.h
 *              safe file reading, safetensors files       arena.h rng.h kernels.h file.h
 *                                                         safetensors.h
 *   autograd/  the tape, differentiable ops (attention    tapegrad/tape.h ops.h gradcheck.h
 *              and recurrent ones too), gradcheck         attention_ops.h rnn_ops.h
 *   nn/        modules, parameters, optimizers, gates     tapegrad/params.h nn.h attention.h
 *                                                         transformer.h rnn.h optim.h gates.h
 *   models/    the models, assembled from modules         tapegrad/models.h
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
#include "tapegrad/kernels.h"
#include "tapegrad/file.h"
#include "tapegrad/safetensors.h"

#include "tapegrad/tape.h"
#include "tapegrad/ops.h"
#include "tapegrad/gradcheck.h"
#include "tapegrad/attention_ops.h"
#include "tapegrad/rnn_ops.h"

#include "tapegrad/params.h"
#include "tapegrad/module.h"
#include "tapegrad/nn.h"
#include "tapegrad/attention.h"
#include "tapegrad/transformer.h"
#include "tapegrad/rnn.h"
#include "tapegrad/optim.h"
#include "tapegrad/gates.h"

#include "tapegrad/models.h"

#endif
