// Model<T>: a Network plus one set of tapes per Python thread, freed when the thread exits.
#pragma once

#include <mlpgrad/mlpgrad.hpp>

#include <algorithm>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mlpgrad_python {

// Per-thread scratch: each Python thread gets its own tapes, so one MLP serves many threads at once and
// forward()/backward() pairs stay paired within a thread.
template <class T>
struct ThreadState {
    mlpgrad::Tape<T> tape;
    mlpgrad::BatchTape<T> batch_tape;
};

// A thread's tapes die with the thread: a thread_local hook erases them from every model the thread used
// when it exits. So memory follows thread lifetimes (a pool that churns threads does not pile up tapes),
// and a new thread that the OS hands a dead thread's id starts with no recorded forward pass.
class ThreadStateTable {
  public:
    virtual ~ThreadStateTable() = default;
    virtual void forget(std::thread::id id) = 0;
};

class ThreadExitHook {
  public:
    ThreadExitHook() = default;
    ThreadExitHook(const ThreadExitHook&) = delete;
    ThreadExitHook& operator=(const ThreadExitHook&) = delete;
    // Called once per (thread, model), when the thread first computes with the model.
    void add(const std::shared_ptr<ThreadStateTable>& table) {
        if (tables_.size() >= prune_at_) {  // drop models that died meanwhile; amortised O(1)
            tables_.erase(std::remove_if(tables_.begin(), tables_.end(), [](const auto& w) { return w.expired(); }),
                          tables_.end());
            prune_at_ = std::max<std::size_t>(16, 2 * tables_.size());
        }
        tables_.push_back(table);
    }
    ~ThreadExitHook() {
        const auto id = std::this_thread::get_id();
        for (const auto& w : tables_)
            if (auto table = w.lock()) table->forget(id);
    }

  private:
    std::vector<std::weak_ptr<ThreadStateTable>> tables_;
    std::size_t prune_at_ = 16;
};

inline ThreadExitHook& thread_exit_hook() {
    thread_local ThreadExitHook hook;
    return hook;
}

// Net is the shared read-only core object (a Network, or a dag::Graph for mlpgrad.DAG), State its per-thread
// tapes.
template <class T, class Net = mlpgrad::Network<T>, class State = ThreadState<T>>
class Model {
    struct States final : ThreadStateTable {
        std::mutex mutex;
        std::unordered_map<std::thread::id, std::unique_ptr<State>> map;
        void forget(std::thread::id id) override {
            std::unique_ptr<State> dead;  // freed after the lock is released
            std::lock_guard<std::mutex> lock(mutex);
            auto it = map.find(id);
            if (it == map.end()) return;
            dead = std::move(it->second);
            map.erase(it);
        }
    };

  public:
    explicit Model(Net net) : net(std::move(net)), states_(std::make_shared<States>()) {}

    State& state() {
        std::lock_guard<std::mutex> lock(states_->mutex);
        auto& slot = states_->map[std::this_thread::get_id()];
        if (!slot) {
            thread_exit_hook().add(states_);
            slot = std::make_unique<State>();
        }
        return *slot;
    }
    // nullptr when this thread has not computed with the model yet.
    State* find_state() {
        std::lock_guard<std::mutex> lock(states_->mutex);
        auto it = states_->map.find(std::this_thread::get_id());
        return it == states_->map.end() ? nullptr : it->second.get();
    }

    const Net net;

  private:
    std::shared_ptr<States> states_;
};

}  // namespace mlpgrad_python
