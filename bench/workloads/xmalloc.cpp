// xmalloc: producer threads allocate, consumer threads free (after the
// xmalloc-test of Lever and Boreham).
//
// Producers allocate batches of blocks and push them onto a shared bounded
// queue; consumers pop batches and free every block in them, so every block
// is freed by a thread other than the one that allocated it. With one thread,
// the same thread produces and, once the queue is full, consumes the oldest
// batch.
#include <condition_variable>
#include <mutex>

#include "bench_common.hpp"

namespace {

struct Entry {
  void* p;
  size_t size;
  uint64_t tag;
};

// A batch is itself malloc'd by the producer and freed by the consumer.
struct Batch {
  size_t count;
  Entry entries[1];
};

class Queue {
 public:
  explicit Queue(size_t capacity) : ring_(capacity) {}

  void push(Batch* b) {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [&] { return count_ < ring_.size(); });
    ring_[(head_ + count_) % ring_.size()] = b;
    ++count_;
    not_empty_.notify_one();
  }
  // Returns nullptr once the queue is empty and every producer has finished.
  Batch* pop() {
    std::unique_lock lock(mu_);
    not_empty_.wait(lock, [&] { return count_ > 0 || producers_left_ == 0; });
    if (count_ == 0) return nullptr;
    Batch* b = ring_[head_];
    head_ = (head_ + 1) % ring_.size();
    --count_;
    not_full_.notify_one();
    return b;
  }
  bool full() {
    std::lock_guard lock(mu_);
    return count_ == ring_.size();
  }
  void set_producers(int n) { producers_left_ = n; }
  void producer_done() {
    std::lock_guard lock(mu_);
    --producers_left_;
    not_empty_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::vector<Batch*> ring_;
  size_t head_ = 0, count_ = 0;
  int producers_left_ = 0;
};

Batch* produce(bench::Rng& rng, size_t batch_size, size_t min_size, size_t max_size,
               bench::Ledger& ledger) {
  auto* b = static_cast<Batch*>(bench::xmalloc(sizeof(Batch) + (batch_size - 1) * sizeof(Entry)));
  b->count = batch_size;
  for (size_t i = 0; i < batch_size; ++i) {
    Entry& e = b->entries[i];
    e.size = rng.log_size(min_size, max_size);
    e.tag = rng.next();
    e.p = bench::xmalloc(e.size);
    bench::fill(e.p, e.size, e.tag);
    ledger.on_alloc(e.tag, e.size);
  }
  return b;
}

void consume(Batch* b, bench::Ledger& ledger) {
  for (size_t i = 0; i < b->count; ++i) {
    Entry& e = b->entries[i];
    bench::check(e.p, e.size, e.tag);
    ledger.on_free(e.tag, e.size);
    std::free(e.p);
  }
  std::free(b);
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv,
                   "[--threads N] [--batches N] [--batch N] [--queue N] [--min BYTES] "
                   "[--max BYTES]");
  const int threads = static_cast<int>(args.get("threads", 2));
  const int64_t batches = args.get("batches", 20000);  // in all, shared by the producers
  const size_t batch_size = static_cast<size_t>(args.get("batch", 100));
  const size_t queue_len = static_cast<size_t>(args.get("queue", 64));
  const size_t min_size = static_cast<size_t>(args.get("min", 16));
  const size_t max_size = static_cast<size_t>(args.get("max", 512));
  args.finish();
  if (threads < 1 || batch_size < 1 || queue_len < 1 || min_size < 1 || max_size < min_size)
    bench::die("bad arguments");

  bench::Timer timer;
  Queue queue(queue_len);
  bench::SharedLedger total;

  if (threads == 1) {
    bench::Ledger ledger;
    bench::Rng rng(1);
    queue.set_producers(1);
    for (int64_t i = 0; i < batches; ++i) {
      if (queue.full()) consume(queue.pop(), ledger);
      queue.push(produce(rng, batch_size, min_size, max_size, ledger));
    }
    queue.producer_done();
    while (Batch* b = queue.pop()) consume(b, ledger);
    total.add(ledger);
  } else {
    const int producers = threads / 2;
    queue.set_producers(producers);
    bench::run_threads(threads, [&](int t) {
      bench::Ledger ledger;
      if (t < producers) {
        bench::Rng rng(static_cast<uint64_t>(t) + 1);
        const int64_t mine = batches / producers + (t < batches % producers ? 1 : 0);
        for (int64_t i = 0; i < mine; ++i)
          queue.push(produce(rng, batch_size, min_size, max_size, ledger));
        queue.producer_done();
      } else {
        while (Batch* b = queue.pop()) consume(b, ledger);
      }
      total.add(ledger);
    });
  }

  total.report("xmalloc");
  timer.report("xmalloc");
  return 0;
}
