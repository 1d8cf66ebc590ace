// Streams between two processes over TLS: credit, batches and prefetch must
// keep every value exactly once, each sender's order, len <= cap at the
// owner, and memory bounded whatever the receiver does.
#define BOOST_TEST_MODULE stream
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <map>

#include <caf/actor_system.hpp>

#include "certs.hpp"
#include "netchan/netchan.hpp"
#include "process.hpp"

using namespace std::chrono_literals;
namespace bdata = boost::unit_test::data;

namespace {

using test::memory_kib;

/// This process as the owner: a node hosting channels, and its address.
struct owner {
  ::pki::temp_dir dir;
  test::pki pki{dir.path(), "ca"};
  test::node_certs own = pki.issue("owner");
  test::node_certs peer = pki.issue("peer");
  netchan::config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::optional<netchan::node> node;

  owner() {
    auto args = own.args();
    args.push_back("--netchan.listen=127.0.0.1:0");
    BOOST_REQUIRE(!cfg.load(args));
    sys = std::make_unique<caf::actor_system>(cfg);
    auto n = netchan::node::start(*sys);
    if (!n)
      BOOST_FAIL(netchan::to_string(n.error()));
    node.emplace(std::move(*n));
  }

  ~owner() {
    node->shutdown();
    node.reset();
  }

  std::string where(const std::string& name) const {
    return node->address() + "/" + name;
  }

  std::vector<std::string> peer_args(std::vector<std::string> own_args) const {
    own_args.push_back("--");
    for (auto& a : peer.args())
      own_args.push_back(a);
    return own_args;
  }
};

} // namespace

BOOST_DATA_TEST_CASE(a_stream_arrives_once_in_order_with_len_within_cap,
                     bdata::make(std::vector<size_t>{1, 64, 1024})
                       * bdata::make(std::vector<size_t>{1, 8}),
                     cap, senders) {
  owner o;
  const uint64_t total = 20000;
  auto ch = o.node->create<uint64_t>("stream", cap);
  BOOST_REQUIRE(ch);
  auto rx = ch->second;
  test::child peer{NETCHAN_TEST_PEER,
                   o.peer_args({"stream", "--to", o.where("stream"), "--count",
                                std::to_string(total), "--threads",
                                std::to_string(senders)})};
  std::map<uint64_t, uint64_t> last; // sender -> last sequence number
  uint64_t received = 0;
  uint64_t out_of_order = 0;
  for (; received < total; ++received) {
    auto v = rx.receive_for(60s);
    if (!v)
      BOOST_FAIL("after " << received << " values: "
                          << netchan::to_string(v.error()) << "; peer said: "
                          << peer.transcript());
    auto sender = *v >> 32;
    auto seq = *v & 0xffffffffu;
    if (seq != last[sender] + 1)
      ++out_of_order;
    last[sender] = seq;
    if (received % 1000 == 0) { // len <= cap, network-wide, at the owner
      auto st = rx.stats();
      BOOST_REQUIRE(st);
      BOOST_CHECK_LE(st->buffered, cap);
      BOOST_CHECK_LE(st->buffered + st->reserved + st->leased, cap);
    }
  }
  BOOST_CHECK_EQUAL(out_of_order, 0u);
  BOOST_CHECK_EQUAL(last.size(), senders);
  for (auto& [sender, seq] : last)
    BOOST_CHECK_EQUAL(seq, total / senders);
  auto done = peer.wait_for("sent ", 60s);
  BOOST_REQUIRE_MESSAGE(done, peer.transcript());
  BOOST_CHECK_EQUAL(std::stoull(*done), total);
  BOOST_CHECK_EQUAL(peer.wait(30s), 0);
  // Nothing more arrives: exactly `total`, none twice.
  auto extra = rx.try_receive();
  BOOST_REQUIRE(extra);
  BOOST_CHECK(!extra->has_value());
  auto st = rx.stats();
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->sent, total);
  BOOST_CHECK_EQUAL(st->duplicates, 0u);
}

BOOST_AUTO_TEST_CASE(a_stalled_receiver_blocks_the_sender_in_bounded_memory) {
  owner o;
  auto ch = o.node->create<std::string>("big", 16);
  BOOST_REQUIRE(ch);
  // This process ran other cases before: its peak says nothing new, so its
  // resident size now is compared. The sender is fresh: its peak counts.
  auto self_before = memory_kib(::getpid(), "VmRSS:");
  test::child peer{NETCHAN_TEST_PEER,
                   o.peer_args({"stream", "--to", o.where("big"), "--count",
                                "100000", "--size", "65536"})};
  BOOST_REQUIRE_MESSAGE(peer.wait_for("streaming", 30s), peer.transcript());
  auto peer_started = memory_kib(peer.pid(), "VmHWM:");
  // Nobody receives: the buffer fills and the sender must block there.
  auto st = ch->second.stats();
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (st && st->buffered < 16 && std::chrono::steady_clock::now() < deadline)
    st = ch->second.stats();
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->buffered, 16u);
  // Give a runaway sender every chance to show itself: the owner answers
  // a few hundred requests while the sender stays blocked.
  for (int i = 0; i < 200; ++i)
    st = ch->second.stats();
  BOOST_CHECK_EQUAL(st->buffered, 16u);
  BOOST_CHECK_EQUAL(st->sent, 16u);
  auto self_now = memory_kib(::getpid(), "VmRSS:");
  auto self_growth = self_now > self_before ? self_now - self_before : 0;
  auto peer_growth = memory_kib(peer.pid(), "VmHWM:") - peer_started;
  BOOST_TEST_MESSAGE("peak RSS growth: owner " << self_growth << " KiB, sender "
                                              << peer_growth << " KiB");
  BOOST_CHECK_LT(self_growth, 32u * 1024u);
  BOOST_CHECK_LT(peer_growth, 32u * 1024u);
  // Closing hands the blocked send back to the sender as an error.
  BOOST_REQUIRE(!ch->first.close());
  auto line = peer.wait_for("error: ", 30s);
  BOOST_REQUIRE_MESSAGE(line, peer.transcript());
  BOOST_CHECK(line->find("closed") != std::string::npos);
}
