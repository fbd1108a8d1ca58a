// Backpropagation on any directed acyclic graph (the notes' Question 2): mlpgrad::dag::Graph and its passes.
#pragma once

#include "dag/backward.hpp"
#include "dag/batch.hpp"
#include "dag/forward.hpp"
#include "dag/from_mlp.hpp"
#include "dag/graph.hpp"
#include "dag/tape.hpp"
