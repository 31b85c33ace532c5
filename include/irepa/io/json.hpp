#pragma once
// JSON from files and headers that may be hostile (a safetensors header, checkpoint metadata, a
// dataset's state.json): nesting is limited before anything recursive sees it (a deep document
// would otherwise overflow the stack when it is destroyed or printed), and a key given twice in
// one object is an error rather than a silent choice of the last. Messages about such documents
// name types and keys, never a dump of the document.

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "irepa/core/error.hpp"

namespace irepa::io {

/// The deepest nesting read: every format here needs three or four levels.
inline constexpr int kMaxJsonDepth = 32;

/// text parsed as JSON; `where` names it in errors.
inline nlohmann::json parse_json(std::string_view text, std::string_view where, int max_depth = kMaxJsonDepth) {
  std::vector<std::set<std::string>> keys;  // one set per open object; arrays push an empty one
  auto check = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (depth > max_depth) fail("{}: JSON nested deeper than {} levels", where, max_depth);
    if (ev == E::object_start || ev == E::array_start) keys.emplace_back();
    if ((ev == E::object_end || ev == E::array_end) && !keys.empty()) keys.pop_back();
    if (ev == E::key && !keys.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(k).second)
        fail("{}: JSON object has the key '{}' twice", where, k.size() > 200 ? k.substr(0, 200) + "..." : k);
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), check);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", where, e.what());
  }
}

/// A short description of a JSON value for an error message: its type, or a scalar's text.
inline std::string json_brief(const nlohmann::json& v) {
  if (v.is_structured()) return std::string("a JSON ") + v.type_name();
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 60) + "..." : s;
}

}  // namespace irepa::io
