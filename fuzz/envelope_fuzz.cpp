// Envelopes as they arrive from other nodes (alone, and in batches), and
// their payloads decoded as element types: builtins, a user-style vector,
// and channel handles travelling inside values.
//
// Invariants: an envelope that deserializes serializes again to one that
// deserializes equal; `decode<T>` either fails with errc::malformed_value
// and a sentence, or yields a value that encodes and decodes back to itself.

#include <string>
#include <utility>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include "fuzz.hpp"
#include "netchan/channel.hpp"
#include "netchan/config.hpp"
#include "netchan/envelope.hpp"
#include "wire/batch.hpp"

namespace {

using netchan::envelope;
using netchan::detail::batch;
using netchan::fuzz::require;

/// One system for the whole run: decoding a handle needs one, and spawns
/// the handle's (unresolved) endpoint actor in it. No network modules: a
/// handle that arrives here finds no node and stays unresolved. Never
/// destroyed: CAF 0.17.6 corrupts the heap when an actor_system dies in the
/// exit handlers (after main), and libFuzzer leaves through exit().
caf::actor_system& fuzz_system() {
  struct holder {
    holder() : sys(init(cfg)) {
    }
    static caf::actor_system_config& init(caf::actor_system_config& cfg) {
      netchan::add_netchan_types(cfg);
      cfg.set("scheduler.max-threads", 1);
      return cfg;
    }
    caf::actor_system_config cfg;
    caf::actor_system sys;
  };
  static auto instance = new holder;
  return instance->sys;
}

bool same(const envelope& x, const envelope& y) {
  return x.sender == y.sender && x.seq == y.seq
         && x.redelivered == y.redelivered && x.lease == y.lease
         && x.bytes == y.bytes;
}

template <class T>
caf::error load(caf::actor_system& sys, const std::vector<char>& bytes,
                T& out) {
  caf::binary_deserializer source{sys, bytes};
  return source(out);
}

template <class T>
std::vector<char> save(caf::actor_system& sys, T& value) {
  std::vector<char> bytes;
  caf::binary_serializer sink{sys, bytes};
  if (auto err = sink(value))
    netchan::fuzz::violated("serializing a deserialized value failed: "
                            + netchan::to_string(err));
  return bytes;
}

/// Plain values: decode, and on success encode + decode to the same value.
template <class T>
void check_value(caf::actor_system& sys, const netchan::payload& payload,
                 const char* type) {
  auto value = netchan::decode<T>(sys, payload);
  if (!value) {
    netchan::fuzz::require_refusal(value.error(),
                                   netchan::errc::malformed_value,
                                   type);
    return;
  }
  netchan::payload bytes;
  require(!netchan::encode(sys, *value, bytes),
          std::string{"re-encoding a decoded "} + type + " failed");
  auto again = netchan::decode<T>(sys, bytes);
  require(static_cast<bool>(again),
          std::string{"a re-encoded "} + type + " does not decode");
  require(*again == *value,
          std::string{"a re-encoded "} + type + " decodes differently");
}

/// Handles: decoding one yields an unresolved handle (no node runs here);
/// one with an address encodes back to the same address, type and capacity.
template <class Handle>
void check_handle(caf::actor_system& sys, const netchan::payload& payload,
                  const char* type) {
  auto handle = netchan::decode<Handle>(sys, payload);
  if (!handle) {
    netchan::fuzz::require_refusal(handle.error(),
                                   netchan::errc::malformed_value,
                                   type);
    return;
  }
  require(static_cast<bool>(*handle),
          std::string{"a decoded "} + type + " refers to no channel");
  auto& ep = handle->endpoint_ref();
  auto where = ep->global_address();
  if (!where)
    return; // empty address: nothing to print back
  netchan::payload bytes;
  if (auto err = netchan::encode(sys, *handle, bytes))
    netchan::fuzz::violated(std::string{"re-encoding a decoded "} + type
                            + " failed: " + netchan::to_string(err));
  auto again = netchan::decode<Handle>(sys, bytes);
  require(static_cast<bool>(again),
          std::string{"a re-encoded "} + type + " does not decode");
  auto& ep2 = again->endpoint_ref();
  auto where2 = ep2->global_address();
  require(where2 && *where2 == *where && ep2->type_name() == ep->type_name()
            && ep2->capacity() == ep->capacity(),
          std::string{"a re-encoded "} + type + " decodes differently");
}

void check_payload(caf::actor_system& sys, const netchan::payload& payload) {
  check_value<int32_t>(sys, payload, "int32_t");
  check_value<uint64_t>(sys, payload, "uint64_t");
  check_value<std::string>(sys, payload, "std::string");
  check_value<std::vector<std::string>>(sys, payload,
                                        "std::vector<std::string>");
  check_handle<netchan::sender<int32_t>>(sys, payload, "sender<int32_t>");
  check_handle<netchan::receiver<std::string>>(sys, payload,
                                               "receiver<std::string>");
}

void check_envelope(caf::actor_system& sys, const std::vector<char>& bytes) {
  envelope x;
  if (auto err = load(sys, bytes, x)) {
    require(!netchan::to_string(err).empty(), "envelope: error without text");
    return;
  }
  auto saved = save(sys, x);
  envelope y;
  require(!load(sys, saved, y) && same(x, y),
          "a re-serialized envelope deserializes differently");
  check_payload(sys, x.bytes);
}

void check_batch(caf::actor_system& sys, const std::vector<char>& bytes) {
  batch xs;
  if (auto err = load(sys, bytes, xs)) {
    require(!netchan::to_string(err).empty(), "batch: error without text");
    return;
  }
  auto saved = save(sys, xs);
  batch ys;
  require(!load(sys, saved, ys) && xs.values.size() == ys.values.size(),
          "a re-serialized batch deserializes differently");
  for (size_t i = 0; i < xs.values.size(); ++i)
    require(same(xs.values[i], ys.values[i]),
            "a re-serialized batch deserializes differently");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& sys = fuzz_system();
  std::vector<char> bytes{reinterpret_cast<const char*>(data),
                          reinterpret_cast<const char*>(data) + size};
  check_envelope(sys, bytes);
  check_batch(sys, bytes);
  return 0;
}

// -- seeds --------------------------------------------------------------------

namespace {

template <class... Ts>
std::vector<char> serialize(Ts... xs) {
  std::vector<char> bytes;
  caf::binary_serializer sink{fuzz_system(), bytes};
  if (auto err = sink(xs...))
    netchan::fuzz::violated("cannot serialize a seed");
  return bytes;
}

netchan::fuzz::seed named(std::string name, const std::vector<char>& bytes) {
  return {std::move(name), std::string{bytes.begin(), bytes.end()}};
}

template <class T>
netchan::fuzz::seed envelope_of(std::string name, const T& value,
                                uint64_t seq = 1, bool redelivered = false) {
  auto& sys = fuzz_system();
  envelope x;
  x.sender = 0x5eed;
  x.seq = seq;
  x.redelivered = redelivered;
  x.lease = redelivered ? 7 : 0;
  if (netchan::encode(sys, value, x.bytes))
    netchan::fuzz::violated("cannot encode a seed");
  return named(std::move(name), save(sys, x));
}

/// A handle as it travels: "host:port/name", element type, capacity (its
/// sending side needs a listening node, which seeds do without).
netchan::fuzz::seed handle_envelope(std::string name, std::string where,
                                    std::string type, uint64_t capacity) {
  envelope x;
  x.sender = 0x5eed;
  x.seq = 1;
  x.bytes = netchan::payload{
    serialize(std::move(where), std::move(type), capacity)};
  return named(std::move(name), save(fuzz_system(), x));
}

} // namespace

namespace netchan::fuzz {

std::vector<seed> seeds() {
  auto& sys = fuzz_system();
  auto i32 = element_type_name<int32_t>(sys);
  auto str = element_type_name<std::string>(sys);
  std::vector<seed> result{
    envelope_of("int32", int32_t{-42}),
    envelope_of("uint64", uint64_t{0xfeedfacecafebeef}, 2),
    envelope_of("string", std::string{"hash a block"}, 3, true),
    envelope_of("empty-string", std::string{}),
    envelope_of("strings",
                std::vector<std::string>{"jobs", "", "results", "\xff\x00"}),
    handle_envelope("sender-int32", "127.0.0.1:7000/jobs", i32, 0),
    handle_envelope("receiver-string", "[::1]:7001/#12", str, 16),
    handle_envelope("sender-wrong-type", "127.0.0.1:7000/jobs", str, 1),
    handle_envelope("sender-no-address", "", i32, 1),
  };
  // A batch, as put_batch and get_many carry them.
  batch two;
  two.values.resize(2);
  for (size_t i = 0; i < two.values.size(); ++i) {
    two.values[i].seq = i + 1;
    static_cast<void>(
      encode(sys, static_cast<int32_t>(i), two.values[i].bytes));
  }
  result.push_back(named("batch", save(sys, two)));
  // A batch whose sizes do not add up to its bytes, and one whose bytes
  // claim 4 GiB: refused, nothing allocated for the claim.
  result.push_back(named("batch-sizes-disagree",
                         serialize(uint8_t{1}, uint64_t{1}, uint64_t{1},
                                   uint64_t{0}, false, uint64_t{3},
                                   uint8_t{2}, 'a', 'b')));
  auto huge = serialize(uint8_t{1}, uint64_t{1}, uint64_t{1}, uint64_t{0},
                        false, uint64_t{0xffffffff});
  for (auto c : {'\xff', '\xff', '\xff', '\xff', '\x0f', 'a', 'b'})
    huge.push_back(c);
  result.push_back(named("batch-bytes-lie", huge));
  // Near misses: a truncated envelope, one with trailing payload bytes.
  auto truncated = result[2].bytes;
  truncated.resize(truncated.size() / 2);
  result.push_back({"truncated", truncated});
  envelope extra;
  extra.bytes = netchan::payload{serialize(int32_t{1}, int32_t{2})};
  result.push_back(named("payload-too-long", save(sys, extra)));
  // A payload whose length prefix claims 4 GiB (varbyte 0xffffffff) but
  // holds 4 bytes: must fail at the end of the input, not allocate 4 GiB.
  auto lying = serialize(uint64_t{1}, uint64_t{1}, false, uint64_t{0});
  for (auto c : {'\xff', '\xff', '\xff', '\xff', '\x0f', 'a', 'b', 'c', 'd'})
    lying.push_back(c);
  result.push_back(named("payload-length-lies", lying));
  return result;
}

} // namespace netchan::fuzz
