#pragma once
// Weights files read memory-mapped (TensorFile: safetensors, or a torch.save file through
// io/torch_file.hpp, told apart by their first bytes) and safetensors writing.
// Format: 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
// then the data section; offsets are relative to its start. Every header claim is checked
// against the file before any byte is read: a truncated file, offsets out of range or
// overlapping, a byte count that disagrees with dtype x shape, or an unknown dtype is an
// irepa::Error naming the file, the tensor and the numbers. Writes go to a temporary file in
// the same folder that is renamed over the target, so an existing file is never half-written.

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <unistd.h>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "irepa/core/checked.hpp"
#include "irepa/core/dtype.hpp"
#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/io/files.hpp"
#include "irepa/io/json.hpp"
#include "irepa/io/mapped_file.hpp"
#include "irepa/io/torch_file.hpp"

namespace irepa::io {

static_assert(std::endian::native == std::endian::little, "irepa::io::safetensors assumes a little-endian host");

namespace detail {

/// Reads one element of dtype src at p as a double (floats) or int64 (integers).
inline double load_as_double(DType src, const std::byte* p) {
  switch (src) {
    case DType::F64: { double v; std::memcpy(&v, p, 8); return v; }
    case DType::F32: { float v; std::memcpy(&v, p, 4); return v; }
    case DType::F16: { std::uint16_t b; std::memcpy(&b, p, 2); return static_cast<double>(static_cast<float>(Eigen::numext::bit_cast<f16>(b))); }
    case DType::BF16: { std::uint16_t b; std::memcpy(&b, p, 2); return static_cast<double>(static_cast<float>(Eigen::numext::bit_cast<bf16>(b))); }
    default: return 0;
  }
}
inline std::int64_t load_as_int(DType src, const std::byte* p) {
  switch (src) {
    case DType::I64: { std::int64_t v; std::memcpy(&v, p, 8); return v; }
    case DType::I32: { std::int32_t v; std::memcpy(&v, p, 4); return v; }
    case DType::U8: return static_cast<std::int64_t>(std::to_integer<std::uint8_t>(*p));
    case DType::Bool: return std::to_integer<std::uint8_t>(*p) != 0;
    default: return 0;
  }
}
inline bool is_float(DType d) { return d == DType::F64 || d == DType::F32 || d == DType::F16 || d == DType::BF16; }

}  // namespace detail

/// A file of named tensors, mapped: safetensors, or a torch.save file (a state dict or a
/// checkpoint dict; nested dicts give dotted names such as "ema.blocks.0.attn.qkv.weight", and
/// the non-tensor entries of the top-level dict are its metadata, as text or JSON).
class TensorFile {
 public:
  /// Maps the file and validates its header; throws irepa::Error on any inconsistency.
  explicit TensorFile(const std::string& path) : path_(path), file_(path, "weights") { parse(); }
  /// Reads bytes the caller keeps alive (an archive member, a fuzzer's input); `name` stands
  /// for the path in errors.
  TensorFile(std::span<const std::byte> bytes, std::string name)
      : path_(std::move(name)), file_(MappedFile::borrow(bytes.data(), bytes.size())) {
    parse();
  }
  TensorFile(TensorFile&&) noexcept = default;  // views into the mapping stay valid
  TensorFile& operator=(TensorFile&&) noexcept = default;
  TensorFile(const TensorFile&) = delete;
  TensorFile& operator=(const TensorFile&) = delete;

  const std::string& path() const { return path_; }
  /// "safetensors", "torch.save (zip)" or "torch.save (legacy)".
  const std::string& format() const { return format_; }
  bool is_torch() const { return format_ != "safetensors"; }
  /// A torch.save file's whole object as JSON (tensors as {"__tensor__": name}); null otherwise.
  const nlohmann::json& torch_object() const { return torch_object_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::optional<std::string> metadata(std::string_view key) const {
    auto it = metadata_.find(std::string(key));
    if (it == metadata_.end()) return std::nullopt;
    return it->second;
  }
  /// Tensor names in the order of the file's data section.
  const std::vector<std::string>& names() const { return order_; }
  bool contains(std::string_view name) const { return tensors_.contains(std::string(name)); }

  const TensorInfo& info(std::string_view name) const {
    auto it = tensors_.find(std::string(name));
    if (it == tensors_.end()) {
      // Name a few near misses so a typo in a parameter name is easy to see.
      std::string hint;
      int shown = 0;
      for (const auto& n : order_) {
        if (shown < 3 && common_prefix(n, name) >= std::min<std::size_t>(name.size(), 4)) {
          hint += (shown++ ? ", '" : " (similar: '") + n + "'";
        }
      }
      if (shown) hint += ")";
      fail("{}: '{}' has no tensor named '{}' ({} tensors){}", format_, path_, name, order_.size(), hint);
    }
    return it->second;
  }
  /// Raw little-endian bytes of a row-major tensor.
  std::span<const std::byte> bytes(std::string_view name) const {
    const TensorInfo& t = info(name);
    IREPA_CHECK(t.contiguous(), "{}: '{}' tensor '{}' is a strided view ({} strides [{}]); load() it", format_, path_, name, t.shape.str(),
                fmt::join(t.strides, ", "));
    return {data_ + t.begin, t.nbytes()};
  }

  /// Loads a tensor as T, converting between float dtypes (F64/F32/F16/BF16 -> float types)
  /// or between integer dtypes (I64/I32/U8/BOOL -> integer types); float <-> integer is an error.
  template <class T>
  Tensor<T> load(std::string_view name) const {
    const TensorInfo& t = info(name);
    Tensor<T> out(t.shape);
    read_into(t, out.view());
    return out;
  }
  /// As load(), and checks the stored shape.
  template <class T>
  Tensor<T> load(std::string_view name, const Shape& expected) const {
    const TensorInfo& t = info(name);
    IREPA_CHECK(t.shape == expected, "{}: '{}' tensor '{}' has shape {}, expected {}", format_, path_, name,
                t.shape.str(), expected.str());
    return load<T>(name);
  }
  /// Reads a tensor into an existing view of the same shape (any strides).
  template <class T>
  void load_into(std::string_view name, TensorView<T> dst) const {
    const TensorInfo& t = info(name);
    IREPA_CHECK(t.shape == dst.shape(), "{}: '{}' tensor '{}' has shape {}, expected {}", format_, path_, name,
                t.shape.str(), dst.shape().str());
    read_into(t, dst);
  }

 private:
  static std::size_t common_prefix(std::string_view a, std::string_view b) {
    std::size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
    return i;
  }

  /// Byte offset of every element of a strided view t, row-major, relative to t.begin (strides in elements).
  template <class F>
  static void for_each_source(const TensorInfo& t, F&& f) {
    const std::size_t es = dtype_size(t.dtype);
    const std::int64_t n = t.shape.numel();
    const int r = t.shape.rank();
    std::array<std::int64_t, kMaxRank> idx{};
    std::int64_t off = 0;  // in elements; bounded by the index's check against the storage
    for (std::int64_t i = 0; i < n; ++i) {
      f(es * static_cast<std::size_t>(off));
      for (int d = r - 1; d >= 0; --d) {  // odometer: bump the last index, carry leftwards
        const auto u = static_cast<std::size_t>(d);
        if (++idx[u] < t.shape[d]) {
          off += t.strides[u];
          break;
        }
        off -= (idx[u] - 1) * t.strides[u];
        idx[u] = 0;
      }
    }
  }

  template <class T>
  void read_into(const TensorInfo& t, TensorView<T> dst) const {
    const std::byte* p = data_ + t.begin;
    constexpr bool want_float = std::is_floating_point_v<T> || std::is_same_v<T, bf16> || std::is_same_v<T, f16>;
    IREPA_CHECK(want_float == detail::is_float(t.dtype), "{}: '{}' tensor '{}' is {}, expected {} dtype", format_, path_, t.name,
                dtype_name(t.dtype), want_float ? "a float" : "an integer");
    if (t.dtype == dtype_of<T> && dst.is_contiguous() && t.contiguous()) {
      if (t.nbytes()) std::memcpy(dst.data(), p, t.nbytes());
      return;
    }
    // Source byte offsets in dst's iteration order: computed for a contiguous source, listed
    // once for a strided view (torch.save).
    const std::size_t es = dtype_size(t.dtype);
    const bool contiguous = t.contiguous();
    std::vector<std::size_t> strided;
    if (!contiguous) {
      strided.reserve(static_cast<std::size_t>(t.shape.numel()));
      for_each_source(t, [&](std::size_t o) { strided.push_back(o); });
    }
    std::size_t i = 0;
    dst.for_each_index([&](std::int64_t off) {
      const std::byte* q = p + (contiguous ? es * i : strided[i]);
      ++i;
      if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>)
        dst.data()[off] = T(static_cast<float>(detail::load_as_double(t.dtype, q)));
      else if constexpr (want_float)
        dst.data()[off] = static_cast<T>(detail::load_as_double(t.dtype, q));
      else
        dst.data()[off] = static_cast<T>(detail::load_as_int(t.dtype, q));
    });
  }

  void parse() {
    if (is_torch_file({file_.data(), file_.size()})) {
      parse_torch();
      return;
    }
    parse_safetensors();
  }

  void parse_torch() {
    TorchIndex idx = read_torch_index({file_.data(), file_.size()}, path_);
    format_ = "torch.save (" + idx.layout + ")";
    data_ = file_.data();
    data_size_ = file_.size();
    for (auto& t : idx.tensors) {
      const std::string name = t.name;
      IREPA_CHECK(tensors_.emplace(name, std::move(t)).second, "torch: '{}' names tensor '{}' twice (a dotted key beside a nested one?)", path_,
                  name);
      order_.push_back(name);
    }
    // The top-level entries that hold no tensor (args, steps, ...) as metadata: text stays text.
    if (idx.tree.is_object())
      for (auto it = idx.tree.begin(); it != idx.tree.end(); ++it) {
        if (it.value().dump().find("\"__tensor__\"") != std::string::npos) continue;
        metadata_[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
      }
    torch_object_ = std::move(idx.tree);
  }

  void parse_safetensors() {
    const std::byte* map_ = file_.data();
    const std::size_t size_ = file_.size();
    IREPA_CHECK(size_ >= 8, "safetensors: '{}' is truncated: {} bytes, expected at least 8 (header length)", path_, size_);
    std::uint64_t n = 0;
    std::memcpy(&n, map_, 8);
    IREPA_CHECK(n <= size_ - 8, "safetensors: '{}' is truncated: header claims {} bytes but only {} follow the length",
                path_, n, size_ - 8);
    IREPA_CHECK(n <= (std::uint64_t{100} << 20), "safetensors: '{}' header length {} exceeds 100 MiB", path_, n);
    data_ = map_ + 8 + n;
    data_size_ = size_ - 8 - static_cast<std::size_t>(n);
    const nlohmann::json h = parse_json(std::string_view(reinterpret_cast<const char*>(map_ + 8), static_cast<std::size_t>(n)),
                                        fmt::format("safetensors: '{}' header", path_));
    IREPA_CHECK(h.is_object(), "safetensors: '{}' header is a JSON {}, expected an object", path_, h.type_name());
    std::vector<const TensorInfo*> by_offset;
    for (auto it = h.begin(); it != h.end(); ++it) {
      const std::string& key = it.key();
      const auto& v = it.value();
      if (key == "__metadata__") {
        IREPA_CHECK(v.is_object(), "safetensors: '{}' __metadata__ is a JSON {}, expected an object", path_, v.type_name());
        for (auto m = v.begin(); m != v.end(); ++m) {
          IREPA_CHECK(m.value().is_string(), "safetensors: '{}' __metadata__['{}'] is a JSON {}, expected a string", path_,
                      m.key(), m.value().type_name());
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      TensorInfo t;
      t.name = key;
      IREPA_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
                  "safetensors: '{}' entry '{}' needs dtype, shape and data_offsets", path_, key);
      IREPA_CHECK(v["dtype"].is_string(), "safetensors: '{}' tensor '{}' dtype is not a string", path_, key);
      try {
        t.dtype = dtype_from_name(v["dtype"].get<std::string>());
      } catch (const Error& e) {
        fail("safetensors: '{}' tensor '{}': {}", path_, key, e.what());
      }
      IREPA_CHECK(v["shape"].is_array(), "safetensors: '{}' tensor '{}' shape is not a list", path_, key);
      std::vector<std::int64_t> dims;
      for (const auto& d : v["shape"]) {
        IREPA_CHECK(d.is_number_integer() && d.get<std::int64_t>() >= 0,
                    "safetensors: '{}' tensor '{}' has a shape entry {} that is not a non-negative integer", path_, key, json_brief(d));
        dims.push_back(d.get<std::int64_t>());
      }
      IREPA_CHECK(dims.size() <= static_cast<std::size_t>(kMaxRank), "safetensors: '{}' tensor '{}' has rank {} > {}", path_,
                  key, dims.size(), kMaxRank);
      const auto& off = v["data_offsets"];
      IREPA_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
                  "safetensors: '{}' tensor '{}' data_offsets ({}) is not [begin, end]", path_, key, json_brief(off));
      const auto b = off[0].get<std::uint64_t>(), e = off[1].get<std::uint64_t>();
      IREPA_CHECK(b <= e && e <= data_size_,
                  "safetensors: '{}' tensor '{}' data_offsets [{}, {}] fall outside the {}-byte data section (truncated file?)",
                  path_, key, b, e, data_size_);
      t.begin = static_cast<std::size_t>(b);
      t.end = static_cast<std::size_t>(e);
      // numel * size, checked: an absurd shape is an error, not a product that wraps to the span.
      const std::int64_t want = checked_nbytes(dims, dtype_size(t.dtype), fmt::format("safetensors: '{}' tensor '{}'", path_, key));
      IREPA_CHECK(static_cast<std::uint64_t>(want) == t.nbytes(),
                  "safetensors: '{}' tensor '{}' is {} {} ({} bytes) but data_offsets span {} bytes", path_, key, dtype_name(t.dtype),
                  fmt::format("[{}]", fmt::join(dims, ", ")), want, t.nbytes());
      t.shape = Shape(std::span<const std::int64_t>(dims));
      auto [pos, inserted] = tensors_.emplace(key, std::move(t));
      IREPA_CHECK(inserted, "safetensors: '{}' names tensor '{}' twice", path_, key);
      by_offset.push_back(&pos->second);
    }
    std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    for (std::size_t i = 1; i < by_offset.size(); ++i)
      IREPA_CHECK(by_offset[i]->begin >= by_offset[i - 1]->end,
                  "safetensors: '{}' tensors '{}' [{}, {}) and '{}' [{}, {}) overlap", path_, by_offset[i - 1]->name,
                  by_offset[i - 1]->begin, by_offset[i - 1]->end, by_offset[i]->name, by_offset[i]->begin, by_offset[i]->end);
    for (const auto* t : by_offset) order_.push_back(t->name);
  }

  std::string path_;
  std::string format_ = "safetensors";
  nlohmann::json torch_object_;
  MappedFile file_;
  const std::byte* data_ = nullptr;
  std::size_t data_size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::vector<std::string> order_;
  std::map<std::string, std::string> metadata_;
};

/// The name older code knows; a TensorFile reads safetensors and torch.save files alike.
using SafeTensorsFile = TensorFile;

/// Collects tensors (copied at add time) and metadata, then writes them atomically.
class SafeTensorsWriter {
 public:
  /// Stores v with its own dtype.
  template <class T>
  void add(std::string_view name, TensorView<const T> v) {
    add_as<T>(name, v, dtype_of<T>);
  }
  template <class T>
  void add(std::string_view name, const Tensor<T>& t) {
    add_as<T>(name, t.cview(), dtype_of<T>);
  }
  /// Stores v converted to dtype `as` (float -> F64/F32/F16/BF16; integer -> I64/I32/U8/BOOL).
  template <class T>
  void add_as(std::string_view name, TensorView<const T> v, DType as) {
    IREPA_CHECK(!name.empty() && name != "__metadata__", "safetensors writer: invalid tensor name '{}'", name);
    IREPA_CHECK(!entries_.contains(std::string(name)), "safetensors writer: tensor '{}' added twice", name);
    constexpr bool src_float = std::is_floating_point_v<T> || std::is_same_v<T, bf16> || std::is_same_v<T, f16>;
    IREPA_CHECK(src_float == detail::is_float(as), "safetensors writer: cannot store {} tensor '{}' as {}",
                dtype_name(dtype_of<T>), name, dtype_name(as));
    Entry e{as, v.shape(), {}};
    const std::size_t es = dtype_size(as);
    e.bytes.resize(static_cast<std::size_t>(v.numel()) * es);
    std::byte* out = e.bytes.data();
    v.for_each_index([&](std::int64_t off) {
      const T x = v.data()[off];
      if constexpr (src_float) {
        if constexpr (std::is_floating_point_v<T>)
          store_float(as, out, static_cast<double>(x));
        else
          store_float(as, out, static_cast<double>(static_cast<float>(x)));
      } else {
        store_int(as, out, static_cast<std::int64_t>(x));
      }
      out += es;
    });
    order_.push_back(std::string(name));
    entries_.emplace(std::string(name), std::move(e));
  }
  void set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }
  std::size_t size() const { return order_.size(); }

  /// Writes to path atomically (temporary file in the same folder, then rename).
  void write(const std::string& path) const {
    nlohmann::json h = nlohmann::json::object();
    if (!metadata_.empty()) h["__metadata__"] = metadata_;
    std::size_t off = 0;
    for (const auto& n : order_) {
      const Entry& e = entries_.at(n);
      std::vector<std::int64_t> dims(e.shape.dims().begin(), e.shape.dims().end());
      h[n] = {{"dtype", std::string(dtype_name(e.dtype))}, {"shape", dims}, {"data_offsets", {off, off + e.bytes.size()}}};
      off += e.bytes.size();
    }
    std::string header = h.dump();
    header.append((8 - header.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
    AtomicFile f(path, "safetensors writer");
    const std::uint64_t n = header.size();
    f.write(&n, 8);
    f.write(header);
    for (const auto& name : order_) {
      const auto& b = entries_.at(name).bytes;
      f.write(b.data(), b.size());
    }
    f.commit();
  }

 private:
  struct Entry {
    DType dtype;
    Shape shape;
    std::vector<std::byte> bytes;
  };
  static void store_float(DType as, std::byte* p, double x) {
    switch (as) {
      case DType::F64: std::memcpy(p, &x, 8); break;
      case DType::F32: { const float v = static_cast<float>(x); std::memcpy(p, &v, 4); break; }
      case DType::F16: { const auto b = Eigen::numext::bit_cast<std::uint16_t>(f16(static_cast<float>(x))); std::memcpy(p, &b, 2); break; }
      case DType::BF16: { const auto b = Eigen::numext::bit_cast<std::uint16_t>(bf16(static_cast<float>(x))); std::memcpy(p, &b, 2); break; }
      default: break;
    }
  }
  static void store_int(DType as, std::byte* p, std::int64_t x) {
    switch (as) {
      case DType::I64: std::memcpy(p, &x, 8); break;
      case DType::I32: {
        IREPA_CHECK(x >= INT32_MIN && x <= INT32_MAX, "safetensors writer: value {} does not fit I32", x);
        const auto v = static_cast<std::int32_t>(x);
        std::memcpy(p, &v, 4);
        break;
      }
      case DType::U8:
        IREPA_CHECK(x >= 0 && x <= 255, "safetensors writer: value {} does not fit U8", x);
        *p = static_cast<std::byte>(static_cast<std::uint8_t>(x)); break;
      case DType::Bool: *p = static_cast<std::byte>(x != 0 ? 1 : 0); break;
      default: break;
    }
  }
  std::vector<std::string> order_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace irepa::io
