// The C++/Erlang boundary: the one choke point every NIF goes through.
//
// A NIF is written as a plain C++ function over typed arguments,
//
//   int64_t add(ErlNifEnv*, int64_t a, int64_t b);
//   SWITCHBOARD_NIF(add, 0);
//
// and `entry<&add>` decodes each argument with `Decoder<T>`, calls it, encodes
// the result with `Encoder<R>`, and turns every C++ exception into an Elixir
// exception: `std::invalid_argument` -> ArgumentError (naming the bad term),
// anything else -> RuntimeError. No exception ever crosses into the VM.
#pragma once

#include <erl_nif.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
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
    exception_field, struct_field, argument_error, runtime_error;
}

// Registers an atom to be created at load; returns a reference that is valid
// once the library is loaded. Used for atoms owned by one glue file.
ERL_NIF_TERM& register_atom(const char* name);

// ---------------------------------------------------------------------------
// Errors

// A broken contract on a specific term: becomes an ArgumentError whose
// message names the term.
std::invalid_argument bad_argument(ErlNifEnv* env, std::string_view expected, ERL_NIF_TERM got);

// Formats a term as Erlang prints it (enif_snprintf %T), cut at `limit` bytes.
std::string format_term(ErlNifEnv* env, ERL_NIF_TERM term, std::size_t limit = 200);

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
#define SWITCHBOARD_RESOURCE(T, name_literal)                                                 \
  static const bool switchboard_resource_registered_##T = [] {                                \
    ::switchboard::nif::ResourceTraits<T>::name = name_literal;                               \
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
  static constexpr std::string_view expected = "a resource";
  static bool decode(ErlNifEnv* env, ERL_NIF_TERM term, ResourcePtr<T>& out) {
    ResourceBox<T>* box = resource_box<T>(env, term);
    if (box == nullptr) return false;
    out = ResourcePtr<T>::share(box);
    return true;
  }
};

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

// ---------------------------------------------------------------------------
// The wrapper.

using RawNif = ERL_NIF_TERM (*)(ErlNifEnv*, int, const ERL_NIF_TERM[]);

// Runs `body` and converts any escaping C++ exception into an Elixir one.
template <class Body>
ERL_NIF_TERM guarded(ErlNifEnv* env, Body&& body) noexcept {
  try {
    return body();
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

template <class F>
struct FunctionTraits;

template <class R, class... Args>
struct FunctionTraits<R (*)(ErlNifEnv*, Args...)> {
  using Result = R;
  using Arguments = std::tuple<std::decay_t<Args>...>;
  static constexpr unsigned arity = sizeof...(Args);
};

template <class T>
void decode_argument(ErlNifEnv* env, const ERL_NIF_TERM argv[], std::size_t index, T& out) {
  if (!Decoder<T>::decode(env, argv[index], out)) {
    throw bad_argument(
        env,
        "argument " + std::to_string(index + 1) + " to be " + std::string(Decoder<T>::expected),
        argv[index]);
  }
}

template <auto Fn>
ERL_NIF_TERM entry(ErlNifEnv* env, int, const ERL_NIF_TERM argv[]) noexcept {
  using Traits = FunctionTraits<decltype(Fn)>;
  return guarded(env, [&]() -> ERL_NIF_TERM {
    typename Traits::Arguments arguments;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (decode_argument(env, argv, I, std::get<I>(arguments)), ...);
    }
    (std::make_index_sequence<Traits::arity>{});
    if constexpr (std::is_void_v<typename Traits::Result>) {
      std::apply([env](auto&... args) { Fn(env, args...); }, arguments);
      return atoms::ok;
    } else {
      auto result = std::apply([env](auto&... args) { return Fn(env, args...); }, arguments);
      return Encoder<std::decay_t<decltype(result)>>::encode(env, result);
    }
  });
}

// A raw NIF (full control of argv, e.g. for continuations) with the same guard.
template <RawNif Fn>
ERL_NIF_TERM raw_entry(ErlNifEnv* env, int argc, const ERL_NIF_TERM argv[]) noexcept {
  return guarded(env, [&] { return Fn(env, argc, argv); });
}

void register_nif(const char* name, unsigned arity, RawNif function, unsigned flags);

// Registers a typed NIF; `flags` is 0 or ERL_NIF_DIRTY_JOB_CPU_BOUND / IO_BOUND.
#define SWITCHBOARD_NIF(function, flags)                                           \
  static const bool switchboard_nif_registered_##function = [] {                   \
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
