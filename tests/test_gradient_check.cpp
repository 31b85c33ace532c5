// The gradient checker itself: it passes a correct backward and catches each kind of bug
// (wrong formula, an entry never written, assigning where parameters must accumulate).

#include "irepa/check/gradient_check.hpp"
#include "test_support.hpp"

using namespace irepa;

namespace {
// y = w * x^2 (elementwise), with a switchable bug in the backward pass.
enum class Bug { None, WrongFormula, SkipLastInput, AssignParam, AccumulateInput };

check::GradCheckResult run(Bug bug) {
  auto x = test::randn<double>({4, 3});
  auto w = test::randn<double>({4, 3});
  Tensor<double> dx(x.shape()), dw(w.shape());
  return check::gradient_check(
      [&] {
        Tensor<double> y(x.shape());
        for (std::int64_t i = 0; i < y.numel(); ++i) y[i] = w[i] * x[i] * x[i];
        return y;
      },
      [&](const std::vector<Tensor<double>>& g) {
        for (std::int64_t i = 0; i < x.numel(); ++i) {
          const double gx = g[0][i] * w[i] * (bug == Bug::WrongFormula ? 1.0 : 2.0) * x[i];
          if (bug == Bug::AccumulateInput)
            dx[i] += gx;
          else if (!(bug == Bug::SkipLastInput && i == x.numel() - 1))
            dx[i] = gx;
          const double gw = g[0][i] * x[i] * x[i];
          if (bug == Bug::AssignParam)
            dw[i] = gw;
          else
            dw[i] += gw;
        }
      },
      {check::input("x", x.view(), dx.view()), check::param("w", w.view(), dw.view())});
}
}  // namespace

TEST_CASE("gradient checker passes a correct backward pass", "[check]") {
  auto r = run(Bug::None);
  INFO(r.report());
  CHECK(r.ok());
  CHECK(r.worst() < 1e-8);
  CHECK(r.entries.size() == 2);
  CHECK(r.entries[0].checked == 12);
}

TEST_CASE("gradient checker catches a wrong formula", "[check]") {
  auto r = run(Bug::WrongFormula);
  CHECK(!r.ok());
  CHECK(r.entries[0].rel_error > 0.1);
  CHECK(r.report().find("FAIL") != std::string::npos);
}

TEST_CASE("gradient checker catches an input-gradient entry never written", "[check]") {
  auto r = run(Bug::SkipLastInput);
  CHECK(!r.ok());
  CHECK(r.entries[0].unwritten == 1);
  CHECK(r.report().find("never written") != std::string::npos);
}

TEST_CASE("gradient checker catches parameter gradients that overwrite instead of accumulating", "[check]") {
  auto r = run(Bug::AssignParam);
  CHECK(!r.ok());
  CHECK(r.entries[1].rel_error > 0.1);
}

TEST_CASE("gradient checker catches input gradients that accumulate instead of being assigned", "[check]") {
  auto r = run(Bug::AccumulateInput);
  CHECK(!r.ok());
  CHECK(r.entries[0].unwritten == 12);
}

TEST_CASE("gradient checker handles several outputs and element subsets", "[check]") {
  auto x = test::randn<double>({50});
  Tensor<double> dx(x.shape());
  auto r = check::gradient_check(
      [&] {
        std::vector<Tensor<double>> out;
        out.emplace_back(Shape{50});
        out.emplace_back(Shape{1});
        out[1][0] = 0;
        for (int i = 0; i < 50; ++i) {
          out[0][i] = std::sin(x[i]);
          out[1][0] += x[i] * x[i];
        }
        return out;
      },
      [&](const std::vector<Tensor<double>>& g) {
        for (int i = 0; i < 50; ++i) dx[i] = g[0][i] * std::cos(x[i]) + g[1][0] * 2 * x[i];
      },
      {check::input("x", x.view(), dx.view())}, {.max_elements = 10});
  INFO(r.report());
  CHECK(r.ok());
  CHECK(r.entries[0].checked == 10);
}
