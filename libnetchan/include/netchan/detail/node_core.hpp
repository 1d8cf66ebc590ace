#pragma once

// The non-template core behind node::create<T> and node::open<T>: the
// templates name the element type, this code, compiled once in libnetchan,
// hosts or finds the channel and makes its endpoints. @private

#include <cstddef>
#include <string>
#include <utility>

#include <caf/expected.hpp>

#include "netchan/detail/endpoint.hpp"

namespace netchan {

class node;

namespace detail {

class node_state;

/// What the library's own code may do with a node beyond its public API
/// (libnetchan/src/node/node_access.hpp). @private
struct node_access;

/// A channel's sender and receiver endpoints. @private
using endpoint_pair = std::pair<endpoint_ptr, endpoint_ptr>;

/// `node::create` by element type name. @private
caf::expected<endpoint_pair> create_endpoints(node& n, const std::string& name,
                                              const std::string& type_name,
                                              size_t capacity);

/// `node::open` by element type name. @private
caf::expected<endpoint_pair> open_endpoints(node& n, const std::string& where,
                                            const std::string& type_name);

} // namespace detail

} // namespace netchan
