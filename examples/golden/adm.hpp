#pragma once
// The ADM evaluator's golden files besides its network (golden/inception.hpp): `fid_statistics`
// (mu / sigma, FID and sFID by both square-root methods, Inception Score, radii, precision /
// recall and memberships) and `adm_npz` (the .npz reference batches, stored and deflated, read
// back against the safetensors copy of their arrays).

#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "golden/format.hpp"
#include "golden/inception.hpp"
#include "irepa/io/npz.hpp"
#include "irepa/metrics/adm_evaluator.hpp"

namespace irepa::golden {

/// Runs a `fid_statistics` file with features in T. Precision, recall and memberships must be
/// exact (tolerance 0) in both builds.
template <class T>
std::vector<Row> check_fid_statistics(const io::SafeTensorsFile& f, double tol) {
  const auto c = config_of(f);
  std::int64_t split = 50, split_default = 5000;
  int k = 3;
  try {
    split = c.at("inception_score").at("split_size").get<std::int64_t>();
    split_default = c.at("inception_score").value("default_split_size", std::int64_t{5000});
    const auto nh = c.at("precision_recall").at("nhood_sizes").get<std::vector<int>>();
    IREPA_CHECK(nh.size() == 1, "golden: fid_statistics nhood_sizes has {} entries; the evaluator uses one", nh.size());
    k = nh[0];
    IREPA_CHECK(c.at("precision_recall").value("clamp_to_percentile", nlohmann::json()).is_null(),
                "golden: fid_statistics clamp_to_percentile is set; the evaluator's is None");
  } catch (const nlohmann::json::exception& e) {
    fail("golden: fid_statistics config is missing a key or has a wrong type: {}", e.what());
  }
  const auto in = [&](const char* name) { return f.load<T>(name); };
  const Tensor<T> ref = in("inputs/ref"), sample = in("inputs/sample"), sref = in("inputs/spatial_ref"), ssample = in("inputs/spatial_sample");
  RowCollector<T> rc{f, tol};
  const auto gauss = [&](const Tensor<T>& x, const std::string& mu, const std::string& sigma) {
    const metrics::Gaussian g = metrics::feature_statistics<T>(x.cview());
    Tensor<T> m(Shape{g.mean.size()}), s(Shape{g.cov.rows(), g.cov.cols()});
    for (std::int64_t i = 0; i < m.numel(); ++i) m[i] = static_cast<T>(g.mean(i));
    for (std::int64_t i = 0; i < s.size(0); ++i)
      for (std::int64_t j = 0; j < s.size(1); ++j) s[i * s.size(1) + j] = static_cast<T>(g.cov(i, j));
    rc.cmp(mu, m), rc.cmp(sigma, s);
    return g;
  };
  const auto gr = gauss(ref, "outputs/mu_ref", "outputs/sigma_ref"), gs = gauss(sample, "outputs/mu_sample", "outputs/sigma_sample");
  const auto hr = gauss(sref, "outputs/mu_s_ref", "outputs/sigma_s_ref"), hs = gauss(ssample, "outputs/mu_s_sample", "outputs/sigma_s_sample");
  for (const auto m : {metrics::SqrtMethod::Sqrtm, metrics::SqrtMethod::Symmetric}) {
    const std::string tag = m == metrics::SqrtMethod::Sqrtm ? " (sqrtm)" : " (symmetric eigen)";
    rc.scalar("outputs/fid", metrics::frechet_distance(gs, gr, m));
    rc.rows.back().name += tag;
    rc.scalar("outputs/sfid", metrics::frechet_distance(hs, hr, m));
    rc.rows.back().name += tag;
  }
  const Tensor<T> logits = in("inputs/is_logits");
  rc.cmp("outputs/is_softmax", detail::softmax_rows(logits));
  const auto is = metrics::inception_score<T>(logits.cview(), split);
  rc.scalar("outputs/inception_score", is.score);
  Tensor<T> splits(Shape{static_cast<std::int64_t>(is.splits.size())});
  for (std::size_t i = 0; i < is.splits.size(); ++i) splits[static_cast<std::int64_t>(i)] = static_cast<T>(is.splits[i]);
  rc.cmp("outputs/inception_score_splits", splits);
  rc.scalar("outputs/inception_score_split5000", metrics::inception_score<T>(logits.cview(), split_default).score);
  const auto pr = metrics::precision_recall<T>(ref.cview(), sample.cview(), k, 128);
  const auto vec = [](const std::vector<double>& v) {
    Tensor<T> t(Shape{static_cast<std::int64_t>(v.size()), 1});
    for (std::size_t i = 0; i < v.size(); ++i) t[static_cast<std::int64_t>(i)] = static_cast<T>(v[i]);
    return t;
  };
  rc.cmp("outputs/radii_ref", vec(pr.radii_ref));
  rc.cmp("outputs/radii_sample", vec(pr.radii_sample));
  const auto exact = [&](const std::string& name, double ours) {
    rc.rows.push_back({name + " (|difference|)", std::abs(ours - f.load<double>(name)[0]), 0.0});
  };
  exact("outputs/precision", pr.precision);
  exact("outputs/recall", pr.recall);
  const auto members = [&](const std::string& name, const std::vector<std::uint8_t>& ours) {
    const auto ref_m = f.load<std::uint8_t>(name);
    IREPA_CHECK(ref_m.numel() == static_cast<std::int64_t>(ours.size()), "golden: {} has {} entries, ours {}", name, ref_m.numel(), ours.size());
    double wrong = 0;
    for (std::size_t i = 0; i < ours.size(); ++i) wrong += ours[i] != ref_m[static_cast<std::int64_t>(i)];
    rc.rows.push_back({name + " (entries that differ)", wrong, 0.0});
  };
  members("outputs/sample_in_ref_manifold", pr.sample_in_ref);
  members("outputs/ref_in_sample_manifold", pr.ref_in_sample);
  return rc.rows;
}

/// An `adm_npz` file: every .npz its config lists (next to it) is read and each array compared
/// bit for bit with outputs/<name>, dtype included. One row per (npz, array): the count of
/// differing bytes.
inline std::vector<Row> check_adm_npz(const io::SafeTensorsFile& f) {
  const auto c = config_of(f);
  std::vector<std::string> files;
  try {
    for (const auto& e : c.at("npz")) {
      const std::string s = e.get<std::string>();
      files.push_back(s.substr(0, s.find(' ')));
    }
  } catch (const nlohmann::json::exception& e) {
    fail("golden: adm_npz config has no list 'npz' of file names: {}", e.what());
  }
  std::vector<Row> rows;
  const auto dir = std::filesystem::path(f.path()).parent_path();
  for (const auto& name : files) {
    const io::NpzFile npz((dir / name).string());
    for (const auto& key : f.names()) {
      if (!key.starts_with("outputs/")) continue;
      const std::string arr = key.substr(8);
      const io::NpyArray a = npz.array(arr);
      const auto& info = f.info(key);
      IREPA_CHECK(a.shape == info.shape, "golden: {}:{} has shape {}, expected {}", name, arr, a.shape.str(), info.shape.str());
      const std::string want = info.dtype == DType::U8 ? "|u1" : info.dtype == DType::F32 ? "<f4" : "<f8";
      IREPA_CHECK(a.descr == want, "golden: {}:{} has dtype '{}', expected '{}'", name, arr, a.descr, want);
      const auto bytes = f.bytes(key);
      IREPA_CHECK(bytes.size() == a.data.size(), "golden: {}:{} holds {} bytes, expected {}", name, arr, a.data.size(), bytes.size());
      double diff = 0;
      for (std::size_t i = 0; i < bytes.size(); ++i) diff += bytes[i] != a.data[i];
      rows.push_back({name + ":" + arr + " (bytes that differ)", diff, 0.0});
    }
  }
  return rows;
}

}  // namespace irepa::golden
