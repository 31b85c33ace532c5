#pragma once
// torch.save files read without Python, for io::TensorFile.
// Two layouts: the zip one (torch >= 1.6: <archive>/data.pkl plus one stored member
// <archive>/data/<key> per storage) and the legacy one (_use_new_zipfile_serialization=False: a
// magic number, a protocol number and a system-info dict, each a pickle, then the object's pickle,
// a pickled list of storage keys and the raw storages, each after its int64 element count).
// The object's pickle runs on a restricted machine: the opcodes of protocols 2-4 that hold data,
// and exactly the globals state dicts and checkpoint dicts need (OrderedDict, argparse.Namespace,
// torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the typed storages). Any other global
// is refused by name; nothing is ever called. The result is an index of tensors under flattened
// names ("model.blocks.0.attn.qkv.weight", "opt.state.3.exp_avg"; a bare tensor is "tensor"), each with its dtype, shape,
// element strides and byte range in the file (bounds-checked against its storage), and the
// non-tensor values as JSON (tensors there as {"__tensor__": name}).

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "irepa/core/checked.hpp"
#include "irepa/core/dtype.hpp"
#include "irepa/core/error.hpp"
#include "irepa/core/shape.hpp"
#include "irepa/io/zip.hpp"

namespace irepa::io {

/// One tensor of a weights file: its dtype, shape and where its elements lie. strides (in
/// elements) is empty for a row-major tensor; begin/end bound every byte it reads.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::size_t begin = 0, end = 0;  // byte offsets into the file's data section
  std::vector<std::int64_t> strides;
  std::size_t nbytes() const { return end - begin; }
  bool contiguous() const { return strides.empty(); }
};

/// What a torch.save file holds: its tensors (begin/end are offsets into the file) and the object
/// as JSON.
struct TorchIndex {
  std::vector<TensorInfo> tensors;  // in the order the object lists them
  nlohmann::json tree;
  std::string layout;  // "zip" or "legacy"
};

namespace torch_detail {

// The legacy format's first pickle: LONG1 0x1950a86a20f9469cfc6c, then STOP.
inline constexpr unsigned char kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
inline constexpr int kMaxDepth = 64;                       // nesting of containers in the object
inline constexpr std::size_t kMaxNodes = std::size_t{1} << 24;  // values one pickle may make

enum class Kind : std::uint8_t { None, Bool, Int, BigInt, Float, Str, Bytes, List, Tuple, Dict, Namespace, Global, Storage, Tensor };

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::BigInt: return "int (over 64 bits)";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Namespace: return "argparse.Namespace";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

/// Whether s is well-formed UTF-8 (JSON text must be; a damaged pickle's str may not be).
inline bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    i += n;
  }
  return true;
}

/// A value of the machine. Containers hold the indices of their items (a dict: key, value,
/// key, value, ...), so a pickle that builds cycles or deep chains costs no recursion here.
struct Node {
  Kind kind = Kind::None;
  std::int64_t i = 0;  // Bool, Int; Storage: element count; Tensor: storage offset (elements)
  double f = 0;
  std::string s;  // Str, Bytes, BigInt (raw little-endian), Global ("module.name"), Storage: key
  std::vector<std::uint32_t> items;
  DType dtype = DType::F32;        // Storage
  std::uint32_t storage = 0;       // Tensor: its storage's node
  std::vector<std::int64_t> sizes, strides;  // Tensor
};

inline DType storage_dtype(std::string_view global) {
  static const std::pair<std::string_view, DType> kTypes[] = {
      {"torch.FloatStorage", DType::F32}, {"torch.HalfStorage", DType::F16}, {"torch.BFloat16Storage", DType::BF16},
      {"torch.DoubleStorage", DType::F64}, {"torch.LongStorage", DType::I64}, {"torch.IntStorage", DType::I32},
      {"torch.ByteStorage", DType::U8},   {"torch.BoolStorage", DType::Bool}};
  for (const auto& [n, d] : kTypes)
    if (n == global) return d;
  fail("no storage type '{}'", global);
}

inline bool allowed_global(std::string_view g) {
  if (g == "collections.OrderedDict" || g == "argparse.Namespace" || g == "torch._utils._rebuild_tensor_v2" ||
      g == "torch._utils._rebuild_parameter")
    return true;
  try {
    (void)storage_dtype(g);
    return true;
  } catch (const Error&) {
    return false;
  }
}

/// The storage a persistent id names; the machine asks the layout for it.
struct StorageRef {
  DType dtype;
  std::string key;
  std::int64_t numel;
};

/// Runs one pickle from `pos` to its STOP; the values go to `nodes`.
class Machine {
 public:
  Machine(std::span<const std::byte> bytes, std::size_t pos, std::string where, std::vector<Node>& nodes, bool legacy)
      : b_(bytes), pos_(pos), where_(std::move(where)), nodes_(nodes), legacy_(legacy) {}

  /// The pickled object's node.
  std::uint32_t run() {
    for (;;) {
      const std::size_t at = pos_;
      const auto op = u8();
      switch (op) {
        case 0x80: (void)u8(); break;                       // PROTO
        case 0x95: (void)take(8); break;                    // FRAME: only a hint
        case '}': push(make(Kind::Dict)); break;            // EMPTY_DICT
        case ']': push(make(Kind::List)); break;            // EMPTY_LIST
        case ')': push(make(Kind::Tuple)); break;           // EMPTY_TUPLE
        case '(':                                           // MARK
          IREPA_CHECK(marks_.size() < 4096, "{}: more than 4096 open marks at byte {}", where_, at);
          marks_.push_back(stack_.size());
          break;
        case 'q': memo_[u8()] = top(at); break;             // BINPUT
        case 'r': memo_[u32()] = top(at); break;            // LONG_BINPUT
        case 0x94: memo_[static_cast<std::uint32_t>(memo_.size())] = top(at); break;  // MEMOIZE
        case 'h': push(get(u8(), at)); break;               // BINGET
        case 'j': push(get(u32(), at)); break;              // LONG_BINGET
        case 'X': push(text(Kind::Str, u32())); break;      // BINUNICODE
        case 0x8c: push(text(Kind::Str, u8())); break;      // SHORT_BINUNICODE
        case 0x8d: push(text(Kind::Str, u64())); break;     // BINUNICODE8
        case 'T': push(text(Kind::Str, u32())); break;      // BINSTRING (a Python 2 str)
        case 'U': push(text(Kind::Str, u8())); break;       // SHORT_BINSTRING
        case 'B': push(text(Kind::Bytes, u32())); break;    // BINBYTES
        case 'C': push(text(Kind::Bytes, u8())); break;     // SHORT_BINBYTES
        case 0x8e: push(text(Kind::Bytes, u64())); break;   // BINBYTES8
        case 'J': push(integer(static_cast<std::int32_t>(u32()))); break;  // BININT
        case 'K': push(integer(u8())); break;               // BININT1
        case 'M': {                                         // BININT2
          const unsigned lo = u8(), hi = u8();
          push(integer(lo | hi << 8));
          break;
        }
        case 0x8a: push(long1(at)); break;                  // LONG1
        case 'G': {                                         // BINFLOAT, big-endian
          std::uint64_t v = 0;
          for (const std::byte c : take(8)) v = v << 8 | std::to_integer<std::uint64_t>(c);
          Node n = node(Kind::Float);
          std::memcpy(&n.f, &v, 8);
          push(add(std::move(n)));
          break;
        }
        case 0x88: push(boolean(true)); break;              // NEWTRUE
        case 0x89: push(boolean(false)); break;             // NEWFALSE
        case 'N': push(make(Kind::None)); break;            // NONE
        case 't': { auto items = pop_mark(at); push(container(Kind::Tuple, std::move(items))); break; }  // TUPLE
        case 0x85: push(tuple_of(1, at)); break;            // TUPLE1
        case 0x86: push(tuple_of(2, at)); break;            // TUPLE2
        case 0x87: push(tuple_of(3, at)); break;            // TUPLE3
        case 'l': { auto items = pop_mark(at); push(container(Kind::List, std::move(items))); break; }   // LIST
        case 'd': { auto items = pop_mark(at); push(dict_of(std::move(items), at)); break; }           // DICT
        case 'a': { const auto v = pop(at); append(top(at), {v}, at); break; }   // APPEND
        case 'e': { auto items = pop_mark(at); append(top(at), items, at); break; }  // APPENDS
        case 's': {                                                               // SETITEM
          const auto v = pop(at), k = pop(at);
          set_items(top(at), {k, v}, at);
          break;
        }
        case 'u': { auto items = pop_mark(at); set_items(top(at), items, at); break; }  // SETITEMS
        case 'c': {                                                                    // GLOBAL
          std::string module = line(), name = line();
          push(global(module + "." + name, at));
          break;
        }
        case 0x93: {                                                                   // STACK_GLOBAL
          const auto name = pop(at), module = pop(at);
          IREPA_CHECK(nodes_[module].kind == Kind::Str && nodes_[name].kind == Kind::Str, "{}: STACK_GLOBAL at byte {} needs two strings", where_, at);
          push(global(nodes_[module].s + "." + nodes_[name].s, at));
          break;
        }
        case 'R': { const auto args = pop(at), fn = pop(at); push(reduce(fn, args, at)); break; }   // REDUCE
        case 0x81: { const auto args = pop(at), cls = pop(at); push(new_object(cls, args, at)); break; }  // NEWOBJ
        case 'b': { const auto state = pop(at); build(top(at), state, at); break; }  // BUILD
        case 'Q': { const auto pid = pop(at); push(persistent(pid, at)); break; }   // BINPERSID
        case '0': (void)pop(at); break;                                             // POP
        case '2': push(top(at)); break;                                             // DUP
        case '1': (void)pop_mark(at); break;                                        // POP_MARK
        case '.':                                                                   // STOP
          IREPA_CHECK(stack_.size() == 1 && marks_.empty(), "{}: the pickle stops at byte {} with {} values and {} marks left, expected one value",
                      where_, at, stack_.size(), marks_.size());
          return stack_.back();
        default:
          fail("{}: pickle opcode 0x{:02x} ('{}') at byte {} is not one a state dict uses; refusing the file", where_, op,
               op >= 0x20 && op < 0x7f ? static_cast<char>(op) : '?', at);
      }
    }
  }
  std::size_t pos() const { return pos_; }
  /// Storages the object names, in the order first seen, and by key.
  const std::vector<std::uint32_t>& storages() const { return storages_; }
  const std::unordered_map<std::string, std::uint32_t>& storage_keys() const { return by_key_; }

 private:
  std::span<const std::byte> take(std::uint64_t n) {
    IREPA_CHECK(n <= b_.size() - pos_, "{}: the pickle is truncated: {} bytes wanted at byte {}, {} left", where_, n, pos_, b_.size() - pos_);
    const auto s = b_.subspan(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  unsigned u8() { return std::to_integer<unsigned>(take(1)[0]); }
  std::uint32_t u32() {
    std::uint32_t v;
    std::memcpy(&v, take(4).data(), 4);
    return v;
  }
  std::uint64_t u64() {
    std::uint64_t v;
    std::memcpy(&v, take(8).data(), 8);
    return v;
  }
  std::string line() {
    std::string s;
    for (;;) {
      const unsigned c = u8();
      if (c == '\n') return s;
      IREPA_CHECK(s.size() < 256, "{}: a GLOBAL name at byte {} is longer than 256 bytes", where_, pos_);
      s += static_cast<char>(c);
    }
  }

  std::uint32_t add(Node n) {
    IREPA_CHECK(nodes_.size() < kMaxNodes, "{}: the pickle makes more than {} values", where_, kMaxNodes);
    nodes_.push_back(std::move(n));
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }
  static Node node(Kind k, std::int64_t i = 0, std::string s = {}) {
    Node n;
    n.kind = k, n.i = i, n.s = std::move(s);
    return n;
  }
  std::uint32_t make(Kind k) { return add(node(k)); }
  std::uint32_t integer(std::int64_t v) { return add(node(Kind::Int, v)); }
  std::uint32_t boolean(bool v) { return add(node(Kind::Bool, v)); }
  std::uint32_t text(Kind k, std::uint64_t n) {
    const auto s = take(n);
    return add(node(k, 0, std::string(reinterpret_cast<const char*>(s.data()), s.size())));
  }
  std::uint32_t long1(std::size_t at) {
    const unsigned n = u8();
    const auto s = take(n);
    if (n > 8) return add(node(Kind::BigInt, 0, std::string(reinterpret_cast<const char*>(s.data()), s.size())));
    std::uint64_t v = 0;
    for (unsigned k = 0; k < n; ++k) v |= std::to_integer<std::uint64_t>(s[k]) << (8 * k);
    if (n > 0 && n < 8 && (std::to_integer<unsigned>(s[n - 1]) & 0x80)) v |= ~std::uint64_t{0} << (8 * n);  // sign-extend
    (void)at;
    return integer(static_cast<std::int64_t>(v));
  }
  std::uint32_t container(Kind k, std::vector<std::uint32_t> items) {
    Node n = node(k);
    n.items = std::move(items);
    return add(std::move(n));
  }
  std::uint32_t tuple_of(std::size_t k, std::size_t at) {
    IREPA_CHECK(stack_.size() >= k + floor(), "{}: TUPLE{} at byte {} finds {} values", where_, k, at, stack_.size() - floor());
    std::vector<std::uint32_t> items(stack_.end() - static_cast<std::ptrdiff_t>(k), stack_.end());
    stack_.resize(stack_.size() - k);
    return container(Kind::Tuple, std::move(items));
  }
  std::uint32_t dict_of(std::vector<std::uint32_t> items, std::size_t at) {
    const auto d = make(Kind::Dict);
    set_items(d, items, at);
    return d;
  }
  std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(std::uint32_t v) {
    IREPA_CHECK(stack_.size() < (std::size_t{1} << 22), "{}: the pickle's stack passes 4M values", where_);
    stack_.push_back(v);
  }
  std::uint32_t pop(std::size_t at) {
    IREPA_CHECK(stack_.size() > floor(), "{}: an opcode at byte {} pops an empty stack", where_, at);
    const auto v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::uint32_t top(std::size_t at) {
    IREPA_CHECK(stack_.size() > floor(), "{}: an opcode at byte {} needs a value on the stack", where_, at);
    return stack_.back();
  }
  std::vector<std::uint32_t> pop_mark(std::size_t at) {
    IREPA_CHECK(!marks_.empty(), "{}: an opcode at byte {} needs a MARK", where_, at);
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<std::uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  std::uint32_t get(std::uint32_t key, std::size_t at) {
    const auto it = memo_.find(key);
    IREPA_CHECK(it != memo_.end(), "{}: the pickle reads memo {} at byte {}, which was never stored", where_, key, at);
    return it->second;
  }
  void append(std::uint32_t list, const std::vector<std::uint32_t>& items, std::size_t at) {
    IREPA_CHECK(nodes_[list].kind == Kind::List, "{}: APPEND at byte {} to a {}, expected a list", where_, at, kind_name(nodes_[list].kind));
    for (const auto v : items) nodes_[list].items.push_back(v);
  }
  void set_items(std::uint32_t dict, const std::vector<std::uint32_t>& items, std::size_t at) {
    IREPA_CHECK(nodes_[dict].kind == Kind::Dict, "{}: SETITEM at byte {} on a {}, expected a dict", where_, at, kind_name(nodes_[dict].kind));
    IREPA_CHECK(items.size() % 2 == 0, "{}: SETITEMS at byte {} with an odd count {}", where_, at, items.size());
    for (const auto v : items) nodes_[dict].items.push_back(v);
  }
  std::uint32_t global(std::string name, std::size_t at) {
    IREPA_CHECK(allowed_global(name),
                "{}: the pickle names the global '{}' at byte {}; only state-dict types are read (OrderedDict, argparse.Namespace, "
                "torch tensors, parameters and storages), nothing is executed",
                where_, name, at);
    return add(node(Kind::Global, 0, std::move(name)));
  }
  const Node& expect(std::uint32_t v, Kind k, const char* what, std::size_t at) {
    IREPA_CHECK(nodes_[v].kind == k, "{}: {} at byte {} is a {}, expected a {}", where_, what, at, kind_name(nodes_[v].kind), kind_name(k));
    return nodes_[v];
  }
  std::vector<std::int64_t> ints(std::uint32_t v, const char* what, std::size_t at) {
    const Node& t = expect(v, Kind::Tuple, what, at);
    IREPA_CHECK(t.items.size() <= static_cast<std::size_t>(kMaxRank), "{}: {} at byte {} has {} entries, more than rank {}", where_, what, at,
                t.items.size(), kMaxRank);
    std::vector<std::int64_t> out;
    for (const auto x : t.items) {
      const Node& n = expect(x, Kind::Int, what, at);
      IREPA_CHECK(n.i >= 0, "{}: {} at byte {} holds {}, expected a non-negative integer", where_, what, at, n.i);
      out.push_back(n.i);
    }
    return out;
  }
  std::uint32_t reduce(std::uint32_t fn, std::uint32_t args, std::size_t at) {
    const std::string name = expect(fn, Kind::Global, "a REDUCE's callable", at).s;
    const std::vector<std::uint32_t> a = expect(args, Kind::Tuple, "a REDUCE's arguments", at).items;
    if (name == "collections.OrderedDict") {
      IREPA_CHECK(a.empty(), "{}: OrderedDict at byte {} with {} arguments, expected none", where_, at, a.size());
      return make(Kind::Dict);
    }
    if (name == "torch._utils._rebuild_parameter") {
      IREPA_CHECK(a.size() == 3, "{}: _rebuild_parameter at byte {} with {} arguments, expected 3", where_, at, a.size());
      (void)expect(a[0], Kind::Tensor, "a parameter's data", at);
      return a[0];
    }
    if (name == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      IREPA_CHECK(a.size() == 6 || a.size() == 7, "{}: _rebuild_tensor_v2 at byte {} with {} arguments, expected 6 or 7", where_, at, a.size());
      (void)expect(a[0], Kind::Storage, "a tensor's storage", at);
      Node t = node(Kind::Tensor, expect(a[1], Kind::Int, "a tensor's storage offset", at).i);
      t.storage = a[0];
      IREPA_CHECK(t.i >= 0, "{}: a tensor at byte {} has storage offset {}", where_, at, t.i);
      t.sizes = ints(a[2], "a tensor's size", at);
      t.strides = ints(a[3], "a tensor's stride", at);
      IREPA_CHECK(t.sizes.size() == t.strides.size(), "{}: a tensor at byte {} has {} sizes and {} strides", where_, at, t.sizes.size(),
                  t.strides.size());
      return add(std::move(t));
    }
    fail("{}: the pickle calls '{}' at byte {}; only OrderedDict, _rebuild_tensor_v2 and _rebuild_parameter are understood", where_, name, at);
  }
  std::uint32_t new_object(std::uint32_t cls, std::uint32_t args, std::size_t at) {
    const std::string name = expect(cls, Kind::Global, "a NEWOBJ's class", at).s;
    IREPA_CHECK(name == "argparse.Namespace" || name == "collections.OrderedDict", "{}: the pickle makes a '{}' object at byte {}", where_, name, at);
    IREPA_CHECK(expect(args, Kind::Tuple, "a NEWOBJ's arguments", at).items.empty(), "{}: {} at byte {} with arguments", where_, name, at);
    return make(name == "argparse.Namespace" ? Kind::Namespace : Kind::Dict);
  }
  void build(std::uint32_t obj, std::uint32_t state, std::size_t at) {
    Node& o = nodes_[obj];
    if (o.kind == Kind::Namespace) {  // its attributes
      const Node& s = expect(state, Kind::Dict, "a Namespace's state", at);
      const auto items = s.items;
      nodes_[obj].items.insert(nodes_[obj].items.end(), items.begin(), items.end());
      return;
    }
    // A state dict's _metadata (module versions) and a tensor's Python attributes: not data.
    IREPA_CHECK(o.kind == Kind::Dict || o.kind == Kind::Tensor, "{}: BUILD at byte {} on a {}", where_, at, kind_name(o.kind));
  }
  std::uint32_t persistent(std::uint32_t pid, std::size_t at) {
    // ('storage', storage type, key, location, numel) in the zip layout; the legacy one adds a view.
    const std::vector<std::uint32_t> a = expect(pid, Kind::Tuple, "a persistent id", at).items;
    IREPA_CHECK(a.size() == (legacy_ ? 6u : 5u), "{}: a persistent id at byte {} has {} fields, expected {}", where_, at, a.size(), legacy_ ? 6 : 5);
    IREPA_CHECK(expect(a[0], Kind::Str, "a persistent id's tag", at).s == "storage", "{}: a persistent id at byte {} is not a storage", where_, at);
    Node st = node(Kind::Storage);
    st.dtype = storage_dtype(expect(a[1], Kind::Global, "a storage's type", at).s);
    st.s = expect(a[2], Kind::Str, "a storage's key", at).s;
    (void)expect(a[3], Kind::Str, "a storage's location", at);
    st.i = expect(a[4], Kind::Int, "a storage's size", at).i;
    IREPA_CHECK(st.i >= 0, "{}: storage '{}' at byte {} has {} elements", where_, st.s, at, st.i);
    if (legacy_)
      IREPA_CHECK(nodes_[a[5]].kind == Kind::None, "{}: storage '{}' at byte {} is a view of another storage (a legacy layout not read)", where_, st.s, at);
    if (const auto it = by_key_.find(st.s); it != by_key_.end()) {  // one storage under several tensors: one node for all
      const Node& first = nodes_[it->second];
      IREPA_CHECK(first.dtype == st.dtype && first.i == st.i, "{}: storage '{}' is named twice with different types or sizes", where_, st.s);
      return it->second;
    }
    const std::string key = st.s;
    const auto id = add(std::move(st));
    storages_.push_back(id);
    by_key_.emplace(key, id);
    return id;
  }

  std::span<const std::byte> b_;
  std::size_t pos_;
  std::string where_;
  std::vector<Node>& nodes_;
  bool legacy_;
  std::vector<std::uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint32_t, std::uint32_t> memo_;
  std::vector<std::uint32_t> storages_;
  std::unordered_map<std::string, std::uint32_t> by_key_;
};

/// Walks the object: tensors under flattened names, everything as JSON.
class Flattener {
 public:
  Flattener(const std::vector<Node>& nodes, const std::unordered_map<std::uint32_t, std::pair<std::uint64_t, std::uint64_t>>& where,
            std::string path, TorchIndex& out)
      : nodes_(nodes), storage_at_(where), path_(std::move(path)), out_(out) {}

  nlohmann::json walk(std::uint32_t v, const std::string& name, int depth) {
    IREPA_CHECK(depth <= kMaxDepth, "torch: '{}' nests containers deeper than {} levels (at '{}')", path_, kMaxDepth, name);
    IREPA_CHECK(++visits_ <= 4 * nodes_.size() + 1024, "torch: '{}' reaches its values by more paths than it has values (shared containers)", path_);
    const Node& n = nodes_[v];
    switch (n.kind) {
      case Kind::None: return nullptr;
      case Kind::Bool: return n.i != 0;
      case Kind::Int: return n.i;
      case Kind::BigInt: return "int of " + std::to_string(n.s.size()) + " bytes";
      case Kind::Float: return n.f;
      case Kind::Str:
        IREPA_CHECK(valid_utf8(n.s), "torch: '{}' has a str under '{}' that is not UTF-8", path_, name);
        return n.s;
      case Kind::Bytes: return "bytes of length " + std::to_string(n.s.size());
      case Kind::Global: return "global " + n.s;
      case Kind::Storage: return "storage " + n.s;
      case Kind::List:
      case Kind::Tuple: {
        nlohmann::json a = nlohmann::json::array();
        for (std::size_t k = 0; k < n.items.size(); ++k) a.push_back(walk(n.items[k], join(name, std::to_string(k)), depth + 1));
        return a;
      }
      case Kind::Dict:
      case Kind::Namespace: {
        nlohmann::json o = nlohmann::json::object();
        for (std::size_t k = 0; k + 1 < n.items.size(); k += 2) {
          const std::string key = key_text(n.items[k], name);
          IREPA_CHECK(!o.contains(key), "torch: '{}' has the key '{}' twice under '{}'", path_, key, name);
          o[key] = walk(n.items[k + 1], join(name, key), depth + 1);
        }
        return o;
      }
      case Kind::Tensor: add_tensor(n, name); return nlohmann::json{{"__tensor__", name}};
    }
    return nullptr;
  }

 private:
  static std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }
  std::string key_text(std::uint32_t k, const std::string& name) const {
    const Node& n = nodes_[k];
    if (n.kind == Kind::Str) {
      IREPA_CHECK(valid_utf8(n.s), "torch: '{}' has a dict key under '{}' that is not UTF-8", path_, name);
      return n.s;
    }
    if (n.kind == Kind::Int) return std::to_string(n.i);
    fail("torch: '{}' has a dict key that is a {} under '{}'; keys are read as str or int", path_, kind_name(n.kind), name);
  }
  void add_tensor(const Node& n, const std::string& name) {
    const Node& st = nodes_[n.storage];
    const std::string what = fmt::format("torch: '{}' tensor '{}'", path_, name);
    IREPA_CHECK(!name.empty(), "torch: '{}' has a tensor under an empty key", path_);
    const auto where = storage_at_.find(n.storage);
    IREPA_CHECK(where != storage_at_.end(), "{}: its storage '{}' is not in the file", what, st.s);
    const std::size_t es = dtype_size(st.dtype);
    const std::int64_t stored = checked_nbytes(std::span<const std::int64_t>(&st.i, 1), es, what);
    IREPA_CHECK(static_cast<std::uint64_t>(stored) <= where->second.second, "{}: storage '{}' holds {} bytes, its {} {} elements need {}", what,
                st.s, where->second.second, st.i, dtype_name(st.dtype), stored);
    TensorInfo t;
    t.name = name;
    t.dtype = st.dtype;
    t.shape = Shape(std::span<const std::int64_t>(n.sizes));
    // The last element it reads: offset + sum (size - 1) * stride, every step checked.
    std::int64_t last = n.i;
    const bool empty = t.shape.numel() == 0;
    for (std::size_t d = 0; d < n.sizes.size() && !empty; ++d)
      last = checked_add(last, checked_mul(n.sizes[d] - 1, n.strides[d], what), what);
    IREPA_CHECK(empty || last < st.i, "{}: shape {} with strides [{}] from offset {} reads element {}, past the {} of storage '{}'", what,
                t.shape.str(), fmt::join(n.strides, ", "), n.i, last, st.i, st.s);
    const std::uint64_t base = where->second.first;
    t.begin = static_cast<std::size_t>(base + (empty ? 0 : static_cast<std::uint64_t>(n.i) * es));
    t.end = empty ? t.begin : static_cast<std::size_t>(base + static_cast<std::uint64_t>(last + 1) * es);
    // Row-major strides are left implicit, so the common case reads with one copy.
    std::int64_t expect = 1;
    bool row_major = true;
    for (std::size_t d = n.sizes.size(); d-- > 0;) {
      if (n.sizes[d] != 1 && n.strides[d] != expect) row_major = false;
      expect *= n.sizes[d] == 0 ? 1 : n.sizes[d];
    }
    if (!row_major && !empty) t.strides = n.strides;
    out_.tensors.push_back(std::move(t));
  }

  const std::vector<Node>& nodes_;
  const std::unordered_map<std::uint32_t, std::pair<std::uint64_t, std::uint64_t>>& storage_at_;
  std::string path_;
  TorchIndex& out_;
  std::size_t visits_ = 0;
};

inline bool starts_with(std::span<const std::byte> b, const unsigned char* magic, std::size_t n) {
  return b.size() >= n && std::memcmp(b.data(), magic, n) == 0;
}

}  // namespace torch_detail

/// Whether the bytes look like a torch.save file (a zip archive, or the legacy magic).
inline bool is_torch_file(std::span<const std::byte> b) {
  static constexpr unsigned char kZip[] = {'P', 'K', 0x03, 0x04};
  return torch_detail::starts_with(b, kZip, 4) || torch_detail::starts_with(b, torch_detail::kLegacyMagic, sizeof torch_detail::kLegacyMagic);
}

/// The tensors and the object of a torch.save file held in `b` (a mapping the caller keeps).
inline TorchIndex read_torch_index(std::span<const std::byte> b, const std::string& path) {
  using namespace torch_detail;
  TorchIndex out;
  std::vector<Node> nodes;
  std::unordered_map<std::uint32_t, std::pair<std::uint64_t, std::uint64_t>> storage_at;  // node -> (file offset, bytes)
  std::uint32_t root = 0;
  if (starts_with(b, kLegacyMagic, sizeof kLegacyMagic)) {
    out.layout = "legacy";
    const std::string where = fmt::format("torch: '{}' (legacy layout)", path);
    std::size_t pos = sizeof kLegacyMagic;
    Machine version(b, pos, where, nodes, true);
    const Node& v = nodes[version.run()];
    IREPA_CHECK(v.kind == Kind::Int && v.i == 1001, "{}: protocol version is a {} {}, expected 1001", where, kind_name(v.kind), v.i);
    Machine sys(b, version.pos(), where, nodes, true);
    const std::uint32_t info = sys.run();
    IREPA_CHECK(nodes[info].kind == Kind::Dict, "{}: the system info is a {}, expected a dict", where, kind_name(nodes[info].kind));
    for (std::size_t k = 0; k + 1 < nodes[info].items.size(); k += 2)
      if (nodes[nodes[info].items[k]].s == "little_endian")
        IREPA_CHECK(nodes[nodes[info].items[k + 1]].kind == Kind::Bool && nodes[nodes[info].items[k + 1]].i == 1,
                    "{}: written on a big-endian machine; not read", where);
    Machine object(b, sys.pos(), where, nodes, true);
    root = object.run();
    Machine keys(b, object.pos(), where, nodes, true);
    const Node& list = nodes[keys.run()];
    IREPA_CHECK(list.kind == Kind::List, "{}: the storage key list is a {}", where, kind_name(list.kind));
    std::uint64_t at = keys.pos();
    for (const auto k : list.items) {
      IREPA_CHECK(nodes[k].kind == Kind::Str, "{}: a storage key is a {}, expected a str", where, kind_name(nodes[k].kind));
      const auto found = object.storage_keys().find(nodes[k].s);
      IREPA_CHECK(found != object.storage_keys().end(), "{}: the storage list names '{}', which no tensor uses", where, nodes[k].s);
      const std::uint32_t id = found->second;
      IREPA_CHECK(b.size() - at >= 8, "{}: truncated before storage '{}'", where, nodes[k].s);
      std::int64_t numel = 0;
      std::memcpy(&numel, b.data() + at, 8);
      IREPA_CHECK(numel == nodes[id].i, "{}: storage '{}' is stored with {} elements, the object says {}", where, nodes[k].s, numel, nodes[id].i);
      const std::int64_t bytes = checked_nbytes(std::span<const std::int64_t>(&numel, 1), dtype_size(nodes[id].dtype), where);
      IREPA_CHECK(static_cast<std::uint64_t>(bytes) <= b.size() - at - 8, "{}: storage '{}' needs {} bytes at byte {}, {} remain (truncated?)",
                  where, nodes[k].s, bytes, at + 8, b.size() - at - 8);
      IREPA_CHECK(!storage_at.contains(id), "{}: storage '{}' is stored twice", where, nodes[k].s);
      storage_at[id] = {at + 8, static_cast<std::uint64_t>(bytes)};
      at += 8 + static_cast<std::uint64_t>(bytes);
    }
  } else {
    out.layout = "zip";
    const ZipReader zip(b, path);
    const ZipEntry* pkl = nullptr;
    for (const auto& e : zip.entries())
      if (e.name == "data.pkl" || (e.name.ends_with("/data.pkl") && e.name.find('/') == e.name.size() - 9)) {
        IREPA_CHECK(!pkl, "torch: '{}' holds two archives ('{}' and '{}')", path, pkl ? pkl->name : "", e.name);
        pkl = &e;
      }
    IREPA_CHECK(pkl, "torch: '{}' is a zip archive without <archive>/data.pkl: not a torch.save file", path);
    const std::string prefix = pkl->name.substr(0, pkl->name.size() - 8);
    IREPA_CHECK(!zip.find(prefix + "constants.pkl"),
                "torch: '{}' is a TorchScript archive (it has {}constants.pkl); convert it with tools/convert_encoder.py", path, prefix);
    if (const ZipEntry* order = zip.find(prefix + "byteorder")) {
      const auto bo = zip.extract(*order);
      IREPA_CHECK(std::string_view(reinterpret_cast<const char*>(bo.data()), bo.size()) == "little",
                  "torch: '{}' was written big-endian (byteorder '{}'); not read", path,
                  std::string(reinterpret_cast<const char*>(bo.data()), std::min<std::size_t>(bo.size(), 16)));
    }
    IREPA_CHECK(pkl->size <= (std::uint64_t{1} << 30), "torch: '{}' data.pkl is {} bytes; more than 1 GiB of pickle is not a state dict", path,
                pkl->size);
    const std::vector<std::byte> pickle = zip.extract(*pkl);
    Machine m(pickle, 0, fmt::format("torch: '{}' {}", path, pkl->name), nodes, false);
    root = m.run();
    for (const auto s : m.storages()) {
      const ZipEntry* e = zip.find(prefix + "data/" + nodes[s].s);
      if (!e) continue;  // a tensor that uses it is refused by name
      IREPA_CHECK(e->method == 0, "torch: '{}' storage member '{}' is compressed; torch.save stores them", path, e->name);
      storage_at[s] = {e->data_offset, e->size};
    }
  }
  Flattener walker(nodes, storage_at, path, out);
  if (nodes[root].kind == Kind::Tensor) {  // torch.save(tensor), as the released spatial-metrics features: named "tensor"
    out.tree = nlohmann::json::object();
    out.tree["tensor"] = walker.walk(root, "tensor", 0);
    return out;
  }
  out.tree = walker.walk(root, "", 0);
  IREPA_CHECK(out.tree.is_object() || out.tree.is_array(), "torch: '{}' holds a {}, expected a dict (a state dict or checkpoint) or a tensor",
              path, kind_name(nodes[root].kind));
  return out;
}

}  // namespace irepa::io
