#pragma once

// The FIFO queues of channels and endpoints. Most of them stay empty for a
// channel's whole life (parked senders, waiting receivers, values fetched
// ahead, batches a resume may need), and there are two endpoints and one
// channel per channel: std::deque allocates a map and a 512-byte block as
// soon as it is constructed (heaptrack: the largest heap share of an idle
// channel after the actors themselves). Boost.Container's deque
// (header-only) allocates nothing until the first element arrives, and has
// the same interface. Measured with netchan-bench --only scale, 2 runs
// each: an idle hosted channel 19.5 -> 9.9 KiB resident, an opened remote
// one 14.8 -> 7.4 KiB.

#include <boost/container/deque.hpp>

namespace netchan::detail {

template <class T>
using queue = boost::container::deque<T>;

} // namespace netchan::detail
