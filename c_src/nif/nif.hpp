// The C++/Erlang boundary: the one choke point every NIF goes through.
//
// A NIF is written as a plain C++ function over typed arguments,
//
//   int64_t add(ErlNifEnv*, int64_t a, int64_t b);
//   SWITCHBOARD_NIF(add, 0);
//
// and `entry<&add>` decodes each argument with `Decoder<T>`, calls it, encodes
// the result with `Encoder<R>`, and turns every C++ exception into an Elixir
// exception: `BadArgument` (from `bad_argument`, or a decoder that refused
// its term) -> ArgumentError naming the bad term, another
// `std::invalid_argument` -> ArgumentError with its text, anything else ->
// RuntimeError. No exception ever crosses into the VM.
//
// A NIF that may need to move takes a `Call&` instead of the env and returns
// `Scheduled<R>`: either its result, or `call.dirty()` (run me again on a
// dirty CPU scheduler, same arguments) or `call.yield<&next>(state...)`
// (continue in the typed NIF `next` with these arguments on a normal
// scheduler, after the VM had its turn):
//
//   Scheduled<uint64_t> hash(Call& call, std::span<const std::byte> bytes) {
//     if (bytes.size() > kDirtyBytes && call.on_normal_scheduler()) return call.dirty();
//     ...
//   }
//
// Error messages are written in Elixir, not here. A `BadArgument` raises the
// term `{:switchboard_badarg, subject, expected, term}` (subject: "argument 2"
// or nil; expected: "a binary"); the stub that `defnif` generates in the
// Elixir module owning the library (lib/switchboard/nif/library.ex) catches it
// and raises `ArgumentError` with `Switchboard.Errors.bad_argument/3`, the
// same function the pure twins call, so both read
//   expected argument 1 to be a binary, got: %{a: 1}
// with the term in `inspect/1` format.
#pragma once

#include <erl_nif.h>

#include <array>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace switchboard::nif {

// ---------------------------------------------------------------------------
// Atoms: created once at load (and again, idempotently, at upgrade).

struct Atom {
  const char* name;
  ERL_NIF_TERM term = 0;
};

namespace atoms {
extern ERL_NIF_TERM ok, error, nil, true_, false_, undefined, badarg, enomem, not_loaded, message,
    exception_field, struct_field, argument_error, runtime_error, switchboard_badarg;
}

// Registers an atom to be created at load; returns a reference that is valid
// once the library is loaded. Used for atoms owned by one glue file.
ERL_NIF_TERM& register_atom(const char* name);

// ---------------------------------------------------------------------------
// Errors

// A broken contract on a specific term: becomes an ArgumentError whose
// message, formatted in Elixir, names the term:
//   "expected <subject> to be <expected>, got: <inspect(term)>"
//   "expected <expected>, got: <inspect(term)>"          (no subject)
// `term` must live in the env of the NIF call that throws (an argument, or
// a term made in that env). `what()` holds the same words with the term in
// Erlang syntax, for logs and for code that reports it some other way.
class BadArgument : public std::invalid_argument {
 public:
  BadArgument(ErlNifEnv* env, std::string expected, ERL_NIF_TERM term, std::string subject = {});
  const std::string& expected() const noexcept { return expected_; }
  const std::string& subject() const noexcept { return subject_; }
  ERL_NIF_TERM term() const noexcept { return term_; }

 private:
  std::string expected_;
  std::string subject_;
  ERL_NIF_TERM term_;
};

// Throw it as a BadArgument: copied into a plain std::invalid_argument (a
// helper returning that type) it loses the term and raises its what(), with
// the term in Erlang syntax.
BadArgument bad_argument(ErlNifEnv* env, std::string_view expected, ERL_NIF_TERM got);
// The same, for a term with a name in the message ("argument 2", ":max_depth in argument 1").
BadArgument bad_argument(ErlNifEnv* env, std::string_view subject, std::string_view expected,
                         ERL_NIF_TERM got);

// Formats a term as Erlang prints it (enif_snprintf %T), cut at `limit` bytes.
std::string format_term(ErlNifEnv* env, ERL_NIF_TERM term, std::size_t limit = 200);

// The ordinal subject of an argument: "argument 1" for index 0.
std::string argument_subject(std::size_t index);

// Raises an Elixir exception struct (`Elixir.ArgumentError`, ...) with a message.
ERL_NIF_TERM raise_exception(ErlNifEnv* env, ERL_NIF_TERM module, std::string_view message);

// Library lifecycle counters: module instances holding the library, and how
// many times `upgrade` ran (a reload of Switchboard.NIF).
int instance_count() noexcept;
int upgrade_count() noexcept;

// Makes a binary term holding a copy of `bytes`.
ERL_NIF_TERM make_binary(ErlNifEnv* env, std::string_view bytes);

// ---------------------------------------------------------------------------
// Terms that pass through untouched.

struct Term {
  ERL_NIF_TERM value;
};

// An Erlang pid argument (decoded with enif_get_local_pid).
struct LocalPid {
  ErlNifPid pid;
};

// A list of binaries / iodata is left to the glue; decoders cover the
// argument types the NIFs actually use.

// ---------------------------------------------------------------------------
// Resources: ResourcePtr<T> is a smart pointer with balanced keep/release.

// A type's handle for each load of the library. Purging the module unlists
// its resource types, so the next load creates new ones (TAKEOVER finds
// nothing to take over), and resources made before it keep the old type.
// When the VM maps the same library again (the same file: dlopen shares its
// statics), the earlier types are kept here, each pinned by a resource that
// is never released (so its type, and the code its destructor runs, stay
// valid), and a term of any of them is accepted: sets and groups made before
// a `:code.purge` + reload keep working.
template <class T>
struct ResourceTraits {
  static inline ErlNifResourceType* type = nullptr;
  static inline const char* name = nullptr;
  static constexpr int kMaxEarlierTypes = 16;
  static inline ErlNifResourceType* earlier[kMaxEarlierTypes] = {};
  static inline std::atomic<int> earlier_count{0};
  // What an ArgumentError says was expected instead of a bad term.
  static inline std::string_view description = "a resource";
};

// The resource's storage: `alive` guards the destructor when the constructor
// threw after the VM had already allocated the memory.
template <class T>
struct ResourceBox {
  bool alive;
  alignas(T) unsigned char storage[sizeof(T)];
  T* get() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
};

template <class T>
class ResourcePtr {
 public:
  ResourcePtr() noexcept = default;
  // Adopts a reference the caller already owns (fresh from allocation).
  static ResourcePtr adopt(ResourceBox<T>* box) noexcept {
    ResourcePtr p;
    p.box_ = box;
    return p;
  }
  // Shares a resource the VM handed us (keeps it alive while we hold it).
  static ResourcePtr share(ResourceBox<T>* box) noexcept {
    enif_keep_resource(box);
    return adopt(box);
  }
  ResourcePtr(const ResourcePtr& other) noexcept : box_(other.box_) {
    if (box_ != nullptr) enif_keep_resource(box_);
  }
  ResourcePtr(ResourcePtr&& other) noexcept : box_(std::exchange(other.box_, nullptr)) {}
  ResourcePtr& operator=(ResourcePtr other) noexcept {
    std::swap(box_, other.box_);
    return *this;
  }
  ~ResourcePtr() {
    if (box_ != nullptr) enif_release_resource(box_);
  }

  T* get() const noexcept { return box_->get(); }
  T* operator->() const noexcept { return get(); }
  T& operator*() const noexcept { return *get(); }
  explicit operator bool() const noexcept { return box_ != nullptr; }
  ERL_NIF_TERM make_term(ErlNifEnv* env) const { return enif_make_resource(env, box_); }
  void* raw() const noexcept { return box_; }

 private:
  ResourceBox<T>* box_ = nullptr;
};

// The box behind a resource term of type T (made by this load of the
// library or an earlier one), or nullptr.
template <class T>
ResourceBox<T>* resource_box(ErlNifEnv* env, ERL_NIF_TERM term) {
  void* object;
  if (enif_get_resource(env, term, ResourceTraits<T>::type, &object)) {
    return static_cast<ResourceBox<T>*>(object);
  }
  const int earlier = ResourceTraits<T>::earlier_count.load(std::memory_order_acquire);
  for (int i = 0; i < earlier; ++i) {
    if (enif_get_resource(env, term, ResourceTraits<T>::earlier[i], &object)) {
      return static_cast<ResourceBox<T>*>(object);
    }
  }
  return nullptr;
}

// The object behind a resource term, or nullptr if the term is not one of
// type T. Valid while the term is (for the rest of a NIF call at least).
template <class T>
T* borrow_resource(ErlNifEnv* env, ERL_NIF_TERM term) {
  ResourceBox<T>* box = resource_box<T>(env, term);
  return box == nullptr ? nullptr : box->get();
}

template <class T, class... Args>
ResourcePtr<T> make_resource(Args&&... args) {
  ErlNifResourceType* type = ResourceTraits<T>::type;
  if (type == nullptr) throw std::runtime_error("resource type not registered");
  auto* box = static_cast<ResourceBox<T>*>(enif_alloc_resource(type, sizeof(ResourceBox<T>)));
  if (box == nullptr) throw std::bad_alloc();
  box->alive = false;
  auto owner = ResourcePtr<T>::adopt(box);
  new (box->storage) T(std::forward<Args>(args)...);
  box->alive = true;
  return owner;
}

// Other copies of this library. A reload of the owning module from another
// .so file (a copy at another path, a rebuild: the VM maps it anew, with its
// own statics) opens new resource types, and resources of the old copy's
// types are not ones this copy may read: their layout may differ. So that
// the error says why, every copy lists the types it opened (and those it
// learnt of) in library_info/0's :resource_types token; the owning module
// hands the last token to the next load as load_info
// (lib/switchboard/nif/library.ex). The types listed are pinned, never
// freed (see open_resource_type).
//
// Records a type this copy opened (open_resource_type calls it).
void note_resource_type(const char* name, ErlNifResourceType* type);
// True when `term` is a resource of a type named `name` that another copy
// of the library opened.
bool belongs_to_unloaded_library(ErlNifEnv* env, ERL_NIF_TERM term, const char* name);
// The ArgumentError for such a term, where `description` was expected:
//   "expected argument 1 to be a Switchboard.SortedSet reference of the
//    loaded library (this one belongs to a Switchboard.NIF library that was
//    unloaded), got: #Reference<...>"
BadArgument unloaded_library_resource(ErlNifEnv* env, std::string_view description,
                                      ERL_NIF_TERM term);

// Called for each registered resource type in load and upgrade.
using ResourceOpener = bool (*)(ErlNifEnv* env, ErlNifResourceFlags flags);
void register_resource_opener(ResourceOpener opener);

// A resource type whose objects monitor processes declares
//   void on_down(ErlNifEnv* env, const ErlNifPid& pid, const ErlNifMonitor& monitor) noexcept;
// and it is called (on whatever thread the VM chooses) when a process the
// object monitors with `monitor_process` exits (OTP prim_file_nif's model).
template <class T>
concept MonitorsProcesses = requires(T& object, ErlNifEnv* env, const ErlNifPid& pid,
                                     const ErlNifMonitor& monitor) {
  { object.on_down(env, pid, monitor) }
  noexcept;
};

template <class T>
bool open_resource_type(ErlNifEnv* env, ErlNifResourceFlags flags) {
  ErlNifResourceFlags tried;
  ErlNifResourceTypeInit init{};
  init.dtor = [](ErlNifEnv*, void* object) {
    auto* box = static_cast<ResourceBox<T>*>(object);
    if (box->alive) box->get()->~T();
  };
  if constexpr (MonitorsProcesses<T>) {
    init.down = [](ErlNifEnv* caller, void* object, ErlNifPid* pid, ErlNifMonitor* monitor) {
      auto* box = static_cast<ResourceBox<T>*>(object);
      if (box->alive) box->get()->on_down(caller, *pid, *monitor);
    };
  }
  ErlNifResourceType* type =
      enif_open_resource_type_x(env, ResourceTraits<T>::name, &init, flags, &tried);
  if (type == nullptr) return false;
  ErlNifResourceType* const previous = ResourceTraits<T>::type;
  if (previous != nullptr && previous != type) {
    const int earlier = ResourceTraits<T>::earlier_count.load(std::memory_order_relaxed);
    if (earlier < ResourceTraits<T>::kMaxEarlierTypes) {
      ResourceTraits<T>::earlier[earlier] = previous;
      ResourceTraits<T>::earlier_count.store(earlier + 1, std::memory_order_release);
    }
  }
  if (previous != type) {
    // The pin: a resource with no object inside (its destructor skips it),
    // never released, so this type outlives every resource made with it.
    auto* pin = static_cast<ResourceBox<T>*>(enif_alloc_resource(type, sizeof(ResourceBox<T>)));
    if (pin == nullptr) return false;
    pin->alive = false;
  }
  ResourceTraits<T>::type = type;
  note_resource_type(ResourceTraits<T>::name, type);
  return true;
}

// Monitors `pid` on behalf of `resource` (whose type has `on_down`). False
// when the process is already dead (then no `on_down` will come).
template <MonitorsProcesses T>
bool monitor_process(ErlNifEnv* env, const ResourcePtr<T>& resource, const ErlNifPid& pid,
                     ErlNifMonitor* monitor) {
  return enif_monitor_process(env, resource.raw(), &pid, monitor) == 0;
}

// Stops a monitor made with `monitor_process`; false when it had already fired.
template <MonitorsProcesses T>
bool demonitor_process(ErlNifEnv* env, const ResourcePtr<T>& resource,
                       const ErlNifMonitor& monitor) {
  return enif_demonitor_process(env, resource.raw(), &monitor) == 0;
}

// Declares T as a resource type named `name`, opened (CREATE | TAKEOVER) at
// every load and upgrade, so existing resources survive a reload.
// An optional third argument is the ArgumentError's words for a term that
// is not one ("a Switchboard.SortedSet reference"; "a resource" by default).
#define SWITCHBOARD_RESOURCE(T, name_literal, ...)                                            \
  static const bool switchboard_resource_registered_##T = [] {                                \
    ::switchboard::nif::ResourceTraits<T>::name = name_literal;                               \
    __VA_OPT__(::switchboard::nif::ResourceTraits<T>::description = __VA_ARGS__;)             \
    ::switchboard::nif::register_resource_opener(&::switchboard::nif::open_resource_type<T>); \
    return true;                                                                              \
  }()

// ---------------------------------------------------------------------------
// Process-independent environments, owned by RAII.

class OwnedEnv {
 public:
  OwnedEnv() : env_(enif_alloc_env()) {
    if (env_ == nullptr) throw std::bad_alloc();
  }
  OwnedEnv(const OwnedEnv&) = delete;
  OwnedEnv& operator=(const OwnedEnv&) = delete;
  OwnedEnv(OwnedEnv&& other) noexcept : env_(std::exchange(other.env_, nullptr)) {}
  ~OwnedEnv() {
    if (env_ != nullptr) enif_free_env(env_);
  }
  ErlNifEnv* get() const noexcept { return env_; }
  ERL_NIF_TERM copy(ERL_NIF_TERM term) const { return enif_make_copy(env_, term); }
  void clear() noexcept { enif_clear_env(env_); }

 private:
  ErlNifEnv* env_;
};

// ---------------------------------------------------------------------------
// Decoders: `static bool decode(ErlNifEnv*, ERL_NIF_TERM, T&)` plus
// `expected`, the words used in the ArgumentError when decoding fails.

template <class T, class Enable = void>
struct Decoder;

template <>
struct Decoder<Term> {
  static constexpr std::string_view expected = "a term";
  static bool decode(ErlNifEnv*, ERL_NIF_TERM term, Term& out) {
    out.value = term;
    return true;
  }
};

template <>
struct Decoder<int64_t> {
  static constexpr std::string_view expected = "an integer (64-bit)";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, int64_t& out) {
    ErlNifSInt64 value;
    if (!enif_get_int64(env, term, &value)) return false;
    out = value;
    return true;
  }
};

template <>
struct Decoder<uint64_t> {
  static constexpr std::string_view expected = "a non-negative integer (64-bit)";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, uint64_t& out) {
    ErlNifUInt64 value;
    if (!enif_get_uint64(env, term, &value)) return false;
    out = value;
    return true;
  }
};

template <>
struct Decoder<double> {
  static constexpr std::string_view expected = "a number";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, double& out) {
    if (enif_get_double(env, term, &out)) return true;
    ErlNifSInt64 integer;
    if (!enif_get_int64(env, term, &integer)) return false;
    out = static_cast<double>(integer);
    return true;
  }
};

template <>
struct Decoder<bool> {
  static constexpr std::string_view expected = "a boolean";
  static bool decode(ErlNifEnv*, ERL_NIF_TERM term, bool& out) {
    // Atoms are immediate terms: the same atom is the same word.
    if (term == atoms::true_) {
      out = true;
      return true;
    }
    if (term == atoms::false_) {
      out = false;
      return true;
    }
    return false;
  }
};

// A binary argument, viewed in place (valid for the NIF call).
struct BinaryView {
  ErlNifBinary binary;
  std::string_view view() const noexcept {
    return {reinterpret_cast<const char*>(binary.data), binary.size};
  }
};

template <>
struct Decoder<BinaryView> {
  static constexpr std::string_view expected = "a binary";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, BinaryView& out) {
    return enif_inspect_binary(env, term, &out.binary) != 0;
  }
};

template <>
struct Decoder<LocalPid> {
  static constexpr std::string_view expected = "a local pid";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, LocalPid& out) {
    return enif_get_local_pid(env, term, &out.pid) != 0;
  }
};

template <class T>
struct Decoder<ResourcePtr<T>> {
  static std::string_view expected() { return ResourceTraits<T>::description; }
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, ResourcePtr<T>& out) {
    ResourceBox<T>* box = resource_box<T>(env, term);
    if (box == nullptr) {
      if (belongs_to_unloaded_library(env, term, ResourceTraits<T>::name))
        throw unloaded_library_resource(env, expected(), term);
      return false;
    }
    out = ResourcePtr<T>::share(box);
    return true;
  }
};

// A resource argument borrowed for the call: the argument term keeps the
// object alive until the NIF returns, so no keep/release pair is paid. Do
// not keep the pointer past the call (take a ResourcePtr<T> for that).
template <class T>
struct Borrowed {
  T* object = nullptr;
  T* get() const noexcept { return object; }
  T* operator->() const noexcept { return object; }
  T& operator*() const noexcept { return *object; }
};

template <class T>
struct Decoder<Borrowed<T>> {
  static std::string_view expected() { return ResourceTraits<T>::description; }
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, Borrowed<T>& out) {
    out.object = borrow_resource<T>(env, term);
    if (out.object == nullptr && belongs_to_unloaded_library(env, term, ResourceTraits<T>::name))
      throw unloaded_library_resource(env, expected(), term);
    return out.object != nullptr;
  }
};

// A non-negative integer that fits T (sizes, counts, offsets). Converts to T.
template <class T>
struct NonNegative {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  T value{};
  NonNegative() = default;
  NonNegative(T v) : value(v) {}  // NOLINT: implicit on purpose, like the T it wraps
  operator T() const noexcept { return value; }
};

template <class T>
struct Decoder<NonNegative<T>> {
  static constexpr std::string_view expected =
      sizeof(T) >= 8 ? "a non-negative integer (64-bit)" : "a non-negative integer (32-bit)";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, NonNegative<T>& out) {
    ErlNifUInt64 value;
    if (!enif_get_uint64(env, term, &value)) return false;
    if (value > static_cast<ErlNifUInt64>(std::numeric_limits<T>::max())) return false;
    out.value = static_cast<T>(value);
    return true;
  }
};

// The bytes of a binary argument, viewed in place (valid for the NIF call).
// Bitstrings and iolists are refused: flattening an iolist is a copy whose
// length the caller does not control.
template <>
struct Decoder<std::span<const std::byte>> {
  static constexpr std::string_view expected = "a binary";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, std::span<const std::byte>& out) {
    ErlNifBinary binary;
    if (!enif_inspect_binary(env, term, &binary)) return false;
    out = {reinterpret_cast<const std::byte*>(binary.data), binary.size};
    return true;
  }
};

template <>
struct Decoder<std::string_view> {
  static constexpr std::string_view expected = "a binary";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, std::string_view& out) {
    ErlNifBinary binary;
    if (!enif_inspect_binary(env, term, &binary)) return false;
    out = {reinterpret_cast<const char*>(binary.data), binary.size};
    return true;
  }
};

// A binary argument that keeps its term: the view for reading, the term for
// passing on (a continuation's state, a message) without a copy.
struct Binary {
  ERL_NIF_TERM term = 0;
  std::span<const std::byte> bytes;
  std::size_t size() const noexcept { return bytes.size(); }
  std::string_view view() const noexcept {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  }
};

template <>
struct Decoder<Binary> {
  static constexpr std::string_view expected = "a binary";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, Binary& out) {
    if (!Decoder<std::span<const std::byte>>::decode(env, term, out.bytes)) return false;
    out.term = term;
    return true;
  }
};

// Atom <-> C++ enum. Declare the atoms once:
//
//   enum class Level { fast, best };
//   template <> struct AtomEnum<Level> {
//     static constexpr std::array values{std::pair{Level::fast, "fast"},
//                                        std::pair{Level::best, "best"}};
//   };
//
// and `Level` decodes from (and encodes to) :fast / :best; anything else is
// an ArgumentError "expected argument 1 to be one of :fast, :best, got: ...".
template <class E>
struct AtomEnum;

template <class E>
concept AtomEnumerated = std::is_enum_v<E> && requires {
  AtomEnum<E>::values;
};

namespace detail {
template <class E>
const std::string& atom_enum_expected() {
  static const std::string text = [] {
    std::string words = "one of ";
    bool first = true;
    for (const auto& [value, name] : AtomEnum<E>::values) {
      if (!first) words += ", ";
      first = false;
      words += ':';
      words += name;
    }
    return words;
  }();
  return text;
}
}  // namespace detail

template <AtomEnumerated E>
struct Decoder<E> {
  static std::string_view expected() { return detail::atom_enum_expected<E>(); }
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, E& out) {
    char text[256];
    const int length = enif_get_atom(env, term, text, sizeof text, ERL_NIF_LATIN1);
    if (length <= 0) return false;
    const std::string_view name(text, static_cast<std::size_t>(length - 1));
    for (const auto& [value, candidate] : AtomEnum<E>::values) {
      if (name == candidate) {
        out = value;
        return true;
      }
    }
    return false;
  }
};

// Words for a decoder's ArgumentError: `expected` may be a constant or,
// when it is only known at run time, a static function.
template <class D>
std::string_view expected_of() {
  if constexpr (requires { D::expected(); }) {
    return D::expected();
  } else {
    return D::expected;
  }
}

// Structs from a map with atom keys (an Elixir struct included) or from a
// keyword list, field by field (elixir-nx/fine's struct decoding):
//
//   struct Limits {
//     NonNegative<std::size_t> max_depth;
//     std::optional<bool> strict;  // optional: absent -> nullopt
//     static constexpr auto fields = std::tuple{field(&Limits::max_depth, "max_depth"),
//                                               field(&Limits::strict, "strict")};
//   };
//
// A field that is absent (and not std::optional), or whose value its own
// decoder refuses, is an ArgumentError naming the field and its value:
//   "expected :max_depth in argument 1 to be a non-negative integer (64-bit), got: -1".
// Keys the struct does not name are ignored.
template <class S, class M>
struct Field {
  M S::*member;
  const char* name;
};
template <class S, class M>
constexpr Field<S, M> field(M S::*member, const char* name) {
  return {member, name};
}

template <class S>
concept DecodableStruct = std::is_class_v<S> && requires {
  S::fields;
};

template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {
  using Value = T;
};

namespace detail {
// The value under `key` in a map or keyword list (the first for a keyword).
inline bool lookup_key(ErlNifEnv* env, ERL_NIF_TERM container, ERL_NIF_TERM key,
                       ERL_NIF_TERM* value) {
  if (enif_is_map(env, container)) return enif_get_map_value(env, container, key, value) != 0;
  ERL_NIF_TERM head;
  while (enif_get_list_cell(env, container, &head, &container)) {
    int arity;
    const ERL_NIF_TERM* pair;
    if (enif_get_tuple(env, head, &arity, &pair) && arity == 2 && enif_is_identical(pair[0], key)) {
      *value = pair[1];
      return true;
    }
  }
  return false;
}

// True for a map or a proper list of {atom, term} pairs.
inline bool is_map_or_keyword(ErlNifEnv* env, ERL_NIF_TERM term) {
  if (enif_is_map(env, term)) return true;
  ERL_NIF_TERM head;
  while (enif_get_list_cell(env, term, &head, &term)) {
    int arity;
    const ERL_NIF_TERM* pair;
    if (!enif_get_tuple(env, head, &arity, &pair) || arity != 2 || !enif_is_atom(env, pair[0]))
      return false;
  }
  return enif_is_empty_list(env, term);
}
}  // namespace detail

template <class T>
void decode_field_value(ErlNifEnv* env, ERL_NIF_TERM term, const std::string& subject, T& out);

template <DecodableStruct S>
struct Decoder<S> {
  static constexpr std::string_view expected = "a map or a keyword list";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, S& out) {
    if (!detail::is_map_or_keyword(env, term)) return false;
    std::apply([&](const auto&... fields) { (decode_one(env, term, out, fields), ...); },
               S::fields);
    return true;
  }

 private:
  template <class M>
  static void decode_one(ErlNifEnv* env, ERL_NIF_TERM term, S& out, const Field<S, M>& field) {
    const std::string subject = std::string(":") + field.name;
    ERL_NIF_TERM key;
    ERL_NIF_TERM value;
    // A key that is not an atom yet cannot be in the term.
    const bool present = enif_make_existing_atom(env, field.name, &key, ERL_NIF_LATIN1) &&
                         detail::lookup_key(env, term, key, &value);
    if constexpr (IsOptional<M>::value) {
      if (!present) {
        (out.*field.member).reset();
        return;
      }
      typename IsOptional<M>::Value inner{};
      decode_field_value(env, value, subject, inner);
      out.*field.member = std::move(inner);
    } else {
      if (!present)
        throw bad_argument(env, "a map or a keyword list with the key " + subject, term);
      decode_field_value(env, value, subject, out.*field.member);
    }
  }
};

template <class T>
void decode_field_value(ErlNifEnv* env, ERL_NIF_TERM term, const std::string& subject, T& out) {
  if (!Decoder<T>::decode(env, term, out)) {
    throw bad_argument(env, subject, expected_of<Decoder<T>>(), term);
  }
}

// ---------------------------------------------------------------------------
// Encoders: `static ERL_NIF_TERM encode(ErlNifEnv*, const T&)`.

template <class T, class Enable = void>
struct Encoder;

template <>
struct Encoder<Term> {
  static ERL_NIF_TERM encode(ErlNifEnv*, Term term) { return term.value; }
};
// ERL_NIF_TERM is an unsigned 64-bit integer type, so a NIF returning it
// returns a term as is; there is deliberately no Encoder<uint64_t>.
template <>
struct Encoder<ERL_NIF_TERM> {
  static ERL_NIF_TERM encode(ErlNifEnv*, ERL_NIF_TERM term) { return term; }
};
template <>
struct Encoder<int64_t> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, int64_t value) { return enif_make_int64(env, value); }
};
template <>
struct Encoder<double> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, double value) { return enif_make_double(env, value); }
};
template <>
struct Encoder<bool> {
  static ERL_NIF_TERM encode(ErlNifEnv*, bool value) {
    return value ? atoms::true_ : atoms::false_;
  }
};
template <>
struct Encoder<std::string> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, const std::string& value) {
    return make_binary(env, value);
  }
};
template <class T>
struct Encoder<ResourcePtr<T>> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, const ResourcePtr<T>& value) {
    return value.make_term(env);
  }
};
template <class T>
struct Encoder<std::optional<T>> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, const std::optional<T>& value) {
    return value ? Encoder<T>::encode(env, *value) : atoms::nil;
  }
};
template <class T>
struct Encoder<std::vector<T>> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, const std::vector<T>& values) {
    ERL_NIF_TERM list = enif_make_list(env, 0);
    for (auto it = values.rbegin(); it != values.rend(); ++it) {
      list = enif_make_list_cell(env, Encoder<T>::encode(env, *it), list);
    }
    return list;
  }
};
template <class... Ts>
struct Encoder<std::tuple<Ts...>> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, const std::tuple<Ts...>& value) {
    return std::apply(
        [env](const Ts&... items) {
          return enif_make_tuple(env, sizeof...(Ts),
                                 Encoder<std::decay_t<Ts>>::encode(env, items)...);
        },
        value);
  }
};

template <>
struct Encoder<Binary> {
  static ERL_NIF_TERM encode(ErlNifEnv*, const Binary& value) { return value.term; }
};
template <class T>
struct Encoder<NonNegative<T>> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, NonNegative<T> value) {
    return enif_make_uint64(env, static_cast<ErlNifUInt64>(value.value));
  }
};
template <>
struct Encoder<std::string_view> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, std::string_view value) {
    return make_binary(env, value);
  }
};
template <>
struct Encoder<std::span<const std::byte>> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, std::span<const std::byte> value) {
    return make_binary(env, {reinterpret_cast<const char*>(value.data()), value.size()});
  }
};
template <AtomEnumerated E>
struct Encoder<E> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, E value) {
    for (const auto& [candidate, name] : AtomEnum<E>::values) {
      if (candidate == value) return enif_make_atom(env, name);
    }
    throw std::logic_error("enum value without an atom");
  }
};

// {:ok, values...} and {:error, values...}; `Ok{}` alone is :ok. Build them
// with class template argument deduction: `return Ok{set};`,
// `return Error{atom_not_ascending, position};`.
template <class... Ts>
struct Ok {
  std::tuple<Ts...> values;
  explicit Ok(Ts... v) : values(std::move(v)...) {}
};
template <class... Ts>
struct Error {
  std::tuple<Ts...> values;
  explicit Error(Ts... v) : values(std::move(v)...) {}
};

namespace detail {
template <class... Ts>
ERL_NIF_TERM tagged(ErlNifEnv* env, ERL_NIF_TERM tag, const std::tuple<Ts...>& values) {
  if constexpr (sizeof...(Ts) == 0) {
    return tag;
  } else {
    return std::apply(
        [env, tag](const Ts&... items) {
          return enif_make_tuple(env, sizeof...(Ts) + 1, tag,
                                 Encoder<std::decay_t<Ts>>::encode(env, items)...);
        },
        values);
  }
}
}  // namespace detail

template <class... Ts>
struct Encoder<Ok<Ts...>> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, const Ok<Ts...>& value) {
    return detail::tagged(env, atoms::ok, value.values);
  }
};
template <class... Ts>
struct Encoder<Error<Ts...>> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, const Error<Ts...>& value) {
    return detail::tagged(env, atoms::error, value.values);
  }
};
// One of several result shapes: `std::variant<Ok<Ref>, Error<ERL_NIF_TERM>>`.
template <class... Ts>
struct Encoder<std::variant<Ts...>> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, const std::variant<Ts...>& value) {
    return std::visit(
        [env](const auto& item) {
          return Encoder<std::decay_t<decltype(item)>>::encode(env, item);
        },
        value);
  }
};

// ---------------------------------------------------------------------------
// The wrapper.

using RawNif = ERL_NIF_TERM (*)(ErlNifEnv*, int, const ERL_NIF_TERM[]);

// Raises `{:switchboard_badarg, subject | nil, expected, term}`, which the
// Elixir stub turns into an ArgumentError (see the top of this file).
ERL_NIF_TERM raise_bad_argument(ErlNifEnv* env, const BadArgument& error);

// Runs `body` and converts any escaping C++ exception into an Elixir one.
template <class Body>
ERL_NIF_TERM guarded(ErlNifEnv* env, Body&& body) noexcept {
  try {
    return body();
  } catch (const BadArgument& error) {
    return raise_bad_argument(env, error);
  } catch (const std::invalid_argument& error) {
    return raise_exception(env, atoms::argument_error, error.what());
  } catch (const std::bad_alloc&) {
    return raise_exception(env, atoms::runtime_error, "out of memory");
  } catch (const std::exception& error) {
    return raise_exception(env, atoms::runtime_error, error.what());
  } catch (...) {
    return raise_exception(env, atoms::runtime_error, "unknown C++ exception in NIF");
  }
}

// The token a NIF returns once it asked the VM to run something else in its
// place (`Call::dirty`, `Call::yield`): the term enif_schedule_nif gave.
struct Rescheduled {
  ERL_NIF_TERM term;
};

// A typed NIF's result, or a request to continue elsewhere. Converts
// implicitly from both, so a NIF body simply returns either.
template <class R>
class Scheduled {
 public:
  // Anything R is made from: `return Ok{set};` where R is a std::variant of Ok and Error.
  template <class U>
  requires(!std::is_same_v<std::decay_t<U>, Rescheduled> &&
           !std::is_same_v<std::decay_t<U>, Scheduled> && std::is_constructible_v<R, U&&>)
      Scheduled(U&& value)  // NOLINT: implicit, so a NIF body returns its result as is
      : state_(std::in_place_index<0>, std::forward<U>(value)) {}
  Scheduled(Rescheduled next) : state_(std::in_place_index<1>, next) {}  // NOLINT
  bool rescheduled() const noexcept { return state_.index() == 1; }

  ERL_NIF_TERM encode(ErlNifEnv* env) const {
    if (rescheduled()) return std::get<1>(state_).term;
    return Encoder<R>::encode(env, std::get<0>(state_));
  }

 private:
  std::variant<R, Rescheduled> state_;
};

template <class R>
struct Encoder<Scheduled<R>> {
  static ERL_NIF_TERM encode(ErlNifEnv* env, const Scheduled<R>& value) {
    return value.encode(env);
  }
};

template <class F>
struct FunctionTraits;

class Call;

template <class R, class... Args>
struct FunctionTraits<R (*)(ErlNifEnv*, Args...)> {
  using Result = R;
  using Arguments = std::tuple<std::decay_t<Args>...>;
  static constexpr unsigned arity = sizeof...(Args);
  static constexpr bool takes_call = false;
};

template <class R, class... Args>
struct FunctionTraits<R (*)(Call&, Args...)> {
  using Result = R;
  using Arguments = std::tuple<std::decay_t<Args>...>;
  static constexpr unsigned arity = sizeof...(Args);
  static constexpr bool takes_call = true;
};

template <auto Fn>
ERL_NIF_TERM entry(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) noexcept;

// The name a NIF was registered under (enif_schedule_nif shows it in
// process_info's current_function); continuations keep their caller's.
template <auto Fn>
inline const char* nif_name = nullptr;

// One call of a typed NIF: its env and raw arguments, and the ways to ask
// the VM to continue it somewhere else. A NIF that returns the result of
// `dirty()` or `yield()` must return it at once, and must not throw after
// asking (the VM has already been told what runs next).
class Call {
 public:
  Call(ErlNifEnv* env, int argc, const ERL_NIF_TERM* argv, RawNif self, const char* name) noexcept
      : env_(env), argc_(argc), argv_(argv), self_(self), name_(name) {}

  ErlNifEnv* env() const noexcept { return env_; }
  operator ErlNifEnv*() const noexcept { return env_; }  // NOLINT: a Call is where its env is
  std::span<const ERL_NIF_TERM> arguments() const noexcept {
    return {argv_, static_cast<std::size_t>(argc_)};
  }
  const char* name() const noexcept { return name_; }

  bool on_normal_scheduler() const noexcept {
    return enif_thread_type() == ERL_NIF_THR_NORMAL_SCHEDULER;
  }

  // Runs this NIF again, with the same arguments, on a dirty CPU scheduler.
  Rescheduled dirty() const { return schedule(ERL_NIF_DIRTY_JOB_CPU_BOUND, self_, argv_, argc_); }

  // Continues in the typed NIF `Next` (registered or not) with `state` as its
  // arguments, each encoded with its Encoder and decoded again by Next's
  // Decoders: on a normal scheduler after the VM had its turn (yield), or
  // on a dirty CPU scheduler (continue_dirty).
  template <auto Next, class... State>
  Rescheduled yield(const State&... state) const {
    return continue_with<Next>(0, state...);
  }
  template <auto Next, class... State>
  Rescheduled continue_dirty(const State&... state) const {
    return continue_with<Next>(ERL_NIF_DIRTY_JOB_CPU_BOUND, state...);
  }

 private:
  template <auto Next, class... State>
  Rescheduled continue_with(int flags, const State&... state) const {
    static_assert(FunctionTraits<decltype(Next)>::arity == sizeof...(State),
                  "a continuation takes exactly the state it is given");
    const std::array<ERL_NIF_TERM, sizeof...(State)> next{
        Encoder<std::decay_t<State>>::encode(env_, state)...};
    return schedule(flags, &entry<Next>, next.data(), static_cast<int>(next.size()));
  }

  Rescheduled schedule(int flags, RawNif fn, const ERL_NIF_TERM* argv, int argc) const {
    return {enif_schedule_nif(env_, name_, flags, fn, argc, argv)};
  }

  ErlNifEnv* env_;
  int argc_;
  const ERL_NIF_TERM* argv_;
  RawNif self_;
  const char* name_;
};

// Decodes argument `index` (0-based) or throws a BadArgument that names it.
// Inlined into each NIF's entry: a call per argument is a measurable part
// of a NIF that takes several (erlpack_decode takes nine) and does little.
template <class T>
[[gnu::always_inline]] inline void decode_argument(ErlNifEnv* env, const ERL_NIF_TERM argv[],
                                                   std::size_t index, T& out) {
  bool decoded;
  try {
    decoded = Decoder<T>::decode(env, argv[index], out);
  } catch (const BadArgument& inner) {
    // A part of the argument (a struct's field) was refused: name both.
    const std::string subject = inner.subject().empty()
                                    ? argument_subject(index)
                                    : inner.subject() + " in " + argument_subject(index);
    throw bad_argument(env, subject, inner.expected(), inner.term());
  }
  if (!decoded) {
    throw bad_argument(env, argument_subject(index), expected_of<Decoder<T>>(), argv[index]);
  }
}

template <auto Fn>
ERL_NIF_TERM entry(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) noexcept {
  using Traits = FunctionTraits<decltype(Fn)>;
  return guarded(env, [&]() -> ERL_NIF_TERM {
    typename Traits::Arguments arguments;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (decode_argument(env, argv, I, std::get<I>(arguments)), ...);
    }
    (std::make_index_sequence<Traits::arity>{});
    auto invoke = [&](auto&... args) {
      if constexpr (Traits::takes_call) {
        Call call(env, argc, argv, &entry<Fn>,
                  nif_name<Fn> != nullptr ? nif_name<Fn> : "switchboard_continuation");
        return Fn(call, args...);
      } else {
        return Fn(env, args...);
      }
    };
    if constexpr (std::is_void_v<typename Traits::Result>) {
      std::apply(invoke, arguments);
      return atoms::ok;
    } else {
      auto result = std::apply(invoke, arguments);
      return Encoder<std::decay_t<decltype(result)>>::encode(env, result);
    }
  });
}

// A raw NIF (full control of argv, e.g. for continuations) with the same guard.
template <RawNif Fn>
ERL_NIF_TERM raw_entry(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) noexcept {
  return guarded(env, [&] { return Fn(env, argc, argv); });
}

// Adds a NIF to the library's table. The VM knows it as `nif_<name>`: the
// Elixir stub of that name is private, behind a public function `name` that
// `defnif` generates to format errors (lib/switchboard/nif/library.ex).
void register_nif(const char* name, unsigned arity, RawNif function, unsigned flags);

// Registers a typed NIF; `flags` is 0 or ERL_NIF_DIRTY_JOB_CPU_BOUND / IO_BOUND.
#define SWITCHBOARD_NIF(function, flags)                                           \
  static const bool switchboard_nif_registered_##function = [] {                   \
    ::switchboard::nif::nif_name<& function> = #function;                          \
    ::switchboard::nif::register_nif(                                              \
        #function, ::switchboard::nif::FunctionTraits<decltype(&function)>::arity, \
        &::switchboard::nif::entry<&function>, flags);                             \
    return true;                                                                   \
  }()

// Registers a raw NIF of the given arity.
#define SWITCHBOARD_RAW_NIF(function, arity, flags)                                               \
  static const bool switchboard_nif_registered_##function = [] {                                  \
    ::switchboard::nif::register_nif(#function, arity, &::switchboard::nif::raw_entry<&function>, \
                                     flags);                                                      \
    return true;                                                                                  \
  }()

}  // namespace switchboard::nif
