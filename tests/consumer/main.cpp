// Uses the umbrella header: a linear op, the gradient checker and a safetensors round trip.
#include <irepa/irepa.hpp>

#include <cstdio>
#include <filesystem>

int main() {
  irepa::CpuContext ctx(2);
  irepa::Philox rng(7);
  irepa::Tensor<double> x(irepa::Shape{3, 5}), w(irepa::Shape{4, 5}), b(irepa::Shape{4});
  rng.normal(x.view());
  rng.normal(w.view());
  rng.normal(b.view());
  irepa::Tensor<double> dx(x.shape()), dw(w.shape()), db(b.shape());
  auto r = irepa::check::gradient_check(
      [&] {
        irepa::Tensor<double> y(irepa::Shape{3, 4});
        irepa::ops::linear_forward<double>(ctx, x, w, b, y.view());
        return y;
      },
      [&](const std::vector<irepa::Tensor<double>>& g) {
        irepa::ops::linear_backward<double>(ctx, x, w, g[0], dx.view(), dw.view(), db.view());
      },
      {irepa::check::input("x", x.view(), dx.view()), irepa::check::param("w", w.view(), dw.view()),
       irepa::check::param("b", b.view(), db.view())});
  std::printf("%s", r.report().c_str());
  const auto path = (std::filesystem::temp_directory_path() / "irepa_consumer.safetensors").string();
  irepa::io::SafeTensorsWriter out;
  out.add("w", w);
  out.write(path);
  const bool same = irepa::io::SafeTensorsFile(path).load<double>("w")[7] == w[7];
  std::filesystem::remove(path);
  std::printf("irepa %d.%d.%d consumer: %s\n", irepa::version_major, irepa::version_minor, irepa::version_patch,
              r.ok() && same ? "ok" : "FAILED");
  return r.ok() && same ? 0 : 1;
}
