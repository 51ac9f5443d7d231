// A small lock for the allocator's shared structures (segments, large-block
// registry, heap pool). It never allocates, can be constant-initialised, and
// remembers which thread holds it so that fork() called from a signal handler
// that interrupted the holder does not deadlock (see fork_prepare in heap/).
#ifndef STRATA_PLATFORM_LOCK_H
#define STRATA_PLATFORM_LOCK_H

#include <sched.h>

#include <atomic>
#include <cstdint>

namespace strata {

// Identifies the calling thread without a system call: the address of a
// thread-local variable is unique among live threads.
inline uintptr_t current_thread_token() {
  static thread_local char token;
  return reinterpret_cast<uintptr_t>(&token);
}

class SpinLock {
 public:
  constexpr SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void lock() {
    while (locked_.exchange(true, std::memory_order_acquire)) {
      int spins = 0;
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins > 64) {
          sched_yield();
          spins = 0;
        } else {
          __builtin_ia32_pause();
        }
      }
    }
    holder_.store(current_thread_token(), std::memory_order_relaxed);
  }

  void unlock() {
    holder_.store(0, std::memory_order_relaxed);
    locked_.store(false, std::memory_order_release);
  }

  bool held_by_current_thread() const {
    return locked_.load(std::memory_order_relaxed) &&
           holder_.load(std::memory_order_relaxed) == current_thread_token();
  }

  // fork(): the lock is held across the fork so the child inherits
  // consistent data, unless the forking thread holds it already (a fork from
  // a signal handler that interrupted it): waiting would never end, and the
  // child then inherits the data as it is.
  void fork_prepare() {
    taken_for_fork_ = !held_by_current_thread();
    if (taken_for_fork_) lock();
  }
  void fork_parent() {
    if (taken_for_fork_) unlock();
  }
  // The child has one thread; whatever the parent's other threads held is void.
  void reset_after_fork() {
    holder_.store(0, std::memory_order_relaxed);
    locked_.store(false, std::memory_order_relaxed);
  }

 private:
  std::atomic<bool> locked_{false};
  std::atomic<uintptr_t> holder_{0};
  bool taken_for_fork_ = false;
};

class LockGuard {
 public:
  explicit LockGuard(SpinLock& lock) : lock_(lock) { lock_.lock(); }
  ~LockGuard() { lock_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  SpinLock& lock_;
};

}  // namespace strata

#endif  // STRATA_PLATFORM_LOCK_H
