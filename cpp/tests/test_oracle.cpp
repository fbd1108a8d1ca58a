// The core against the pure-Python oracle (python/mlpgrad/reference.py): tests/data/oracle_vectors.txt
// holds its inputs and outputs (written by tests/data/make_oracle_vectors.py), so C++ and Python agree on
// the same numbers. Every case runs in double (tight tolerance) and float (inputs are exact in float).
#include "test_support.hpp"

#include <cstdlib>
#include <fstream>
#include <map>
#include <stdexcept>

namespace mlpgrad_test {
namespace {

struct OracleCase {
    std::string name, kind;
    std::vector<Activation> activations;
    std::map<std::string, std::vector<double>> values;

    const std::vector<double>& operator[](const std::string& key) const {
        auto it = values.find(key);
        if (it == values.end()) throw std::runtime_error("case " + name + " has no '" + key + "' record");
        return it->second;
    }
    bool has(const std::string& key) const { return values.count(key) != 0; }
    std::size_t outputs() const { return has("outputs") ? static_cast<std::size_t>((*this)["outputs"].at(0)) : 1; }
    std::vector<std::size_t> widths() const {
        std::vector<std::size_t> w;
        for (double k : (*this)["widths"]) w.push_back(static_cast<std::size_t>(k));
        return w;
    }
};

const std::string vectors_path = std::string(MLPGRAD_TEST_DATA_DIR) + "/oracle_vectors.txt";

std::vector<OracleCase> parse(std::istream& in) {
    std::vector<OracleCase> cases;
    OracleCase current;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string key, token;
        if (!(fields >> key) || key[0] == '#') continue;
        if (key == "case") {
            current = OracleCase{};
            fields >> current.name;
        } else if (key == "kind") {
            fields >> current.kind;
        } else if (key == "activations") {
            while (fields >> token) current.activations.push_back(mlpgrad::parse_activation(token));
        } else if (key == "end") {
            cases.push_back(current);
        } else {
            auto& v = current.values[key];
            while (fields >> token) {
                char* end = nullptr;
                v.push_back(std::strtod(token.c_str(), &end));  // exact: the file holds round-trip reprs
                if (*end != '\0') throw std::runtime_error("bad number '" + token + "' in " + current.name);
            }
        }
    }
    return cases;
}

const std::vector<OracleCase>& cases() {
    static const std::vector<OracleCase> all = [] {
        std::ifstream in(vectors_path);
        return in ? parse(in) : std::vector<OracleCase>{};
    }();
    return all;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
    return std::vector<T>(v.begin(), v.end());
}

// Python and C++ sum in different orders; float also rounds every intermediate.
template <class T>
constexpr double oracle_tol = 4 * Tolerance<T>::value;

// ∂/∂b^t and ∂/∂β, when the case's network has them.
template <class T, class View>
void check_bias_gradients(const OracleCase& c, const View& out) {
    EXPECT_EQ(out.biases.size(), c.has("db0") ? c.widths().size() - 1 : 0u);
    for (std::size_t t = 0; t < out.biases.size(); ++t)
        EXPECT_TRUE(all_close(to_vector(out.biases[t]), c["db" + std::to_string(t)], oracle_tol<T>)) << "db" << t;
    EXPECT_EQ(out.output_bias.size != 0, c.has("dbeta"));
    if (c.has("dbeta")) {
        EXPECT_TRUE(all_close(to_vector(out.output_bias), c["dbeta"], oracle_tol<T>)) << "dbeta";
    }
}

template <class T>
void check_single(const OracleCase& c, const OwnedNet<T>& onet) {
    const auto net = onet.network();
    const std::size_t T_ = net.depth();
    const std::vector<T> x = cast<T>(c["x"]), dy = cast<T>(c["dy"]);
    mlpgrad::Tape<T> tape;
    mlpgrad::Gradients<T> g(net);
    std::vector<T> yhat(net.outputs());
    mlpgrad::value_and_grad(net, cview(x), tape, cview(dy), g.view(), mview(yhat));
    EXPECT_TRUE(all_close(yhat, c["yhat"], oracle_tol<T>)) << "yhat";
    check_bias_gradients<T>(c, g.view());
    for (std::size_t t = 0; t < T_; ++t)
        EXPECT_TRUE(all_close(to_vector(g.weights(t)), c["dW" + std::to_string(t)], oracle_tol<T>)) << "dW" << t;
    EXPECT_TRUE(all_close(to_vector(g.alpha()), c["dalpha"], oracle_tol<T>)) << "dalpha";
    EXPECT_TRUE(all_close(to_vector(g.x()), c["dx"], oracle_tol<T>)) << "dx";
    for (std::size_t t = 0; t <= T_; ++t)
        EXPECT_TRUE(all_close(to_vector(g.view().z[t]), c["dz" + std::to_string(t)], oracle_tol<T>)) << "dz" << t;
    for (std::size_t t = 1; t <= T_; ++t)
        EXPECT_TRUE(all_close(to_vector(g.view().u[t - 1]), c["du" + std::to_string(t)], oracle_tol<T>)) << "du" << t;
}

template <class T>
void check_batch(const OracleCase& c, const OwnedNet<T>& onet) {
    const auto net = onet.network();
    const std::size_t T_ = net.depth(), K0 = net.width(0);
    const std::size_t B = static_cast<std::size_t>(c["batch"].at(0));
    const std::vector<T> X = cast<T>(c["X"]), dy = cast<T>(c["dy"]);
    ASSERT_EQ(X.size(), B * K0);
    mlpgrad::BatchTape<T> tape;
    const std::size_t m = net.outputs();
    std::vector<T> yhat(B * m);
    mlpgrad::BatchGradients<T> g(net, B), params_only(net);
    mlpgrad::forward_batch(net, mlpgrad::MatrixView<const T>(X.data(), B, K0), tape, mlpgrad::MatrixView<T>(yhat.data(), B, m));
    mlpgrad::backward_batch(net, tape, mlpgrad::MatrixView<const T>(dy.data(), B, m), g.view());
    EXPECT_TRUE(all_close(yhat, c["yhat"], oracle_tol<T>)) << "yhat";
    for (std::size_t t = 0; t < T_; ++t)
        EXPECT_TRUE(all_close(to_vector(g.weights(t)), c["dW" + std::to_string(t)], oracle_tol<T>)) << "dW" << t;
    EXPECT_TRUE(all_close(to_vector(g.alpha()), c["dalpha"], oracle_tol<T>)) << "dalpha";
    EXPECT_TRUE(all_close(to_vector(g.x()), c["dX"], oracle_tol<T>)) << "dX";
    check_bias_gradients<T>(c, g.view());
    // Parameter-only gradients: the same numbers, no ∂/∂X.
    mlpgrad::backward_batch(net, tape, mlpgrad::MatrixView<const T>(dy.data(), B, m), params_only.view());
    for (std::size_t t = 0; t < T_; ++t) EXPECT_EQ(to_vector(params_only.weights(t)), to_vector(g.weights(t)));
    EXPECT_EQ(to_vector(params_only.alpha()), to_vector(g.alpha()));
    check_bias_gradients<T>(c, params_only.view());
}

template <class T>
void check_case(const OracleCase& c) {
    OwnedNet<T> onet{c.widths(), c.activations, {}, cast<T>(c["alpha"]), {}, {}, c.outputs()};
    for (std::size_t t = 0; t < onet.depth(); ++t) onet.weights.push_back(cast<T>(c["W" + std::to_string(t)]));
    if (c.has("b0"))
        for (std::size_t t = 0; t < onet.depth(); ++t) onet.biases.push_back(cast<T>(c["b" + std::to_string(t)]));
    if (c.has("beta")) onet.output_bias = cast<T>(c["beta"]);
    if (c.kind == "single")
        check_single(c, onet);
    else if (c.kind == "batch")
        check_batch(c, onet);
    else
        FAIL() << "unknown kind '" << c.kind << "'";
}

TEST(OracleVectors, FileHasEveryKindOfCase) {
    const auto& all = cases();
    ASSERT_GE(all.size(), 20u) << "could not read the cases from " << vectors_path;
    std::size_t singles = 0, batches = 0, depth0 = 0, relu_at_zero = 0, with_biases = 0, vector_outputs = 0;
    std::vector<bool> seen(mlpgrad::activation_names.size());
    for (const auto& c : all) {
        (c.kind == "single" ? singles : batches) += 1;
        depth0 += c.widths().size() == 1;
        relu_at_zero += c.name.find("at_zero") != std::string::npos;
        with_biases += c.has("b0") && c.has("beta");
        vector_outputs += c.outputs() > 1;
        for (Activation a : c.activations) seen[static_cast<std::size_t>(a)] = true;
    }
    EXPECT_GE(singles, 10u);
    EXPECT_GE(batches, 4u);
    EXPECT_GE(depth0, 2u);
    EXPECT_EQ(relu_at_zero, 2u);
    EXPECT_GE(with_biases, 12u);
    EXPECT_GE(vector_outputs, 15u);
    EXPECT_EQ(std::count(seen.begin(), seen.end(), true), static_cast<long>(seen.size()));
}

class Oracle : public ::testing::TestWithParam<std::tuple<std::size_t, Dtype>> {};

TEST_P(Oracle, Agrees) {
    const OracleCase& c = cases().at(std::get<0>(GetParam()));
    with_dtype(std::get<1>(GetParam()), [&](auto zero) { check_case<decltype(zero)>(c); });
}

INSTANTIATE_TEST_SUITE_P(Vectors, Oracle,
                         ::testing::Combine(::testing::Range<std::size_t>(0, cases().size()),
                                            ::testing::Values(Dtype::float32, Dtype::float64)),
                         [](const ::testing::TestParamInfo<std::tuple<std::size_t, Dtype>>& info) {
                             return cases()[std::get<0>(info.param)].name + "_" + dtype_name(std::get<1>(info.param));
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Oracle);  // when the file is missing: the test above fails

}  // namespace
}  // namespace mlpgrad_test
