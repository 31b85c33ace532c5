#pragma once
// A small classifier the library trains itself, to score generated images: one hidden ReLU
// layer on fixed features (e.g. HOG tokens), softmax cross-entropy, minibatch AdamW. Its
// accuracy on samples against the labels they were conditioned on says whether the classes came
// out right; its hidden activations are a learned feature space for a Frechet distance.

#include <cmath>
#include <vector>

#include <Eigen/Dense>

#include "irepa/core/error.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/data/sampler.hpp"

namespace irepa::metrics {

struct MlpClassifierOptions {
  std::int64_t hidden = 128;
  int epochs = 6;
  std::int64_t batch_size = 256;
  double learning_rate = 2e-3, weight_decay = 1e-4;
  std::uint64_t seed = 0;
};

class MlpClassifier {
 public:
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  MlpClassifier(std::int64_t in, std::int64_t classes, MlpClassifierOptions o = {}) : o_(o), in_(in), k_(classes) {
    IREPA_CHECK(in > 0 && classes > 1 && o.hidden > 0, "MlpClassifier: {} inputs, {} hidden, {} classes", in, o.hidden, classes);
    Philox rng(o.seed, 11);
    auto init = [&](Mat& w, std::int64_t fan_in, std::int64_t rows, std::int64_t cols) {  // PyTorch's Linear default
      Tensor<float> t(Shape{rows, cols});
      const float b = 1.0f / std::sqrt(static_cast<float>(fan_in));
      rng.uniform(t.view(), -b, b);
      w = Eigen::Map<const Mat>(t.data(), rows, cols);
    };
    init(w1_, in, in, o.hidden);
    init(w2_, o.hidden, o.hidden, classes);
    b1_ = Eigen::RowVectorXf::Zero(o.hidden);
    b2_ = Eigen::RowVectorXf::Zero(classes);
  }

  /// x [N, in], y [N] in 0..classes-1. Returns the mean training loss of each epoch.
  std::vector<double> fit(ConstView<float> x, ConstView<std::int64_t> y) {
    check_x(x);
    IREPA_CHECK(y.rank() == 1 && y.size(0) == x.size(0), "MlpClassifier::fit: labels {} for features {}", y.shape().str(),
                x.shape().str());
    const std::int64_t N = x.size(0);
    for (std::int64_t i = 0; i < N; ++i)
      IREPA_CHECK(y.data()[i] >= 0 && y.data()[i] < k_, "MlpClassifier::fit: label {} of sample {} is not in 0..{}", y.data()[i], i, k_ - 1);
    const Eigen::Map<const Mat> X(x.data(), N, in_);
    Adam a1(w1_), a2(w2_), c1(b1_), c2(b2_);
    std::vector<double> losses;
    std::int64_t t = 0;
    for (int e = 0; e < o_.epochs; ++e) {
      const auto perm = data::epoch_permutation(N, o_.seed, static_cast<std::uint64_t>(e));
      double total = 0;
      for (std::int64_t s = 0; s < N; s += o_.batch_size) {
        const std::int64_t B = std::min(o_.batch_size, N - s);
        Mat xb(B, in_);
        std::vector<std::int64_t> yb(static_cast<std::size_t>(B));
        for (std::int64_t i = 0; i < B; ++i) {
          const auto g = perm[static_cast<std::size_t>(s + i)];
          xb.row(i) = X.row(g);
          yb[static_cast<std::size_t>(i)] = y.data()[g];
        }
        Mat h = ((xb * w1_).rowwise() + b1_).cwiseMax(0.0f);  // [B, H]
        Mat p = (h * w2_).rowwise() + b2_;                     // [B, K] logits -> probabilities
        for (std::int64_t i = 0; i < B; ++i) {
          const float m = p.row(i).maxCoeff();
          p.row(i) = (p.row(i).array() - m).exp();
          const float z = p.row(i).sum();
          p.row(i) /= z;
          total -= std::log(std::max(p(i, yb[static_cast<std::size_t>(i)]), 1e-30f));
          p(i, yb[static_cast<std::size_t>(i)]) -= 1.0f;
        }
        p /= static_cast<float>(B);                                 // d loss / d logits
        const Mat gw2 = h.transpose() * p;                          // [H, K]
        const Eigen::RowVectorXf gb2 = p.colwise().sum();
        Mat dh = (p * w2_.transpose()).cwiseProduct((h.array() > 0.0f).cast<float>().matrix());  // [B, H]
        const Mat gw1 = xb.transpose() * dh;
        const Eigen::RowVectorXf gb1 = dh.colwise().sum();
        ++t;
        a1.step(w1_, gw1, t, o_, true), a2.step(w2_, gw2, t, o_, true);
        c1.step(b1_, gb1, t, o_, false), c2.step(b2_, gb2, t, o_, false);
      }
      losses.push_back(total / static_cast<double>(N));
    }
    return losses;
  }

  /// x [N, in] -> hidden ReLU activations [N, hidden].
  Tensor<float> hidden(ConstView<float> x) const {
    check_x(x);
    const Eigen::Map<const Mat> X(x.data(), x.size(0), in_);
    Tensor<float> out(Shape{x.size(0), o_.hidden});
    Eigen::Map<Mat>(out.data(), x.size(0), o_.hidden) = ((X * w1_).rowwise() + b1_).cwiseMax(0.0f);
    return out;
  }

  /// x [N, in] -> the most likely class of each row.
  std::vector<std::int64_t> predict(ConstView<float> x) const {
    const Tensor<float> h = hidden(x);
    const Eigen::Map<const Mat> H(h.data(), x.size(0), o_.hidden);
    const Mat logits = (H * w2_).rowwise() + b2_;
    std::vector<std::int64_t> out(static_cast<std::size_t>(x.size(0)));
    for (std::int64_t i = 0; i < x.size(0); ++i) {
      Eigen::Index k = 0;
      logits.row(i).maxCoeff(&k);
      out[static_cast<std::size_t>(i)] = k;
    }
    return out;
  }

  double accuracy(ConstView<float> x, ConstView<std::int64_t> y) const {
    IREPA_CHECK(y.rank() == 1 && y.size(0) == x.size(0), "MlpClassifier::accuracy: labels {} for features {}", y.shape().str(),
                x.shape().str());
    const auto p = predict(x);
    std::int64_t right = 0;
    for (std::int64_t i = 0; i < y.size(0); ++i) right += p[static_cast<std::size_t>(i)] == y.data()[i];
    return static_cast<double>(right) / static_cast<double>(std::max<std::int64_t>(1, y.size(0)));
  }

  std::int64_t inputs() const { return in_; }

 private:
  struct Adam {  // AdamW state for one matrix or vector (PyTorch's update, betas 0.9 / 0.999)
    Mat m, v;
    template <class P>
    explicit Adam(const P& p) : m(Mat::Zero(p.rows(), p.cols())), v(Mat::Zero(p.rows(), p.cols())) {}
    template <class P, class G>
    void step(P& p, const G& g, std::int64_t t, const MlpClassifierOptions& o, bool decay) {
      const float lr = static_cast<float>(o.learning_rate);
      if (decay) p *= 1.0f - lr * static_cast<float>(o.weight_decay);
      m = 0.9f * m + 0.1f * g;
      v = 0.999f * v + 0.001f * g.cwiseProduct(g);
      const float c1 = 1.0f - std::pow(0.9f, static_cast<float>(t)), c2 = 1.0f - std::pow(0.999f, static_cast<float>(t));
      p.array() -= lr * (m.array() / c1) / ((v.array() / c2).sqrt() + 1e-8f);
    }
  };

  void check_x(ConstView<float> x) const {
    IREPA_CHECK(x.rank() == 2 && x.size(1) == in_ && x.is_contiguous(), "MlpClassifier: features have shape {}, expected [N, {}]",
                x.shape().str(), in_);
  }

  MlpClassifierOptions o_;
  std::int64_t in_, k_;
  Mat w1_, w2_;  // [in, H], [H, K]
  Eigen::RowVectorXf b1_, b2_;
};

}  // namespace irepa::metrics
