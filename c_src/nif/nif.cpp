// Library lifecycle (load / upgrade / unload), the NIF and atom registries,
// and error helpers.
#include "nif/nif.hpp"

#include <atomic>
#include <deque>

#include "nif/scheduling.hpp"

namespace switchboard::nif {

namespace atoms {
ERL_NIF_TERM ok, error, nil, true_, false_, undefined, badarg, enomem, not_loaded, message,
    exception_field, struct_field, argument_error, runtime_error;
}

namespace {

struct NamedAtom {
  const char* name;
  ERL_NIF_TERM* slot;
};

// Function-local statics: registration runs from static initialisers in
// other translation units, in unspecified order.
std::vector<ErlNifFunc>& nif_table() {
  static std::vector<ErlNifFunc> table;
  return table;
}
std::vector<ResourceOpener>& resource_openers() {
  static std::vector<ResourceOpener> openers;
  return openers;
}
std::deque<std::pair<const char*, ERL_NIF_TERM>>& extra_atoms() {
  // A deque keeps references stable while registrations append.
  static std::deque<std::pair<const char*, ERL_NIF_TERM>> table;
  return table;
}

// How many module instances currently have the library loaded: a reload
// runs upgrade for the new instance, then unload for the purged old one.
std::atomic<int> g_instances{0};
std::atomic<int> g_upgrades{0};

ERL_NIF_TERM make_atom(ErlNifEnv* env, const char* name) {
  ERL_NIF_TERM atom;
  if (enif_make_existing_atom(env, name, &atom, ERL_NIF_LATIN1)) return atom;
  return enif_make_atom(env, name);
}

void make_atoms(ErlNifEnv* env) {
  const NamedAtom core[] = {
      {"ok", &atoms::ok},
      {"error", &atoms::error},
      {"nil", &atoms::nil},
      {"true", &atoms::true_},
      {"false", &atoms::false_},
      {"undefined", &atoms::undefined},
      {"badarg", &atoms::badarg},
      {"enomem", &atoms::enomem},
      {"not_loaded", &atoms::not_loaded},
      {"message", &atoms::message},
      {"__exception__", &atoms::exception_field},
      {"__struct__", &atoms::struct_field},
      {"Elixir.ArgumentError", &atoms::argument_error},
      {"Elixir.RuntimeError", &atoms::runtime_error},
  };
  for (const auto& atom : core) *atom.slot = make_atom(env, atom.name);
  for (auto& [name, slot] : extra_atoms()) slot = make_atom(env, name);
}

bool open_resources(ErlNifEnv* env, ErlNifResourceFlags flags) {
  for (ResourceOpener opener : resource_openers()) {
    if (!opener(env, flags)) return false;
  }
  return true;
}

int on_load(ErlNifEnv* env, void**, ERL_NIF_TERM) {
  try {
    make_atoms(env);
    // TAKEOVER as well: a type still listed from an earlier load is taken
    // over; one unlisted by a purge is recreated (see ResourceTraits).
    if (!open_resources(env,
                        static_cast<ErlNifResourceFlags>(ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER)))
      return 1;
    if (g_instances.fetch_add(1) == 0) ReplyThread::instance().start();
    return 0;
  } catch (...) {
    return 1;
  }
}

int on_upgrade(ErlNifEnv* env, void**, void**, ERL_NIF_TERM) {
  try {
    make_atoms(env);
    // TAKEOVER: resources created by the old instance stay valid and their
    // destructors are now ours.
    if (!open_resources(env,
                        static_cast<ErlNifResourceFlags>(ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER)))
      return 1;
    if (g_instances.fetch_add(1) == 0) ReplyThread::instance().start();
    g_upgrades.fetch_add(1);
    return 0;
  } catch (...) {
    return 1;
  }
}

void on_unload(ErlNifEnv*, void*) {
  if (g_instances.fetch_sub(1) == 1) ReplyThread::instance().stop();
}

}  // namespace

ERL_NIF_TERM& register_atom(const char* name) {
  auto& table = extra_atoms();
  table.emplace_back(name, 0);
  return table.back().second;
}

void register_resource_opener(ResourceOpener opener) { resource_openers().push_back(opener); }

void register_nif(const char* name, unsigned arity, RawNif function, unsigned flags) {
  nif_table().push_back(ErlNifFunc{name, arity, function, flags});
}

int upgrade_count() noexcept { return g_upgrades.load(); }
int instance_count() noexcept { return g_instances.load(); }

std::string format_term(ErlNifEnv* env, ERL_NIF_TERM term, std::size_t limit) {
  (void)env;
  std::string text(limit + 1, '\0');
  int written = enif_snprintf(text.data(), text.size(), "%T", term);
  if (written < 0) return "<unprintable term>";
  const auto length = static_cast<std::size_t>(written);
  if (length >= text.size()) {
    text.resize(limit);
    text += "...";
  } else {
    text.resize(length);
  }
  return text;
}

std::invalid_argument bad_argument(ErlNifEnv* env, std::string_view expected, ERL_NIF_TERM got) {
  std::string message = "expected ";
  message += expected;
  message += ", got: ";
  message += format_term(env, got);
  return std::invalid_argument(message);
}

ERL_NIF_TERM make_binary(ErlNifEnv* env, std::string_view bytes) {
  ERL_NIF_TERM term;
  unsigned char* data = enif_make_new_binary(env, bytes.size(), &term);
  if (data == nullptr) throw std::bad_alloc();
  if (!bytes.empty()) std::memcpy(data, bytes.data(), bytes.size());
  return term;
}

ERL_NIF_TERM raise_exception(ErlNifEnv* env, ERL_NIF_TERM module, std::string_view message) {
  // %Module{message: ...} as a map: Elixir's `rescue Module` matches it.
  ERL_NIF_TERM keys[] = {atoms::struct_field, atoms::exception_field, atoms::message};
  ERL_NIF_TERM message_term;
  unsigned char* data = enif_make_new_binary(env, message.size(), &message_term);
  if (data == nullptr) return enif_raise_exception(env, atoms::enomem);
  if (!message.empty()) std::memcpy(data, message.data(), message.size());
  ERL_NIF_TERM values[] = {module, atoms::true_, message_term};
  ERL_NIF_TERM exception;
  if (!enif_make_map_from_arrays(env, keys, values, 3, &exception)) {
    return enif_raise_exception(env, atoms::badarg);
  }
  return enif_raise_exception(env, exception);
}

}  // namespace switchboard::nif

extern "C" {
// The VM looks this symbol up by name; it is the only visible one.
__attribute__((visibility("default"))) ErlNifEntry* nif_init() {
  using namespace switchboard::nif;
  static ErlNifEntry entry = {
      ERL_NIF_MAJOR_VERSION,
      ERL_NIF_MINOR_VERSION,
      "Elixir.Switchboard.NIF",
      static_cast<int>(nif_table().size()),
      nif_table().data(),
      on_load,
      nullptr,
      on_upgrade,
      on_unload,
      ERL_NIF_VM_VARIANT,
      1,
      sizeof(ErlNifResourceTypeInit),
      ERL_NIF_MIN_ERTS_VERSION,
  };
  return &entry;
}
}
