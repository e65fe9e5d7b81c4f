// Library lifecycle (load / upgrade / unload), the NIF and atom registries,
// and error helpers.
#include "nif/nif.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>

#include "core/memory.hpp"
#include "nif/scheduling.hpp"

namespace switchboard::nif {

namespace atoms {
ERL_NIF_TERM ok, error, nil, true_, false_, undefined, badarg, enomem, not_loaded, message,
    exception_field, struct_field, argument_error, runtime_error, switchboard_badarg;
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
// The VM's names for the NIFs ("nif_" + the C++ name); a deque keeps the
// strings where the table points while registrations append.
std::deque<std::string>& nif_names() {
  static std::deque<std::string> names;
  return names;
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
      {"switchboard_badarg", &atoms::switchboard_badarg},
  };
  for (const auto& atom : core) *atom.slot = make_atom(env, atom.name);
  for (auto& [name, slot] : extra_atoms()) slot = make_atom(env, name);
}

// ---------------------------------------------------------------------------
// Resource types of this copy of the library and of other copies (nif.hpp,
// note_resource_type). Fixed arrays with a published count: decoders read
// them on any scheduler while a later load appends.

constexpr int kMaxKnownTypes = 256;
constexpr std::size_t kMaxTypeName = 63;
constexpr std::string_view kTokenMagic = "switchboard-resource-types/1";

struct KnownType {
  char name[kMaxTypeName + 1];
  ErlNifResourceType* type;
};
KnownType g_own_types[kMaxKnownTypes];
std::atomic<int> g_own_count{0};
KnownType g_foreign_types[kMaxKnownTypes];
std::atomic<int> g_foreign_count{0};

bool listed(const KnownType* types, const std::atomic<int>& count, ErlNifResourceType* type) {
  const int n = count.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    if (types[i].type == type) return true;
  }
  return false;
}

// Loads run one at a time (the code server), so appends do not race each other.
void append_type(KnownType* types, std::atomic<int>& count, std::string_view name,
                 ErlNifResourceType* type) {
  const int n = count.load(std::memory_order_relaxed);
  if (n >= kMaxKnownTypes || listed(types, count, type)) return;
  const std::size_t length = std::min(name.size(), kMaxTypeName);
  std::memcpy(types[n].name, name.data(), length);
  types[n].name[length] = '\0';
  types[n].type = type;
  count.store(n + 1, std::memory_order_release);
}

// load_info: the token library_info/0 gave in the copy loaded before (or
// anything else, ignored): [magic, then per type: name length (1 byte),
// name, the type's address (8 bytes)]. Types this copy opened are its own;
// the others belong to copies that were unloaded.
void learn_foreign_types(ErlNifEnv* env, ERL_NIF_TERM load_info) {
  ErlNifBinary token;
  if (!enif_inspect_binary(env, load_info, &token) || token.size < kTokenMagic.size() ||
      std::memcmp(token.data, kTokenMagic.data(), kTokenMagic.size()) != 0) {
    return;
  }
  std::size_t at = kTokenMagic.size();
  while (at < token.size) {
    const std::size_t length = token.data[at++];
    if (at + length + sizeof(void*) > token.size) return;
    const std::string_view name(reinterpret_cast<const char*>(token.data + at), length);
    ErlNifResourceType* type;
    std::memcpy(&type, token.data + at + length, sizeof type);
    at += length + sizeof type;
    if (!listed(g_own_types, g_own_count, type)) {
      append_type(g_foreign_types, g_foreign_count, name, type);
    }
  }
}

void append_entries(std::string& token, const KnownType* types, const std::atomic<int>& count) {
  const int n = count.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    const std::string_view name(types[i].name);
    token.push_back(static_cast<char>(name.size()));
    token.append(name);
    token.append(reinterpret_cast<const char*>(&types[i].type), sizeof types[i].type);
  }
}

// The token for the next load: this copy's types and the ones it learnt of.
std::string resource_types_token() {
  std::string token(kTokenMagic);
  append_entries(token, g_own_types, g_own_count);
  append_entries(token, g_foreign_types, g_foreign_count);
  return token;
}

// "Elixir.Switchboard.NIF" -> "Switchboard.NIF"
std::string_view library_module_name();

bool open_resources(ErlNifEnv* env, ErlNifResourceFlags flags) {
  for (ResourceOpener opener : resource_openers()) {
    if (!opener(env, flags)) return false;
  }
  return true;
}

int on_load(ErlNifEnv* env, void**, ERL_NIF_TERM load_info) {
  try {
    make_atoms(env);
    // TAKEOVER as well: a type still listed from an earlier load is taken
    // over; one unlisted by a purge is recreated (see ResourceTraits).
    if (!open_resources(env,
                        static_cast<ErlNifResourceFlags>(ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER)))
      return 1;
    learn_foreign_types(env, load_info);
    if (g_instances.fetch_add(1) == 0) ReplyThread::instance().start();
    return 0;
  } catch (...) {
    return 1;
  }
}

int on_upgrade(ErlNifEnv* env, void**, void**, ERL_NIF_TERM load_info) {
  try {
    make_atoms(env);
    // TAKEOVER: resources created by the old instance stay valid and their
    // destructors are now ours.
    if (!open_resources(env,
                        static_cast<ErlNifResourceFlags>(ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER)))
      return 1;
    learn_foreign_types(env, load_info);
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

void note_resource_type(const char* name, ErlNifResourceType* type) {
  append_type(g_own_types, g_own_count, name, type);
}

bool belongs_to_unloaded_library(ErlNifEnv* env, ERL_NIF_TERM term, const char* name) {
  const int n = g_foreign_count.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    void* object;
    if (std::strcmp(g_foreign_types[i].name, name) == 0 &&
        enif_get_resource(env, term, g_foreign_types[i].type, &object)) {
      return true;
    }
  }
  return false;
}

BadArgument unloaded_library_resource(ErlNifEnv* env, std::string_view description,
                                      ERL_NIF_TERM term) {
  std::string expected(description);
  expected += " of the loaded library (this one belongs to a ";
  expected += library_module_name();
  expected += " library that was unloaded)";
  return bad_argument(env, expected, term);
}

void register_nif(const char* name, unsigned arity, RawNif function, unsigned flags) {
  const std::string& vm_name = nif_names().emplace_back(std::string("nif_") + name);
  nif_table().push_back(ErlNifFunc{vm_name.c_str(), arity, function, flags});
}

int upgrade_count() noexcept { return g_upgrades.load(); }
int instance_count() noexcept { return g_instances.load(); }

std::string format_term(ErlNifEnv* env, ERL_NIF_TERM term, std::size_t limit) {
  (void)env;
  std::string text(limit + 1, '\0');
  // The precision bounds the walk (a count of terms printed), not only the
  // text: a plain %T visited a whole 3M-element tuple (1.5 ms, against
  // 0.05 ms) to print its first 200 bytes.
  int written = enif_snprintf(text.data(), text.size(), "%.*T", static_cast<int>(limit), term);
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

BadArgument::BadArgument(ErlNifEnv* env, std::string expected, ERL_NIF_TERM term,
                         std::string subject)
    : std::invalid_argument("expected " +
                            (subject.empty() ? expected : subject + " to be " + expected) +
                            ", got: " + format_term(env, term)),
      expected_(std::move(expected)),
      subject_(std::move(subject)),
      term_(term) {}

BadArgument bad_argument(ErlNifEnv* env, std::string_view expected, ERL_NIF_TERM got) {
  return BadArgument(env, std::string(expected), got);
}

BadArgument bad_argument(ErlNifEnv* env, std::string_view subject, std::string_view expected,
                         ERL_NIF_TERM got) {
  return BadArgument(env, std::string(expected), got, std::string(subject));
}

std::string argument_subject(std::size_t index) { return "argument " + std::to_string(index + 1); }

ERL_NIF_TERM raise_bad_argument(ErlNifEnv* env, const BadArgument& error) {
  try {
    const ERL_NIF_TERM subject =
        error.subject().empty() ? atoms::nil : make_binary(env, error.subject());
    return enif_raise_exception(env,
                                enif_make_tuple4(env, atoms::switchboard_badarg, subject,
                                                 make_binary(env, error.expected()), error.term()));
  } catch (const std::bad_alloc&) {
    return enif_raise_exception(env, atoms::enomem);
  }
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

namespace {

// [{vm_name, arity}] of every NIF in this library: the Elixir module compares
// it with its stubs at load and names the ones missing on either side.
ERL_NIF_TERM library_functions(ErlNifEnv* env) {
  ERL_NIF_TERM list = enif_make_list(env, 0);
  const auto& table = nif_table();
  for (auto it = table.rbegin(); it != table.rend(); ++it) {
    list = enif_make_list_cell(
        env, enif_make_tuple2(env, enif_make_atom(env, it->name), enif_make_uint(env, it->arity)),
        list);
  }
  return list;
}
SWITCHBOARD_NIF(library_functions, 0);

ERL_NIF_TERM& atom_instances = register_atom("instances");
ERL_NIF_TERM& atom_upgrades = register_atom("upgrades");
ERL_NIF_TERM& atom_allocated_bytes = register_atom("allocated_bytes");
ERL_NIF_TERM& atom_reply_jobs_completed = register_atom("reply_jobs_completed");
ERL_NIF_TERM& atom_work_slices_ended = register_atom("work_slices_ended");
ERL_NIF_TERM& atom_resource_types = register_atom("resource_types");

// %{instances:, upgrades:, allocated_bytes:, reply_jobs_completed:,
// work_slices_ended:}: module instances holding the library, reloads, bytes
// the core holds, jobs the reply thread finished (replies and detached
// frees), WorkSlices that ran out (each one a yield or a move to a dirty
// scheduler), and the token of this copy's resource types for the next load
// (see note_resource_type in nif.hpp).
ERL_NIF_TERM library_info(ErlNifEnv* env) {
  ERL_NIF_TERM keys[] = {atom_instances,         atom_upgrades,
                         atom_allocated_bytes,   atom_reply_jobs_completed,
                         atom_work_slices_ended, atom_resource_types};
  ERL_NIF_TERM values[] = {enif_make_int(env, instance_count()),
                           enif_make_int(env, upgrade_count()),
                           enif_make_uint64(env, core::allocated_bytes()),
                           enif_make_uint64(env, ReplyThread::instance().completed()),
                           enif_make_uint64(env, WorkSlice::ended_count()),
                           make_binary(env, resource_types_token())};
  ERL_NIF_TERM map;
  if (!enif_make_map_from_arrays(env, keys, values, std::size(keys), &map)) throw std::bad_alloc();
  return map;
}
SWITCHBOARD_NIF(library_info, 0);

}  // namespace
}  // namespace switchboard::nif

// The Elixir module that owns the library: the product's Switchboard.NIF,
// or the test library's Switchboard.Test.NIF (c_src/test_nif/CMakeLists.txt).
#ifndef SWITCHBOARD_NIF_MODULE
#define SWITCHBOARD_NIF_MODULE "Elixir.Switchboard.NIF"
#endif

namespace switchboard::nif {
namespace {
std::string_view library_module_name() {
  constexpr std::string_view module = SWITCHBOARD_NIF_MODULE;
  constexpr std::string_view prefix = "Elixir.";
  return module.starts_with(prefix) ? module.substr(prefix.size()) : module;
}
}  // namespace
}  // namespace switchboard::nif

extern "C" {
// The VM looks this symbol up by name; it is the only visible one.
__attribute__((visibility("default"))) ErlNifEntry* nif_init() {
  using namespace switchboard::nif;
  static ErlNifEntry entry = {
      ERL_NIF_MAJOR_VERSION,
      ERL_NIF_MINOR_VERSION,
      SWITCHBOARD_NIF_MODULE,
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
