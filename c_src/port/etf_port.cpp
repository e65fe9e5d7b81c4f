// switchboard_etf_port: decodes untrusted External Term Format bytes outside
// the VM, for Switchboard.Erlpack.decode(bytes, isolation: :port).
//
// It speaks {packet, 4} on stdin/stdout: each frame is a 4-byte big-endian
// length and an ETF term. Requests come from the VM (trusted); the bytes
// they carry do not. Replies hold no term built from the untrusted bytes,
// only a canonical re-encoding of them that the VM reads with
// binary_to_term/2 ([safe] unless atoms: :create):
//
//   {decode, Bytes, Atoms, MaxDepth, MaxSize, MaxDecompressed, AllowTrailing, Plain}
//     -> {ok, Canonical, BytesUsed, MustExist, Opaque}
//      | {error, Reason, Offset, MustExist, Opaque}
//   {locate, Bytes, Atoms, MaxDepth, MaxSize, MaxDecompressed, AllowTrailing, Plain, Unknown}
//     -> {error, Reason, Offset} | none
//   {find_opaque, Bytes, Atoms, MaxDepth, MaxSize, MaxDecompressed, AllowTrailing, Plain, Index}
//     -> {error, invalid_term, Offset} | none
//   {sleep, Milliseconds} -> ok          (tests: a request the port is slow on)
//
// The port cannot know which atoms exist in the VM: MustExist lists (once
// each, in document order) the atom names the result depends on, read before
// any error; with atoms: create, the VM counts the new ones among them
// against its allowance (and `locate`s the first name past it). When the
// VM finds some of them unknown, it asks `locate` with those names, and the
// port finds the first refusal they cause, at the offset the NIF would report.
// Nor can it know which pids, ports, references and funs the VM accepts (a
// local pid must name a live process's number range, ...): Opaque holds each
// of them encoded alone, in document order, and when the VM refuses the
// n-th, `find_opaque` says where it starts. After an error both lists hold
// what was read before it, which the VM checks first, as the NIF would have.
// Any failure of the port itself (bad request, out of memory) ends it: the
// VM's pool reports {error, port_exited} and starts a new one.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/etf/decoder.hpp"
#include "core/etf/encoder.hpp"
#include "core/etf/refusal.hpp"
#include "core/etf/value.hpp"

namespace {

namespace etf = switchboard::core::etf;
using etf::AtomMode;
using etf::Refusal;

// ---------------------------------------------------------------------------
// Framing

bool read_exactly(int fd, std::uint8_t* into, std::size_t count) {
  while (count > 0) {
    const ssize_t got = ::read(fd, into, count);
    if (got == 0) return false;
    if (got < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    into += got;
    count -= static_cast<std::size_t>(got);
  }
  return true;
}

void write_exactly(int fd, const std::uint8_t* from, std::size_t count) {
  while (count > 0) {
    const ssize_t put = ::write(fd, from, count);
    if (put < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("cannot write to the VM");
    }
    from += put;
    count -= static_cast<std::size_t>(put);
  }
}

// The VM never sends more than its own limits allow plus a small header.
constexpr std::size_t kMaxFrameBytes = std::size_t{1} << 31;

std::optional<etf::Bytes> read_frame() {
  std::uint8_t header[4];
  if (!read_exactly(STDIN_FILENO, header, 4)) return std::nullopt;
  const std::size_t size = (std::size_t{header[0]} << 24) | (std::size_t{header[1]} << 16) |
                           (std::size_t{header[2]} << 8) | std::size_t{header[3]};
  if (size > kMaxFrameBytes) throw std::runtime_error("frame too large");
  etf::Bytes frame(size);
  if (!read_exactly(STDIN_FILENO, frame.data(), size)) return std::nullopt;
  return frame;
}

void write_frame(std::span<const std::uint8_t> reply) {
  if (reply.size() > 0xffffffffu) throw std::runtime_error("reply too large");
  const auto size = static_cast<std::uint32_t>(reply.size());
  const std::uint8_t header[4] = {
      static_cast<std::uint8_t>(size >> 24), static_cast<std::uint8_t>(size >> 16),
      static_cast<std::uint8_t>(size >> 8), static_cast<std::uint8_t>(size)};
  write_exactly(STDOUT_FILENO, header, 4);
  write_exactly(STDOUT_FILENO, reply.data(), reply.size());
}

// ---------------------------------------------------------------------------
// Decoding

// Atom names, once each, in the order first met.
class AtomNames {
 public:
  void add(std::string_view name) {
    if (seen_.emplace(name).second) order_.emplace_back(name);
  }
  const std::vector<std::string>& names() const noexcept { return order_; }

 private:
  std::set<std::string, std::less<>> seen_;
  std::vector<std::string> order_;
};

// Says every atom exists, and remembers each name it was asked about: run
// through check_opaque_atoms, it lists the atoms a fun's rebuilding needs.
class RecordingOracle final : public etf::AtomOracle {
 public:
  explicit RecordingOracle(AtomNames& names) : names_(names) {}
  bool exists(std::string_view utf8) override {
    names_.add(utf8);
    return true;
  }

 private:
  AtomNames& names_;
};

// Knows which atoms the VM lacks.
class UnknownAtoms final : public etf::AtomOracle {
 public:
  explicit UnknownAtoms(std::set<std::string, std::less<>> unknown)
      : unknown_(std::move(unknown)) {}
  bool exists(std::string_view utf8) override { return unknown_.find(utf8) == unknown_.end(); }

 private:
  std::set<std::string, std::less<>> unknown_;
};

// Re-encodes each event canonically (the tags term_to_binary/1 writes) and
// collects the atom names the result needs. With atoms: :binary, atoms other
// than true, false and nil are written as binaries, and a map whose keys
// thereby become equal is refused.
class CanonicalVisitor {
 public:
  CanonicalVisitor(etf::EtfEncoder& out, AtomMode mode, const etf::DecodeLimits& limits,
                   AtomNames& must_exist)
      : out_(out), mode_(mode), limits_(limits), must_exist_(must_exist) {}

  bool duplicate_keys() const noexcept { return duplicate_keys_; }
  const std::vector<etf::Bytes>& opaque() const noexcept { return opaque_; }

  bool on_integer(std::int64_t value) {
    out_.int64(value);
    return leaf();
  }
  bool on_big_integer(bool negative, std::span<const std::uint8_t> magnitude) {
    out_.big_integer(negative, magnitude);
    return leaf();
  }
  bool on_float(double value) {
    out_.float64(value);
    return leaf();
  }
  bool on_atom(std::string_view text) {
    if (mode_ == AtomMode::binary && !etf::is_literal_atom(text)) {
      out_.binary(text);
      return leaf(text, true);
    }
    must_exist_.add(text);
    out_.atom(text);
    return leaf();
  }
  bool on_binary(std::span<const std::uint8_t> bytes) {
    out_.binary(bytes);
    return leaf({reinterpret_cast<const char*>(bytes.data()), bytes.size()}, false);
  }
  bool on_bitstring(std::span<const std::uint8_t> bytes, std::uint8_t bits) {
    out_.bitstring(bytes, bits);
    return leaf();
  }
  bool on_string(std::span<const std::uint8_t> bytes) {
    out_.string(bytes);
    return leaf();
  }
  bool on_nil() {
    out_.nil();
    return leaf();
  }
  bool begin_list(std::uint32_t length) {
    out_.list_header(length);
    return open(false);
  }
  bool end_list() { return close(); }
  bool begin_tuple(std::uint32_t arity) {
    out_.tuple_header(arity);
    return open(false);
  }
  bool end_tuple() { return close(); }
  bool begin_map(std::uint32_t pairs) {
    out_.map_header(pairs);
    return open(true);
  }
  bool end_map() {
    Frame& map = frames_.back();
    if (map.renamed_key && map.binary_keys.size() >= 2) {
      std::sort(map.binary_keys.begin(), map.binary_keys.end());
      if (std::adjacent_find(map.binary_keys.begin(), map.binary_keys.end()) !=
          map.binary_keys.end()) {
        duplicate_keys_ = true;
        return false;
      }
    }
    return close();
  }
  bool on_pid(const etf::PidData& pid) {
    need(pid.node);
    return opaque_term(
        [&](etf::EtfEncoder& out) { out.pid(pid.node, pid.id, pid.serial, pid.creation); });
  }
  bool on_port(const etf::PortData& port) {
    need(port.node);
    return opaque_term([&](etf::EtfEncoder& out) { out.port(port.node, port.id, port.creation); });
  }
  bool on_reference(const etf::ReferenceData& reference) {
    need(reference.node);
    return opaque_term([&](etf::EtfEncoder& out) {
      out.reference(reference.node, reference.creation, reference.ids);
    });
  }
  bool on_export(const etf::ExportData& exported) {
    need(exported.module);
    need(exported.function);
    return opaque_term([&](etf::EtfEncoder& out) {
      out.export_fun(exported.module, exported.function,
                     static_cast<std::uint32_t>(exported.arity));
    });
  }
  // Passed on as received: only the VM can rebuild a fun, from these bytes.
  bool on_local_fun(const etf::LocalFunData& fun) {
    RecordingOracle recorder(must_exist_);
    etf::check_opaque_atoms(fun.encoded, 0, AtomMode::existing, recorder, limits_);
    return opaque_term([&](etf::EtfEncoder& out) { out.raw(fun.encoded); });
  }

 private:
  struct Frame {
    bool map;
    bool renamed_key = false;
    std::uint64_t children = 0;
    std::vector<std::string> binary_keys;
  };

  // Writes the term into the result, and alone into opaque().
  template <class Write>
  bool opaque_term(Write&& write) {
    write(out_);
    etf::EtfEncoder alone;
    alone.version();
    write(alone);
    opaque_.emplace_back(alone.bytes().begin(), alone.bytes().end());
    return leaf();
  }

  void need(std::string_view name) { must_exist_.add(name); }

  bool open(bool map) {
    frames_.push_back(Frame{map, false, 0, {}});
    return true;
  }
  bool close() {
    frames_.pop_back();
    return leaf();
  }
  // A term is complete; with atoms: :binary, remembers the map keys that
  // are binaries.
  bool leaf(std::string_view binary_key = {}, bool renamed = false) {
    if (frames_.empty()) return true;
    Frame& parent = frames_.back();
    const bool is_key = parent.map && (parent.children & 1) == 0;
    ++parent.children;
    if (is_key && mode_ == AtomMode::binary && binary_key.data() != nullptr) {
      parent.binary_keys.emplace_back(binary_key);
      parent.renamed_key = parent.renamed_key || renamed;
    }
    return true;
  }

  etf::EtfEncoder& out_;
  AtomMode mode_;
  const etf::DecodeLimits& limits_;
  AtomNames& must_exist_;
  std::vector<Frame> frames_;
  std::vector<etf::Bytes> opaque_;
  bool duplicate_keys_ = false;
};

// Rejects at the index-th pid, port, reference, export or fun.
class OpaqueFinder : public etf::NullVisitor {
 public:
  explicit OpaqueFinder(std::uint64_t index) : left_(index) {}
  bool on_pid(const etf::PidData&) { return next(); }
  bool on_port(const etf::PortData&) { return next(); }
  bool on_reference(const etf::ReferenceData&) { return next(); }
  bool on_export(const etf::ExportData&) { return next(); }
  bool on_local_fun(const etf::LocalFunData&) { return next(); }

 private:
  bool next() { return left_-- != 0; }
  std::uint64_t left_;
};

// ---------------------------------------------------------------------------
// Requests

struct DecodeRequest {
  std::span<const std::uint8_t> bytes;
  AtomMode mode;
  etf::DecodeLimits limits;
};

AtomMode mode_from(const etf::Value& value) {
  const std::string_view name = value.as_atom();
  if (name == "existing") return AtomMode::existing;
  if (name == "binary") return AtomMode::binary;
  if (name == "create") return AtomMode::create;
  throw std::invalid_argument("bad atoms mode");
}

std::size_t size_from(const etf::Value& value) {
  const std::int64_t size = value.as_integer();
  if (size < 0) throw std::invalid_argument("negative size");
  return static_cast<std::size_t>(size);
}

DecodeRequest decode_request(std::span<const etf::Value> fields) {
  DecodeRequest request{fields[1].as_binary(), mode_from(fields[2]), {}};
  request.limits.max_depth = size_from(fields[3]);
  request.limits.max_input_bytes = size_from(fields[4]);
  request.limits.max_decompressed_bytes = size_from(fields[5]);
  request.limits.allow_trailing_data = fields[6].is_atom("true");
  request.limits.plain_only = fields[7].is_atom("true");
  return request;
}

void add_names(etf::EtfEncoder& reply, const AtomNames& names) {
  if (!names.names().empty()) {
    reply.list_header(static_cast<std::uint32_t>(names.names().size()));
    for (const std::string& name : names.names()) reply.binary(std::string_view(name));
  }
  reply.nil();
}

void add_opaque(etf::EtfEncoder& reply, const CanonicalVisitor& visitor) {
  if (!visitor.opaque().empty()) {
    reply.list_header(static_cast<std::uint32_t>(visitor.opaque().size()));
    for (const etf::Bytes& term : visitor.opaque()) reply.binary(std::span(term));
  }
  reply.nil();
}

void decode(const DecodeRequest& request, etf::EtfEncoder& reply) {
  etf::EtfEncoder canonical(request.bytes.size() + 16);
  canonical.version();
  AtomNames must_exist;
  CanonicalVisitor visitor(canonical, request.mode, request.limits, must_exist);
  etf::EtfDecoder decoder(request.limits);
  const etf::DecodeStatus status = decoder.decode(request.bytes, visitor);
  if (status) {
    reply.tuple_header(5);
    reply.atom("ok");
    reply.binary(canonical.bytes());
    reply.uint64(status.bytes_used);
    add_names(reply, must_exist);
    add_opaque(reply, visitor);
    return;
  }
  Refusal refusal = etf::structural_refusal(request.bytes, status);
  if (visitor.duplicate_keys()) {
    refusal.reason = "duplicate_key";
    if (!status.in_decompressed) {
      const std::size_t at =
          etf::find_binary_mode_duplicate(request.bytes, status.offset, request.limits);
      if (at != etf::npos) refusal.offset = at;
    }
  }
  reply.tuple_header(5);
  reply.atom("error");
  reply.atom(refusal.reason);
  reply.uint64(refusal.offset);
  add_names(reply, must_exist);
  add_opaque(reply, visitor);
}

void locate(const DecodeRequest& request, const etf::Value& unknown_names, etf::EtfEncoder& reply) {
  std::set<std::string, std::less<>> unknown;
  for (const etf::Value& name : unknown_names.as_list().items) {
    const auto bytes = name.as_binary();
    unknown.emplace(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  UnknownAtoms oracle(std::move(unknown));
  const auto refusal =
      etf::locate_unknown_atom(request.bytes, request.mode, oracle, request.limits);
  if (!refusal) {
    reply.atom("none");
    return;
  }
  reply.tuple_header(3);
  reply.atom("error");
  reply.atom(refusal->reason);
  reply.uint64(refusal->offset);
}

void find_opaque(const DecodeRequest& request, const etf::Value& index, etf::EtfEncoder& reply) {
  OpaqueFinder finder(static_cast<std::uint64_t>(index.as_integer()));
  etf::EtfDecoder decoder(request.limits);
  const etf::DecodeStatus status = decoder.decode(request.bytes, finder);
  if (status.error != etf::DecodeErrc::rejected_by_visitor) {
    reply.atom("none");
    return;
  }
  reply.tuple_header(3);
  reply.atom("error");
  reply.atom("invalid_term");
  reply.uint64(status.in_decompressed ? 1 : status.offset);
}

void serve(std::span<const std::uint8_t> frame, etf::EtfEncoder& reply) {
  // The request is the VM's own (trusted), and holds the untrusted bytes as
  // one binary: the caller's max_size bounds those, not the default limits.
  etf::DecodeLimits request_limits;
  request_limits.max_input_bytes = frame.size();
  etf::DecodedValue request = etf::decode(frame, request_limits);
  if (!request.status) throw std::invalid_argument("undecodable request");
  const std::span<const etf::Value> fields = request.value.as_tuple();
  if (fields.empty()) throw std::invalid_argument("empty request");
  const std::string_view kind = fields[0].as_atom();
  reply.version();
  if (kind == "decode" && fields.size() == 8) {
    decode(decode_request(fields), reply);
  } else if (kind == "locate" && fields.size() == 9) {
    locate(decode_request(fields), fields[8], reply);
  } else if (kind == "find_opaque" && fields.size() == 9) {
    find_opaque(decode_request(fields), fields[8], reply);
  } else if (kind == "sleep" && fields.size() == 2) {
    std::this_thread::sleep_for(std::chrono::milliseconds(fields[1].as_integer()));
    reply.atom("ok");
  } else {
    throw std::invalid_argument("unknown request");
  }
}

}  // namespace

// The VM closes the port's stdin when the worker that owns it dies; a
// request in progress (a long decode, a sleep) must not keep the process
// alive after that. poll() with no events still reports the hang-up.
void exit_when_stdin_closes() {
  std::thread([] {
    pollfd watched{STDIN_FILENO, 0, 0};
    for (;;) {
      if (poll(&watched, 1, -1) < 0 && errno == EINTR) continue;
      if ((watched.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0) std::_Exit(0);
    }
  }).detach();
}

int main() {
  exit_when_stdin_closes();
  try {
    while (auto frame = read_frame()) {
      etf::EtfEncoder reply;
      serve(*frame, reply);
      write_frame(reply.bytes());
    }
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "switchboard_etf_port: %s\n", error.what());
    return 70;
  }
}
