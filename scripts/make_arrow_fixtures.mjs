// Writes tests/data/arrow: small Hugging Face `save_to_disk` folders laid out as the reference's
// data/ holds them, made with an independent Arrow writer (the npm apache-arrow package), so the
// C++ reader is checked against someone else's IPC stream encoder:
//
//   imagenet-latents-images/            train: image {bytes, path} (PNG), label (int64, ClassLabel)
//     data-00000-of-00002.arrow, data-00001-of-00002.arrow, dataset_info.json, state.json
//     val/data-00000-of-00001.arrow, ...
//   imagenet-latents-sdvae-ft-mse-f8d4/ train: data [8, 4, 4] float32 as list<list<list<float>>>
//     (datasets' Array3D storage), in the same order; val/ likewise
//   latents-fixed-size/                 data as fixed_size_list<fixed_size_list<fixed_size_list<float, 4>, 4>, 8>
//   expected.safetensors                images [n, 3, 32, 32] uint8, posteriors [n, 8, 4, 4], labels [n],
//                                       and val_* of the same, for the tests to compare with
//
// Each .arrow file is an Arrow IPC stream with two or more record batches.
//
//   mkdir -p /tmp/arrowgen && (cd /tmp/arrowgen && npm install apache-arrow@17)
//   NODE_PATH=/tmp/arrowgen/node_modules node scripts/make_arrow_fixtures.mjs tests/data/arrow
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const arrow = require(process.env.NODE_PATH ? path.join(process.env.NODE_PATH, "apache-arrow") : "apache-arrow");
const { Field, Schema, Struct, Binary, Utf8, Int64, Float32, List, FixedSizeList, RecordBatchStreamWriter, makeData, RecordBatch, vectorFromArray } = arrow;

const out = process.argv[2] || "tests/data/arrow";
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);

function png(w, h, rgb) {  // 8-bit RGB, filter 0 on every row
  const crcTable = (b) => zlib.crc32(b);
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crcTable(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  const raw = Buffer.alloc(h * (1 + 3 * w));
  for (let y = 0; y < h; y++) for (let x = 0; x < 3 * w; x++) raw[y * (1 + 3 * w) + 1 + x] = rgb[y * 3 * w + x];
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr),
                        chunk("IDAT", zlib.deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}

function samples(n, split) {
  const s = [];
  for (let i = 0; i < n; i++) {
    const rgb = new Uint8Array(32 * 32 * 3);
    for (let k = 0; k < rgb.length; k++) rgb[k] = Math.floor(rand() * 256);
    const lat = new Float32Array(8 * 4 * 4);
    for (let k = 0; k < lat.length; k++) lat[k] = k >= 64 ? 0.05 + rand() : (rand() - 0.5) * 6;  // mean | std (> 0)
    s.push({ rgb, png: png(32, 32, rgb), lat, label: Math.floor(rand() * 3), path: `${split}/${String(i).padStart(5, "0")}.png` });
  }
  return s;
}

const hfMeta = (features) => new Map([["huggingface", JSON.stringify({ info: { features } })]]);
const imageFeatures = { image: { _type: "Image" }, label: { names: ["n01", "n02", "n03"], _type: "ClassLabel" } };
const latentFeatures = { data: { shape: [8, 4, 4], dtype: "float32", _type: "Array3D" } };

function nested(lat, fixed) {  // [8][4][4] as JS arrays
  const a = [];
  for (let c = 0; c < 8; c++) { const r = []; for (let y = 0; y < 4; y++) r.push(Array.from(lat.slice(c * 16 + y * 4, c * 16 + y * 4 + 4))); a.push(r); }
  return a;
}

function latentType(fixed) {
  const f = new Field("item", new Float32(), true);
  if (!fixed) return new List(new Field("item", new List(new Field("item", new List(f), true)), true));
  return new FixedSizeList(8, new Field("item", new FixedSizeList(4, new Field("item", new FixedSizeList(4, f), true)), true));
}

function writeStream(file, schema, batches) {
  const writer = new RecordBatchStreamWriter();
  writer.reset(undefined, schema);
  for (const b of batches) writer.write(b);
  writer.finish();
  fs.writeFileSync(file, writer.toUint8Array(true));
}

function batchOf(schema, columns) {
  const children = schema.fields.map((f) => vectorFromArray(columns[f.name], f.type).data[0]);
  const n = children[0].length;
  return new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children }));
}

function saveToDisk(dir, schema, rows, toColumns, files, split, features) {
  fs.mkdirSync(dir, { recursive: true });
  const per = Math.ceil(rows.length / files);
  const dataFiles = [];
  for (let f = 0; f < files; f++) {
    const part = rows.slice(f * per, (f + 1) * per);
    const name = `data-${String(f).padStart(5, "0")}-of-${String(files).padStart(5, "0")}.arrow`;
    const half = Math.max(1, Math.ceil(part.length / 2));  // two record batches per file
    const batches = [part.slice(0, half), part.slice(half)].filter((p) => p.length).map((p) => batchOf(schema, toColumns(p)));
    writeStream(path.join(dir, name), schema, batches);
    dataFiles.push({ filename: name });
  }
  fs.writeFileSync(path.join(dir, "state.json"), JSON.stringify({ _data_files: dataFiles, _fingerprint: "irepa-fixture", _format_columns: null,
    _format_kwargs: {}, _format_type: null, _output_all_columns: false, _split: split }, null, 2));
  fs.writeFileSync(path.join(dir, "dataset_info.json"), JSON.stringify({ citation: "", description: "irepa test fixture", features,
    homepage: "", license: "" }, null, 2));
}

const imageSchema = new Schema([new Field("image", new Struct([new Field("bytes", new Binary(), true), new Field("path", new Utf8(), true)]), true),
                                new Field("label", new Int64(), true)], hfMeta(imageFeatures));
const latentSchema = (fixed) => new Schema([new Field("data", latentType(fixed), true)], hfMeta(latentFeatures));
const imageCols = (rows) => ({ image: rows.map((r) => ({ bytes: r.png, path: r.path })), label: rows.map((r) => BigInt(r.label)) });
const latentCols = (fixed) => (rows) => ({ data: rows.map((r) => nested(r.lat, fixed)) });

const train = samples(7, "train"), val = samples(3, "val");
saveToDisk(path.join(out, "imagenet-latents-images"), imageSchema, train, imageCols, 2, "train", imageFeatures);
saveToDisk(path.join(out, "imagenet-latents-images", "val"), imageSchema, val, imageCols, 1, "validation", imageFeatures);
saveToDisk(path.join(out, "imagenet-latents-sdvae-ft-mse-f8d4"), latentSchema(false), train, latentCols(false), 2, "train", latentFeatures);
saveToDisk(path.join(out, "imagenet-latents-sdvae-ft-mse-f8d4", "val"), latentSchema(false), val, latentCols(false), 1, "validation", latentFeatures);
saveToDisk(path.join(out, "latents-fixed-size"), latentSchema(true), train, latentCols(true), 1, "train", latentFeatures);
// Broken on purpose: latents of an odd channel count (not mean | std), images of two sizes.
const odd = new Schema([new Field("data", new List(new Field("item", new List(new Field("item", new List(new Field("item", new Float32(), true)), true)), true)), true)],
                       hfMeta(latentFeatures));
saveToDisk(path.join(out, "latents-odd-channels"), odd, train.slice(0, 2), (rows) => ({ data: rows.map((r) => nested(r.lat, false).slice(0, 3)) }),
           1, "train", latentFeatures);
const small = samples(1, "small");
small[0].png = png(16, 16, small[0].rgb.slice(0, 16 * 16 * 3));
saveToDisk(path.join(out, "images-mixed-sizes"), imageSchema, [train[0], small[0]], imageCols, 1, "train", imageFeatures);

// expected.safetensors
function safetensors(file, tensors) {
  const header = {}; const blobs = []; let off = 0;
  for (const [name, { dtype, shape, bytes }] of Object.entries(tensors).sort()) {
    header[name] = { dtype, shape, data_offsets: [off, off + bytes.length] }; blobs.push(bytes); off += bytes.length;
  }
  let h = Buffer.from(JSON.stringify(header));
  h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8); len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(file, Buffer.concat([len, h, ...blobs]));
}
const pack = (rows, prefix) => {
  const chw = Buffer.alloc(rows.length * 3 * 1024);
  rows.forEach((r, i) => { for (let p = 0; p < 1024; p++) for (let c = 0; c < 3; c++) chw[i * 3072 + c * 1024 + p] = r.rgb[p * 3 + c]; });
  const lat = Buffer.concat(rows.map((r) => Buffer.from(r.lat.buffer)));
  const lab = Buffer.alloc(rows.length * 8); rows.forEach((r, i) => lab.writeBigInt64LE(BigInt(r.label), i * 8));
  return { [prefix + "images"]: { dtype: "U8", shape: [rows.length, 3, 32, 32], bytes: chw },
           [prefix + "posteriors"]: { dtype: "F32", shape: [rows.length, 8, 4, 4], bytes: lat },
           [prefix + "labels"]: { dtype: "I64", shape: [rows.length], bytes: lab } };
};
safetensors(path.join(out, "expected.safetensors"), { ...pack(train, ""), ...pack(val, "val_") });
console.log(`wrote ${out}: ${train.length} train and ${val.length} val samples`);
