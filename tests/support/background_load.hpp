// Threads that keep allocating and freeing until stopped: the load beside
// which fork, exit and dlopen must keep working.
#ifndef STRATA_TESTS_SUPPORT_BACKGROUND_LOAD_HPP
#define STRATA_TESTS_SUPPORT_BACKGROUND_LOAD_HPP

#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace strata_test {

class BackgroundLoad {
 public:
  // Starts `threads` threads; returns once each has done some work.
  explicit BackgroundLoad(unsigned threads);
  // Stops and joins the threads (unless detach() was called).
  ~BackgroundLoad();
  BackgroundLoad(const BackgroundLoad&) = delete;
  BackgroundLoad& operator=(const BackgroundLoad&) = delete;

  void stop();
  // Lets the threads run on until the process exits.
  void detach();
  // Blocks whose content was found corrupted.
  int failures() const { return failures_.load(); }

 private:
  void run(unsigned index);

  std::atomic<bool> stop_{false};
  std::atomic<int> failures_{0};
  std::vector<std::atomic<std::size_t>> progress_;
  std::vector<std::thread> threads_;
};

}  // namespace strata_test

#endif  // STRATA_TESTS_SUPPORT_BACKGROUND_LOAD_HPP
