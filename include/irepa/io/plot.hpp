#pragma once
// Line plots as PNG through PLplot's cairo driver (link irepa::plot): one or more panels side by
// side, each with its own title, axis labels and a legend. Used for loss curves; written to a
// temporary file and renamed, so an existing plot is never left half-written.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <plplot.h>

#include "irepa/core/error.hpp"

namespace irepa::io {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;  // same length; non-finite points are left out
};

struct PlotPanel {
  std::string title, xlabel, ylabel;
  std::vector<PlotSeries> series;
};

/// Centred moving average over `window` points (shorter at the ends); NaNs are skipped.
inline std::vector<double> moving_average(const std::vector<double>& v, std::size_t window) {
  std::vector<double> out(v.size(), NAN);
  const std::size_t h = window / 2;
  for (std::size_t i = 0; i < v.size(); ++i) {
    double s = 0;
    std::size_t n = 0;
    for (std::size_t j = i > h ? i - h : 0; j < std::min(v.size(), i + h + 1); ++j)
      if (std::isfinite(v[j])) s += v[j], ++n;
    if (n) out[i] = s / static_cast<double>(n);
  }
  return out;
}

/// Writes the panels side by side into a width x height PNG.
inline void write_line_plot(const std::string& path, const std::vector<PlotPanel>& panels, int width = 1200, int height = 450) {
  IREPA_CHECK(!panels.empty(), "write_line_plot: no panels for '{}'", path);
  for (const auto& p : panels)
    for (const auto& s : p.series)
      IREPA_CHECK(s.x.size() == s.y.size(), "write_line_plot: series '{}' of panel '{}' has {} x values and {} y values", s.label,
                  p.title, s.x.size(), s.y.size());
  const std::string tmp = path + ".tmp";
  std::filesystem::remove(tmp);
  // Palette: 0 background white, 1 axes black, then distinguishable line colours.
  static const int palette[][3] = {{255, 255, 255}, {0, 0, 0},     {31, 119, 180}, {255, 127, 14},
                                   {44, 160, 44},   {214, 39, 40}, {148, 103, 189}, {140, 86, 75}};
  constexpr int ncol = static_cast<int>(sizeof(palette) / sizeof(palette[0]));
  PLINT stream = 0;
  plmkstrm(&stream);  // a stream of our own: PLplot keeps global state per stream
  plsdev("pngcairo");
  plsfnam(tmp.c_str());
  plspage(0, 0, width, height, 0, 0);
  plscmap0n(ncol);
  for (int i = 0; i < ncol; ++i) plscol0(i, palette[i][0], palette[i][1], palette[i][2]);
  plssub(static_cast<PLINT>(panels.size()), 1);
  plinit();
  for (const auto& p : panels) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (const auto& s : p.series)
      for (std::size_t i = 0; i < s.x.size(); ++i)
        if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]))
          x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]), y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    if (!(x1 >= x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;  // nothing finite: an empty frame
    if (x1 == x0) x1 = x0 + 1;
    const double pad = y1 > y0 ? 0.05 * (y1 - y0) : 0.5;
    pladv(0);
    plvsta();
    plwind(x0, x1, y0 - pad, y1 + pad);
    plcol0(1);
    plschr(0, 0.9);
    plbox("bcnstg", 0, 0, "bcnstvg", 0, 0);
    pllab(p.xlabel.c_str(), p.ylabel.c_str(), p.title.c_str());
    std::vector<PLINT> opts, colors, styles;
    std::vector<PLFLT> widths;
    std::vector<const char*> texts;
    for (std::size_t k = 0; k < p.series.size(); ++k) {
      const auto& s = p.series[k];
      const PLINT c = 2 + static_cast<PLINT>(k % (ncol - 2));
      plcol0(c);
      plwidth(2.0);
      std::vector<PLFLT> xs, ys;  // finite runs are drawn as separate polylines
      auto flush = [&] {
        if (xs.size() > 1) plline(static_cast<PLINT>(xs.size()), xs.data(), ys.data());
        xs.clear(), ys.clear();
      };
      for (std::size_t i = 0; i < s.x.size(); ++i) {
        if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) xs.push_back(s.x[i]), ys.push_back(s.y[i]);
        else flush();
      }
      flush();
      opts.push_back(PL_LEGEND_LINE), colors.push_back(c), styles.push_back(1), widths.push_back(2.0), texts.push_back(s.label.c_str());
    }
    plwidth(1.0);
    if (!p.series.empty()) {
      PLFLT lw = 0, lh = 0;
      std::vector<PLINT> text_colors(p.series.size(), 1);
      pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX, PL_POSITION_TOP | PL_POSITION_RIGHT | PL_POSITION_INSIDE, 0.02,
               0.02, 0.08, 0, 1, 1, 0, 0, static_cast<PLINT>(p.series.size()), opts.data(), 1.0, 0.9, 2.0, 0.0, text_colors.data(),
               texts.data(), nullptr, nullptr, nullptr, nullptr, colors.data(), styles.data(), widths.data(), nullptr, nullptr,
               nullptr, nullptr);
    }
  }
  plend1();
  IREPA_CHECK(std::filesystem::exists(tmp) && std::filesystem::file_size(tmp) > 0,
              "write_line_plot: PLplot's pngcairo driver wrote nothing to '{}' (is plplot-driver-cairo installed?)", tmp);
  std::filesystem::rename(tmp, path);
}

}  // namespace irepa::io
