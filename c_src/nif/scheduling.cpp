#include "nif/scheduling.hpp"

#include <atomic>
#include <boost/lockfree/queue.hpp>
#include <semaphore>
#include <thread>
#include <vector>

namespace switchboard::nif {

namespace {
std::atomic<std::size_t> g_slice_bytes{kDefaultSliceBudget.bytes};
std::atomic<std::int64_t> g_slice_micros{kDefaultSliceBudget.time.count()};
std::atomic<std::uint64_t> g_slices_ended{0};
}  // namespace

bool WorkSlice::finish() {
  over_ = true;
  next_check_ = 0;
  enif_consume_timeslice(env_, percent_of_timeslice());
  g_slices_ended.fetch_add(1, std::memory_order_relaxed);
  return true;
}

std::uint64_t WorkSlice::ended_count() noexcept {
  return g_slices_ended.load(std::memory_order_relaxed);
}

SliceBudget slice_budget() noexcept {
  return {g_slice_bytes.load(std::memory_order_relaxed),
          std::chrono::microseconds(g_slice_micros.load(std::memory_order_relaxed))};
}

void set_slice_budget(SliceBudget budget) noexcept {
  g_slice_bytes.store(std::max<std::size_t>(budget.bytes, 1), std::memory_order_relaxed);
  g_slice_micros.store(budget.time.count(), std::memory_order_relaxed);
}

namespace {
ERL_NIF_TERM& atom_default = register_atom("default");

// set_work_budget(:default | Bytes): the slice budget of every NIF in this
// library. A byte count also turns the clock off, so the number of yields
// depends on the input only. Returns the previous byte budget. For tests and
// for tuning; the setting is global to the library.
NonNegative<std::size_t> set_work_budget(ErlNifEnv* env, Term setting) {
  const SliceBudget previous = slice_budget();
  if (setting.value == atom_default) {
    set_slice_budget(kDefaultSliceBudget);
  } else {
    NonNegative<std::size_t> bytes;
    if (!Decoder<NonNegative<std::size_t>>::decode(env, setting.value, bytes) || bytes == 0) {
      throw bad_argument(env, argument_subject(0), "a positive integer or :default", setting.value);
    }
    // A day: no slice gets near it, and it converts to nanoseconds safely.
    set_slice_budget({bytes, std::chrono::hours(24)});
  }
  return previous.bytes;
}
SWITCHBOARD_NIF(set_work_budget, 0);
}  // namespace

struct ReplyThread::State {
  boost::lockfree::queue<ThreadJob*> queue{1024};
  std::counting_semaphore<> pending{0};
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> completed{0};
  std::thread thread;

  void run() {
    for (;;) {
      pending.acquire();
      ThreadJob* raw = nullptr;
      if (!queue.pop(raw)) {
        if (stopping.load(std::memory_order_acquire)) return;
        continue;
      }
      std::unique_ptr<ThreadJob> job(raw);
      ErlNifEnv* env = job->env.get();
      ERL_NIF_TERM result;
      try {
        result = job->work(env);
      } catch (const std::exception& error) {
        result = enif_make_tuple2(env, atoms::error, make_binary(env, error.what()));
      } catch (...) {
        result = enif_make_tuple2(env, atoms::error, make_binary(env, "unknown C++ exception"));
      }
      // A dead receiver is not an error: the reply is simply dropped.
      if (job->reply)
        enif_send(nullptr, &job->reply_to, env, enif_make_tuple2(env, job->tag, result));
      completed.fetch_add(1, std::memory_order_relaxed);
    }
  }
};

namespace {
// Function-local: registrations run from static initialisers in other
// translation units, in unspecified order.
std::vector<ThreadService>& thread_services() {
  static std::vector<ThreadService> services;
  return services;
}
}  // namespace

void register_thread_service(ThreadService service) { thread_services().push_back(service); }

ReplyThread& ReplyThread::instance() {
  // Never destroyed: at VM exit unload is not called and the thread may
  // still be running; destroying a joinable std::thread would terminate().
  static ReplyThread* thread = new ReplyThread();
  return *thread;
}

void ReplyThread::start() {
  if (state_) return;
  state_ = std::make_unique<State>();
  state_->thread = std::thread([state = state_.get()] { state->run(); });
  for (const ThreadService& service : thread_services()) service.start();
}

void ReplyThread::stop() {
  if (!state_) return;
  auto& services = thread_services();
  for (auto it = services.rbegin(); it != services.rend(); ++it) it->stop();
  state_->stopping.store(true, std::memory_order_release);
  state_->pending.release();
  state_->thread.join();
  // Jobs still queued at unload are dropped with their envs.
  ThreadJob* raw = nullptr;
  while (state_->queue.pop(raw)) delete raw;
  state_.reset();
}

void ReplyThread::submit(std::unique_ptr<ThreadJob> job) {
  if (!state_) throw std::runtime_error("reply thread is not running");
  if (!state_->queue.push(job.get())) throw std::bad_alloc();
  job.release();
  state_->pending.release();
}

void ReplyThread::run_detached(std::function<void()> work) {
  auto job = std::make_unique<ThreadJob>();
  job->reply = false;
  job->work = [work = std::move(work)](ErlNifEnv*) -> ERL_NIF_TERM {
    work();
    return 0;
  };
  submit(std::move(job));
}

std::uint64_t ReplyThread::completed() const noexcept {
  return state_ ? state_->completed.load(std::memory_order_relaxed) : 0;
}

}  // namespace switchboard::nif
