// Words for error messages about the caller's arguments: user text that may not be valid Unicode, user
// exceptions chained rather than pasted in, keyword suggestions, and the "did you pass W.T?" hint.
#pragma once

#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "checks.hpp"

namespace mlpgrad_python {

// A str's text as UTF-8 for messages and name lookups: what cannot be encoded (lone surrogates) is
// backslash-escaped, and so is NUL (a message is a C string and would end there). Runs no user code (a str
// subclass's __str__ is not called) and never fails but for MemoryError. No name mlpgrad looks up holds a
// backslash, so the escaping never makes an unknown name known.
inline std::string utf8_text(py::handle str) {
    auto bytes = py::reinterpret_steal<py::object>(PyUnicode_AsEncodedString(str.ptr(), "utf-8", "backslashreplace"));
    if (!bytes) throw py::error_already_set();
    const char* utf8 = PyBytes_AS_STRING(bytes.ptr());
    std::string text;
    for (Py_ssize_t i = 0; i < PyBytes_GET_SIZE(bytes.ptr()); ++i) {
        if (utf8[i] == '\0')
            text += "\\x00";
        else
            text += utf8[i];
    }
    return text;
}

// str(obj) for a message, or its type name when str() raises or returns something odd.
inline std::string text_of(py::handle obj) {
    auto s = py::reinterpret_steal<py::object>(PyObject_Str(obj.ptr()));
    if (!s || !PyUnicode_Check(s.ptr())) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError)) throw py::error_already_set();
        PyErr_Clear();
        return "<" + type_name(obj) + " object>";
    }
    return utf8_text(s);
}

// Raises `type` with `message` (one sentence that names the argument), the user's exception `cause`
// chained as __cause__: its traceback stays in the chain, out of the message. Out of memory stays a
// MemoryError, and KeyboardInterrupt and friends (not Exceptions) are not ours to rename.
[[noreturn]] inline void raise_chained(py::error_already_set& cause, PyObject* type, const std::string& message) {
    if (cause.matches(PyExc_MemoryError) || !cause.matches(PyExc_Exception)) throw cause;
    std::string detail = type_name(cause.value());
    std::string text = text_of(cause.value());
    text = text.substr(0, text.find('\n'));
    if (text.size() > 200) text = text.substr(0, 197) + "...";
    if (!text.empty()) detail += ": " + text;
    py::raise_from(cause, type, (message + " (" + detail + ")").c_str());
    throw py::error_already_set();
}

// The parameter a mistyped keyword most likely meant (edit distance at most 2, or a prefix), if any.
inline std::optional<std::string> closest_name(const std::string& got, const std::vector<std::string>& names) {
    auto distance = [](const std::string& a, const std::string& b) {
        std::vector<std::size_t> row(b.size() + 1);
        for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
        for (std::size_t i = 1; i <= a.size(); ++i) {
            std::size_t diagonal = row[0];
            row[0] = i;
            for (std::size_t j = 1; j <= b.size(); ++j) {
                const std::size_t up = row[j];
                row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
                diagonal = up;
            }
        }
        return row[b.size()];
    };
    std::optional<std::string> best;
    if (got.empty()) return best;
    std::size_t best_distance = 3;
    for (const auto& name : names) {
        const std::size_t d = distance(got, name);
        const bool prefix = got.size() >= 2 && (name.rfind(got, 0) == 0 || got.rfind(name, 0) == 0);
        if (d < best_distance || (prefix && !best)) {
            best = name;
            best_distance = std::min(d, best_distance);
        }
    }
    return best;
}

// TypeError text for a keyword `function` does not take, in Python's words plus a suggestion.
inline std::string unexpected_keyword(const char* function, py::handle key, const std::vector<std::string>& names) {
    const std::string got = utf8_text(key);
    std::string msg = std::string(function) + "() got an unexpected keyword argument '" + got + "'";
    if (auto guess = closest_name(got, names)) msg += "; did you mean '" + *guess + "'?";
    return msg;
}

// Weight shapes (rows, columns) = (K_out, K_in) that fail to chain: the hint to add when they would chain
// if transposed ("" otherwise). `k_in` is K_0 when something else fixes it (out.x of a Gradients),
// `k_out` is K_T (alpha's length). `name` prefixes the index: "weights" or "out.weights".
inline std::string transposed_hint(const std::vector<std::pair<std::size_t, std::size_t>>& shapes,
                                   std::optional<std::size_t> k_in, std::size_t k_out, const std::string& name) {
    auto chains = [&](std::optional<std::size_t> flipped, bool flip_all) {
        std::optional<std::size_t> width = k_in;  // K_t so far
        for (std::size_t t = 0; t < shapes.size(); ++t) {
            auto [rows, cols] = shapes[t];
            if (flip_all || flipped == t) std::swap(rows, cols);
            if (width && cols != *width) return false;
            width = rows;
        }
        return width && *width == k_out;
    };
    const char* expects = "; did you pass W.T? mlpgrad expects each weight as (K_out, K_in)";
    if (shapes.empty() || chains(std::nullopt, false)) return "";
    if (shapes.size() > 1 && chains(std::nullopt, true)) return std::string(expects) + ", and every " + name +
                                                                "[t].T would chain";
    for (std::size_t t = 0; t < shapes.size(); ++t)
        if (shapes[t].first != shapes[t].second && chains(t, false))
            return std::string(expects) + ", and " + name + "[" + std::to_string(t) + "].T of shape " +
                   shape_string(std::vector<std::size_t>{shapes[t].second, shapes[t].first}) + " would chain";
    return "";
}

}  // namespace mlpgrad_python
