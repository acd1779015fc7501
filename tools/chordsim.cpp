// chordsim: runs a whole Chord ring in one process on the simulator (tests/sim) and checks it
// against the oracle: nodes join, the ring converges to the ideal state, optionally a fraction
// crashes and churn happens, then lookups from random nodes are checked one by one.
//
//   chordsim --nodes 10000 --seed 1 --lookups 10000 [--loss P] [--churn EVENTS]
//            [--fail-fraction F] [--successors R] [--vnodes V] [--json]
//
// Exit code 0 when the ring converged, no lookup failed and no invariant was violated; 1
// otherwise (the seed that reproduces the run is printed); 2 on bad arguments.
#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/sim/checkers.hpp"
#include "tests/sim/simulator.hpp"

namespace po = boost::program_options;
using namespace std::chrono_literals;
using chordkv::sim::Duration;
using chordkv::sim::Simulator;
using chordkv::sim::Time;

namespace {

struct Args {
    std::size_t nodes = 1000;
    std::uint64_t seed = 1;
    std::size_t lookups = 1000;
    double loss = 0.0;
    double quiet_loss = 0.0;  // loss once growth, failures and churn are over
    std::size_t churn = 0;
    double fail_fraction = 0.0;
    std::size_t successors = 8;
    std::size_t vnodes = 1;
    bool json = false;
};

struct Report {
    bool converged = false;
    double converge_seconds = 0;  // simulated, from the first join to the ideal ring
    double recover_seconds = 0;   // simulated, after the crash / churn phase
    std::size_t crashed = 0;
    chordkv::sim::LookupSummary lookups;
    std::uint64_t violations_during = 0;  // always-invariants, summed over samples
    std::uint64_t samples = 0;
    std::size_t violations_final = 0;  // all six invariants on the final state
    std::vector<std::string> problems;
    double wall_seconds = 0;
};

double seconds(Duration d) {
    return std::chrono::duration<double>(d).count();
}

std::optional<Args> parse(int argc, char** argv) {
    Args a;
    po::options_description desc("chordsim options");
    desc.add_options()("help,h", "show this help")(
        "nodes", po::value(&a.nodes)->default_value(a.nodes), "processes in the ring")(
        "seed", po::value(&a.seed)->default_value(a.seed), "seed of the run's only RNG")(
        "lookups", po::value(&a.lookups)->default_value(a.lookups),
        "lookups checked against the oracle at the end")(
        "loss", po::value(&a.loss)->default_value(a.loss),
        "message loss probability while the ring grows, fails and churns")(
        "quiet-loss", po::value(&a.quiet_loss)->default_value(a.quiet_loss),
        "message loss probability in the quiet phase (final convergence and lookups)")(
        "churn", po::value(&a.churn)->default_value(a.churn),
        "random joins, crashes and leaves after convergence")(
        "fail-fraction", po::value(&a.fail_fraction)->default_value(a.fail_fraction),
        "fraction of the nodes that crash at once after convergence")(
        "successors", po::value(&a.successors)->default_value(a.successors),
        "successor list length r")("vnodes", po::value(&a.vnodes)->default_value(a.vnodes),
                                   "vnodes per process")("json", po::bool_switch(&a.json),
                                                         "print one JSON object");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, desc), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        std::cerr << "chordsim: " << e.what() << "\n" << desc;
        return std::nullopt;
    }
    if (vm.count("help")) {
        std::cout << desc;
        std::exit(0);
    }
    if (a.nodes < 1 || a.successors < 1 || a.vnodes < 1 || a.loss < 0 || a.loss >= 1 ||
        a.quiet_loss < 0 || a.quiet_loss >= 1 || a.fail_fraction < 0 || a.fail_fraction >= 1) {
        std::cerr << "chordsim: need nodes, successors, vnodes >= 1 and loss, fail-fraction in "
                     "[0, 1)\n";
        return std::nullopt;
    }
    return a;
}

// Joins in waves: each wave adds as many nodes as are already members (so every wave roughly
// doubles the ring and puts about one joiner into each gap), spread over one stabilize
// interval, and the next wave starts once the previous one's joins have completed. Joining
// all at once through a small ring would instead pile joiners into few gaps, which take one
// stabilize round per joiner to sort out.
void grow(Simulator& sim, std::size_t nodes) {
    const Duration interval = sim.options().protocol.stabilize_interval;
    sim.create_node();
    std::size_t members = 1;
    while (sim.node_count() < nodes) {
        const std::size_t wave = std::min(nodes - sim.node_count(), members);
        const Time start = sim.now();
        for (std::size_t i = 0; i < wave; ++i) {
            sim.run_until(start + interval * static_cast<std::int64_t>(i) /
                                      static_cast<std::int64_t>(wave));
            sim.join_node();
        }
        // Wait (bounded) for the wave's joins, checking cheaply twice per stabilize interval.
        const Time wave_deadline = sim.now() + 60 * interval;
        do {
            sim.run_for(interval / 2);
            members = sim.member_nodes().size();
        } while (members < sim.up_nodes().size() && sim.now() < wave_deadline);
    }
}

void churn(Simulator& sim, std::size_t events, std::size_t nodes) {
    const Duration interval = sim.options().protocol.stabilize_interval;
    std::uniform_int_distribution<int> percent(0, 99);
    for (std::size_t i = 0; i < events; ++i) {
        sim.run_for(interval / 2);
        const std::vector<std::size_t> members = sim.member_nodes();
        const int k = percent(sim.rng());
        if (k < 40 || members.size() < std::max<std::size_t>(2, nodes / 2)) {
            sim.join_node();
            continue;
        }
        std::uniform_int_distribution<std::size_t> pick(0, members.size() - 1);
        const std::size_t victim = members[pick(sim.rng())];
        if (k < 70) {
            sim.crash(victim);
        } else {
            sim.leave(victim);
        }
    }
}

Report run(const Args& a) {
    const auto wall_start = std::chrono::steady_clock::now();
    Report r;
    chordkv::sim::SimulatorOptions o;
    o.seed = a.seed;
    o.protocol.successors = a.successors;
    o.network.loss = a.loss;
    o.vnodes = a.vnodes;
    o.invariant_check_interval = 1s;
    Simulator sim(o);
    const Duration patience = 3600s;  // simulated; generous, since failing is reported anyway

    grow(sim, a.nodes);
    auto took = sim.run_until_converged(sim.now() + patience);
    r.converged = took.has_value();
    r.converge_seconds = seconds(sim.now() - Time{});
    if (!r.converged) r.problems.push_back("did not converge to the ideal ring");

    if (r.converged && (a.fail_fraction > 0 || a.churn > 0)) {
        const Time phase = sim.now();
        if (a.fail_fraction > 0) {
            std::vector<std::size_t> up = sim.up_nodes();
            std::shuffle(up.begin(), up.end(), sim.rng());
            r.crashed = std::min(up.size() - 1,
                                 static_cast<std::size_t>(
                                     std::llround(a.fail_fraction * static_cast<double>(a.nodes))));
            for (std::size_t i = 0; i < r.crashed; ++i) sim.crash(up[i]);
        }
        churn(sim, a.churn, a.nodes);
        // Then quiet: no more faults, and the network's loss drops to --quiet-loss.
        sim.network().loss = a.quiet_loss;
        took = sim.run_until_converged(sim.now() + patience);
        r.recover_seconds = seconds(sim.now() - phase);
        if (!took) {
            r.converged = false;
            r.problems.push_back("did not converge again after the failures");
        }
    }
    if (!r.converged) {
        for (const auto& v : sim.ideal_violations(10)) r.problems.push_back("  " + v);
    }

    if (a.lookups > 0 && !sim.member_nodes().empty()) {
        r.lookups = chordkv::sim::run_lookups(sim, a.lookups, sim.now() + 600s);
        for (const auto& f : r.lookups.failures) r.problems.push_back(f);
    }
    const auto final_report = sim.check_invariants();
    r.violations_final = final_report.total();
    for (const auto& m : final_report.messages) r.problems.push_back(m);
    const auto& tally = sim.invariant_tally();
    r.samples = tally.samples;
    r.violations_during = tally.always_total();
    if (r.violations_during > 0) {
        for (const auto& m : tally.first_messages) r.problems.push_back(m);
    }
    r.wall_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    return r;
}

bool failed(const Report& r) {
    return !r.converged || r.lookups.failed() > 0 || r.violations_during > 0 ||
           r.violations_final > 0;
}

void print(const Args& a, const Report& r, double rounds) {
    const auto& l = r.lookups;
    const double timeouts_per_lookup =
        l.completed ? static_cast<double>(l.timeouts) / static_cast<double>(l.completed) : 0.0;
    if (a.json) {
        std::ostringstream out;
        out << std::setprecision(6);
        out << "{\"nodes\":" << a.nodes << ",\"vnodes\":" << a.vnodes << ",\"seed\":" << a.seed
            << ",\"successors\":" << a.successors << ",\"loss\":" << a.loss
            << ",\"quiet_loss\":" << a.quiet_loss
            << ",\"converged\":" << (r.converged ? "true" : "false")
            << ",\"converge_seconds\":" << r.converge_seconds
            << ",\"rounds_to_converge\":" << rounds << ",\"crashed\":" << r.crashed
            << ",\"churn\":" << a.churn << ",\"recover_seconds\":" << r.recover_seconds
            << ",\"lookups\":" << l.issued << ",\"failed_lookups\":" << l.failed()
            << ",\"wrong_lookups\":" << l.wrong << ",\"error_lookups\":" << l.errors
            << ",\"mean_hops\":" << l.mean_hops() << ",\"p50_hops\":" << l.hops_quantile(0.5)
            << ",\"p99_hops\":" << l.hops_quantile(0.99)
            << ",\"timeouts_per_lookup\":" << timeouts_per_lookup
            << ",\"invariant_samples\":" << r.samples
            << ",\"invariant_violations\":" << r.violations_during + r.violations_final
            << ",\"wall_seconds\":" << r.wall_seconds
            << ",\"ok\":" << (failed(r) ? "false" : "true") << "}";
        std::cout << out.str() << "\n";
    } else {
        std::cout << std::fixed << std::setprecision(2) << "nodes                 " << a.nodes
                  << " (x" << a.vnodes << " vnodes)\n"
                  << "converged             " << (r.converged ? "yes" : "NO") << " after "
                  << r.converge_seconds << " s simulated = " << rounds << " stabilize rounds\n";
        if (r.crashed > 0 || a.churn > 0) {
            std::cout << "crashed / churn       " << r.crashed << " / " << a.churn
                      << " events, ideal again after " << r.recover_seconds << " s\n";
        }
        std::cout << "lookups               " << l.issued << "\n"
                  << "failed lookups        " << l.failed() << " (wrong " << l.wrong << ", errors "
                  << l.errors << ", unfinished " << l.issued - l.completed << ")\n"
                  << "hops mean / p50 / p99 " << l.mean_hops() << " / " << l.hops_quantile(0.5)
                  << " / " << l.hops_quantile(0.99) << "\n"
                  << "timeouts per lookup   " << timeouts_per_lookup << "\n"
                  << "invariant violations  " << r.violations_during << " during (" << r.samples
                  << " samples), " << r.violations_final << " at the end\n"
                  << "wall time             " << r.wall_seconds << " s\n";
    }
    if (failed(r)) {
        std::cerr << "chordsim: FAILED with seed " << a.seed << "\n";
        for (const auto& p : r.problems) std::cerr << "  " << p << "\n";
    }
}

}  // namespace

int main(int argc, char** argv) {
    const std::optional<Args> args = parse(argc, argv);
    if (!args) return 2;
    Report report;
    try {
        report = run(*args);
    } catch (const std::exception& e) {
        // The simulator throws when a Protocol stops simulated time from advancing.
        std::cerr << "chordsim: FAILED with seed " << args->seed << ": " << e.what() << "\n";
        return 1;
    }
    const double rounds =
        report.converge_seconds / seconds(chordkv::chord::ProtocolOptions{}.stabilize_interval);
    print(*args, report, rounds);
    return failed(report) ? 1 : 0;
}
