#pragma once
// A validating reader of Arrow IPC *stream* files (what Hugging Face datasets' save_to_disk
// writes: data-NNNNN-of-NNNNN.arrow), for the column types those datasets use: integers,
// floats (16/32/64-bit), booleans, binary and string (32- and 64-bit offsets), list, large list,
// fixed-size list and struct, any nesting. The file is memory-mapped; the flatbuffers metadata
// (Schema, RecordBatch messages) is parsed with Debian's libflatbuffers and verified field by
// field before it is read; every buffer is checked to lie inside its message body and the file,
// every offset to be in range and non-decreasing, every length to fit, before a value is read.
// A problem is an irepa::Error naming the file, the byte offset and what was expected.
// Not read (refused by name): compressed bodies, dictionary-encoded columns, big-endian data,
// union / map / decimal / temporal columns (none of which the reference's datasets hold).
//
// Format (Arrow columnar format, "IPC Streaming Format"): messages, each an optional 0xFFFFFFFF
// continuation marker, an int32 metadata length, a flatbuffer Message, then its body; a
// Schema message first, then RecordBatch messages, then the end-of-stream marker (length 0),
// which is required: without it a file cut after a whole batch would read as a shorter dataset.

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "irepa/core/dtype.hpp"
#include "irepa/core/checked.hpp"
#include "irepa/core/error.hpp"
#include "irepa/io/mapped_file.hpp"

namespace irepa::io {

enum class ArrowType { Null, Int, Float, Bool, Binary, LargeBinary, Utf8, LargeUtf8, List, LargeList, FixedSizeList, Struct };

struct ArrowField {
  std::string name;
  ArrowType type = ArrowType::Null;
  int bit_width = 0;        // Int: 8, 16, 32, 64; Float: 16, 32, 64
  bool is_signed = true;    // Int
  std::int32_t list_size = 0;  // FixedSizeList
  std::vector<ArrowField> children;
  std::map<std::string, std::string> metadata;

  /// "int64", "list<list<float32>>", "struct<bytes: binary, path: string>", ...
  std::string type_name() const {
    switch (type) {
      case ArrowType::Null: return "null";
      case ArrowType::Int: return fmt::format("{}int{}", is_signed ? "" : "u", bit_width);
      case ArrowType::Float: return fmt::format("float{}", bit_width);
      case ArrowType::Bool: return "bool";
      case ArrowType::Binary: return "binary";
      case ArrowType::LargeBinary: return "large_binary";
      case ArrowType::Utf8: return "string";
      case ArrowType::LargeUtf8: return "large_string";
      case ArrowType::List: return "list<" + children.at(0).type_name() + ">";
      case ArrowType::LargeList: return "large_list<" + children.at(0).type_name() + ">";
      case ArrowType::FixedSizeList: return fmt::format("fixed_size_list<{}, {}>", children.at(0).type_name(), list_size);
      case ArrowType::Struct: {
        std::string s = "struct<";
        for (std::size_t i = 0; i < children.size(); ++i) s += (i ? ", " : "") + children[i].name + ": " + children[i].type_name();
        return s + ">";
      }
    }
    return "?";
  }
};

/// One field's values in one record batch: its length, nulls and buffers (all checked at load).
struct ArrowArray {
  const ArrowField* field = nullptr;
  std::int64_t length = 0, null_count = 0;
  std::span<const std::byte> validity, offsets, values;
  std::vector<ArrowArray> children;

  bool is_null(std::int64_t i) const {
    if (null_count == 0) return false;
    return ((static_cast<unsigned>(validity[static_cast<std::size_t>(i / 8)]) >> (i % 8)) & 1u) == 0;
  }
  /// Offsets [begin, end) of list / binary element i (32- or 64-bit offsets).
  std::pair<std::int64_t, std::int64_t> range(std::int64_t i) const {
    const bool wide = field->type == ArrowType::LargeBinary || field->type == ArrowType::LargeUtf8 || field->type == ArrowType::LargeList;
    if (field->type == ArrowType::FixedSizeList) return {i * field->list_size, (i + 1) * field->list_size};
    if (wide) {
      std::int64_t a, b;
      std::memcpy(&a, offsets.data() + i * 8, 8), std::memcpy(&b, offsets.data() + (i + 1) * 8, 8);
      return {a, b};
    }
    std::int32_t a, b;
    std::memcpy(&a, offsets.data() + i * 4, 4), std::memcpy(&b, offsets.data() + (i + 1) * 4, 4);
    return {a, b};
  }
};

struct ArrowBatch {
  std::int64_t first_row = 0, length = 0;
  std::vector<ArrowArray> columns;
};

namespace detail {
namespace fb = flatbuffers;

// voffsets of the Arrow flatbuffers tables' fields (4 + 2 * field index; a union takes two).
namespace arrow_fb {
inline constexpr fb::voffset_t kMsgVersion = 4, kMsgHeaderType = 6, kMsgHeader = 8, kMsgBodyLength = 10, kMsgMetadata = 12;
inline constexpr fb::voffset_t kSchemaEndianness = 4, kSchemaFields = 6, kSchemaMetadata = 8;
inline constexpr fb::voffset_t kFieldName = 4, kFieldNullable = 6, kFieldTypeType = 8, kFieldType = 10, kFieldDictionary = 12,
                               kFieldChildren = 14, kFieldMetadata = 16;
inline constexpr fb::voffset_t kBatchLength = 4, kBatchNodes = 6, kBatchBuffers = 8, kBatchCompression = 10;
inline constexpr fb::voffset_t kKey = 4, kValue = 6;
inline constexpr fb::voffset_t kIntBitWidth = 4, kIntSigned = 6, kFloatPrecision = 4, kFixedListSize = 4;
// MessageHeader and Type union members.
inline constexpr std::uint8_t kHeaderSchema = 1, kHeaderDictionary = 2, kHeaderRecordBatch = 3;
enum TypeId : std::uint8_t {
  kNull = 1, kInt = 2, kFloatingPoint = 3, kBinary = 4, kUtf8 = 5, kBool = 6, kList = 12, kStruct = 13, kFixedSizeList = 16,
  kLargeBinary = 19, kLargeUtf8 = 20, kLargeList = 21
};
}  // namespace arrow_fb

inline std::int64_t read_i64(const std::byte* p) {
  std::int64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline std::int32_t read_i32(const std::byte* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

/// Verifies a vector of tables at `field` of t, each with verify_one.
template <class F>
bool verify_tables(fb::Verifier& v, const fb::Table* t, fb::voffset_t field, F&& verify_one) {
  if (!t->VerifyOffset(v, field)) return false;
  const auto* vec = t->GetPointer<const fb::Vector<fb::Offset<fb::Table>>*>(field);
  if (!vec) return true;
  if (!v.VerifyVector(vec)) return false;
  for (fb::uoffset_t i = 0; i < vec->size(); ++i)
    if (!verify_one(vec->Get(i))) return false;
  return true;
}
inline bool verify_string(fb::Verifier& v, const fb::Table* t, fb::voffset_t field) {
  return t->VerifyOffset(v, field) && v.VerifyString(t->GetPointer<const fb::String*>(field));
}
inline bool verify_key_values(fb::Verifier& v, const fb::Table* t, fb::voffset_t field) {
  return verify_tables(v, t, field, [&](const fb::Table* kv) {
    return kv->VerifyTableStart(v) && verify_string(v, kv, arrow_fb::kKey) && verify_string(v, kv, arrow_fb::kValue) && v.EndTable();
  });
}
/// A vector of 16-byte structs (FieldNode, Buffer) at `field`: its element count, or -1 when invalid.
inline std::int64_t verify_struct16_vector(fb::Verifier& v, const fb::Table* t, fb::voffset_t field, const std::uint8_t** data) {
  if (!t->VerifyOffset(v, field)) return -1;
  const auto* p = t->GetPointer<const std::uint8_t*>(field);
  if (!p) {
    *data = nullptr;
    return 0;
  }
  if (!v.VerifyVectorOrString(p, 16)) return -1;
  *data = p + sizeof(fb::uoffset_t);
  return static_cast<std::int64_t>(fb::ReadScalar<fb::uoffset_t>(p));
}
inline bool verify_field(fb::Verifier& v, const fb::Table* f) {
  using namespace arrow_fb;
  if (!f->VerifyTableStart(v) || !verify_string(v, f, kFieldName) || !f->VerifyField<std::uint8_t>(v, kFieldNullable, 1) ||
      !f->VerifyField<std::uint8_t>(v, kFieldTypeType, 1) || !f->VerifyOffset(v, kFieldType) || !f->VerifyOffset(v, kFieldDictionary))
    return false;
  if (const auto* type = f->GetPointer<const fb::Table*>(kFieldType)) {
    // The fields this reader takes from the Type member: Int (int32 bitWidth, bool is_signed),
    // FloatingPoint (short precision), FixedSizeList (int32 listSize); the others' are not read.
    const auto tt = f->GetField<std::uint8_t>(kFieldTypeType, 0);
    bool ok = type->VerifyTableStart(v);
    if (tt == kInt) ok = ok && type->VerifyField<std::int32_t>(v, kIntBitWidth, 4) && type->VerifyField<std::uint8_t>(v, kIntSigned, 1);
    if (tt == kFloatingPoint) ok = ok && type->VerifyField<std::int16_t>(v, kFloatPrecision, 2);
    if (tt == kFixedSizeList) ok = ok && type->VerifyField<std::int32_t>(v, kFixedListSize, 4);
    if (!ok || !v.EndTable()) return false;
  }
  if (const auto* dict = f->GetPointer<const fb::Table*>(kFieldDictionary))
    if (!dict->VerifyTableStart(v) || !v.EndTable()) return false;
  return verify_tables(v, f, kFieldChildren, [&](const fb::Table* c) { return verify_field(v, c); }) &&
         verify_key_values(v, f, kFieldMetadata) && v.EndTable();
}
}  // namespace detail

class ArrowStreamFile {
 public:
  explicit ArrowStreamFile(const std::string& path) : path_(path) {
    std::error_code ec;
    IREPA_CHECK(std::filesystem::is_regular_file(path, ec), "arrow: '{}' is not a regular file", path);
    map_ = MappedFile(path, "arrow");
    base_ = map_.data(), size_ = map_.size();
    parse();
  }
  /// A stream held in memory (copied); `name` stands for the path in errors.
  ArrowStreamFile(std::span<const std::byte> bytes, std::string name) : path_(std::move(name)), owned_(bytes.begin(), bytes.end()) {
    base_ = owned_.data(), size_ = owned_.size();
    parse();
  }
  ArrowStreamFile(ArrowStreamFile&&) noexcept = default;
  ArrowStreamFile& operator=(ArrowStreamFile&&) noexcept = default;

  const std::string& path() const { return path_; }
  const std::vector<ArrowField>& fields() const { return fields_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<ArrowBatch>& batches() const { return batches_; }
  std::int64_t rows() const { return rows_; }

  /// The index of the column called name, or -1.
  int find_column(std::string_view name) const {
    for (std::size_t i = 0; i < fields_.size(); ++i)
      if (fields_[i].name == name) return static_cast<int>(i);
    return -1;
  }
  /// The batch holding row r and r's index in it.
  std::pair<const ArrowBatch*, std::int64_t> locate(std::int64_t r) const {
    IREPA_CHECK(r >= 0 && r < rows_, "arrow: '{}': row {} is outside its {} rows", path_, r, rows_);
    const auto it = std::upper_bound(batches_.begin(), batches_.end(), r, [](std::int64_t x, const ArrowBatch& b) { return x < b.first_row; });
    const ArrowBatch& b = *(it - 1);
    return {&b, r - b.first_row};
  }

 private:
  std::string path_;
  MappedFile map_;
  std::vector<std::byte> owned_;
  const std::byte* base_ = nullptr;  // the stream's bytes: map_'s or owned_'s
  std::size_t size_ = 0;
  // Fields are referred to by the arrays: kept in a stable place (fields_ is filled once).
  std::vector<ArrowField> fields_;
  std::map<std::string, std::string> metadata_;
  std::vector<ArrowBatch> batches_;
  std::int64_t rows_ = 0;

  [[noreturn]] void bad(std::size_t at, const std::string& what) const {
    fail("arrow: '{}' is not a valid Arrow IPC stream at byte {}: {}", path_, at, what);
  }

  static std::map<std::string, std::string> key_values(const detail::fb::Table* t, detail::fb::voffset_t field) {
    namespace fb = detail::fb;
    std::map<std::string, std::string> out;
    if (const auto* vec = t->GetPointer<const fb::Vector<fb::Offset<fb::Table>>*>(field))
      for (fb::uoffset_t i = 0; i < vec->size(); ++i) {
        const auto* kv = vec->Get(i);
        const auto* k = kv->GetPointer<const fb::String*>(detail::arrow_fb::kKey);
        const auto* v = kv->GetPointer<const fb::String*>(detail::arrow_fb::kValue);
        out[k ? k->str() : std::string()] = v ? v->str() : std::string();
      }
    return out;
  }

  ArrowField read_field(const detail::fb::Table* f, std::size_t at, int depth) const {
    namespace fb = detail::fb;
    using namespace detail::arrow_fb;
    if (depth > 32) bad(at, "fields nested more than 32 deep");
    ArrowField out;
    if (const auto* n = f->GetPointer<const fb::String*>(kFieldName)) out.name = n->str();
    if (f->GetPointer<const fb::Table*>(kFieldDictionary))
      fail("arrow: '{}': column '{}' is dictionary-encoded, which this reader does not read", path_, out.name);
    const auto tt = f->GetField<std::uint8_t>(kFieldTypeType, 0);
    const auto* type = f->GetPointer<const fb::Table*>(kFieldType);
    switch (tt) {
      case kNull: out.type = ArrowType::Null; break;
      case kInt:
        out.type = ArrowType::Int;
        out.bit_width = type ? type->GetField<std::int32_t>(kIntBitWidth, 0) : 0;
        out.is_signed = type ? type->GetField<std::uint8_t>(kIntSigned, 0) != 0 : false;
        if (out.bit_width != 8 && out.bit_width != 16 && out.bit_width != 32 && out.bit_width != 64)
          bad(at, fmt::format("column '{}' is an integer of {} bits", out.name, out.bit_width));
        break;
      case kFloatingPoint: {
        out.type = ArrowType::Float;
        const int p = type ? type->GetField<std::int16_t>(kFloatPrecision, 0) : 0;
        if (p < 0 || p > 2) bad(at, fmt::format("column '{}' has float precision {}", out.name, p));
        out.bit_width = 16 << p;
        break;
      }
      case kBool: out.type = ArrowType::Bool; break;
      case kBinary: out.type = ArrowType::Binary; break;
      case kLargeBinary: out.type = ArrowType::LargeBinary; break;
      case kUtf8: out.type = ArrowType::Utf8; break;
      case kLargeUtf8: out.type = ArrowType::LargeUtf8; break;
      case kList: out.type = ArrowType::List; break;
      case kLargeList: out.type = ArrowType::LargeList; break;
      case kFixedSizeList:
        out.type = ArrowType::FixedSizeList;
        out.list_size = type ? type->GetField<std::int32_t>(kFixedListSize, 0) : 0;
        if (out.list_size < 0) bad(at, fmt::format("column '{}' is a fixed-size list of size {}", out.name, out.list_size));
        break;
      case kStruct: out.type = ArrowType::Struct; break;
      default:
        fail("arrow: '{}': column '{}' has Arrow type id {} (union, map, decimal, temporal, ...), which this reader does not read", path_,
             out.name, tt);
    }
    if (const auto* ch = f->GetPointer<const fb::Vector<fb::Offset<fb::Table>>*>(kFieldChildren))
      for (fb::uoffset_t i = 0; i < ch->size(); ++i) out.children.push_back(read_field(ch->Get(i), at, depth + 1));
    const bool list = out.type == ArrowType::List || out.type == ArrowType::LargeList || out.type == ArrowType::FixedSizeList;
    if (list && out.children.size() != 1) bad(at, fmt::format("list column '{}' has {} children, expected 1", out.name, out.children.size()));
    if (!list && out.type != ArrowType::Struct && !out.children.empty())
      bad(at, fmt::format("column '{}' of type {} has children", out.name, out.type_name()));
    out.metadata = key_values(f, kFieldMetadata);
    return out;
  }

  /// The flatbuffer Message at [at, at + len): verified, its root table.
  const detail::fb::Table* message(std::size_t at, std::size_t len) const {
    namespace fb = detail::fb;
    using namespace detail::arrow_fb;
    const auto* buf = reinterpret_cast<const std::uint8_t*>(base_ + at);
    fb::Verifier v(buf, len, /*max_depth=*/64, /*max_tables=*/1000000);
    if (len < sizeof(fb::uoffset_t) || !v.VerifyAlignment(0, alignof(fb::uoffset_t)) || fb::ReadScalar<fb::uoffset_t>(buf) >= len)
      bad(at, "the message's root offset is outside its metadata");
    const auto* msg = fb::GetRoot<fb::Table>(buf);
    bool ok = msg->VerifyTableStart(v) && msg->VerifyField<std::int16_t>(v, kMsgVersion, 2) &&
              msg->VerifyField<std::uint8_t>(v, kMsgHeaderType, 1) && msg->VerifyOffset(v, kMsgHeader) &&
              msg->VerifyField<std::int64_t>(v, kMsgBodyLength, 8) && detail::verify_key_values(v, msg, kMsgMetadata);
    if (ok) {
      const auto* h = msg->GetPointer<const fb::Table*>(kMsgHeader);
      const auto ht = msg->GetField<std::uint8_t>(kMsgHeaderType, 0);
      if (h && ht == kHeaderSchema) {
        ok = h->VerifyTableStart(v) && h->VerifyField<std::int16_t>(v, kSchemaEndianness, 2) &&
             detail::verify_tables(v, h, kSchemaFields, [&](const fb::Table* f) { return detail::verify_field(v, f); }) &&
             detail::verify_key_values(v, h, kSchemaMetadata) && h->VerifyOffset(v, 10) && v.EndTable();
      } else if (h && ht == kHeaderRecordBatch) {
        const std::uint8_t* p = nullptr;
        ok = h->VerifyTableStart(v) && h->VerifyField<std::int64_t>(v, kBatchLength, 8) &&
             detail::verify_struct16_vector(v, h, kBatchNodes, &p) >= 0 && detail::verify_struct16_vector(v, h, kBatchBuffers, &p) >= 0 &&
             h->VerifyOffset(v, kBatchCompression) && v.EndTable();
      }
    }
    ok = ok && v.EndTable();
    if (!ok) bad(at, "its flatbuffers metadata does not verify (corrupt or truncated)");
    return msg;
  }

  void parse() {
    namespace fb = detail::fb;
    using namespace detail::arrow_fb;
    const std::byte* data = base_;
    const std::size_t size = size_;
    std::size_t at = 0;
    bool have_schema = false;
    while (true) {
      // A closed stream ends with its end-of-stream marker (datasets' writer closes every file):
      // a file that stops after a whole message is a truncated one, not a shorter dataset.
      if (at == size) bad(at, "the stream ends without its end-of-stream marker (truncated)");
      if (size - at < 4) bad(at, "the file ends inside a message's length (truncated)");
      std::int32_t len = detail::read_i32(data + at);
      at += 4;
      if (len == -1) {  // continuation marker, then the length
        if (size - at < 4) bad(at, "the file ends inside a message's length (truncated)");
        len = detail::read_i32(data + at);
        at += 4;
      }
      if (len == 0) {  // end of stream
        if (at != size) bad(at, fmt::format("{} bytes after the end-of-stream marker", size - at));
        break;
      }
      if (len < 0 || static_cast<std::size_t>(len) > size - at)
        bad(at - 4, fmt::format("a message's metadata of {} bytes does not fit in the {} bytes left", len, size - at));
      // The format pads metadata and bodies to 8 bytes, and flatbuffers reads aligned scalars.
      if (at % 8 != 0) bad(at, "a message's metadata that does not start on an 8-byte boundary");
      const std::size_t meta_at = at;
      const fb::Table* msg = message(at, static_cast<std::size_t>(len));
      at += static_cast<std::size_t>(len);
      const std::int64_t body_len = msg->GetField<std::int64_t>(kMsgBodyLength, 0);
      if (body_len < 0 || static_cast<std::uint64_t>(body_len) > size - at)
        bad(meta_at, fmt::format("a message body of {} bytes does not fit in the {} bytes left (truncated?)", body_len, size - at));
      const std::size_t body_at = at;
      at += static_cast<std::size_t>(body_len);
      const auto ht = msg->GetField<std::uint8_t>(kMsgHeaderType, 0);
      const auto* h = msg->GetPointer<const fb::Table*>(kMsgHeader);
      if (!h) bad(meta_at, "a message without a header");
      if (ht == kHeaderSchema) {
        if (have_schema) bad(meta_at, "a second schema message");
        if (h->GetField<std::int16_t>(kSchemaEndianness, 0) != 0) fail("arrow: '{}' is big-endian, which this reader does not read", path_);
        if (const auto* fs = h->GetPointer<const fb::Vector<fb::Offset<fb::Table>>*>(kSchemaFields))
          for (fb::uoffset_t i = 0; i < fs->size(); ++i) fields_.push_back(read_field(fs->Get(i), meta_at, 0));
        metadata_ = key_values(h, kSchemaMetadata);
        have_schema = true;
      } else if (ht == kHeaderRecordBatch) {
        if (!have_schema) bad(meta_at, "a record batch before the schema");
        read_batch(h, meta_at, body_at, static_cast<std::size_t>(body_len));
      } else if (ht == kHeaderDictionary) {
        fail("arrow: '{}' holds a dictionary batch at byte {}; dictionary-encoded columns are not read", path_, meta_at);
      } else {
        bad(meta_at, fmt::format("a message of type {} (expected a schema or record batch)", ht));
      }
    }
    if (!have_schema) bad(0, "no schema message");
  }

  struct Cursor {
    const std::uint8_t* nodes;
    std::int64_t n_nodes, node = 0;
    const std::uint8_t* buffers;
    std::int64_t n_buffers, buffer = 0;
  };

  void read_batch(const detail::fb::Table* h, std::size_t meta_at, std::size_t body_at, std::size_t body_len) {
    namespace fb = detail::fb;
    using namespace detail::arrow_fb;
    if (h->GetPointer<const fb::Table*>(kBatchCompression))
      fail("arrow: '{}': the record batch at byte {} is compressed, which this reader does not read", path_, meta_at);
    ArrowBatch b;
    b.first_row = rows_;
    b.length = h->GetField<std::int64_t>(kBatchLength, 0);
    if (b.length < 0) bad(meta_at, fmt::format("a record batch of {} rows", b.length));
    Cursor c{};
    const auto* nodes = h->GetPointer<const std::uint8_t*>(kBatchNodes);
    const auto* bufs = h->GetPointer<const std::uint8_t*>(kBatchBuffers);
    c.nodes = nodes ? nodes + 4 : nullptr, c.n_nodes = nodes ? fb::ReadScalar<fb::uoffset_t>(nodes) : 0;
    c.buffers = bufs ? bufs + 4 : nullptr, c.n_buffers = bufs ? fb::ReadScalar<fb::uoffset_t>(bufs) : 0;
    for (const ArrowField& f : fields_) {
      ArrowArray a = read_array(f, c, meta_at, body_at, body_len, 0);
      if (a.length != b.length)
        bad(meta_at, fmt::format("column '{}' has {} values in a record batch of {} rows", f.name, a.length, b.length));
      b.columns.push_back(std::move(a));
    }
    if (c.node != c.n_nodes || c.buffer != c.n_buffers)
      bad(meta_at, fmt::format("the record batch lists {} field nodes and {} buffers, the schema uses {} and {}", c.n_nodes, c.n_buffers,
                               c.node, c.buffer));
    rows_ += b.length;
    batches_.push_back(std::move(b));
  }

  std::span<const std::byte> next_buffer(Cursor& c, std::size_t meta_at, std::size_t body_at, std::size_t body_len, const ArrowField& f) const {
    if (c.buffer >= c.n_buffers) bad(meta_at, fmt::format("the record batch has too few buffers for column '{}'", f.name));
    const auto* p = reinterpret_cast<const std::byte*>(c.buffers + 16 * c.buffer++);
    const std::int64_t off = detail::read_i64(p), len = detail::read_i64(p + 8);
    if (off < 0 || len < 0 || static_cast<std::uint64_t>(off) > body_len || static_cast<std::uint64_t>(len) > body_len - static_cast<std::uint64_t>(off))
      bad(meta_at, fmt::format("a buffer of column '{}' at [{}, +{}) is outside the {}-byte body", f.name, off, len, body_len));
    return {base_ + body_at + static_cast<std::size_t>(off), static_cast<std::size_t>(len)};
  }

  ArrowArray read_array(const ArrowField& f, Cursor& c, std::size_t meta_at, std::size_t body_at, std::size_t body_len, int depth) {
    if (c.node >= c.n_nodes) bad(meta_at, fmt::format("the record batch has too few field nodes for column '{}'", f.name));
    ArrowArray a;
    a.field = &f;
    const auto* node = reinterpret_cast<const std::byte*>(c.nodes + 16 * c.node++);
    a.length = detail::read_i64(node), a.null_count = detail::read_i64(node + 8);
    if (a.length < 0 || a.null_count < 0 || a.null_count > a.length)
      bad(meta_at, fmt::format("column '{}' has {} values with {} nulls", f.name, a.length, a.null_count));
    const auto need = [&](std::span<const std::byte> buf, std::int64_t n, const char* what) {
      if (n < 0 || static_cast<std::uint64_t>(buf.size()) < static_cast<std::uint64_t>(n))
        bad(meta_at, fmt::format("column '{}': its {} buffer has {} bytes, {} needed for {} values", f.name, what, buf.size(), n, a.length));
    };
    if (f.type == ArrowType::Null) return a;  // no buffers
    a.validity = next_buffer(c, meta_at, body_at, body_len, f);
    const std::int64_t bitmap_bytes = a.length / 8 + (a.length % 8 != 0);  // without overflow for any length
    if (a.null_count > 0) need(a.validity, bitmap_bytes, "validity");
    const auto check_offsets = [&](std::int64_t width, std::int64_t limit, const char* of) {
      const std::string what = fmt::format("arrow: '{}' column '{}' offsets", path_, f.name);
      need(a.offsets, checked_mul(checked_add(a.length, 1, what), width, what), "offsets");
      std::int64_t prev = 0;
      for (std::int64_t i = 0; i <= a.length; ++i) {
        const std::int64_t o = width == 8 ? detail::read_i64(a.offsets.data() + i * 8) : detail::read_i32(a.offsets.data() + i * 4);
        if (o < 0 || o > limit || (i > 0 && o < prev))
          bad(meta_at, fmt::format("column '{}': offset {} of value {} is out of order or past the {} {} of its {}", f.name, o, i, limit,
                                   of, of[0] == 'b' ? "data" : "child"));
        prev = o;
      }
    };
    switch (f.type) {
      case ArrowType::Int:
      case ArrowType::Float:
        a.values = next_buffer(c, meta_at, body_at, body_len, f);
        need(a.values, checked_mul(a.length, f.bit_width / 8, fmt::format("arrow: '{}' column '{}' data", path_, f.name)), "data");
        break;
      case ArrowType::Bool:
        a.values = next_buffer(c, meta_at, body_at, body_len, f);
        need(a.values, bitmap_bytes, "data");
        break;
      case ArrowType::Binary:
      case ArrowType::Utf8:
      case ArrowType::LargeBinary:
      case ArrowType::LargeUtf8: {
        const std::int64_t w = f.type == ArrowType::LargeBinary || f.type == ArrowType::LargeUtf8 ? 8 : 4;
        a.offsets = next_buffer(c, meta_at, body_at, body_len, f);
        a.values = next_buffer(c, meta_at, body_at, body_len, f);
        check_offsets(w, static_cast<std::int64_t>(a.values.size()), "bytes");
        break;
      }
      case ArrowType::List:
      case ArrowType::LargeList: {
        a.offsets = next_buffer(c, meta_at, body_at, body_len, f);
        if (depth > 32) bad(meta_at, "arrays nested more than 32 deep");
        a.children.push_back(read_array(f.children[0], c, meta_at, body_at, body_len, depth + 1));
        check_offsets(f.type == ArrowType::LargeList ? 8 : 4, a.children[0].length, "values");
        break;
      }
      case ArrowType::FixedSizeList:
        a.children.push_back(read_array(f.children[0], c, meta_at, body_at, body_len, depth + 1));
        if (f.list_size > 0 && a.length > a.children[0].length / f.list_size)
          bad(meta_at, fmt::format("column '{}': {} lists of {} values each need more than the {} child values it has", f.name, a.length,
                                   f.list_size, a.children[0].length));
        break;
      case ArrowType::Struct:
        for (const ArrowField& ch : f.children) {
          a.children.push_back(read_array(ch, c, meta_at, body_at, body_len, depth + 1));
          if (a.children.back().length < a.length)
            bad(meta_at, fmt::format("struct column '{}': child '{}' has {} values, the struct {}", f.name, ch.name, a.children.back().length,
                                     a.length));
        }
        break;
      case ArrowType::Null:
        break;
    }
    return a;
  }
};

/// Value i of an integer column.
inline std::int64_t arrow_int(const ArrowArray& a, std::int64_t i) {
  const std::byte* p = a.values.data() + i * (a.field->bit_width / 8);
  switch (a.field->bit_width) {
    case 8: return a.field->is_signed ? static_cast<std::int64_t>(static_cast<std::int8_t>(p[0])) : static_cast<std::int64_t>(std::to_integer<std::uint8_t>(p[0]));
    case 16: {
      std::uint16_t v;
      std::memcpy(&v, p, 2);
      return a.field->is_signed ? static_cast<std::int16_t>(v) : v;
    }
    case 32: {
      std::uint32_t v;
      std::memcpy(&v, p, 4);
      return a.field->is_signed ? static_cast<std::int64_t>(static_cast<std::int32_t>(v)) : static_cast<std::int64_t>(v);
    }
    default:
      return detail::read_i64(p);
  }
}

/// The bytes of binary / string value i.
inline std::span<const std::uint8_t> arrow_bytes(const ArrowArray& a, std::int64_t i) {
  const auto [b, e] = a.range(i);
  return {reinterpret_cast<const std::uint8_t*>(a.values.data()) + b, static_cast<std::size_t>(e - b)};
}

/// Value i of a column of nested lists of floats (any list kinds, any depth) as a dense array:
/// its shape (the list lengths, which must be the same at every level: a tensor) and its values
/// as float. `what` names the source in errors.
inline std::vector<float> arrow_float_tensor(const ArrowArray& a, std::int64_t i, std::vector<std::int64_t>& shape, const std::string& what) {
  shape.clear();
  std::vector<float> out;
  // Walk level by level: the ranges [b, e) of the current level's elements.
  std::vector<std::pair<std::int64_t, std::int64_t>> cur{{i, i + 1}};
  const ArrowArray* arr = &a;
  while (arr->field->type == ArrowType::List || arr->field->type == ArrowType::LargeList || arr->field->type == ArrowType::FixedSizeList) {
    std::vector<std::pair<std::int64_t, std::int64_t>> next;
    std::int64_t n = -1;
    for (const auto& [b, e] : cur)
      for (std::int64_t k = b; k < e; ++k) {
        if (arr->is_null(k)) fail("{}: a null list inside the value", what);
        const auto r = arr->range(k);
        if (n >= 0 && r.second - r.first != n) fail("{}: lists of {} and {} values at one level: not a tensor", what, n, r.second - r.first);
        n = r.second - r.first;
        next.push_back(r);
      }
    shape.push_back(std::max<std::int64_t>(n, 0));
    cur = std::move(next);
    arr = &arr->children[0];
  }
  IREPA_CHECK(arr->field->type == ArrowType::Float, "{}: the innermost values are {}, expected floats", what, arr->field->type_name());
  for (const auto& [b, e] : cur)
    for (std::int64_t k = b; k < e; ++k) {
      if (arr->is_null(k)) fail("{}: a null value inside the tensor", what);
      const std::byte* p = arr->values.data() + k * (arr->field->bit_width / 8);
      if (arr->field->bit_width == 32) {
        float v;
        std::memcpy(&v, p, 4);
        out.push_back(v);
      } else if (arr->field->bit_width == 64) {
        double v;
        std::memcpy(&v, p, 8);
        out.push_back(static_cast<float>(v));
      } else {
        std::uint16_t h;
        std::memcpy(&h, p, 2);
        out.push_back(static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(h)));
      }
    }
  return out;
}

}  // namespace irepa::io
