// The only file that knows about Python. It turns Python inputs into TextBatch views
// (no text is copied), checks arguments, releases the GIL and calls the hot paths.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "compression.h"
#include "heuristics.h"
#include "text_batch.h"

namespace py = pybind11;
using namespace fastsynth;

namespace {

// An Arrow string array's buffers, built by fastsynth._texts from a pyarrow array:
// data (the UTF-8 bytes), offsets (n+1 int64, already shifted by the array's slice
// offset) and an optional validity mask (n uint8, 0 = null).
struct ArrowTexts {
  py::buffer data;
  py::array_t<int64_t, py::array::c_style | py::array::forcecast> offsets;
  py::object valid;  // None or uint8 array
};

// A TextBatch plus the Python references that keep its memory alive.
struct HeldBatch {
  TextBatch batch;
  std::vector<py::object> owners;
};

HeldBatch to_batch(const py::handle& texts) {
  HeldBatch held;
  if (py::isinstance<ArrowTexts>(texts)) {
    auto& a = texts.cast<ArrowTexts&>();
    py::buffer_info data = a.data.request();
    auto off = a.offsets.unchecked<1>();
    if (off.shape(0) < 1) throw py::value_error("texts: Arrow offsets must hold n + 1 entries");
    const size_t n = static_cast<size_t>(off.shape(0) - 1);
    const char* base = static_cast<const char*>(data.ptr);
    const int64_t size = static_cast<int64_t>(data.size * data.itemsize);
    held.batch.texts.resize(n);
    for (size_t i = 0; i < n; ++i) {
      int64_t b = off(i), e = off(i + 1);
      if (b < 0 || e < b || e > size)
        throw py::value_error("texts: Arrow offsets out of range at index " + std::to_string(i));
      held.batch.texts[i] = std::string_view(base + b, static_cast<size_t>(e - b));
    }
    if (!a.valid.is_none()) {
      auto v = a.valid.cast<py::array_t<uint8_t, py::array::c_style | py::array::forcecast>>();
      if (static_cast<size_t>(v.size()) != n) throw py::value_error("texts: validity mask length differs");
      held.batch.valid.assign(v.data(), v.data() + n);
    }
    held.owners.push_back(py::reinterpret_borrow<py::object>(texts));
    return held;
  }
  if (!py::isinstance<py::list>(texts) && !py::isinstance<py::tuple>(texts))
    throw py::type_error("texts must be a list of str or bytes, or a pyarrow string array");
  py::sequence seq = py::reinterpret_borrow<py::sequence>(texts);
  const size_t n = seq.size();
  held.batch.texts.resize(n);
  held.owners.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    py::object item = seq[i];
    PyObject* o = item.ptr();
    if (PyUnicode_Check(o)) {
      Py_ssize_t len = 0;
      const char* p = PyUnicode_AsUTF8AndSize(o, &len);
      if (!p) {
        PyErr_Clear();
        throw py::value_error("texts[" + std::to_string(i) +
                              "] cannot be encoded as UTF-8 (it holds a lone surrogate)");
      }
      held.batch.texts[i] = std::string_view(p, static_cast<size_t>(len));
    } else if (PyBytes_Check(o)) {
      held.batch.texts[i] = std::string_view(PyBytes_AS_STRING(o), static_cast<size_t>(PyBytes_GET_SIZE(o)));
    } else {
      throw py::type_error("texts[" + std::to_string(i) + "] must be str or bytes, got " +
                           std::string(Py_TYPE(o)->tp_name));
    }
    held.owners.push_back(std::move(item));
  }
  return held;
}

int check_threads(int threads) {
  if (threads < 0) throw py::value_error("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
  return threads;
}

// Runs fn with the GIL released, turning C++ argument errors into ValueError.
template <class Fn>
void without_gil(Fn&& fn) {
  try {
    py::gil_scoped_release release;
    fn();
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "fastsynth native hot paths (see fastsynth.quality for the documented API)";

  py::class_<ArrowTexts>(m, "ArrowTexts")
      .def(py::init<py::buffer, py::array_t<int64_t, py::array::c_style | py::array::forcecast>, py::object>(),
           py::arg("data"), py::arg("offsets"), py::arg("valid") = py::none());

  m.def(
      "gzip_ratio",
      [](const py::handle& texts, int level, int threads, const std::string& backend) {
        DeflateBackend b;
        if (backend == "zlib") b = DeflateBackend::Zlib;
        else if (backend == "libdeflate") b = DeflateBackend::Libdeflate;
        else throw py::value_error("backend must be 'zlib' or 'libdeflate', got '" + backend + "'");
        check_threads(threads);
        HeldBatch held = to_batch(texts);
        py::array_t<double> out(static_cast<py::ssize_t>(held.batch.size()));
        double* ptr = out.mutable_data();
        without_gil([&] { gzip_ratio(held.batch, level, threads, b, ptr); });
        return out;
      },
      py::arg("texts"), py::arg("level") = 6, py::arg("threads") = 0, py::arg("backend") = "zlib");

  m.def(
      "heuristics",
      [](const py::handle& texts, int threads) {
        check_threads(threads);
        HeldBatch held = to_batch(texts);
        const auto n = static_cast<py::ssize_t>(held.batch.size());
        py::array_t<double> out({static_cast<py::ssize_t>(kNumHeuristics), n});
        double* ptr = out.mutable_data();
        without_gil([&] { heuristics(held.batch, threads, ptr); });
        return out;
      },
      py::arg("texts"), py::arg("threads") = 0);

  std::vector<std::string> names(kHeuristicNames.begin(), kHeuristicNames.end());
  m.attr("heuristic_names") = names;
  m.attr("zlib_version") = linked_zlib_version();
  m.def("libdeflate_status", [] {
    std::string why;
    bool ok = libdeflate_available(&why);
    return py::make_tuple(ok, why);
  });
}
