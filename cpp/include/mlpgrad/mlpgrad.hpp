// mlpgrad: backpropagation for dense networks, header-only C++17 (standard library only).
//
//   views.hpp        non-owning vector/matrix views of caller memory
//   activations.hpp  σ and σ' (ReLU with the notes' σ'(0) = 1)
//   network.hpp      Network<T>: validated const views of weights, α (K_T × m), activations, optional biases, β
//   simd.hpp         Vec<T>: portable short vectors for the kernels (scalar fallback)
//   kernels.hpp      the hand-written loops (matvec+σ, fused outer product/transpose-matvec, batch GEMM),
//                    every long sum blocked (block_length) for float32 accuracy
//   tape.hpp         Tape<T>: caller-owned u^t, z^t of a forward pass
//   forward.hpp      forward(): Eq. 1–3 of the notes
//   gradients.hpp    GradientsView<T>, BatchGradientsView<T> (caller buffers), Gradients<T>, BatchGradients<T>
//   backward.hpp     backward(), value_and_grad(): the backward recursion, for dy ∈ ℝ^m
//   batch.hpp        BatchTape<T>, forward_batch(), backward_batch()
//   optim/           optimiser updates, one fused in-place pass per parameter array: sgd.hpp, adam.hpp;
//                    L-BFGS (lbfgs.hpp) with its Moré–Thuente line search (line_search.hpp)
//   losses/          training losses fused into one pass per example: softmax_cross_entropy.hpp
//   dag.hpp          dag::Graph<T> and its passes: backpropagation on any DAG (the notes' Question 2); with it
//                    parallel/thread_pool.hpp (its batch passes take a ThreadPool*). About 0.1 s more to
//                    parse per translation unit (g++ -O2: 0.35 s -> 0.47 s for an empty main).
//
// Included on their own (not by this header):
//   gemm/gemm.hpp    packed GEMM (blocking, pack, micro-kernel, epilogues) for the batch layers; gemm/peak.hpp
#pragma once

#define MLPGRAD_VERSION_MAJOR 0
#define MLPGRAD_VERSION_MINOR 1
#define MLPGRAD_VERSION_PATCH 0

#include "activations.hpp"
#include "backward.hpp"
#include "batch.hpp"
#include "dag.hpp"
#include "forward.hpp"
#include "gradients.hpp"
#include "kernels.hpp"
#include "losses/softmax_cross_entropy.hpp"
#include "network.hpp"
#include "optim/adam.hpp"
#include "optim/lbfgs.hpp"
#include "optim/sgd.hpp"
#include "simd.hpp"
#include "tape.hpp"
#include "views.hpp"
