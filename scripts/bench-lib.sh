# Sourced by scripts/bench-ring and scripts/bench-redis: the machine's CPU time over a run, and
# the table of medians they end with.
#
# On a virtual machine the host can run other guests on our CPUs: that time is "steal" in
# /proc/stat, and while it lasts every process here waits, whatever its code does. A run with
# steal is slower and has a longer tail than the same run without it, so each run reports it,
# and figures are compared with runs of similar steal.

# Prints the aggregate "cpu" line of /proc/stat (jiffies since boot), to pass to machine_share.
machine_snapshot() { head -n 1 /proc/stat; }

# machine_share BEFORE: prints the share of the machine's CPU time since BEFORE (a
# machine_snapshot) spent in user, system and softirq work, idle, and stolen by the host, and
# sets machine_steal to the stolen percentage.
machine_share() {
    local now line
    now=$(machine_snapshot)
    line=$(awk -v a="$1" -v b="$now" 'BEGIN {
        n = split(a, x, " "); split(b, y, " "); t = 0
        for (i = 2; i <= 9 && i <= n; i++) { d[i] = y[i] - x[i]; t += d[i] }
        if (t <= 0) t = 1
        # user+nice, system, softirq+irq, idle+iowait, steal
        printf "%.1f %.1f %.1f %.1f %.1f", 100 * (d[2] + d[3]) / t, 100 * d[4] / t,
            100 * (d[7] + d[8]) / t, 100 * (d[5] + d[6]) / t, 100 * d[9] / t }')
    set -- $line
    machine_steal=$5
    echo "machine: user $1%, system $2%, irq $3%, idle $4%, steal $5% (stolen by the host)"
}

# print_medians FILE RUNS: FILE has one line per run and op, "workload|op|ops/s|p50|p99|steal";
# prints per workload and op the medians of ops/s, p50, p99 and steal over the runs.
print_medians() {
    echo "== median of $2 run(s) per workload and op"
    awk -F'|' '
        function median(s,   v, k, i, j, t) { k = split(s, v, " ")
            for (i = 2; i <= k; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
                t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
            return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2 }
        !(($1, $2) in seen) { seen[$1, $2] = 1; order[++n] = $1 "|" $2 }
        { ops[$1, $2] = ops[$1, $2] " " $3; p50[$1, $2] = p50[$1, $2] " " $4
          p99[$1, $2] = p99[$1, $2] " " $5; steal[$1, $2] = steal[$1, $2] " " $6 }
        END {
            printf "%-46s %-4s %11s %9s %9s %8s\n", "workload", "op", "ops/s", "p50 ms", "p99 ms",
                "steal %"
            for (i = 1; i <= n; i++) { split(order[i], w, "|"); key = w[1] SUBSEP w[2]
                printf "%-46s %-4s %11.0f %9.3f %9.3f %8.1f\n", w[1], w[2], median(ops[key]),
                    median(p50[key]), median(p99[key]), median(steal[key]) }
        }' "$1"
}
