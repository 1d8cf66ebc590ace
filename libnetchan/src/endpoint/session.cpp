// The endpoint's session with its channel's owner: finding the channel
// (resolving), losing the link (in_gap), redialling with jittered backoff,
// settling what the gap left open (resume), and the end (gone).
//
// A broken link (the channel's proxy goes down with remote_link_unreachable)
// starts a gap: nothing is sent, operations wait (their deadlines still
// apply), and the endpoint redials through the directory. When the owner
// answers `resume`, the endpoint settles what was in flight: values sent on
// credit that the owner lacks go again (it keeps them until a credit answer
// shows the owner's last sequence number), each lease the owner holds for
// it is acknowledged, returned or kept (it knows the highest lease id it
// received: anything above never arrived), and requests waiting for an
// answer are sent again under their old operation ids. The gap ends in
// `peer_down` after netchan.resume-timeout, or at once if the owner came
// back as a new process.
//
// Messages it sends: resolve (to the directory), resume, leave, and on
// resume unreserve, ack_many, take, unread, withdraw, put_batch and the
// re-issued requests.

#include "endpoint/endpoint.hpp"

#include <algorithm>
#include <iostream>
#include <limits>
#include <random>
#include <unordered_set>

#include "netchan/errc.hpp"
#include "wire/batch.hpp"
#include "wire/protocol.hpp"

namespace netchan::detail {

// -- resolving ----------------------------------------------------------------

/// A handle that arrived inside a value learns its channel actor from the
/// directory on first use; operations wait meanwhile.
void endpoint_actor::resolve() {
  if (std::exchange(resolve_asked_, true))
    return;
  request(resolver_.directory, resolver_.timeout, resolve_atom::value,
          resolver_.where)
    .then(
      [this](caf::actor& ch, std::string& type_name, uint64_t,
             uint64_t max_size) { resolved(ch, type_name, max_size); },
      [this](caf::error& err) {
        auto node = resolver_.where.substr(0, resolver_.where.rfind('/'));
        gone_ = explain_resolve_error(std::move(err), node, [] {
          return std::string{"run node::open on the same address for a "
                             "diagnosis of the TLS handshake"};
        });
        enter(phase::gone);
        release_held();
      });
}

void endpoint_actor::resolved(caf::actor& ch, const std::string& type_name,
                              uint64_t max_size) {
  if (!resolver_.type_name.empty() && type_name != resolver_.type_name) {
    gone_ = make_error(errc::type_mismatch,
                       "the handle to " + resolver_.where + " says it carries "
                         + resolver_.type_name + ", but the channel carries "
                         + type_name);
    enter(phase::gone);
    release_held();
    return;
  }
  channel_ = std::move(ch);
  owner_node_ = channel_.node();
  locked([max_size](flow& f) { f.owner_max = max_size; });
  monitor(channel_);
  enter(phase::linked);
  release_held();
}

/// The link is there (or the session is over): operations that waited for
/// it go on, in their order.
void endpoint_actor::release_held() {
  for (auto& rp : channel_waiters_)
    if (gone_)
      rp.deliver(gone_);
    else
      rp.deliver(channel_);
  channel_waiters_.clear();
  auto held = std::move(held_);
  held_.clear();
  auto now = std::chrono::steady_clock::now();
  for (auto& h : held) {
    // The deadline counts from the call, not from now.
    if (h.req.timeout != no_deadline) {
      auto waited = now - h.since;
      if (waited >= h.req.timeout) {
        op_result res;
        res.err = deadline_error();
        deliver(h.w, std::move(res));
        continue;
      }
      h.req.timeout -= std::chrono::duration_cast<caf::timespan>(waited);
    }
    take(std::move(h.req), std::move(h.w));
  }
}

// -- the end ------------------------------------------------------------------

/// The session with the owner is over: the owner is gone, came back as a
/// new process, or the link stayed broken for netchan.resume-timeout. Fast
/// paths stop: no send may report success towards a dead owner. Values
/// fetched ahead die with it (its failure contract: values it had accepted
/// are lost with it); nobody would acknowledge them.
void endpoint_actor::end_session(caf::error why) {
  auto was_in_gap = phase_ == phase::in_gap;
  enter(phase::gone);
  locked([](flow& f) {
    f.credit = 0;
    f.batch.clear();
    f.prefetched.clear();
    f.fresh_until.clear();
    f.held_leases.clear();
  });
  if (was_in_gap) {
    report(link_event::kind::expired, 0);
    // If a redial reached the owner, it may hold our session again: we
    // leave it, so that it does not keep our leases for a handle that has
    // ended.
    if (channel_)
      send(channel_, leave_atom::value);
  }
  if (!unconfirmed_.empty()) {
    size_t n = 0;
    for (auto& [last, msg] : unconfirmed_)
      n += msg.get_as<batch>(1).values.size();
    std::cerr << "netchan: the session with " << where_ << " ended with " << n
              << " values sent on credit that the owner had not confirmed; "
              << "those it did not receive are lost with it\n";
  }
  unconfirmed_.clear();
  returned_.clear();
  gone_ = std::move(why);
  fail_all(gone_, true);
}

// -- gaps and redials ---------------------------------------------------------

/// The link to the owner broke: wait for it to heal, and redial.
void endpoint_actor::link_lost() {
  enter(phase::in_gap);
  ++link_;
  gap_since_ = std::chrono::steady_clock::now();
  backoff_ = node_.reconnect_initial;
  fetching_ = false;
  reserving_ = false;
  urgent_ = false;
  streaming_ = false;
  report(link_event::kind::lost, 0);
  delayed_send(this, node_.resume_timeout, gap_over_atom::value, link_);
  delayed_send(this, jittered(backoff_), redial_atom::value, link_);
}

void endpoint_actor::redial_later() {
  backoff_ = std::min(backoff_ * 2, node_.reconnect_max);
  delayed_send(this, jittered(backoff_), redial_atom::value, link_);
}

/// A delay in [backoff / 2, backoff], at random: endpoints that lost the
/// same owner at the same instant do not all redial at the same instant.
caf::timespan endpoint_actor::jittered(caf::timespan backoff) {
  static thread_local std::mt19937_64 gen{std::random_device{}()};
  auto half = backoff.count() / 2;
  std::uniform_int_distribution<caf::timespan::rep> pick{half,
                                                         backoff.count()};
  return caf::timespan{pick(gen)};
}

/// Asks the directory for the channel again (it dials the owner's node
/// through the same TLS checks), then asks the owner to resume.
void endpoint_actor::redial() {
  auto attempt = ++attempt_;
  auto current = [this, link = link_, attempt] {
    return phase_ == phase::in_gap && link == link_ && attempt == attempt_;
  };
  request(node_.directory, node_.resolve_timeout, resolve_atom::value, where_)
    .then(
      [this, current](caf::actor& ch, std::string&, uint64_t, uint64_t) {
        if (!current())
          return;
        if (ch.node() != owner_node_) {
          end_session(make_error(
            errc::peer_down,
            "the channel's owner at " + where_
              + " came back as a new process: what it held is lost"));
          return;
        }
        channel_ = std::move(ch);
        monitor(channel_);
        ask_resume();
      },
      [this, current](caf::error&) {
        if (current())
          redial_later();
      });
}

void endpoint_actor::ask_resume() {
  auto attempt = ++attempt_;
  auto current = [this, link = link_, attempt] {
    return phase_ == phase::in_gap && link == link_ && attempt == attempt_;
  };
  // Puts the owner may still hold: it adopts them instead of parking a
  // second copy.
  std::vector<uint64_t> puts;
  for (auto& [op, sent] : pending_)
    if (sent.req.kind == op_kind::put)
      puts.push_back(op);
  request(channel_, node_.resolve_timeout, resume_atom::value, id_,
          std::move(puts))
    .then(
      [this, current](bool known, uint64_t last_seq, uint64_t reserved,
                      std::vector<uint64_t>& leases) {
        if (!current())
          return;
        if (known)
          resume(last_seq, reserved, leases);
        else if (has_state())
          end_session(make_error(
            errc::peer_down, "the channel's owner at " + where_
                               + " ended the session before the link healed "
                                 "(netchan.resume-timeout)"));
        else
          resume(last_seq, 0, leases); // nothing to settle
      },
      [this, current](caf::error&) {
        if (current())
          redial_later();
      });
}

/// Whether the owner holds anything for this endpoint.
bool endpoint_actor::has_state() {
  auto shared = locked([](flow& f) {
    return f.credit > 0 || !f.batch.empty() || !f.prefetched.empty()
           || !f.held_leases.empty();
  });
  return shared || !pending_.empty() || !unconfirmed_.empty() || max_seen_ > 0;
}

// -- resume -------------------------------------------------------------------

/// The owner kept our session: settle what the broken link left open.
void endpoint_actor::resume(uint64_t last_seq, uint64_t reserved,
                            const std::vector<uint64_t>& leases) {
  // Leases: ours to keep (fetched, or held by the application), returned
  // unread, acknowledged (received; the ack was lost), or never received.
  std::unordered_set<uint64_t> returned;
  for (auto& [tag, ids] : returned_)
    returned.insert(ids.begin(), ids.end());
  returned_.clear();
  std::vector<uint64_t> acks;
  std::vector<uint64_t> unread;
  std::vector<uint64_t> takes;
  std::vector<envelope> again;
  uint64_t unused = 0;
  locked([&](flow& f) {
    std::unordered_set<uint64_t> fetched;
    for (auto& v : f.prefetched)
      fetched.insert(v.lease);
    for (auto id : leases) {
      if (fetched.count(id) != 0)
        continue;
      if (f.held_leases.count(id) != 0)
        takes.push_back(id);
      else if (returned.count(id) != 0 || id > max_seen_)
        unread.push_back(id);
      else
        acks.push_back(id);
    }
    f.acks.clear();
    // Values on credit the owner lacks, in order, then those not sent.
    for (auto& [last, msg] : unconfirmed_)
      if (last > last_seq)
        for (auto& v : msg.get_as<batch>(1).values)
          if (v.seq > last_seq)
            again.push_back(v);
    for (auto& v : f.batch)
      again.push_back(std::move(v));
    f.batch.clear();
    // The owner gave back the credit we held for these values: the rest goes
    // back to it now (others may have used the slots meanwhile).
    unused = reserved > again.size() ? reserved - again.size() : 0;
    f.credit = 0;
    f.flush_posted = false;
    f.refill_posted = false;
    f.fetch_posted = false;
  });
  unconfirmed_.clear();
  enter(phase::linked);
  auto replayed = again.size() + acks.size() + unread.size() + pending_.size();
  if (unused > 0)
    send(channel_, unreserve_atom::value, unused);
  if (!acks.empty())
    send(channel_, ack_many_atom::value, std::move(acks));
  for (auto id : takes)
    send(channel_, take_atom::value, id);
  give_back_unread(std::move(unread));
  for (auto op : withdrawn_)
    send(channel_, withdraw_atom::value, op);
  withdrawn_.clear();
  // Requests without an answer go again; a commit or release whose lease
  // the owner no longer holds for us was done before the link broke.
  std::unordered_set<uint64_t> owned(leases.begin(), leases.end());
  std::vector<uint64_t> ops;
  for (auto& [op, sent] : pending_)
    ops.push_back(op);
  std::sort(ops.begin(), ops.end());
  // Values go again in their sequence order, puts and credit sends
  // interleaved: the owner takes a value below its last sequence number of
  // this sender for a duplicate.
  auto next = again.begin();
  auto values_below = [&](uint64_t seq) {
    std::vector<envelope> part;
    while (next != again.end() && next->seq < seq)
      part.push_back(std::move(*next++));
    send_batch(std::move(part));
  };
  for (auto op : ops) {
    auto& req = pending_.at(op).req;
    if (req.kind == op_kind::put)
      values_below(req.value.seq);
    if ((req.kind == op_kind::commit || req.kind == op_kind::release)
        && owned.count(req.lease_id) == 0) {
      finish(op, op_result{});
      continue;
    }
    issue(op, true);
  }
  values_below(std::numeric_limits<uint64_t>::max());
  report(link_event::kind::restored, replayed);
  release_held();
  if (!credit_waiters_.empty())
    want_credit();
  if (!get_waiters_.empty())
    fetch();
}

void endpoint_actor::report(link_event::kind what, uint64_t replayed) {
  if (!node_.links)
    return;
  link_event ev;
  ev.what = what;
  ev.peer = where_;
  if (auto where = parse_channel_address(where_))
    ev.channel = where->name;
  ev.replayed = replayed;
  if (what != link_event::kind::lost)
    ev.gap = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - gap_since_);
  node_.links->report(ev);
}

} // namespace netchan::detail
